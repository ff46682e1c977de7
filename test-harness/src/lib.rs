//! End-to-end harness for latchkey: starts real OpenBao and Envoy processes, an echo upstream and
//! an HTTPS client with a throw-away SPIFFE PKI, all on 127.0.0.1 and all confined to one
//! [`TestDir`] per test. Everything stops when dropped; drop order is reverse declaration order,
//! so declare the `TestDir` first and it outlives (and on panic, reports) the processes.
//!
//! Processes die with the thread that started them (see [`process`]): start them on the test's
//! own thread.

mod binaries;
mod client;
mod echo;
mod envoy;
mod error;
mod jwt;
mod openbao;
mod pki;
mod poll;
pub mod ports;
pub mod process;
pub mod scenario;
mod workdir;

pub use binaries::{bao_binary, envoy_binary, wasm_module};
pub use client::{Client, Echoed, Response};
pub use echo::EchoUpstream;
pub use envoy::{Envoy, EnvoyConfig, DEFAULT_VAULT_CLUSTER, UPSTREAM_CLUSTER, WASM_ROOT_ID};
pub use error::{Error, Result};
pub use jwt::JwtSvidIssuer;
pub use openbao::{
    unique_value, ApiResponse, CertLogin, OpenBao, CERT_MOUNT, CERT_ROLE, READ_POLICY,
};
pub use pki::{CertKey, CertKeyPaths, Pki, PROXY_SPIFFE_ID, TRUST_DOMAIN, WORKLOAD_SPIFFE_ID};
pub use process::ManagedProcess;
pub use workdir::TestDir;
