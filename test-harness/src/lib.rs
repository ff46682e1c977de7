//! End-to-end harness for latchkey: starts real OpenBao, Envoy and PostgreSQL, an echo upstream and
//! an HTTPS client with a throw-away SPIFFE PKI, all on 127.0.0.1 and all confined to one
//! [`TestDir`] per test. Everything stops when dropped; drop order is reverse declaration order,
//! so declare the `TestDir` first and it outlives (and on panic, reports) the processes.
//!
//! Processes die with the thread that started them (see [`process`]): start them on the test's
//! own thread.

pub mod bench;
mod binaries;
mod client;
mod echo;
mod engines;
mod envoy;
mod error;
pub mod faulty_vault;
pub mod http_server;
mod jwt;
pub mod leaks;
mod openbao;
mod pki;
mod poll;
pub use poll::until as poll_until;
pub mod ports;
mod postgres;
pub mod process;
pub mod scenario;
mod workdir;

pub use binaries::{bao_binary, counting_wasm_module, envoy_binary, noop_wasm_module, wasm_module};
pub use client::{Client, Echoed, Response};
pub use echo::EchoUpstream;
pub use engines::{DatabaseCreds, DATABASE_CONNECTION, DATABASE_MOUNT, OIDC_KEY};
pub use envoy::{Envoy, EnvoyConfig, DEFAULT_VAULT_CLUSTER, UPSTREAM_CLUSTER, WASM_ROOT_ID};
pub use error::{Error, Result};
pub use faulty_vault::{Fault, FaultyVault};
pub use jwt::JwtSvidIssuer;
pub use openbao::{
    unique_value, ApiResponse, CertLogin, OpenBao, OpenBaoCluster, VaultToken, CERT_MOUNT,
    CERT_ROLE, READ_POLICY,
};
pub use pki::{CertKey, CertKeyPaths, Pki, PROXY_SPIFFE_ID, TRUST_DOMAIN, WORKLOAD_SPIFFE_ID};
pub use postgres::Postgres;
pub use process::ManagedProcess;
pub use workdir::TestDir;
