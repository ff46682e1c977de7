//! What a request costs the VM in host calls and heap allocations, counted only in the
//! benchmark's build (feature `host-call-count`). `host` counts every call it makes; the SDK's
//! own calls pass it by: log lines (none on a cache hit at Envoy's default level) and the
//! effective context it sets before a callout's answer (none on a cache hit).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters rather than histograms: Envoy approximates a histogram's sum from its buckets, and
/// a counter's total divided by [`REQUESTS`] is the exact mean.
pub const REQUESTS: &str = "latchkey.bench.requests";
pub const HOST_CALLS: &str = "latchkey.bench.host_calls";
pub const ALLOCATIONS: &str = "latchkey.bench.allocations";
pub const ALLOCATED_BYTES: &str = "latchkey.bench.allocated_bytes";

// The VM runs one thread; atomics are plain loads and stores on wasm32 without threads.
static HOST_CALL_COUNT: AtomicU64 = AtomicU64::new(0);
static ALLOCATION_COUNT: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTE_COUNT: AtomicU64 = AtomicU64::new(0);

pub fn host_call() {
    HOST_CALL_COUNT.fetch_add(1, Ordering::Relaxed);
}

fn allocation(bytes: usize) {
    ALLOCATION_COUNT.fetch_add(1, Ordering::Relaxed);
    let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
    ALLOCATED_BYTE_COUNT.fetch_add(bytes, Ordering::Relaxed);
}

struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        allocation(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        allocation(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        allocation(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub host_calls: u64,
    pub allocations: u64,
    pub allocated_bytes: u64,
}

impl Cost {
    fn so_far() -> Cost {
        Cost {
            host_calls: HOST_CALL_COUNT.load(Ordering::Relaxed),
            allocations: ALLOCATION_COUNT.load(Ordering::Relaxed),
            allocated_bytes: ALLOCATED_BYTE_COUNT.load(Ordering::Relaxed),
        }
    }

    fn since(self, earlier: Cost) -> Cost {
        Cost {
            host_calls: self.host_calls.saturating_sub(earlier.host_calls),
            allocations: self.allocations.saturating_sub(earlier.allocations),
            allocated_bytes: self.allocated_bytes.saturating_sub(earlier.allocated_bytes),
        }
    }

    fn plus(self, other: Cost) -> Cost {
        Cost {
            host_calls: self.host_calls.saturating_add(other.host_calls),
            allocations: self.allocations.saturating_add(other.allocations),
            allocated_bytes: self.allocated_bytes.saturating_add(other.allocated_bytes),
        }
    }
}

/// One request's cost, summed over its own callbacks only: other requests and the root
/// context's ticks run on the same VM between them.
pub struct RequestCost {
    spent: Cell<Cost>,
    open_since: Cell<Option<Cost>>,
}

impl RequestCost {
    /// Counts from the context's creation, which includes boxing it and the SDK's bookkeeping;
    /// Envoy creates the context right before the request headers' callback.
    pub fn from_now() -> RequestCost {
        RequestCost {
            spent: Cell::new(Cost::default()),
            open_since: Cell::new(Some(Cost::so_far())),
        }
    }

    /// Counts until the returned guard drops, at the end of a callback.
    pub fn measure(&self) -> Measuring<'_> {
        if self.open_since.get().is_none() {
            self.open_since.set(Some(Cost::so_far()));
        }
        Measuring(self)
    }

    /// Everything counted so far; taken before it is recorded, so recording is not in it.
    pub fn total(&self) -> Cost {
        self.close();
        self.spent.get()
    }

    fn close(&self) {
        if let Some(since) = self.open_since.take() {
            self.spent
                .set(self.spent.get().plus(Cost::so_far().since(since)));
        }
    }
}

pub struct Measuring<'a>(&'a RequestCost);

impl Drop for Measuring<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}
