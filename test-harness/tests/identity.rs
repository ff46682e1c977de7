//! Identity end to end: every way a caller can fail to be one trusted SPIFFE ID is refused with
//! its own code and no vault call; XFCC is believed only behind a trusted hop; JWT-SVIDs and the
//! sidecar's own identity work; forged identity headers never reach the upstream.

use latchkey_test_harness::scenario::{plugin_config, Gateway, API_HOST};
use latchkey_test_harness::{Client, JwtSvidIssuer, Response, WORKLOAD_SPIFFE_ID};
use serde_json::{json, Value};

const XFCC: &str = "x-forwarded-client-cert";
const UNBOUND_HOST: &str = "status.internal";

fn error_code(response: &Response) -> String {
    let body: Value = serde_json::from_str(&response.body)
        .unwrap_or_else(|_| panic!("not JSON: {}", response.body));
    body["error"].as_str().unwrap_or_default().to_string()
}

fn with_identity(identity: Value) -> Value {
    let mut config = plugin_config();
    config["identity"] = identity;
    config
}

/// Envoy's log must show no VM panic and no critical line from the filter.
fn assert_no_wasm_panic(gateway: &Gateway) {
    let log = gateway.envoy.log_contents();
    for line in log.lines() {
        let lower = line.to_ascii_lowercase();
        assert!(
            !(lower.contains("panicked") || lower.contains("[critical]")),
            "Envoy log: {line}"
        );
        assert!(!lower.contains("wasm vm failed"), "Envoy log: {line}");
    }
}

#[test]
fn certificates_that_are_not_one_trusted_spiffe_id_get_distinct_403s_and_no_vault_call() {
    let gateway = Gateway::start("identity_certificate_refusals").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&[], "no_identity"),
        (
            &[
                WORKLOAD_SPIFFE_ID,
                "spiffe://example.org/ns/payments/sa/admin",
            ],
            "ambiguous_identity",
        ),
        (
            &["spiffe://evil.example/ns/payments/sa/checkout"],
            "untrusted_identity",
        ),
        (
            &["spiffe://example.org/ns/payments/../sa/checkout"],
            "invalid_identity",
        ),
        (
            &["https://example.org/ns/payments/sa/checkout"],
            "invalid_identity",
        ),
    ];
    for (uri_sans, code) in cases {
        let cert = gateway.pki.client_cert(uri_sans).unwrap();
        let client = Client::new(&gateway.pki, Some(&cert)).unwrap();
        let response = gateway.call_api(&client, "/v1/charge", &[]).unwrap();
        assert_eq!(response.status, 403, "{uri_sans:?}: {}", response.body);
        assert_eq!(error_code(&response), code, "{uri_sans:?}");
        assert_eq!(response.header("x-latchkey-error"), Some(code));
    }
    assert_eq!(gateway.vault_calls().unwrap(), 0);
    assert_eq!(gateway.echo.requests_served(), 0);
}

#[test]
fn forged_xfcc_is_ignored_and_removed_when_the_hop_is_not_trusted() {
    // The listener passes XFCC through, but the plugin does not list it as a source.
    let gateway = Gateway::start_customized("identity_forged_xfcc", plugin_config(), |_, envoy| {
        envoy.forward_client_cert("FORWARD_ONLY")
    })
    .unwrap();
    let forged = [
        (XFCC, "URI=spiffe://example.org/ns/payments/sa/checkout"),
        (
            "x-latchkey-caller",
            "spiffe://example.org/ns/payments/sa/checkout",
        ),
    ];

    let anonymous = gateway.client(None).unwrap();
    let response = gateway.call_api(&anonymous, "/v1/charge", &forged).unwrap();
    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(error_code(&response), "no_identity");

    let app = gateway.checkout().unwrap();
    let port = gateway.envoy.listener_port();
    let passed = app.get(port, UNBOUND_HOST, "/health", &forged).unwrap();
    assert_eq!(passed.status, 200, "{}", passed.body);
    let echoed = passed.echoed().unwrap();
    assert!(echoed.header_values(XFCC).is_empty(), "{echoed:?}");
    assert!(echoed.header_values("x-latchkey-caller").is_empty());
    assert_eq!(gateway.vault_calls().unwrap(), 0);
}

#[test]
fn xfcc_from_a_trusted_hop_names_the_caller() {
    let identity = json!({
        "sources": ["xfcc"],
        "trust_domains": ["example.org"],
        "xfcc": { "trusted": true, "element": "last" }
    });
    // The test client plays the trusted front proxy: Envoy forwards its XFCC as it is.
    let gateway =
        Gateway::start_customized("identity_trusted_xfcc", with_identity(identity), |_, e| {
            e.forward_client_cert("FORWARD_ONLY")
        })
        .unwrap();
    // Envoy forwards XFCC only on mTLS connections: the hop presents its own SVID.
    let hop = gateway
        .client(Some("spiffe://example.org/ns/gw/sa/front"))
        .unwrap();

    let xfcc = format!(
        "URI=spiffe://example.org/ns/far/sa/away,By=spiffe://example.org/ns/gw/sa/front;\
         Subject=\"CN=checkout,O=x\";URI={WORKLOAD_SPIFFE_ID}"
    );
    let response = gateway
        .call_api(&hop, "/v1/charge", &[(XFCC, &xfcc)])
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    let echoed = response.echoed().unwrap();
    let expected = format!("Bearer {}", gateway.api_key);
    assert_eq!(echoed.header_values("authorization"), [expected]);

    let two = format!("URI={WORKLOAD_SPIFFE_ID};URI=spiffe://example.org/ns/payments/sa/admin");
    let response = gateway
        .call_api(&hop, "/v1/charge", &[(XFCC, &two)])
        .unwrap();
    assert_eq!(error_code(&response), "ambiguous_identity");

    let broken = "URI=\"spiffe://example.org/ns/payments/sa/checkout";
    let response = gateway
        .call_api(&hop, "/v1/charge", &[(XFCC, broken)])
        .unwrap();
    assert_eq!(error_code(&response), "invalid_identity");
}

#[test]
fn envoy_set_xfcc_replaces_what_the_caller_forged() {
    let identity = json!({
        "sources": ["xfcc"],
        "trust_domains": ["example.org"],
        "xfcc": { "trusted": true }
    });
    // SANITIZE_SET: this Envoy is the trusted hop and writes XFCC from the verified certificate.
    let gateway =
        Gateway::start_customized("identity_sanitize_set", with_identity(identity), |_, e| {
            e.forward_client_cert("SANITIZE_SET")
        })
        .unwrap();
    let refunds = gateway
        .client(Some("spiffe://example.org/ns/payments/sa/refunds"))
        .unwrap();
    let forged = [(XFCC, "URI=spiffe://example.org/ns/payments/sa/checkout")];

    let response = gateway.call_api(&refunds, "/v1/refund", &forged).unwrap();

    // The refunds workload has no secret: had the forged checkout identity been believed,
    // the request would have received checkout's key.
    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(error_code(&response), "credential_not_found");
}

fn jwt_gateway(name: &str, issuer: &JwtSvidIssuer) -> Gateway {
    let identity = json!({
        "sources": ["peer_certificate", "jwt_svid"],
        "trust_domains": ["example.org"],
        "jwt_svid": { "header": "x-jwt-svid", "audiences": ["latchkey"], "jwks": issuer.jwks() }
    });
    Gateway::start_with(name, with_identity(identity)).unwrap()
}

#[test]
fn a_valid_jwt_svid_gets_the_credential_and_is_not_forwarded() {
    let issuer = JwtSvidIssuer::new("jwt-1");
    let gateway = jwt_gateway("identity_jwt_svid_ok", &issuer);
    let no_cert = gateway.client(None).unwrap();
    let token = issuer
        .token(WORKLOAD_SPIFFE_ID, "latchkey", -5, 300)
        .unwrap();

    let response = gateway
        .call_api(&no_cert, "/v1/charge", &[("x-jwt-svid", &token)])
        .unwrap();

    assert_eq!(response.status, 200, "{}", response.body);
    let echoed = response.echoed().unwrap();
    let expected = format!("Bearer {}", gateway.api_key);
    assert_eq!(echoed.header_values("authorization"), [expected]);
    assert!(echoed.header_values("x-jwt-svid").is_empty());
    assert!(
        !gateway.envoy.log_contents().contains(&token),
        "the JWT-SVID is in Envoy's log"
    );
}

#[test]
fn expired_or_wrong_audience_jwt_svids_are_refused() {
    let issuer = JwtSvidIssuer::new("jwt-1");
    let gateway = jwt_gateway("identity_jwt_svid_refused", &issuer);
    let no_cert = gateway.client(None).unwrap();
    let expired = issuer
        .token(WORKLOAD_SPIFFE_ID, "latchkey", -900, -120)
        .unwrap();
    let elsewhere = issuer
        .token(WORKLOAD_SPIFFE_ID, "another-service", -5, 300)
        .unwrap();
    let stranger = JwtSvidIssuer::new("jwt-1")
        .token(WORKLOAD_SPIFFE_ID, "latchkey", -5, 300)
        .unwrap();

    for token in [expired, elsewhere, stranger] {
        let response = gateway
            .call_api(&no_cert, "/v1/charge", &[("x-jwt-svid", &token)])
            .unwrap();
        assert_eq!(response.status, 403, "{}", response.body);
        assert_eq!(error_code(&response), "invalid_jwt_svid");
        assert!(!response.body.contains(&token));
    }
    assert_eq!(gateway.vault_calls().unwrap(), 0);
}

#[test]
fn non_utf8_identity_headers_do_not_panic_the_vm() {
    let issuer = JwtSvidIssuer::new("jwt-1");
    let gateway = jwt_gateway("identity_non_utf8", &issuer);
    let app = gateway.checkout().unwrap();
    let no_cert = gateway.client(None).unwrap();
    let port = gateway.envoy.listener_port();
    let garbage: &[u8] = b"\xff\xfe\x80 spiffe://example.org/\xc3\x28";

    let refused = no_cert
        .get_raw(port, API_HOST, "/v1/charge", &[("x-jwt-svid", garbage)])
        .unwrap();
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(error_code(&refused), "invalid_jwt_svid");

    let headers = [
        (XFCC, garbage),
        ("x-latchkey-caller", garbage),
        ("x-other", garbage),
    ];
    let passed = app.get_raw(port, UNBOUND_HOST, "/", &headers).unwrap();
    assert_eq!(passed.status, 200, "{}", passed.body);
    let echoed = passed.echoed().unwrap();
    assert!(echoed.header_values(XFCC).is_empty());
    assert!(echoed.header_values("x-latchkey-caller").is_empty());
    assert_eq!(echoed.header_values("x-other").len(), 1);

    // The VM is still serving.
    let ok = gateway.call_api(&app, "/v1/charge", &[]).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_no_wasm_panic(&gateway);
}

#[test]
fn sidecar_outbound_uses_its_own_identity_from_node_metadata() {
    let identity = json!({
        "sources": ["local_workload"],
        "trust_domains": ["example.org"],
        "local_workload": { "trust_domain": "example.org" }
    });
    let metadata = json!({ "NAMESPACE": "payments", "SERVICE_ACCOUNT": "checkout" });
    let gateway = Gateway::start_customized(
        "identity_local_workload",
        with_identity(identity),
        |_, e| e.node_metadata(metadata),
    )
    .unwrap();
    let app_without_cert = gateway.client(None).unwrap();

    let response = gateway
        .call_api(&app_without_cert, "/v1/charge", &[])
        .unwrap();

    assert_eq!(response.status, 200, "{}", response.body);
    let expected = format!("Bearer {}", gateway.api_key);
    let echoed = response.echoed().unwrap();
    assert_eq!(echoed.header_values("authorization"), [expected]);
}
