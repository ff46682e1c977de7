//! `make soak`: cycles many distinct SPIFFE identities through one gateway and prints Envoy's
//! resident memory as it goes, to show that the cache's key space stays bounded. It reports
//! figures; it asserts nothing about them.

use std::process::ExitCode;
use std::time::Instant;

use latchkey_test_harness::scenario::{plugin_config, Gateway};
use latchkey_test_harness::{Client, Error};
use serde_json::json;

const IDENTITIES: usize = 10_000;
const SLOTS: u32 = 2_000;
const REPORT_EVERY: usize = 1_000;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("soak failed: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    // Every identity shares one secret, so each request is a distinct cache key.
    let mut config = plugin_config();
    config["bindings"][0]["credential"]["path"] = json!("apps/shared/payments");
    config["cache"] = json!({ "max_entries": SLOTS });
    let gateway = Gateway::start_with("soak", config)?;
    gateway
        .openbao
        .kv_put("apps/shared/payments", json!({ "api_key": "shared" }))?;

    println!("identities  envoy_rss_kib  vault_reads  seconds");
    let started = Instant::now();
    println!(
        "{:>10}  {:>13}  {:>11}  {:>7.1}",
        0,
        rss_kib(gateway.envoy.pid())?,
        0,
        0.0
    );
    for i in 1..=IDENTITIES {
        let id = format!("spiffe://example.org/ns/payments/sa/soak-{i}");
        let client = Client::new(&gateway.pki, Some(&gateway.pki.svid(&id)?))?;
        let response = gateway.call_api(&client, "/v1/charge", &[])?;
        if response.status != 200 {
            let detail = format!(
                "identity {i}: status {}: {}",
                response.status, response.body
            );
            return Err(Error::unexpected("soak request", detail));
        }
        if i % REPORT_EVERY == 0 {
            let reads = gateway.vault_requests("read", "secret/data/apps/shared/payments")?;
            let rss = rss_kib(gateway.envoy.pid())?;
            let secs = started.elapsed().as_secs_f64();
            println!("{i:>10}  {rss:>13}  {reads:>11}  {secs:>7.1}");
        }
    }
    Ok(())
}

fn rss_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| Error::unexpected("reading Envoy's /proc status", e.to_string()))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| Error::unexpected("reading Envoy's RSS", "no VmRSS line"))
}
