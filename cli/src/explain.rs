//! "What would the filter do?" for one caller and destination, answered by the filter's own
//! code: identity check, `binding::select`, `CredentialSource::render_path` and the vault
//! request builders. Nothing here decides on its own; it only words the decision.

use std::fmt::{self, Write as _};
use std::time::Duration;

use latchkey_filter::binding::{self, Destination, Engine, OnError, VaultPathError};
use latchkey_filter::config::{Config, VaultAuth};
use latchkey_filter::denial::Denial;
use latchkey_filter::identity::SpiffeId;
use latchkey_filter::vault;

/// The request to explain: who calls, where to.
#[derive(Debug, Clone)]
pub struct Question<'a> {
    pub caller: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
}

/// The filter's decision, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Refused before any binding is looked at, or because the vault path cannot be rendered.
    Refused { denial: Denial, reason: String },
    /// An identity, but no binding for this destination: forwarded untouched.
    PassThrough,
    /// A binding applies: the vault calls, the headers removed and injected.
    Bound(Box<BoundRequest>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundRequest {
    pub index: usize,
    pub name: String,
    /// `POST /v1/auth/cert/login` and its role, done once per vault token.
    pub login: String,
    /// `GET /v1/<mount>/data/<rendered path>`.
    pub read: String,
    pub credential: String,
    pub strip: Vec<String>,
    pub inject: Vec<String>,
    pub on_error: OnError,
}

/// What the filter decides for `question`, worded for a person; the same modules decide.
pub fn explain(config: &Config, question: &Question<'_>) -> Decision {
    // The checker is told the caller's SPIFFE ID, so only the trust-domain check of the
    // identity sources applies; how the ID reaches the proxy is the sources' business.
    if question.caller.is_empty() {
        let reason = "no caller identity".to_string();
        return Decision::Refused {
            denial: Denial::NoIdentity,
            reason,
        };
    }
    let caller = match SpiffeId::parse(question.caller) {
        Ok(id) if config.identity.trust_domains.allows(&id) => id,
        Ok(id) => {
            let reason = format!("trust domain {} is not trusted", id.trust_domain());
            return Decision::Refused {
                denial: Denial::UntrustedIdentity,
                reason,
            };
        }
        Err(err) => {
            let reason = format!("not a SPIFFE ID: {err}");
            return Decision::Refused {
                denial: Denial::InvalidIdentity,
                reason,
            };
        }
    };

    let destination = Destination {
        authority: question.authority.as_bytes(),
        path: question.path.as_bytes(),
    };
    let Some((index, binding)) = binding::select(&config.bindings, &destination, &caller) else {
        if config.deny_unbound {
            let reason = "no binding matches and on_no_binding is deny".to_string();
            return Decision::Refused {
                denial: Denial::NoBinding,
                reason,
            };
        }
        return Decision::PassThrough;
    };

    let rendered = match binding.credential.render_path(&caller) {
        Ok(path) => path,
        Err(err) => {
            let reason = match err {
                VaultPathError::MissingPart { variable } => {
                    format!("the vault path needs {{{variable}}}, which {caller} lacks")
                }
                VaultPathError::Unsafe => "the rendered vault path is not safe".to_string(),
            };
            let denial = Denial::IdentityUnusable;
            return Decision::Refused { denial, reason };
        }
    };
    let source = &binding.credential;
    let login = match &config.vault.auth {
        VaultAuth::Cert { mount, role } => {
            let login = vault::cert_login(&config.vault, mount, role);
            format!(
                "{} {} as role {role:?} (the proxy's token, cached)",
                login.method, login.path
            )
        }
        VaultAuth::Jwt { mount, role } => {
            match binding::render_for(role, &caller) {
                Ok(role) => {
                    let login = vault::jwt_login(&config.vault, mount, &role, "");
                    let path = login.path;
                    format!("POST {path} as role {role:?} with the caller's JWT-SVID (cached per caller)")
                }
                Err(_) => {
                    let reason = "the jwt login role needs identity parts this caller lacks";
                    let denial = Denial::IdentityUnusable;
                    return Decision::Refused {
                        denial,
                        reason: reason.to_string(),
                    };
                }
            }
        }
    };
    let read = vault::secret_read(&config.vault, source.api_path(&rendered), "", &caller);
    let bound = source
        .refresh
        .map_or(String::new(), |r| format!(", at most {}", human(r)));
    let credential = match source.engine {
        Engine::Kv2 => {
            let field = source
                .field
                .as_deref()
                .map_or("every field".to_string(), |f| format!("field {f:?}"));
            let refresh = source.refresh.map_or("its refresh".to_string(), human);
            format!("KV v2 {field}, served from the cache for at most {refresh}")
        }
        Engine::Leased => format!("a leased secret, served from the cache for its lease{bound}"),
        Engine::IdentityToken => {
            format!("an identity token (JWT), served from the cache until its exp{bound}")
        }
    };
    Decision::Bound(Box::new(BoundRequest {
        index,
        name: binding.name.clone(),
        login,
        read: format!("{} {}", read.method, read.path),
        credential,
        strip: binding.strip.clone(),
        inject: binding
            .inject
            .iter()
            .map(|header| format!("{}: {}", header.name, header.value))
            .collect(),
        on_error: binding.on_error,
    }))
}

/// `5m`, `90s`, `250ms`: as durations are written in the config.
fn human(duration: Duration) -> String {
    let millis = duration.as_millis();
    match millis {
        m if m % 3_600_000 == 0 => format!("{}h", m / 3_600_000),
        m if m % 60_000 == 0 => format!("{}m", m / 60_000),
        m if m % 1_000 == 0 => format!("{}s", m / 1_000),
        m => format!("{m}ms"),
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Refused { denial, reason } => write!(
                f,
                "decision:    refused, {} {} ({reason})",
                denial.status(),
                denial.code()
            ),
            Decision::PassThrough => write!(
                f,
                "decision:    no binding matches; forwarded untouched, caller's headers included"
            ),
            Decision::Bound(bound) => {
                let mut text = String::new();
                let _ = writeln!(text, "binding:     #{} {}", bound.index, bound.name);
                let _ = writeln!(text, "vault login: {}", bound.login);
                let _ = writeln!(text, "vault read:  {}", bound.read);
                let _ = writeln!(text, "credential:  {}", bound.credential);
                let _ = writeln!(text, "removes:     {}", bound.strip.join(", "));
                let _ = writeln!(text, "injects:     {}", bound.inject.join("; "));
                let on_error = match bound.on_error {
                    OnError::Deny => "deny (503 vault_unavailable, 403 vault_denied, ...)",
                    OnError::AllowWithoutCredential => {
                        "forward without a credential, caller's credentials still removed"
                    }
                };
                write!(text, "on error:    {on_error}")?;
                f.write_str(&text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{
        "version": 1,
        "vault": { "cluster": "vault", "authority": "vault:8200",
                   "auth": { "method": "cert", "role": "gw" } },
        "identity": { "trust_domains": ["example.org"] },
        "bindings": [{
            "name": "payments-api",
            "match": { "hosts": ["api.payments.example"], "path_prefix": "/v1/",
                       "identities": ["spiffe://example.org/ns/payments/*"] },
            "credential": { "engine": "kv2", "mount": "secret",
                            "path": "apps/{namespace}/{service_account}", "field": "api_key" },
            "inject": [{ "header": "authorization", "value": "Bearer {api_key}" }],
            "strip": ["x-api-key"]
        }]
    }"#;

    fn ask(caller: &str, authority: &str, path: &str) -> Decision {
        let config = Config::from_json(CONFIG.as_bytes()).unwrap();
        let question = Question {
            caller,
            authority,
            path,
        };
        explain(&config, &question)
    }

    #[test]
    fn names_the_binding_vault_path_and_headers() {
        let decision = ask(
            "spiffe://example.org/ns/payments/sa/checkout",
            "api.payments.example:443",
            "/v1/charge",
        );
        let Decision::Bound(bound) = &decision else {
            panic!("{decision:?}");
        };
        assert_eq!(bound.name, "payments-api");
        assert_eq!(bound.read, "GET /v1/secret/data/apps/payments/checkout");
        assert_eq!(
            bound.login,
            "POST /v1/auth/cert/login as role \"gw\" (the proxy's token, cached)"
        );
        assert_eq!(bound.inject, ["authorization: Bearer {api_key}"]);
        assert!(bound.strip.contains(&"x-api-key".to_string()));
        assert!(decision
            .to_string()
            .contains("binding:     #0 payments-api"));
    }

    #[test]
    fn other_paths_and_identities_pass_through() {
        let checkout = "spiffe://example.org/ns/payments/sa/checkout";
        assert_eq!(
            ask(checkout, "api.payments.example", "/v2/x"),
            Decision::PassThrough
        );
        let orders = "spiffe://example.org/ns/orders/sa/api";
        assert_eq!(
            ask(orders, "api.payments.example", "/v1/x"),
            Decision::PassThrough
        );
    }

    #[test]
    fn untrusted_or_unusable_identities_are_refused_with_the_filters_codes() {
        let foreign = ask(
            "spiffe://evil.example/ns/payments/sa/x",
            "api.payments.example",
            "/",
        );
        assert!(matches!(
            foreign,
            Decision::Refused {
                denial: Denial::UntrustedIdentity,
                ..
            }
        ));
        let flat = ask(
            "spiffe://example.org/ns/payments/worker",
            "api.payments.example",
            "/v1/",
        );
        let Decision::Refused { denial, reason } = flat else {
            panic!("{flat:?}");
        };
        assert_eq!(denial, Denial::IdentityUnusable);
        assert!(reason.contains("{namespace}"), "{reason}");
        let empty = ask("", "api.payments.example", "/");
        assert!(matches!(
            empty,
            Decision::Refused {
                denial: Denial::NoIdentity,
                ..
            }
        ));
    }
}
