//! One HTTP context per request: reads what `flow` needs and carries out its decisions (set
//! headers, wait, reply locally). Fetches run in the worker's root context, which resumes the
//! request through [`carry_out`] when its credential lands.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::cache;
use crate::config::Config;
#[cfg(feature = "host-call-count")]
use crate::cost::RequestCost;
use crate::denial::Denial;
use crate::flow::{self, Decision, RequestView, Trace};
use crate::host::{self, HostMetrics, SharedData};
use crate::identity::{self, IdentityInputs, Source};
use crate::metrics::{Counter, MetricSink};
use crate::worker::{Waiter, Worker};

pub struct RequestContext {
    context_id: u32,
    config: Rc<Config>,
    worker: Rc<RefCell<Worker>>,
    metrics: Rc<HostMetrics>,
    #[cfg(feature = "host-call-count")]
    cost: RequestCost,
}

impl RequestContext {
    pub fn new(
        context_id: u32,
        config: Rc<Config>,
        worker: Rc<RefCell<Worker>>,
        metrics: Rc<HostMetrics>,
    ) -> Self {
        Self {
            context_id,
            config,
            worker,
            metrics,
            #[cfg(feature = "host-call-count")]
            cost: RequestCost::from_now(),
        }
    }
}

/// Whether a request goes on now or stays paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    Go,
    Hold,
}

/// Carries out `decision` for the request host calls act on now (see `host::act_on`), and
/// counts how the request ended when it ends here.
pub fn carry_out(
    context_id: u32,
    config: &Config,
    decision: Decision<'_>,
    worker: &RefCell<Worker>,
    metrics: &dyn MetricSink,
) -> Carried {
    match decision {
        Decision::PassThrough => {
            metrics.increment(Counter::PassedThrough);
            Carried::Go
        }
        Decision::Inject {
            strip,
            set,
            key,
            refresh,
        } => {
            if let Some(job) = refresh {
                start_soon(worker, job);
            }
            if let Err(denial) = rewrite_headers(context_id, strip, &set) {
                deny(context_id, denial, metrics);
                return Carried::Hold;
            }
            metrics.increment(match set.is_empty() {
                true => Counter::ForwardedWithoutCredential,
                false => Counter::Injected,
            });
            if let (Some(key), false) = (key, set.is_empty()) {
                worker.borrow_mut().record_injection(context_id, key);
            }
            Carried::Go
        }
        Decision::Wait { pending, fetch } => {
            let deadline_ms = host::now_ms().saturating_add(millis(config.max_wait));
            worker.borrow_mut().wait(Waiter {
                context_id,
                pending,
                deadline_ms,
            });
            if let Some(job) = fetch {
                start_soon(worker, job);
            }
            Carried::Hold
        }
        Decision::Deny(denial) => {
            deny(context_id, denial, metrics);
            Carried::Hold
        }
    }
}

/// Hands a fetch to the root context and nudges it through its queue, so it starts at once
/// rather than on the next tick.
fn start_soon(worker: &RefCell<Worker>, job: flow::Job) {
    let mut worker = worker.borrow_mut();
    worker.queue_job(job);
    if let Some(queue) = worker.queue {
        if let Err(status) = host::enqueue(queue) {
            log::debug!("job queue not reachable ({status:?}); the next tick starts the job");
        }
    }
}

fn rewrite_headers(
    context_id: u32,
    strip: &[String],
    set: &[(String, String)],
) -> Result<(), Denial> {
    for name in strip {
        if let Err(status) = host::remove_request_header(name) {
            log::error!("[ctx {context_id}] could not remove {name}: {status:?}");
            return Err(Denial::InvalidCredential);
        }
    }
    for (name, value) in set {
        if let Err(status) = host::set_request_header(name, value) {
            log::error!("[ctx {context_id}] could not set {name}: {status:?}");
            return Err(Denial::InvalidCredential);
        }
    }
    Ok(())
}

pub fn deny(context_id: u32, denial: Denial, metrics: &dyn MetricSink) {
    metrics.increment(Counter::Denied(denial));
    log::debug!(
        "[ctx {context_id}] denied {} {}",
        denial.status(),
        denial.code()
    );
    let headers = [
        ("content-type", "application/json"),
        ("x-latchkey-error", denial.code()),
    ];
    if let Err(status) = host::send_local_reply(denial.status(), &denial.body(), &headers) {
        log::error!("[ctx {context_id}] local reply failed: {status:?}");
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl RequestContext {
    /// Counts the cache outcome and leaves what access logs may show as filter state.
    fn record(&self, trace: &Trace<'_>) {
        let counter = match trace.cache {
            Some("hit") => Some(Counter::CacheHit),
            Some("refresh") => Some(Counter::CacheRefresh),
            Some("miss") => Some(Counter::CacheMiss),
            Some("wait") => Some(Counter::CacheWait),
            _ => None,
        };
        if let Some(counter) = counter {
            self.metrics.increment(counter);
        }
        let states = [
            (CALLER_STATE, trace.caller.as_ref().map(|id| id.as_str())),
            (BINDING_STATE, trace.binding),
            (CACHE_STATE, trace.cache),
        ];
        for (name, value) in states {
            if let Some(value) = value {
                if let Err(status) = host::set_filter_state(name, value.as_bytes()) {
                    log::debug!(
                        "[ctx {}] filter state {name} not set: {status:?}",
                        self.context_id
                    );
                }
            }
        }
    }
}

/// Filter state for access logs: `%FILTER_STATE(wasm.latchkey.caller:PLAIN)%` and so on.
pub const CALLER_STATE: &str = "latchkey.caller";
pub const BINDING_STATE: &str = "latchkey.binding";
pub const CACHE_STATE: &str = "latchkey.cache";

impl Context for RequestContext {
    fn on_done(&mut self) -> bool {
        self.worker.borrow_mut().forget(self.context_id);
        true
    }
}

impl HttpContext for RequestContext {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "host-call-count")]
        let _cost = self.cost.measure();
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
                deny(self.context_id, Denial::InvalidIdentity, &*self.metrics);
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

        let holder = self.worker.borrow_mut().next_holder();
        let (config, now) = (&self.config, host::now_ms());
        let (decision, trace) =
            flow::begin_traced(self.context_id, config, &request, &SharedData, now, holder);
        self.record(&trace);
        match carry_out(
            self.context_id,
            config,
            decision,
            &self.worker,
            &*self.metrics,
        ) {
            Carried::Go => Action::Continue,
            Carried::Hold => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "host-call-count")]
        let _cost = self.cost.measure();
        let Some(key) = self.worker.borrow_mut().injected_key(self.context_id) else {
            return Action::Continue;
        };
        // The upstream refused the credential we injected: it may have been rotated or revoked.
        if matches!(host::response_status(), Some(401 | 403)) {
            let policy = &self.config.cache;
            if cache::invalidate(&SharedData, policy, &key, host::now_ms()) {
                self.metrics.increment(Counter::CacheInvalidation);
                log::info!(
                    "[ctx {}] upstream refused the credential; invalidated",
                    self.context_id
                );
            }
        }
        Action::Continue
    }

    /// Envoy calls it once for every stream, when the stream ends.
    #[cfg(feature = "host-call-count")]
    fn on_log(&mut self) {
        self.metrics.add_request_cost(self.cost.total());
    }
}

/// A node metadata value. Envoy 1.40 serves the node as `xds.node`; older proxies (and the
/// attribute list of earlier Istio releases) name it `node`.
fn node_metadata(key: &str) -> Option<Vec<u8>> {
    host::property(&["xds", "node", "metadata", key])
        .or_else(|| host::property(&["node", "metadata", key]))
}
