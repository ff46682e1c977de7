//! Parsers for vault responses. A response is judged by its `:status` first (Envoy synthesises
//! 503/504 for callouts that failed), then by its JSON shape; the body never leaves this module.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::secret::{Secret, SecretFields};

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
    })
}

/// A KV v2 read: the string fields of `data.data`. `required` names a field that must be there.
pub fn parse_kv2(
    status: u16,
    body: &[u8],
    required: Option<&str>,
) -> Result<SecretFields, VaultError> {
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

    let fields: Vec<(String, Secret)> = data
        .into_iter()
        .filter_map(|(name, value)| match value {
            Value::String(text) => Some((name, Secret::new(text))),
            _ => None,
        })
        .collect();
    let fields = SecretFields::new(fields);
    if let Some(field) = required {
        if fields.get(field).is_none() {
            return Err(VaultError::MissingField {
                field: field.to_string(),
            });
        }
    }
    Ok(fields)
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

    const KV: &[u8] = br#"{"request_id":"r","lease_id":"","renewable":false,"lease_duration":0,
        "data":{"data":{"api_key":"k-123","n":5},"metadata":{"version":1}}}"#;

    #[test]
    fn reads_login_token_and_lease() {
        let body = br#"{"auth":{"client_token":"s.abc","lease_duration":3600,"renewable":true}}"#;
        let login = parse_login(200, body).unwrap();
        assert_eq!(login.token.expose(), "s.abc");
        assert_eq!(login.lease, Duration::from_secs(3600));
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
            parse_kv2(503, b"<html>", None),
            Err(VaultError::Unavailable { status: 503 })
        );
        assert_eq!(
            parse_kv2(504, b"", None),
            Err(VaultError::Unavailable { status: 504 })
        );
        assert_eq!(
            parse_kv2(429, b"", None),
            Err(VaultError::Unavailable { status: 429 })
        );
        assert_eq!(
            parse_kv2(403, b"", None),
            Err(VaultError::Denied { status: 403 })
        );
        assert_eq!(parse_kv2(404, b"", None), Err(VaultError::NotFound));
    }

    #[test]
    fn reads_string_fields_of_a_kv2_secret() {
        let fields = parse_kv2(200, KV, Some("api_key")).unwrap();
        assert_eq!(fields.get("api_key"), Some("k-123"));
        assert_eq!(fields.get("n"), None);
    }

    #[test]
    fn a_required_field_must_be_a_string() {
        let err = parse_kv2(200, KV, Some("n")).unwrap_err();
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
        assert_eq!(parse_kv2(200, body, None), Err(VaultError::NotFound));
    }

    #[test]
    fn oversized_bodies_are_refused() {
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            parse_kv2(200, &body, None),
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
}
