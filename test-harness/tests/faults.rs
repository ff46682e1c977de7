//! Vault faults that real OpenBao cannot be made to produce, against a stand-in: every bad
//! answer is refused with a stable error code, quickly, without its body reaching a log line or
//! a reply, and without a retry storm. Each is counted under `latchkey.vault.read.<outcome>`,
//! logged with its reason, and once the vault is healthy again the next request is served.

use std::time::{Duration, Instant};

use latchkey_test_harness::scenario::{plugin_config, FaultyGateway, Gateway};
use latchkey_test_harness::{poll_until, Fault, Response};
use serde_json::{json, Value};

/// Marks every faulty body, so the log scan can prove none of it was logged.
const MARKER: &str = "leak-marker-7f3a";

fn config() -> Value {
    let mut config = plugin_config();
    config["vault"]["timeout"] = json!("500ms");
    config
}

fn error_code(response: &Response) -> String {
    let body: Value = serde_json::from_str(&response.body).unwrap();
    body["error"].as_str().unwrap().to_string()
}

/// The filter's counter `latchkey.<name>`, as Envoy shows it (0 before its first increment).
fn latchkey_stat(gateway: &FaultyGateway, name: &str) -> u64 {
    let name = format!("wasmcustom.latchkey.{name}");
    gateway.envoy.stat(&name).unwrap().unwrap_or(0)
}

fn reads(gateway: &FaultyGateway, outcome: &str) -> u64 {
    latchkey_stat(gateway, &format!("vault.read.{outcome}"))
}

fn denied(gateway: &FaultyGateway, code: &str) -> u64 {
    latchkey_stat(gateway, &format!("requests.denied.{code}"))
}

/// Envoy's log lines that hold every one of `parts`.
fn log_lines(gateway: &FaultyGateway, parts: &[&str]) -> usize {
    let log = gateway.envoy.log_contents();
    log.lines()
        .filter(|line| parts.iter().all(|part| line.contains(part)))
        .count()
}

/// Once the vault answers well again, a request gets its credential: the fault left nothing
/// stuck behind, only a back-off on the failed key that runs out.
fn assert_recovers(gateway: &FaultyGateway) {
    gateway.vault.set_fault(Fault::Healthy {
        api_key: "sk-after-the-fault".into(),
    });
    let served = poll_until(Duration::from_secs(10), || {
        let response = gateway.call_api("/v1/after").ok()?;
        (response.status == 200).then_some(response)
    });
    let served = served.expect("no request was served once the vault was healthy again");
    assert_eq!(
        served.echoed().unwrap().header_values("authorization"),
        ["Bearer sk-after-the-fault"]
    );
}

fn assert_log_clean(gateway: &FaultyGateway) {
    let log = gateway.envoy.log_contents();
    assert!(!log.contains(MARKER), "a vault body reached Envoy's log");
    assert!(!log.contains(latchkey_test_harness::faulty_vault::FAKE_VAULT_TOKEN));
    assert!(!log.contains("panicked"), "the VM panicked");
}

#[test]
fn malformed_answers_are_invalid_credentials_and_never_logged() {
    // Each body, and the outcome it is counted and logged as.
    let bodies: Vec<(Vec<u8>, &str)> = vec![
        (format!("not json {MARKER}").into_bytes(), "malformed"),
        (
            format!(r#"{{"data":{{"data":{{"api_key":"{MARKER}""#).into_bytes(),
            "malformed",
        ),
        (
            format!(r#"{{"data":{{"data":{{"api_key":5,"other":"{MARKER}"}}}}}}"#).into_bytes(),
            "missing_field",
        ),
        (
            format!(r#"{{"data":"{MARKER}"}}"#).into_bytes(),
            "malformed",
        ),
        (
            format!("<html><body>{MARKER}</body></html>").into_bytes(),
            "malformed",
        ),
        (
            format!(
                r#"{{"data":{{"data":{{"api_key":"{}"}}}}}}"#,
                MARKER.repeat(5_000)
            )
            .into_bytes(),
            "too_large",
        ),
    ];
    // A failed fetch blocks its key for a back-off; keep it short so every case is fetched.
    let mut config = config();
    config["cache"] = json!({ "retry_backoff": "10ms", "retry_backoff_max": "50ms" });
    let cases = bodies.len() as u64;
    let gateway =
        FaultyGateway::start("malformed_vault_answers", config, Fault::Body(vec![])).unwrap();
    for (i, (body, outcome)) in bodies.into_iter().enumerate() {
        gateway.vault.set_fault(Fault::Body(body));
        std::thread::sleep(Duration::from_millis(100));
        let reason = format!("reason={outcome}");
        let failed_reads =
            |gateway: &FaultyGateway| log_lines(gateway, &["vault read failed", &reason]);
        let (counted, logged) = (reads(&gateway, outcome), failed_reads(&gateway));
        let response = gateway.call_api(&format!("/v1/charge/{i}")).unwrap();
        assert_eq!(response.status, 502, "case {i}: {}", response.body);
        assert_eq!(error_code(&response), "invalid_credential", "case {i}");
        assert!(!response.body.contains(MARKER));
        assert_eq!(reads(&gateway, outcome), counted + 1, "case {i}: {outcome}");
        assert_eq!(failed_reads(&gateway), logged + 1, "case {i}: {outcome}");
    }
    assert_eq!(denied(&gateway, "invalid_credential"), cases);
    assert_eq!(
        gateway.vault.calls().reads,
        cases,
        "every malformed answer was fetched"
    );
    assert_eq!(gateway.echo.requests_served(), 0);
    assert_log_clean(&gateway);
    assert_recovers(&gateway);
}

#[test]
fn a_value_that_would_split_headers_is_refused() {
    let api_key = format!("{MARKER}\r\nx-injected: yes");
    let mut config = config();
    config["cache"] = json!({ "retry_backoff": "10ms", "retry_backoff_max": "50ms" });
    let gateway =
        FaultyGateway::start("crlf_in_secret", config, Fault::Healthy { api_key }).unwrap();
    let response = gateway.call_api("/v1/charge").unwrap();
    assert_eq!(response.status, 502, "{}", response.body);
    assert_eq!(error_code(&response), "invalid_credential");
    assert_eq!(gateway.echo.requests_served(), 0);
    assert_eq!(reads(&gateway, "invalid_value"), 1);
    assert_eq!(denied(&gateway, "invalid_credential"), 1);
    assert_eq!(
        log_lines(&gateway, &["binding=payments", "credential unusable"]),
        1
    );
    assert_log_clean(&gateway);
    assert_recovers(&gateway);
}

fn logins(gateway: &FaultyGateway, outcome: &str) -> u64 {
    latchkey_stat(gateway, &format!("vault.login.{outcome}"))
}

/// A login lease that is negative or not a number is a malformed answer; zero (a token
/// without a lease) is used and logged in again for within the hour; a huge one is taken as
/// the vault states it. None of them reaches a log line with the token.
#[test]
fn login_leases_out_of_range_are_refused_or_used_as_stated() {
    let mut config = config();
    config["cache"] = json!({ "retry_backoff": "10ms", "retry_backoff_max": "50ms" });
    let healthy = Fault::Healthy {
        api_key: "sk-with-odd-leases".into(),
    };
    let gateway =
        FaultyGateway::start("odd_login_leases", config.clone(), healthy.clone()).unwrap();
    for (i, lease) in [json!(-1), json!("3600"), json!(1.5)]
        .into_iter()
        .enumerate()
    {
        gateway.vault.set_login_lease(lease.clone());
        std::thread::sleep(Duration::from_millis(100));
        let response = gateway.call_api(&format!("/v1/odd/{i}")).unwrap();
        assert_eq!(response.status, 503, "lease {lease}: {}", response.body);
        assert_eq!(error_code(&response), "vault_unavailable");
        assert_eq!(logins(&gateway, "malformed"), i as u64 + 1, "lease {lease}");
        let failed = log_lines(&gateway, &["vault login failed", "reason=malformed"]);
        assert_eq!(failed, i + 1, "lease {lease}");
    }
    assert_eq!(gateway.echo.requests_served(), 0);

    gateway.vault.set_login_lease(json!(0));
    std::thread::sleep(Duration::from_millis(100));
    let response = gateway.call_api("/v1/zero").unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(log_lines(&gateway, &["vault login ok", "ttl_s=0"]), 1);
    assert_log_clean(&gateway);

    let huge = 1_000_000_000_000_000u64;
    let gateway = FaultyGateway::start("huge_login_lease", config, healthy).unwrap();
    gateway.vault.set_login_lease(json!(huge));
    for path in ["/v1/huge", "/v1/huge/again"] {
        let response = gateway.call_api(path).unwrap();
        assert_eq!(response.status, 200, "{}", response.body);
    }
    assert_eq!(
        log_lines(&gateway, &["vault login ok", &format!("ttl_s={huge}")]),
        1
    );
    assert_eq!(gateway.vault.calls().logins, 1);
    assert_log_clean(&gateway);
}

#[test]
fn a_hanging_vault_is_answered_within_the_timeout() {
    let gateway = FaultyGateway::start(
        "hanging_vault",
        config(),
        Fault::Hang(Duration::from_secs(30)),
    )
    .unwrap();
    let started = Instant::now();
    let response = gateway.call_api("/v1/charge").unwrap();
    assert_eq!(response.status, 503, "{}", response.body);
    assert_eq!(error_code(&response), "vault_unavailable");
    // The vault timeout is 500 ms; the client's own timeout is 10 s.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    // Envoy answers the callout 504 at the vault timeout.
    assert_eq!(reads(&gateway, "unavailable"), 1);
    assert_eq!(denied(&gateway, "vault_unavailable"), 1);
    assert_eq!(
        log_lines(&gateway, &["vault read failed", "reason=unavailable"]),
        1
    );
    assert_log_clean(&gateway);
    assert_recovers(&gateway);
}

#[test]
fn vault_errors_are_unavailable_and_back_off() {
    let gateway = FaultyGateway::start("vault_5xx_backoff", config(), Fault::Status(500)).unwrap();
    for i in 0..10 {
        let response = gateway.call_api(&format!("/v1/charge/{i}")).unwrap();
        assert_eq!(response.status, 503, "{}", response.body);
        assert_eq!(error_code(&response), "vault_unavailable");
    }
    // Ten requests in well under the first back-off step: one read, not ten.
    assert_eq!(gateway.vault.calls().reads, 1);
    assert_eq!(reads(&gateway, "unavailable"), 1);
    assert_eq!(denied(&gateway, "vault_unavailable"), 10);
    assert_eq!(
        log_lines(&gateway, &["vault read failed", "reason=unavailable"]),
        1
    );
    assert_log_clean(&gateway);
    assert_recovers(&gateway);
}

#[test]
fn retry_after_on_429_is_honoured() {
    let fault = Fault::TooManyRequests {
        retry_after_secs: 2,
    };
    let gateway = FaultyGateway::start("vault_429_retry_after", config(), fault).unwrap();
    let first = gateway.call_api("/v1/a").unwrap();
    assert_eq!(first.status, 503, "{}", first.body);
    let asked = Instant::now();
    assert_eq!(reads(&gateway, "unavailable"), 1);
    assert_eq!(
        log_lines(&gateway, &["vault read failed", "reason=unavailable"]),
        1
    );

    gateway.vault.set_fault(Fault::Healthy {
        api_key: "after-429".into(),
    });
    while asked.elapsed() < Duration::from_millis(1_800) {
        assert_eq!(gateway.call_api("/v1/b").unwrap().status, 503);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        gateway.vault.calls().reads,
        1,
        "read again before Retry-After"
    );

    std::thread::sleep(Duration::from_millis(400));
    let after = gateway.call_api("/v1/c").unwrap();
    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(
        after.echoed().unwrap().header_values("authorization"),
        ["Bearer after-429"]
    );
}

/// The real OpenBao, frozen with SIGSTOP: it accepts connections and never answers.
#[test]
fn a_slow_real_vault_is_answered_within_the_timeout_and_used_again_after() {
    let mut config = config();
    config["cache"] = json!({ "retry_backoff": "100ms", "retry_backoff_max": "200ms" });
    let gateway = Gateway::start_with("slow_real_vault", config).unwrap();
    let app = gateway.checkout().unwrap();

    gateway.openbao.pause();
    let started = Instant::now();
    let response = gateway.call_api(&app, "/v1/a", &[]).unwrap();
    let waited = started.elapsed();
    gateway.openbao.resume();
    assert_eq!(response.status, 503, "{}", response.body);
    assert_eq!(error_code(&response), "vault_unavailable");
    assert!(waited < Duration::from_secs(3), "took {waited:?}");

    std::thread::sleep(Duration::from_millis(300));
    let after = gateway.call_api(&app, "/v1/b", &[]).unwrap();
    assert_eq!(after.status, 200, "{}", after.body);
    assert!(!gateway.envoy.log_contents().contains("panicked"));
}

#[test]
fn a_caller_that_leaves_while_its_fetch_is_pending_leaves_envoy_serving() {
    let gateway = Gateway::start("caller_leaves_mid_fetch").unwrap();
    let svid = gateway
        .pki
        .svid(latchkey_test_harness::WORKLOAD_SPIFFE_ID)
        .unwrap();
    let impatient = latchkey_test_harness::Client::with_timeout(
        &gateway.pki,
        Some(&svid),
        Duration::from_millis(300),
    )
    .unwrap();

    gateway.openbao.pause();
    assert!(
        gateway.call_api(&impatient, "/v1/a", &[]).is_err(),
        "the client should give up"
    );
    gateway.openbao.resume();

    // The fetch the caller started finishes in the worker's root context; the next caller
    // is served (from the cache once it lands).
    let app = gateway.checkout().unwrap();
    let response = latchkey_test_harness::poll_until(Duration::from_secs(10), || {
        let response = gateway.call_api(&app, "/v1/b", &[]).ok()?;
        (response.status == 200).then_some(response)
    });
    assert!(
        response.is_some(),
        "no request succeeded after the caller left"
    );
    let log = gateway.envoy.log_contents();
    assert!(
        !log.contains("panicked") && !log.contains("[critical]"),
        "the VM panicked"
    );
}
