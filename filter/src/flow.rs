//! The decisions for one request, as plain Rust: who calls, which binding applies, and what the
//! shared cache answers. A request either goes on at once (with a credential, untouched, or with
//! its credentials stripped), is refused, or waits while one [`Job`] per key fetches.

use std::time::Duration;

use crate::binding::{self, Binding, Destination, OnError, VaultPathError};
use crate::cache::{self, Lookup, SharedStore};
use crate::config::{Config, VaultAuth};
use crate::denial::Denial;
use crate::identity::{self, IdentityError, IdentityInputs, SpiffeId};
use crate::vault::Secret;

mod job;

pub use job::{Job, JobEnv, JobStep, VaultAnswer};

/// What the proxy saw of the request, read as bytes.
pub struct RequestView<'a> {
    pub authority: &'a [u8],
    pub path: &'a [u8],
    /// What the identity sources read: headers, peer certificate, node metadata.
    pub identity: IdentityInputs<'a>,
}

/// A bound request whose credential is known by its cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub binding: usize,
    pub caller: SpiffeId,
    pub vault_path: String,
    pub key: String,
    /// The caller's verified JWT-SVID, for vault `jwt` logins.
    pub jwt_svid: Option<Secret>,
}

#[derive(Debug)]
pub enum Decision<'c> {
    /// No binding for this caller and destination: the request goes on untouched.
    PassThrough,
    /// Remove the caller's credentials, set these headers (none when failing open) and go on.
    /// `key` names the injected credential, `refresh` a background refresh to start.
    Inject {
        strip: &'c [String],
        set: Vec<(String, String)>,
        key: Option<String>,
        refresh: Option<Job>,
    },
    /// Pause until the credential lands; `fetch` is set when this request starts the fetch.
    Wait {
        pending: Pending,
        fetch: Option<Job>,
    },
    Deny(Denial),
}

/// Starts a request. `holder` names this request as a lease holder; it must be unique.
pub fn begin<'c>(
    context_id: u32,
    config: &'c Config,
    request: &RequestView<'_>,
    store: &dyn SharedStore,
    now_ms: u64,
    holder: u64,
) -> Decision<'c> {
    begin_traced(context_id, config, request, store, now_ms, holder).0
}

/// What became known about a request on its way to a decision, for metrics and access logs.
#[derive(Debug, Default)]
pub struct Trace<'c> {
    pub caller: Option<SpiffeId>,
    pub binding: Option<&'c str>,
    /// `hit`, `refresh`, `miss`, `wait` or `blocked`, once the cache was asked.
    pub cache: Option<&'static str>,
}

/// [`begin`], also telling what it learnt on the way.
pub fn begin_traced<'c>(
    context_id: u32,
    config: &'c Config,
    request: &RequestView<'_>,
    store: &dyn SharedStore,
    now_ms: u64,
    holder: u64,
) -> (Decision<'c>, Trace<'c>) {
    let mut trace = Trace::default();
    let resolved = match identity::resolve(&config.identity, &request.identity, now_ms / 1000) {
        Ok(resolved) => resolved,
        Err(err) => {
            log::info!("[ctx {context_id}] identity refused: {err}");
            return (Decision::Deny(identity_denial(&err)), trace);
        }
    };
    let (caller, jwt_svid) = (resolved.id, resolved.jwt_svid);
    log::debug!(
        "[ctx {context_id}] caller={caller} source={}",
        resolved.source
    );
    trace.caller = Some(caller.clone());

    let destination = Destination {
        authority: request.authority,
        path: request.path,
    };
    let Some((index, binding)) = binding::select(&config.bindings, &destination, &caller) else {
        log::debug!("[ctx {context_id}] caller={caller} no binding");
        let decision = match config.deny_unbound {
            true => Decision::Deny(Denial::NoBinding),
            false => Decision::PassThrough,
        };
        return (decision, trace);
    };
    trace.binding = Some(&binding.name);
    let vault_path = match binding.credential.render_path(&caller) {
        Ok(path) => path,
        Err(VaultPathError::MissingPart { variable }) => {
            log::info!(
                "[ctx {context_id}] caller={caller} binding={} has no {{{variable}}} for its path",
                binding.name
            );
            return (Decision::Deny(Denial::IdentityUnusable), trace);
        }
        Err(VaultPathError::Unsafe) => return (Decision::Deny(Denial::IdentityUnusable), trace),
    };

    let key = cache::credential_key(
        config.generation,
        &binding.name,
        caller.as_str(),
        &vault_path,
    );
    // A jwt login presents the caller's own JWT-SVID; another source cannot log in for it.
    if matches!(config.vault.auth, VaultAuth::Jwt { .. }) && jwt_svid.is_none() {
        log::info!("[ctx {context_id}] caller={caller} has no JWT-SVID for the vault's jwt login");
        return (Decision::Deny(Denial::IdentityUnusable), trace);
    }
    let pending = Pending {
        binding: index,
        caller,
        vault_path,
        key,
        jwt_svid,
    };
    let decision = resolve(context_id, config, pending, store, now_ms, holder);
    let cache = match &decision {
        Decision::Inject {
            refresh: Some(_), ..
        } => "refresh",
        Decision::Inject { key: Some(_), .. } => "hit",
        Decision::Wait { fetch: Some(_), .. } => "miss",
        Decision::Wait { .. } => "wait",
        Decision::Inject { .. } | Decision::Deny(_) | Decision::PassThrough => "blocked",
    };
    log::debug!("[ctx {context_id}] binding={} cache {cache}", binding.name);
    trace.cache = Some(cache);
    (decision, trace)
}

/// What a request does now about its credential: also how a waiting request is re-checked
/// when a fetch lands, on a tick, or when its lease holder may have gone.
pub fn resolve<'c>(
    context_id: u32,
    config: &'c Config,
    pending: Pending,
    store: &dyn SharedStore,
    now_ms: u64,
    holder: u64,
) -> Decision<'c> {
    let Some(binding) = config.bindings.get(pending.binding) else {
        return Decision::Deny(Denial::NotConfigured);
    };
    match cache::lookup(store, &config.cache, &pending.key, now_ms, holder) {
        Lookup::Hit { values, refresh } => Decision::Inject {
            strip: &binding.strip,
            set: values,
            key: Some(pending.key.clone()),
            refresh: refresh.map(|claim| Job::new(context_id, pending, claim)),
        },
        Lookup::Fetch(claim) => {
            let fetch = Some(Job::new(context_id, pending.clone(), claim));
            Decision::Wait { pending, fetch }
        }
        Lookup::Wait => Decision::Wait {
            pending,
            fetch: None,
        },
        Lookup::Blocked(denial) => fail_with(binding, denial),
    }
}

/// The answer for a request that waited past its deadline.
pub fn expired<'c>(config: &'c Config, pending: &Pending) -> Decision<'c> {
    match config.bindings.get(pending.binding) {
        Some(binding) => fail_with(binding, Denial::VaultUnavailable),
        None => Decision::Deny(Denial::VaultUnavailable),
    }
}

fn identity_denial(err: &IdentityError) -> Denial {
    match err {
        IdentityError::Missing => Denial::NoIdentity,
        IdentityError::Ambiguous { .. } => Denial::AmbiguousIdentity,
        IdentityError::UntrustedDomain { .. } => Denial::UntrustedIdentity,
        IdentityError::NotSpiffe { .. }
        | IdentityError::BadCertificate(_)
        | IdentityError::BadXfcc(_)
        | IdentityError::RepeatedHeader { .. } => Denial::InvalidIdentity,
        IdentityError::BadJwtSvid(_) => Denial::InvalidJwtSvid,
    }
}

/// Applies the binding's `on_error`: deny, or forward with the caller's credentials stripped.
fn fail_with(binding: &Binding, denial: Denial) -> Decision<'_> {
    match binding.on_error {
        OnError::Deny => Decision::Deny(denial),
        OnError::AllowWithoutCredential => Decision::Inject {
            strip: &binding.strip,
            set: Vec::new(),
            key: None,
            refresh: None,
        },
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
