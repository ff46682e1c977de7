//! Every credential engine end to end: the filter fetches from real OpenBao (and a real
//! PostgreSQL behind its database engine) and the upstream receives a live credential.

mod common;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use common::{now, verify_identity_token};
use latchkey_test_harness::scenario::{plugin_config, validate_plugin_config, Gateway, API_HOST};
use latchkey_test_harness::{JwtSvidIssuer, Postgres, Response, WORKLOAD_SPIFFE_ID};
use serde_json::{json, Value};

const ORDERS_DB: &str = "orders-db.internal";
const REPORTS: &str = "reports.internal";

/// The scenario's KV binding plus a database and an identity-token binding.
fn config_with_engines() -> Value {
    let mut config = plugin_config();
    let bindings = config["bindings"].as_array_mut().unwrap();
    bindings.push(json!({
        "name": "orders-db",
        "match": { "hosts": [ORDERS_DB] },
        "credential": { "engine": "database", "role": "orders-{service_account}" },
        "inject": [{ "header": "authorization",
                     "basic": { "username": "{username}", "password": "{password}" } }]
    }));
    bindings.push(json!({
        "name": "reports",
        "match": { "hosts": [REPORTS] },
        "credential": { "engine": "oidc_token", "role": "reports" },
        "inject": [{ "header": "authorization", "value": "Bearer {token}" }]
    }));
    config
}

fn authorization(response: &Response) -> String {
    assert_eq!(response.status, 200, "{}", response.body);
    let values = response.echoed().unwrap().header_values("authorization");
    assert_eq!(values.len(), 1, "{values:?}");
    values[0].clone()
}

#[test]
fn a_database_credential_arrives_as_a_live_postgres_login() {
    let gateway = Gateway::start_with("database_basic_auth", config_with_engines()).unwrap();
    let postgres = Postgres::start(&gateway.dir).unwrap();
    gateway
        .openbao
        .enable_database(&postgres, &["orders-checkout"])
        .unwrap();
    let app = gateway.checkout().unwrap();
    let port = gateway.envoy.listener_port();

    let first = authorization(&app.get(port, ORDERS_DB, "/query", &[]).unwrap());
    let encoded = first.strip_prefix("Basic ").expect("a Basic header");
    let decoded = String::from_utf8(BASE64_STANDARD.decode(encoded).unwrap()).unwrap();
    let (username, password) = decoded.split_once(':').unwrap();
    assert!(
        postgres.can_log_in(username, password).unwrap(),
        "not a live login"
    );

    // A lease is reused for its lifetime, not fetched per request.
    let second = authorization(&app.get(port, ORDERS_DB, "/query", &[]).unwrap());
    assert_eq!(second, first);
    let path = "database/creds/orders-checkout";
    assert_eq!(gateway.vault_requests("read", path).unwrap(), 1);
}

#[test]
fn an_identity_token_arrives_verifiable_against_openbaos_keys() {
    let gateway = Gateway::start_with("identity_token_bearer", config_with_engines()).unwrap();
    gateway
        .openbao
        .enable_identity_tokens(&["reports"])
        .unwrap();
    let app = gateway.checkout().unwrap();

    let port = gateway.envoy.listener_port();
    let header = authorization(&app.get(port, REPORTS, "/daily", &[]).unwrap());
    let jwt = header.strip_prefix("Bearer ").expect("a Bearer header");
    let claims = verify_identity_token(&gateway.openbao, "reports", jwt);
    assert!(claims.exp > now(), "{claims:?}");
    assert!(!claims.sub.is_empty());
}

#[test]
fn a_revoked_proxy_token_recovers_by_logging_in_again() {
    let mut config = plugin_config();
    config["bindings"][0]["credential"]["refresh"] = json!("1s");
    config["cache"] = json!({ "expiry_margin": "0s" });
    let gateway = Gateway::start_with("revoked_token_recovers", config).unwrap();
    let app = gateway.checkout().unwrap();
    assert_eq!(gateway.call_api(&app, "/v1/a", &[]).unwrap().status, 200);

    // Revoke every token cert auth issued: the proxy's cached one among them.
    let revoked = gateway
        .openbao
        .api("PUT", "sys/leases/revoke-prefix/auth/cert", None)
        .unwrap();
    assert!(revoked.status < 300, "{:?}", revoked.body);
    std::thread::sleep(std::time::Duration::from_millis(1_100));

    let response = gateway.call_api(&app, "/v1/b", &[]).unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        gateway.vault_requests("update", "auth/cert/login").unwrap(),
        2
    );
}

#[test]
fn exhaustive_bindings_refuse_unbound_destinations() {
    let mut config = plugin_config();
    config["on_no_binding"] = json!("deny");
    let gateway = Gateway::start_with("exhaustive_bindings", config).unwrap();
    let app = gateway.checkout().unwrap();
    let port = gateway.envoy.listener_port();

    let response = app.get(port, "status.internal", "/health", &[]).unwrap();
    assert_eq!(response.status, 403, "{}", response.body);
    assert!(response.body.contains("no_binding"), "{}", response.body);
    assert_eq!(gateway.echo.requests_served(), 0);
}

#[test]
fn a_path_template_that_climbs_out_of_the_mount_is_refused_at_config_time() {
    let mut config = plugin_config();
    config["bindings"][0]["credential"]["path"] = json!("../../sys/{namespace}");

    let err = validate_plugin_config("traversal_refused", config)
        .unwrap_err()
        .to_string();

    assert!(
        err.contains("config refused: bindings[0].credential.path"),
        "{err}"
    );
}

#[test]
fn a_jwt_login_fetches_as_the_caller_under_its_own_vault_role() {
    let issuer = JwtSvidIssuer::new("svid-key-1");
    let mut config = plugin_config();
    config["identity"] = json!({
        "sources": ["jwt_svid"],
        "trust_domains": ["example.org"],
        "jwt_svid": { "header": "x-jwt-svid", "audiences": ["latchkey"], "jwks": issuer.jwks() }
    });
    config["vault"]["auth"] =
        json!({ "method": "jwt", "mount": "jwt", "role": "{namespace}-{service_account}" });
    let gateway = Gateway::start_with("jwt_login_as_caller", config).unwrap();
    // Only the checkout workload has a vault role; refunds presents a valid JWT-SVID too.
    let pem = issuer.public_key_pem().unwrap();
    let roles = [("payments-checkout", WORKLOAD_SPIFFE_ID)];
    gateway
        .openbao
        .enable_jwt_auth(&pem, "latchkey", &roles)
        .unwrap();
    let refunds = "spiffe://example.org/ns/payments/sa/refunds";
    let path = "apps/payments/refunds/payments";
    gateway
        .openbao
        .kv_put(path, json!({ "api_key": "refunds-key" }))
        .unwrap();
    let anonymous = gateway.client(None).unwrap();
    let port = gateway.envoy.listener_port();
    let call_as = |spiffe_id: &str| {
        let token = issuer.token(spiffe_id, "latchkey", -5, 300).unwrap();
        let headers = [("x-jwt-svid", token.as_str())];
        anonymous
            .get(port, API_HOST, "/v1/charge", &headers)
            .unwrap()
    };

    let checkout = call_as(WORKLOAD_SPIFFE_ID);
    assert_eq!(
        authorization(&checkout),
        format!("Bearer {}", gateway.api_key)
    );
    assert!(checkout
        .echoed()
        .unwrap()
        .header_values("x-jwt-svid")
        .is_empty());
    let refused = call_as(refunds);
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.body.contains("vault_login_failed"),
        "{}",
        refused.body
    );

    // One login per caller, as the caller: the vault saw the checkout role log in.
    let logins = gateway.vault_requests("update", "auth/jwt/login").unwrap();
    assert_eq!(logins, 2, "one for checkout, one refused for refunds");
    assert_eq!(
        gateway.vault_requests("update", "auth/cert/login").unwrap(),
        0
    );
    let again = call_as(WORKLOAD_SPIFFE_ID);
    assert_eq!(authorization(&again), format!("Bearer {}", gateway.api_key));
    assert_eq!(
        gateway.vault_requests("update", "auth/jwt/login").unwrap(),
        2
    );
}
