//! What both benches of the hit path start from: the gateway's configuration, a request from the
//! checkout workload, and a shared store whose slot already holds that workload's credential.

use latchkey_filter::cache::fake::FakeStore;
use latchkey_filter::cache::{self, Completion, Lookup};
use latchkey_filter::config::Config;
use latchkey_filter::flow::RequestView;
use latchkey_filter::identity::IdentityInputs;

/// The checkout workload's X.509-SVID as `connection.peer_certificate` hands it over (PEM),
/// the same fixed test certificate the identity unit tests use.
pub const SVID_CHECKOUT: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIB8TCCAZigAwIBAgIUNiNjr7Ot0YwAc+Uu1tW3vZ9ZQsIwCgYIKoZIzj0EAwIw\n\
KDEXMBUGA1UECgwObGF0Y2hrZXkgdGVzdHMxDTALBgNVBAMMBHN2aWQwIBcNMjYx\n\
MjAzMTgxODMzWhgPMjEyNjExMDkxODE4MzNaMCgxFzAVBgNVBAoMDmxhdGNoa2V5\n\
IHRlc3RzMQ0wCwYDVQQDDARzdmlkMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n\
FPude/RK8aW3+ku96VODGgmR6kSWeUmiXE9d941/+otLKYaucUf+eE4yaGAo+tKt\n\
WWOQqOQmOwOnGCbXH2Hq16OBnTCBmjAdBgNVHQ4EFgQUzy5E/Os3L/SybbMmRSvq\n\
yniAoFEwHwYDVR0jBBgwFoAUzy5E/Os3L/SybbMmRSvqyniAoFEwDwYDVR0TAQH/\n\
BAUwAwEB/zA3BgNVHREEMDAuhixzcGlmZmU6Ly9leGFtcGxlLm9yZy9ucy9wYXlt\n\
ZW50cy9zYS9jaGVja291dDAOBgNVHQ8BAf8EBAMCB4AwCgYIKoZIzj0EAwIDRwAw\n\
RAIgAzJVJB+DBspqdMqjij5pXou+gBuiXKbc8bwDifPiZO0CIA1zkmCuXqnu267R\n\
/cl+Abwos+RBkjkbcNxiJUBAns95\n\
-----END CERTIFICATE-----\n";

pub const NOW_MS: u64 = 1_000_000;

/// The binding of the end-to-end gateway, so the benches measure what Envoy runs there.
pub fn config() -> Config {
    let raw = br#"{
        "version": 1,
        "vault": {
            "cluster": "vault", "authority": "localhost",
            "auth": { "method": "cert", "mount": "cert", "role": "latchkey-gateway" }
        },
        "identity": { "sources": ["peer_certificate"], "trust_domains": ["example.org"] },
        "bindings": [{
            "name": "payments-api",
            "match": {
                "hosts": ["api.payments.example"],
                "identities": ["spiffe://example.org/ns/payments/*"]
            },
            "credential": {
                "engine": "kv2", "mount": "secret",
                "path": "apps/{namespace}/{service_account}/payments", "field": "api_key",
                "refresh": "5m"
            },
            "inject": [{ "header": "authorization", "value": "Bearer {api_key}" }],
            "strip": ["x-api-key"]
        }]
    }"#;
    match Config::from_json(raw) {
        Ok(config) => config,
        Err(err) => panic!("bench config refused: {err}"),
    }
}

pub fn request() -> RequestView<'static> {
    RequestView {
        authority: b"api.payments.example",
        path: b"/v1/charge",
        identity: IdentityInputs {
            headers: &[],
            peer_certificate: Some(SVID_CHECKOUT.as_bytes()),
            node_namespace: None,
            node_service_account: None,
        },
    }
}

/// A store in which the checkout workload's credential is cached and fresh at [`NOW_MS`].
pub fn warm_store(config: &Config) -> FakeStore {
    let store = FakeStore::default();
    let key = cache::credential_key(
        config.generation,
        "payments-api",
        "spiffe://example.org/ns/payments/sa/checkout",
        "apps/payments/checkout/payments",
    );
    let claim = match cache::lookup(&store, &config.cache, &key, NOW_MS, 1) {
        Lookup::Fetch(claim) => claim,
        other => panic!("a cold store should start a fetch, got {other:?}"),
    };
    let fetched = Completion::Fetched {
        values: vec![(
            "authorization".into(),
            "Bearer sk-live-0123456789abcdef".into(),
        )],
        ttl_ms: 300_000,
    };
    if let Err(err) = cache::complete(&store, &config.cache, &claim, &fetched, NOW_MS, 0) {
        panic!("could not warm the store: {err:?}");
    }
    match cache::lookup(&store, &config.cache, &key, NOW_MS, 2) {
        Lookup::Hit { refresh: None, .. } => {}
        other => panic!("the warm store should hit, got {other:?}"),
    }
    store.reset_counts();
    store
}
