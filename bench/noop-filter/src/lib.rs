//! A proxy-wasm HTTP filter that lets every request through untouched. Envoy with this module
//! costs what the V8 runtime and the ABI cost on each request, and nothing more: the benchmarks
//! compare latchkey with it to tell the filter's own work from the runtime's.

use proxy_wasm::traits::{Context, HttpContext};

// Only the wasm build registers it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct PassThrough;

impl Context for PassThrough {}

// The trait's defaults answer Continue to every callback.
impl HttpContext for PassThrough {}

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_http_context(|_, _| Box::new(PassThrough));
}}
