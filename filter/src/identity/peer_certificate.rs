//! The `peer_certificate` source: Envoy's `connection.peer_certificate`, the verified downstream
//! leaf as URL-encoded PEM. An X.509-SVID has exactly one URI SAN (X509-SVID section 2), which
//! Envoy's `connection.uri_san_peer_certificate` cannot show: it returns only the first one.

use std::fmt;

use base64::prelude::{Engine as _, BASE64_STANDARD};

use super::x509::{self, DerError};
use super::{IdentityError, Source, SpiffeId};

const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const END: &[u8] = b"-----END CERTIFICATE-----";
/// Far above any real SVID; bounds the work done on whatever the property holds.
const MAX_ENCODED_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateError {
    TooLarge { len: usize },
    BadPercentEncoding,
    NotPem,
    BadBase64,
    Der(DerError),
}

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len } => write!(f, "peer certificate of {len} bytes is too large"),
            Self::BadPercentEncoding => write!(f, "peer certificate is not URL-encoded"),
            Self::NotPem => write!(f, "peer certificate is not a PEM certificate"),
            Self::BadBase64 => write!(f, "peer certificate PEM holds invalid base64"),
            Self::Der(e) => e.fmt(f),
        }
    }
}

/// The SPIFFE ID of the peer certificate. `Ok(None)` when no certificate was presented or it
/// has no URI SAN: such a certificate names no SPIFFE identity, so a later source may.
pub fn spiffe_id(url_encoded_pem: &[u8]) -> Result<Option<SpiffeId>, IdentityError> {
    if url_encoded_pem.is_empty() {
        return Ok(None);
    }
    let der = decode(url_encoded_pem).map_err(IdentityError::BadCertificate)?;
    let sans = x509::uri_sans(&der)
        .map_err(|e| IdentityError::BadCertificate(CertificateError::Der(e)))?;
    match sans.as_slice() {
        [] => Ok(None),
        [only] => SpiffeId::parse_bytes(only)
            .map(Some)
            .map_err(|error| IdentityError::NotSpiffe {
                source: Source::PeerCertificate,
                error,
            }),
        several => Err(IdentityError::Ambiguous {
            source: Source::PeerCertificate,
            uri_sans: several.len(),
        }),
    }
}

fn decode(url_encoded_pem: &[u8]) -> Result<Vec<u8>, CertificateError> {
    if url_encoded_pem.len() > MAX_ENCODED_BYTES {
        return Err(CertificateError::TooLarge {
            len: url_encoded_pem.len(),
        });
    }
    let pem = percent_decode(url_encoded_pem)?;
    pem_to_der(&pem)
}

/// `%XX` escapes to bytes; everything else as is (Envoy does not encode spaces as `+`).
pub fn percent_decode(input: &[u8]) -> Result<Vec<u8>, CertificateError> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    // Runs between escapes are copied whole, not byte by byte: this is on every request's path.
    while let Some(at) = memchr::memchr(b'%', rest) {
        let (run, escape) = rest.split_at(at);
        out.extend_from_slice(run);
        let Some(([_, high, low], after)) = escape.split_first_chunk() else {
            return Err(CertificateError::BadPercentEncoding);
        };
        match (hex_value(*high), hex_value(*low)) {
            (Some(high), Some(low)) => out.push(high << 4 | low),
            _ => return Err(CertificateError::BadPercentEncoding),
        }
        rest = after;
    }
    out.extend_from_slice(rest);
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The DER of the first `CERTIFICATE` block; Envoy's property holds the leaf only.
pub fn pem_to_der(pem: &[u8]) -> Result<Vec<u8>, CertificateError> {
    let start = find(pem, BEGIN).ok_or(CertificateError::NotPem)? + BEGIN.len();
    let body = pem.get(start..).ok_or(CertificateError::NotPem)?;
    let end = find(body, END).ok_or(CertificateError::NotPem)?;
    let mut base64 = body.get(..end).ok_or(CertificateError::NotPem)?.to_vec();

    // The base64 crate cannot skip line breaks, so they go first. A certificate is public, so a
    // constant-time decoder would only cost time; this one is as strict about padding and
    // trailing bits.
    base64.retain(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'));
    BASE64_STANDARD
        .decode(&base64)
        .map_err(|_| CertificateError::BadBase64)
}

/// Where `needle` first starts; only the candidates at its first byte are compared.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(offset) = memchr::memchr(first, haystack.get(from..)?) {
        let at = from + offset;
        if haystack.get(at..)?.starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    // The same tables run on wasm32 under wasm-bindgen-test (`make wasm-test`).
    use crate::identity::testdata;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// As Envoy hands it over: every byte outside the unreserved set percent-encoded.
    fn url_encoded(pem: &str) -> Vec<u8> {
        let mut out = String::new();
        for b in pem.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out.into_bytes()
    }

    #[test]
    fn reads_the_spiffe_id_of_an_svid() {
        let id = spiffe_id(&url_encoded(testdata::SVID_CHECKOUT)).unwrap();
        assert_eq!(
            id.unwrap().as_str(),
            "spiffe://example.org/ns/payments/sa/checkout"
        );
    }

    #[test]
    fn refuses_a_certificate_with_two_uri_sans() {
        let err = spiffe_id(&url_encoded(testdata::TWO_URI_SANS)).unwrap_err();
        assert_eq!(
            err,
            IdentityError::Ambiguous {
                source: Source::PeerCertificate,
                uri_sans: 2
            }
        );
    }

    #[test]
    fn a_certificate_without_uri_san_names_no_identity() {
        assert_eq!(spiffe_id(&url_encoded(testdata::DNS_SAN_ONLY)), Ok(None));
        assert_eq!(spiffe_id(&url_encoded(testdata::NO_EXTENSIONS)), Ok(None));
        assert_eq!(spiffe_id(b""), Ok(None));
    }

    #[test]
    fn reads_a_critical_san_extension_with_other_names() {
        let id = spiffe_id(&url_encoded(testdata::CRITICAL_SAN_WITH_DNS)).unwrap();
        assert_eq!(id.unwrap().as_str(), "spiffe://example.org/ns/x/sa/y");
    }

    #[test]
    fn accepts_unencoded_pem_too() {
        let id = spiffe_id(testdata::SVID_CHECKOUT.as_bytes()).unwrap();
        assert!(id.is_some());
    }

    #[test]
    fn refuses_broken_encodings_with_their_reason() {
        let bad = |input: &[u8]| match spiffe_id(input) {
            Err(IdentityError::BadCertificate(reason)) => reason,
            other => panic!("expected a certificate error, got {other:?}"),
        };
        assert_eq!(bad(b"%zz"), CertificateError::BadPercentEncoding);
        assert_eq!(bad(b"%4"), CertificateError::BadPercentEncoding);
        assert_eq!(bad(b"not a pem"), CertificateError::NotPem);
        assert_eq!(
            bad(b"-----BEGIN CERTIFICATE-----abc"),
            CertificateError::NotPem
        );
        assert_eq!(
            bad(b"-----BEGIN CERTIFICATE-----\n*\n-----END CERTIFICATE-----"),
            CertificateError::BadBase64
        );
        assert!(matches!(
            bad(b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----"),
            CertificateError::Der(_)
        ));
        let huge = vec![b'a'; MAX_ENCODED_BYTES + 1];
        assert!(matches!(bad(&huge), CertificateError::TooLarge { .. }));
    }

    #[test]
    fn non_utf8_bytes_are_refused_not_panicked_on() {
        assert!(spiffe_id(b"\xff\xfe%ff").is_err());
    }

    #[test]
    fn reads_base64_broken_anywhere_by_whitespace_but_only_in_canonical_form() {
        let der = |body: &str| {
            let pem = format!("-----BEGIN CERTIFICATE-----{body}-----END CERTIFICATE-----");
            pem_to_der(pem.as_bytes())
        };
        assert_eq!(der("MAE="), Ok(vec![0x30, 0x01]));
        assert_eq!(der("\r\nM A\tE\n=\r\n"), Ok(vec![0x30, 0x01]));
        assert_eq!(der("MA=\n="), Ok(vec![0x30]));
        assert_eq!(der(""), Ok(vec![]));
        for bad in [
            "MAE", "MA=", "MAB=", "MA==MA==", "MA===", "M", "MA-_", "MAE=\x0c",
        ] {
            assert_eq!(der(bad), Err(CertificateError::BadBase64), "{bad:?}");
        }
    }
}
