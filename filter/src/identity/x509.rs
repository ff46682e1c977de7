//! Just enough DER to find the URI SANs of an X.509 certificate (RFC 5280 section 4.2.1.6).
//! Envoy has already verified the chain; this walk only reads what the certificate claims, so a
//! full X.509 crate (and its size in the module) is not needed.

use std::fmt;

const SEQUENCE: u8 = 0x30;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
/// `[3] EXPLICIT Extensions` in `TBSCertificate`.
const EXTENSIONS: u8 = 0xa3;
/// `uniformResourceIdentifier [6] IA5String` in `GeneralName`, implicitly tagged.
const URI_NAME: u8 = 0x86;
/// 2.5.29.17, id-ce-subjectAltName.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DerError {
    /// The structure that could not be read, e.g. `"extensions"`.
    pub at: &'static str,
}

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "certificate DER is malformed at {}", self.at)
    }
}

/// Every URI SAN of the DER certificate, in order; empty when it has no SAN extension.
pub fn uri_sans(der: &[u8]) -> Result<Vec<&[u8]>, DerError> {
    let (certificate, rest) = expect(der, SEQUENCE, "certificate")?;
    if !rest.is_empty() {
        return Err(DerError { at: "certificate" });
    }
    let (tbs, _) = expect(certificate, SEQUENCE, "tbsCertificate")?;

    let mut fields = tbs;
    let mut sans = Vec::new();
    let mut seen_san_extension = false;
    while !fields.is_empty() {
        let (tag, content, rest) = tlv(fields, "tbsCertificate")?;
        fields = rest;
        if tag != EXTENSIONS {
            continue;
        }
        let (mut extensions, _) = expect(content, SEQUENCE, "extensions")?;
        while !extensions.is_empty() {
            let (extension, rest) = expect(extensions, SEQUENCE, "extension")?;
            extensions = rest;
            let Some(names) = san_extension(extension)? else {
                continue;
            };
            // RFC 5280 section 4.2: an extension appears at most once; two would hide a SAN.
            if seen_san_extension {
                return Err(DerError {
                    at: "second subjectAltName extension",
                });
            }
            seen_san_extension = true;
            collect_uris(names, &mut sans)?;
        }
    }
    Ok(sans)
}

/// The `GeneralNames` of a subjectAltName extension; `None` for any other extension.
fn san_extension(extension: &[u8]) -> Result<Option<&[u8]>, DerError> {
    let (oid, mut rest) = expect(extension, OID, "extension id")?;
    if oid != SUBJECT_ALT_NAME {
        return Ok(None);
    }
    if let Some(&BOOLEAN) = rest.first() {
        let (_, after) = expect(rest, BOOLEAN, "extension critical flag")?;
        rest = after;
    }
    let (value, _) = expect(rest, OCTET_STRING, "extension value")?;
    let (names, _) = expect(value, SEQUENCE, "subjectAltName")?;
    Ok(Some(names))
}

fn collect_uris<'a>(mut names: &'a [u8], out: &mut Vec<&'a [u8]>) -> Result<(), DerError> {
    while !names.is_empty() {
        let (tag, content, rest) = tlv(names, "subjectAltName entry")?;
        names = rest;
        if tag == URI_NAME {
            out.push(content);
        }
    }
    Ok(())
}

fn expect<'a>(
    input: &'a [u8],
    want: u8,
    at: &'static str,
) -> Result<(&'a [u8], &'a [u8]), DerError> {
    match tlv(input, at)? {
        (tag, content, rest) if tag == want => Ok((content, rest)),
        _ => Err(DerError { at }),
    }
}

/// One tag-length-value: the tag byte, the content and what follows. Only the forms DER allows
/// for certificates: single-byte tags and definite lengths of at most four bytes.
fn tlv<'a>(input: &'a [u8], at: &'static str) -> Result<(u8, &'a [u8], &'a [u8]), DerError> {
    let err = DerError { at };
    let (&tag, rest) = input.split_first().ok_or(err)?;
    if tag & 0x1f == 0x1f {
        return Err(err);
    }
    let (&first, mut rest) = rest.split_first().ok_or(err)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return Err(err);
        }
        let (bytes, after) = rest.split_at_checked(count).ok_or(err)?;
        rest = after;
        bytes
            .iter()
            .fold(0usize, |len, b| (len << 8) | usize::from(*b))
    };
    let (content, rest) = rest.split_at_checked(len).ok_or(err)?;
    Ok((tag, content, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    // The same tables run on wasm32 under wasm-bindgen-test (`make wasm-test`).
    use crate::identity::testdata;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn sans_of(pem: &str) -> Vec<String> {
        let der = crate::identity::peer_certificate::pem_to_der(pem.as_bytes()).unwrap();
        uri_sans(&der)
            .unwrap()
            .iter()
            .map(|s| String::from_utf8(s.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn finds_the_single_uri_san_of_an_svid() {
        assert_eq!(
            sans_of(testdata::SVID_CHECKOUT),
            ["spiffe://example.org/ns/payments/sa/checkout"]
        );
    }

    #[test]
    fn finds_every_uri_san_in_order() {
        assert_eq!(
            sans_of(testdata::TWO_URI_SANS),
            [
                "spiffe://example.org/ns/a/sa/one",
                "spiffe://example.org/ns/b/sa/two"
            ]
        );
    }

    #[test]
    fn ignores_dns_sans_and_certificates_without_sans() {
        assert!(sans_of(testdata::DNS_SAN_ONLY).is_empty());
        assert!(sans_of(testdata::NO_EXTENSIONS).is_empty());
    }

    #[test]
    fn refuses_truncated_or_padded_der() {
        let der = crate::identity::peer_certificate::pem_to_der(testdata::SVID_CHECKOUT.as_bytes())
            .unwrap();
        for cut in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
            assert!(uri_sans(&der[..cut]).is_err(), "cut at {cut}");
        }
        let mut padded = der.clone();
        padded.push(0);
        assert_eq!(uri_sans(&padded), Err(DerError { at: "certificate" }));
    }

    #[test]
    fn refuses_indefinite_and_oversized_lengths() {
        assert!(tlv(&[0x30, 0x80, 0, 0], "x").is_err());
        assert!(tlv(&[0x30, 0x85, 1, 1, 1, 1, 1], "x").is_err());
        assert!(tlv(&[0x30, 0x82, 0xff, 0xff], "x").is_err());
        assert!(tlv(&[0x1f, 0x01, 0x00], "x").is_err());
        assert_eq!(
            tlv(&[0x04, 0x81, 0x01, 0xaa], "x"),
            Ok((0x04, &[0xaa][..], &[][..]))
        );
    }

    #[test]
    fn survives_every_single_byte_corruption() {
        let der = crate::identity::peer_certificate::pem_to_der(testdata::TWO_URI_SANS.as_bytes())
            .unwrap();
        for i in 0..der.len() {
            let mut bad = der.clone();
            bad[i] ^= 0xff;
            let _ = uri_sans(&bad);
        }
    }
}
