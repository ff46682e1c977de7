//! The Envoy configurations shipped in `envoy/` are accepted by the real Envoy, filter included:
//! `--mode validate` runs the filter's `on_configure`, so a bad plugin config fails here too.

use std::fs;
use std::path::PathBuf;

use latchkey_filter::config::Config;
use latchkey_test_harness::{wasm_module, Envoy, Pki, TestDir, PROXY_SPIFFE_ID};
use serde_json::Value;

/// Where the shipped configurations expect their files.
const INSTALL_DIR: &str = "/etc/latchkey/";
const WORKLOAD_ID: &str = "spiffe://example.org/ns/payments/sa/checkout";

fn shipped_configs() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../envoy");
    let mut configs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    configs.sort();
    configs
}

/// Every wasm filter's plugin configuration (the `StringValue`) in a bootstrap, mutably.
fn plugin_configs(node: &mut Value) -> Vec<&mut Value> {
    let mut found = Vec::new();
    collect_plugin_configs(node, &mut found);
    found
}

fn collect_plugin_configs<'v>(node: &'v mut Value, found: &mut Vec<&'v mut Value>) {
    if node["@type"] == "type.googleapis.com/google.protobuf.StringValue" {
        found.extend(node.get_mut("value"));
        return;
    }
    match node {
        Value::Object(map) => map
            .values_mut()
            .for_each(|child| collect_plugin_configs(child, found)),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|child| collect_plugin_configs(child, found)),
        _ => {}
    }
}

/// Every plugin config in a bootstrap must be one the filter accepts as written; Envoy's
/// validate run would refuse it too, but this names the field.
fn assert_plugin_configs_accepted(name: &str, bootstrap: &str) {
    let mut tree: Value = serde_norway::from_str(bootstrap).unwrap();
    let found = plugin_configs(&mut tree);
    assert!(!found.is_empty(), "{name}: no latchkey plugin config");
    for value in found {
        let text = value.as_str().unwrap();
        if let Err(err) = Config::from_json(text.as_bytes()) {
            panic!("{name}: the filter refuses its plugin config: {err}");
        }
    }
}

#[test]
fn shipped_envoy_configs_pass_envoy_validate() {
    let dir = TestDir::new("shipped_envoy_configs").unwrap();
    let pki = Pki::new().unwrap();
    pki.write_ca(dir.root(), "ca.crt").unwrap();
    for (id, stem) in [(PROXY_SPIFFE_ID, "gateway"), (WORKLOAD_ID, "workload")] {
        pki.svid(id).unwrap().write(dir.root(), stem).unwrap();
    }
    fs::copy(wasm_module().unwrap(), dir.path("latchkey_filter.wasm")).unwrap();

    let configs = shipped_configs();
    assert!(
        configs.len() >= 3,
        "envoy/ lost a configuration: {configs:?}"
    );
    for config in configs {
        let text = fs::read_to_string(&config).unwrap();
        let local = text.replace(INSTALL_DIR, &format!("{}/", dir.root().display()));
        let name = config.file_name().unwrap().to_str().unwrap();
        assert_plugin_configs_accepted(name, &local);
        let path = dir.write(name, local).unwrap();
        Envoy::validate(&path).unwrap_or_else(|err| panic!("{name}: {err}"));
    }
}
