//! Who is calling. An identity comes only from something the mesh verified; anything else is
//! refused with a reason, never guessed.

mod pattern;
mod spiffe;

pub use pattern::IdentityPattern;
pub use spiffe::{is_segment_byte, SpiffeId, SpiffeIdError};

use std::fmt;

/// Trust domains whose identities the filter accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustDomains(Vec<String>);

impl TrustDomains {
    pub fn new(domains: Vec<String>) -> Self {
        Self(domains)
    }

    pub fn allows(&self, id: &SpiffeId) -> bool {
        self.0.iter().any(|td| td == id.trust_domain())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// No verified peer certificate with a URI SAN on the downstream connection.
    Missing,
    Malformed(SpiffeIdError),
    UntrustedDomain {
        trust_domain: String,
    },
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => write!(f, "no verified peer identity"),
            Self::Malformed(e) => write!(f, "peer identity is not a SPIFFE ID: {e}"),
            Self::UntrustedDomain { trust_domain } => {
                write!(f, "trust domain {trust_domain} is not trusted")
            }
        }
    }
}

/// Resolves the caller from the URI SAN of the verified downstream certificate.
///
/// TODO(#3): parse `connection.peer_certificate` so that a certificate with several URI SANs is
/// refused; Envoy's `uri_san_peer_certificate` shows only the first one.
pub fn from_peer_uri_san(
    uri_san: Option<&[u8]>,
    trusted: &TrustDomains,
) -> Result<SpiffeId, IdentityError> {
    let raw = match uri_san {
        Some(raw) if !raw.is_empty() => raw,
        _ => return Err(IdentityError::Missing),
    };
    let id = SpiffeId::parse_bytes(raw).map_err(IdentityError::Malformed)?;
    if !trusted.allows(&id) {
        let trust_domain = id.trust_domain().to_string();
        return Err(IdentityError::UntrustedDomain { trust_domain });
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_org() -> TrustDomains {
        TrustDomains::new(vec!["example.org".into()])
    }

    #[test]
    fn accepts_svid_from_trusted_domain() {
        let id = from_peer_uri_san(Some(b"spiffe://example.org/ns/a/sa/b"), &example_org());
        assert_eq!(id.unwrap().as_str(), "spiffe://example.org/ns/a/sa/b");
    }

    #[test]
    fn missing_or_empty_san_is_no_identity() {
        assert_eq!(
            from_peer_uri_san(None, &example_org()),
            Err(IdentityError::Missing)
        );
        assert_eq!(
            from_peer_uri_san(Some(b""), &example_org()),
            Err(IdentityError::Missing)
        );
    }

    #[test]
    fn refuses_other_trust_domains() {
        let err = from_peer_uri_san(Some(b"spiffe://evil.example/x"), &example_org()).unwrap_err();
        assert_eq!(
            err,
            IdentityError::UntrustedDomain {
                trust_domain: "evil.example".into()
            }
        );
    }

    #[test]
    fn refuses_non_spiffe_san_without_panicking_on_bytes() {
        let err = from_peer_uri_san(Some(b"https://example.org/\xff"), &example_org());
        assert!(matches!(err, Err(IdentityError::Malformed(_))));
    }
}
