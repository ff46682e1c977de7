//! The harness's PostgreSQL and OpenBao's dynamic engines against the real binaries: database
//! logins that PostgreSQL accepts until their lease is revoked, and identity tokens that verify
//! against OpenBao's published keys, both readable with the proxy's cert-login token.

mod common;

use common::{now, verify_identity_token};
use latchkey_test_harness::{DatabaseCreds, OpenBao, Pki, Postgres, TestDir, PROXY_SPIFFE_ID};
use serde_json::json;

const DATABASE_ROLE: &str = "orders-checkout";
const TOKEN_ROLE: &str = "reports";

#[test]
fn postgres_accepts_its_superuser_only_with_the_right_password() {
    let dir = TestDir::new("engines-postgres").unwrap();
    let first = Postgres::start(&dir).unwrap();
    let other_dir = TestDir::new("engines-postgres-other").unwrap();
    let second = Postgres::start(&other_dir).unwrap();

    assert!(first
        .can_log_in(first.superuser(), first.superuser_password())
        .unwrap());
    assert!(!first.can_log_in(first.superuser(), "wrong").unwrap());
    assert!(!first
        .can_log_in("nobody", first.superuser_password())
        .unwrap());
    assert!(first.role_exists(first.superuser()).unwrap());
    assert!(!first.role_exists("nobody").unwrap());
    assert!(!first.role_exists("it's").unwrap());

    // Clusters share nothing: own port, own password.
    assert_ne!(first.port(), second.port());
    assert!(!second
        .can_log_in(second.superuser(), first.superuser_password())
        .unwrap());
    assert!(second
        .can_log_in(second.superuser(), second.superuser_password())
        .unwrap());
}

#[test]
fn database_logins_work_until_their_lease_is_revoked() {
    let dir = TestDir::new("engines-database").unwrap();
    let pki = Pki::new().unwrap();
    let postgres = Postgres::start(&dir).unwrap();
    let bao = OpenBao::start(&dir, &pki).unwrap();
    bao.enable_database(&postgres, &[DATABASE_ROLE]).unwrap();

    let creds = bao.database_creds(DATABASE_ROLE).unwrap();
    assert_eq!(creds.lease_duration, 3600);
    assert!(creds
        .lease_id
        .starts_with("database/creds/orders-checkout/"));
    assert!(postgres.role_exists(&creds.username).unwrap());
    assert!(postgres
        .can_log_in(&creds.username, &creds.password)
        .unwrap());
    assert!(!postgres.can_log_in(&creds.username, "wrong").unwrap());
    assert!(!format!("{creds:?}").contains(&creds.password));

    let second = bao.database_creds(DATABASE_ROLE).unwrap();
    assert_ne!(second.username, creds.username);

    bao.revoke_lease(&creds.lease_id).unwrap();
    assert!(!postgres.role_exists(&creds.username).unwrap());
    assert!(!postgres
        .can_log_in(&creds.username, &creds.password)
        .unwrap());
    assert!(postgres
        .can_log_in(&second.username, &second.password)
        .unwrap());
}

#[test]
fn proxy_token_reads_database_logins_and_verifiable_identity_tokens() {
    let dir = TestDir::new("engines-proxy-token").unwrap();
    let pki = Pki::new().unwrap();
    let postgres = Postgres::start(&dir).unwrap();
    let bao = OpenBao::start(&dir, &pki).unwrap();
    bao.enable_database(&postgres, &[DATABASE_ROLE]).unwrap();
    bao.enable_identity_tokens(&[TOKEN_ROLE]).unwrap();
    bao.kv_put("payments/stripe", json!({ "api_key": "sk_test_1" }))
        .unwrap();
    let token = bao
        .cert_login_token(&pki.svid(PROXY_SPIFFE_ID).unwrap())
        .unwrap();

    let creds = bao
        .api_as(&token, "GET", "database/creds/orders-checkout", None)
        .unwrap();
    assert_eq!(creds.status, 200, "{}", creds.body["errors"]);
    let creds = DatabaseCreds::from_response(&creds.body).unwrap();
    assert!(postgres
        .can_log_in(&creds.username, &creds.password)
        .unwrap());

    // The policy grants reads of what the engines issue and keeps the KV grant; nothing more.
    let kv = bao
        .api_as(&token, "GET", "secret/data/payments/stripe", None)
        .unwrap();
    assert_eq!(kv.status, 200);
    let config = bao
        .api_as(&token, "GET", "database/config/pg", None)
        .unwrap();
    assert_eq!(config.status, 403);

    let issued = bao
        .api_as(&token, "GET", "identity/oidc/token/reports", None)
        .unwrap();
    assert_eq!(issued.status, 200, "{}", issued.body["errors"]);
    assert_eq!(issued.body["data"]["ttl"], 300);
    let jwt = issued.body["data"]["token"].as_str().unwrap();

    let claims = verify_identity_token(&bao, TOKEN_ROLE, jwt);
    assert!(!claims.sub.is_empty());
    assert!(
        claims.exp > now() && claims.exp <= now() + 300,
        "{claims:?}"
    );

    // The root token has no entity, so only a login's token gets identity tokens.
    let as_root = bao.api("GET", "identity/oidc/token/reports", None).unwrap();
    assert_eq!(as_root.status, 400, "{}", as_root.body);
}
