//! The only module that calls into proxy-wasm, besides the SDK's logger. Everything is read as
//! bytes (the SDK's string getters panic on non-UTF-8), and every host error becomes `None` or
//! `Err`, never a panic.

use std::ptr::null_mut;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};

use crate::cache::{SharedStore, StoreError};
#[cfg(feature = "host-call-count")]
use crate::cost::{self, Cost};
use crate::metrics::{self, Counter, MetricSink};

/// Counts one host call in the benchmark's build (feature `host-call-count`); nothing otherwise.
#[inline(always)]
fn counted() {
    #[cfg(feature = "host-call-count")]
    cost::host_call();
}

/// Shared data of this VM id: one store per Envoy process, shared by all workers.
pub struct SharedData;

impl SharedStore for SharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        counted();
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) => Some((value, cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        counted();
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|status| match status {
            Status::CasMismatch => StoreError::CasMismatch,
            _ => StoreError::Failed,
        })
    }
}

/// Envoy's current log level for wasm, so that the SDK does not format lines Envoy would drop.
pub fn envoy_log_level() -> LogLevel {
    counted();
    hostcalls::get_log_level().unwrap_or(LogLevel::Info)
}

pub fn now_ms() -> u64 {
    counted();
    hostcalls::get_current_time()
        .ok()
        .and_then(|now| now.duration_since(UNIX_EPOCH).ok())
        .and_then(|since| u64::try_from(since.as_millis()).ok())
        .unwrap_or_default()
}

/// Random bits for jitter and lease holder ids (WASI `random_get` seeds the std hasher keys).
pub fn entropy() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_ms());
    hasher.finish()
}

pub fn set_tick_period(period: Duration) -> Result<(), Status> {
    counted();
    hostcalls::set_tick_period(period)
}

pub fn register_queue(name: &str) -> Result<u32, Status> {
    counted();
    hostcalls::register_shared_queue(name)
}

pub fn enqueue(queue: u32) -> Result<(), Status> {
    counted();
    hostcalls::enqueue_shared_queue(queue, Some(b"job"))
}

/// Empties the queue; the messages only say "look at the jobs".
pub fn drain_queue(queue: u32) {
    loop {
        counted();
        if !matches!(hostcalls::dequeue_shared_queue(queue), Ok(Some(_))) {
            return;
        }
    }
}

/// Makes later host calls act on the request of `context_id`; fails when it is gone.
pub fn act_on(context_id: u32) -> Result<(), Status> {
    counted();
    hostcalls::set_effective_context(context_id)
}

pub fn plugin_configuration() -> Option<Vec<u8>> {
    counted();
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
}

pub fn request_header(name: &str) -> Option<Vec<u8>> {
    counted();
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

// The same import the SDK declares; its `get_map_bytes` turns header names into `String` with
// `unwrap`, so the pairs are decoded here instead, names lossily and values as bytes.
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

/// Every request header in order, repeats kept. Empty when Envoy gives none.
pub fn request_headers() -> Vec<(String, Vec<u8>)> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    counted();
    // SAFETY: on success the host wrote a buffer it allocated through the SDK's exported
    // allocator (a `Vec<u8>` of exactly `size` bytes), which we take ownership of.
    let raw = unsafe {
        match proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) {
            Status::Ok if !data.is_null() => Vec::from_raw_parts(data, size, size),
            _ => return Vec::new(),
        }
    };
    decode_header_pairs(&raw).unwrap_or_default()
}

/// proxy-wasm's map encoding: a u32 count, a (name length, value length) u32 pair per entry,
/// then each name and value followed by a NUL byte. `None` when the buffer is inconsistent.
fn decode_header_pairs(raw: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let u32_at = |at: usize| -> Option<usize> {
        let bytes: [u8; 4] = raw.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(bytes)).ok()
    };
    let count = u32_at(0)?;
    let mut data_at = count.checked_mul(8)?.checked_add(4)?;
    let mut pairs = Vec::with_capacity(count.min(256));
    for index in 0..count {
        let name_len = u32_at(4 + index * 8)?;
        let value_len = u32_at(8 + index * 8)?;
        let name = raw.get(data_at..data_at.checked_add(name_len)?)?;
        data_at = data_at.checked_add(name_len)?.checked_add(1)?;
        let value = raw.get(data_at..data_at.checked_add(value_len)?)?;
        data_at = data_at.checked_add(value_len)?.checked_add(1)?;
        pairs.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
    }
    Some(pairs)
}

/// Removes every value of the header (a caller may send several).
pub fn remove_request_header(name: &str) -> Result<(), Status> {
    counted();
    hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, None)
}

/// Replaces every value of the header with this one.
pub fn set_request_header(name: &str, value: &str) -> Result<(), Status> {
    counted();
    hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, Some(value.as_bytes()))
}

pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    counted();
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

pub fn dispatch(
    cluster: &str,
    headers: &[(&'static str, String)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<u32, Status> {
    let headers = headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    counted();
    hostcalls::dispatch_http_call(cluster, headers, body, Vec::new(), timeout)
}

/// The `:status` of a callout response; `None` when Envoy gave none or it is not a number.
pub fn call_response_status() -> Option<u16> {
    counted();
    let raw =
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status").ok()??;
    std::str::from_utf8(&raw).ok()?.parse().ok()
}

pub fn call_response_header(name: &str) -> Option<Vec<u8>> {
    counted();
    hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
        .ok()
        .flatten()
}

pub fn response_status() -> Option<u16> {
    counted();
    let raw = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status").ok()??;
    std::str::from_utf8(&raw).ok()?.parse().ok()
}

pub fn call_response_body(size: usize) -> Vec<u8> {
    counted();
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

pub fn send_local_reply(status: u32, body: &[u8], headers: &[(&str, &str)]) -> Result<(), Status> {
    counted();
    hostcalls::send_http_response(status, headers.to_vec(), Some(body))
}

pub fn resume_request() -> Result<(), Status> {
    counted();
    hostcalls::resume_http_request()
}

/// The filter's metrics, defined once per VM; Envoy adds up the VMs' values by name.
pub struct HostMetrics {
    counters: Vec<Option<u32>>,
    vault_latency: Option<u32>,
    cache_entries: Option<u32>,
    #[cfg(feature = "host-call-count")]
    request_cost: RequestCostMetrics,
}

impl HostMetrics {
    pub fn define() -> Self {
        let counters = Counter::all()
            .into_iter()
            .map(|c| define_metric(MetricType::Counter, &c.name()))
            .collect();
        Self {
            counters,
            vault_latency: define_metric(MetricType::Histogram, metrics::VAULT_LATENCY),
            cache_entries: define_metric(MetricType::Gauge, metrics::CACHE_ENTRIES),
            #[cfg(feature = "host-call-count")]
            request_cost: RequestCostMetrics::define(),
        }
    }
}

fn define_metric(kind: MetricType, name: &str) -> Option<u32> {
    counted();
    match hostcalls::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::warn!("metric {name} not defined: {status:?}");
            None
        }
    }
}

impl MetricSink for HostMetrics {
    fn increment(&self, counter: Counter) {
        if let Some(Some(id)) = self.counters.get(counter.index()) {
            counted();
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }

    fn record_vault_latency_ms(&self, millis: u64) {
        if let Some(id) = self.vault_latency {
            counted();
            let _ = hostcalls::record_metric(id, millis);
        }
    }

    fn entry_created(&self) {
        if let Some(id) = self.cache_entries {
            counted();
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}

/// Sets filter state that access logs read as `%FILTER_STATE(wasm.<name>:PLAIN)%`.
pub fn set_filter_state(name: &str, value: &[u8]) -> Result<(), Status> {
    counted();
    hostcalls::set_property(vec![name], Some(value))
}

/// Counters of what requests cost, in the benchmark's build only.
#[cfg(feature = "host-call-count")]
struct RequestCostMetrics {
    requests: Option<u32>,
    host_calls: Option<u32>,
    allocations: Option<u32>,
    allocated_bytes: Option<u32>,
}

#[cfg(feature = "host-call-count")]
impl RequestCostMetrics {
    fn define() -> Self {
        Self {
            requests: define_metric(MetricType::Counter, cost::REQUESTS),
            host_calls: define_metric(MetricType::Counter, cost::HOST_CALLS),
            allocations: define_metric(MetricType::Counter, cost::ALLOCATIONS),
            allocated_bytes: define_metric(MetricType::Counter, cost::ALLOCATED_BYTES),
        }
    }
}

#[cfg(feature = "host-call-count")]
impl HostMetrics {
    /// Adds one request's cost to the counters whose totals the benchmark divides by requests.
    pub fn add_request_cost(&self, spent: Cost) {
        let metrics = &self.request_cost;
        let add = |id: Option<u32>, value: u64| {
            if let Some(id) = id {
                counted();
                let _ = hostcalls::increment_metric(id, i64::try_from(value).unwrap_or(i64::MAX));
            }
        };
        add(metrics.requests, 1);
        add(metrics.host_calls, spent.host_calls);
        add(metrics.allocations, spent.allocations);
        add(metrics.allocated_bytes, spent.allocated_bytes);
    }
}
