//! Parsers for vault responses. A response is judged by its `:status` first (Envoy synthesises
//! 503/504 for callouts that failed), then by its JSON shape; the body never leaves this module.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::secret::{Secret, SecretFields};
use crate::binding::Engine;

/// Secrets and login answers are a few KiB; anything far larger is not a vault answer.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultError {
    /// The vault could not be reached, timed out, was sealed or answered 5xx/429.
    Unavailable {
        status: u16,
    },
    /// The vault refused this proxy or this caller (401/403, or 400 on a login).
    Denied {
        status: u16,
    },
    /// Nothing is stored at the path.
    NotFound,
    /// The body is not the JSON shape the API documents.
    Malformed {
        reason: &'static str,
    },
    TooLarge {
        len: usize,
    },
    /// The secret lacks a field the binding's inject template needs.
    MissingField {
        field: String,
    },
}

impl VaultError {
    /// A short stable word for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "unavailable",
            Self::Denied { .. } => "denied",
            Self::NotFound => "not_found",
            Self::Malformed { .. } => "malformed",
            Self::TooLarge { .. } => "too_large",
            Self::MissingField { .. } => "missing_field",
        }
    }
}

impl fmt::Display for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable { status } => write!(f, "vault unavailable (status {status})"),
            Self::Denied { status } => write!(f, "vault denied the request (status {status})"),
            Self::NotFound => write!(f, "no secret at the path"),
            Self::Malformed { reason } => write!(f, "malformed vault response: {reason}"),
            Self::TooLarge { len } => write!(f, "vault response of {len} bytes is too large"),
            Self::MissingField { field } => write!(f, "secret has no string field {field:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultLogin {
    pub token: Secret,
    /// Zero means the token does not expire (root-like tokens); callers cap it.
    pub lease: Duration,
    /// Whether `auth/token/renew-self` may extend it.
    pub renewable: bool,
}

fn check_status(status: u16, body: &[u8]) -> Result<(), VaultError> {
    match status {
        200 => {}
        404 => return Err(VaultError::NotFound),
        401 | 403 => return Err(VaultError::Denied { status }),
        _ => return Err(VaultError::Unavailable { status }),
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(VaultError::TooLarge { len: body.len() });
    }
    Ok(())
}

pub fn parse_login(status: u16, body: &[u8]) -> Result<VaultLogin, VaultError> {
    // A refused certificate login is a 400 ("invalid certificate"), not a 403.
    let status = if status == 400 { 403 } else { status };
    check_status(status, body)?;

    #[derive(Deserialize)]
    struct Login {
        auth: Option<Auth>,
    }
    #[derive(Deserialize)]
    struct Auth {
        client_token: String,
        lease_duration: u64,
        #[serde(default)]
        renewable: bool,
    }
    let login: Login = serde_json::from_slice(body).map_err(|_| VaultError::Malformed {
        reason: "login answer is not the documented JSON",
    })?;
    let auth = login.auth.ok_or(VaultError::Malformed {
        reason: "login answer has no auth",
    })?;
    if auth.client_token.is_empty() {
        return Err(VaultError::Malformed {
            reason: "login answer has an empty token",
        });
    }
    Ok(VaultLogin {
        token: Secret::new(auth.client_token),
        lease: Duration::from_secs(auth.lease_duration),
        renewable: auth.renewable,
    })
}

/// A secret as any engine answered it: its string fields, and its own lifetime if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedSecret {
    pub fields: SecretFields,
    /// The lease (leased secrets) or the token's remaining life (identity tokens).
    pub lifetime: Option<Duration>,
    /// For the audit log: lease ids name a lease, they do not grant it.
    pub lease_id: Option<String>,
}

/// Reads the answer of `engine`; `required` names a field that must be there.
pub fn parse_secret(
    engine: Engine,
    status: u16,
    body: &[u8],
    required: Option<&str>,
    now_ms: u64,
) -> Result<FetchedSecret, VaultError> {
    let secret = match engine {
        Engine::Kv2 => FetchedSecret {
            fields: parse_kv2(status, body)?,
            lifetime: None,
            lease_id: None,
        },
        Engine::Leased => parse_leased(status, body)?,
        Engine::IdentityToken => parse_identity_token(status, body, now_ms)?,
    };
    if let Some(field) = required {
        if secret.fields.get(field).is_none() {
            return Err(VaultError::MissingField {
                field: field.to_string(),
            });
        }
    }
    Ok(secret)
}

fn string_fields(data: serde_json::Map<String, Value>) -> SecretFields {
    let fields = data.into_iter().filter_map(|(name, value)| match value {
        Value::String(text) => Some((name, Secret::new(text))),
        _ => None,
    });
    SecretFields::new(fields.collect())
}

/// `database/creds/<role>` and every engine shaped like it.
fn parse_leased(status: u16, body: &[u8]) -> Result<FetchedSecret, VaultError> {
    check_status(status, body)?;

    #[derive(Deserialize)]
    struct Leased {
        data: Option<serde_json::Map<String, Value>>,
        #[serde(default)]
        lease_id: String,
        #[serde(default)]
        lease_duration: u64,
    }
    let malformed = |reason| VaultError::Malformed { reason };
    let read: Leased = serde_json::from_slice(body)
        .map_err(|_| malformed("leased secret is not the documented JSON"))?;
    let data = read.data.ok_or(malformed("leased secret has no data"))?;
    Ok(FetchedSecret {
        fields: string_fields(data),
        lifetime: (read.lease_duration > 0).then(|| Duration::from_secs(read.lease_duration)),
        lease_id: Some(read.lease_id).filter(|id| !id.is_empty()),
    })
}

/// `identity/oidc/token/<role>`: the token lives until the earlier of its `ttl` and its `exp`.
fn parse_identity_token(
    status: u16,
    body: &[u8],
    now_ms: u64,
) -> Result<FetchedSecret, VaultError> {
    check_status(status, body)?;

    #[derive(Deserialize)]
    struct Answer {
        data: Option<Token>,
    }
    #[derive(Deserialize)]
    struct Token {
        token: String,
        ttl: u64,
    }
    let malformed = |reason| VaultError::Malformed { reason };
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| malformed("identity token answer is not the documented JSON"))?;
    let token = answer
        .data
        .ok_or(malformed("identity token answer has no data"))?;
    let exp_ms =
        jwt_expiry_ms(&token.token).ok_or(malformed("identity token has no readable exp"))?;
    let remaining_ms = exp_ms.saturating_sub(now_ms);
    if remaining_ms == 0 {
        return Err(malformed("identity token has already expired"));
    }
    let lifetime = Duration::from_millis(remaining_ms).min(Duration::from_secs(token.ttl));
    Ok(FetchedSecret {
        fields: SecretFields::new(vec![("token".into(), Secret::new(token.token))]),
        lifetime: Some(lifetime),
        lease_id: None,
    })
}

/// The `exp` claim of a JWT, in milliseconds; checking the signature is the upstream's job.
fn jwt_expiry_ms(jwt: &str) -> Option<u64> {
    use base64::prelude::{Engine as _, BASE64_URL_SAFE_NO_PAD};

    #[derive(Deserialize)]
    struct Claims {
        exp: u64,
    }
    let payload = jwt.split('.').nth(1)?;
    let json = BASE64_URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Claims = serde_json::from_slice(&json).ok()?;
    claims.exp.checked_mul(1_000)
}

/// A KV v2 read: the string fields of `data.data`.
fn parse_kv2(status: u16, body: &[u8]) -> Result<SecretFields, VaultError> {
    check_status(status, body)?;

    #[derive(Deserialize)]
    struct Read {
        data: Option<Versioned>,
    }
    #[derive(Deserialize)]
    struct Versioned {
        data: Option<serde_json::Map<String, Value>>,
    }
    let read: Read = serde_json::from_slice(body).map_err(|_| VaultError::Malformed {
        reason: "kv read answer is not the documented JSON",
    })?;
    // A deleted or destroyed version answers with `data.data: null`.
    let data = read
        .data
        .and_then(|versioned| versioned.data)
        .ok_or(VaultError::NotFound)?;

    Ok(string_fields(data))
}

/// `Retry-After` in delta-seconds (what vaults and proxies send); an HTTP date is ignored.
pub fn parse_retry_after(value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    text.parse::<u32>()
        .ok()
        .map(|secs| Duration::from_secs(u64::from(secs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv2(status: u16, body: &[u8], required: Option<&str>) -> Result<SecretFields, VaultError> {
        parse_secret(Engine::Kv2, status, body, required, 0).map(|secret| secret.fields)
    }

    const KV: &[u8] = br#"{"request_id":"r","lease_id":"","renewable":false,"lease_duration":0,
        "data":{"data":{"api_key":"k-123","n":5},"metadata":{"version":1}}}"#;

    #[test]
    fn reads_login_token_and_lease() {
        let body = br#"{"auth":{"client_token":"s.abc","lease_duration":3600,"renewable":true}}"#;
        let login = parse_login(200, body).unwrap();
        assert_eq!(login.token.expose(), "s.abc");
        assert_eq!(login.lease, Duration::from_secs(3600));
        assert!(login.renewable);
    }

    #[test]
    fn refused_certificate_login_is_a_denial() {
        let body = br#"{"errors":["invalid certificate or no client certificate supplied"]}"#;
        assert_eq!(
            parse_login(400, body),
            Err(VaultError::Denied { status: 403 })
        );
    }

    #[test]
    fn maps_statuses_before_looking_at_the_body() {
        assert_eq!(
            kv2(503, b"<html>", None),
            Err(VaultError::Unavailable { status: 503 })
        );
        assert_eq!(
            kv2(504, b"", None),
            Err(VaultError::Unavailable { status: 504 })
        );
        assert_eq!(
            kv2(429, b"", None),
            Err(VaultError::Unavailable { status: 429 })
        );
        assert_eq!(kv2(403, b"", None), Err(VaultError::Denied { status: 403 }));
        assert_eq!(kv2(404, b"", None), Err(VaultError::NotFound));
    }

    #[test]
    fn reads_string_fields_of_a_kv2_secret() {
        let fields = kv2(200, KV, Some("api_key")).unwrap();
        assert_eq!(fields.get("api_key"), Some("k-123"));
        assert_eq!(fields.get("n"), None);
    }

    #[test]
    fn a_required_field_must_be_a_string() {
        let err = kv2(200, KV, Some("n")).unwrap_err();
        assert_eq!(err, VaultError::MissingField { field: "n".into() });
    }

    #[test]
    fn malformed_answers_are_errors_that_hide_the_body() {
        let cases: [&[u8]; 5] = [
            b"not json s.leaked",
            br#"{"auth":{"client_token":5,"lease_duration":1}}"#,
            br#"{"auth":null}"#,
            br#"{"auth":{"client_token":"","lease_duration":1}}"#,
            br#"{"auth":{"client_token":"s.leaked","lease_duration":-1}}"#,
        ];
        for body in cases {
            let err = parse_login(200, body).unwrap_err();
            assert!(matches!(err, VaultError::Malformed { .. }), "{err:?}");
            assert!(!err.to_string().contains("leaked"));
        }
    }

    #[test]
    fn deleted_kv_version_is_not_found() {
        let body = br#"{"data":{"data":null,"metadata":{"deletion_time":"x"}}}"#;
        assert_eq!(kv2(200, body, None), Err(VaultError::NotFound));
    }

    #[test]
    fn oversized_bodies_are_refused() {
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            kv2(200, &body, None),
            Err(VaultError::TooLarge {
                len: MAX_BODY_BYTES + 1
            })
        );
    }

    #[test]
    fn retry_after_takes_delta_seconds_only() {
        assert_eq!(parse_retry_after(b" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after(b"-1"), None);
        assert_eq!(parse_retry_after(b"\xff"), None);
    }

    fn jwt_with_exp(exp: u64) -> String {
        use base64::prelude::{Engine as _, BASE64_URL_SAFE_NO_PAD};
        let claims = BASE64_URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"e","exp":{exp}}}"#));
        format!("eyJhbGciOiJFUzI1NiJ9.{claims}.c2ln")
    }

    fn identity_answer(token: &str, ttl: u64) -> Vec<u8> {
        serde_json::json!({ "data": { "token": token, "client_id": "c", "ttl": ttl } })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn reads_a_database_lease() {
        let body = br#"{"lease_id":"database/creds/orders/abc","renewable":true,
            "lease_duration":3600,"data":{"username":"v-orders","password":"p-1"}}"#;
        let secret = parse_secret(Engine::Leased, 200, body, None, 0).unwrap();
        assert_eq!(secret.fields.get("username"), Some("v-orders"));
        assert_eq!(secret.fields.get("password"), Some("p-1"));
        assert_eq!(secret.lifetime, Some(Duration::from_secs(3600)));
        assert_eq!(
            secret.lease_id.as_deref(),
            Some("database/creds/orders/abc")
        );
    }

    #[test]
    fn a_leased_secret_without_lease_has_no_lifetime_of_its_own() {
        let body = br#"{"lease_id":"","lease_duration":0,"data":{"k":"v"}}"#;
        let secret = parse_secret(Engine::Leased, 200, body, None, 0).unwrap();
        assert_eq!(secret.lifetime, None);
        assert_eq!(secret.lease_id, None);
        let no_data = parse_secret(Engine::Leased, 200, br#"{"lease_duration":5}"#, None, 0);
        assert!(matches!(no_data, Err(VaultError::Malformed { .. })));
    }

    #[test]
    fn identity_token_lives_until_the_earlier_of_ttl_and_exp() {
        let now_ms = 1_000_000;
        let body = identity_answer(&jwt_with_exp(1_000 + 60), 300);
        let secret = parse_secret(Engine::IdentityToken, 200, &body, None, now_ms).unwrap();
        assert_eq!(secret.lifetime, Some(Duration::from_secs(60)));
        let body = identity_answer(&jwt_with_exp(1_000 + 600), 300);
        let secret = parse_secret(Engine::IdentityToken, 200, &body, None, now_ms).unwrap();
        assert_eq!(secret.lifetime, Some(Duration::from_secs(300)));
        assert!(secret
            .fields
            .get("token")
            .is_some_and(|t| t.starts_with("eyJ")));
    }

    #[test]
    fn expired_or_unreadable_identity_tokens_are_malformed() {
        let expired = identity_answer(&jwt_with_exp(999), 300);
        let no_exp = identity_answer("eyJhbGciOiJFUzI1NiJ9.e30.c2ln", 300);
        let not_jwt = identity_answer("s.leaked", 300);
        for body in [expired, no_exp, not_jwt] {
            let err = parse_secret(Engine::IdentityToken, 200, &body, None, 1_000_000).unwrap_err();
            assert!(matches!(err, VaultError::Malformed { .. }), "{err:?}");
            assert!(!err.to_string().contains("leaked"));
        }
    }
}
