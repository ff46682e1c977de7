//! Credentials and vault tokens in proxy-wasm shared data: one store per Envoy process, seen by
//! every worker. Keys hash into a fixed number of two-way slots, so memory stays bounded however
//! many identities pass, and each slot holds one [`Slot`] value changed only under CAS.
//!
//! Envoy's shared data inserts an absent key whatever CAS says and never deletes one. A slot is
//! therefore created with [`CREATE_CAS`], a CAS value no existing key carries in practice, which
//! turns the write into insert-if-absent; the lease inside the slot makes fetches single-flight.

mod keys;
mod slot;

pub use keys::{credential_key, token_key};
pub use slot::{Block, Credential, DecodeError, Lease, Slot};

use crate::denial::Denial;

/// The slice of proxy-wasm shared data the cache needs; `host` adapts the real one, tests use a
/// map.
pub trait SharedStore {
    /// The value and its CAS token, or `None` when the key was never written.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes when `cas` matches the key's current CAS (or is `None`); an absent key is always
    /// created, whatever `cas` says (Envoy behaviour).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Another worker wrote the key since we read it.
    CasMismatch,
    Failed,
}

/// Envoy's CAS counter is global and would need four billion writes to reach this value, so a
/// write with it fails on every existing key and succeeds only by creating an absent one.
pub const CREATE_CAS: u32 = u32::MAX;

/// CAS conflicts retried before giving up; each retry means another worker made progress.
const MAX_ATTEMPTS: usize = 8;

/// Timings and bounds, compiled from the `cache` section of the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CachePolicy {
    /// Slots in shared data; each key may use two of them.
    pub slots: u32,
    /// Fraction of the lifetime after which the next request starts a background refresh.
    pub refresh_at: f64,
    /// Up to this fraction of `refresh_at` is taken off at random, so keys fetched together do
    /// not all refresh together.
    pub jitter: f64,
    /// A credential is not used within this margin of its expiry.
    pub expiry_margin_ms: u64,
    /// How long a vault denial is remembered.
    pub negative_ttl_ms: u64,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// How long a fetch may hold its lease before another worker may take over.
    pub lease_ms: u64,
    /// An entry is invalidated after an upstream 401/403 at most once per interval, and only
    /// when it is at least this old.
    pub invalidation_interval_ms: u64,
}

/// What a request finds for its key.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A usable credential. `refresh` is set when this caller took the lease to refresh it in
    /// the background.
    Hit {
        values: Vec<(String, String)>,
        refresh: Option<Claim>,
    },
    /// No usable credential and this caller took the lease: it must fetch.
    Fetch(Claim),
    /// No usable credential and another fetch holds the lease: wait for it.
    Wait,
    /// No usable credential and fetching is blocked for now.
    Blocked(Denial),
}

/// A lease this caller holds on a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub key: String,
    pub slot_key: String,
    pub holder: u64,
    /// What taking the slot did to it, for the entry and eviction metrics.
    pub placement: Placement,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The slot already held this key, or nothing readable.
    Kept,
    /// The slot key did not exist: one more entry in shared data.
    Created,
    /// The slot held another key, which is gone now.
    Evicted,
}

/// How a fetch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    Fetched {
        values: Vec<(String, String)>,
        ttl_ms: u64,
    },
    /// The vault said no (403, nothing at the path): remembered for the negative TTL.
    Refused(Denial),
    /// The vault failed: back off, honouring its `Retry-After` when it gave one.
    Failed {
        denial: Denial,
        retry_after_ms: Option<u64>,
    },
}

/// A slot location and what is there now.
struct Target {
    slot_key: String,
    /// `None` when the slot key does not exist yet.
    cas: Option<u32>,
    /// The slot's contents when it holds this key; a new empty slot otherwise (eviction).
    slot: Slot,
    placement: Placement,
}

impl Target {
    fn write(&self, store: &dyn SharedStore, slot: &Slot) -> Result<(), StoreError> {
        store.set(
            &self.slot_key,
            &slot.encode(),
            Some(self.cas.unwrap_or(CREATE_CAS)),
        )
    }
}

/// The two slot keys a cache key may live in: a pair of neighbours, chosen by its hash.
pub fn slot_keys(key: &str, slots: u32) -> [String; 2] {
    let pairs = u64::from(slots.max(2) / 2);
    let pair = fnv1a(key.as_bytes()) % pairs;
    [0, 1].map(|way| format!("latchkey.v1|slot|{slots}|{}", pair * 2 + way))
}

fn read_slot(store: &dyn SharedStore, slot_key: &str) -> Option<(Option<Slot>, u32)> {
    let (bytes, cas) = store.get(slot_key)?;
    Some((Slot::decode(&bytes).ok(), cas))
}

/// Finds the slot holding `key`, or the one to evict for it: absent or unreadable first, then
/// one without a live lease, preferring one without a usable credential, then the oldest.
fn locate(store: &dyn SharedStore, policy: &CachePolicy, key: &str, now_ms: u64) -> Target {
    let [first, second] = slot_keys(key, policy.slots);
    let first_read = read_slot(store, &first);
    if let Some((Some(slot), cas)) = &first_read {
        if slot.key == key {
            return Target {
                slot_key: first,
                cas: Some(*cas),
                slot: slot.clone(),
                placement: Placement::Kept,
            };
        }
    }
    let second_read = read_slot(store, &second);
    if let Some((Some(slot), cas)) = &second_read {
        if slot.key == key {
            return Target {
                slot_key: second,
                cas: Some(*cas),
                slot: slot.clone(),
                placement: Placement::Kept,
            };
        }
    }

    let victim_rank = |read: &Option<(Option<Slot>, u32)>| match read {
        None | Some((None, _)) => (0, 0),
        Some((Some(slot), _)) if slot.live_lease(now_ms).is_some() => (3, 0),
        Some((Some(slot), _)) => match slot.usable_credential(now_ms, policy.expiry_margin_ms) {
            None => (1, 0),
            Some(credential) => (2, credential.fetched_at_ms),
        },
    };
    let (slot_key, read) = if victim_rank(&second_read) < victim_rank(&first_read) {
        (second, second_read)
    } else {
        (first, first_read)
    };
    let placement = match &read {
        None => Placement::Created,
        Some((None, _)) => Placement::Kept,
        Some((Some(_), _)) => Placement::Evicted,
    };
    Target {
        slot_key,
        cas: read.map(|(_, cas)| cas),
        slot: Slot::empty(key),
        placement,
    }
}

/// Looks `key` up and, when the caller has to fetch or refresh, takes the lease for it.
pub fn lookup(
    store: &dyn SharedStore,
    policy: &CachePolicy,
    key: &str,
    now_ms: u64,
    holder: u64,
) -> Lookup {
    for _ in 0..MAX_ATTEMPTS {
        let target = locate(store, policy, key, now_ms);
        let mut slot = target.slot.clone();
        let busy = slot.live_lease(now_ms).is_some() || slot.live_block(now_ms).is_some();
        if let Some(credential) = slot.usable_credential(now_ms, policy.expiry_margin_ms) {
            let values = credential.values.clone();
            if now_ms < credential.refresh_at_ms || busy {
                return Lookup::Hit {
                    values,
                    refresh: None,
                };
            }
            slot.lease = Some(Lease {
                holder,
                until_ms: now_ms.saturating_add(policy.lease_ms),
            });
            match target.write(store, &slot) {
                Ok(()) => {
                    let refresh = Some(claim(key, target, holder));
                    return Lookup::Hit { values, refresh };
                }
                // Someone else refreshes, or the slot moved on; the credential is still good.
                Err(_) => {
                    return Lookup::Hit {
                        values,
                        refresh: None,
                    }
                }
            }
        }
        if let Some(block) = slot.live_block(now_ms) {
            return Lookup::Blocked(block.denial);
        }
        if slot.live_lease(now_ms).is_some() {
            return Lookup::Wait;
        }
        slot.lease = Some(Lease {
            holder,
            until_ms: now_ms.saturating_add(policy.lease_ms),
        });
        match target.write(store, &slot) {
            Ok(()) => return Lookup::Fetch(claim(key, target, holder)),
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Failed) => break,
        }
    }
    // Contention on every attempt means other callers are making progress on this key.
    Lookup::Wait
}

fn claim(key: &str, target: Target, holder: u64) -> Claim {
    Claim {
        key: key.to_string(),
        slot_key: target.slot_key,
        holder,
        placement: target.placement,
    }
}

/// Records how a fetch ended and releases its lease. `entropy` spreads refresh times and
/// back-offs; any value is valid.
pub fn complete(
    store: &dyn SharedStore,
    policy: &CachePolicy,
    claim: &Claim,
    completion: &Completion,
    now_ms: u64,
    entropy: u64,
) -> Result<(), StoreError> {
    let mut result = Err(StoreError::CasMismatch);
    for _ in 0..MAX_ATTEMPTS {
        let (current, cas) = match read_slot(store, &claim.slot_key) {
            Some((slot, cas)) => (slot, Some(cas)),
            None => (None, None),
        };
        // A slot taken over by another key is evicted again only for a fresh credential.
        let mut slot = match current {
            Some(slot) if slot.key == claim.key => slot,
            _ if matches!(completion, Completion::Fetched { .. }) => Slot::empty(&claim.key),
            _ => return Ok(()),
        };
        if slot.lease.is_some_and(|lease| lease.holder == claim.holder) {
            slot.lease = None;
        }
        apply(&mut slot, policy, completion, now_ms, entropy);
        result = store.set(
            &claim.slot_key,
            &slot.encode(),
            Some(cas.unwrap_or(CREATE_CAS)),
        );
        if result != Err(StoreError::CasMismatch) {
            return result;
        }
    }
    result
}

fn apply(slot: &mut Slot, policy: &CachePolicy, completion: &Completion, now: u64, entropy: u64) {
    match completion {
        Completion::Fetched { values, ttl_ms } => {
            let fraction = policy.refresh_at * (1.0 - policy.jitter * unit(entropy));
            let refresh_after = (*ttl_ms as f64 * fraction) as u64;
            slot.credential = Some(Credential {
                values: values.clone(),
                fetched_at_ms: now,
                refresh_at_ms: now.saturating_add(refresh_after),
                expires_at_ms: now.saturating_add(*ttl_ms),
            });
            slot.block = None;
            slot.failures = 0;
        }
        Completion::Refused(denial) => {
            // The vault no longer grants this credential: stop serving the cached one too.
            slot.credential = None;
            let until_ms = now.saturating_add(policy.negative_ttl_ms);
            slot.block = Some(Block {
                denial: *denial,
                until_ms,
            });
        }
        Completion::Failed {
            denial,
            retry_after_ms,
        } => {
            slot.failures = slot.failures.saturating_add(1);
            let exponent = slot.failures.saturating_sub(1).min(20);
            let backoff = policy.backoff_base_ms.saturating_mul(1 << exponent);
            // Full jitter over the upper half: retries of many keys spread out, none too early.
            let backoff = backoff.min(policy.backoff_max_ms);
            let backoff = backoff / 2 + (backoff as f64 / 2.0 * unit(entropy)) as u64;
            let wait = retry_after_ms.map_or(backoff, |after| after.max(backoff));
            let until_ms = now.saturating_add(wait.min(policy.backoff_max_ms));
            slot.block = Some(Block {
                denial: *denial,
                until_ms,
            });
        }
    }
}

/// Drops the credential of `key` after the upstream refused it, unless that happened within the
/// invalidation interval or the credential is younger than it. Returns whether it was dropped.
pub fn invalidate(store: &dyn SharedStore, policy: &CachePolicy, key: &str, now_ms: u64) -> bool {
    let interval = policy.invalidation_interval_ms;
    for _ in 0..MAX_ATTEMPTS {
        let target = locate(store, policy, key, now_ms);
        let mut slot = target.slot.clone();
        let Some(credential) = &slot.credential else {
            return false;
        };
        let young = now_ms.saturating_sub(credential.fetched_at_ms) < interval;
        let recent = now_ms.saturating_sub(slot.invalidated_at_ms) < interval;
        if young || recent || target.cas.is_none() {
            return false;
        }
        slot.credential = None;
        slot.invalidated_at_ms = now_ms;
        match target.write(store, &slot) {
            Ok(()) => return true,
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Failed) => return false,
        }
    }
    false
}

/// Drops the credential of `key` at once, e.g. a vault token the vault no longer accepts.
pub fn forget(store: &dyn SharedStore, policy: &CachePolicy, key: &str, now_ms: u64) {
    for _ in 0..MAX_ATTEMPTS {
        let target = locate(store, policy, key, now_ms);
        if target.slot.credential.is_none() || target.cas.is_none() {
            return;
        }
        let slot = Slot {
            credential: None,
            ..target.slot.clone()
        };
        if target.write(store, &slot) != Err(StoreError::CasMismatch) {
            return;
        }
    }
}

/// Maps entropy to [0, 1).
fn unit(entropy: u64) -> f64 {
    (entropy >> 11) as f64 / (1u64 << 53) as f64
}

/// FNV-1a: stable across workers and VM reloads, which a std hasher does not promise.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub mod fake;

#[cfg(test)]
mod tests;
