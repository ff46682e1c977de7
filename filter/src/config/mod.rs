//! Plugin configuration: raw serde types compiled into the validated [`Config`] the filter runs
//! on. Every refusal names the field (`bindings[0].credential.path`) and says what to change.

mod credential;
mod duration;
mod identity;
mod raw;

use std::fmt;
use std::time::Duration;

use crate::binding::{is_safe_vault_path, Binding, HostPattern, OnError};
use crate::cache::{fnv1a, CachePolicy};
use crate::identity::{
    is_segment_byte, IdentityPattern, IdentitySettings, Source, SpiffeId, TrustDomains,
};
use crate::template::Template;
use raw::{RawAuth, RawBinding, RawCache, RawConfig, RawOnError, RawOnNoBinding, RawVault};

pub const SUPPORTED_VERSION: u32 = 1;
const DEFAULT_VAULT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_EXPIRY_MARGIN: Duration = Duration::from_secs(5);
const DEFAULT_REFRESH_AT: f64 = 0.66;
const DEFAULT_JITTER: f64 = 0.1;
const DEFAULT_MAX_ENTRIES: u32 = 10_000;
const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(500);
const DEFAULT_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(30);
const DEFAULT_INVALIDATION_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(5);
/// Caller credentials removed on every bound request, whatever the binding's `strip` adds.
pub const ALWAYS_STRIPPED: [&str; 3] = ["authorization", "proxy-authorization", "x-vault-token"];

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Hash of the configuration bytes: cache keys carry it, so a new config never reads
    /// entries written under an old one.
    pub generation: u64,
    pub vault: VaultSettings,
    pub identity: IdentitySettings,
    pub bindings: Vec<Binding>,
    /// Refuse (403 `no_binding`) rather than pass a request no binding matches: the bindings
    /// are then the complete list of what identities may reach through this proxy.
    pub deny_unbound: bool,
    pub cache: CachePolicy,
    /// How long a request may wait for its credential before it is answered without one.
    pub max_wait: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultSettings {
    pub cluster: String,
    pub authority: String,
    pub namespace: Option<String>,
    pub timeout: Duration,
    pub auth: VaultAuth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultAuth {
    /// The proxy's own SVID on the vault cluster's TLS; Envoy holds the key.
    Cert { mount: String, role: String },
    /// As the caller, with its verified JWT-SVID: one vault token per caller, so the vault's
    /// policies apply per workload. The role may be rendered from the caller's identity.
    Jwt { mount: String, role: Template },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl Config {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path.is_empty() || path == "." {
                "config".to_string()
            } else {
                path
            };
            ConfigError::new(field, e.into_inner().to_string())
        })?;
        compile(raw, fnv1a(bytes))
    }
}

fn compile(raw: RawConfig, generation: u64) -> Result<Config, ConfigError> {
    if raw.version != SUPPORTED_VERSION {
        let reason = format!(
            "version {} is not supported; use {SUPPORTED_VERSION}",
            raw.version
        );
        return Err(ConfigError::new("version", reason));
    }
    let vault = compile_vault(raw.vault)?;

    let identity = identity::compile_identity(raw.identity)?;
    if matches!(vault.auth, VaultAuth::Jwt { .. }) && !identity.uses(Source::JwtSvid) {
        let reason =
            "a jwt login presents the caller's JWT-SVID: list jwt_svid in identity.sources";
        return Err(ConfigError::new("vault.auth.method", reason));
    }

    let mut bindings: Vec<Binding> = Vec::with_capacity(raw.bindings.len());
    for (i, raw_binding) in raw.bindings.into_iter().enumerate() {
        let binding = compile_binding(
            raw_binding,
            &format!("bindings[{i}]"),
            &identity.trust_domains,
        )?;
        if bindings.iter().any(|b| b.name == binding.name) {
            let reason = format!("name {:?} is used by an earlier binding", binding.name);
            return Err(ConfigError::new(format!("bindings[{i}].name"), reason));
        }
        bindings.push(binding);
    }

    let (cache, max_wait) = compile_cache(raw.cache, &vault)?;
    let deny_unbound = matches!(raw.on_no_binding, RawOnNoBinding::Deny);
    Ok(Config {
        generation,
        vault,
        identity,
        bindings,
        deny_unbound,
        cache,
        max_wait,
    })
}

fn compile_cache(
    raw: RawCache,
    vault: &VaultSettings,
) -> Result<(CachePolicy, Duration), ConfigError> {
    let millis = |field: &str, raw: Option<&str>, default| {
        optional_duration(raw, field, default)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    let refresh_at = raw.refresh_at.unwrap_or(DEFAULT_REFRESH_AT);
    if !(refresh_at > 0.0 && refresh_at < 1.0) {
        return Err(ConfigError::new(
            "cache.refresh_at",
            "must lie between 0 and 1, e.g. 0.66",
        ));
    }
    let jitter = raw.jitter.unwrap_or(DEFAULT_JITTER);
    if !(0.0..=0.5).contains(&jitter) {
        return Err(ConfigError::new(
            "cache.jitter",
            "must lie between 0 and 0.5",
        ));
    }
    let slots = raw.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES);
    if !(2..=1_000_000).contains(&slots) {
        return Err(ConfigError::new(
            "cache.max_entries",
            "must lie between 2 and 1000000",
        ));
    }
    let backoff_base_ms = millis(
        "cache.retry_backoff",
        raw.retry_backoff.as_deref(),
        DEFAULT_RETRY_BACKOFF,
    )?;
    let backoff_max_ms = millis(
        "cache.retry_backoff_max",
        raw.retry_backoff_max.as_deref(),
        DEFAULT_RETRY_BACKOFF_MAX,
    )?;
    if backoff_base_ms == 0 || backoff_max_ms < backoff_base_ms {
        let reason = "must be at least cache.retry_backoff, which must be above zero";
        return Err(ConfigError::new("cache.retry_backoff_max", reason));
    }
    let max_wait = optional_duration(raw.max_wait.as_deref(), "cache.max_wait", DEFAULT_MAX_WAIT)?;
    if max_wait.is_zero() {
        return Err(ConfigError::new(
            "cache.max_wait",
            "must be greater than zero",
        ));
    }
    // A fetch is a login and a read, each bounded by the vault timeout, plus a second for the
    // hops between them; past that, another worker may take the fetch over.
    let lease = vault.timeout * 2 + Duration::from_secs(1);
    let policy = CachePolicy {
        slots,
        refresh_at,
        jitter,
        expiry_margin_ms: millis(
            "cache.expiry_margin",
            raw.expiry_margin.as_deref(),
            DEFAULT_EXPIRY_MARGIN,
        )?,
        negative_ttl_ms: millis(
            "cache.negative_ttl",
            raw.negative_ttl.as_deref(),
            DEFAULT_NEGATIVE_TTL,
        )?,
        backoff_base_ms,
        backoff_max_ms,
        lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
        invalidation_interval_ms: millis(
            "cache.invalidation_interval",
            raw.invalidation_interval.as_deref(),
            DEFAULT_INVALIDATION_INTERVAL,
        )?,
    };
    Ok((policy, max_wait))
}

fn compile_vault(raw: RawVault) -> Result<VaultSettings, ConfigError> {
    if raw.cluster.is_empty() {
        return Err(ConfigError::new(
            "vault.cluster",
            "name the Envoy cluster of the vault",
        ));
    }
    if raw.authority.is_empty() || !is_header_safe(&raw.authority) {
        return Err(ConfigError::new(
            "vault.authority",
            "give the vault's host[:port]",
        ));
    }
    if let Some(namespace) = &raw.namespace {
        if !is_safe_vault_path(namespace) {
            return Err(ConfigError::new(
                "vault.namespace",
                "not a vault namespace path",
            ));
        }
    }
    let timeout = optional_duration(
        raw.timeout.as_deref(),
        "vault.timeout",
        DEFAULT_VAULT_TIMEOUT,
    )?;
    if timeout.is_zero() {
        // Envoy treats a zero dispatch timeout as none at all: a hung vault would hang callers.
        return Err(ConfigError::new(
            "vault.timeout",
            "must be greater than zero",
        ));
    }
    let auth = match raw.auth {
        RawAuth::Cert { mount, role } => {
            if !is_safe_vault_path(&mount) {
                return Err(ConfigError::new(
                    "vault.auth.mount",
                    "not a vault mount path",
                ));
            }
            if role.is_empty() || !is_safe_vault_path(&role) {
                return Err(ConfigError::new(
                    "vault.auth.role",
                    "not a cert auth role name",
                ));
            }
            VaultAuth::Cert { mount, role }
        }
        RawAuth::Jwt { mount, role } => {
            if !is_safe_vault_path(&mount) {
                return Err(ConfigError::new(
                    "vault.auth.mount",
                    "not a vault mount path",
                ));
            }
            VaultAuth::Jwt {
                mount,
                role: credential::role_template(&role, "vault.auth.role")?,
            }
        }
    };
    Ok(VaultSettings {
        cluster: raw.cluster,
        authority: raw.authority,
        namespace: raw.namespace,
        timeout,
        auth,
    })
}

fn compile_binding(
    raw: RawBinding,
    at: &str,
    trust_domains: &TrustDomains,
) -> Result<Binding, ConfigError> {
    if raw.name.is_empty() || !raw.name.bytes().all(is_segment_byte) {
        return Err(ConfigError::new(
            format!("{at}.name"),
            "use a non-empty name of [A-Za-z0-9._-]",
        ));
    }

    if raw.match_.hosts.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.match.hosts"),
            "list at least one host",
        ));
    }
    let hosts = raw
        .match_
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            HostPattern::parse(h).map_err(|e| ConfigError::new(format!("{at}.match.hosts[{i}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(prefix) = &raw.match_.path_prefix {
        if !prefix.starts_with('/') {
            return Err(ConfigError::new(
                format!("{at}.match.path_prefix"),
                "must start with '/'",
            ));
        }
    }
    let mut identities = Vec::with_capacity(raw.match_.identities.len());
    for (i, pattern) in raw.match_.identities.iter().enumerate() {
        let field = format!("{at}.match.identities[{i}]");
        let parsed = IdentityPattern::parse(pattern).map_err(|e| ConfigError::new(&field, e))?;
        let probe = pattern.trim_end_matches("/*");
        if let Ok(id) = SpiffeId::parse(probe) {
            if !trust_domains.allows(&id) {
                let reason = format!(
                    "trust domain {} is not in identity.trust_domains",
                    id.trust_domain()
                );
                return Err(ConfigError::new(field, reason));
            }
        }
        identities.push(parsed);
    }

    let compiled = credential::compile_credential(raw.credential, &format!("{at}.credential"))?;
    let offers = compiled.offers.as_deref();
    let inject = credential::compile_inject(raw.inject, &format!("{at}.inject"), offers)?;
    let credential = compiled.source;

    let mut strip: Vec<String> = ALWAYS_STRIPPED.iter().map(|h| h.to_string()).collect();
    for (i, header) in raw.strip.iter().enumerate() {
        let name = header_name(header, &format!("{at}.strip[{i}]"))?;
        if !strip.contains(&name) {
            strip.push(name);
        }
    }

    let on_error = match raw.on_error {
        RawOnError::Deny => OnError::Deny,
        RawOnError::AllowWithoutCredential => OnError::AllowWithoutCredential,
    };
    Ok(Binding {
        name: raw.name,
        hosts,
        path_prefix: raw.match_.path_prefix,
        identities,
        credential,
        inject,
        strip,
        on_error,
    })
}

pub(crate) fn optional_duration(
    raw: Option<&str>,
    field: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match raw {
        None => Ok(default),
        Some(text) => duration::parse(text).map_err(|reason| ConfigError::new(field, reason)),
    }
}

/// An HTTP/1 token, lowercased (HTTP/2 requires lowercase); pseudo-headers and `host` are refused.
pub(crate) fn header_name(raw: &str, field: &str) -> Result<String, ConfigError> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if raw.is_empty() || !raw.bytes().all(token) {
        return Err(ConfigError::new(
            field,
            format!("{raw:?} is not an HTTP header name"),
        ));
    }
    let name = raw.to_ascii_lowercase();
    if name == "host" {
        return Err(ConfigError::new(field, "the host header cannot be used"));
    }
    Ok(name)
}

fn is_header_safe(value: &str) -> bool {
    !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

#[cfg(test)]
mod tests;
