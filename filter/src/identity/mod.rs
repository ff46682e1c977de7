//! Who is calling. An identity comes only from something the mesh verified; anything else is
//! refused with a reason, never guessed. `resolve` tries the configured sources in order.

mod jwt_svid;
mod pattern;
mod peer_certificate;
mod resolve;
mod spiffe;
mod spoofing;
#[cfg(test)]
mod testdata;
mod x509;
mod xfcc;

pub use jwt_svid::{Algorithm, JwksError, JwtSvidError, JwtSvidVerifier, MAX_TOKEN_BYTES};
pub use pattern::IdentityPattern;
pub use peer_certificate::CertificateError;
pub use resolve::{
    resolve, IdentityInputs, IdentitySettings, JwtSvidSettings, LocalWorkload, Resolved,
};
pub use spiffe::{is_segment_byte, SpiffeId, SpiffeIdError};
pub use spoofing::{spoofed_headers, OWN_HEADER_PREFIX, XFCC_HEADER};
pub use x509::{uri_sans, DerError};
pub use xfcc::{
    parse as parse_xfcc, spiffe_id as xfcc_spiffe_id, XfccElement, XfccElementChoice, XfccError,
};

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

/// Where an identity came from; the names are those of `identity.sources`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    PeerCertificate,
    Xfcc,
    JwtSvid,
    LocalWorkload,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Self::PeerCertificate => "peer_certificate",
            Self::Xfcc => "xfcc",
            Self::JwtSvid => "jwt_svid",
            Self::LocalWorkload => "local_workload",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why no identity was accepted. Each variant maps to its own error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// No configured source carried an identity.
    Missing,
    /// An X.509-SVID or XFCC element must name exactly one URI.
    Ambiguous {
        source: Source,
        uri_sans: usize,
    },
    NotSpiffe {
        source: Source,
        error: SpiffeIdError,
    },
    UntrustedDomain {
        source: Source,
        trust_domain: String,
    },
    BadCertificate(CertificateError),
    BadXfcc(XfccError),
    /// The header arrived more than once; which copy a hop appended to cannot be known.
    RepeatedHeader {
        source: Source,
    },
    BadJwtSvid(JwtSvidError),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => write!(f, "no configured source carried an identity"),
            Self::Ambiguous { source, uri_sans } => {
                write!(f, "{source} names {uri_sans} URIs; exactly one is allowed")
            }
            Self::NotSpiffe { source, error } => {
                write!(f, "{source} identity is not a SPIFFE ID: {error}")
            }
            Self::UntrustedDomain {
                source,
                trust_domain,
            } => write!(f, "{source} trust domain {trust_domain} is not trusted"),
            Self::BadCertificate(e) => e.fmt(f),
            Self::BadXfcc(e) => e.fmt(f),
            Self::RepeatedHeader { source } => write!(f, "{source} header sent more than once"),
            Self::BadJwtSvid(e) => e.fmt(f),
        }
    }
}
