//! An in-memory [`SharedStore`] with Envoy's semantics, for tests: one global CAS counter, CAS
//! checked only on existing keys, no deletes.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use super::{SharedStore, StoreError};

#[derive(Default)]
pub struct FakeStore {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    pub writes: Cell<u32>,
}

impl FakeStore {
    pub fn keys(&self) -> usize {
        self.map.borrow().len()
    }
}

impl SharedStore for FakeStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.map.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut map = self.map.borrow_mut();
        if let (Some((_, current)), Some(cas)) = (map.get(key), cas) {
            if cas != 0 && cas != *current {
                return Err(StoreError::CasMismatch);
            }
        }
        self.next_cas.set(self.next_cas.get() + 1);
        map.insert(key.to_string(), (value.to_vec(), self.next_cas.get()));
        self.writes.set(self.writes.get() + 1);
        Ok(())
    }
}
