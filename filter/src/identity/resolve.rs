//! The configured identity sources, tried in order: the first source that carries an identity
//! decides. A source whose input is absent is skipped; one whose input is present but wrong
//! (two URI SANs, a bad signature, a foreign trust domain) refuses the request, so a forged or
//! broken identity can never be papered over by a later source.

use super::jwt_svid::JwtSvidVerifier;
use super::xfcc::{self, XfccElementChoice};
use super::{peer_certificate, IdentityError, Source, SpiffeId, TrustDomains, XFCC_HEADER};
use crate::vault::Secret;

/// The compiled `identity` section of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySettings {
    pub sources: Vec<Source>,
    pub trust_domains: TrustDomains,
    /// Set only when `xfcc` is a source, which the config allows only for a trusted hop.
    pub xfcc: Option<XfccElementChoice>,
    pub jwt_svid: Option<JwtSvidSettings>,
    pub local_workload: Option<LocalWorkload>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSvidSettings {
    /// Lowercase header name; `authorization` carries the token as `Bearer <token>`.
    pub header: String,
    /// Whether the token goes on to the upstream; by default it is removed.
    pub forward: bool,
    pub verifier: JwtSvidVerifier,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalWorkload {
    Fixed(SpiffeId),
    /// `spiffe://<trust_domain>/ns/<NAMESPACE>/sa/<SERVICE_ACCOUNT>` from Envoy's node
    /// metadata, which Istio sets for every sidecar.
    NodeMetadata {
        trust_domain: String,
    },
}

impl IdentitySettings {
    pub fn uses(&self, source: Source) -> bool {
        self.sources.contains(&source)
    }

    /// Whether the node metadata must be read for `local_workload`.
    pub fn needs_node_metadata(&self) -> bool {
        self.uses(Source::LocalWorkload)
            && matches!(
                self.local_workload,
                Some(LocalWorkload::NodeMetadata { .. })
            )
    }
}

/// What the proxy saw, as bytes. Only the parts of configured sources need to be filled.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdentityInputs<'a> {
    /// The request headers; names lowercase, as Envoy hands them over.
    pub headers: &'a [(String, Vec<u8>)],
    /// `connection.peer_certificate`: the verified downstream leaf, URL-encoded PEM.
    pub peer_certificate: Option<&'a [u8]>,
    /// `node.metadata.NAMESPACE` and `node.metadata.SERVICE_ACCOUNT`.
    pub node_namespace: Option<&'a [u8]>,
    pub node_service_account: Option<&'a [u8]>,
}

/// The accepted caller and the source that named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub id: SpiffeId,
    pub source: Source,
    /// The verified JWT-SVID itself when it named the caller: vault `jwt` logins present it.
    pub jwt_svid: Option<Secret>,
}

/// Tries each source in the configured order; `now_s` is for JWT-SVID time checks.
pub fn resolve(
    settings: &IdentitySettings,
    inputs: &IdentityInputs<'_>,
    now_s: u64,
) -> Result<Resolved, IdentityError> {
    for &source in &settings.sources {
        let Some((id, jwt_svid)) = from_source(settings, source, inputs, now_s)? else {
            continue;
        };
        if !settings.trust_domains.allows(&id) {
            let trust_domain = id.trust_domain().to_string();
            return Err(IdentityError::UntrustedDomain {
                source,
                trust_domain,
            });
        }
        return Ok(Resolved {
            id,
            source,
            jwt_svid,
        });
    }
    Err(IdentityError::Missing)
}

/// The caller's ID from one source, with the JWT-SVID that proved it when there was one.
fn from_source(
    settings: &IdentitySettings,
    source: Source,
    inputs: &IdentityInputs<'_>,
    now_s: u64,
) -> Result<Option<(SpiffeId, Option<Secret>)>, IdentityError> {
    let without_token = |id: Option<SpiffeId>| id.map(|id| (id, None));
    match source {
        Source::PeerCertificate => match inputs.peer_certificate {
            Some(pem) => peer_certificate::spiffe_id(pem).map(without_token),
            None => Ok(None),
        },
        Source::Xfcc => {
            // Never read unless the config declared the previous hop trusted.
            let Some(choice) = settings.xfcc else {
                return Ok(None);
            };
            match single_header(inputs.headers, XFCC_HEADER, source)? {
                Some(value) => xfcc::spiffe_id(value, choice).map(without_token),
                None => Ok(None),
            }
        }
        Source::JwtSvid => {
            let Some(jwt) = &settings.jwt_svid else {
                return Ok(None);
            };
            let Some(value) = single_header(inputs.headers, &jwt.header, source)? else {
                return Ok(None);
            };
            let Some(token) = bearer_token(value, &jwt.header) else {
                return Ok(None);
            };
            let id = jwt
                .verifier
                .verify(token, now_s)
                .map_err(IdentityError::BadJwtSvid)?;
            let token = String::from_utf8_lossy(token).into_owned();
            Ok(Some((id, Some(Secret::new(token)))))
        }
        Source::LocalWorkload => {
            local_workload(settings.local_workload.as_ref(), inputs).map(without_token)
        }
    }
}

fn local_workload(
    local: Option<&LocalWorkload>,
    inputs: &IdentityInputs<'_>,
) -> Result<Option<SpiffeId>, IdentityError> {
    let trust_domain = match local {
        None => return Ok(None),
        Some(LocalWorkload::Fixed(id)) => return Ok(Some(id.clone())),
        Some(LocalWorkload::NodeMetadata { trust_domain }) => trust_domain,
    };
    let (Some(namespace), Some(service_account)) =
        (inputs.node_namespace, inputs.node_service_account)
    else {
        return Ok(None);
    };
    if namespace.is_empty() || service_account.is_empty() {
        return Ok(None);
    }
    // Built as bytes so that whatever the metadata holds is judged by the SPIFFE ID parser.
    let mut raw = format!("spiffe://{trust_domain}/ns/").into_bytes();
    raw.extend_from_slice(namespace);
    raw.extend_from_slice(b"/sa/");
    raw.extend_from_slice(service_account);
    SpiffeId::parse_bytes(&raw)
        .map(Some)
        .map_err(|error| IdentityError::NotSpiffe {
            source: Source::LocalWorkload,
            error,
        })
}

/// The one value of header `name`; a repeated identity header is refused.
fn single_header<'a>(
    headers: &'a [(String, Vec<u8>)],
    name: &str,
    source: Source,
) -> Result<Option<&'a [u8]>, IdentityError> {
    let mut values = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice());
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => Ok(Some(value)),
        (Some(_), Some(_)) => Err(IdentityError::RepeatedHeader { source }),
    }
}

/// The token in the header value. In `authorization` only the `Bearer` scheme holds one (any
/// other scheme is some other credential, not a JWT-SVID); elsewhere the prefix is optional.
fn bearer_token<'a>(value: &'a [u8], header: &str) -> Option<&'a [u8]> {
    const BEARER: &[u8] = b"bearer ";
    let has_prefix = value
        .get(..BEARER.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(BEARER));
    let token = match (has_prefix, header == "authorization") {
        (true, _) => value.get(BEARER.len()..)?,
        (false, true) => return None,
        (false, false) => value,
    };
    let token = token.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests;
