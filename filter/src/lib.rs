//! latchkey: a proxy-wasm HTTP filter that injects short-lived vault credentials chosen by the
//! caller's SPIFFE identity. This file only wires the VM; `flow` decides, `host` talks to Envoy.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented,
        clippy::indexing_slicing
    )
)]

pub mod binding;
pub mod cache;
pub mod config;
pub mod denial;
pub mod flow;
pub mod identity;
pub mod inject;
pub mod metrics;
pub mod template;
pub mod vault;
pub mod worker;

#[cfg(all(
    target_arch = "wasm32",
    target_os = "wasi",
    feature = "host-call-count"
))]
mod cost;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod host;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod http;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod root;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| Box::new(root::Root::new(context_id)));
}}
