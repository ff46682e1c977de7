//! Unit tests of request decisions and fetch jobs; the parent declares this module under #[cfg(test)].

use serde_json::json;

use super::*;
use crate::cache::fake::FakeStore;
use crate::metrics::fake::Recorded;
use crate::metrics::{Counter, Unmeasured, VaultCall, VaultOutcome};

const CHECKOUT: &[u8] = b"spiffe://example.org/ns/payments/sa/checkout";
const LOGIN_OK: &[u8] = br#"{"auth":{"client_token":"s.proxy-token","lease_duration":3600}}"#;
const KV_OK: &[u8] = br#"{"data":{"data":{"api_key":"k-123"},"metadata":{"version":1}}}"#;
const NOW: u64 = 1_000_000;
const READ_PATH: &str = "/v1/secret/data/apps/payments/checkout";

fn config(on_error: &str) -> Config {
    let raw = json!({
        "version": 1,
        "vault": {
            "cluster": "vault", "authority": "vault.local:8200",
            "auth": { "method": "cert", "role": "latchkey-gateway" }
        },
        // XFCC carries the caller here only because it is the easiest input to fake in a test.
        "identity": {
            "sources": ["xfcc"], "xfcc": { "trusted": true }, "trust_domains": ["example.org"]
        },
        "bindings": [{
            "name": "payments-api",
            "match": {
                "hosts": ["api.payments.example"],
                "identities": ["spiffe://example.org/ns/payments/*"]
            },
            "credential": {
                "engine": "kv2", "mount": "secret",
                "path": "apps/{namespace}/{service_account}", "field": "api_key", "refresh": "60s"
            },
            "inject": [{ "header": "authorization", "value": "Bearer {api_key}" }],
            "on_error": on_error
        }],
        "cache": { "jitter": 0, "expiry_margin": "1s" }
    });
    Config::from_json(raw.to_string().as_bytes()).unwrap()
}

/// The caller as the nearest hop's XFCC element names it.
fn caller(peer: Option<&'static [u8]>) -> IdentityInputs<'static> {
    let headers = peer.map(|id| {
        let mut value = b"URI=".to_vec();
        value.extend_from_slice(id);
        vec![(crate::identity::XFCC_HEADER.to_string(), value)]
    });
    IdentityInputs {
        headers: Box::leak(Box::new(headers.unwrap_or_default())),
        ..IdentityInputs::default()
    }
}

fn view(peer: Option<&'static [u8]>) -> RequestView<'static> {
    RequestView {
        authority: b"api.payments.example",
        path: b"/v1/charge",
        identity: caller(peer),
    }
}

fn env<'a>(config: &'a Config, store: &'a FakeStore, now_ms: u64) -> JobEnv<'a> {
    JobEnv {
        config,
        store,
        metrics: &Unmeasured,
        now_ms,
        entropy: 0,
    }
}

fn ok(status: u16, body: &[u8]) -> VaultAnswer<'_> {
    VaultAnswer {
        status,
        body,
        retry_after: None,
    }
}

fn called(step: JobStep) -> String {
    match step {
        JobStep::Call(request) => request.path,
        other => panic!("expected a vault call, got {other:?}"),
    }
}

fn injected(decision: Decision<'_>) -> Vec<(String, String)> {
    match decision {
        Decision::Inject { set, strip, .. } => {
            assert!(strip.contains(&"authorization".to_string()));
            set
        }
        other => panic!("expected injection, got {other:?}"),
    }
}

fn bearer() -> Vec<(String, String)> {
    vec![("authorization".into(), "Bearer k-123".into())]
}

/// A cold request: it waits and hands back the fetch it must start.
fn cold(config: &Config, store: &FakeStore, now: u64, holder: u64) -> (Pending, Job) {
    match begin(1, config, &view(Some(CHECKOUT)), store, now, holder) {
        Decision::Wait {
            pending,
            fetch: Some(job),
        } => (pending, job),
        other => panic!("expected to fetch, got {other:?}"),
    }
}

/// Runs a cold fetch through login and read with the given read answer; returns the pending
/// request's decision afterwards.
fn fetch_with<'c>(config: &'c Config, store: &FakeStore, read: VaultAnswer<'_>) -> Decision<'c> {
    let (pending, mut job) = cold(config, store, NOW, 1);
    assert_eq!(
        called(job.start(&env(config, store, NOW))),
        "/v1/auth/cert/login"
    );
    let step = job.on_answer(&env(config, store, NOW), &ok(200, LOGIN_OK));
    assert_eq!(called(step), READ_PATH);
    assert!(matches!(
        job.on_answer(&env(config, store, NOW), &read),
        JobStep::Done
    ));
    resolve(1, config, pending, store, NOW, 2)
}

#[test]
fn cold_request_logs_in_reads_and_injects() {
    let config = config("deny");
    let store = FakeStore::default();
    assert_eq!(
        injected(fetch_with(&config, &store, ok(200, KV_OK))),
        bearer()
    );
}

#[test]
fn concurrent_cold_requests_share_one_fetch() {
    let config = config("deny");
    let store = FakeStore::default();
    let (_, _job) = cold(&config, &store, NOW, 1);
    for holder in 2..100 {
        let decision = begin(1, &config, &view(Some(CHECKOUT)), &store, NOW, holder);
        assert!(
            matches!(decision, Decision::Wait { fetch: None, .. }),
            "{decision:?}"
        );
    }
}

#[test]
fn second_request_is_a_hit_without_vault_calls() {
    let config = config("deny");
    let store = FakeStore::default();
    fetch_with(&config, &store, ok(200, KV_OK));
    let decision = begin(2, &config, &view(Some(CHECKOUT)), &store, NOW + 1_000, 3);
    assert!(matches!(&decision, Decision::Inject { refresh: None, .. }));
    assert_eq!(injected(decision), bearer());
}

#[test]
fn refresh_reuses_the_cached_token() {
    let config = config("deny");
    let store = FakeStore::default();
    fetch_with(&config, &store, ok(200, KV_OK));

    let later = NOW + 40_000;
    let decision = begin(2, &config, &view(Some(CHECKOUT)), &store, later, 3);
    let Decision::Inject {
        refresh: Some(mut job),
        ..
    } = decision
    else {
        panic!("no background refresh: {decision:?}")
    };
    assert_eq!(called(job.start(&env(&config, &store, later))), READ_PATH);
}

#[test]
fn revoked_cached_token_triggers_one_new_login() {
    let config = config("deny");
    let store = FakeStore::default();
    fetch_with(&config, &store, ok(200, KV_OK));

    let later = NOW + 61_000;
    let (_, mut job) = cold(&config, &store, later, 3);
    let env = env(&config, &store, later);
    assert_eq!(called(job.start(&env)), READ_PATH);
    assert_eq!(
        called(job.on_answer(&env, &ok(403, b"{}"))),
        "/v1/auth/cert/login"
    );
    assert_eq!(called(job.on_answer(&env, &ok(200, LOGIN_OK))), READ_PATH);
    // A fresh token that is refused too is a real denial, not another login.
    assert!(matches!(
        job.on_answer(&env, &ok(403, b"{}")),
        JobStep::Done
    ));
    let decision = begin(4, &config, &view(Some(CHECKOUT)), &store, later, 4);
    assert!(
        matches!(decision, Decision::Deny(Denial::VaultDenied)),
        "{decision:?}"
    );
}

#[test]
fn a_second_job_waits_for_the_login_in_flight() {
    let config = config("deny");
    let store = FakeStore::default();
    let (_, mut first) = cold(&config, &store, NOW, 1);
    assert_eq!(
        called(first.start(&env(&config, &store, NOW))),
        "/v1/auth/cert/login"
    );

    let other: &'static [u8] = b"spiffe://example.org/ns/payments/sa/refunds";
    let Decision::Wait {
        fetch: Some(mut second),
        ..
    } = begin(2, &config, &view(Some(other)), &store, NOW, 2)
    else {
        panic!("the second identity should fetch")
    };
    assert!(matches!(
        second.start(&env(&config, &store, NOW)),
        JobStep::WaitForToken
    ));
    first.on_answer(&env(&config, &store, NOW), &ok(200, LOGIN_OK));
    assert_eq!(
        called(second.start(&env(&config, &store, NOW))),
        "/v1/secret/data/apps/payments/refunds"
    );
}

#[test]
fn no_identity_is_denied_without_a_vault_call() {
    let config = config("deny");
    let decision = begin(1, &config, &view(None), &FakeStore::default(), NOW, 1);
    assert!(matches!(decision, Decision::Deny(Denial::NoIdentity)));
}

#[test]
fn foreign_trust_domain_is_denied() {
    let config = config("deny");
    let peer: &'static [u8] = b"spiffe://evil.example/ns/payments/sa/checkout";
    let decision = begin(1, &config, &view(Some(peer)), &FakeStore::default(), NOW, 1);
    assert!(matches!(
        decision,
        Decision::Deny(Denial::UntrustedIdentity)
    ));
}

#[test]
fn each_identity_refusal_has_its_own_denial() {
    let config = config("deny");
    let cases: [(&'static [u8], Denial); 3] = [
        (
            b"spiffe://example.org/a;URI=spiffe://example.org/b",
            Denial::AmbiguousIdentity,
        ),
        (b"spiffe://example.org/a/../b", Denial::InvalidIdentity),
        (b"\"unterminated", Denial::InvalidIdentity),
    ];
    for (peer, denial) in cases {
        let decision = begin(1, &config, &view(Some(peer)), &FakeStore::default(), NOW, 1);
        assert!(
            matches!(decision, Decision::Deny(d) if d == denial),
            "{decision:?}"
        );
    }
}

#[test]
fn unbound_destination_passes_through() {
    let config = config("deny");
    let request = RequestView {
        authority: b"other.example",
        path: b"/",
        identity: caller(Some(CHECKOUT)),
    };
    let decision = begin(1, &config, &request, &FakeStore::default(), NOW, 1);
    assert!(matches!(decision, Decision::PassThrough));
}

#[test]
fn identity_without_kubernetes_parts_cannot_render_the_path() {
    let config = config("deny");
    let peer: &'static [u8] = b"spiffe://example.org/ns/payments/batch";
    let decision = begin(1, &config, &view(Some(peer)), &FakeStore::default(), NOW, 1);
    assert!(matches!(decision, Decision::Deny(Denial::IdentityUnusable)));
}

#[test]
fn vault_errors_map_to_denials_for_the_waiters() {
    let cases: [(u16, &[u8], Denial); 5] = [
        (503, b"upstream connect error", Denial::VaultUnavailable),
        (504, b"", Denial::VaultUnavailable),
        (404, b"{\"errors\":[]}", Denial::CredentialNotFound),
        (200, b"<html>oops</html>", Denial::InvalidCredential),
        (
            200,
            br#"{"data":{"data":{"other":"x"}}}"#,
            Denial::InvalidCredential,
        ),
    ];
    for (status, body, expected) in cases {
        let config = config("deny");
        let decision = fetch_with(&config, &FakeStore::default(), ok(status, body));
        assert!(
            matches!(decision, Decision::Deny(d) if d == expected),
            "{status}: {decision:?}"
        );
    }
}

#[test]
fn unsafe_credential_is_refused_and_not_cached() {
    let config = config("deny");
    let store = FakeStore::default();
    let body = br#"{"data":{"data":{"api_key":"k\r\nx-evil: 1"}}}"#;
    let decision = fetch_with(&config, &store, ok(200, body));
    assert!(matches!(
        decision,
        Decision::Deny(Denial::InvalidCredential)
    ));
}

#[test]
fn login_refused_is_reported_as_such() {
    let config = config("deny");
    let store = FakeStore::default();
    let (pending, mut job) = cold(&config, &store, NOW, 1);
    job.start(&env(&config, &store, NOW));
    assert!(matches!(
        job.on_answer(&env(&config, &store, NOW), &ok(400, b"{}")),
        JobStep::Done
    ));
    let decision = resolve(1, &config, pending, &store, NOW, 2);
    assert!(
        matches!(decision, Decision::Deny(Denial::VaultLoginFailed)),
        "{decision:?}"
    );
}

#[test]
fn allow_without_credential_strips_and_forwards() {
    let config = config("allow_without_credential");
    let decision = fetch_with(&config, &FakeStore::default(), ok(503, b""));
    assert_eq!(injected(decision), vec![]);
}

#[test]
fn abandoned_call_fails_the_waiters() {
    let config = config("deny");
    let store = FakeStore::default();
    let (pending, mut job) = cold(&config, &store, NOW, 1);
    job.start(&env(&config, &store, NOW));
    assert!(matches!(
        job.abandon(&env(&config, &store, NOW)),
        JobStep::Done
    ));
    let decision = resolve(1, &config, pending, &store, NOW, 2);
    assert!(matches!(decision, Decision::Deny(Denial::VaultUnavailable)));
}

#[test]
fn expired_waiter_follows_on_error() {
    let config = config("deny");
    let (pending, _) = cold(&config, &FakeStore::default(), NOW, 1);
    assert!(matches!(
        expired(&config, &pending),
        Decision::Deny(Denial::VaultUnavailable)
    ));
}

#[test]
fn a_new_config_generation_does_not_read_old_entries() {
    let store = FakeStore::default();
    fetch_with(&config("deny"), &store, ok(200, KV_OK));
    let newer = config("allow_without_credential");
    let decision = begin(2, &newer, &view(Some(CHECKOUT)), &store, NOW, 9);
    assert!(matches!(decision, Decision::Wait { fetch: Some(_), .. }));
}

#[test]
fn exhaustive_bindings_deny_unbound_destinations() {
    let mut config = config("deny");
    config.deny_unbound = true;
    let request = RequestView {
        authority: b"other.example",
        path: b"/",
        identity: caller(Some(CHECKOUT)),
    };
    let decision = begin(1, &config, &request, &FakeStore::default(), NOW, 1);
    assert!(matches!(decision, Decision::Deny(Denial::NoBinding)));
}

const LOGIN_RENEWABLE: &[u8] =
    br#"{"auth":{"client_token":"s.proxy-token","lease_duration":3600,"renewable":true}}"#;

/// Warms the cache with a renewable token, then starts a job at the token's refresh point.
fn job_at_token_refresh(config: &Config, store: &FakeStore, login: &[u8]) -> (Job, u64) {
    let (_, mut job) = cold(config, store, NOW, 1);
    job.start(&env(config, store, NOW));
    job.on_answer(&env(config, store, NOW), &ok(200, login));
    job.on_answer(&env(config, store, NOW), &ok(200, KV_OK));
    // Past the KV refresh interval and the token's refresh point (two thirds of an hour).
    let later = NOW + 2_400_000;
    (cold(config, store, later, 5).1, later)
}

#[test]
fn a_renewable_token_is_renewed_before_it_expires() {
    let config = config("deny");
    let store = FakeStore::default();
    let (mut job, later) = job_at_token_refresh(&config, &store, LOGIN_RENEWABLE);
    let env = env(&config, &store, later);
    assert_eq!(called(job.start(&env)), "/v1/auth/token/renew-self");
    assert_eq!(
        called(job.on_answer(&env, &ok(200, LOGIN_RENEWABLE))),
        READ_PATH
    );
}

#[test]
fn a_failed_renewal_falls_back_to_a_login() {
    let config = config("deny");
    let store = FakeStore::default();
    let (mut job, later) = job_at_token_refresh(&config, &store, LOGIN_RENEWABLE);
    let env = env(&config, &store, later);
    job.start(&env);
    assert_eq!(
        called(job.on_answer(&env, &ok(403, b"{}"))),
        "/v1/auth/cert/login"
    );
    assert_eq!(called(job.on_answer(&env, &ok(200, LOGIN_OK))), READ_PATH);
}

#[test]
fn a_token_that_cannot_be_renewed_is_replaced_by_a_login() {
    let config = config("deny");
    let store = FakeStore::default();
    let (mut job, later) = job_at_token_refresh(&config, &store, LOGIN_OK);
    assert_eq!(
        called(job.start(&env(&config, &store, later))),
        "/v1/auth/cert/login"
    );
}

#[test]
fn every_vault_call_is_counted_by_outcome() {
    let config = config("deny");
    let store = FakeStore::default();
    let recorded = Recorded::default();
    let env = JobEnv {
        config: &config,
        store: &store,
        metrics: &recorded,
        now_ms: NOW,
        entropy: 0,
    };
    let (_, mut job) = cold(&config, &store, NOW, 1);
    job.start(&env);
    job.on_answer(&env, &ok(200, LOGIN_OK));
    job.on_answer(&env, &ok(200, br#"{"data":{"data":{"api_key":"a\nb"}}}"#));
    assert_eq!(
        recorded.count(Counter::VaultCall(VaultCall::Login, VaultOutcome::Ok)),
        1
    );
    let invalid = Counter::VaultCall(VaultCall::Read, VaultOutcome::InvalidValue);
    assert_eq!(recorded.count(invalid), 1);
    assert_eq!(recorded.counters.borrow().len(), 2);
}
