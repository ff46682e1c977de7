//! The root context: takes the plugin configuration and creates one HTTP context per request.
//! A refused configuration keeps the previous one; on the first configure, Envoy refuses it.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use crate::config::Config;
use crate::denial::Denial;
use crate::host;
use crate::http::RequestContext;

pub struct Root {
    context_id: u32,
    config: Option<Rc<Config>>,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            config: None,
        }
    }
}

impl Context for Root {}

/// Answers 503 `not_configured` to every request.
struct Unconfigured;

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let denial = Denial::NotConfigured;
        let headers = [
            ("content-type", "application/json"),
            ("x-latchkey-error", denial.code()),
        ];
        if let Err(status) = host::send_local_reply(denial.status(), &denial.body(), &headers) {
            log::error!("local reply failed: {status:?}");
        }
        Action::Pause
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        proxy_wasm::set_log_level(host::envoy_log_level());
        log::info!(
            "[ctx {}] latchkey {} ({}) starting",
            self.context_id,
            env!("CARGO_PKG_VERSION"),
            option_env!("LATCHKEY_GIT_REVISION").unwrap_or("unknown revision")
        );
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = host::plugin_configuration().unwrap_or_default();
        match Config::from_json(&bytes) {
            Ok(config) => {
                log::info!(
                    "[ctx {}] configured generation={:016x} bindings={}",
                    self.context_id,
                    config.generation,
                    config.bindings.len()
                );
                self.config = Some(Rc::new(config));
                true
            }
            Err(err) => {
                let kept = if self.config.is_some() {
                    "keeping the previous one"
                } else {
                    "no config"
                };
                log::error!("[ctx {}] config refused: {err}; {kept}", self.context_id);
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Returning None would panic the SDK; Envoy only creates streams for a configured plugin,
        // but should it ever not, the request is refused rather than the VM lost.
        Some(match &self.config {
            Some(config) => Box::new(RequestContext::new(context_id, Rc::clone(config))),
            None => Box::new(Unconfigured),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
