//! Unit tests of configuration compilation; the parent declares this module under #[cfg(test)].

use serde_json::{json, Value};

use super::*;
use crate::binding::Engine;

fn valid() -> Value {
    json!({
        "version": 1,
        "vault": {
            "cluster": "outbound|8200||openbao.vault.svc.cluster.local",
            "authority": "openbao.vault.svc.cluster.local:8200",
            "timeout": "2s",
            "auth": { "method": "cert", "mount": "cert", "role": "latchkey-gateway" }
        },
        "identity": { "sources": ["peer_certificate"], "trust_domains": ["example.org"] },
        "bindings": [{
            "name": "payments-api",
            "match": {
                "hosts": ["api.payments.example", "*.payments.example"],
                "path_prefix": "/v1/",
                "identities": ["spiffe://example.org/ns/payments/*"]
            },
            "credential": {
                "engine": "kv2", "mount": "secret",
                "path": "apps/{namespace}/{service_account}/payments", "field": "api_key",
                "refresh": "5m"
            },
            "inject": [{ "header": "Authorization", "value": "Bearer {api_key}" }],
            "strip": ["X-Api-Key"],
            "on_error": "deny"
        }],
        "cache": { "expiry_margin": "5s" }
    })
}

fn refused(config: Value) -> ConfigError {
    Config::from_json(config.to_string().as_bytes()).unwrap_err()
}

/// Sets (or adds) the value at a JSON pointer.
fn with(mut config: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match config.pointer_mut(parent).unwrap() {
        Value::Object(map) => {
            map.insert(key.to_string(), value);
        }
        Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        other => panic!("cannot set {key} in {other}"),
    }
    config
}

#[test]
fn compiles_the_v1_example() {
    let config = Config::from_json(valid().to_string().as_bytes()).unwrap();
    assert_eq!(config.vault.timeout, Duration::from_secs(2));
    assert_eq!(
        config.vault.auth,
        VaultAuth::Cert {
            mount: "cert".into(),
            role: "latchkey-gateway".into()
        }
    );
    let binding = &config.bindings[0];
    assert_eq!(binding.inject[0].name, "authorization");
    assert_eq!(
        binding.strip,
        [
            "authorization",
            "proxy-authorization",
            "x-vault-token",
            "x-api-key"
        ]
    );
    assert_eq!(binding.on_error, OnError::Deny);
    assert_eq!(config.cache.expiry_margin_ms, 5_000);
    assert_eq!(config.cache.slots, DEFAULT_MAX_ENTRIES);
    assert_eq!(config.cache.lease_ms, 5_000);
}

#[test]
fn generation_follows_the_config_bytes() {
    let a = Config::from_json(valid().to_string().as_bytes()).unwrap();
    let b = Config::from_json(valid().to_string().as_bytes()).unwrap();
    let changed = with(valid(), "/vault/timeout", json!("3s"));
    let c = Config::from_json(changed.to_string().as_bytes()).unwrap();
    assert_eq!(a.generation, b.generation);
    assert_ne!(a.generation, c.generation);
}

#[test]
fn applies_defaults() {
    let mut config = valid();
    config["vault"].as_object_mut().unwrap().remove("timeout");
    config["bindings"][0]["credential"]
        .as_object_mut()
        .unwrap()
        .remove("refresh");
    config.as_object_mut().unwrap().remove("cache");
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    assert_eq!(config.vault.timeout, DEFAULT_VAULT_TIMEOUT);
    let refresh = config.bindings[0].credential.refresh;
    assert_eq!(refresh, Some(credential::DEFAULT_KV_REFRESH));
}

#[test]
fn names_the_field_of_a_type_error() {
    let err = refused(with(valid(), "/vault/timeout", json!(2)));
    assert_eq!(err.field, "vault.timeout");
}

#[test]
fn refuses_unknown_fields_with_their_path() {
    let err = refused(with(valid(), "/bindings/0/match/hostz", json!([]))).to_string();
    assert!(err.starts_with("bindings[0].match"), "{err}");
    assert!(err.contains("hostz"), "{err}");
}

#[test]
fn refuses_static_vault_secrets() {
    let err = refused(with(
        valid(),
        "/vault/auth",
        json!({"method": "token", "token": "s.x"}),
    ));
    assert!(err.field.starts_with("vault.auth"), "{err}");
    let err = refused(with(valid(), "/vault/token", json!("s.abc")));
    assert_eq!(err.field, "vault.token", "{err}");
    assert!(!err.to_string().contains("s.abc"), "{err}");
    let auth = json!({"method": "cert", "role": "r", "secret_id": "x"});
    assert!(refused(with(valid(), "/vault/auth", auth))
        .field
        .starts_with("vault.auth"));
}

#[test]
fn refuses_unsupported_version() {
    assert_eq!(
        refused(with(valid(), "/version", json!(2))).field,
        "version"
    );
}

#[test]
fn refuses_path_templates_outside_the_identity() {
    let at = "/bindings/0/credential/path";
    let err = refused(with(valid(), at, json!("apps/{caller_header}")));
    assert_eq!(err.field, "bindings[0].credential.path");
    assert!(refused(with(valid(), at, json!("apps/../sys/{namespace}")))
        .reason
        .contains("'..'"));
    assert!(refused(with(valid(), at, json!("apps/{namespace")))
        .reason
        .contains("closing"));
}

#[test]
fn refuses_system_mounts() {
    let err = refused(with(valid(), "/bindings/0/credential/mount", json!("sys")));
    assert_eq!(err.field, "bindings[0].credential.mount");
}

#[test]
fn refuses_inject_templates_naming_other_fields() {
    let inject = json!([{ "header": "authorization", "value": "Bearer {password}" }]);
    let err = refused(with(valid(), "/bindings/0/inject", inject));
    assert_eq!(err.field, "bindings[0].inject[0].value");
}

#[test]
fn refuses_bad_header_names() {
    for bad in ["", ":authority", "x y", "host", "x\r\ny"] {
        let inject = json!([{ "header": bad, "value": "Bearer {api_key}" }]);
        let err = refused(with(valid(), "/bindings/0/inject", inject));
        assert_eq!(err.field, "bindings[0].inject[0].header", "{bad:?}");
    }
}

#[test]
fn refuses_identity_patterns_outside_the_trust_domains() {
    let ids = json!(["spiffe://other.org/ns/payments/*"]);
    let err = refused(with(valid(), "/bindings/0/match/identities", ids));
    assert_eq!(err.field, "bindings[0].match.identities[0]");
}

#[test]
fn refuses_duplicate_binding_names() {
    let mut config = valid();
    let copy = config["bindings"][0].clone();
    config["bindings"].as_array_mut().unwrap().push(copy);
    assert_eq!(refused(config).field, "bindings[1].name");
}

#[test]
fn refuses_zero_timeout_and_bad_durations() {
    assert_eq!(
        refused(with(valid(), "/vault/timeout", json!("0s"))).field,
        "vault.timeout"
    );
    let err = refused(with(
        valid(),
        "/bindings/0/credential/refresh",
        json!("5 minutes"),
    ));
    assert_eq!(err.field, "bindings[0].credential.refresh");
}

#[test]
fn refuses_missing_trust_domains() {
    let err = refused(with(valid(), "/identity/trust_domains", json!([])));
    assert_eq!(err.field, "identity.trust_domains");
    let err = refused(with(
        valid(),
        "/identity/trust_domains",
        json!(["Example.org"]),
    ));
    assert_eq!(err.field, "identity.trust_domains[0]");
}

#[test]
fn refuses_non_json_without_echoing_it() {
    let err = Config::from_json(b"{\"vault\": s.secret-token").unwrap_err();
    assert!(!err.to_string().contains("s.secret-token"), "{err}");
}

#[test]
fn refuses_out_of_range_cache_settings() {
    let cases = [
        ("/cache/refresh_at", json!(1.0), "cache.refresh_at"),
        ("/cache/refresh_at", json!(0), "cache.refresh_at"),
        ("/cache/jitter", json!(0.9), "cache.jitter"),
        ("/cache/max_entries", json!(1), "cache.max_entries"),
        (
            "/cache/retry_backoff",
            json!("0s"),
            "cache.retry_backoff_max",
        ),
        (
            "/cache/retry_backoff_max",
            json!("100ms"),
            "cache.retry_backoff_max",
        ),
        ("/cache/max_wait", json!("0s"), "cache.max_wait"),
        ("/cache/negative_ttl", json!("soon"), "cache.negative_ttl"),
    ];
    for (pointer, value, field) in cases {
        assert_eq!(
            refused(with(valid(), pointer, value.clone())).field,
            field,
            "{value}"
        );
    }
}

fn binding_with(credential: Value, inject: Value) -> Value {
    let config = with(valid(), "/bindings/0/credential", credential);
    with(config, "/bindings/0/inject", inject)
}

#[test]
fn compiles_a_database_binding_with_basic_injection() {
    let credential = json!({ "engine": "database", "role": "orders-{service_account}" });
    let basic = json!([{ "header": "authorization",
        "basic": { "username": "{username}", "password": "{password}" } }]);
    let config = Config::from_json(binding_with(credential, basic).to_string().as_bytes()).unwrap();
    let source = &config.bindings[0].credential;
    assert_eq!(source.engine, Engine::Leased);
    assert_eq!(source.mount, "database");
    let caller = crate::identity::SpiffeId::parse("spiffe://example.org/ns/orders/sa/api").unwrap();
    assert_eq!(
        source.api_path(&source.render_path(&caller).unwrap()),
        "/v1/database/creds/orders-api"
    );
    assert_eq!(source.refresh, None);
}

#[test]
fn compiles_identity_token_and_dynamic_bindings() {
    let oidc = json!({ "engine": "oidc_token", "role": "reports", "refresh": "1m" });
    let bearer = json!([{ "header": "authorization", "value": "Bearer {token}" }]);
    let config = Config::from_json(binding_with(oidc, bearer).to_string().as_bytes()).unwrap();
    let source = &config.bindings[0].credential;
    assert_eq!(source.engine, Engine::IdentityToken);
    assert_eq!(
        source.api_path("oidc/token/reports"),
        "/v1/identity/oidc/token/reports"
    );
    assert_eq!(source.refresh, Some(Duration::from_secs(60)));

    let aws = json!({ "engine": "dynamic", "mount": "aws", "path": "creds/{service_account}" });
    let keys = json!([{ "header": "x-aws-key", "value": "{access_key}:{secret_key}" }]);
    assert!(Config::from_json(binding_with(aws, keys).to_string().as_bytes()).is_ok());
}

#[test]
fn refuses_fields_an_engine_does_not_offer() {
    let credential = json!({ "engine": "database", "role": "orders" });
    let bearer = json!([{ "header": "authorization", "value": "Bearer {token}" }]);
    let err = refused(binding_with(credential, bearer));
    assert_eq!(err.field, "bindings[0].inject[0].value");
    assert!(err.reason.contains("username"), "{err}");
}

#[test]
fn refuses_roles_that_could_span_segments() {
    let bearer = json!([{ "header": "authorization", "value": "Bearer {token}" }]);
    for role in ["a/b", "{spiffe_path}", "..", "x{caller}"] {
        let credential = json!({ "engine": "oidc_token", "role": role });
        let err = refused(binding_with(credential, bearer.clone()));
        assert_eq!(err.field, "bindings[0].credential.role", "{role}");
    }
}

#[test]
fn refuses_mounts_that_reach_vault_internals() {
    let bearer = json!([{ "header": "authorization", "value": "Bearer {id}" }]);
    for mount in ["auth", "auth/token", "sys", "identity", "cubbyhole"] {
        let credential = json!({ "engine": "dynamic", "mount": mount, "path": "lookup-self" });
        let err = refused(binding_with(credential, bearer.clone()));
        assert_eq!(err.field, "bindings[0].credential.mount", "{mount}");
    }
}

#[test]
fn an_inject_entry_has_exactly_one_of_value_and_basic() {
    let both = json!([{ "header": "authorization", "value": "{api_key}",
        "basic": { "username": "{api_key}", "password": "{api_key}" } }]);
    assert_eq!(
        refused(with(valid(), "/bindings/0/inject", both)).field,
        "bindings[0].inject[0]"
    );
    let neither = json!([{ "header": "authorization" }]);
    assert_eq!(
        refused(with(valid(), "/bindings/0/inject", neither)).field,
        "bindings[0].inject[0]"
    );
}

#[test]
fn on_no_binding_defaults_to_pass_through() {
    let config = Config::from_json(valid().to_string().as_bytes()).unwrap();
    assert!(!config.deny_unbound);
    let deny = with(valid(), "/on_no_binding", json!("deny"));
    assert!(
        Config::from_json(deny.to_string().as_bytes())
            .unwrap()
            .deny_unbound
    );
    assert_eq!(
        refused(with(valid(), "/on_no_binding", json!("drop"))).field,
        "on_no_binding"
    );
}

fn with_identity(identity: Value) -> Value {
    with(valid(), "/identity", identity)
}

fn ec_jwks() -> Value {
    // A P-256 public key (RFC 7517 appendix A.1).
    json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "use": "jwt-svid",
        "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
        "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"
    }]})
}

#[test]
fn compiles_every_identity_source() {
    let identity = json!({
        "sources": ["xfcc", "jwt_svid", "peer_certificate", "local_workload"],
        "trust_domains": ["example.org"],
        "xfcc": { "trusted": true, "element": "first" },
        "jwt_svid": { "header": "X-JWT-SVID", "audiences": ["latchkey"], "jwks": ec_jwks(),
                      "forward": true, "leeway": "30s" },
        "local_workload": { "trust_domain": "example.org" }
    });
    let config = Config::from_json(with_identity(identity).to_string().as_bytes()).unwrap();
    let identity = &config.identity;
    assert_eq!(identity.sources[0], crate::identity::Source::Xfcc);
    assert_eq!(
        identity.xfcc,
        Some(crate::identity::XfccElementChoice::First)
    );
    let jwt = identity.jwt_svid.as_ref().unwrap();
    assert_eq!(jwt.header, "x-jwt-svid");
    assert!(jwt.forward);
}

#[test]
fn identity_refusals_name_the_field() {
    let td = json!(["example.org"]);
    let cases = [
        (
            json!({"sources": [], "trust_domains": td}),
            "identity.sources",
        ),
        (
            json!({"sources": ["peer_certificate", "peer_certificate"], "trust_domains": td}),
            "identity.sources[1]",
        ),
        (
            json!({"sources": ["xfcc"], "trust_domains": td}),
            "identity.xfcc",
        ),
        (
            json!({"sources": ["xfcc"], "trust_domains": td, "xfcc": {}}),
            "identity.xfcc.trusted",
        ),
        (
            json!({"sources": ["peer_certificate"], "trust_domains": td,
                   "xfcc": {"trusted": true}}),
            "identity.xfcc",
        ),
        (
            json!({"sources": ["jwt_svid"], "trust_domains": td}),
            "identity.jwt_svid",
        ),
        (
            json!({"sources": ["jwt_svid"], "trust_domains": td,
                   "jwt_svid": {"audiences": [], "jwks": ec_jwks()}}),
            "identity.jwt_svid.audiences",
        ),
        (
            json!({"sources": ["jwt_svid"], "trust_domains": td,
                   "jwt_svid": {"audiences": ["a"], "jwks": ec_jwks(), "leeway": "15m"}}),
            "identity.jwt_svid.leeway",
        ),
        (
            json!({"sources": ["jwt_svid"], "trust_domains": td,
                   "jwt_svid": {"audiences": ["a"], "jwks": {"keys": [{"kty": "oct"}]}}}),
            "identity.jwt_svid.jwks.keys[0]",
        ),
        (
            json!({"sources": ["jwt_svid"], "trust_domains": td,
                   "jwt_svid": {"audiences": ["a"], "jwks": {"keys": []}}}),
            "identity.jwt_svid.jwks.keys",
        ),
        (
            json!({"sources": ["jwt_svid"], "trust_domains": td,
                   "jwt_svid": {"header": ":path", "audiences": ["a"], "jwks": ec_jwks()}}),
            "identity.jwt_svid.header",
        ),
        (
            json!({"sources": ["local_workload"], "trust_domains": td,
                   "local_workload": {}}),
            "identity.local_workload",
        ),
        (
            json!({"sources": ["local_workload"], "trust_domains": td,
                   "local_workload": {"spiffe_id": "spiffe://evil.example/x"}}),
            "identity.local_workload.spiffe_id",
        ),
        (
            json!({"sources": ["local_workload"], "trust_domains": td,
                   "local_workload": {"trust_domain": "Bad"}}),
            "identity.local_workload.trust_domain",
        ),
    ];
    for (identity, field) in cases {
        let err = refused(with_identity(identity.clone()));
        assert_eq!(err.field, field, "{identity}: {err}");
    }
}

#[test]
fn identity_sections_refuse_unknown_fields() {
    let identity = json!({"sources": ["xfcc"], "trust_domains": ["example.org"],
                          "xfcc": {"trusted": true, "trust": true}});
    let err = refused(with_identity(identity));
    assert!(err.field.starts_with("identity.xfcc"), "{err}");
}

#[test]
fn a_jwt_login_needs_the_jwt_svid_source_and_a_one_segment_role() {
    let auth = json!({ "method": "jwt", "role": "{namespace}-{service_account}" });
    let err = refused(with(valid(), "/vault/auth", auth));
    assert_eq!(err.field, "vault.auth.method", "{err}");

    let auth = json!({ "method": "jwt", "role": "{spiffe_path}" });
    let err = refused(with(valid(), "/vault/auth", auth));
    assert_eq!(err.field, "vault.auth.role", "{err}");
}

#[test]
fn an_empty_key_is_refused_with_a_named_field() {
    // Found by the config fuzz target: serde names the path of an empty key "".
    let err = Config::from_json(b"\r{\"\"").unwrap_err();
    assert_eq!(err.field, "config");
    assert!(!err.reason.is_empty());
}
