//! A real Envoy started from an [`EnvoyConfig`]: admin and listener on ephemeral ports of
//! 127.0.0.1 (found through the admin API), ready once `/ready` says `LIVE`, logging to
//! `envoy.log` in the test directory, stopped when dropped. Also `envoy --mode validate`.

mod bootstrap;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::blocking;
use serde_json::Value;

pub use bootstrap::{EnvoyConfig, DEFAULT_VAULT_CLUSTER, UPSTREAM_CLUSTER, WASM_ROOT_ID};

use crate::binaries::envoy_binary;
use crate::error::{Error, Result};
use crate::poll;
use crate::process::ManagedProcess;
use crate::workdir::TestDir;

/// Compiling a wasm module in V8 takes most of a second; a loaded machine needs headroom.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
const LOG_TAIL_LINES: usize = 40;

/// How one Envoy is started: files, listener to find, command-line knobs.
struct Launch<'a> {
    name: &'a str,
    bootstrap_file: &'a str,
    bootstrap: String,
    listener: &'a str,
    concurrency: u32,
    wasm_log_level: &'a str,
    cpu_list: Option<&'a str>,
}

/// A running Envoy; see the module docs.
pub struct Envoy {
    process: ManagedProcess,
    admin_port: u16,
    listener_port: u16,
    admin: blocking::Client,
}

impl Envoy {
    /// Writes `envoy.json` into `dir`, starts Envoy and waits until it is live.
    pub fn start(dir: &TestDir, config: EnvoyConfig) -> Result<Envoy> {
        let launch = Launch {
            name: "envoy",
            bootstrap_file: "envoy.json",
            bootstrap: config.bootstrap().to_string(),
            listener: bootstrap::LISTENER_NAME,
            concurrency: config.concurrency,
            wasm_log_level: &config.wasm_log_level,
            cpu_list: config.cpu_list.as_deref(),
        };
        Envoy::launch(dir, launch)
    }

    /// Starts Envoy from a bootstrap written elsewhere (YAML or JSON text, stored as
    /// `<name>.yaml`), logging to `<name>.log`; [`Envoy::listener_port`] is then the port of the
    /// listener called `listener`. Bind ports as 0 and admin to 127.0.0.1 port 0: the harness
    /// reads the real ports back from the admin API. Several can run in one test directory.
    pub fn start_with_bootstrap(
        dir: &TestDir,
        name: &str,
        bootstrap: &str,
        listener: &str,
    ) -> Result<Envoy> {
        let bootstrap_file = format!("{name}.yaml");
        let launch = Launch {
            name,
            bootstrap_file: &bootstrap_file,
            bootstrap: bootstrap.to_string(),
            listener,
            concurrency: 1,
            wasm_log_level: "debug",
            cpu_list: None,
        };
        Envoy::launch(dir, launch)
    }

    fn launch(dir: &TestDir, launch: Launch<'_>) -> Result<Envoy> {
        let binary = envoy_binary()?;
        let config_path = dir.write(launch.bootstrap_file, launch.bootstrap)?;
        let admin_address_path = dir.path(&format!("{}-admin-address", launch.name));
        let _ = fs::remove_file(&admin_address_path);
        let admin = blocking::Client::builder()
            .no_proxy()
            .timeout(ADMIN_TIMEOUT)
            .build()
            .map_err(|e| Error::http("building the Envoy admin client", e))?;

        // taskset execs Envoy in its own process, so the pid and the parent-death signal stay.
        let mut command = match launch.cpu_list {
            Some(cpus) => {
                let mut taskset = Command::new("taskset");
                taskset.args(["-c", cpus]).arg(binary);
                taskset
            }
            None => Command::new(binary),
        };
        command
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_address_path)
            .arg("--use-dynamic-base-id")
            .arg("--concurrency")
            .arg(launch.concurrency.to_string())
            // Access log files are flushed every 10 s by default; tests read them sooner.
            .args(["--file-flush-interval-msec", "100"])
            .args(["-l", "info"])
            .arg("--component-log-level")
            .arg(format!("wasm:{}", launch.wasm_log_level));
        let log_path = dir.path(&format!("{}.log", launch.name));
        let process = ManagedProcess::spawn("Envoy", command, &log_path)?;

        let mut envoy = Envoy {
            process,
            admin_port: 0,
            listener_port: 0,
            admin,
        };
        envoy.wait_ready(&admin_address_path, launch.listener)?;
        Ok(envoy)
    }

    /// Runs `envoy --mode validate` on a config file (YAML or JSON).
    pub fn validate(config_path: &Path) -> Result<()> {
        let action = format!("validating {}", config_path.display());
        let output = Command::new(envoy_binary()?)
            .args([
                "--mode",
                "validate",
                "--use-dynamic-base-id",
                "-l",
                "warn",
                "-c",
            ])
            .arg(config_path)
            .output()
            .map_err(|e| Error::io(&action, e))?;
        if output.status.success() {
            return Ok(());
        }

        let said =
            String::from_utf8_lossy(&output.stderr) + String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = said.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        Err(Error::unexpected(
            action,
            format!("{}:\n{tail}", output.status),
        ))
    }

    /// The downstream TLS listener's port.
    pub fn listener_port(&self) -> u16 {
        self.listener_port
    }

    /// The admin API's port (plain HTTP on 127.0.0.1).
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Stops Envoy (SIGTERM, then SIGKILL) and reaps it.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Where Envoy logs.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// Everything Envoy has logged so far.
    pub fn log_contents(&self) -> String {
        self.process.log_contents()
    }

    /// `GET` on the admin API; the body as text.
    pub fn admin_get(&self, path: &str) -> Result<String> {
        let action = format!("Envoy admin GET {path}");
        let url = format!("http://127.0.0.1:{}{path}", self.admin_port);
        let response = self
            .admin
            .get(url)
            .send()
            .map_err(|e| Error::http(&action, e))?;
        let status = response.status();
        let body = response.text().map_err(|e| Error::http(&action, e))?;
        if !status.is_success() {
            return Err(Error::unexpected(
                action,
                format!("status {status}: {body}"),
            ));
        }
        Ok(body)
    }

    /// Every counter and gauge by name.
    pub fn stats(&self) -> Result<HashMap<String, u64>> {
        let body = self.admin_get("/stats?format=json")?;
        parse_stats(&body)
    }

    /// One counter or gauge; `None` when Envoy has not created it (yet).
    pub fn stat(&self, name: &str) -> Result<Option<u64>> {
        Ok(self.stats()?.get(name).copied())
    }

    /// Polls `name` until `accept` holds for its value, and returns that value. A stat that does
    /// not exist yet is polled like any other.
    pub fn wait_for_stat(
        &self,
        name: &str,
        accept: impl Fn(u64) -> bool,
        timeout: Duration,
    ) -> Result<u64> {
        let mut last = None;
        let accepted = poll::until(timeout, || {
            last = self.stat(name).ok().flatten();
            last.filter(|value| accept(*value))
        });
        accepted.ok_or_else(|| {
            let seen = last.map_or("never present".to_string(), |v| format!("last value {v}"));
            Error::unexpected(
                format!("waiting for Envoy stat {name}"),
                format!("condition not met within {timeout:?}; {seen}"),
            )
        })
    }

    fn wait_ready(&mut self, admin_address_path: &Path, listener: &str) -> Result<()> {
        let started = Instant::now();
        let deadline = started + READY_TIMEOUT;

        let admin_port = self.poll_step("write its admin address", deadline, |_| {
            let address = fs::read_to_string(admin_address_path).ok()?;
            address.trim().rsplit(':').next()?.parse::<u16>().ok()
        })?;
        self.admin_port = admin_port;

        self.poll_step("report LIVE on /ready", deadline, |envoy| {
            let body = envoy.admin_get("/ready").ok()?;
            (body.trim() == "LIVE").then_some(())
        })?;

        let listeners = self.admin_get("/listeners?format=json")?;
        self.listener_port = listener_port(&listeners, listener).ok_or_else(|| {
            self.not_ready(
                started,
                &format!("listener {listener:?} is not in /listeners"),
            )
        })?;
        Ok(())
    }

    /// Polls `check` until it yields, failing early if Envoy exits.
    fn poll_step<T>(
        &mut self,
        goal: &str,
        deadline: Instant,
        mut check: impl FnMut(&Envoy) -> Option<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let mut exited = false;
        let timeout = deadline.saturating_duration_since(started);
        let value = poll::until(timeout, || {
            if !self.process.is_running() {
                exited = true;
                return Some(None);
            }
            check(self).map(Some)
        });

        match value {
            Some(Some(value)) => Ok(value),
            _ if exited => Err(self.not_ready(started, "it exited while starting")),
            _ => Err(self.not_ready(started, &format!("it did not {goal}"))),
        }
    }

    fn not_ready(&self, started: Instant, reason: &str) -> Error {
        Error::NotReady {
            what: "Envoy".to_string(),
            waited: started.elapsed(),
            detail: format!(
                "{reason}; log tail:\n{}",
                self.process.log_tail(LOG_TAIL_LINES)
            ),
        }
    }
}

impl EnvoyConfig {
    /// Writes this bootstrap to `dir/<file>` and runs `envoy --mode validate` on it.
    pub fn validate(&self, dir: &TestDir, file: &str) -> Result<PathBuf> {
        let path = dir.write(file, self.bootstrap().to_string())?;
        Envoy::validate(&path)?;
        Ok(path)
    }
}

/// Counters and gauges from `/stats?format=json`; histograms are skipped.
fn parse_stats(body: &str) -> Result<HashMap<String, u64>> {
    let json: Value = serde_json::from_str(body)
        .map_err(|e| Error::unexpected("parsing Envoy /stats", e.to_string()))?;
    let entries = json["stats"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    Ok(entries
        .iter()
        .filter_map(|entry| {
            Some((
                entry["name"].as_str()?.to_string(),
                entry["value"].as_u64()?,
            ))
        })
        .collect())
}

/// The bound port of listener `name` in `/listeners?format=json`.
fn listener_port(body: &str, name: &str) -> Option<u16> {
    let json: Value = serde_json::from_str(body).ok()?;
    let listener = json["listener_statuses"]
        .as_array()?
        .iter()
        .find(|listener| listener["name"] == name)?;
    let port = listener["local_address"]["socket_address"]["port_value"].as_u64()?;
    u16::try_from(port).ok()
}
