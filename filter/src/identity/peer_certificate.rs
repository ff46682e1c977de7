//! The `peer_certificate` source: Envoy's `connection.peer_certificate`, the verified downstream
//! leaf as URL-encoded PEM. An X.509-SVID has exactly one URI SAN (X509-SVID section 2), which
//! Envoy's `connection.uri_san_peer_certificate` cannot show: it returns only the first one.

use std::fmt;

use ct_codecs::{Base64, Decoder};

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
    let mut bytes = input.iter();
    while let Some(&b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let high = bytes.next().and_then(|h| hex_value(*h));
        let low = bytes.next().and_then(|l| hex_value(*l));
        match (high, low) {
            (Some(high), Some(low)) => out.push(high << 4 | low),
            _ => return Err(CertificateError::BadPercentEncoding),
        }
    }
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
    let base64 = body.get(..end).ok_or(CertificateError::NotPem)?;
    Base64::decode_to_vec(base64, Some(b"\r\n \t")).map_err(|_| CertificateError::BadBase64)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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
}
