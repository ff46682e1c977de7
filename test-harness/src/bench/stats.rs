//! Summaries of repeated runs: latency percentiles of one run, and medians across repetitions.

/// Latency percentiles of one run, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles; all zero for an empty run.
    pub fn of(latencies_ns: &[u64]) -> Percentiles {
        let mut sorted = latencies_ns.to_vec();
        sorted.sort_unstable();
        let at = |q: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted.get(rank - 1).copied().unwrap_or_default() as f64 / 1_000.0
        };
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
        }
    }

    pub fn values(&self) -> [f64; 4] {
        [self.p50, self.p90, self.p99, self.p999]
    }
}

pub const PERCENTILE_NAMES: [&str; 4] = ["p50", "p90", "p99", "p99.9"];

/// The median; `None` without values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(match sorted.len() % 2 {
        0 => (sorted[mid - 1] + sorted[mid]) / 2.0,
        _ => sorted[mid],
    })
}

/// Smallest and largest value, for the spread across repetitions.
pub fn range(values: &[f64]) -> Option<(f64, f64)> {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let min = finite.clone().reduce(f64::min)?;
    let max = finite.reduce(f64::max)?;
    Some((min, max))
}
