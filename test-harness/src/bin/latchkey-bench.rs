//! `make bench`: measures Envoy without a filter, with a no-op wasm filter, with its native
//! credential_injector, and with latchkey on hits and misses, interleaved in one run, and writes
//! `docs/benchmarks.md` with its plots. It reports figures; it asserts nothing about them.
//!
//! Options: `--docs DIR` (default `docs`), `--criterion DIR` (criterion's output, default
//! `target/criterion`), `--hit-counts FILE` (what the `hit_counts` bench printed),
//! `--envoy-cpus LIST` (default `0`), `--hit-identities 1,100,10000` (the cache-hit
//! configurations), `--connections N` (open-loop connections per configuration, default 100),
//! `--quick` (short runs, to try the driver out), `--hit-cost` (only count the host calls and
//! allocations of a cache hit in Envoy, and print that section of the report).

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use latchkey_test_harness::bench::process_stats::{online_cpus, own_affinity};
use latchkey_test_harness::bench::report::{self, Context};
use latchkey_test_harness::bench::{self, Plan};
use latchkey_test_harness::{bao_binary, envoy_binary, Error};

struct Options {
    docs: PathBuf,
    criterion: PathBuf,
    hit_counts: Option<PathBuf>,
    envoy_cpus: String,
    hit_identities: Option<Vec<usize>>,
    connections: Option<usize>,
    quick: bool,
    hit_cost_only: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench failed: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    let options = options()?;
    if options.hit_cost_only {
        let cost = bench::hit_cost::count_alone(&options.envoy_cpus).map_err(|e| e.to_string());
        let hit_counts = options.hit_counts.as_ref().and_then(|path| read_json(path));
        let mut md = String::new();
        report::per_hit_section(&mut md, &cost, hit_counts.as_ref());
        print!("{md}");
        return Ok(());
    }
    let plan = plan(&options);
    let load_before = load_average();

    let results = bench::run(&plan)?;

    let hit_counts = options.hit_counts.as_ref().and_then(|path| read_json(path));
    let context = Context {
        command: "make bench".to_string(),
        date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        revision: output("git", &["rev-parse", "--short", "HEAD"]),
        cpus: online_cpus(),
        cpu_model: cpu_model(),
        load_before,
        load_after: load_average(),
        load_cpus: own_affinity(),
        envoy_version: envoy_binary()
            .map(|envoy| output(&envoy.to_string_lossy(), &["--version"]))
            .map(|said| match said.split_once("version: ") {
                Some((_, version)) => version.to_string(),
                None => said,
            })
            .unwrap_or_default(),
        openbao_version: bao_binary()
            .map(|bao| output(&bao.to_string_lossy(), &["version"]))
            .unwrap_or_default(),
        rustc_version: output("rustc", &["--version"]),
        criterion_dir: options.criterion.clone(),
        hit_counts,
    };
    report::write(&options.docs, &results, &context)?;
    eprintln!(
        "bench: wrote {} in {:.0} s",
        options.docs.join("benchmarks.md").display(),
        results.total.as_secs_f64()
    );
    Ok(())
}

fn plan(options: &Options) -> Plan {
    let mut plan = Plan {
        rates: vec![500.0, 1_000.0, 2_000.0],
        open_duration: Duration::from_secs(5),
        closed_duration: Duration::from_secs(3),
        repetitions: 4,
        connections: 100,
        closed_connections: 32,
        hit_identities: vec![1, 100, 10_000],
        refresh_identities: 100,
        miss_probes: 8,
        envoy_cpus: options.envoy_cpus.clone(),
    };
    if options.quick {
        plan.open_duration = Duration::from_secs(2);
        plan.closed_duration = Duration::from_secs(1);
        plan.repetitions = 1;
        plan.hit_identities = vec![1, 100];
        plan.miss_probes = 2;
    }
    if let Some(connections) = options.connections {
        plan.connections = connections;
    }
    if let Some(counts) = &options.hit_identities {
        plan.hit_identities = counts.clone();
    }
    plan
}

fn options() -> Result<Options, Error> {
    let mut options = Options {
        docs: PathBuf::from("docs"),
        criterion: PathBuf::from("target/criterion"),
        hit_counts: None,
        envoy_cpus: "0".to_string(),
        hit_identities: None,
        connections: None,
        quick: false,
        hit_cost_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| Error::unexpected("reading options", format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--docs" => options.docs = value()?.into(),
            "--criterion" => options.criterion = value()?.into(),
            "--hit-counts" => options.hit_counts = Some(value()?.into()),
            "--envoy-cpus" => options.envoy_cpus = value()?,
            "--connections" => {
                let count = value()?;
                let count = count.parse().map_err(|_| {
                    Error::unexpected("reading options", format!("bad connection count {count}"))
                })?;
                options.connections = Some(count);
            }
            "--hit-identities" => {
                let list = value()?;
                let counts = list.split(',').map(|n| n.trim().parse::<usize>());
                let counts = counts.collect::<Result<Vec<_>, _>>().map_err(|_| {
                    Error::unexpected("reading options", format!("bad identity counts {list}"))
                })?;
                options.hit_identities = Some(counts);
            }
            "--quick" => options.quick = true,
            "--hit-cost" => options.hit_cost_only = true,
            other => {
                return Err(Error::unexpected(
                    "reading options",
                    format!("unknown option {other}"),
                ))
            }
        }
    }
    Ok(options)
}

fn read_json(path: &std::path::Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(text.trim()).ok()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// The first line a command prints, or an empty string.
fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            text.lines()
                .find(|line| !line.trim().is_empty())
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}
