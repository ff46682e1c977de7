//! Unit tests of JWT-SVID verification; the parent declares this module under #[cfg(test)].

use ct_codecs::{Base64UrlSafeNoPadding, Encoder};
use jwt_simple::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;

use super::rsa_key::RSA_PKCS8;
use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: u64 = 1_800_000_000;
const SUBJECT: &str = "spiffe://example.org/ns/payments/sa/checkout";

struct Signers {
    es256: ES256KeyPair,
    rsa: RS256KeyPair,
    ps256: PS256KeyPair,
}

fn signers() -> Signers {
    Signers {
        es256: ES256KeyPair::generate().with_key_id("ec-1"),
        rsa: RS256KeyPair::from_pem(RSA_PKCS8)
            .unwrap()
            .with_key_id("rsa-1"),
        ps256: PS256KeyPair::from_pem(RSA_PKCS8)
            .unwrap()
            .with_key_id("rsa-1"),
    }
}

fn jwk(public: String, kid: &str, keep_alg: bool) -> Value {
    let mut jwk: Value = serde_json::from_str(&public).unwrap();
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("jwt-svid");
    if !keep_alg {
        jwk.as_object_mut().unwrap().remove("alg");
    }
    jwk
}

fn verifier(s: &Signers) -> JwtSvidVerifier {
    let jwks = json!({ "keys": [
        jwk(s.es256.public_key().to_jwk(), "ec-1", true),
        // No alg: the RSA key verifies RS and PS tokens alike.
        jwk(s.rsa.public_key().to_jwk(), "rsa-1", false),
    ]});
    let audiences = vec!["latchkey".to_string()];
    JwtSvidVerifier::new(&jwks, audiences, Duration::from_secs(60)).unwrap()
}

fn claims(subject: &str, audience: &str, iat: u64, exp: Option<u64>) -> JWTClaims<NoCustomClaims> {
    let mut claims = Claims::create(JwtDuration::from_secs(1))
        .with_subject(subject)
        .with_audience(audience);
    claims.issued_at = Some(JwtDuration::from_secs(iat));
    claims.invalid_before = None;
    claims.expires_at = exp.map(JwtDuration::from_secs);
    claims
}

fn good_claims() -> JWTClaims<NoCustomClaims> {
    claims(SUBJECT, "latchkey", NOW - 10, Some(NOW + 300))
}

fn unsigned(header: Value, claims: Value) -> String {
    let part = |v: Value| Base64UrlSafeNoPadding::encode_to_string(v.to_string()).unwrap();
    format!("{}.{}.", part(header), part(claims))
}

#[test]
fn accepts_a_valid_token_of_each_key_type() {
    let s = signers();
    let v = verifier(&s);
    let tokens = [
        s.es256.sign(good_claims()).unwrap(),
        s.rsa.sign(good_claims()).unwrap(),
        s.ps256.sign(good_claims()).unwrap(),
    ];
    for token in tokens {
        let id = v.verify(token.as_bytes(), NOW).unwrap();
        assert_eq!(id.as_str(), SUBJECT);
    }
}

#[test]
fn refuses_an_expired_token_beyond_the_leeway() {
    let s = signers();
    let v = verifier(&s);
    let token = s
        .es256
        .sign(claims(SUBJECT, "latchkey", NOW - 600, Some(NOW - 61)))
        .unwrap();
    assert_eq!(v.verify(token.as_bytes(), NOW), Err(JwtSvidError::Expired));
    // Within the 60 s leeway it is still good; jwt-simple's own default would allow 15 min.
    let token = s
        .es256
        .sign(claims(SUBJECT, "latchkey", NOW - 600, Some(NOW - 59)))
        .unwrap();
    assert!(v.verify(token.as_bytes(), NOW).is_ok());
}

#[test]
fn refuses_a_token_not_valid_yet() {
    let s = signers();
    let v = verifier(&s);
    let mut future = good_claims();
    future.invalid_before = Some(JwtDuration::from_secs(NOW + 120));
    let token = s.es256.sign(future).unwrap();
    assert_eq!(
        v.verify(token.as_bytes(), NOW),
        Err(JwtSvidError::NotYetValid)
    );

    let issued_later = claims(SUBJECT, "latchkey", NOW + 120, Some(NOW + 600));
    let token = s.es256.sign(issued_later).unwrap();
    assert_eq!(
        v.verify(token.as_bytes(), NOW),
        Err(JwtSvidError::NotYetValid)
    );
}

#[test]
fn refuses_a_token_for_another_audience() {
    let s = signers();
    let v = verifier(&s);
    let token = s
        .es256
        .sign(claims(SUBJECT, "someone-else", NOW, Some(NOW + 300)))
        .unwrap();
    assert_eq!(
        v.verify(token.as_bytes(), NOW),
        Err(JwtSvidError::WrongAudience)
    );
}

#[test]
fn refuses_a_token_without_exp() {
    let s = signers();
    let v = verifier(&s);
    let token = s
        .es256
        .sign(claims(SUBJECT, "latchkey", NOW, None))
        .unwrap();
    assert_eq!(
        v.verify(token.as_bytes(), NOW),
        Err(JwtSvidError::MissingExpiry)
    );
}

#[test]
fn refuses_an_unknown_kid_and_a_missing_kid() {
    let s = signers();
    let v = verifier(&s);
    let stranger = ES256KeyPair::generate().with_key_id("ec-2");
    let token = stranger.sign(good_claims()).unwrap();
    assert_eq!(
        v.verify(token.as_bytes(), NOW),
        Err(JwtSvidError::UnknownKey)
    );

    let anonymous = ES256KeyPair::generate();
    let token = anonymous.sign(good_claims()).unwrap();
    assert_eq!(
        v.verify(token.as_bytes(), NOW),
        Err(JwtSvidError::MissingKeyId)
    );
}

#[test]
fn refuses_a_token_signed_by_another_key_under_a_trusted_kid() {
    let s = signers();
    let v = verifier(&s);
    let impostor = ES256KeyPair::generate().with_key_id("ec-1");
    let token = impostor.sign(good_claims()).unwrap();
    assert_eq!(
        v.verify(token.as_bytes(), NOW),
        Err(JwtSvidError::BadSignature)
    );
}

#[test]
fn refuses_alg_none_and_hmac() {
    let s = signers();
    let v = verifier(&s);
    let body = json!({"sub": SUBJECT, "aud": "latchkey", "exp": NOW + 300});
    let none = unsigned(json!({"alg": "none", "kid": "ec-1"}), body.clone());
    assert_eq!(
        v.verify(none.as_bytes(), NOW),
        Err(JwtSvidError::UnsupportedAlgorithm)
    );
    let hmac = HS256Key::from_bytes(&[7u8; 32]).with_key_id("rsa-1");
    let token = hmac.authenticate(good_claims()).unwrap();
    assert_eq!(
        v.verify(token.as_bytes(), NOW),
        Err(JwtSvidError::UnsupportedAlgorithm)
    );
}

#[test]
fn refuses_an_alg_the_key_is_not_for() {
    let s = signers();
    let v = verifier(&s);
    // ES384 under the P-256 key's kid.
    let other = ES384KeyPair::generate().with_key_id("ec-1");
    let token = other.sign(good_claims()).unwrap();
    assert_eq!(
        v.verify(token.as_bytes(), NOW),
        Err(JwtSvidError::AlgorithmMismatch)
    );
}

#[test]
fn refuses_a_subject_that_is_not_a_spiffe_id() {
    let s = signers();
    let v = verifier(&s);
    for (subject, error) in [
        ("checkout", SpiffeIdError::WrongScheme),
        ("spiffe://example.org/a/../b", SpiffeIdError::DotSegment),
    ] {
        let token = s
            .es256
            .sign(claims(subject, "latchkey", NOW, Some(NOW + 300)))
            .unwrap();
        assert_eq!(
            v.verify(token.as_bytes(), NOW),
            Err(JwtSvidError::SubjectNotSpiffe(error))
        );
    }
    let mut no_subject = good_claims();
    no_subject.subject = None;
    let token = s.es256.sign(no_subject).unwrap();
    assert_eq!(
        v.verify(token.as_bytes(), NOW),
        Err(JwtSvidError::MissingSubject)
    );
}

#[test]
fn refuses_garbage_and_oversized_input_without_panicking() {
    let v = verifier(&signers());
    for garbage in [
        &b""[..],
        b"a.b.c",
        b"\xff\xfe",
        b"...",
        b"eyJhbGciOiJFUzI1NiJ9",
    ] {
        assert!(v.verify(garbage, NOW).is_err(), "{garbage:?}");
    }
    let huge = vec![b'a'; MAX_TOKEN_BYTES + 1];
    assert!(matches!(
        v.verify(&huge, NOW),
        Err(JwtSvidError::TooLarge { .. })
    ));
}

#[test]
fn bundle_refusals_name_the_key() {
    let new = |keys: Value| {
        JwtSvidVerifier::new(&json!({ "keys": keys }), vec![], Duration::from_secs(60))
    };
    let s = signers();
    let ec = jwk(s.es256.public_key().to_jwk(), "ec-1", true);
    assert_eq!(new(json!([ec.clone(), ec.clone()])).unwrap_err().index, 1);

    let mut no_kid = ec.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    assert!(new(json!([no_kid])).unwrap_err().reason.contains("kid"));

    let mut p521 = ec.clone();
    p521["crv"] = json!("P-521");
    assert!(new(json!([p521])).unwrap_err().reason.contains("ES512"));

    let mut wrong_alg = ec.clone();
    wrong_alg["alg"] = json!("RS256");
    assert!(new(json!([wrong_alg])).is_err());

    let mut hmac = ec.clone();
    hmac["alg"] = json!("HS256");
    assert!(new(json!([hmac])).is_err());

    let mut broken = ec.clone();
    broken["x"] = json!("AAAA");
    assert!(new(json!([broken])).unwrap_err().reason.contains("ES256"));

    assert!(JwtSvidVerifier::new(&json!([]), vec![], Duration::ZERO).is_err());
}

#[test]
fn x509_svid_keys_of_a_spiffe_bundle_are_skipped() {
    let s = signers();
    let x509 = json!({"kty": "EC", "use": "x509-svid", "crv": "P-256", "x5c": ["..."]});
    let ec = jwk(s.es256.public_key().to_jwk(), "ec-1", true);
    let v = JwtSvidVerifier::new(
        &json!({ "keys": [x509, ec] }),
        vec!["latchkey".into()],
        Duration::ZERO,
    )
    .unwrap();
    let token = s.es256.sign(good_claims()).unwrap();
    assert!(v.verify(token.as_bytes(), NOW).is_ok());
}
