//! Credentials and vault tokens in proxy-wasm shared data: one store per Envoy process, seen by
//! every worker. Each entry is one value (credential and expiry together), so a reader never
//! sees a credential paired with another credential's expiry.

mod entry;
mod keys;

pub use entry::{CacheEntry, DecodeError};
pub use keys::{credential_key, token_key};

/// The slice of proxy-wasm shared data the cache needs; `host` adapts the real one, tests use a
/// map.
pub trait SharedStore {
    /// The value and its CAS token, or `None` when the key was never written.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes when `cas` still matches (or is `None`); a key that does not exist is always
    /// created, whatever `cas` says (Envoy behaviour).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Another worker wrote the key since we read it.
    CasMismatch,
    Failed,
}

/// Reads an entry that is still usable at `now_ms` with `margin_ms` to spare.
pub fn lookup(
    store: &dyn SharedStore,
    key: &str,
    now_ms: u64,
    margin_ms: u64,
) -> Option<CacheEntry> {
    let (bytes, _) = store.get(key)?;
    let entry = CacheEntry::decode(&bytes).ok()?;
    entry.usable_at(now_ms, margin_ms).then_some(entry)
}

/// Stores `entry`, replacing whatever is there.
///
/// TODO(#5): single flight across workers and a bounded key space; today concurrent misses each
/// fetch, and the last write wins.
pub fn store(store: &dyn SharedStore, key: &str, entry: &CacheEntry) -> Result<(), StoreError> {
    let cas = store.get(key).map(|(_, cas)| cas);
    store.set(key, &entry.encode(), cas)
}

#[cfg(test)]
pub mod fake {
    //! An in-memory [`SharedStore`] with Envoy's CAS semantics, for tests.

    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::{SharedStore, StoreError};

    #[derive(Default)]
    pub struct FakeStore {
        map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        pub writes: RefCell<u32>,
    }

    impl SharedStore for FakeStore {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.map.borrow().get(key).cloned()
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            let mut map = self.map.borrow_mut();
            let next = match map.get(key) {
                Some((_, current)) if cas.is_some_and(|c| c != *current) => {
                    return Err(StoreError::CasMismatch)
                }
                Some((_, current)) => current + 1,
                None => 1,
            };
            map.insert(key.to_string(), (value.to_vec(), next));
            *self.writes.borrow_mut() += 1;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeStore;
    use super::*;

    fn entry(expires_at_ms: u64) -> CacheEntry {
        CacheEntry {
            expires_at_ms,
            values: vec![("authorization".into(), "Bearer k".into())],
        }
    }

    #[test]
    fn lookup_returns_entries_only_before_expiry_minus_margin() {
        let shared = FakeStore::default();
        store(&shared, "k", &entry(10_000)).unwrap();
        assert!(lookup(&shared, "k", 4_999, 5_000).is_some());
        assert!(lookup(&shared, "k", 5_000, 5_000).is_none());
        assert!(lookup(&shared, "missing", 0, 0).is_none());
    }

    #[test]
    fn store_replaces_an_existing_entry() {
        let shared = FakeStore::default();
        store(&shared, "k", &entry(1)).unwrap();
        store(&shared, "k", &entry(2)).unwrap();
        assert_eq!(lookup(&shared, "k", 0, 0).unwrap().expires_at_ms, 2);
    }

    #[test]
    fn garbage_in_the_store_is_a_miss() {
        let shared = FakeStore::default();
        shared.set("k", b"\x00garbage", None).unwrap();
        assert!(lookup(&shared, "k", 0, 0).is_none());
    }
}
