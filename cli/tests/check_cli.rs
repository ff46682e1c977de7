//! `latchkey-check` as a user runs it: on the shipped recipes, on a broken config, and
//! explaining a decision.

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latchkey-check"))
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn accepts_the_egress_gateway_recipes_and_the_shipped_gateway() {
    let output = check(&[
        "examples/istio/07-wasmplugin-egress-gateway.yaml",
        "examples/istio/09-trafficextension-egress-gateway.yaml",
        "envoy/gateway.yaml",
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("WasmPlugin istio-system/latchkey-egress: ok (1 bindings)"),
        "{text}"
    );
    assert!(
        text.contains("TrafficExtension istio-system/latchkey-egress: ok"),
        "{text}"
    );
    assert!(
        text.contains("envoy/gateway.yaml: Envoy wasm filter latchkey: ok"),
        "{text}"
    );
}

#[test]
fn names_the_refused_field_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("latchkey-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.json");
    let config = r#"{"version": 1,
        "vault": {"cluster": "vault", "authority": "vault",
                  "auth": {"method": "cert", "role": "r"}},
        "identity": {"trust_domains": ["example.org"]},
        "bindings": [{"name": "b", "match": {"hosts": ["h"]},
                      "credential": {"engine": "kv2", "mount": "secret", "path": "apps/{caller}"},
                      "inject": [{"header": "authorization", "value": "Bearer {token}"}]}]}"#;
    std::fs::write(&file, config).unwrap();

    let output = check(&[file.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains("refused: bindings[0].credential.path: {caller} is not an identity part"),
        "{text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn explains_binding_vault_path_and_injection_for_a_caller() {
    let output = check(&[
        "examples/istio/07-wasmplugin-egress-gateway.yaml",
        "--caller",
        "spiffe://cluster.local/ns/payments/sa/checkout",
        "--host",
        "api.payments.example",
        "--path",
        "/v1/charge",
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    for expected in [
        "binding:     #0 payments-api",
        "vault login: POST /v1/auth/cert/login as role \"latchkey-egress-gateway\"",
        "vault read:  GET /v1/secret/data/apps/payments/checkout/payments",
        "credential:  KV v2 field \"api_key\", served from the cache for at most 5m",
        "removes:     authorization, proxy-authorization, x-vault-token, x-api-key",
        "injects:     authorization: Bearer {api_key}",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn explains_refusals_and_pass_through() {
    let args = |caller: &'static str, path: &'static str| {
        let file = "examples/istio/07-wasmplugin-egress-gateway.yaml";
        stdout(&check(&[
            file,
            "--caller",
            caller,
            "--host",
            "api.payments.example",
            "--path",
            path,
        ]))
    };
    let foreign = args("spiffe://example.org/ns/payments/sa/checkout", "/v1/charge");
    assert!(
        foreign.contains("refused, 403 untrusted_identity"),
        "{foreign}"
    );
    let other_ns = args("spiffe://cluster.local/ns/orders/sa/api", "/v1/charge");
    assert!(
        other_ns.contains("no binding matches; forwarded untouched"),
        "{other_ns}"
    );
}

#[test]
fn a_file_without_any_plugin_config_is_a_usage_error() {
    let output = check(&["examples/istio/01-peer-authentication.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).contains("skipped: no plugin configuration"));
}
