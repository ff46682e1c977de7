//! Where the real programs are. The Makefile exports their paths; the harness never searches
//! `PATH`, so a test cannot silently run against some other Envoy or OpenBao.

use std::env;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Envoy 1.40 binary, from `LATCHKEY_ENVOY`.
pub fn envoy_binary() -> Result<PathBuf> {
    existing_file("LATCHKEY_ENVOY", "`make tools` installs it")
}

/// OpenBao `bao` binary, from `LATCHKEY_BAO`.
pub fn bao_binary() -> Result<PathBuf> {
    existing_file("LATCHKEY_BAO", "`make tools` installs it")
}

/// The compiled filter module, from `LATCHKEY_WASM`.
pub fn wasm_module() -> Result<PathBuf> {
    existing_file("LATCHKEY_WASM", "`make wasm` builds it")
}

/// The benchmarks' do-nothing wasm module, from `LATCHKEY_NOOP_WASM`.
pub fn noop_wasm_module() -> Result<PathBuf> {
    existing_file("LATCHKEY_NOOP_WASM", "`make bench` builds it")
}

/// The filter built with its `host-call-count` feature, for the benchmark's per-request counts,
/// from `LATCHKEY_COUNTING_WASM`.
pub fn counting_wasm_module() -> Result<PathBuf> {
    existing_file("LATCHKEY_COUNTING_WASM", "`make bench` builds it")
}

fn existing_file(var: &'static str, remedy: &str) -> Result<PathBuf> {
    let Some(value) = env::var_os(var).filter(|v| !v.is_empty()) else {
        return Err(Error::Tool {
            var,
            problem: "not set; run through `make test`, which exports it".to_string(),
        });
    };

    let path = PathBuf::from(value);
    if !path.is_file() {
        return Err(Error::Tool {
            var,
            problem: format!("{} does not exist; {remedy}", path.display()),
        });
    }
    Ok(path)
}
