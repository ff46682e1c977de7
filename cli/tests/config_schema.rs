//! `schema/latchkey-config.schema.json` and the filter's parser agree: every configuration the
//! project ships validates against the schema and is accepted by `Config::from_json`, and the
//! invalid configurations below are refused by both.

use std::fs;
use std::path::{Path, PathBuf};

use latchkey_cli::manifest::plugin_configs;
use latchkey_filter::config::Config;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn validator() -> jsonschema::Validator {
    let text = fs::read_to_string(repo().join("schema/latchkey-config.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// ```json blocks of the README that hold a plugin config.
fn readme_configs() -> Vec<(String, Value)> {
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    readme
        .split("```json\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter_map(|block| serde_json::from_str::<Value>(block).ok())
        .filter(|value| value.get("version").is_some())
        .map(|value| ("README.md".to_string(), value))
        .collect()
}

/// Every plugin configuration the project ships, with where it comes from.
fn shipped_configs() -> Vec<(String, Value)> {
    let mut configs = readme_configs();
    assert!(!configs.is_empty(), "the README lost its example config");
    for dir in ["envoy", "examples/istio"] {
        for file in yaml_files(&repo().join(dir)) {
            let text = fs::read_to_string(&file).unwrap();
            for found in plugin_configs(&text).unwrap_or_default() {
                let origin = format!("{}: {}", file.display(), found.origin);
                configs.push((origin, found.json));
            }
        }
    }
    let scenario = latchkey_test_harness::scenario::plugin_config();
    configs.push(("test-harness scenario".to_string(), scenario));
    configs
}

#[test]
fn every_shipped_config_is_valid_for_both_schema_and_parser() {
    let validator = validator();
    let configs = shipped_configs();
    assert!(configs.len() >= 8, "{} configs", configs.len());

    for (origin, config) in configs {
        let parsed = Config::from_json(config.to_string().as_bytes());
        let schema_errors: Vec<String> = validator
            .iter_errors(&config)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if let Err(err) = parsed {
            panic!("{origin}: refused by the filter: {err}");
        }
        assert!(
            schema_errors.is_empty(),
            "{origin}: the parser accepts it, the schema does not: {schema_errors:#?}"
        );
    }
}

fn valid() -> Value {
    json!({
        "version": 1,
        "vault": {
            "cluster": "vault", "authority": "openbao:8200", "timeout": "2s",
            "auth": { "method": "cert", "mount": "cert", "role": "gw" }
        },
        "identity": { "sources": ["peer_certificate"], "trust_domains": ["example.org"] },
        "bindings": [{
            "name": "api",
            "match": { "hosts": ["api.example", "*.example"], "path_prefix": "/v1/",
                       "identities": ["spiffe://example.org/ns/a/*"] },
            "credential": { "engine": "kv2", "mount": "secret",
                            "path": "apps/{namespace}/{service_account}", "field": "key",
                            "refresh": "5m" },
            "inject": [{ "header": "authorization", "value": "Bearer {key}" }],
            "strip": ["x-api-key"],
            "on_error": "allow_without_credential"
        }],
        "cache": { "expiry_margin": "0s" }
    })
}

/// Applies `edit` to a copy of [`valid`].
fn broken(edit: impl Fn(&mut Value)) -> Value {
    let mut config = valid();
    edit(&mut config);
    config
}

#[test]
fn every_engine_and_cache_setting_is_valid_for_both_schema_and_parser() {
    let validator = validator();
    let basic = json!([{ "header": "authorization",
                         "basic": { "username": "{username}", "password": "{password}" } }]);
    let bearer = json!([{ "header": "authorization", "value": "Bearer {token}" }]);
    let cases = [
        (
            json!({ "engine": "database", "role": "orders-{service_account}" }),
            basic.clone(),
        ),
        (
            json!({ "engine": "database", "mount": "pg", "role": "r", "refresh": "1h" }),
            basic,
        ),
        (
            json!({ "engine": "dynamic", "mount": "aws", "path": "creds/{namespace}" }),
            bearer.clone(),
        ),
        (
            json!({ "engine": "oidc_token", "role": "reports", "refresh": "1m" }),
            bearer,
        ),
    ];
    for (credential, inject) in cases {
        let config = broken(|c| {
            c["bindings"][0]["credential"] = credential.clone();
            c["bindings"][0]["inject"] = inject.clone();
            c["on_no_binding"] = json!("deny");
            c["cache"] = json!({
                "refresh_at": 0.5, "jitter": 0.2, "expiry_margin": "1s", "max_entries": 500,
                "negative_ttl": "10s", "retry_backoff": "100ms", "retry_backoff_max": "10s",
                "invalidation_interval": "2s", "max_wait": "3s"
            });
        });
        Config::from_json(config.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{credential}: the parser refuses it: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(&config)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{credential}: the schema refuses it: {errors:?}"
        );
    }
}

#[test]
fn invalid_configs_are_refused_by_both_schema_and_parser() {
    let validator = validator();
    assert!(validator.is_valid(&valid()));
    Config::from_json(valid().to_string().as_bytes()).unwrap();

    let cases: Vec<(&str, Value)> = vec![
        (
            "unknown top-level field",
            broken(|c| c["debug"] = json!(true)),
        ),
        ("version 2", broken(|c| c["version"] = json!(2))),
        (
            "a static vault token",
            broken(|c| c["vault"]["auth"]["token"] = json!("s.abc")),
        ),
        (
            "an AppRole login",
            broken(|c| c["vault"]["auth"] = json!({"method": "approle", "role": "x"})),
        ),
        (
            "zero timeout",
            broken(|c| c["vault"]["timeout"] = json!("0s")),
        ),
        (
            "duration in words",
            broken(|c| c["vault"]["timeout"] = json!("2 seconds")),
        ),
        (
            "no trust domain",
            broken(|c| c["identity"]["trust_domains"] = json!([])),
        ),
        (
            "uppercase trust domain",
            broken(|c| c["identity"]["trust_domains"] = json!(["Example.org"])),
        ),
        (
            "unknown identity source",
            broken(|c| c["identity"]["sources"] = json!(["header"])),
        ),
        (
            "binding name with a space",
            broken(|c| c["bindings"][0]["name"] = json!("my api")),
        ),
        (
            "host with a port",
            broken(|c| c["bindings"][0]["match"]["hosts"] = json!(["api.example:443"])),
        ),
        (
            "no hosts",
            broken(|c| c["bindings"][0]["match"]["hosts"] = json!([])),
        ),
        (
            "relative path prefix",
            broken(|c| c["bindings"][0]["match"]["path_prefix"] = json!("v1/")),
        ),
        (
            "identity pattern with a mid wildcard",
            broken(|c| {
                c["bindings"][0]["match"]["identities"] = json!(["spiffe://example.org/*/sa"])
            }),
        ),
        (
            "path naming a non-identity variable",
            broken(|c| c["bindings"][0]["credential"]["path"] = json!("apps/{caller}")),
        ),
        (
            "path climbing out of the mount",
            broken(|c| c["bindings"][0]["credential"]["path"] = json!("apps/../sys")),
        ),
        (
            "the sys mount",
            broken(|c| c["bindings"][0]["credential"]["mount"] = json!("sys")),
        ),
        (
            "unknown engine",
            broken(|c| c["bindings"][0]["credential"]["engine"] = json!("kv1")),
        ),
        (
            "no inject",
            broken(|c| c["bindings"][0]["inject"] = json!([])),
        ),
        (
            "inject into host",
            broken(|c| c["bindings"][0]["inject"][0]["header"] = json!("Host")),
        ),
        (
            "constant injected value",
            broken(|c| c["bindings"][0]["inject"][0]["value"] = json!("Bearer x")),
        ),
        (
            "unknown on_error",
            broken(|c| c["bindings"][0]["on_error"] = json!("ignore")),
        ),
        (
            "unknown cache field",
            broken(|c| c["cache"]["ttl"] = json!("1m")),
        ),
        (
            "refresh_at of 1",
            broken(|c| c["cache"]["refresh_at"] = json!(1.0)),
        ),
        (
            "database role with a slash",
            broken(|c| {
                c["bindings"][0]["credential"] = json!({ "engine": "database", "role": "a/b" })
            }),
        ),
        (
            "dynamic read of the auth mount",
            broken(|c| {
                c["bindings"][0]["credential"] =
                    json!({ "engine": "dynamic", "mount": "auth", "path": "token/lookup-self" })
            }),
        ),
        (
            "inject with both value and basic",
            broken(|c| {
                c["bindings"][0]["inject"][0]["basic"] =
                    json!({ "username": "{key}", "password": "{key}" })
            }),
        ),
        (
            "unknown on_no_binding",
            broken(|c| c["on_no_binding"] = json!("drop")),
        ),
    ];
    for (what, config) in cases {
        assert!(
            Config::from_json(config.to_string().as_bytes()).is_err(),
            "{what}: the parser accepts it"
        );
        assert!(
            !validator.is_valid(&config),
            "{what}: the schema accepts it"
        );
    }
}

#[test]
fn a_jwt_login_config_is_valid_for_both_schema_and_parser() {
    let validator = validator();
    let config = broken(|c| {
        c["vault"]["auth"] = json!({ "method": "jwt", "role": "{namespace}-{service_account}" });
        c["identity"] = json!({
            "sources": ["jwt_svid"], "trust_domains": ["example.org"],
            "jwt_svid": { "audiences": ["latchkey"], "jwks": { "keys": [{
                "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
            }] } }
        });
    });
    Config::from_json(config.to_string().as_bytes()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&config)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}
