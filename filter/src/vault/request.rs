//! Requests to the vault, ready for `dispatch_http_call` on the vault cluster.

use std::fmt;

use crate::config::VaultSettings;
use crate::identity::SpiffeId;

/// Carries the caller's SPIFFE ID on every secret read, so that the vault's audit log can show
/// on whose behalf the proxy read it (enable it with `sys/config/auditing/request-headers`).
pub const CALLER_HEADER: &str = "x-latchkey-caller";

pub struct VaultRequest {
    pub method: &'static str,
    pub path: String,
    /// Pseudo-headers first, as Envoy requires `:method`, `:path` and `:authority`.
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
}

/// Shows method and path only: the headers hold the vault token.
impl fmt::Debug for VaultRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VaultRequest({} {})", self.method, self.path)
    }
}

impl VaultRequest {
    fn new(settings: &VaultSettings, method: &'static str, path: String) -> Self {
        let mut headers = vec![
            (":method", method.to_string()),
            (":path", path.clone()),
            (":authority", settings.authority.clone()),
        ];
        if let Some(namespace) = &settings.namespace {
            headers.push(("x-vault-namespace", namespace.clone()));
        }
        Self {
            method,
            path,
            headers,
            body: None,
        }
    }
}

/// `POST /v1/auth/<mount>/login` as the proxy itself: the client certificate on the vault
/// cluster's TLS is the credential, so the request carries only the role name.
pub fn cert_login(settings: &VaultSettings, mount: &str, role: &str) -> VaultRequest {
    let mut request = VaultRequest::new(settings, "POST", format!("/v1/auth/{mount}/login"));
    request
        .headers
        .push(("content-type", "application/json".into()));
    request.body = Some(serde_json::json!({ "name": role }).to_string().into_bytes());
    request
}

/// `POST /v1/auth/<mount>/login` as the caller, with the JWT-SVID the filter verified.
pub fn jwt_login(settings: &VaultSettings, mount: &str, role: &str, jwt: &str) -> VaultRequest {
    let mut request = VaultRequest::new(settings, "POST", format!("/v1/auth/{mount}/login"));
    request
        .headers
        .push(("content-type", "application/json".into()));
    let body = serde_json::json!({ "role": role, "jwt": jwt });
    request.body = Some(body.to_string().into_bytes());
    request
}

/// `POST /v1/auth/token/renew-self`: extends the proxy's token instead of logging in again.
pub fn renew_self(settings: &VaultSettings, token: &str) -> VaultRequest {
    let mut request = VaultRequest::new(settings, "POST", "/v1/auth/token/renew-self".into());
    request.headers.push(("x-vault-token", token.to_string()));
    request
        .headers
        .push(("content-type", "application/json".into()));
    request.body = Some(b"{}".to_vec());
    request
}

/// `GET <api_path>` for a secret, on behalf of `caller`. The path comes from
/// `CredentialSource::api_path` over a path checked with `is_safe_vault_path`.
pub fn secret_read(
    settings: &VaultSettings,
    api_path: String,
    token: &str,
    caller: &SpiffeId,
) -> VaultRequest {
    let mut request = VaultRequest::new(settings, "GET", api_path);
    request.headers.push(("x-vault-token", token.to_string()));
    request
        .headers
        .push((CALLER_HEADER, caller.as_str().to_string()));
    request
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::VaultAuth;

    fn settings(namespace: Option<&str>) -> VaultSettings {
        VaultSettings {
            cluster: "vault".into(),
            authority: "vault.local:8200".into(),
            namespace: namespace.map(Into::into),
            timeout: Duration::from_secs(2),
            auth: VaultAuth::Cert {
                mount: "cert".into(),
                role: "gw".into(),
            },
        }
    }

    fn header<'r>(request: &'r VaultRequest, name: &str) -> Option<&'r str> {
        request
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn cert_login_names_only_the_role() {
        let request = cert_login(&settings(None), "cert", "gw");
        assert_eq!(request.path, "/v1/auth/cert/login");
        assert_eq!(header(&request, ":method"), Some("POST"));
        assert_eq!(header(&request, ":authority"), Some("vault.local:8200"));
        assert_eq!(request.body.as_deref(), Some(&br#"{"name":"gw"}"#[..]));
        assert_eq!(header(&request, "x-vault-namespace"), None);
    }

    #[test]
    fn secret_read_carries_token_caller_and_namespace() {
        let caller = SpiffeId::parse("spiffe://example.org/ns/a/sa/b").unwrap();
        let token = "s.0123456789abcdef";
        let path = "/v1/secret/data/apps/a/b".to_string();
        let request = secret_read(&settings(Some("team-a")), path, token, &caller);
        assert_eq!(request.path, "/v1/secret/data/apps/a/b");
        assert_eq!(header(&request, "x-vault-token"), Some(token));
        assert_eq!(
            header(&request, CALLER_HEADER),
            Some("spiffe://example.org/ns/a/sa/b")
        );
        assert_eq!(header(&request, "x-vault-namespace"), Some("team-a"));
        assert!(!format!("{request:?}").contains(token));
    }

    #[test]
    fn jwt_login_presents_role_and_token() {
        let request = jwt_login(&settings(None), "jwt", "payments-checkout", "eyJ.a.b");
        assert_eq!(request.path, "/v1/auth/jwt/login");
        let body: serde_json::Value =
            serde_json::from_slice(request.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({ "role": "payments-checkout", "jwt": "eyJ.a.b" })
        );
        assert!(!format!("{request:?}").contains("eyJ"));
    }
}
