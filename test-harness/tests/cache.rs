//! The shared cache against real Envoy (several workers) and real OpenBao: one vault call per
//! key, refresh ahead, behaviour while the vault is away, and invalidation after upstream 401s.

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use latchkey_test_harness::scenario::{plugin_config, Gateway, SECRET_PATH};
use latchkey_test_harness::{Client, Response, WORKLOAD_SPIFFE_ID};
use serde_json::{json, Value};

const READ: &str = "secret/data/apps/payments/checkout/payments";

fn logins(gateway: &Gateway) -> usize {
    gateway.vault_requests("update", "auth/cert/login").unwrap()
}

fn reads(gateway: &Gateway, path: &str) -> usize {
    gateway.vault_requests("read", path).unwrap()
}

fn config_with_cache(cache: Value, refresh: &str) -> Value {
    let mut config = plugin_config();
    config["cache"] = cache;
    config["bindings"][0]["credential"]["refresh"] = json!(refresh);
    config
}

fn bearer(response: &Response) -> String {
    assert_eq!(response.status, 200, "{}", response.body);
    let values = response.echoed().unwrap().header_values("authorization");
    assert_eq!(values.len(), 1, "{values:?}");
    values[0].clone()
}

/// Sends `count` requests at once, each on its own thread, after a common start signal.
fn burst(gateway: &Gateway, clients: &[Client], count: usize) -> Vec<Response> {
    let barrier = Barrier::new(count);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .map(|i| {
                let (barrier, client) = (&barrier, &clients[i % clients.len()]);
                scope.spawn(move || {
                    barrier.wait();
                    gateway
                        .call_api(client, &format!("/v1/charge/{i}"), &[])
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn a_thousand_concurrent_cold_requests_make_one_login_and_one_read() {
    // Wasm trace logging (every ABI call) would multiply this test's log a hundredfold.
    let gateway = Gateway::start_customized("cold_burst_single_flight", plugin_config(), |_, c| {
        c.concurrency(2).wasm_log_level("debug")
    })
    .unwrap();
    let app = gateway.checkout().unwrap();

    let responses = burst(&gateway, &[app], 1_000);

    let expected = format!("Bearer {}", gateway.api_key);
    for response in &responses {
        assert_eq!(bearer(response), expected);
    }
    assert_eq!(logins(&gateway), 1, "logins");
    assert_eq!(reads(&gateway, READ), 1, "secret reads");
}

#[test]
fn fifty_identities_at_once_each_get_their_own_credential() {
    let gateway = Gateway::start_with_workers("fifty_identities", plugin_config(), 2).unwrap();
    let identities: Vec<String> = (0..50)
        .map(|i| format!("spiffe://example.org/ns/payments/sa/worker-{i}"))
        .collect();
    for (i, _) in identities.iter().enumerate() {
        let path = format!("apps/payments/worker-{i}/payments");
        gateway
            .openbao
            .kv_put(&path, json!({ "api_key": format!("key-of-worker-{i}") }))
            .unwrap();
    }
    let clients: Vec<Client> = identities
        .iter()
        .map(|id| gateway.client(Some(id)).unwrap())
        .collect();

    // Two requests per identity, all at once; request i goes out as identity i % 50.
    let responses = burst(&gateway, &clients, 100);

    for (i, response) in responses.iter().enumerate() {
        assert_eq!(bearer(response), format!("Bearer key-of-worker-{}", i % 50));
    }
    assert_eq!(logins(&gateway), 1, "logins");
    for i in 0..50 {
        let read = format!("secret/data/apps/payments/worker-{i}/payments");
        assert_eq!(reads(&gateway, &read), 1, "reads of worker-{i}");
    }
}

#[test]
fn a_changed_secret_reaches_callers_within_the_refresh_interval() {
    let cache = json!({ "expiry_margin": "200ms", "jitter": 0 });
    let config = config_with_cache(cache, "2s");
    let gateway = Gateway::start_with_workers("short_ttl_stream", config, 2).unwrap();
    let app = gateway.checkout().unwrap();
    let old = format!("Bearer {}", gateway.api_key);

    let started = Instant::now();
    let mut changed_at = None;
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_secs(7) {
        if changed_at.is_none() && started.elapsed() >= Duration::from_secs(3) {
            gateway
                .openbao
                .kv_put(SECRET_PATH, json!({ "api_key": "rotated" }))
                .unwrap();
            changed_at = Some(Instant::now());
        }
        let sent = Instant::now();
        let value = bearer(&gateway.call_api(&app, "/v1/charge", &[]).unwrap());
        seen.push((sent, value));
        thread::sleep(Duration::from_millis(50));
    }

    let changed_at = changed_at.unwrap();
    let deadline = changed_at + Duration::from_millis(2_100);
    for (sent, value) in &seen {
        if *sent < changed_at {
            assert_eq!(*value, old);
        } else if *sent >= deadline {
            assert_eq!(
                value,
                "Bearer rotated",
                "served {:?} after the change",
                *sent - changed_at
            );
        }
    }
    // Refresh at two thirds of 2 s over 7 s: about five reads, not one per request.
    let reads = reads(&gateway, READ);
    assert!(
        (3..=8).contains(&reads),
        "{reads} reads for {} requests",
        seen.len()
    );
}

#[test]
fn with_the_vault_down_a_warm_cache_serves_until_expiry_then_fails_fast() {
    let cache = json!({ "expiry_margin": "500ms", "jitter": 0 });
    let mut gateway =
        Gateway::start_with("vault_down_warm_cache", config_with_cache(cache, "3s")).unwrap();
    let app = gateway.checkout().unwrap();
    let expected = format!("Bearer {}", gateway.api_key);
    let warmed = Instant::now();
    assert_eq!(
        bearer(&gateway.call_api(&app, "/v1/a", &[]).unwrap()),
        expected
    );

    gateway.openbao.stop();

    // Past the refresh point (2 s), before expiry less margin (2.5 s): still served.
    while warmed.elapsed() < Duration::from_millis(2_200) {
        assert_eq!(
            bearer(&gateway.call_api(&app, "/v1/b", &[]).unwrap()),
            expected
        );
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_millis(3_000).saturating_sub(warmed.elapsed()));
    let asked = Instant::now();
    let response = gateway.call_api(&app, "/v1/c", &[]).unwrap();
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "took {:?}",
        asked.elapsed()
    );
}

#[test]
fn a_vault_that_comes_back_is_used_again_without_operator_action() {
    let cache =
        json!({ "expiry_margin": "200ms", "retry_backoff": "200ms", "retry_backoff_max": "1s" });
    let config = config_with_cache(cache, "1s");
    let mut gateway = Gateway::start_with_persistent_vault("vault_comes_back", config).unwrap();
    let app = gateway.checkout().unwrap();
    let expected = format!("Bearer {}", gateway.api_key);
    assert_eq!(
        bearer(&gateway.call_api(&app, "/v1/a", &[]).unwrap()),
        expected
    );

    gateway.openbao.stop();
    let down = Instant::now();
    let mut status = 200;
    while status == 200 && down.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(100));
        status = gateway.call_api(&app, "/v1/b", &[]).unwrap().status;
    }
    assert_eq!(status, 503, "the credential outlived its expiry");

    // The vault restarts from its file storage and is unsealed, as after an outage.
    gateway.openbao.restart(&gateway.dir).unwrap();
    let back = Instant::now();
    let mut response = gateway.call_api(&app, "/v1/c", &[]).unwrap();
    while response.status != 200 && back.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(200));
        response = gateway.call_api(&app, "/v1/c", &[]).unwrap();
    }
    assert_eq!(bearer(&response), expected);
    // The proxy's token survived the restart with the rest of the vault's state.
    assert_eq!(logins(&gateway), 1);
}

#[test]
fn an_upstream_401_causes_one_refetch_not_a_storm() {
    let gateway = Gateway::start_with_workers("upstream_401", plugin_config(), 2).unwrap();
    let app = gateway.checkout().unwrap();
    assert_eq!(gateway.call_api(&app, "/v1/a", &[]).unwrap().status, 200);
    assert_eq!(reads(&gateway, READ), 1);

    // Invalidation ignores credentials younger than the interval (1 s).
    thread::sleep(Duration::from_millis(1_100));
    gateway.echo.set_status(401);
    let refusing = Instant::now();
    for i in 0..30 {
        let response = gateway
            .call_api(&app, &format!("/v1/refused/{i}"), &[])
            .unwrap();
        assert_eq!(response.status, 401);
    }
    let elapsed = refusing.elapsed();

    // At most one invalidation per started second of refusals, and at least the first.
    let refetches = reads(&gateway, READ) - 1;
    let bound = 1 + elapsed.as_secs() as usize;
    assert!(
        (1..=bound).contains(&refetches),
        "{refetches} refetches in {elapsed:?}"
    );
    assert_eq!(logins(&gateway), 1);
}

#[test]
fn identities_never_see_each_others_credentials_on_one_worker_either() {
    let gateway = Gateway::start("two_identities_one_worker").unwrap();
    let refunds = "spiffe://example.org/ns/payments/sa/refunds";
    gateway
        .openbao
        .kv_put(
            "apps/payments/refunds/payments",
            json!({ "api_key": "refunds-key" }),
        )
        .unwrap();
    let clients = [
        gateway.checkout().unwrap(),
        gateway.client(Some(refunds)).unwrap(),
    ];

    for round in 0..3 {
        let checkout = gateway.call_api(&clients[0], "/v1/x", &[]).unwrap();
        let refund = gateway.call_api(&clients[1], "/v1/y", &[]).unwrap();
        assert_eq!(
            bearer(&checkout),
            format!("Bearer {}", gateway.api_key),
            "round {round}"
        );
        assert_eq!(bearer(&refund), "Bearer refunds-key", "round {round}");
    }
    assert!(WORKLOAD_SPIFFE_ID.ends_with("checkout"));
}
