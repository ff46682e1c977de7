//! Counts what one cache-hit request costs in the pure hot path: shared-data calls (each one a
//! host call in Envoy) and heap allocations, around `flow::begin`. Prints one JSON object for the
//! benchmark report; it asserts nothing.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use latchkey_filter::flow::{self, Decision};

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const REQUESTS: u64 = 1_000;

fn main() {
    let config = common::config();
    let store = common::warm_store(&config);
    let request = common::request();

    let before = (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
    );
    let mut injected = 0;
    for holder in 0..REQUESTS {
        let decision = flow::begin(1, &config, &request, &store, common::NOW_MS, holder + 10);
        if matches!(decision, Decision::Inject { key: Some(_), .. }) {
            injected += 1;
        }
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before.0;
    let bytes = ALLOCATED_BYTES.load(Ordering::Relaxed) - before.1;

    if injected != REQUESTS {
        eprintln!("only {injected} of {REQUESTS} requests were cache hits");
        std::process::exit(1);
    }
    let per = |total: u64| total as f64 / REQUESTS as f64;
    println!(
        "{{\"requests\": {REQUESTS}, \"store_gets\": {}, \"store_sets\": {}, \
         \"allocations\": {}, \"allocated_bytes\": {}}}",
        per(store.gets.get()),
        per(store.sets.get()),
        per(allocations),
        per(bytes)
    );
}
