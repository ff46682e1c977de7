use serde_json::json;

use super::*;
use crate::cache::fake::FakeStore;

const CHECKOUT: &[u8] = b"spiffe://example.org/ns/payments/sa/checkout";
const LOGIN_OK: &[u8] = br#"{"auth":{"client_token":"s.proxy-token","lease_duration":3600}}"#;
const KV_OK: &[u8] = br#"{"data":{"data":{"api_key":"k-123"},"metadata":{"version":1}}}"#;
const NOW: u64 = 1_000_000;

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
        }]
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

fn path_of(decision: &Decision<'_>) -> String {
    match decision {
        Decision::CallVault(request) => request.path.clone(),
        other => panic!("expected a vault call, got {other:?}"),
    }
}

fn injected(decision: Decision<'_>) -> Vec<(String, String)> {
    match decision {
        Decision::Inject { set, strip } => {
            assert!(strip.contains(&"authorization".to_string()));
            set
        }
        other => panic!("expected injection, got {other:?}"),
    }
}

fn bearer() -> Vec<(String, String)> {
    vec![("authorization".into(), "Bearer k-123".into())]
}

/// Runs one request through login and read with the given vault answers.
fn cold_fetch(config: &Config, store: &FakeStore, read: (u16, &[u8])) -> Decision<'static> {
    let config: &'static Config = Box::leak(Box::new(config.clone()));
    let (decision, fetch) = begin(1, config, &view(Some(CHECKOUT)), store, NOW);
    assert_eq!(path_of(&decision), "/v1/auth/cert/login");
    let mut fetch = fetch.unwrap();
    let decision = fetch.on_vault_response(config, 200, LOGIN_OK, store, NOW);
    assert_eq!(path_of(&decision), "/v1/secret/data/apps/payments/checkout");
    fetch.on_vault_response(config, read.0, read.1, store, NOW)
}

#[test]
fn cold_request_logs_in_reads_and_injects() {
    let store = FakeStore::default();
    let decision = cold_fetch(&config("deny"), &store, (200, KV_OK));
    assert_eq!(injected(decision), bearer());
}

#[test]
fn second_request_is_served_from_the_cache() {
    let config = config("deny");
    let store = FakeStore::default();
    cold_fetch(&config, &store, (200, KV_OK));

    let (decision, fetch) = begin(2, &config, &view(Some(CHECKOUT)), &store, NOW + 1_000);
    assert!(fetch.is_none());
    assert_eq!(injected(decision), bearer());
}

#[test]
fn after_refresh_interval_the_cached_token_reads_again() {
    let config = config("deny");
    let store = FakeStore::default();
    cold_fetch(&config, &store, (200, KV_OK));

    let later = NOW + 60_000;
    let (decision, fetch) = begin(2, &config, &view(Some(CHECKOUT)), &store, later);
    assert_eq!(path_of(&decision), "/v1/secret/data/apps/payments/checkout");
    let decision = fetch
        .unwrap()
        .on_vault_response(&config, 200, KV_OK, &store, later);
    assert_eq!(injected(decision), bearer());
}

#[test]
fn revoked_cached_token_triggers_one_new_login() {
    let config = config("deny");
    let store = FakeStore::default();
    cold_fetch(&config, &store, (200, KV_OK));

    let later = NOW + 60_000;
    let (_, fetch) = begin(2, &config, &view(Some(CHECKOUT)), &store, later);
    let mut fetch = fetch.unwrap();
    let decision = fetch.on_vault_response(&config, 403, b"{}", &store, later);
    assert_eq!(path_of(&decision), "/v1/auth/cert/login");
    fetch.on_vault_response(&config, 200, LOGIN_OK, &store, later);
    // A fresh token that is refused too is a real denial, not another login.
    let decision = fetch.on_vault_response(&config, 403, b"{}", &store, later);
    assert!(matches!(decision, Decision::Deny(Denial::VaultDenied)));
}

#[test]
fn no_identity_is_denied_without_a_vault_call() {
    let config = config("deny");
    let (decision, fetch) = begin(1, &config, &view(None), &FakeStore::default(), NOW);
    assert!(matches!(decision, Decision::Deny(Denial::NoIdentity)));
    assert!(fetch.is_none());
}

#[test]
fn foreign_trust_domain_is_denied() {
    let peer: &'static [u8] = b"spiffe://evil.example/ns/payments/sa/checkout";
    let config = config("deny");
    let (decision, _) = begin(1, &config, &view(Some(peer)), &FakeStore::default(), NOW);
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
        let (decision, fetch) = begin(1, &config, &view(Some(peer)), &FakeStore::default(), NOW);
        assert!(
            matches!(decision, Decision::Deny(d) if d == denial),
            "{decision:?}"
        );
        assert!(fetch.is_none());
    }
}

#[test]
fn unbound_destination_passes_through() {
    let request = RequestView {
        authority: b"other.example",
        path: b"/",
        identity: caller(Some(CHECKOUT)),
    };
    let config = config("deny");
    let (decision, fetch) = begin(1, &config, &request, &FakeStore::default(), NOW);
    assert!(matches!(decision, Decision::PassThrough));
    assert!(fetch.is_none());
}

#[test]
fn identity_without_kubernetes_parts_cannot_render_the_path() {
    let peer: &'static [u8] = b"spiffe://example.org/ns/payments/batch";
    let config = config("deny");
    let (decision, _) = begin(1, &config, &view(Some(peer)), &FakeStore::default(), NOW);
    assert!(matches!(decision, Decision::Deny(Denial::IdentityUnusable)));
}

#[test]
fn vault_errors_map_to_denials() {
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
        let decision = cold_fetch(&config("deny"), &FakeStore::default(), (status, body));
        assert!(
            matches!(decision, Decision::Deny(d) if d == expected),
            "{status}: {decision:?}"
        );
    }
}

#[test]
fn unsafe_credential_is_refused_and_not_cached() {
    let store = FakeStore::default();
    let body = br#"{"data":{"data":{"api_key":"k\r\nx-evil: 1"}}}"#;
    let decision = cold_fetch(&config("deny"), &store, (200, body));
    assert!(matches!(
        decision,
        Decision::Deny(Denial::InvalidCredential)
    ));
    // Only the vault token was written.
    assert_eq!(*store.writes.borrow(), 1);
}

#[test]
fn login_failure_when_vault_is_down() {
    let config = config("deny");
    let store = FakeStore::default();
    let (_, fetch) = begin(1, &config, &view(Some(CHECKOUT)), &store, NOW);
    let decision = fetch
        .unwrap()
        .on_vault_response(&config, 503, b"", &store, NOW);
    assert!(matches!(decision, Decision::Deny(Denial::VaultUnavailable)));
    let (_, fetch) = begin(1, &config, &view(Some(CHECKOUT)), &store, NOW);
    let decision = fetch
        .unwrap()
        .on_vault_response(&config, 400, b"{}", &store, NOW);
    assert!(matches!(decision, Decision::Deny(Denial::VaultLoginFailed)));
}

#[test]
fn allow_without_credential_strips_and_forwards() {
    let decision = cold_fetch(
        &config("allow_without_credential"),
        &FakeStore::default(),
        (503, b""),
    );
    assert_eq!(injected(decision), vec![]);
}

#[test]
fn dispatch_failure_follows_on_error() {
    let config = config("deny");
    let (_, fetch) = begin(
        1,
        &config,
        &view(Some(CHECKOUT)),
        &FakeStore::default(),
        NOW,
    );
    let decision = fetch.unwrap().on_dispatch_failure(&config);
    assert!(matches!(decision, Decision::Deny(Denial::VaultUnavailable)));
}

#[test]
fn a_new_config_generation_does_not_read_old_entries() {
    let store = FakeStore::default();
    cold_fetch(&config("deny"), &store, (200, KV_OK));
    let newer = config("allow_without_credential");
    let (decision, _) = begin(2, &newer, &view(Some(CHECKOUT)), &store, NOW);
    assert_eq!(path_of(&decision), "/v1/auth/cert/login");
}
