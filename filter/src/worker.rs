//! What one worker's root context and its HTTP contexts share (same thread, same VM): requests
//! waiting for a credential, fetch jobs to start, and which credential each request carried.

use std::collections::HashMap;

use crate::flow::{Job, Pending};

#[derive(Debug)]
pub struct Waiter {
    pub context_id: u32,
    pub pending: Pending,
    /// Answered without a credential after this, whatever the vault does.
    pub deadline_ms: u64,
}

#[derive(Debug, Default)]
pub struct Worker {
    waiters: Vec<Waiter>,
    queued: Vec<Job>,
    /// The cache key of the credential each request carried, for 401/403 invalidation.
    injected: HashMap<u32, String>,
    /// The root context's queue: an HTTP context enqueues to have jobs started at once.
    pub queue: Option<u32>,
    holder_base: u64,
    holders_issued: u64,
}

impl Worker {
    /// `seed` must differ between workers and VM instances (random bits do).
    pub fn new(seed: u64) -> Self {
        Self {
            holder_base: seed,
            ..Self::default()
        }
    }

    /// A lease holder id unique to one request or job of this worker.
    pub fn next_holder(&mut self) -> u64 {
        loop {
            self.holders_issued = self.holders_issued.wrapping_add(1);
            // Zero means "no lease" in the slot encoding.
            let id = self.holder_base.wrapping_add(self.holders_issued);
            if id != 0 {
                return id;
            }
        }
    }

    pub fn wait(&mut self, waiter: Waiter) {
        self.waiters.push(waiter);
    }

    pub fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// Removes and returns the waiters for `key`, or all of them.
    pub fn take_waiters(&mut self, key: Option<&str>) -> Vec<Waiter> {
        let (taken, kept) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| key.is_none_or(|key| w.pending.key == key));
        self.waiters = kept;
        taken
    }

    /// Forgets a request that ended (answered, reset or disconnected).
    pub fn forget(&mut self, context_id: u32) {
        self.waiters.retain(|w| w.context_id != context_id);
        self.injected.remove(&context_id);
    }

    pub fn queue_job(&mut self, job: Job) {
        self.queued.push(job);
    }

    pub fn take_jobs(&mut self) -> Vec<Job> {
        std::mem::take(&mut self.queued)
    }

    pub fn record_injection(&mut self, context_id: u32, key: String) {
        self.injected.insert(context_id, key);
    }

    pub fn injected_key(&mut self, context_id: u32) -> Option<String> {
        self.injected.remove(&context_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SpiffeId;

    fn waiter(context_id: u32, key: &str) -> Waiter {
        let pending = Pending {
            binding: 0,
            caller: SpiffeId::parse("spiffe://td/a").unwrap(),
            vault_path: "p".into(),
            key: key.into(),
            jwt_svid: None,
        };
        Waiter {
            context_id,
            pending,
            deadline_ms: 0,
        }
    }

    #[test]
    fn takes_only_the_waiters_of_a_key() {
        let mut worker = Worker::new(7);
        worker.wait(waiter(1, "a"));
        worker.wait(waiter(2, "b"));
        worker.wait(waiter(3, "a"));
        let taken: Vec<u32> = worker
            .take_waiters(Some("a"))
            .iter()
            .map(|w| w.context_id)
            .collect();
        assert_eq!(taken, [1, 3]);
        assert!(worker.has_waiters());
        assert_eq!(worker.take_waiters(None).len(), 1);
    }

    #[test]
    fn forgetting_a_request_drops_its_wait_and_injection() {
        let mut worker = Worker::new(7);
        worker.wait(waiter(1, "a"));
        worker.record_injection(1, "a".into());
        worker.forget(1);
        assert!(!worker.has_waiters());
        assert_eq!(worker.injected_key(1), None);
    }

    #[test]
    fn holder_ids_are_distinct_and_never_zero() {
        let mut worker = Worker::new(u64::MAX - 1);
        let ids: Vec<u64> = (0..4).map(|_| worker.next_holder()).collect();
        assert!(ids.iter().all(|id| *id != 0));
        assert_eq!(
            ids.len(),
            ids.iter().collect::<std::collections::HashSet<_>>().len()
        );
    }
}
