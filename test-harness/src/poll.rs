//! Waiting without sleeping longer than needed: check a condition every few milliseconds until it
//! yields a value or the deadline passes.

use std::thread;
use std::time::{Duration, Instant};

/// Interval between checks; short against the 0.1–1 s that the processes take to start.
const INTERVAL: Duration = Duration::from_millis(20);

/// Calls `check` until it returns `Some`, or returns `None` once `timeout` has passed.
pub fn until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(INTERVAL);
    }
}
