//! Compiles the `identity` section: the ordered sources, the trust domains and each source's
//! settings. A source's settings are required exactly when the source is listed, so a trusted
//! XFCC hop or a JWT-SVID bundle is never configured by accident or left unused.

use std::time::Duration;

use super::raw::{
    RawIdentity, RawIdentitySource, RawJwtSvid, RawLocalWorkload, RawXfcc, RawXfccElement,
};
use super::{header_name, optional_duration, ConfigError};
use crate::identity::{
    IdentitySettings, JwtSvidSettings, JwtSvidVerifier, LocalWorkload, Source, SpiffeId,
    TrustDomains, XfccElementChoice,
};

/// The SPIFFE JWT-SVID profile expects small skews; jwt-simple would allow 15 minutes.
const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(60);
const MAX_JWT_LEEWAY: Duration = Duration::from_secs(300);

pub fn compile_identity(raw: RawIdentity) -> Result<IdentitySettings, ConfigError> {
    if raw.sources.is_empty() {
        return Err(ConfigError::new(
            "identity.sources",
            "list at least one identity source",
        ));
    }
    let mut sources = Vec::with_capacity(raw.sources.len());
    for (i, raw_source) in raw.sources.iter().enumerate() {
        let source = match raw_source {
            RawIdentitySource::PeerCertificate => Source::PeerCertificate,
            RawIdentitySource::Xfcc => Source::Xfcc,
            RawIdentitySource::JwtSvid => Source::JwtSvid,
            RawIdentitySource::LocalWorkload => Source::LocalWorkload,
        };
        if sources.contains(&source) {
            let reason = format!("{source} is listed twice");
            return Err(ConfigError::new(format!("identity.sources[{i}]"), reason));
        }
        sources.push(source);
    }
    let trust_domains = compile_trust_domains(&raw.trust_domains)?;
    let listed = |source| sources.contains(&source);

    let xfcc = match (listed(Source::Xfcc), raw.xfcc) {
        (true, Some(xfcc)) => Some(compile_xfcc(xfcc)?),
        (true, None) => return Err(required("identity.xfcc", "xfcc")),
        (false, Some(_)) => return Err(unused("identity.xfcc", "xfcc")),
        (false, None) => None,
    };
    let jwt_svid = match (listed(Source::JwtSvid), raw.jwt_svid) {
        (true, Some(jwt)) => Some(compile_jwt_svid(jwt)?),
        (true, None) => return Err(required("identity.jwt_svid", "jwt_svid")),
        (false, Some(_)) => return Err(unused("identity.jwt_svid", "jwt_svid")),
        (false, None) => None,
    };
    let local_workload = match (listed(Source::LocalWorkload), raw.local_workload) {
        (true, Some(local)) => Some(compile_local_workload(local, &trust_domains)?),
        (true, None) => return Err(required("identity.local_workload", "local_workload")),
        (false, Some(_)) => return Err(unused("identity.local_workload", "local_workload")),
        (false, None) => None,
    };

    Ok(IdentitySettings {
        sources,
        trust_domains,
        xfcc,
        jwt_svid,
        local_workload,
    })
}

fn required(field: &str, source: &str) -> ConfigError {
    ConfigError::new(
        field,
        format!("required when {source} is in identity.sources"),
    )
}

fn unused(field: &str, source: &str) -> ConfigError {
    ConfigError::new(
        field,
        format!("{source} is not in identity.sources; remove this"),
    )
}

fn compile_trust_domains(raw: &[String]) -> Result<TrustDomains, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new(
            "identity.trust_domains",
            "list at least one trust domain",
        ));
    }
    for (i, td) in raw.iter().enumerate() {
        check_trust_domain(td, &format!("identity.trust_domains[{i}]"))?;
    }
    Ok(TrustDomains::new(raw.to_vec()))
}

fn check_trust_domain(td: &str, field: &str) -> Result<(), ConfigError> {
    match SpiffeId::parse(&format!("spiffe://{td}")) {
        Ok(id) if id.path().is_empty() => Ok(()),
        Ok(_) => Err(ConfigError::new(field, "not a bare trust domain")),
        Err(e) => Err(ConfigError::new(field, e.to_string())),
    }
}

fn compile_xfcc(raw: RawXfcc) -> Result<XfccElementChoice, ConfigError> {
    // Anyone can send this header; only a hop that sanitises and sets it may be believed.
    if !raw.trusted {
        return Err(ConfigError::new(
            "identity.xfcc.trusted",
            "set to true only if the previous hop always sets x-forwarded-client-cert itself",
        ));
    }
    Ok(match raw.element {
        RawXfccElement::First => XfccElementChoice::First,
        RawXfccElement::Last => XfccElementChoice::Last,
    })
}

fn compile_jwt_svid(raw: RawJwtSvid) -> Result<JwtSvidSettings, ConfigError> {
    let header = header_name(&raw.header, "identity.jwt_svid.header")?;
    if raw.audiences.is_empty() || raw.audiences.iter().any(String::is_empty) {
        return Err(ConfigError::new(
            "identity.jwt_svid.audiences",
            "list the non-empty audiences a JWT-SVID must be issued for",
        ));
    }
    let leeway = optional_duration(
        raw.leeway.as_deref(),
        "identity.jwt_svid.leeway",
        DEFAULT_JWT_LEEWAY,
    )?;
    if leeway > MAX_JWT_LEEWAY {
        return Err(ConfigError::new(
            "identity.jwt_svid.leeway",
            "at most 5m; a larger clock skew should be fixed at the clocks",
        ));
    }
    let verifier = JwtSvidVerifier::new(&raw.jwks, raw.audiences, leeway).map_err(|e| {
        ConfigError::new(
            format!("identity.jwt_svid.jwks.keys[{}]", e.index),
            e.reason,
        )
    })?;
    if verifier.is_empty() {
        return Err(ConfigError::new(
            "identity.jwt_svid.jwks.keys",
            "holds no JWT-SVID key",
        ));
    }
    Ok(JwtSvidSettings {
        header,
        forward: raw.forward,
        verifier,
    })
}

fn compile_local_workload(
    raw: RawLocalWorkload,
    trust_domains: &TrustDomains,
) -> Result<LocalWorkload, ConfigError> {
    match (raw.spiffe_id, raw.trust_domain) {
        (Some(raw_id), None) => {
            let field = "identity.local_workload.spiffe_id";
            let id =
                SpiffeId::parse(&raw_id).map_err(|e| ConfigError::new(field, e.to_string()))?;
            if !trust_domains.allows(&id) {
                return Err(not_listed(field, id.trust_domain()));
            }
            Ok(LocalWorkload::Fixed(id))
        }
        (None, Some(trust_domain)) => {
            let field = "identity.local_workload.trust_domain";
            check_trust_domain(&trust_domain, field)?;
            let probe = SpiffeId::parse(&format!("spiffe://{trust_domain}"))
                .map_err(|e| ConfigError::new(field, e.to_string()))?;
            if !trust_domains.allows(&probe) {
                return Err(not_listed(field, &trust_domain));
            }
            Ok(LocalWorkload::NodeMetadata { trust_domain })
        }
        _ => Err(ConfigError::new(
            "identity.local_workload",
            "give either spiffe_id or trust_domain (with Istio's node metadata)",
        )),
    }
}

fn not_listed(field: &str, trust_domain: &str) -> ConfigError {
    let reason = format!("trust domain {trust_domain} is not in identity.trust_domains");
    ConfigError::new(field, reason)
}
