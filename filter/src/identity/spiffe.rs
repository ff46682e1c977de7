//! SPIFFE IDs parsed to the letter of the SPIFFE-ID standard (section 2): `spiffe://` then a
//! trust domain of `[a-z0-9._-]`, then an optional path of `[A-Za-z0-9._-]` segments. Anything
//! else (ports, userinfo, queries, percent-encoding, `.`/`..` segments) is refused, not repaired.

use std::fmt;

const SCHEME: &str = "spiffe://";
pub const MAX_ID_LEN: usize = 2048;
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    /// The whole normalised ID, `spiffe://td/path`.
    id: String,
    /// Byte offset where the path (with its leading `/`) starts; `id.len()` when there is none.
    path_start: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpiffeIdError {
    Empty,
    TooLong { len: usize },
    NotUtf8,
    WrongScheme,
    EmptyTrustDomain,
    TrustDomainTooLong { len: usize },
    BadTrustDomainChar { byte: u8 },
    EmptySegment,
    DotSegment,
    BadPathChar { byte: u8 },
    TrailingSlash,
}

impl fmt::Display for SpiffeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty SPIFFE ID"),
            Self::TooLong { len } => write!(f, "SPIFFE ID of {len} bytes exceeds {MAX_ID_LEN}"),
            Self::NotUtf8 => write!(f, "SPIFFE ID is not UTF-8"),
            Self::WrongScheme => write!(f, "scheme must be spiffe://"),
            Self::EmptyTrustDomain => write!(f, "trust domain is empty"),
            Self::TrustDomainTooLong { len } => {
                write!(
                    f,
                    "trust domain of {len} bytes exceeds {MAX_TRUST_DOMAIN_LEN}"
                )
            }
            Self::BadTrustDomainChar { byte } => {
                write!(
                    f,
                    "trust domain holds byte 0x{byte:02x}; only [a-z0-9._-] are allowed"
                )
            }
            Self::EmptySegment => write!(f, "path has an empty segment"),
            Self::DotSegment => write!(f, "path has a '.' or '..' segment"),
            Self::BadPathChar { byte } => {
                write!(
                    f,
                    "path holds byte 0x{byte:02x}; only [A-Za-z0-9._-] are allowed"
                )
            }
            Self::TrailingSlash => write!(f, "path ends with '/'"),
        }
    }
}

fn is_trust_domain_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
}

/// The characters of a path segment; also the charset every value substituted into a vault path
/// must keep to, so a template can never smuggle `/`, `%`, `?` or `#` into it.
pub fn is_segment_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

impl SpiffeId {
    pub fn parse_bytes(raw: &[u8]) -> Result<Self, SpiffeIdError> {
        let text = std::str::from_utf8(raw).map_err(|_| SpiffeIdError::NotUtf8)?;
        Self::parse(text)
    }

    pub fn parse(raw: &str) -> Result<Self, SpiffeIdError> {
        if raw.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if raw.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong { len: raw.len() });
        }
        // The scheme is case-insensitive (RFC 3986) and normalised to lowercase.
        let rest = match (raw.get(..SCHEME.len()), raw.get(SCHEME.len()..)) {
            (Some(scheme), Some(rest)) if scheme.eq_ignore_ascii_case(SCHEME) => rest,
            _ => return Err(SpiffeIdError::WrongScheme),
        };

        let (trust_domain, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        validate_trust_domain(trust_domain)?;
        validate_path(path)?;

        let id = format!("{SCHEME}{trust_domain}{path}");
        let path_start = SCHEME.len() + trust_domain.len();
        Ok(Self { id, path_start })
    }

    pub fn as_str(&self) -> &str {
        &self.id
    }

    pub fn trust_domain(&self) -> &str {
        self.id
            .get(SCHEME.len()..self.path_start)
            .unwrap_or_default()
    }

    /// The path without its leading slash, e.g. `ns/payments/sa/checkout`.
    pub fn path(&self) -> &str {
        self.id.get(self.path_start + 1..).unwrap_or_default()
    }

    /// Namespace and service account when the path has Istio's `ns/<ns>/sa/<sa>` shape.
    pub fn kubernetes_parts(&self) -> Option<(&str, &str)> {
        let mut segments = self.path().split('/');
        match (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa)) if segments.next().is_none() => {
                Some((ns, sa))
            }
            _ => None,
        }
    }
}

fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong { len: td.len() });
    }
    // Ports, userinfo and percent-encoding all show up here as a byte outside the charset.
    match td.bytes().find(|b| !is_trust_domain_byte(*b)) {
        Some(byte) => Err(SpiffeIdError::BadTrustDomainChar { byte }),
        None => Ok(()),
    }
}

fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(SpiffeIdError::TrailingSlash);
    }
    // `path` starts with '/', so the first split item is the empty string before it.
    for segment in path.split('/').skip(1) {
        if segment.is_empty() {
            return Err(SpiffeIdError::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(SpiffeIdError::DotSegment);
        }
        if let Some(byte) = segment.bytes().find(|b| !is_segment_byte(*b)) {
            return Err(SpiffeIdError::BadPathChar { byte });
        }
    }
    Ok(())
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The same tables run on wasm32 under wasm-bindgen-test (`make wasm-test`).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn err(raw: &str) -> SpiffeIdError {
        SpiffeId::parse(raw).unwrap_err()
    }

    #[test]
    fn parses_kubernetes_shaped_id() {
        let id = SpiffeId::parse("spiffe://example.org/ns/payments/sa/checkout").unwrap();
        assert_eq!(id.trust_domain(), "example.org");
        assert_eq!(id.path(), "ns/payments/sa/checkout");
        assert_eq!(id.kubernetes_parts(), Some(("payments", "checkout")));
    }

    #[test]
    fn normalises_scheme_case() {
        let id = SpiffeId::parse("SPIFFE://example.org/a").unwrap();
        assert_eq!(id.as_str(), "spiffe://example.org/a");
    }

    #[test]
    fn accepts_trust_domain_without_path() {
        let id = SpiffeId::parse("spiffe://example.org").unwrap();
        assert_eq!(id.path(), "");
        assert_eq!(id.kubernetes_parts(), None);
    }

    #[test]
    fn other_paths_have_no_kubernetes_parts() {
        for raw in [
            "spiffe://td/ns/a/sa",
            "spiffe://td/ns/a/sa/b/c",
            "spiffe://td/x/a/sa/b",
        ] {
            assert_eq!(
                SpiffeId::parse(raw).unwrap().kubernetes_parts(),
                None,
                "{raw}"
            );
        }
    }

    #[test]
    fn rejects_each_rule_with_its_own_error() {
        assert_eq!(err(""), SpiffeIdError::Empty);
        assert_eq!(err("https://example.org/a"), SpiffeIdError::WrongScheme);
        assert_eq!(err("spiffe:/example.org"), SpiffeIdError::WrongScheme);
        assert_eq!(err("spiffe:///a"), SpiffeIdError::EmptyTrustDomain);
        assert_eq!(
            err("spiffe://Example.org/a"),
            SpiffeIdError::BadTrustDomainChar { byte: b'E' }
        );
        assert_eq!(
            err("spiffe://example.org:443/a"),
            SpiffeIdError::BadTrustDomainChar { byte: b':' }
        );
        assert_eq!(
            err("spiffe://user@example.org/a"),
            SpiffeIdError::BadTrustDomainChar { byte: b'@' }
        );
        assert_eq!(
            err("spiffe://example.org/a//b"),
            SpiffeIdError::EmptySegment
        );
        assert_eq!(err("spiffe://example.org/a/./b"), SpiffeIdError::DotSegment);
        assert_eq!(err("spiffe://example.org/a/.."), SpiffeIdError::DotSegment);
        assert_eq!(err("spiffe://example.org/a/"), SpiffeIdError::TrailingSlash);
        assert_eq!(
            err("spiffe://example.org/a%2fb"),
            SpiffeIdError::BadPathChar { byte: b'%' }
        );
        assert_eq!(
            err("spiffe://example.org/a?x=1"),
            SpiffeIdError::BadPathChar { byte: b'?' }
        );
        assert_eq!(
            err("spiffe://example.org/a#f"),
            SpiffeIdError::BadPathChar { byte: b'#' }
        );
        assert_eq!(
            SpiffeId::parse_bytes(b"spiffe://td/\xff").unwrap_err(),
            SpiffeIdError::NotUtf8
        );
    }

    #[test]
    fn enforces_length_boundaries() {
        let td_255 = "a".repeat(255);
        assert!(SpiffeId::parse(&format!("spiffe://{td_255}/x")).is_ok());
        let td_256 = "a".repeat(256);
        assert_eq!(
            err(&format!("spiffe://{td_256}/x")),
            SpiffeIdError::TrustDomainTooLong { len: 256 }
        );

        let prefix = "spiffe://example.org/";
        let id_2048 = format!("{prefix}{}", "p".repeat(2048 - prefix.len()));
        assert!(SpiffeId::parse(&id_2048).is_ok());
        let id_2049 = format!("{prefix}{}", "p".repeat(2049 - prefix.len()));
        assert_eq!(err(&id_2049), SpiffeIdError::TooLong { len: 2049 });
    }
}
