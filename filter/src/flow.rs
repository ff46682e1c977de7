//! The decisions for one request, as plain Rust: who calls, which binding applies, whether the
//! cache answers, which vault call to make next, and what to do with its answer. The HTTP
//! context only carries these decisions out.

use std::time::Duration;

use crate::binding::{self, Binding, CredentialSource, Destination, OnError, VaultPathError};
use crate::cache::{self, CacheEntry, SharedStore};
use crate::config::{Config, VaultAuth};
use crate::denial::Denial;
use crate::identity::{self, IdentityError, IdentityInputs, SpiffeId};
use crate::inject;
use crate::vault::{self, Secret, VaultError, VaultRequest};

/// A vault token without a lease (a periodic or root-like token) is still re-fetched this often.
const UNBOUNDED_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// What the proxy saw of the request, read as bytes.
pub struct RequestView<'a> {
    pub authority: &'a [u8],
    pub path: &'a [u8],
    /// What the identity sources read: headers, peer certificate, node metadata.
    pub identity: IdentityInputs<'a>,
}

#[derive(Debug)]
pub enum Decision<'c> {
    /// No binding for this caller and destination: the request goes on untouched.
    PassThrough,
    /// Remove the caller's credentials, then set these headers (none when failing open).
    Inject {
        strip: &'c [String],
        set: Vec<(String, String)>,
    },
    /// Dispatch this call on the vault cluster and pause the request until it answers.
    CallVault(VaultRequest),
    Deny(Denial),
}

/// A credential fetch in progress for one paused request.
#[derive(Debug)]
pub struct Fetch {
    context_id: u32,
    binding: usize,
    caller: SpiffeId,
    vault_path: String,
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    LoggingIn,
    /// `token_from_cache`: a denial may mean the cached token was revoked, so log in once more.
    Reading {
        token_from_cache: bool,
    },
}

/// Starts a request: answers from the cache when it can, else returns the first vault call and
/// the [`Fetch`] that will take its answer.
pub fn begin<'c>(
    context_id: u32,
    config: &'c Config,
    request: &RequestView<'_>,
    store: &dyn SharedStore,
    now_ms: u64,
) -> (Decision<'c>, Option<Fetch>) {
    let caller = match identity::resolve(&config.identity, &request.identity, now_ms / 1000) {
        Ok(resolved) => {
            log::debug!(
                "[ctx {context_id}] caller={} source={}",
                resolved.id,
                resolved.source
            );
            resolved.id
        }
        Err(err) => {
            log::info!("[ctx {context_id}] identity refused: {err}");
            return (Decision::Deny(identity_denial(&err)), None);
        }
    };

    let destination = Destination {
        authority: request.authority,
        path: request.path,
    };
    let Some((index, binding)) = binding::select(&config.bindings, &destination, &caller) else {
        log::debug!("[ctx {context_id}] caller={caller} no binding, passing through");
        return (Decision::PassThrough, None);
    };
    let vault_path = match binding.credential.render_path(&caller) {
        Ok(path) => path,
        Err(VaultPathError::MissingPart { variable }) => {
            log::info!(
                "[ctx {context_id}] caller={caller} binding={} has no {{{variable}}} for its path",
                binding.name
            );
            return (Decision::Deny(Denial::IdentityUnusable), None);
        }
        Err(VaultPathError::Unsafe) => return (Decision::Deny(Denial::IdentityUnusable), None),
    };

    let margin_ms = millis(config.expiry_margin);
    let key = credential_key(config, binding, &caller, &vault_path);
    if let Some(entry) = cache::lookup(store, &key, now_ms, margin_ms) {
        log::debug!(
            "[ctx {context_id}] caller={caller} binding={} cache hit",
            binding.name
        );
        return (
            Decision::Inject {
                strip: &binding.strip,
                set: entry.values,
            },
            None,
        );
    }

    let mut fetch = Fetch {
        context_id,
        binding: index,
        caller,
        vault_path,
        stage: Stage::LoggingIn,
    };
    let token = cache::lookup(store, &token_key(config), now_ms, margin_ms)
        .and_then(|entry| entry.values.into_iter().next())
        .map(|(_, token)| Secret::new(token));
    let decision = match token {
        Some(token) => fetch.read_with(config, token, true),
        None => Decision::CallVault(vault::cert_login(&config.vault)),
    };
    log::debug!(
        "[ctx {context_id}] caller={} binding={} cache miss",
        fetch.caller,
        binding.name
    );
    (decision, Some(fetch))
}

impl Fetch {
    /// Takes the vault's answer to the last call. The fetch is over unless the decision is
    /// another [`Decision::CallVault`].
    pub fn on_vault_response<'c>(
        &mut self,
        config: &'c Config,
        status: u16,
        body: &[u8],
        store: &dyn SharedStore,
        now_ms: u64,
    ) -> Decision<'c> {
        let Some(binding) = config.bindings.get(self.binding) else {
            return Decision::Deny(Denial::VaultUnavailable);
        };
        match std::mem::replace(&mut self.stage, Stage::LoggingIn) {
            Stage::LoggingIn => self.on_login(config, binding, status, body, store, now_ms),
            Stage::Reading {
                token_from_cache, ..
            } => self.on_read(
                config,
                binding,
                status,
                body,
                token_from_cache,
                store,
                now_ms,
            ),
        }
    }

    fn on_login<'c>(
        &mut self,
        config: &'c Config,
        binding: &'c Binding,
        status: u16,
        body: &[u8],
        store: &dyn SharedStore,
        now_ms: u64,
    ) -> Decision<'c> {
        let login = match vault::parse_login(status, body) {
            Ok(login) => login,
            Err(err) => return self.fail(binding, &err, true),
        };
        let ttl = if login.lease.is_zero() {
            UNBOUNDED_TOKEN_TTL
        } else {
            login.lease
        };
        log::info!(
            "[ctx {}] vault login ok method=cert ttl_s={}",
            self.context_id,
            ttl.as_secs()
        );
        let entry = CacheEntry {
            expires_at_ms: now_ms.saturating_add(millis(ttl)),
            values: vec![("token".into(), login.token.expose().to_string())],
        };
        if let Err(err) = cache::store(store, &token_key(config), &entry) {
            log::warn!("[ctx {}] vault token not cached: {err:?}", self.context_id);
        }
        self.read_with(config, login.token, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn on_read<'c>(
        &mut self,
        config: &'c Config,
        binding: &'c Binding,
        status: u16,
        body: &[u8],
        token_from_cache: bool,
        store: &dyn SharedStore,
        now_ms: u64,
    ) -> Decision<'c> {
        let CredentialSource::Kv2 { field, refresh, .. } = &binding.credential;
        let fields = match vault::parse_kv2(status, body, field.as_deref()) {
            Ok(fields) => fields,
            Err(VaultError::Denied { .. }) if token_from_cache => {
                log::info!(
                    "[ctx {}] cached vault token refused, logging in again",
                    self.context_id
                );
                return Decision::CallVault(vault::cert_login(&config.vault));
            }
            Err(err) => return self.fail(binding, &err, false),
        };
        let headers = match inject::render(binding, &fields) {
            Ok(headers) => headers,
            Err(err) => {
                log::warn!(
                    "[ctx {}] binding={} credential unusable: {err}",
                    self.context_id,
                    binding.name
                );
                return fail_with(binding, Denial::InvalidCredential);
            }
        };

        // The audit line: who got what from where, never the value.
        log::info!(
            "[ctx {}] credential fetched caller={} binding={} path={} ttl_s={}",
            self.context_id,
            self.caller,
            binding.name,
            self.vault_path,
            refresh.as_secs()
        );
        let entry = CacheEntry {
            expires_at_ms: now_ms.saturating_add(millis(*refresh)),
            values: headers.clone(),
        };
        let key = credential_key(config, binding, &self.caller, &self.vault_path);
        if let Err(err) = cache::store(store, &key, &entry) {
            log::warn!("[ctx {}] credential not cached: {err:?}", self.context_id);
        }
        Decision::Inject {
            strip: &binding.strip,
            set: headers,
        }
    }

    fn read_with<'c>(
        &mut self,
        config: &'c Config,
        token: Secret,
        from_cache: bool,
    ) -> Decision<'c> {
        let Some(binding) = config.bindings.get(self.binding) else {
            return Decision::Deny(Denial::VaultUnavailable);
        };
        let CredentialSource::Kv2 { mount, .. } = &binding.credential;
        let request = vault::kv2_read(
            &config.vault,
            mount,
            &self.vault_path,
            token.expose(),
            &self.caller,
        );
        self.stage = Stage::Reading {
            token_from_cache: from_cache,
        };
        Decision::CallVault(request)
    }

    fn fail<'c>(&self, binding: &'c Binding, err: &VaultError, login: bool) -> Decision<'c> {
        let step = if login { "login" } else { "read" };
        log::warn!(
            "[ctx {}] vault {step} failed caller={} binding={} reason={}: {err}",
            self.context_id,
            self.caller,
            binding.name,
            err.reason()
        );
        let denial = match err {
            VaultError::Denied { .. } if login => Denial::VaultLoginFailed,
            VaultError::Denied { .. } => Denial::VaultDenied,
            VaultError::NotFound => Denial::CredentialNotFound,
            VaultError::Unavailable { .. } => Denial::VaultUnavailable,
            VaultError::Malformed { .. }
            | VaultError::TooLarge { .. }
            | VaultError::MissingField { .. } => Denial::InvalidCredential,
        };
        fail_with(binding, denial)
    }

    /// Called when the vault call could not even be dispatched, or exceeded its deadline.
    pub fn on_dispatch_failure<'c>(&self, config: &'c Config) -> Decision<'c> {
        match config.bindings.get(self.binding) {
            Some(binding) => fail_with(binding, Denial::VaultUnavailable),
            None => Decision::Deny(Denial::VaultUnavailable),
        }
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
        },
    }
}

fn credential_key(config: &Config, binding: &Binding, caller: &SpiffeId, path: &str) -> String {
    cache::credential_key(config.generation, &binding.name, caller.as_str(), path)
}

fn token_key(config: &Config) -> String {
    let VaultAuth::Cert { mount, role } = &config.vault.auth;
    cache::token_key(config.generation, mount, role)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
