//! The root context of one worker: takes the configuration, creates the HTTP contexts, and runs
//! the vault fetches. Fetches live here rather than in a request so that a refresh outlives the
//! request that started it; requests waiting for a key are resumed when its fetch ends (same
//! worker) or when a tick sees the value another worker stored.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, Status};

use crate::config::Config;
use crate::denial::Denial;
use crate::flow::{self, Job, JobEnv, JobStep, VaultAnswer};
use crate::host::{self, HostMetrics, SharedData};
use crate::http::{self, Carried, RequestContext};
use crate::metrics::{Counter, MetricSink};
use crate::vault::{self, MAX_BODY_BYTES};
use crate::worker::Worker;

/// How often waiting requests look for values other workers stored, and deadlines are checked.
const TICK: Duration = Duration::from_millis(20);

pub struct Root {
    context_id: u32,
    config: Option<Rc<Config>>,
    worker: Rc<RefCell<Worker>>,
    metrics: Rc<HostMetrics>,
    /// Vault calls in flight, by callout token.
    in_flight: HashMap<u32, InFlight>,
    /// Jobs waiting for another job's login.
    awaiting_token: Vec<Job>,
}

struct InFlight {
    job: Job,
    dispatched_ms: u64,
    /// This filter's own deadline, independent of Envoy's dispatch timeout.
    deadline_ms: u64,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            config: None,
            worker: Rc::new(RefCell::new(Worker::new(host::entropy()))),
            metrics: Rc::new(HostMetrics::define()),
            in_flight: HashMap::new(),
            awaiting_token: Vec::new(),
        }
    }

    fn env<'a>(&'a self, config: &'a Config) -> JobEnv<'a> {
        JobEnv {
            config,
            store: &SharedData,
            metrics: &*self.metrics,
            now_ms: host::now_ms(),
            entropy: host::entropy(),
        }
    }

    /// Starts the jobs HTTP contexts queued, and retries those waiting for a token.
    fn start_jobs(&mut self, config: &Rc<Config>) {
        let mut jobs = self.worker.borrow_mut().take_jobs();
        jobs.append(&mut self.awaiting_token);
        for mut job in jobs {
            let step = job.start(&self.env(config));
            self.advance(config, job, step);
        }
    }

    fn advance(&mut self, config: &Rc<Config>, mut job: Job, step: JobStep) {
        match step {
            JobStep::Call(request) => {
                let vault = &config.vault;
                let body = request.body.as_deref();
                match host::dispatch(&vault.cluster, &request.headers, body, vault.timeout) {
                    Ok(token) => {
                        let dispatched_ms = host::now_ms();
                        let deadline_ms =
                            dispatched_ms.saturating_add(millis(vault.timeout) + 1_000);
                        self.in_flight.insert(
                            token,
                            InFlight {
                                job,
                                dispatched_ms,
                                deadline_ms,
                            },
                        );
                    }
                    Err(status) => {
                        self.report_undispatched(&vault.cluster, status);
                        let step = job.abandon(&self.env(config));
                        self.advance(config, job, step);
                    }
                }
            }
            JobStep::WaitForToken => self.awaiting_token.push(job),
            JobStep::Done => self.wake(config, Some(job.key())),
        }
    }

    /// Why Envoy refused a vault call at once, counted and logged.
    fn report_undispatched(&self, cluster: &str, status: Status) {
        if status == Status::BadArgument {
            // The only argument of the call the config decides is the cluster's name; Envoy
            // refuses a name it has no cluster for at once.
            self.metrics.increment(Counter::VaultClusterUnknown);
            log::error!(
                "[ctx {}] vault call not dispatched: vault.cluster {cluster} is unknown to Envoy",
                self.context_id
            );
        } else {
            // Envoy fails a call inline when the cluster has no healthy host or a circuit
            // breaker is open.
            log::error!(
                "[ctx {}] vault call failed at once on cluster {cluster}: {status:?} (no healthy \
                 host, or a circuit breaker open)",
                self.context_id
            );
        }
    }

    /// Re-checks waiting requests (of one key, or all) and answers those that can go on.
    fn wake(&mut self, config: &Rc<Config>, key: Option<&str>) {
        let now = host::now_ms();
        let waiters = self.worker.borrow_mut().take_waiters(key);
        for waiter in waiters {
            let context_id = waiter.context_id;
            if host::act_on(context_id).is_err() {
                continue; // The request is gone.
            }
            let decision = if now >= waiter.deadline_ms {
                log::warn!("[ctx {context_id}] waited too long for a credential");
                flow::expired(config, &waiter.pending)
            } else {
                let holder = self.worker.borrow_mut().next_holder();
                match flow::resolve(context_id, config, waiter.pending, &SharedData, now, holder) {
                    // Still in flight: keep the original deadline.
                    flow::Decision::Wait { pending, fetch } => {
                        let deadline_ms = waiter.deadline_ms;
                        let mut worker = self.worker.borrow_mut();
                        worker.wait(crate::worker::Waiter {
                            context_id,
                            pending,
                            deadline_ms,
                        });
                        if let Some(job) = fetch {
                            worker.queue_job(job);
                        }
                        continue;
                    }
                    decision => decision,
                }
            };
            let metrics = &*self.metrics;
            if http::carry_out(context_id, config, decision, &self.worker, metrics) == Carried::Go {
                if let Err(status) = host::resume_request() {
                    log::debug!("[ctx {context_id}] resume failed: {status:?}");
                }
            }
        }
        // Host calls act on this root context again.
        let _ = host::act_on(self.context_id);
    }

    /// Abandons calls past this filter's own deadline: Envoy should have answered by then.
    fn expire_calls(&mut self, config: &Rc<Config>) {
        let now = host::now_ms();
        let overdue: Vec<u32> = self
            .in_flight
            .iter()
            .filter(|(_, call)| now >= call.deadline_ms)
            .map(|(token, _)| *token)
            .collect();
        for token in overdue {
            if let Some(InFlight { mut job, .. }) = self.in_flight.remove(&token) {
                let step = job.abandon(&self.env(config));
                self.advance(config, job, step);
            }
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _: usize) {
        let Some(config) = self.config.clone() else {
            return;
        };
        let Some(InFlight {
            mut job,
            dispatched_ms,
            ..
        }) = self.in_flight.remove(&token)
        else {
            return;
        };
        let latency = host::now_ms().saturating_sub(dispatched_ms);
        self.metrics.record_vault_latency_ms(latency);
        // Envoy synthesises a status for failed calls (503 refused, 504 timeout).
        let status = host::call_response_status().unwrap_or(0);
        let retry_after = host::call_response_header("retry-after")
            .as_deref()
            .and_then(vault::parse_retry_after);
        // One byte past the limit is enough for the parser to refuse an oversized body.
        let body = host::call_response_body(body_size.min(MAX_BODY_BYTES + 1));
        let answer = VaultAnswer {
            status,
            body: &body,
            retry_after,
        };
        let step = job.on_answer(&self.env(&config), &answer);
        self.advance(&config, job, step);
        self.start_jobs(&config);
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
        let config = match Config::from_json(&bytes) {
            Ok(config) => config,
            Err(err) => {
                let kept = if self.config.is_some() {
                    "keeping the previous one"
                } else {
                    "no config"
                };
                log::error!("[ctx {}] config refused: {err}; {kept}", self.context_id);
                return false;
            }
        };
        log::info!(
            "[ctx {}] configured generation={:016x} bindings={}",
            self.context_id,
            config.generation,
            config.bindings.len()
        );
        self.config = Some(Rc::new(config));

        let queue_name = format!("latchkey.jobs.{:016x}", host::entropy());
        match host::register_queue(&queue_name) {
            Ok(queue) => self.worker.borrow_mut().queue = Some(queue),
            Err(status) => log::warn!("[ctx {}] no job queue: {status:?}", self.context_id),
        }
        if let Err(status) = host::set_tick_period(TICK) {
            log::error!("[ctx {}] no tick: {status:?}", self.context_id);
        }
        true
    }

    fn on_queue_ready(&mut self, queue: u32) {
        host::drain_queue(queue);
        if let Some(config) = self.config.clone() {
            self.start_jobs(&config);
        }
    }

    fn on_tick(&mut self) {
        let Some(config) = self.config.clone() else {
            return;
        };
        self.start_jobs(&config);
        self.expire_calls(&config);
        if self.worker.borrow().has_waiters() {
            self.wake(&config, None);
            self.start_jobs(&config);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Returning None would panic the SDK; Envoy only creates streams for a configured plugin,
        // but should it ever not, the request is refused rather than the VM lost.
        Some(match &self.config {
            Some(config) => Box::new(RequestContext::new(
                context_id,
                Rc::clone(config),
                Rc::clone(&self.worker),
                Rc::clone(&self.metrics),
            )),
            None => Box::new(Unconfigured(Rc::clone(&self.metrics))),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Answers 503 `not_configured` to every request.
struct Unconfigured(Rc<HostMetrics>);

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        http::deny(0, Denial::NotConfigured, &*self.0);
        Action::Pause
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
