//! The plugin configuration exactly as users write it (JSON; Istio's `pluginConfig` YAML arrives
//! as this JSON). Unknown fields are refused so that a typo never silently changes behaviour.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub version: u32,
    pub vault: RawVault,
    #[serde(default)]
    pub identity: RawIdentity,
    #[serde(default)]
    pub bindings: Vec<RawBinding>,
    #[serde(default)]
    pub on_no_binding: RawOnNoBinding,
    #[serde(default)]
    pub cache: RawCache,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVault {
    pub cluster: String,
    pub authority: String,
    pub namespace: Option<String>,
    pub timeout: Option<String>,
    pub auth: RawAuth,
}

/// Only workload-identity methods exist: there is deliberately no variant that carries a
/// token, an AppRole secret or a password.
#[derive(Debug, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawAuth {
    Cert {
        #[serde(default = "default_cert_mount")]
        mount: String,
        role: String,
    },
    /// Delegated login as the caller, with its verified JWT-SVID.
    Jwt {
        #[serde(default = "default_jwt_mount")]
        mount: String,
        role: String,
    },
}

fn default_jwt_mount() -> String {
    "jwt".into()
}

fn default_cert_mount() -> String {
    "cert".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    #[serde(default = "default_sources")]
    pub sources: Vec<RawIdentitySource>,
    #[serde(default)]
    pub trust_domains: Vec<String>,
    pub xfcc: Option<RawXfcc>,
    pub jwt_svid: Option<RawJwtSvid>,
    pub local_workload: Option<RawLocalWorkload>,
}

impl Default for RawIdentity {
    fn default() -> Self {
        Self {
            sources: default_sources(),
            trust_domains: Vec::new(),
            xfcc: None,
            jwt_svid: None,
            local_workload: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawIdentitySource {
    PeerCertificate,
    Xfcc,
    JwtSvid,
    LocalWorkload,
}

fn default_sources() -> Vec<RawIdentitySource> {
    vec![RawIdentitySource::PeerCertificate]
}

/// `trusted` has no default that reads as yes: the operator states it about the previous hop.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawXfcc {
    #[serde(default)]
    pub trusted: bool,
    #[serde(default)]
    pub element: RawXfccElement,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawXfccElement {
    First,
    #[default]
    Last,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtSvid {
    #[serde(default = "default_jwt_header")]
    pub header: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    /// A JWKS document; checked key by key when compiled, so errors name the key.
    pub jwks: serde_json::Value,
    #[serde(default)]
    pub forward: bool,
    pub leeway: Option<String>,
}

fn default_jwt_header() -> String {
    "authorization".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocalWorkload {
    pub spiffe_id: Option<String>,
    pub trust_domain: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBinding {
    pub name: String,
    #[serde(rename = "match")]
    pub match_: RawMatch,
    pub credential: RawCredential,
    pub inject: Vec<RawInject>,
    #[serde(default)]
    pub strip: Vec<String>,
    #[serde(default)]
    pub on_error: RawOnError,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub hosts: Vec<String>,
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub identities: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "engine", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawCredential {
    Kv2 {
        mount: String,
        path: String,
        field: Option<String>,
        refresh: Option<String>,
    },
    Database {
        #[serde(default = "default_database_mount")]
        mount: String,
        role: String,
        refresh: Option<String>,
    },
    /// Any engine that answers a GET with `data` and a lease (AWS, Consul, ...).
    Dynamic {
        mount: String,
        path: String,
        refresh: Option<String>,
    },
    OidcToken {
        role: String,
        refresh: Option<String>,
    },
}

fn default_database_mount() -> String {
    "database".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInject {
    pub header: String,
    pub value: Option<String>,
    pub basic: Option<RawBasic>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasic {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawOnNoBinding {
    #[default]
    PassThrough,
    Deny,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawOnError {
    #[default]
    Deny,
    AllowWithoutCredential,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub refresh_at: Option<f64>,
    pub jitter: Option<f64>,
    pub expiry_margin: Option<String>,
    pub max_entries: Option<u32>,
    pub negative_ttl: Option<String>,
    pub retry_backoff: Option<String>,
    pub retry_backoff_max: Option<String>,
    pub invalidation_interval: Option<String>,
    pub max_wait: Option<String>,
}
