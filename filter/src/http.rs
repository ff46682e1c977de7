//! One HTTP context per request: reads what `flow` needs, carries out its decisions (set
//! headers, call the vault, reply locally) and resumes the request. No decisions are made here.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::config::Config;
use crate::denial::Denial;
use crate::flow::{self, Decision, Fetch, RequestView};
use crate::host::{self, SharedData};
use crate::identity::{self, IdentityInputs, Source};
use crate::vault::MAX_BODY_BYTES;

pub struct RequestContext {
    context_id: u32,
    config: Rc<Config>,
    fetch: Option<Fetch>,
}

impl RequestContext {
    pub fn new(context_id: u32, config: Rc<Config>) -> Self {
        Self {
            context_id,
            config,
            fetch: None,
        }
    }

    /// Carries out a decision; returns whether the request may continue now.
    fn apply(&mut self, decision: Decision<'_>) -> bool {
        match decision {
            Decision::PassThrough => true,
            Decision::Inject { strip, set } => self.inject(strip, &set),
            Decision::CallVault(request) => {
                let vault = &self.config.vault;
                let body = request.body.as_deref();
                match host::dispatch(&vault.cluster, &request.headers, body, vault.timeout) {
                    Ok(_) => false,
                    Err(status) => {
                        log::error!(
                            "[ctx {}] vault call not dispatched on cluster {}: {status:?}",
                            self.context_id,
                            vault.cluster
                        );
                        let config = Rc::clone(&self.config);
                        let fallback = match &self.fetch {
                            Some(fetch) => fetch.on_dispatch_failure(&config),
                            None => Decision::Deny(Denial::VaultUnavailable),
                        };
                        self.fetch = None;
                        self.apply(fallback)
                    }
                }
            }
            Decision::Deny(denial) => {
                self.deny(denial);
                false
            }
        }
    }

    fn inject(&self, strip: &[String], set: &[(String, String)]) -> bool {
        for name in strip {
            if let Err(status) = host::remove_request_header(name) {
                log::error!(
                    "[ctx {}] could not remove {name}: {status:?}",
                    self.context_id
                );
                self.deny(Denial::InvalidCredential);
                return false;
            }
        }
        for (name, value) in set {
            if let Err(status) = host::set_request_header(name, value) {
                log::error!("[ctx {}] could not set {name}: {status:?}", self.context_id);
                self.deny(Denial::InvalidCredential);
                return false;
            }
        }
        true
    }

    fn deny(&self, denial: Denial) {
        log::debug!(
            "[ctx {}] denied {} {}",
            self.context_id,
            denial.status(),
            denial.code()
        );
        let headers = [
            ("content-type", "application/json"),
            ("x-latchkey-error", denial.code()),
        ];
        if let Err(status) = host::send_local_reply(denial.status(), &denial.body(), &headers) {
            log::error!("[ctx {}] local reply failed: {status:?}", self.context_id);
        }
    }
}

impl Context for RequestContext {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body_size: usize, _: usize) {
        let Some(mut fetch) = self.fetch.take() else {
            return;
        };
        // Envoy synthesises a status for failed callouts (503 refused, 504 timeout).
        let status = host::call_response_status().unwrap_or(0);
        // One byte past the limit is enough for the parser to refuse an oversized body.
        let body = host::call_response_body(body_size.min(MAX_BODY_BYTES + 1));

        let config = Rc::clone(&self.config);
        let decision = fetch.on_vault_response(&config, status, &body, &SharedData, host::now_ms());
        if matches!(decision, Decision::CallVault(_)) {
            self.fetch = Some(fetch);
        }
        if self.apply(decision) {
            if let Err(status) = host::resume_request() {
                log::error!("[ctx {}] resume failed: {status:?}", self.context_id);
            }
        }
    }
}

impl HttpContext for RequestContext {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let authority = host::request_header(":authority").unwrap_or_default();
        let path = host::request_header(":path").unwrap_or_default();
        let headers = host::request_headers();
        let settings = &self.config.identity;
        let peer_certificate = settings
            .uses(Source::PeerCertificate)
            .then(|| host::property(&["connection", "peer_certificate"]))
            .flatten();
        let (node_namespace, node_service_account) = if settings.needs_node_metadata() {
            (node_metadata("NAMESPACE"), node_metadata("SERVICE_ACCOUNT"))
        } else {
            (None, None)
        };

        // Before any decision, so that no outcome lets a forged identity header through.
        for name in identity::spoofed_headers(settings, &headers) {
            if let Err(status) = host::remove_request_header(&name) {
                log::error!(
                    "[ctx {}] could not remove {name}: {status:?}",
                    self.context_id
                );
                self.deny(Denial::InvalidIdentity);
                return Action::Pause;
            }
            log::debug!("[ctx {}] removed untrusted {name}", self.context_id);
        }

        let request = RequestView {
            authority: &authority,
            path: &path,
            identity: IdentityInputs {
                headers: &headers,
                peer_certificate: peer_certificate.as_deref(),
                node_namespace: node_namespace.as_deref(),
                node_service_account: node_service_account.as_deref(),
            },
        };

        let config = Rc::clone(&self.config);
        let (decision, fetch) = flow::begin(
            self.context_id,
            &config,
            &request,
            &SharedData,
            host::now_ms(),
        );
        self.fetch = fetch;
        if self.apply(decision) {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

/// A node metadata value. Envoy 1.40 serves the node as `xds.node`; older proxies (and the
/// attribute list of earlier Istio releases) name it `node`.
fn node_metadata(key: &str) -> Option<Vec<u8>> {
    host::property(&["xds", "node", "metadata", key])
        .or_else(|| host::property(&["node", "metadata", key]))
}
