//! An in-memory [`SharedStore`] with Envoy's semantics, for tests and benches: one global CAS
//! counter, CAS checked only on existing keys, no deletes. It counts every call, so benches can
//! report the shared-data host calls of a request.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use super::{SharedStore, StoreError};

#[derive(Default)]
pub struct FakeStore {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    /// `get` calls so far.
    pub gets: Cell<u64>,
    /// `set` calls so far, refused ones included.
    pub sets: Cell<u64>,
}

impl FakeStore {
    pub fn keys(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn reset_counts(&self) {
        self.gets.set(0);
        self.sets.set(0);
    }
}

impl SharedStore for FakeStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.gets.set(self.gets.get() + 1);
        self.map.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.sets.set(self.sets.get() + 1);
        let mut map = self.map.borrow_mut();
        if let (Some((_, current)), Some(cas)) = (map.get(key), cas) {
            if cas != 0 && cas != *current {
                return Err(StoreError::CasMismatch);
            }
        }
        self.next_cas.set(self.next_cas.get().wrapping_add(1));
        map.insert(key.to_string(), (value.to_vec(), self.next_cas.get()));
        Ok(())
    }
}
