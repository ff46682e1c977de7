//! Secret hygiene: finds credentials and vault tokens where they must never be, in Envoy's log,
//! its stats and its config dump. A finding names the place and the kind of secret, never the
//! secret itself, so that the report cannot leak it either.

use serde_json::Value;

/// The secrets a vault handed out, from its raw audit log: every token a login returned and
/// every string a secret read returned (KV fields, database passwords, identity tokens).
pub fn handed_out(audit_entries: &[Value]) -> Vec<(String, &'static str)> {
    let mut secrets = Vec::new();
    let reads_and_logins = |e: &&Value| {
        e["type"] == "response"
            && matches!(e["request"]["operation"].as_str(), Some("read" | "update"))
    };
    for entry in audit_entries.iter().filter(reads_and_logins) {
        let response = &entry["response"];
        if let Some(token) = response["auth"]["client_token"].as_str() {
            secrets.push((token.to_string(), "vault token"));
        }
        let data = &response["data"];
        let path = entry["request"]["path"].as_str().unwrap_or_default();
        let fields = match path {
            p if p.starts_with("secret/data/") => data["data"].as_object(),
            p if p.starts_with("database/creds/") || p.starts_with("identity/oidc/token/") => {
                data.as_object()
            }
            _ => None,
        };
        for (name, value) in fields.into_iter().flatten() {
            // A generated user name is not a secret and may rightly show up; its password is.
            if name == "username" || name == "client_id" {
                continue;
            }
            if let Some(text) = value.as_str().filter(|t| t.len() >= 8) {
                secrets.push((text.to_string(), "credential"));
            }
        }
    }
    secrets
}

/// Where `text` holds one of `secrets` or something shaped like a vault token or a JWT.
pub fn findings(place: &str, text: &str, secrets: &[(String, &'static str)]) -> Vec<String> {
    let mut found: Vec<String> = secrets
        .iter()
        .filter(|(secret, _)| text.contains(secret.as_str()))
        .map(|(_, kind)| format!("{place}: a {kind} the vault handed out"))
        .collect();
    if has_token_shape(text) {
        found.push(format!("{place}: something shaped like a vault token"));
    }
    if has_jwt_shape(text) {
        found.push(format!("{place}: something shaped like a JWT"));
    }
    found
}

/// `s.` or `hvs.` followed by 24 or more base62 characters, at a word start.
fn has_token_shape(text: &str) -> bool {
    let bytes = text.as_bytes();
    ["s.", "hvs."].iter().any(|prefix| {
        text.match_indices(prefix).any(|(at, _)| {
            let starts_word = at == 0
                || bytes
                    .get(at - 1)
                    .is_some_and(|b| !b.is_ascii_alphanumeric() && *b != b'.');
            let rest = &bytes[at + prefix.len()..];
            let run = rest
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count();
            starts_word && run >= 24
        })
    })
}

/// `eyJ…​.eyJ…​.` : a base64url JSON header and payload.
fn has_jwt_shape(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices("eyJ").any(|(at, _)| {
        let base64url = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
        let header = bytes[at..].iter().take_while(|b| base64url(b)).count();
        let after = &bytes[at + header..];
        after.starts_with(b".eyJ")
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finds_handed_out_secrets_and_shapes_without_naming_them() {
        let audit = [json!({
            "type": "response",
            "request": { "path": "database/creds/orders", "operation": "read" },
            "response": { "data": { "username": "v-orders-123", "password": "A1b2-C3d4-E5f6" } }
        })];
        let secrets = handed_out(&audit);
        assert_eq!(secrets.len(), 1);
        let found = findings("log", "user v-orders-123 pass A1b2-C3d4-E5f6", &secrets);
        assert_eq!(found, ["log: a credential the vault handed out"]);
        assert!(findings("log", "token s.AbCdEfGhIjKlMnOpQrStUvWx1", &[]).len() == 1);
        assert!(findings("log", "jwt eyJhbGciOi.eyJzdWIiOi.sig", &[]).len() == 1);
        assert!(findings("log", "extensions.filters.http.wasm ttl_s=3600", &[]).is_empty());
    }
}
