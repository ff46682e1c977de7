//! One fetch of one credential, run by a worker's root context: log in when no vault token is
//! cached (once per token, whichever job gets the token's lease), read the secret, and record
//! the outcome in the cache, which wakes everyone waiting for the key.

use std::time::Duration;

use super::{millis, Pending};
use crate::binding;
use crate::cache::{self, Claim, Completion, Lookup, Placement, SharedStore};
use crate::config::{Config, VaultAuth};
use crate::denial::Denial;
use crate::inject;
use crate::metrics::{Counter, MetricSink, VaultCall, VaultOutcome};
use crate::vault::{self, VaultError, VaultLogin, VaultRequest};

/// A vault token without a lease (periodic or root-like) is still re-fetched this often.
const UNBOUNDED_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// A renewal that extends the token by less than this is replaced by a fresh login.
const MIN_RENEWED_LEASE: Duration = Duration::from_secs(30);
/// A secret with neither a lease nor a configured `refresh` is still re-read this often.
const UNBOUNDED_SECRET_TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Job {
    context_id: u32,
    pending: Pending,
    claim: Claim,
    stage: Stage,
    /// The token's lease, while this job logs in for everyone.
    token_claim: Option<Claim>,
    /// A cached token was refused once and replaced; a second refusal is a real denial.
    relogged: bool,
    unreported_placement: Option<Placement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Start,
    Renewing,
    LoggingIn,
    Reading { token_from_cache: bool },
}

impl Stage {
    /// The vault call in flight in this stage.
    fn call(self) -> Option<VaultCall> {
        match self {
            Stage::Start => None,
            Stage::Renewing => Some(VaultCall::Renew),
            Stage::LoggingIn => Some(VaultCall::Login),
            Stage::Reading { .. } => Some(VaultCall::Read),
        }
    }
}

/// What the root context does next for a job.
#[derive(Debug)]
pub enum JobStep {
    /// Dispatch this call on the vault cluster; its answer goes to [`Job::on_answer`].
    Call(VaultRequest),
    /// Another job is logging in: call [`Job::start`] again later.
    WaitForToken,
    /// The outcome is in the cache: wake the requests waiting for [`Job::key`].
    Done,
}

/// A vault response, or Envoy's synthesised one for a failed call (503, 504).
pub struct VaultAnswer<'a> {
    pub status: u16,
    pub body: &'a [u8],
    pub retry_after: Option<Duration>,
}

/// What a job needs from its surroundings at each step.
pub struct JobEnv<'a> {
    pub config: &'a Config,
    pub store: &'a dyn SharedStore,
    pub metrics: &'a dyn MetricSink,
    pub now_ms: u64,
    /// Random bits for refresh and back-off jitter.
    pub entropy: u64,
}

impl Job {
    pub fn new(context_id: u32, pending: Pending, claim: Claim) -> Self {
        Self {
            context_id,
            pending,
            unreported_placement: Some(claim.placement),
            claim,
            stage: Stage::Start,
            token_claim: None,
            relogged: false,
        }
    }

    pub fn key(&self) -> &str {
        &self.pending.key
    }

    /// Finds a vault token (or the lease to log in for one) and makes the first call.
    pub fn start(&mut self, env: &JobEnv<'_>) -> JobStep {
        if let Some(placement) = self.unreported_placement.take() {
            report_placement(env, placement);
        }
        let key = match self.login(env.config) {
            Ok((key, _)) => key,
            Err(denial) => return self.finish(env, failed(denial, None)),
        };
        let (store, policy, now) = (env.store, &env.config.cache, env.now_ms);
        match cache::lookup(store, policy, &key, now, self.claim.holder) {
            Lookup::Hit {
                values,
                refresh: None,
            } => match CachedToken::from_values(values) {
                Some(cached) => self.read(env, &cached.token, true),
                None => self.finish(env, failed(Denial::VaultLoginFailed, None)),
            },
            // A token due for refresh is renewed (or replaced) before this read rather than in
            // the background: the job is off the request path already.
            Lookup::Hit {
                values,
                refresh: Some(claim),
            } => {
                self.token_claim = Some(claim);
                match CachedToken::from_values(values).filter(|cached| cached.renewable) {
                    Some(cached) => {
                        self.stage = Stage::Renewing;
                        JobStep::Call(vault::renew_self(&env.config.vault, &cached.token))
                    }
                    None => self.log_in(env),
                }
            }
            Lookup::Fetch(claim) => {
                report_placement(env, claim.placement);
                self.token_claim = Some(claim);
                self.log_in(env)
            }
            Lookup::Wait => JobStep::WaitForToken,
            Lookup::Blocked(denial) => self.finish(env, failed(denial, None)),
        }
    }

    fn log_in(&mut self, env: &JobEnv<'_>) -> JobStep {
        match self.login(env.config) {
            Ok((_, request)) => {
                self.stage = Stage::LoggingIn;
                JobStep::Call(request)
            }
            Err(denial) => self.finish(env, failed(denial, None)),
        }
    }

    /// The cache key of the vault token this job needs, and the login that gets one: the
    /// proxy's own for cert auth, the caller's own for jwt auth.
    fn login(&self, config: &Config) -> Result<(String, VaultRequest), Denial> {
        let generation = config.generation;
        match &config.vault.auth {
            VaultAuth::Cert { mount, role } => Ok((
                cache::token_key(generation, mount, role),
                vault::cert_login(&config.vault, mount, role),
            )),
            VaultAuth::Jwt { mount, role } => {
                let caller = &self.pending.caller;
                let role =
                    binding::render_for(role, caller).map_err(|_| Denial::IdentityUnusable)?;
                let jwt = self
                    .pending
                    .jwt_svid
                    .as_ref()
                    .ok_or(Denial::IdentityUnusable)?;
                let key = cache::token_key(generation, mount, &format!("{role}|{caller}"));
                Ok((
                    key,
                    vault::jwt_login(&config.vault, mount, &role, jwt.expose()),
                ))
            }
        }
    }

    pub fn on_answer(&mut self, env: &JobEnv<'_>, answer: &VaultAnswer<'_>) -> JobStep {
        match self.stage {
            Stage::LoggingIn => self.on_login(env, answer),
            Stage::Renewing => self.on_renewal(env, answer),
            Stage::Reading { token_from_cache } => self.on_read(env, answer, token_from_cache),
            Stage::Start => self.start(env),
        }
    }

    /// The call could not be dispatched or outlived its deadline.
    pub fn abandon(&mut self, env: &JobEnv<'_>) -> JobStep {
        if let Some(call) = self.stage.call() {
            count(env, call, VaultOutcome::Abandoned);
        }
        log::warn!(
            "[ctx {}] vault call abandoned key={}",
            self.context_id,
            self.pending.key
        );
        if let Some(token_claim) = self.token_claim.take() {
            let completion = failed(Denial::VaultUnavailable, None);
            self.record(env, &token_claim, &completion);
        }
        self.finish(env, failed(Denial::VaultUnavailable, None))
    }

    fn on_renewal(&mut self, env: &JobEnv<'_>, answer: &VaultAnswer<'_>) -> JobStep {
        let renewal = vault::parse_login(answer.status, answer.body);
        count(env, VaultCall::Renew, outcome(renewal.as_ref().err()));
        match renewal {
            // Near its max TTL a token renews for ever shorter leases: log in anew instead.
            Ok(renewed) if renewed.lease >= MIN_RENEWED_LEASE => {
                log::info!(
                    "[ctx {}] vault token renewed ttl_s={}",
                    self.context_id,
                    renewed.lease.as_secs()
                );
                self.store_token(env, &renewed);
                self.read(env, renewed.token.expose(), false)
            }
            Ok(_) => self.log_in(env),
            Err(err) => {
                self.log_failure("token renewal", &err);
                self.log_in(env)
            }
        }
    }

    /// Caches the token under the lease this job holds for it, releasing that lease.
    fn store_token(&mut self, env: &JobEnv<'_>, login: &VaultLogin) {
        let Some(token_claim) = self.token_claim.take() else {
            return;
        };
        let ttl = if login.lease.is_zero() {
            UNBOUNDED_TOKEN_TTL
        } else {
            login.lease
        };
        let renewable = if login.renewable { "true" } else { "false" };
        let values = vec![
            ("token".to_string(), login.token.expose().to_string()),
            ("renewable".to_string(), renewable.to_string()),
        ];
        self.record(
            env,
            &token_claim,
            &Completion::Fetched {
                values,
                ttl_ms: millis(ttl),
            },
        );
    }

    fn on_login(&mut self, env: &JobEnv<'_>, answer: &VaultAnswer<'_>) -> JobStep {
        let login = vault::parse_login(answer.status, answer.body);
        count(env, VaultCall::Login, outcome(login.as_ref().err()));
        let login = match login {
            Ok(login) => login,
            Err(err) => {
                self.log_failure("login", &err);
                let (token_completion, denial) = match err {
                    VaultError::Denied { .. } => (
                        Completion::Refused(Denial::VaultLoginFailed),
                        Denial::VaultLoginFailed,
                    ),
                    _ => (
                        failed(Denial::VaultUnavailable, answer.retry_after),
                        Denial::VaultUnavailable,
                    ),
                };
                if let Some(token_claim) = self.token_claim.take() {
                    self.record(env, &token_claim, &token_completion);
                }
                return self.finish(env, failed(denial, answer.retry_after));
            }
        };
        log::info!(
            "[ctx {}] vault login ok method={} caller={} ttl_s={} renewable={}",
            self.context_id,
            match env.config.vault.auth {
                VaultAuth::Cert { .. } => "cert",
                VaultAuth::Jwt { .. } => "jwt",
            },
            self.pending.caller,
            login.lease.as_secs(),
            login.renewable
        );
        self.store_token(env, &login);
        self.read(env, login.token.expose(), false)
    }

    fn on_read(&mut self, env: &JobEnv<'_>, answer: &VaultAnswer<'_>, cached: bool) -> JobStep {
        let Some(binding) = env.config.bindings.get(self.pending.binding) else {
            return self.finish(env, failed(Denial::NotConfigured, None));
        };
        let source = &binding.credential;
        let required = source.field.as_deref();
        let parsed = vault::parse_secret(
            source.engine,
            answer.status,
            answer.body,
            required,
            env.now_ms,
        );
        let rendered = parsed
            .as_ref()
            .ok()
            .map(|secret| inject::render(binding, &secret.fields));
        let read_outcome = match &rendered {
            Some(Err(_)) => VaultOutcome::InvalidValue,
            _ => outcome(parsed.as_ref().err()),
        };
        count(env, VaultCall::Read, read_outcome);
        let secret = match parsed {
            Ok(secret) => secret,
            Err(VaultError::Denied { .. }) if cached && !self.relogged => {
                log::info!(
                    "[ctx {}] cached vault token refused, logging in again",
                    self.context_id
                );
                if let Ok((key, _)) = self.login(env.config) {
                    cache::forget(env.store, &env.config.cache, &key, env.now_ms);
                }
                self.relogged = true;
                return self.start(env);
            }
            Err(err) => {
                self.log_failure("read", &err);
                let completion = match err {
                    VaultError::Denied { .. } => Completion::Refused(Denial::VaultDenied),
                    VaultError::NotFound => Completion::Refused(Denial::CredentialNotFound),
                    VaultError::Unavailable { .. } => {
                        failed(Denial::VaultUnavailable, answer.retry_after)
                    }
                    VaultError::Malformed { .. }
                    | VaultError::TooLarge { .. }
                    | VaultError::MissingField { .. } => failed(Denial::InvalidCredential, None),
                };
                return self.finish(env, completion);
            }
        };
        let headers = match rendered {
            Some(Ok(headers)) => headers,
            None => return self.finish(env, failed(Denial::InvalidCredential, None)),
            Some(Err(err)) => {
                log::warn!(
                    "[ctx {}] binding={} credential unusable: {err}",
                    self.context_id,
                    binding.name
                );
                return self.finish(env, failed(Denial::InvalidCredential, None));
            }
        };

        // The shortest of the secret's own lifetime and the binding's bound.
        let ttl = match (secret.lifetime, source.refresh) {
            (Some(lifetime), Some(bound)) => lifetime.min(bound),
            (Some(ttl), None) | (None, Some(ttl)) => ttl,
            (None, None) => UNBOUNDED_SECRET_TTL,
        };
        // The audit line: who got what from where, never the value.
        log::info!(
            "[ctx {}] credential fetched caller={} binding={} path={} lease_id={} ttl_s={}",
            self.context_id,
            self.pending.caller,
            binding.name,
            source.api_path(&self.pending.vault_path),
            secret.lease_id.as_deref().unwrap_or("-"),
            ttl.as_secs()
        );
        let completion = Completion::Fetched {
            values: headers,
            ttl_ms: millis(ttl),
        };
        self.finish(env, completion)
    }

    fn read(&mut self, env: &JobEnv<'_>, token: &str, from_cache: bool) -> JobStep {
        let Some(binding) = env.config.bindings.get(self.pending.binding) else {
            return self.finish(env, failed(Denial::NotConfigured, None));
        };
        let api_path = binding.credential.api_path(&self.pending.vault_path);
        self.stage = Stage::Reading {
            token_from_cache: from_cache,
        };
        let vault = &env.config.vault;
        JobStep::Call(vault::secret_read(
            vault,
            api_path,
            token,
            &self.pending.caller,
        ))
    }

    fn finish(&mut self, env: &JobEnv<'_>, completion: Completion) -> JobStep {
        let claim = self.claim.clone();
        self.record(env, &claim, &completion);
        JobStep::Done
    }

    fn record(&self, env: &JobEnv<'_>, claim: &Claim, completion: &Completion) {
        let policy = &env.config.cache;
        if let Err(err) = cache::complete(
            env.store,
            policy,
            claim,
            completion,
            env.now_ms,
            env.entropy,
        ) {
            log::warn!("[ctx {}] cache write failed: {err:?}", self.context_id);
        }
    }

    fn log_failure(&self, step: &str, err: &VaultError) {
        log::warn!(
            "[ctx {}] vault {step} failed caller={} path={} reason={}: {err}",
            self.context_id,
            self.pending.caller,
            self.pending.vault_path,
            err.reason()
        );
    }
}

/// What taking a slot did: one more entry in shared data, or another key evicted.
fn report_placement(env: &JobEnv<'_>, placement: Placement) {
    match placement {
        Placement::Created => env.metrics.entry_created(),
        Placement::Evicted => env.metrics.increment(Counter::CacheEviction),
        Placement::Kept => {}
    }
}

fn count(env: &JobEnv<'_>, call: VaultCall, outcome: VaultOutcome) {
    env.metrics.increment(Counter::VaultCall(call, outcome));
}

fn outcome(err: Option<&VaultError>) -> VaultOutcome {
    match err {
        None => VaultOutcome::Ok,
        Some(VaultError::Denied { .. }) => VaultOutcome::Denied,
        Some(VaultError::NotFound) => VaultOutcome::NotFound,
        Some(VaultError::Unavailable { .. }) => VaultOutcome::Unavailable,
        Some(VaultError::Malformed { .. }) => VaultOutcome::Malformed,
        Some(VaultError::TooLarge { .. }) => VaultOutcome::TooLarge,
        Some(VaultError::MissingField { .. }) => VaultOutcome::MissingField,
    }
}

/// The proxy's vault token as the cache keeps it.
struct CachedToken {
    token: String,
    renewable: bool,
}

impl CachedToken {
    fn from_values(values: Vec<(String, String)>) -> Option<Self> {
        let mut token = None;
        let mut renewable = false;
        for (name, value) in values {
            match name.as_str() {
                "token" => token = Some(value),
                "renewable" => renewable = value == "true",
                _ => {}
            }
        }
        token.map(|token| Self { token, renewable })
    }
}

fn failed(denial: Denial, retry_after: Option<Duration>) -> Completion {
    Completion::Failed {
        denial,
        retry_after_ms: retry_after.map(millis),
    }
}
