//! The Envoy configurations shipped in `envoy/` are accepted by the real Envoy, filter included:
//! `--mode validate` runs the filter's `on_configure`, so a bad plugin config fails here too.

use std::fs;
use std::path::PathBuf;

use latchkey_test_harness::{wasm_module, Envoy, Pki, TestDir, PROXY_SPIFFE_ID};

/// Where the shipped configurations expect their files.
const INSTALL_DIR: &str = "/etc/latchkey/";

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

#[test]
fn shipped_envoy_configs_pass_envoy_validate() {
    let dir = TestDir::new("shipped_envoy_configs").unwrap();
    let pki = Pki::new().unwrap();
    pki.write_ca(dir.root(), "ca.crt").unwrap();
    let svid = pki
        .svid(PROXY_SPIFFE_ID)
        .unwrap()
        .write(dir.root(), "gateway")
        .unwrap();
    fs::copy(wasm_module().unwrap(), dir.path("latchkey_filter.wasm")).unwrap();
    assert!(svid.cert.ends_with("gateway.crt") && svid.key.ends_with("gateway.key"));

    let configs = shipped_configs();
    assert!(!configs.is_empty(), "no Envoy configuration in envoy/");
    for config in configs {
        let text = fs::read_to_string(&config).unwrap();
        let local = text.replace(INSTALL_DIR, &format!("{}/", dir.root().display()));
        let name = config.file_name().unwrap().to_str().unwrap();
        let path = dir.write(name, local).unwrap();
        Envoy::validate(&path).unwrap_or_else(|err| panic!("{name}: {err}"));
    }
}
