//! The `x-forwarded-client-cert` header as Envoy writes it: elements (one per hop) separated by
//! `,`, `key=value` pairs separated by `;`, values double-quoted when they hold `,`, `;` or `=`,
//! with `\"` inside quotes. Keys are case-insensitive; an element may carry several `URI` keys.

use std::fmt;

use super::{IdentityError, Source, SpiffeId};

/// Envoy's default header size limit is 60 KiB; an XFCC value above this is refused unread.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// One hop's element: its pairs in order, keys lowercased, values unquoted and unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct XfccElement {
    pub pairs: Vec<(String, Vec<u8>)>,
}

impl XfccElement {
    /// The values of every `URI` key, in order.
    pub fn uris(&self) -> impl Iterator<Item = &[u8]> {
        self.pairs
            .iter()
            .filter(|(key, _)| key == "uri")
            .map(|(_, value)| value.as_slice())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XfccError {
    TooLarge { len: usize },
    EmptyElement { element: usize },
    MissingEquals { element: usize },
    EmptyKey { element: usize },
    BadKeyByte { element: usize, byte: u8 },
    UnterminatedQuote { element: usize },
    TextAfterQuote { element: usize },
    QuoteInsideValue { element: usize },
}

impl fmt::Display for XfccError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len } => write!(f, "XFCC header of {len} bytes is too large"),
            Self::EmptyElement { element } => write!(f, "XFCC element {element} is empty"),
            Self::MissingEquals { element } => {
                write!(f, "XFCC element {element} has a pair without '='")
            }
            Self::EmptyKey { element } => write!(f, "XFCC element {element} has an empty key"),
            Self::BadKeyByte { element, byte } => {
                write!(f, "XFCC element {element} has key byte 0x{byte:02x}")
            }
            Self::UnterminatedQuote { element } => {
                write!(f, "XFCC element {element} has an unterminated quote")
            }
            Self::TextAfterQuote { element } => {
                write!(f, "XFCC element {element} has text after a closing quote")
            }
            Self::QuoteInsideValue { element } => {
                write!(
                    f,
                    "XFCC element {element} has a quote inside an unquoted value"
                )
            }
        }
    }
}

/// Which element names the caller. Envoy appends one element per hop, so the last one is the
/// hop nearest to this proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XfccElementChoice {
    First,
    Last,
}

/// Parses the whole header; any grammar error refuses it, since a trusted hop never sends one.
pub fn parse(header: &[u8]) -> Result<Vec<XfccElement>, XfccError> {
    if header.len() > MAX_HEADER_BYTES {
        return Err(XfccError::TooLarge { len: header.len() });
    }
    let mut parser = Parser {
        input: header,
        at: 0,
        element: 0,
    };
    let mut elements = Vec::new();
    loop {
        elements.push(parser.element()?);
        match parser.next() {
            None => return Ok(elements),
            Some(_) => parser.element += 1,
        }
    }
}

/// The SPIFFE ID in the chosen element. `Ok(None)` when that element has no `URI` key.
pub fn spiffe_id(
    header: &[u8],
    choice: XfccElementChoice,
) -> Result<Option<SpiffeId>, IdentityError> {
    let elements = parse(header).map_err(IdentityError::BadXfcc)?;
    let element = match choice {
        XfccElementChoice::First => elements.first(),
        XfccElementChoice::Last => elements.last(),
    };
    let uris: Vec<&[u8]> = element.map(|e| e.uris().collect()).unwrap_or_default();
    match uris.as_slice() {
        [] => Ok(None),
        [only] => SpiffeId::parse_bytes(only)
            .map(Some)
            .map_err(|error| IdentityError::NotSpiffe {
                source: Source::Xfcc,
                error,
            }),
        several => Err(IdentityError::Ambiguous {
            source: Source::Xfcc,
            uri_sans: several.len(),
        }),
    }
}

struct Parser<'a> {
    input: &'a [u8],
    at: usize,
    element: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// Pairs up to the next `,` outside quotes (not consumed) or the end.
    fn element(&mut self) -> Result<XfccElement, XfccError> {
        let element = self.element;
        let mut pairs = Vec::new();
        loop {
            self.skip_spaces();
            if matches!(self.peek(), None | Some(b',')) {
                return Err(XfccError::EmptyElement { element });
            }
            let key = self.key()?;
            let value = self.value()?;
            pairs.push((key, value));
            self.skip_spaces();
            match self.peek() {
                Some(b';') => self.at += 1,
                _ => return Ok(XfccElement { pairs }),
            }
        }
    }

    fn key(&mut self) -> Result<String, XfccError> {
        let element = self.element;
        let mut key = String::new();
        loop {
            match self.next() {
                Some(b'=') => break,
                Some(b) if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' => {
                    key.push(char::from(b.to_ascii_lowercase()));
                }
                Some(b) if !matches!(b, b',' | b';') => {
                    return Err(XfccError::BadKeyByte { element, byte: b })
                }
                _ => return Err(XfccError::MissingEquals { element }),
            }
        }
        if key.is_empty() {
            return Err(XfccError::EmptyKey { element });
        }
        Ok(key)
    }

    fn value(&mut self) -> Result<Vec<u8>, XfccError> {
        let element = self.element;
        if self.peek() != Some(b'"') {
            let mut value = Vec::new();
            while let Some(b) = self.peek() {
                match b {
                    b',' | b';' => break,
                    b'"' => return Err(XfccError::QuoteInsideValue { element }),
                    _ => value.push(b),
                }
                self.at += 1;
            }
            // Spaces before a separator belong to the list syntax, not the value.
            while value.last().is_some_and(|b| matches!(b, b' ' | b'\t')) {
                value.pop();
            }
            return Ok(value);
        }

        self.at += 1;
        let mut value = Vec::new();
        loop {
            match self.next() {
                None => return Err(XfccError::UnterminatedQuote { element }),
                Some(b'"') => break,
                Some(b'\\') => match self.next() {
                    Some(escaped) => value.push(escaped),
                    None => return Err(XfccError::UnterminatedQuote { element }),
                },
                Some(b) => value.push(b),
            }
        }
        self.skip_spaces();
        match self.peek() {
            None | Some(b',' | b';') => Ok(value),
            Some(_) => Err(XfccError::TextAfterQuote { element }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The same tables run on wasm32 under wasm-bindgen-test (`make wasm-test`).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn pairs(header: &str) -> Vec<Vec<(String, String)>> {
        parse(header.as_bytes())
            .unwrap()
            .into_iter()
            .map(|e| {
                e.pairs
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
                    .collect()
            })
            .collect()
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn parses_envoys_own_output() {
        let header = "By=spiffe://example.org/ns/gw/sa/gw;Hash=468ed33be74eee6556d90c0149c1309e9\
                      ba61d6425303443c0748a02dd8de688;Subject=\"/C=US/ST=CA/O=Lyft\";\
                      URI=spiffe://example.org/ns/a/sa/b";
        assert_eq!(
            pairs(header),
            [vec![
                kv("by", "spiffe://example.org/ns/gw/sa/gw"),
                kv(
                    "hash",
                    "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688"
                ),
                kv("subject", "/C=US/ST=CA/O=Lyft"),
                kv("uri", "spiffe://example.org/ns/a/sa/b"),
            ]]
        );
    }

    #[test]
    fn splits_elements_on_commas_outside_quotes() {
        let header = "URI=spiffe://td/a;Subject=\"CN=x,O=y\",URI=spiffe://td/b";
        assert_eq!(
            pairs(header),
            [
                vec![kv("uri", "spiffe://td/a"), kv("subject", "CN=x,O=y")],
                vec![kv("uri", "spiffe://td/b")]
            ]
        );
    }

    #[test]
    fn unescapes_quotes_and_backslashes_inside_quoted_values() {
        let header = r#"Subject="CN=\"quoted\";O=a\\b";uri=spiffe://td/x"#;
        assert_eq!(
            pairs(header),
            [vec![
                kv("subject", r#"CN="quoted";O=a\b"#),
                kv("uri", "spiffe://td/x")
            ]]
        );
    }

    #[test]
    fn tolerates_list_whitespace_and_key_case() {
        let header = "uri=spiffe://td/a ; DNS=a.example , Uri=spiffe://td/b";
        assert_eq!(
            pairs(header),
            [
                vec![kv("uri", "spiffe://td/a"), kv("dns", "a.example")],
                vec![kv("uri", "spiffe://td/b")]
            ]
        );
    }

    #[test]
    fn keeps_several_uri_keys_of_one_element() {
        let elements = parse(b"URI=spiffe://td/a;URI=spiffe://td/b").unwrap();
        let uris: Vec<&[u8]> = elements[0].uris().collect();
        assert_eq!(uris, [&b"spiffe://td/a"[..], &b"spiffe://td/b"[..]]);
    }

    #[test]
    fn refuses_each_grammar_error_with_its_own_variant() {
        let err = |h: &str| parse(h.as_bytes()).unwrap_err();
        assert_eq!(err(""), XfccError::EmptyElement { element: 0 });
        assert_eq!(err("URI=a,"), XfccError::EmptyElement { element: 1 });
        assert_eq!(err("URI=a,,URI=b"), XfccError::EmptyElement { element: 1 });
        assert_eq!(err("URI"), XfccError::MissingEquals { element: 0 });
        assert_eq!(err("URI=a;Hash"), XfccError::MissingEquals { element: 0 });
        assert_eq!(err("=a"), XfccError::EmptyKey { element: 0 });
        assert_eq!(
            err("U RI=a"),
            XfccError::BadKeyByte {
                element: 0,
                byte: b' '
            }
        );
        assert_eq!(
            err("URI=a,Subject=\"x"),
            XfccError::UnterminatedQuote { element: 1 }
        );
        assert_eq!(
            err("Subject=\"x\\"),
            XfccError::UnterminatedQuote { element: 0 }
        );
        assert_eq!(
            err("Subject=\"x\"y"),
            XfccError::TextAfterQuote { element: 0 }
        );
        assert_eq!(
            err("Subject=x\"y\""),
            XfccError::QuoteInsideValue { element: 0 }
        );
        let huge = vec![b'a'; MAX_HEADER_BYTES + 1];
        assert!(matches!(parse(&huge), Err(XfccError::TooLarge { .. })));
    }

    #[test]
    fn empty_values_are_allowed() {
        assert_eq!(pairs("Hash=;URI="), [vec![kv("hash", ""), kv("uri", "")]]);
    }

    #[test]
    fn takes_the_spiffe_id_of_the_chosen_element() {
        let header = b"URI=spiffe://td/far,URI=spiffe://td/near";
        let last = spiffe_id(header, XfccElementChoice::Last).unwrap().unwrap();
        assert_eq!(last.as_str(), "spiffe://td/near");
        let first = spiffe_id(header, XfccElementChoice::First)
            .unwrap()
            .unwrap();
        assert_eq!(first.as_str(), "spiffe://td/far");
    }

    #[test]
    fn element_without_uri_names_no_identity() {
        let header = b"URI=spiffe://td/far,Hash=abc;DNS=x.example";
        assert_eq!(spiffe_id(header, XfccElementChoice::Last), Ok(None));
    }

    #[test]
    fn several_uris_in_the_chosen_element_are_ambiguous() {
        let header = b"URI=spiffe://td/a;URI=spiffe://td/b";
        assert_eq!(
            spiffe_id(header, XfccElementChoice::Last),
            Err(IdentityError::Ambiguous {
                source: Source::Xfcc,
                uri_sans: 2
            })
        );
    }

    #[test]
    fn a_uri_that_is_not_a_spiffe_id_is_refused() {
        let err = spiffe_id(b"URI=https://td/a", XfccElementChoice::Last).unwrap_err();
        assert!(matches!(
            err,
            IdentityError::NotSpiffe {
                source: Source::Xfcc,
                ..
            }
        ));
        let err = spiffe_id(b"URI=\"spiffe://td/\xff\"", XfccElementChoice::Last).unwrap_err();
        assert!(matches!(err, IdentityError::NotSpiffe { .. }));
    }

    #[test]
    fn a_malformed_header_is_refused_not_skipped() {
        assert_eq!(
            spiffe_id(b"URI=\"spiffe://td/a", XfccElementChoice::Last),
            Err(IdentityError::BadXfcc(XfccError::UnterminatedQuote {
                element: 0
            }))
        );
    }
}
