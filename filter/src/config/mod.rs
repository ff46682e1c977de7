//! Plugin configuration: raw serde types compiled into the validated [`Config`] the filter runs
//! on. Every refusal names the field (`bindings[0].credential.path`) and says what to change.

mod duration;
mod identity;
mod raw;

use std::fmt;
use std::time::Duration;

use crate::binding::{
    is_safe_vault_path, Binding, CredentialSource, HeaderTemplate, HostPattern, OnError,
    PATH_VARIABLES,
};
use crate::identity::{is_segment_byte, IdentityPattern, IdentitySettings, SpiffeId, TrustDomains};
use crate::template::Template;
use raw::{RawAuth, RawBinding, RawConfig, RawCredential, RawOnError, RawVault};

pub const SUPPORTED_VERSION: u32 = 1;
const DEFAULT_VAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Vault Agent re-reads static secrets every 5 minutes by default; users expect the same here.
const DEFAULT_KV_REFRESH: Duration = Duration::from_secs(300);
const DEFAULT_EXPIRY_MARGIN: Duration = Duration::from_secs(5);
/// Caller credentials removed on every bound request, whatever the binding's `strip` adds.
pub const ALWAYS_STRIPPED: [&str; 3] = ["authorization", "proxy-authorization", "x-vault-token"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Hash of the configuration bytes: cache keys carry it, so a new config never reads
    /// entries written under an old one.
    pub generation: u64,
    pub vault: VaultSettings,
    pub identity: IdentitySettings,
    pub bindings: Vec<Binding>,
    pub expiry_margin: Duration,
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
            let field = if path == "." {
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

    let expiry_margin = optional_duration(
        raw.cache.expiry_margin.as_deref(),
        "cache.expiry_margin",
        DEFAULT_EXPIRY_MARGIN,
    )?;
    Ok(Config {
        generation,
        vault,
        identity,
        bindings,
        expiry_margin,
    })
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

    let (credential, offered_field) =
        compile_credential(raw.credential, &format!("{at}.credential"))?;

    if raw.inject.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.inject"),
            "list at least one header to inject",
        ));
    }
    let mut inject = Vec::with_capacity(raw.inject.len());
    for (i, item) in raw.inject.into_iter().enumerate() {
        let name = header_name(&item.header, &format!("{at}.inject[{i}].header"))?;
        let field = format!("{at}.inject[{i}].value");
        let value =
            Template::parse(&item.value).map_err(|e| ConfigError::new(&field, e.to_string()))?;
        if value.variables().next().is_none() {
            return Err(ConfigError::new(
                field,
                "name a field of the secret, such as {token}",
            ));
        }
        if let Some(offered) = &offered_field {
            if let Some(other) = value.variables().find(|v| v != offered) {
                let reason = format!("{{{other}}} is not the credential's field {offered:?}");
                return Err(ConfigError::new(field, reason));
            }
        }
        inject.push(HeaderTemplate { name, value });
    }

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

/// Compiles the credential source; also returns the one field it offers, when that is fixed.
fn compile_credential(
    raw: RawCredential,
    at: &str,
) -> Result<(CredentialSource, Option<String>), ConfigError> {
    let RawCredential::Kv2 {
        mount,
        path,
        field,
        refresh,
    } = raw;
    if !is_safe_vault_path(&mount) || mount == "sys" || mount.starts_with("sys/") {
        return Err(ConfigError::new(
            format!("{at}.mount"),
            "not a secrets engine mount path",
        ));
    }
    let path_field = format!("{at}.path");
    let template =
        Template::parse(&path).map_err(|e| ConfigError::new(&path_field, e.to_string()))?;
    if let Some(unknown) = template.variables().find(|v| !PATH_VARIABLES.contains(v)) {
        let reason =
            format!("{{{unknown}}} is not an identity part; use one of {PATH_VARIABLES:?}");
        return Err(ConfigError::new(path_field, reason));
    }
    // Literal parts are checked by rendering with harmless stand-ins for every variable.
    let probe = template.render(|_| Some("x")).unwrap_or_default();
    if !is_safe_vault_path(&probe) {
        let reason = "segments must be non-empty, not '.' or '..', and of [A-Za-z0-9._-]";
        return Err(ConfigError::new(path_field, reason));
    }
    if let Some(field) = &field {
        if field.is_empty() {
            return Err(ConfigError::new(format!("{at}.field"), "must not be empty"));
        }
    }
    let refresh = optional_duration(
        refresh.as_deref(),
        &format!("{at}.refresh"),
        DEFAULT_KV_REFRESH,
    )?;
    if refresh.is_zero() {
        return Err(ConfigError::new(
            format!("{at}.refresh"),
            "must be greater than zero",
        ));
    }
    let source = CredentialSource::Kv2 {
        mount,
        path: template,
        field: field.clone(),
        refresh,
    };
    Ok((source, field))
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

/// FNV-1a: stable across workers and VM reloads, which a std hasher does not promise.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
