//! The first real path end to end: real Envoy running the filter, real OpenBao, an echo upstream.

use std::time::{Duration, Instant};

use latchkey_test_harness::scenario::{plugin_config, validate_plugin_config, Gateway};
use serde_json::{json, Value};

fn error_code(body: &str) -> String {
    let body: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    body["error"].as_str().unwrap().to_string()
}

#[test]
fn workload_gets_the_vault_secret_in_place_of_its_own_credentials() {
    let gateway = Gateway::start("injects_vault_secret").unwrap();
    let app = gateway.checkout().unwrap();

    let headers = [
        ("authorization", "Bearer stale-app-token"),
        ("authorization", "Basic c3RhbGU6c3RhbGU="),
        ("x-api-key", "stale-app-key"),
        ("x-request-id", "req-1"),
    ];
    let response = gateway.call_api(&app, "/v1/charge", &headers).unwrap();

    assert_eq!(response.status, 200, "{}", response.body);
    let echoed = response.echoed().unwrap();
    let expected = format!("Bearer {}", gateway.api_key);
    assert_eq!(echoed.header_values("authorization"), [expected]);
    assert!(echoed.header_values("x-api-key").is_empty());
    assert_eq!(echoed.header_values("x-request-id"), ["req-1"]);
    assert_eq!(echoed.path, "/v1/charge");
}

#[test]
fn second_request_is_served_from_the_cache() {
    let gateway = Gateway::start("second_request_cached").unwrap();
    let app = gateway.checkout().unwrap();

    let first = gateway.call_api(&app, "/v1/a", &[]).unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    // One login, one KV read.
    assert_eq!(gateway.wait_for_vault_calls(2).unwrap(), 2);

    let second = gateway.call_api(&app, "/v1/b", &[]).unwrap();
    assert_eq!(second.status, 200, "{}", second.body);
    let injected = second.echoed().unwrap().header_values("authorization");
    assert_eq!(injected, [format!("Bearer {}", gateway.api_key)]);
    assert_eq!(
        gateway.vault_calls().unwrap(),
        2,
        "the second request called the vault"
    );
}

#[test]
fn caller_without_certificate_gets_403_and_no_vault_call() {
    let gateway = Gateway::start("no_certificate_403").unwrap();
    let anonymous = gateway.client(None).unwrap();

    let response = gateway.call_api(&anonymous, "/v1/charge", &[]).unwrap();

    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(error_code(&response.body), "no_identity");
    assert_eq!(gateway.echo.requests_served(), 0);
    assert_eq!(gateway.vault_calls().unwrap(), 0);
}

#[test]
fn identity_from_another_trust_domain_is_refused() {
    let gateway = Gateway::start("foreign_trust_domain_403").unwrap();
    // Signed by the trusted CA, yet naming a trust domain the filter does not accept.
    let svid = gateway
        .pki
        .client_cert(&["spiffe://evil.example/ns/payments/sa/checkout"])
        .unwrap();
    let client = latchkey_test_harness::Client::new(&gateway.pki, Some(&svid)).unwrap();

    let response = gateway.call_api(&client, "/v1/charge", &[]).unwrap();

    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(error_code(&response.body), "untrusted_identity");
    assert_eq!(gateway.vault_calls().unwrap(), 0);
}

#[test]
fn unbound_destination_passes_through_untouched() {
    let gateway = Gateway::start("unbound_passes_through").unwrap();
    let app = gateway.checkout().unwrap();

    let port = gateway.envoy.listener_port();
    let headers = [("authorization", "Bearer own-token")];
    let response = app
        .get(port, "status.internal", "/health", &headers)
        .unwrap();

    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.echoed().unwrap().header_values("authorization"),
        ["Bearer own-token"]
    );
    assert_eq!(gateway.vault_calls().unwrap(), 0);
}

#[test]
fn vault_down_with_nothing_cached_answers_503_without_hanging() {
    let mut gateway = Gateway::start("vault_down_503").unwrap();
    gateway.openbao.stop();
    let app = gateway.checkout().unwrap();

    let started = Instant::now();
    let response = gateway.call_api(&app, "/v1/charge", &[]).unwrap();
    let waited = started.elapsed();

    assert_eq!(response.status, 503, "{}", response.body);
    assert_eq!(error_code(&response.body), "vault_unavailable");
    assert_eq!(gateway.echo.requests_served(), 0);
    // A refused connection fails at once; anything near the client's timeout would be a hang.
    assert!(waited < Duration::from_secs(5), "took {waited:?}");
}

/// A `vault.cluster` naming no cluster of Envoy's cannot be refused when the config arrives:
/// `envoy --mode validate` runs the filter's `on_configure` without starting any cluster, so
/// the check would refuse every config there. Validation accepts it; a request that needs the
/// vault is answered 503 at once, counted, and logged with the cluster's name, while one that
/// needs no vault passes.
#[test]
fn an_unknown_vault_cluster_answers_503_and_names_the_cluster() {
    let mut config = plugin_config();
    config["vault"]["cluster"] = json!("vault-typo");
    validate_plugin_config("unknown_vault_cluster_validates", config.clone()).unwrap();
    let gateway = Gateway::start_with("unknown_vault_cluster", config).unwrap();
    let app = gateway.checkout().unwrap();

    let started = Instant::now();
    let response = gateway.call_api(&app, "/v1/charge", &[]).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(response.status, 503, "{}", response.body);
    assert_eq!(error_code(&response.body), "vault_unavailable");
    assert_eq!(gateway.echo.requests_served(), 0);

    let stat = |name: &str| gateway.envoy.stat(name).unwrap().unwrap_or(0);
    assert_eq!(stat("wasmcustom.latchkey.vault.cluster_unknown"), 1);
    assert_eq!(stat("wasmcustom.latchkey.vault.login.abandoned"), 1);
    assert_eq!(
        stat("wasmcustom.latchkey.requests.denied.vault_unavailable"),
        1
    );
    let log = gateway.envoy.log_contents();
    let named = "vault call not dispatched: vault.cluster vault-typo is unknown to Envoy";
    assert_eq!(log.lines().filter(|line| line.contains(named)).count(), 1);
    assert!(!log.contains("panicked") && !log.contains("[critical]"));

    let port = gateway.envoy.listener_port();
    let unbound = app.get(port, "status.internal", "/health", &[]).unwrap();
    assert_eq!(unbound.status, 200, "{}", unbound.body);
}

#[test]
fn secret_missing_in_vault_is_refused_with_its_code() {
    let gateway = Gateway::start("secret_missing_403").unwrap();
    let svid_without_secret = "spiffe://example.org/ns/payments/sa/refunds";
    let client = gateway.client(Some(svid_without_secret)).unwrap();

    let response = gateway.call_api(&client, "/v1/refund", &[]).unwrap();

    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(error_code(&response.body), "credential_not_found");
    assert_eq!(gateway.echo.requests_served(), 0);
}

#[test]
fn envoy_debug_log_never_holds_the_secret_or_the_vault_token() {
    let gateway = Gateway::start("no_secrets_in_logs").unwrap();
    let app = gateway.checkout().unwrap();
    for path in ["/v1/a", "/v1/b"] {
        assert_eq!(gateway.call_api(&app, path, &[]).unwrap().status, 200);
    }
    let denied = gateway
        .call_api(&gateway.client(None).unwrap(), "/v1/c", &[])
        .unwrap();
    assert!(!denied.body.contains(&gateway.api_key));

    let tokens = gateway.issued_tokens().unwrap();
    assert!(
        !tokens.is_empty(),
        "the audit log shows no login; the scan would prove nothing"
    );
    let log = gateway.envoy.log_contents();
    assert!(
        log.contains("credential fetched"),
        "wasm debug/info lines are missing from the log"
    );
    assert!(
        !log.contains(&gateway.api_key),
        "the API key is in Envoy's log"
    );
    for token in &tokens {
        assert!(
            !log.contains(token.as_str()),
            "a vault token is in Envoy's log"
        );
    }
}

#[test]
fn config_naming_an_unknown_field_is_refused_by_envoy_validate() {
    let mut config = plugin_config();
    config["bindings"][0]["credential"]["path"] = json!("apps/{caller_header}");

    let err = validate_plugin_config("bad_config_refused", config)
        .unwrap_err()
        .to_string();

    assert!(
        err.contains("config refused: bindings[0].credential.path"),
        "{err}"
    );
}

#[test]
fn metrics_count_outcomes_cache_and_vault_calls() {
    let gateway = Gateway::start("metrics_in_stats").unwrap();
    let app = gateway.checkout().unwrap();
    for path in ["/v1/a", "/v1/b", "/v1/c"] {
        assert_eq!(gateway.call_api(&app, path, &[]).unwrap().status, 200);
    }
    let anonymous = gateway.client(None).unwrap();
    assert_eq!(
        gateway.call_api(&anonymous, "/v1/d", &[]).unwrap().status,
        403
    );

    let stat = |name: &str| {
        gateway
            .envoy
            .stat(&format!("wasmcustom.latchkey.{name}"))
            .unwrap()
    };
    assert_eq!(stat("requests.injected"), Some(3));
    assert_eq!(stat("requests.denied.no_identity"), Some(1));
    assert_eq!(stat("cache.misses"), Some(1));
    assert_eq!(stat("cache.hits"), Some(2));
    assert_eq!(stat("vault.login.ok"), Some(1));
    assert_eq!(stat("vault.read.ok"), Some(1));
    assert_eq!(
        stat("cache.entries"),
        Some(2),
        "the credential's slot and the token's"
    );
    let prometheus = gateway.envoy.admin_get("/stats/prometheus").unwrap();
    assert!(
        prometheus.contains("latchkey_requests_injected"),
        "not in Prometheus output"
    );
}

#[test]
fn access_logs_show_caller_binding_and_cache_outcome() {
    let format = "%RESPONSE_CODE% caller=%FILTER_STATE(wasm.latchkey.caller:PLAIN)% \
                  binding=%FILTER_STATE(wasm.latchkey.binding:PLAIN)% \
                  cache=%FILTER_STATE(wasm.latchkey.cache:PLAIN)%\n";
    let gateway =
        Gateway::start_customized("access_log_filter_state", plugin_config(), |dir, c| {
            c.access_log(dir.path("access.log"), format)
        })
        .unwrap();
    let app = gateway.checkout().unwrap();
    for path in ["/v1/a", "/v1/b"] {
        assert_eq!(gateway.call_api(&app, path, &[]).unwrap().status, 200);
    }
    let anonymous = gateway.client(None).unwrap();
    assert_eq!(
        gateway.call_api(&anonymous, "/v1/c", &[]).unwrap().status,
        403
    );

    // Envoy flushes access logs on a timer; wait for all three lines.
    let log_path = gateway.dir.path("access.log");
    let lines = latchkey_test_harness::poll_until(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        (lines.len() >= 3).then_some(lines)
    })
    .expect("three access log lines");
    let caller = "caller=spiffe://example.org/ns/payments/sa/checkout binding=payments-api";
    assert_eq!(lines[0], format!("200 {caller} cache=miss"));
    assert_eq!(lines[1], format!("200 {caller} cache=hit"));
    assert_eq!(lines[2], "403 caller=- binding=- cache=-");
}

#[test]
fn the_leak_scan_finds_a_handed_out_secret_where_it_does_not_belong() {
    // A header name may look like a key; naming the secret itself in `strip` plants it in
    // Envoy's config dump, where the scan has to find it.
    let planted = latchkey_test_harness::unique_value("sk-planted-");
    let mut config = plugin_config();
    config["bindings"][0]["strip"] = json!([planted]);
    let mut gateway = Gateway::start_with("leak_scan_finds_planted", config).unwrap();
    let path = latchkey_test_harness::scenario::SECRET_PATH;
    gateway
        .openbao
        .kv_put(path, json!({ "api_key": planted }))
        .unwrap();
    let app = gateway.checkout().unwrap();
    assert_eq!(gateway.call_api(&app, "/v1/a", &[]).unwrap().status, 200);

    let leaks = gateway.leaks().unwrap();

    assert_eq!(
        leaks,
        ["the config dump: a credential the vault handed out"]
    );
    assert!(
        leaks.iter().all(|leak| !leak.contains(&planted)),
        "a finding names the secret"
    );
    gateway.scan_for_leaks_on_drop = false;
}
