//! Checks shared by several end-to-end test files.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use latchkey_test_harness::OpenBao;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct IdentityClaims {
    pub sub: String,
    pub exp: u64,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Verifies an identity token of `role` against OpenBao's published keys, audience and issuer.
pub fn verify_identity_token(bao: &OpenBao, role: &str, jwt: &str) -> IdentityClaims {
    let header = decode_header(jwt).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    let keys: JwkSet = serde_json::from_value(bao.oidc_keys().unwrap()).unwrap();
    let key = keys
        .find(header.kid.as_deref().unwrap())
        .expect("signing key");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[bao.oidc_audience(role).unwrap()]);
    validation.set_issuer(&[bao.oidc_issuer().unwrap()]);
    decode::<IdentityClaims>(jwt, &DecodingKey::from_jwk(key).unwrap(), &validation)
        .unwrap()
        .claims
}
