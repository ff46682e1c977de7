//! Host calls and heap allocations per cache-hit request, counted in real Envoy by the module
//! built with the filter's `host-call-count` feature, in the "latchkey hit, 1 identity" setup.
//! Sequential requests on one connection, outside the timed comparisons: a few seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;

use super::subjects::{Kind, Shared, Subject};
use crate::binaries::counting_wasm_module;
use crate::envoy::Envoy;
use crate::error::{Error, Result};
use crate::pki::Pki;
use crate::workdir::TestDir;

/// Requests after the first (which fetches), before counting starts.
pub const WARM_UP: u64 = 50;
pub const COUNTED: u64 = 500;

/// Means over the counted requests, all of them cache hits.
#[derive(Debug, Clone, Copy)]
pub struct HitCost {
    pub requests: u64,
    pub host_calls: f64,
    pub allocations: f64,
    pub allocated_bytes: f64,
}

/// The filter's `latchkey.bench.*` counters and its cache-hit counter, as Envoy shows them.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    requests: u64,
    hits: u64,
    host_calls: u64,
    allocations: u64,
    allocated_bytes: u64,
}

const REQUESTS_STAT: &str = "wasmcustom.latchkey.bench.requests";

impl Totals {
    fn read(envoy: &Envoy) -> Result<Totals> {
        let stats: HashMap<String, u64> = envoy.stats()?;
        let stat = |name: &str| stats.get(name).copied().unwrap_or(0);
        Ok(Totals {
            requests: stat(REQUESTS_STAT),
            hits: stat("wasmcustom.latchkey.cache.hits"),
            host_calls: stat("wasmcustom.latchkey.bench.host_calls"),
            allocations: stat("wasmcustom.latchkey.bench.allocations"),
            allocated_bytes: stat("wasmcustom.latchkey.bench.allocated_bytes"),
        })
    }
}

/// Starts one more Envoy with the counting module, warms its cache, and counts `COUNTED`
/// requests.
pub fn count(shared: &Shared<'_>, identities: &[Arc<ClientConfig>]) -> Result<HitCost> {
    let module = counting_wasm_module()?;
    let kind = Kind::LatchkeyHit { identities: 1 };
    let mut subject = Subject::start_with(kind, Some(module), shared, identities, 1)?;
    let failed = |e: String| Error::unexpected("sending a counted request", e);

    // Envoy calls `on_log` after the answer is sent: wait for it before reading the counters.
    for _ in 0..WARM_UP {
        subject.pool.single().map_err(failed)?;
    }
    let envoy = &subject.envoy;
    let settled = Duration::from_secs(10);
    envoy.wait_for_stat(REQUESTS_STAT, |n| n > WARM_UP, settled)?;
    let before = Totals::read(envoy)?;

    for _ in 0..COUNTED {
        subject.pool.single().map_err(failed)?;
    }
    let expected = before.requests + COUNTED;
    envoy.wait_for_stat(REQUESTS_STAT, |n| n >= expected, settled)?;
    let after = Totals::read(envoy)?;

    let requests = after.requests - before.requests;
    let hits = after.hits.saturating_sub(before.hits);
    if hits != requests {
        return Err(Error::unexpected(
            "counting a hit's cost",
            format!("{hits} of {requests} counted requests were cache hits"),
        ));
    }
    let mean = |after: u64, before: u64| after.saturating_sub(before) as f64 / requests as f64;
    Ok(HitCost {
        requests,
        host_calls: mean(after.host_calls, before.host_calls),
        allocations: mean(after.allocations, before.allocations),
        allocated_bytes: mean(after.allocated_bytes, before.allocated_bytes),
    })
}

/// [`count`] on its own: its own OpenBao and echo upstream, for `latchkey-bench --hit-cost`.
pub fn count_alone(envoy_cpus: &str) -> Result<HitCost> {
    let dir = TestDir::new("bench-hit-cost")?;
    let pki = Pki::new()?;
    let (openbao, echo) = super::start_backends(&dir, &pki)?;
    let shared = Shared {
        pki: &pki,
        echo: &echo,
        openbao: &openbao,
        envoy_cpus,
    };
    let identities = super::workload_identities(&pki, 1, "bench")?;
    count(&shared, &identities)
}
