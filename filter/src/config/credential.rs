//! Compiles a binding's `credential` and `inject` sections: which engine answers at which path,
//! and how its fields become headers.

use std::time::Duration;

use super::raw::{RawCredential, RawInject};
use super::{header_name, optional_duration, ConfigError};
use crate::binding::{
    is_safe_vault_path, CredentialSource, Engine, HeaderTemplate, HeaderValue, PATH_VARIABLES,
};
use crate::template::Template;

/// Vault Agent re-reads static secrets every 5 minutes by default; users expect the same here.
pub const DEFAULT_KV_REFRESH: Duration = Duration::from_secs(300);

/// Mounts whose reads would hand out the proxy's own token or vault internals.
const FORBIDDEN_MOUNTS: [&str; 4] = ["sys", "auth", "identity", "cubbyhole"];

/// A compiled source and the fields it is known to offer (`None`: whatever the secret holds).
pub struct Compiled {
    pub source: CredentialSource,
    pub offers: Option<Vec<String>>,
}

pub fn compile_credential(raw: RawCredential, at: &str) -> Result<Compiled, ConfigError> {
    let (engine, mount, path, field, refresh, offers) = match raw {
        RawCredential::Kv2 {
            mount,
            path,
            field,
            refresh,
        } => {
            let path = path_template(&path, &format!("{at}.path"), PATH_VARIABLES.as_slice())?;
            if field.as_deref() == Some("") {
                return Err(ConfigError::new(format!("{at}.field"), "must not be empty"));
            }
            let offers = field.clone().map(|f| vec![f]);
            (Engine::Kv2, mount, path, field, refresh, offers)
        }
        RawCredential::Database {
            mount,
            role,
            refresh,
        } => {
            let path = role_path("creds/", &role, &format!("{at}.role"))?;
            let offers = Some(vec!["username".to_string(), "password".to_string()]);
            (Engine::Leased, mount, path, None, refresh, offers)
        }
        RawCredential::Dynamic {
            mount,
            path,
            refresh,
        } => {
            let path = path_template(&path, &format!("{at}.path"), PATH_VARIABLES.as_slice())?;
            (Engine::Leased, mount, path, None, refresh, None)
        }
        RawCredential::OidcToken { role, refresh } => {
            let path = role_path("oidc/token/", &role, &format!("{at}.role"))?;
            let offers = Some(vec!["token".to_string()]);
            (
                Engine::IdentityToken,
                "identity".to_string(),
                path,
                None,
                refresh,
                offers,
            )
        }
    };

    if engine != Engine::IdentityToken {
        let first = mount.split('/').next().unwrap_or_default();
        if !is_safe_vault_path(&mount) || FORBIDDEN_MOUNTS.contains(&first) {
            let reason = format!("not a secrets engine mount; {FORBIDDEN_MOUNTS:?} are refused");
            return Err(ConfigError::new(format!("{at}.mount"), reason));
        }
    }
    let refresh_field = format!("{at}.refresh");
    let refresh = match refresh {
        None => None,
        Some(text) => Some(optional_duration(
            Some(&text),
            &refresh_field,
            Duration::ZERO,
        )?),
    };
    if refresh.is_some_and(|r| r.is_zero()) {
        return Err(ConfigError::new(refresh_field, "must be greater than zero"));
    }
    // KV v2 has no lease: without a refresh interval a changed secret would never be seen.
    let refresh = match engine {
        Engine::Kv2 => refresh.or(Some(DEFAULT_KV_REFRESH)),
        Engine::Leased | Engine::IdentityToken => refresh,
    };
    Ok(Compiled {
        source: CredentialSource {
            engine,
            mount,
            path,
            field,
            refresh,
        },
        offers,
    })
}

/// A path template of identity variables whose literal parts are safe vault path segments.
fn path_template(raw: &str, field: &str, variables: &[&str]) -> Result<Template, ConfigError> {
    let template = Template::parse(raw).map_err(|e| ConfigError::new(field, e.to_string()))?;
    if let Some(unknown) = template.variables().find(|v| !variables.contains(v)) {
        let reason = format!("{{{unknown}}} is not an identity part; use one of {variables:?}");
        return Err(ConfigError::new(field, reason));
    }
    // Literal parts are checked by rendering with harmless stand-ins for every variable.
    let probe = template.render(|_| Some("x")).unwrap_or_default();
    if !is_safe_vault_path(&probe) {
        let reason = "segments must be non-empty, not '.' or '..', and of [A-Za-z0-9._-]";
        return Err(ConfigError::new(field, reason));
    }
    Ok(template)
}

/// Identity parts that are always one path segment (`{spiffe_path}` may be several).
const SEGMENT_VARIABLES: [&str; 3] = ["trust_domain", "namespace", "service_account"];

/// A role is one path segment: no `/` in it, and no `{spiffe_path}`, which may hold several.
pub fn role_template(role: &str, field: &str) -> Result<Template, ConfigError> {
    if role.contains('/') {
        let reason = "a role name is one path segment, without '/'";
        return Err(ConfigError::new(field, reason));
    }
    path_template(role, field, &SEGMENT_VARIABLES)
}

fn role_path(prefix: &str, role: &str, field: &str) -> Result<Template, ConfigError> {
    role_template(role, field)?;
    path_template(&format!("{prefix}{role}"), field, &SEGMENT_VARIABLES)
}

pub fn compile_inject(
    raw: Vec<RawInject>,
    at: &str,
    offers: Option<&[String]>,
) -> Result<Vec<HeaderTemplate>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new(at, "list at least one header to inject"));
    }
    let mut inject = Vec::with_capacity(raw.len());
    for (i, item) in raw.into_iter().enumerate() {
        let name = header_name(&item.header, &format!("{at}[{i}].header"))?;
        let value = match (item.value, item.basic) {
            (Some(value), None) => {
                HeaderValue::Text(value_template(&value, &format!("{at}[{i}].value"), offers)?)
            }
            (None, Some(basic)) => {
                let field = format!("{at}[{i}].basic");
                HeaderValue::Basic {
                    username: value_template(
                        &basic.username,
                        &format!("{field}.username"),
                        offers,
                    )?,
                    password: value_template(
                        &basic.password,
                        &format!("{field}.password"),
                        offers,
                    )?,
                }
            }
            _ => {
                let reason = "give either value (a template) or basic (username and password)";
                return Err(ConfigError::new(format!("{at}[{i}]"), reason));
            }
        };
        inject.push(HeaderTemplate { name, value });
    }
    Ok(inject)
}

fn value_template(
    raw: &str,
    field: &str,
    offers: Option<&[String]>,
) -> Result<Template, ConfigError> {
    let template = Template::parse(raw).map_err(|e| ConfigError::new(field, e.to_string()))?;
    if template.variables().next().is_none() {
        return Err(ConfigError::new(
            field,
            "name a field of the secret, such as {token}",
        ));
    }
    if let Some(offers) = offers {
        if let Some(other) = template
            .variables()
            .find(|v| !offers.iter().any(|o| o == v))
        {
            let reason =
                format!("{{{other}}} is not a field of the credential; it offers {offers:?}");
            return Err(ConfigError::new(field, reason));
        }
    }
    Ok(template)
}
