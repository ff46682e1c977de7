//! The harness against the real binaries: the PKI mints what it claims, OpenBao accepts only the
//! proxy's SVID, a baseline Envoy forwards to the echo upstream, and nothing outlives a test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use latchkey_test_harness::{
    Client, EchoUpstream, Envoy, EnvoyConfig, OpenBao, Pki, TestDir, PROXY_SPIFFE_ID, READ_POLICY,
    WORKLOAD_SPIFFE_ID,
};
use serde_json::json;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{parse_x509_pem, X509Certificate};

const STAT_TIMEOUT: Duration = Duration::from_secs(5);

fn with_parsed<T>(pem: &str, inspect: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let (_, pem) = parse_x509_pem(pem.as_bytes()).expect("PEM");
    let cert = pem.parse_x509().expect("X.509");
    inspect(&cert)
}

#[test]
fn workload_svid_has_exactly_one_uri_san_and_both_auth_usages() {
    let pki = Pki::new().unwrap();
    let svid = pki.svid(WORKLOAD_SPIFFE_ID).unwrap();
    let ca_subject = with_parsed(pki.ca_pem(), |ca| ca.subject().to_string());

    with_parsed(&svid.cert_pem, |cert| {
        let san = cert
            .subject_alternative_name()
            .unwrap()
            .expect("SAN extension");
        let names = &san.value.general_names;
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(matches!(names[0], GeneralName::URI(uri) if uri == WORKLOAD_SPIFFE_ID));

        let eku = cert.extended_key_usage().unwrap().expect("EKU extension");
        assert!(eku.value.client_auth && eku.value.server_auth);
        assert!(!cert.is_ca());
        assert_eq!(cert.issuer().to_string(), ca_subject);
    });
}

#[test]
fn server_cert_names_localhost_and_loopback() {
    let pki = Pki::new().unwrap();
    let server = pki.localhost_cert().unwrap();

    with_parsed(&server.cert_pem, |cert| {
        let san = cert
            .subject_alternative_name()
            .unwrap()
            .expect("SAN extension");
        let names = &san.value.general_names;
        assert!(names.contains(&GeneralName::DNSName("localhost")));
        assert!(names.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])));
        assert!(!names.iter().any(|n| matches!(n, GeneralName::URI(_))));
    });
}

#[test]
fn openbao_issues_tokens_to_the_proxy_svid_only() {
    let dir = TestDir::new("harness-openbao").unwrap();
    let pki = Pki::new().unwrap();
    let evil = Pki::new_with_trust_domain("evil.example").unwrap();
    let mut bao = OpenBao::start(&dir, &pki).unwrap();

    let proxy = bao.cert_login(&pki.svid(PROXY_SPIFFE_ID).unwrap()).unwrap();
    assert_eq!(proxy.status, 200, "{:?}", proxy.errors);
    assert!(proxy.token_issued);
    assert!(proxy.policies.iter().any(|p| p == READ_POLICY));
    assert_eq!(proxy.lease_duration, Some(3600));

    let workload = bao
        .cert_login(&pki.svid(WORKLOAD_SPIFFE_ID).unwrap())
        .unwrap();
    assert_ne!(workload.status, 200);
    assert!(!workload.token_issued);

    // Same SPIFFE ID, wrong issuer: refused at the TLS layer or by the role.
    let forged = bao.cert_login(&evil.svid(PROXY_SPIFFE_ID).unwrap());
    assert!(forged.map_or(true, |login| !login.token_issued));

    bao.kv_put("payments/stripe", json!({ "api_key": "sk_test_1" }))
        .unwrap();
    let stored = bao.kv_get("payments/stripe").unwrap();
    assert_eq!(stored, json!({ "api_key": "sk_test_1" }));

    let audit = std::fs::read_to_string(bao.audit_log_path()).unwrap();
    assert!(audit.contains("auth/cert/login"));
    // Raw on purpose: leak checks read the tokens OpenBao issued from here.
    let issued = audit.lines().any(|line| {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        entry["response"]["auth"]["client_token"]
            .as_str()
            .is_some_and(|token| !token.is_empty())
    });
    assert!(issued, "the audit log shows no issued token");

    bao.stop();
    let started = Instant::now();
    assert!(bao.kv_get("payments/stripe").is_err());
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn baseline_envoy_forwards_to_the_echo_upstream() {
    let dir = TestDir::new("harness-envoy-baseline").unwrap();
    let pki = Pki::new().unwrap();
    let echo = EchoUpstream::start().unwrap();
    let envoy = Envoy::start(&dir, EnvoyConfig::new(&pki, echo.port()).unwrap()).unwrap();
    let svid = pki.svid(WORKLOAD_SPIFFE_ID).unwrap();
    let client = Client::new(&pki, Some(&svid)).unwrap();

    let headers = [
        ("authorization", "Bearer one"),
        ("authorization", "Bearer two"),
        ("x-trace", "a"),
        ("x-trace", "b"),
    ];
    let response = client
        .get(
            envoy.listener_port(),
            "payments.internal",
            "/v1/charge?x=1",
            &headers,
        )
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    let echoed = response.echoed().unwrap();
    assert_eq!(echoed.method, "GET");
    assert_eq!(echoed.path, "/v1/charge?x=1");
    assert_eq!(echoed.header_values("host"), ["payments.internal"]);
    // Envoy joins repeats of an inline header such as authorization into one value.
    assert_eq!(
        echoed.header_values("Authorization"),
        ["Bearer one,Bearer two"]
    );
    assert_eq!(echoed.header_values("x-trace"), ["a", "b"]);

    let anonymous = Client::new(&pki, None).unwrap();
    let response = anonymous
        .get(envoy.listener_port(), "payments.internal", "/", &[])
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.body);

    let completed = envoy
        .wait_for_stat(
            "cluster.upstream.upstream_rq_completed",
            |v| v >= 2,
            STAT_TIMEOUT,
        )
        .unwrap();
    assert_eq!(completed, 2);
    assert_eq!(echo.requests_served(), 2);
}

#[test]
fn envoy_can_require_a_client_certificate() {
    let dir = TestDir::new("harness-envoy-mtls").unwrap();
    let pki = Pki::new().unwrap();
    let echo = EchoUpstream::start().unwrap();
    let config = EnvoyConfig::new(&pki, echo.port())
        .unwrap()
        .require_client_certificate(true);
    let envoy = Envoy::start(&dir, config).unwrap();

    let anonymous = Client::new(&pki, None).unwrap();
    assert!(anonymous
        .get(envoy.listener_port(), "localhost", "/", &[])
        .is_err());

    let svid = pki.svid(WORKLOAD_SPIFFE_ID).unwrap();
    let client = Client::new(&pki, Some(&svid)).unwrap();
    let response = client
        .get(envoy.listener_port(), "localhost", "/", &[])
        .unwrap();
    assert_eq!(response.status, 200);
}

#[test]
fn echo_upstream_reports_status_and_reads_chunked_bodies_on_one_connection() {
    let echo = EchoUpstream::start().unwrap();
    echo.set_status(401);
    let mut stream = TcpStream::connect(("127.0.0.1", echo.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();

    let chunked = "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                   5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\n\r\n";
    let fixed = "GET /b HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 2\r\n\
                 Connection: close\r\n\r\nhi";
    stream.write_all(chunked.as_bytes()).unwrap();
    stream.write_all(fixed.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();

    assert_eq!(
        answer.matches("HTTP/1.1 401 Unauthorized").count(),
        2,
        "{answer}"
    );
    assert!(answer.contains(r#""body_length":8"#), "{answer}");
    assert!(answer.contains(r#"["x-a","1"],["x-a","2"]"#), "{answer}");
    assert_eq!(echo.requests_served(), 2);
}

#[test]
fn generated_bootstrap_passes_envoy_validation() {
    let dir = TestDir::new("harness-envoy-validate").unwrap();
    let pki = Pki::new().unwrap();
    let proxy = pki.svid(PROXY_SPIFFE_ID).unwrap();
    let config = EnvoyConfig::new(&pki, 8080)
        .unwrap()
        .vault(8200, &proxy)
        .match_client_san(json!({
            "san_type": "URI",
            "matcher": { "prefix": "spiffe://example.org/" },
        }));

    config.validate(&dir, "envoy-validate.json").unwrap();
}

#[test]
fn dropping_the_harness_leaves_no_process_behind() {
    let dir = TestDir::new("harness-cleanup").unwrap();
    let pki = Pki::new().unwrap();
    let echo = EchoUpstream::start().unwrap();
    let bao = OpenBao::start(&dir, &pki).unwrap();
    let config = EnvoyConfig::new(&pki, echo.port())
        .unwrap()
        .vault(bao.tls_port(), &pki.svid(PROXY_SPIFFE_ID).unwrap());
    let envoy = Envoy::start(&dir, config).unwrap();
    let pids = [("bao", bao.pid()), ("envoy", envoy.pid())];

    drop(envoy);
    drop(bao);

    for (name, pid) in pids {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        // The pid is gone, or already reused by some other program.
        assert_ne!(comm.trim(), name, "{name} (pid {pid}) still running");
    }
}
