//! A JWT-SVID issuer for tests: one ES256 key with a `kid`, its JWKS trust bundle for the
//! plugin config, and tokens with any subject, audience and validity window.

use std::time::{SystemTime, UNIX_EPOCH};

use jwt_simple::prelude::{Claims, Duration, ECDSAP256KeyPairLike, ES256KeyPair};
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// See the module docs.
pub struct JwtSvidIssuer {
    key: ES256KeyPair,
    kid: String,
}

impl JwtSvidIssuer {
    /// A fresh P-256 key named `kid`.
    pub fn new(kid: &str) -> JwtSvidIssuer {
        JwtSvidIssuer {
            key: ES256KeyPair::generate().with_key_id(kid),
            kid: kid.to_string(),
        }
    }

    /// `{"keys": [<public JWK with kid and "use": "jwt-svid">]}`.
    pub fn jwks(&self) -> Value {
        let mut jwk: Value =
            serde_json::from_str(&self.key.public_key().to_jwk()).unwrap_or(Value::Null);
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("jwt-svid");
        json!({ "keys": [jwk] })
    }

    /// The public key as PEM, for a vault's `jwt_validation_pubkeys`.
    pub fn public_key_pem(&self) -> Result<String> {
        self.key
            .public_key()
            .to_pem()
            .map_err(|e| Error::unexpected("encoding the JWT-SVID key", e.to_string()))
    }

    /// A token for `subject` and `audience`, valid from `not_before_s` to `expires_s` seconds
    /// relative to now (negative for the past).
    pub fn token(
        &self,
        subject: &str,
        audience: &str,
        not_before_s: i64,
        expires_s: i64,
    ) -> Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| Error::unexpected("reading the clock", e.to_string()))?
            .as_secs();
        let at = |offset: i64| Duration::from_secs(now.saturating_add_signed(offset));
        let mut claims = Claims::create(Duration::from_secs(1))
            .with_subject(subject)
            .with_audience(audience);
        claims.issued_at = Some(at(not_before_s));
        claims.invalid_before = Some(at(not_before_s));
        claims.expires_at = Some(at(expires_s));
        self.key
            .sign(claims)
            .map_err(|e| Error::unexpected("signing a JWT-SVID", e.to_string()))
    }
}
