//! Unit tests of identity resolution; the parent declares this module under #[cfg(test)].

use std::time::Duration;

use jwt_simple::prelude::{Claims, Duration as JwtDuration, ECDSAP256KeyPairLike, ES256KeyPair};
use serde_json::json;

use super::*;
use crate::identity::{testdata, JwtSvidError, SpiffeIdError};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: u64 = 1_800_000_000;
const CHECKOUT: &str = "spiffe://example.org/ns/payments/sa/checkout";

fn settings(sources: Vec<Source>) -> IdentitySettings {
    IdentitySettings {
        sources,
        trust_domains: TrustDomains::new(vec!["example.org".into()]),
        xfcc: Some(XfccElementChoice::Last),
        jwt_svid: None,
        local_workload: Some(LocalWorkload::NodeMetadata {
            trust_domain: "example.org".into(),
        }),
    }
}

fn with_jwt(mut settings: IdentitySettings, header: &str) -> (IdentitySettings, ES256KeyPair) {
    let key = ES256KeyPair::generate().with_key_id("k1");
    let mut jwk: serde_json::Value = serde_json::from_str(&key.public_key().to_jwk()).unwrap();
    jwk["kid"] = json!("k1");
    let verifier = JwtSvidVerifier::new(
        &json!({ "keys": [jwk] }),
        vec!["latchkey".into()],
        Duration::from_secs(60),
    )
    .unwrap();
    settings.jwt_svid = Some(JwtSvidSettings {
        header: header.into(),
        forward: false,
        verifier,
    });
    (settings, key)
}

fn token(key: &ES256KeyPair, subject: &str) -> String {
    let mut claims = Claims::create(JwtDuration::from_secs(1))
        .with_subject(subject)
        .with_audience("latchkey");
    claims.issued_at = Some(JwtDuration::from_secs(NOW));
    claims.invalid_before = None;
    claims.expires_at = Some(JwtDuration::from_secs(NOW + 300));
    key.sign(claims).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn resolved(result: Result<Resolved, IdentityError>) -> (String, Source) {
    let resolved = result.unwrap();
    (resolved.id.to_string(), resolved.source)
}

#[test]
fn nothing_configured_present_is_no_identity() {
    let s = settings(vec![Source::PeerCertificate, Source::Xfcc]);
    let inputs = IdentityInputs::default();
    assert_eq!(resolve(&s, &inputs, NOW), Err(IdentityError::Missing));
}

#[test]
fn peer_certificate_names_the_caller() {
    let s = settings(vec![Source::PeerCertificate]);
    let inputs = IdentityInputs {
        peer_certificate: Some(testdata::SVID_CHECKOUT.as_bytes()),
        ..IdentityInputs::default()
    };
    assert_eq!(
        resolved(resolve(&s, &inputs, NOW)),
        (CHECKOUT.to_string(), Source::PeerCertificate)
    );
}

#[test]
fn first_source_with_an_identity_wins() {
    let s = settings(vec![Source::Xfcc, Source::PeerCertificate]);
    let sent = headers(&[(XFCC_HEADER, "URI=spiffe://example.org/ns/far/sa/hop")]);
    let inputs = IdentityInputs {
        headers: &sent,
        peer_certificate: Some(testdata::SVID_CHECKOUT.as_bytes()),
        ..IdentityInputs::default()
    };
    assert_eq!(
        resolved(resolve(&s, &inputs, NOW)),
        (
            "spiffe://example.org/ns/far/sa/hop".to_string(),
            Source::Xfcc
        )
    );
}

#[test]
fn an_absent_source_falls_through_to_the_next() {
    let s = settings(vec![Source::PeerCertificate, Source::Xfcc]);
    let sent = headers(&[(XFCC_HEADER, "URI=spiffe://example.org/ns/a/sa/b")]);
    // A verified certificate without any URI SAN names nobody.
    let inputs = IdentityInputs {
        headers: &sent,
        peer_certificate: Some(testdata::DNS_SAN_ONLY.as_bytes()),
        ..IdentityInputs::default()
    };
    assert_eq!(resolve(&s, &inputs, NOW).unwrap().source, Source::Xfcc);
}

#[test]
fn a_present_but_wrong_source_refuses_instead_of_falling_through() {
    let s = settings(vec![Source::PeerCertificate, Source::Xfcc]);
    let sent = headers(&[(XFCC_HEADER, "URI=spiffe://example.org/ns/a/sa/b")]);
    let inputs = IdentityInputs {
        headers: &sent,
        peer_certificate: Some(testdata::TWO_URI_SANS.as_bytes()),
        ..IdentityInputs::default()
    };
    assert_eq!(
        resolve(&s, &inputs, NOW),
        Err(IdentityError::Ambiguous {
            source: Source::PeerCertificate,
            uri_sans: 2
        })
    );
}

#[test]
fn foreign_trust_domain_is_refused_with_its_source() {
    let s = settings(vec![Source::Xfcc]);
    let sent = headers(&[(XFCC_HEADER, "URI=spiffe://evil.example/ns/a/sa/b")]);
    let inputs = IdentityInputs {
        headers: &sent,
        ..IdentityInputs::default()
    };
    assert_eq!(
        resolve(&s, &inputs, NOW),
        Err(IdentityError::UntrustedDomain {
            source: Source::Xfcc,
            trust_domain: "evil.example".into()
        })
    );
}

#[test]
fn xfcc_is_never_read_when_not_trusted() {
    let mut s = settings(vec![Source::Xfcc]);
    s.xfcc = None;
    let sent = headers(&[(XFCC_HEADER, "URI=spiffe://example.org/ns/a/sa/b")]);
    let inputs = IdentityInputs {
        headers: &sent,
        ..IdentityInputs::default()
    };
    assert_eq!(resolve(&s, &inputs, NOW), Err(IdentityError::Missing));
}

#[test]
fn a_repeated_identity_header_is_refused() {
    let s = settings(vec![Source::Xfcc]);
    let sent = headers(&[
        (XFCC_HEADER, "URI=spiffe://example.org/ns/a/sa/b"),
        (
            "X-Forwarded-Client-Cert",
            "URI=spiffe://example.org/ns/c/sa/d",
        ),
    ]);
    let inputs = IdentityInputs {
        headers: &sent,
        ..IdentityInputs::default()
    };
    assert_eq!(
        resolve(&s, &inputs, NOW),
        Err(IdentityError::RepeatedHeader {
            source: Source::Xfcc
        })
    );
}

#[test]
fn jwt_svid_in_a_bearer_authorization_header() {
    let (s, key) = with_jwt(settings(vec![Source::JwtSvid]), "authorization");
    let value = format!("Bearer {}", token(&key, CHECKOUT));
    let sent = headers(&[("authorization", &value)]);
    let inputs = IdentityInputs {
        headers: &sent,
        ..IdentityInputs::default()
    };
    assert_eq!(
        resolved(resolve(&s, &inputs, NOW)),
        (CHECKOUT.to_string(), Source::JwtSvid)
    );
}

#[test]
fn other_authorization_schemes_are_not_a_jwt_svid() {
    let (s, _) = with_jwt(settings(vec![Source::JwtSvid]), "authorization");
    let sent = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
    let inputs = IdentityInputs {
        headers: &sent,
        ..IdentityInputs::default()
    };
    assert_eq!(resolve(&s, &inputs, NOW), Err(IdentityError::Missing));
}

#[test]
fn jwt_svid_in_a_plain_header_with_or_without_bearer() {
    let (s, key) = with_jwt(settings(vec![Source::JwtSvid]), "x-jwt-svid");
    let raw = token(&key, CHECKOUT);
    for value in [raw.clone(), format!("bearer {raw}")] {
        let sent = headers(&[("x-jwt-svid", &value)]);
        let inputs = IdentityInputs {
            headers: &sent,
            ..IdentityInputs::default()
        };
        assert_eq!(resolve(&s, &inputs, NOW).unwrap().id.as_str(), CHECKOUT);
    }
}

#[test]
fn a_bad_jwt_svid_refuses_even_with_a_later_source() {
    let (s, key) = with_jwt(
        settings(vec![Source::JwtSvid, Source::PeerCertificate]),
        "x-jwt-svid",
    );
    let expired = {
        let mut claims = Claims::create(JwtDuration::from_secs(1))
            .with_subject(CHECKOUT)
            .with_audience("latchkey");
        claims.issued_at = Some(JwtDuration::from_secs(NOW - 3600));
        claims.invalid_before = None;
        claims.expires_at = Some(JwtDuration::from_secs(NOW - 600));
        key.sign(claims).unwrap()
    };
    let sent = headers(&[("x-jwt-svid", &expired)]);
    let inputs = IdentityInputs {
        headers: &sent,
        peer_certificate: Some(testdata::SVID_CHECKOUT.as_bytes()),
        ..IdentityInputs::default()
    };
    assert_eq!(
        resolve(&s, &inputs, NOW),
        Err(IdentityError::BadJwtSvid(JwtSvidError::Expired))
    );
}

#[test]
fn local_workload_from_node_metadata() {
    let s = settings(vec![Source::LocalWorkload]);
    let inputs = IdentityInputs {
        node_namespace: Some(b"payments"),
        node_service_account: Some(b"checkout"),
        ..IdentityInputs::default()
    };
    assert_eq!(
        resolved(resolve(&s, &inputs, NOW)),
        (CHECKOUT.to_string(), Source::LocalWorkload)
    );
}

#[test]
fn local_workload_without_metadata_names_nobody() {
    let s = settings(vec![Source::LocalWorkload]);
    let inputs = IdentityInputs {
        node_namespace: Some(b"payments"),
        ..IdentityInputs::default()
    };
    assert_eq!(resolve(&s, &inputs, NOW), Err(IdentityError::Missing));
}

#[test]
fn local_workload_metadata_must_make_a_valid_id() {
    let s = settings(vec![Source::LocalWorkload]);
    for (namespace, error) in [
        (&b"pay/../x"[..], SpiffeIdError::DotSegment),
        (b"pay\xff", SpiffeIdError::NotUtf8),
        (b"pay%2f", SpiffeIdError::BadPathChar { byte: b'%' }),
    ] {
        let inputs = IdentityInputs {
            node_namespace: Some(namespace),
            node_service_account: Some(b"checkout"),
            ..IdentityInputs::default()
        };
        assert_eq!(
            resolve(&s, &inputs, NOW),
            Err(IdentityError::NotSpiffe {
                source: Source::LocalWorkload,
                error
            })
        );
    }
}

#[test]
fn local_workload_from_config() {
    let mut s = settings(vec![Source::LocalWorkload]);
    s.local_workload = Some(LocalWorkload::Fixed(SpiffeId::parse(CHECKOUT).unwrap()));
    let inputs = IdentityInputs::default();
    assert_eq!(resolve(&s, &inputs, NOW).unwrap().id.as_str(), CHECKOUT);
}

#[test]
fn spoofing_removes_the_jwt_header_unless_forwarded() {
    let (mut s, _) = with_jwt(settings(vec![Source::JwtSvid]), "x-jwt-svid");
    let sent = headers(&[("X-JWT-SVID", "t"), ("authorization", "Bearer x")]);
    assert_eq!(crate::identity::spoofed_headers(&s, &sent), ["x-jwt-svid"]);
    if let Some(jwt) = &mut s.jwt_svid {
        jwt.forward = true;
    }
    assert!(crate::identity::spoofed_headers(&s, &sent).is_empty());
}
