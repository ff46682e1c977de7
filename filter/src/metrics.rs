//! The filter's metrics, named the way Envoy names its own (dotted, lower snake case). Envoy
//! shows them as `wasmcustom.latchkey.*` in `/stats` and `wasmcustom_latchkey_*` in
//! `/stats/prometheus`. Code records through [`MetricSink`]; `host` defines the real ones.

use crate::denial::Denial;

/// Where a counter or a latency goes.
pub trait MetricSink {
    fn increment(&self, counter: Counter);
    /// One vault call took this long, dispatch to answer.
    fn record_vault_latency_ms(&self, millis: u64);
    /// One more slot of shared data holds an entry.
    fn entry_created(&self);
}

/// A sink that drops everything, where nothing is measured (tests of other things).
pub struct Unmeasured;

impl MetricSink for Unmeasured {
    fn increment(&self, _: Counter) {}
    fn record_vault_latency_ms(&self, _: u64) {}
    fn entry_created(&self) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// A request went upstream with an injected credential.
    Injected,
    /// No binding applied: the request went on untouched.
    PassedThrough,
    /// `on_error: allow_without_credential` forwarded a request with its credentials stripped.
    ForwardedWithoutCredential,
    Denied(Denial),
    CacheHit,
    CacheMiss,
    /// A request started a background refresh.
    CacheRefresh,
    /// A request waited for a fetch another request started.
    CacheWait,
    /// An upstream 401/403 dropped a cached credential.
    CacheInvalidation,
    /// A key took a slot from another key.
    CacheEviction,
    /// Envoy refused a vault call: it has no cluster of the configured name.
    VaultClusterUnknown,
    VaultCall(VaultCall, VaultOutcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultCall {
    Login,
    Renew,
    Read,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultOutcome {
    Ok,
    Denied,
    NotFound,
    Unavailable,
    Malformed,
    TooLarge,
    MissingField,
    /// The secret's value cannot go into a header (CR, LF, NUL, too long).
    InvalidValue,
    /// Envoy refused the call, or it outlived the filter's own deadline.
    Abandoned,
}

const CALLS: [VaultCall; 3] = [VaultCall::Login, VaultCall::Renew, VaultCall::Read];
const OUTCOMES: [VaultOutcome; 9] = [
    VaultOutcome::Ok,
    VaultOutcome::Denied,
    VaultOutcome::NotFound,
    VaultOutcome::Unavailable,
    VaultOutcome::Malformed,
    VaultOutcome::TooLarge,
    VaultOutcome::MissingField,
    VaultOutcome::InvalidValue,
    VaultOutcome::Abandoned,
];
const SIMPLE: [Counter; 10] = [
    Counter::Injected,
    Counter::PassedThrough,
    Counter::ForwardedWithoutCredential,
    Counter::CacheHit,
    Counter::CacheMiss,
    Counter::CacheRefresh,
    Counter::CacheWait,
    Counter::CacheInvalidation,
    Counter::CacheEviction,
    Counter::VaultClusterUnknown,
];

pub const VAULT_LATENCY: &str = "latchkey.vault.latency_ms";
pub const CACHE_ENTRIES: &str = "latchkey.cache.entries";

impl Counter {
    /// Every counter, in the order of [`Counter::index`].
    pub fn all() -> Vec<Counter> {
        let denied = Denial::ALL.iter().map(|d| Counter::Denied(*d));
        let calls = CALLS.iter().flat_map(|call| {
            OUTCOMES
                .iter()
                .map(|outcome| Counter::VaultCall(*call, *outcome))
        });
        SIMPLE.iter().copied().chain(denied).chain(calls).collect()
    }

    /// A dense index, for a table of metric ids without hashing on the request path.
    pub fn index(self) -> usize {
        let position = |list: &[Counter]| list.iter().position(|c| *c == self);
        match self {
            Counter::Denied(denial) => SIMPLE.len() + denial.index(),
            Counter::VaultCall(call, outcome) => {
                let call = CALLS.iter().position(|c| *c == call).unwrap_or_default();
                let outcome = OUTCOMES
                    .iter()
                    .position(|o| *o == outcome)
                    .unwrap_or_default();
                SIMPLE.len() + Denial::ALL.len() + call * OUTCOMES.len() + outcome
            }
            _ => position(&SIMPLE).unwrap_or_default(),
        }
    }

    pub fn name(self) -> String {
        match self {
            Counter::Injected => "latchkey.requests.injected".into(),
            Counter::PassedThrough => "latchkey.requests.passed_through".into(),
            Counter::ForwardedWithoutCredential => {
                "latchkey.requests.forwarded_without_credential".into()
            }
            Counter::Denied(denial) => format!("latchkey.requests.denied.{}", denial.code()),
            Counter::CacheHit => "latchkey.cache.hits".into(),
            Counter::CacheMiss => "latchkey.cache.misses".into(),
            Counter::CacheRefresh => "latchkey.cache.refreshes".into(),
            Counter::CacheWait => "latchkey.cache.waits".into(),
            Counter::CacheInvalidation => "latchkey.cache.invalidations".into(),
            Counter::CacheEviction => "latchkey.cache.evictions".into(),
            Counter::VaultClusterUnknown => "latchkey.vault.cluster_unknown".into(),
            Counter::VaultCall(call, outcome) => {
                format!("latchkey.vault.{}.{}", call.name(), outcome.name())
            }
        }
    }
}

impl VaultCall {
    fn name(self) -> &'static str {
        match self {
            VaultCall::Login => "login",
            VaultCall::Renew => "renew",
            VaultCall::Read => "read",
        }
    }
}

impl VaultOutcome {
    fn name(self) -> &'static str {
        match self {
            VaultOutcome::Ok => "ok",
            VaultOutcome::Denied => "denied",
            VaultOutcome::NotFound => "not_found",
            VaultOutcome::Unavailable => "unavailable",
            VaultOutcome::Malformed => "malformed",
            VaultOutcome::TooLarge => "too_large",
            VaultOutcome::MissingField => "missing_field",
            VaultOutcome::InvalidValue => "invalid_value",
            VaultOutcome::Abandoned => "abandoned",
        }
    }
}

#[cfg(test)]
pub mod fake {
    //! A sink that remembers what was counted.

    use std::cell::RefCell;

    use super::{Counter, MetricSink};

    #[derive(Default)]
    pub struct Recorded {
        pub counters: RefCell<Vec<Counter>>,
        pub latencies: RefCell<Vec<u64>>,
        pub entries: RefCell<u64>,
    }

    impl Recorded {
        pub fn count(&self, counter: Counter) -> usize {
            self.counters
                .borrow()
                .iter()
                .filter(|c| **c == counter)
                .count()
        }
    }

    impl MetricSink for Recorded {
        fn increment(&self, counter: Counter) {
            self.counters.borrow_mut().push(counter);
        }
        fn record_vault_latency_ms(&self, millis: u64) {
            self.latencies.borrow_mut().push(millis);
        }
        fn entry_created(&self) {
            *self.entries.borrow_mut() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn indices_are_dense_and_match_the_list() {
        for (position, counter) in Counter::all().into_iter().enumerate() {
            assert_eq!(counter.index(), position, "{counter:?}");
        }
    }

    #[test]
    fn names_are_unique_prefixed_and_lower_snake_case() {
        let names: Vec<String> = Counter::all().into_iter().map(Counter::name).collect();
        assert_eq!(names.len(), names.iter().collect::<HashSet<_>>().len());
        for name in names {
            assert!(name.starts_with("latchkey."), "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'),
                "{name}"
            );
        }
    }
}
