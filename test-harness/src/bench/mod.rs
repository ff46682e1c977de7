//! `make bench`: every configuration started once, then measured in turn, repetition after
//! repetition (A/B/C/…/A/B/C/…), so that each figure can be divided by the baseline measured
//! minutes, not runs, apart. The report and its plots are written by [`report`].

pub mod audit;
pub mod hit_cost;
pub mod load;
pub mod process_stats;
pub mod report;
pub mod stats;
pub mod subjects;
pub mod svg;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use serde_json::json;

use self::audit::{AuditTail, VaultCalls};
use self::hit_cost::HitCost;
use self::load::{Pool, RunResult, Target};
use self::stats::Percentiles;
use self::subjects::{Kind, Shared, Subject, REFRESH_MARGIN_MS, REFRESH_SECRET, REFRESH_TTL_MS};
use crate::echo::EchoUpstream;
use crate::error::{Error, Result};
use crate::openbao::OpenBao;
use crate::pki::Pki;
use crate::scenario::API_HOST;
use crate::workdir::TestDir;

/// What to measure and how long.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Open-loop rates, requests per second, below the knee of every configuration.
    pub rates: Vec<f64>,
    pub open_duration: Duration,
    pub closed_duration: Duration,
    pub repetitions: usize,
    /// Open-loop connections per configuration; more when it has more identities.
    pub connections: usize,
    /// Closed-loop concurrency, the same for every configuration: the first connections.
    pub closed_connections: usize,
    pub hit_identities: Vec<usize>,
    pub refresh_identities: usize,
    /// Requests after an expiry, for the added latency of a miss.
    pub miss_probes: usize,
    /// `taskset` CPU list of every Envoy.
    pub envoy_cpus: String,
}

/// One run of one configuration.
#[derive(Debug, Clone)]
pub struct Run {
    pub percentiles: Percentiles,
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub throughput: f64,
    /// Envoy CPU time (user + system, all threads) per answered request.
    pub cpu_us_per_request: f64,
}

/// Everything measured on one configuration.
#[derive(Debug, Clone)]
pub struct Measured {
    pub kind: Kind,
    pub connections: usize,
    /// `[rate][repetition]`.
    pub open: Vec<Vec<Run>>,
    /// `[repetition]`.
    pub closed: Vec<Run>,
    pub rss_kib: u64,
    /// Vault calls during this configuration's open-loop runs, for the refresh configuration.
    pub vault: Option<RefreshCalls>,
    /// latchkey's cache outcomes over the open-loop runs, from its counters in Envoy.
    pub cache: CacheOutcomes,
    /// Envoy counters that explain failed requests (overflows, refusals), where not zero.
    pub failure_counters: Vec<(String, u64)>,
}

/// Whether an Envoy counter tells why a request failed.
fn explains_failures(name: &str) -> bool {
    let upstream = name.starts_with("cluster.upstream.")
        && (name.ends_with("_overflow")
            || name.ends_with("connect_fail")
            || name.ends_with("upstream_rq_timeout")
            || name.ends_with("upstream_rq_5xx"));
    upstream || name.starts_with("wasmcustom.latchkey.requests.denied.")
}

/// Deltas of latchkey's `wasmcustom.latchkey.cache.*` counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheOutcomes {
    pub hits: u64,
    pub misses: u64,
    pub waits: u64,
    pub refreshes: u64,
    pub evictions: u64,
}

impl CacheOutcomes {
    fn read(envoy: &crate::envoy::Envoy) -> Result<CacheOutcomes> {
        let stats = envoy.stats()?;
        let count = |name: &str| {
            let stat = format!("wasmcustom.latchkey.cache.{name}");
            stats.get(&stat).copied().unwrap_or(0)
        };
        Ok(CacheOutcomes {
            hits: count("hits"),
            misses: count("misses"),
            waits: count("waits"),
            refreshes: count("refreshes"),
            evictions: count("evictions"),
        })
    }

    fn add_delta(&mut self, before: &CacheOutcomes, after: &CacheOutcomes) {
        self.hits += after.hits.saturating_sub(before.hits);
        self.misses += after.misses.saturating_sub(before.misses);
        self.waits += after.waits.saturating_sub(before.waits);
        self.refreshes += after.refreshes.saturating_sub(before.refreshes);
        self.evictions += after.evictions.saturating_sub(before.evictions);
    }

    /// Hits among all requests that asked the cache; `None` when none did.
    pub fn hit_ratio(&self) -> Option<f64> {
        let asked = self.hits + self.misses + self.waits + self.refreshes;
        (asked > 0).then(|| self.hits as f64 / asked as f64)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RefreshCalls {
    pub calls: VaultCalls,
    /// Seconds of open-loop load on this configuration.
    pub loaded_seconds: f64,
    /// Credential lifetimes each key spans over all repetitions. A repetition's open-loop runs
    /// are one stretch of S s that starts with all credentials expired (the other
    /// configurations ran meanwhile), so it spans ceil(S / lifetime).
    pub lifetimes_per_key: f64,
}

/// Latencies of single requests right after the credential expired, and right after that.
#[derive(Debug, Clone, Default)]
pub struct MissProbe {
    pub miss_us: Vec<f64>,
    pub hit_us: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct Results {
    pub plan: Plan,
    pub measured: Vec<Measured>,
    pub probe: MissProbe,
    /// Counted in Envoy by the counting build; why not, when that failed.
    pub hit_cost: std::result::Result<HitCost, String>,
    pub setup: Duration,
    pub total: Duration,
}

/// OpenBao holding the hit configurations' secret, and the echo upstream every Envoy routes to.
pub(crate) fn start_backends(dir: &TestDir, pki: &Pki) -> Result<(OpenBao, EchoUpstream)> {
    let openbao = OpenBao::start(dir, pki)?;
    openbao.kv_put(
        subjects::HIT_SECRET,
        json!({ "api_key": "sk-bench-shared" }),
    )?;
    Ok((openbao, EchoUpstream::start()?))
}

/// Pools larger than this are closed between their runs, so that only one is open at a time.
const PARKED_ABOVE: usize = 1_000;

fn park_if_wide(subject: &mut Subject) {
    if subject.pool.size() > PARKED_ABOVE {
        subject.pool.park();
    }
}

/// Starts everything, measures, and stops everything.
pub fn run(plan: &Plan) -> Result<Results> {
    let started = Instant::now();
    process_stats::tighten_timer_slack();
    process_stats::raise_open_file_limit(262_144);

    let dir = TestDir::new("bench")?;
    let pki = Pki::new()?;
    let (openbao, echo) = start_backends(&dir, &pki)?;
    openbao.kv_put(REFRESH_SECRET, json!({ "api_key": "sk-bench-refresh" }))?;
    let shared = Shared {
        pki: &pki,
        echo: &echo,
        openbao: &openbao,
        envoy_cpus: &plan.envoy_cpus,
    };

    let most = plan
        .hit_identities
        .iter()
        .copied()
        .chain([plan.refresh_identities, 1])
        .max()
        .unwrap_or(1);
    eprintln!("bench: minting {most} workload SVIDs");
    let identities = workload_identities(&pki, most, "bench")?;

    let mut kinds = vec![Kind::NoFilter, Kind::NoopWasm, Kind::NativeInjector];
    let widest = plan.hit_identities.iter().copied().max().unwrap_or(1);
    if widest > plan.connections {
        kinds.push(Kind::NoFilterWide { identities: widest });
    }
    kinds.extend(
        plan.hit_identities
            .iter()
            .map(|&identities| Kind::LatchkeyHit { identities }),
    );
    kinds.push(Kind::LatchkeyRefresh {
        identities: plan.refresh_identities,
    });

    let mut subjects = Vec::new();
    for kind in kinds {
        eprintln!("bench: starting {}", kind.id());
        let mut subject = Subject::start(kind, &shared, &identities, plan.connections)?;
        // V8 tiers code up under load; no configuration is measured cold.
        subject
            .pool
            .closed_loop_on(plan.closed_connections, Duration::from_secs(1));
        park_if_wide(&mut subject);
        subjects.push(subject);
    }
    let setup = started.elapsed();

    let mut audit = AuditTail::from_end(openbao.audit_log_path().to_path_buf())?;
    let read_path = format!("secret/data/{REFRESH_SECRET}");
    let mut measured: Vec<Measured> = subjects
        .iter()
        .map(|subject| Measured {
            kind: subject.kind,
            connections: subject.pool.size(),
            open: vec![Vec::new(); plan.rates.len()],
            closed: Vec::new(),
            rss_kib: 0,
            vault: None,
            cache: CacheOutcomes::default(),
            failure_counters: Vec::new(),
        })
        .collect();

    for repetition in 0..plan.repetitions {
        for (subject, record) in subjects.iter_mut().zip(&mut measured) {
            eprintln!(
                "bench: repetition {}/{} {}",
                repetition + 1,
                plan.repetitions,
                subject.kind.id()
            );
            subject.pool.unpark()?;
            let pid = subject.envoy.pid();
            for (r, rate) in plan.rates.iter().enumerate() {
                audit.calls_since(&read_path)?;
                let before = CacheOutcomes::read(&subject.envoy)?;
                let (result, cpu) =
                    with_cpu(pid, || subject.pool.open_loop(*rate, plan.open_duration))?;
                let after = CacheOutcomes::read(&subject.envoy)?;
                record.cache.add_delta(&before, &after);
                if matches!(subject.kind, Kind::LatchkeyRefresh { .. }) {
                    let calls = audit.calls_since(&read_path)?;
                    let vault = record.vault.get_or_insert_with(RefreshCalls::default);
                    vault.calls.reads += calls.reads;
                    vault.calls.logins += calls.logins;
                    vault.loaded_seconds += plan.open_duration.as_secs_f64();
                }
                record.open[r].push(summarise(&result, cpu));
            }
            if let Some(vault) = &mut record.vault {
                // The open-loop runs of one repetition follow each other at once: one stretch.
                let stretch = plan.open_duration.as_secs_f64() * plan.rates.len() as f64;
                vault.lifetimes_per_key += (stretch / usable_lifetime_seconds()).ceil();
            }
            let (result, cpu) = with_cpu(pid, || {
                subject
                    .pool
                    .closed_loop_on(plan.closed_connections, plan.closed_duration)
            })?;
            record.closed.push(summarise(&result, cpu));
            park_if_wide(subject);
        }
    }

    for (subject, record) in subjects.iter().zip(&mut measured) {
        record.rss_kib = process_stats::rss_kib(subject.envoy.pid())?;
        let mut counters: Vec<(String, u64)> = subject
            .envoy
            .stats()?
            .into_iter()
            .filter(|(name, value)| *value > 0 && explains_failures(name))
            .collect();
        counters.sort();
        record.failure_counters = counters;
    }
    let probe = match subjects
        .iter()
        .find(|s| matches!(s.kind, Kind::LatchkeyRefresh { .. }))
    {
        Some(subject) => probe_misses(&pki, subject, plan.miss_probes)?,
        None => MissProbe::default(),
    };
    eprintln!("bench: counting host calls and allocations per cache hit");
    let hit_cost = hit_cost::count(&shared, &identities).map_err(|e| e.to_string());
    if let Err(err) = &hit_cost {
        eprintln!("bench: not counted: {err}");
    }

    Ok(Results {
        plan: plan.clone(),
        measured,
        probe,
        hit_cost,
        setup,
        total: started.elapsed(),
    })
}

/// TLS client configurations for `count` workloads,
/// `spiffe://example.org/ns/payments/sa/<prefix>-<i>`.
fn workload_identities(pki: &Pki, count: usize, prefix: &str) -> Result<Vec<Arc<ClientConfig>>> {
    (0..count)
        .map(|i| {
            let id = format!("spiffe://example.org/ns/payments/sa/{prefix}-{i}");
            load::client_config(pki, &pki.svid(&id)?)
        })
        .collect()
}

fn with_cpu(pid: u32, work: impl FnOnce() -> RunResult) -> Result<(RunResult, f64)> {
    let before = process_stats::cpu_seconds(pid)?;
    let result = work();
    let after = process_stats::cpu_seconds(pid)?;
    Ok((result, after - before))
}

fn summarise(result: &RunResult, cpu_seconds: f64) -> Run {
    let requests = result.requests();
    Run {
        percentiles: Percentiles::of(&result.latencies_ns),
        requests,
        errors: result.errors,
        first_error: result.first_error.clone(),
        throughput: result.throughput(),
        cpu_us_per_request: match requests {
            0 => f64::NAN,
            n => cpu_seconds * 1e6 / n as f64,
        },
    }
}

/// Single requests of a fresh identity, each after its credential expired (a miss that waits
/// for OpenBao), then once more at once (a hit).
fn probe_misses(pki: &Pki, subject: &Subject, probes: usize) -> Result<MissProbe> {
    eprintln!("bench: probing {probes} misses");
    let identity = workload_identities(pki, 1, "probe")?;
    let target = Target {
        port: subject.envoy.listener_port(),
        host: API_HOST.to_string(),
        path: "/v1/charge".to_string(),
    };
    // Opening sends the first request, which fetches (and logs in, if the token is gone).
    let mut pool = Pool::open(target, &identity, 1, 1)?;
    let mut probe = MissProbe::default();
    let expired = Duration::from_millis(REFRESH_TTL_MS + 200);
    let failed = |e: String| Error::unexpected("probing a miss", e);
    for _ in 0..probes {
        thread::sleep(expired);
        let miss = pool.single().map_err(failed)?;
        let hit = pool.single().map_err(failed)?;
        probe.miss_us.push(miss.as_secs_f64() * 1e6);
        probe.hit_us.push(hit.as_secs_f64() * 1e6);
    }
    Ok(probe)
}

/// How long the refresh configuration's credential is used: its lifetime less the margin.
pub fn usable_lifetime_seconds() -> f64 {
    (REFRESH_TTL_MS - REFRESH_MARGIN_MS) as f64 / 1_000.0
}
