//! Bindings: which credential a caller gets for a destination. The first binding whose hosts,
//! path prefix and identity patterns all match wins.

use std::time::Duration;

use crate::identity::{is_segment_byte, IdentityPattern, SpiffeId};
use crate::template::Template;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// `*.payments.example`, stored as `.payments.example`: one or more labels before it.
    Suffix(String),
}

impl HostPattern {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let lower = raw.to_ascii_lowercase();
        let (pattern, name) = match lower.strip_prefix('*') {
            Some(suffix) if suffix.starts_with('.') => (Self::Suffix(suffix.to_string()), suffix),
            Some(_) => return Err(format!("{raw:?}: a wildcard must be a whole leading label")),
            None => (Self::Exact(lower.clone()), lower.as_str()),
        };
        let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
        if name.trim_start_matches('.').is_empty() || !name.bytes().all(valid) {
            return Err(format!(
                "{raw:?} is not a host name (ports are not part of a host)"
            ));
        }
        Ok(pattern)
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(exact) => host == exact,
            Self::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    #[default]
    Deny,
    AllowWithoutCredential,
}

impl std::fmt::Display for HeaderValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderValue::Text(template) => write!(f, "{template}"),
            HeaderValue::Basic { username, password } => {
                write!(f, "Basic base64({username}:{password})")
            }
        }
    }
}

/// Which kind of secrets engine answers, and so the shape of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// KV v2: `GET /v1/<mount>/data/<path>`, the fields of `data.data`, no lease.
    Kv2,
    /// Dynamic secrets with a lease: `GET /v1/<mount>/<path>` (`database/creds/<role>`,
    /// `aws/creds/<role>`, ...), the fields of `data`, `lease_duration`, `lease_id`.
    Leased,
    /// `GET /v1/identity/oidc/token/<role>`: `data.token`, a JWT whose `exp` bounds its use.
    IdentityToken,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSource {
    pub engine: Engine,
    pub mount: String,
    /// The path under the mount (for KV v2, under its `data/`).
    pub path: Template,
    /// The one field the secret must have, when the binding names it.
    pub field: Option<String>,
    /// How long a fetched credential is used at most. KV v2 has no lease, so for it this is the
    /// re-read interval; for leased secrets and identity tokens it caps their own lifetime.
    pub refresh: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate {
    pub name: String,
    pub value: HeaderValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// `Bearer {token}`: the fields substituted as they are.
    Text(Template),
    /// `Basic base64(username:password)` (RFC 7617).
    Basic {
        username: Template,
        password: Template,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub name: String,
    pub hosts: Vec<HostPattern>,
    pub path_prefix: Option<String>,
    /// Empty means every identity the trust domains allow.
    pub identities: Vec<IdentityPattern>,
    pub credential: CredentialSource,
    pub inject: Vec<HeaderTemplate>,
    /// Lowercased caller headers removed before injection, the defaults included.
    pub strip: Vec<String>,
    pub on_error: OnError,
}

/// Where the request is going, as the proxy saw it.
pub struct Destination<'a> {
    pub authority: &'a [u8],
    pub path: &'a [u8],
}

impl Binding {
    fn matches(&self, host: &str, path: &[u8], caller: &SpiffeId) -> bool {
        self.hosts.iter().any(|pattern| pattern.matches(host))
            && self
                .path_prefix
                .as_ref()
                .is_none_or(|prefix| path.starts_with(prefix.as_bytes()))
            && (self.identities.is_empty() || self.identities.iter().any(|p| p.matches(caller)))
    }
}

pub fn select<'b>(
    bindings: &'b [Binding],
    destination: &Destination<'_>,
    caller: &SpiffeId,
) -> Option<(usize, &'b Binding)> {
    let host = host_of(destination.authority)?;
    bindings
        .iter()
        .enumerate()
        .find(|(_, binding)| binding.matches(&host, destination.path, caller))
}

/// The lowercased host of an `:authority`, without its port.
fn host_of(authority: &[u8]) -> Option<String> {
    let authority = std::str::from_utf8(authority).ok()?;
    let host = match authority.rfind(':') {
        // `[::1]:443` keeps its brackets; a bare IPv6 literal has no port to strip.
        Some(colon) if !authority.ends_with(']') && authority.matches(':').count() == 1 => {
            authority.get(..colon)?
        }
        _ => authority,
    };
    Some(host.trim_end_matches('.').to_ascii_lowercase())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultPathError {
    /// The template names an identity part this caller does not have (e.g. no `ns/../sa/..`).
    MissingPart { variable: String },
    /// The rendered path has an empty, `.`/`..` or non-segment-charset component.
    Unsafe,
}

impl CredentialSource {
    /// The vault path under the mount, rendered from the verified identity only.
    pub fn render_path(&self, caller: &SpiffeId) -> Result<String, VaultPathError> {
        render_for(&self.path, caller)
    }
}

/// Renders a path or role template from the verified identity only, and refuses a result that
/// is not a safe vault path.
pub fn render_for(template: &Template, caller: &SpiffeId) -> Result<String, VaultPathError> {
    let k8s = caller.kubernetes_parts();
    let rendered = template
        .render(|name| match name {
            "trust_domain" => Some(caller.trust_domain()),
            "spiffe_path" => Some(caller.path()).filter(|p| !p.is_empty()),
            "namespace" => k8s.map(|(ns, _)| ns),
            "service_account" => k8s.map(|(_, sa)| sa),
            _ => None,
        })
        .map_err(|variable| VaultPathError::MissingPart {
            variable: variable.to_string(),
        })?;
    if is_safe_vault_path(&rendered) {
        Ok(rendered)
    } else {
        Err(VaultPathError::Unsafe)
    }
}

impl CredentialSource {
    /// The API path of a read, from a path [`CredentialSource::render_path`] rendered.
    pub fn api_path(&self, rendered: &str) -> String {
        match self.engine {
            Engine::Kv2 => format!("/v1/{}/data/{rendered}", self.mount),
            Engine::Leased | Engine::IdentityToken => format!("/v1/{}/{rendered}", self.mount),
        }
    }
}

/// Every segment non-empty, not `.` or `..`, of `[A-Za-z0-9._-]`: nothing can climb out of
/// the mount or add a query.
pub fn is_safe_vault_path(path: &str) -> bool {
    path.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment.bytes().all(is_segment_byte)
    })
}

/// The identity variables a vault path template may use.
pub const PATH_VARIABLES: [&str; 4] = [
    "trust_domain",
    "spiffe_path",
    "namespace",
    "service_account",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str, hosts: &[&str], prefix: Option<&str>, ids: &[&str]) -> Binding {
        Binding {
            name: name.into(),
            hosts: hosts
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
            path_prefix: prefix.map(Into::into),
            identities: ids
                .iter()
                .map(|p| IdentityPattern::parse(p).unwrap())
                .collect(),
            credential: CredentialSource {
                engine: Engine::Kv2,
                mount: "secret".into(),
                path: Template::parse("apps/{namespace}/{service_account}").unwrap(),
                field: None,
                refresh: Some(Duration::from_secs(60)),
            },
            inject: vec![],
            strip: vec![],
            on_error: OnError::Deny,
        }
    }

    fn id(raw: &str) -> SpiffeId {
        SpiffeId::parse(raw).unwrap()
    }

    fn pick<'b>(
        bindings: &'b [Binding],
        authority: &str,
        path: &str,
        caller: &str,
    ) -> Option<&'b str> {
        let destination = Destination {
            authority: authority.as_bytes(),
            path: path.as_bytes(),
        };
        select(bindings, &destination, &id(caller)).map(|(_, b)| b.name.as_str())
    }

    #[test]
    fn first_matching_binding_wins() {
        let bindings = [
            binding(
                "narrow",
                &["api.example"],
                Some("/v1/"),
                &["spiffe://td/ns/a/*"],
            ),
            binding("broad", &["api.example"], None, &[]),
        ];
        assert_eq!(
            pick(&bindings, "api.example", "/v1/x", "spiffe://td/ns/a/sa/b"),
            Some("narrow")
        );
        assert_eq!(
            pick(&bindings, "api.example", "/v2/x", "spiffe://td/ns/a/sa/b"),
            Some("broad")
        );
        assert_eq!(
            pick(&bindings, "api.example", "/v1/x", "spiffe://td/ns/b/sa/b"),
            Some("broad")
        );
        assert_eq!(
            pick(&bindings, "other.example", "/v1/x", "spiffe://td/ns/a/sa/b"),
            None
        );
    }

    #[test]
    fn host_match_ignores_port_and_case() {
        let bindings = [binding("b", &["API.example"], None, &[])];
        assert_eq!(
            pick(&bindings, "api.EXAMPLE:8443", "/", "spiffe://td/x"),
            Some("b")
        );
        assert_eq!(
            pick(&bindings, "api.example.", "/", "spiffe://td/x"),
            Some("b")
        );
    }

    #[test]
    fn wildcard_host_needs_a_label_before_the_suffix() {
        let bindings = [binding("b", &["*.payments.example"], None, &[])];
        assert_eq!(
            pick(&bindings, "api.payments.example", "/", "spiffe://td/x"),
            Some("b")
        );
        assert_eq!(
            pick(&bindings, "payments.example", "/", "spiffe://td/x"),
            None
        );
        assert_eq!(
            pick(&bindings, "evilpayments.example", "/", "spiffe://td/x"),
            None
        );
    }

    #[test]
    fn non_utf8_authority_matches_nothing() {
        let bindings = [binding("b", &["api.example"], None, &[])];
        let destination = Destination {
            authority: b"api.\xffexample",
            path: b"/",
        };
        assert!(select(&bindings, &destination, &id("spiffe://td/x")).is_none());
    }

    #[test]
    fn rejects_bad_host_patterns() {
        assert!(HostPattern::parse("api.example:443").is_err());
        assert!(HostPattern::parse("a*.example").is_err());
        assert!(HostPattern::parse("*").is_err());
        assert!(HostPattern::parse("").is_err());
    }

    #[test]
    fn renders_vault_path_from_kubernetes_identity() {
        let b = binding("b", &["h"], None, &[]);
        let path = b
            .credential
            .render_path(&id("spiffe://td/ns/pay/sa/checkout"));
        assert_eq!(path.unwrap(), "apps/pay/checkout");
    }

    #[test]
    fn vault_path_needs_the_parts_it_names() {
        let b = binding("b", &["h"], None, &[]);
        let err = b
            .credential
            .render_path(&id("spiffe://td/workload"))
            .unwrap_err();
        assert_eq!(
            err,
            VaultPathError::MissingPart {
                variable: "namespace".into()
            }
        );
    }

    #[test]
    fn unsafe_rendered_paths_are_refused() {
        assert!(is_safe_vault_path("apps/a/b"));
        for bad in [
            "apps/../sys",
            "apps//b",
            "apps/./b",
            "/apps",
            "apps/b/",
            "a?b",
            "a%2f",
        ] {
            assert!(!is_safe_vault_path(bad), "{bad}");
        }
    }
}
