//! A real PostgreSQL for the database secrets engine: its own cluster in the test directory, run
//! as the `postgres` system user (the server refuses root), listening on 127.0.0.1 only at a free
//! port, with password (SCRAM) logins over TCP. Stopped when dropped; clusters of parallel tests
//! share nothing.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::openbao::unique_value;
use crate::poll;
use crate::ports::free_port;
use crate::process::ManagedProcess;
use crate::workdir::TestDir;

/// Where Debian's `postgresql` package puts one `<major>/bin` per installed version.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";
/// The system account the server runs as; Debian's package creates it.
const SYSTEM_USER: &str = "postgres";
const SUPERUSER: &str = "postgres";
const DATABASE: &str = "postgres";
const LOG_FILE: &str = "postgres.log";

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT_SECS: &str = "5";
/// Starts retried when another process took the port between picking and binding it.
const START_ATTEMPTS: usize = 3;

/// What psql prints when the server refused a login, as opposed to being unreachable.
const LOGIN_REFUSALS: [&str; 3] = [
    "password authentication failed",
    "is not permitted to log in",
    "permission denied for database",
];

/// A running PostgreSQL; stopped when dropped.
pub struct Postgres {
    process: ManagedProcess,
    bin: PathBuf,
    port: u16,
    superuser_password: String,
}

impl Postgres {
    /// Creates a cluster under `postgres/` in `dir`, starts it and waits until the superuser can
    /// log in over TCP. Needs root (to switch to the `postgres` user); `make postgres` installs
    /// the Debian package.
    pub fn start(dir: &TestDir) -> Result<Postgres> {
        let bin = newest_bin_dir()?;
        let account = SystemAccount::lookup(SYSTEM_USER)?;
        let superuser_password = unique_value("pg-");
        let data = init_cluster(dir, &bin, &account, &superuser_password)?;

        let mut attempt = 1;
        loop {
            let port = free_port()?;
            let process = spawn_server(dir, &bin, &account, &data, port)?;
            let mut postgres = Postgres {
                process,
                bin: bin.clone(),
                port,
                superuser_password: superuser_password.clone(),
            };
            match postgres.wait_ready() {
                Ok(()) => return Ok(postgres),
                Err(_) if attempt < START_ATTEMPTS && postgres.lost_port_race() => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's name.
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// The superuser's password, unique to this cluster.
    pub fn superuser_password(&self) -> &str {
        &self.superuser_password
    }

    /// The server's log.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// Whether `user` can log in with `password` over TCP: false when the server refuses the
    /// login (wrong password, unknown or expired role, no LOGIN or CONNECT), an error when the
    /// server cannot be asked.
    pub fn can_log_in(&self, user: &str, password: &str) -> Result<bool> {
        let output = self.psql(user, password, "select current_user")?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).trim() == user);
        }

        let stderr = String::from_utf8_lossy(&output.stderr);
        if LOGIN_REFUSALS
            .iter()
            .any(|refusal| stderr.contains(refusal))
        {
            return Ok(false);
        }
        Err(Error::unexpected(
            format!("logging in to PostgreSQL as {user}"),
            stderr.trim(),
        ))
    }

    /// Whether a role named `name` exists (whether or not it may log in).
    pub fn role_exists(&self, name: &str) -> Result<bool> {
        let sql = format!(
            "select count(*) from pg_roles where rolname = {}",
            quote_literal(name)?
        );
        let count = self.superuser_query(&sql)?;
        Ok(count != "0")
    }

    /// Runs `sql` as the superuser and returns psql's unaligned output, trimmed.
    fn superuser_query(&self, sql: &str) -> Result<String> {
        let output = self.psql(SUPERUSER, &self.superuser_password, sql)?;
        if !output.status.success() {
            return Err(Error::unexpected(
                "querying PostgreSQL as the superuser",
                String::from_utf8_lossy(&output.stderr).trim(),
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    fn psql(&self, user: &str, password: &str, sql: &str) -> Result<Output> {
        // -X: no ~/.psqlrc; -w: fail instead of prompting; -A -t: bare values.
        Command::new(self.bin.join("psql"))
            .args(["-X", "-w", "-A", "-t", "-h", "127.0.0.1", "-d", DATABASE])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(user)
            .arg("-c")
            .arg(sql)
            // No inherited PG* settings or ~/.pgpass can change whom psql logs in as.
            .env_clear()
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECS)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io("running psql", e))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        let mut exited = false;
        let ready = poll::until(READY_TIMEOUT, || {
            if !self.process.is_running() {
                exited = true;
                return Some(false);
            }
            // Refused or "starting up" both mean: not yet.
            let up = self.can_log_in(SUPERUSER, &self.superuser_password);
            up.unwrap_or(false).then_some(true)
        });

        if ready == Some(true) {
            return Ok(());
        }
        let reason = if exited {
            "exited while starting"
        } else {
            "the superuser cannot log in"
        };
        Err(Error::NotReady {
            what: "PostgreSQL".to_string(),
            waited: started.elapsed(),
            detail: format!("{reason}; log tail:\n{}", self.process.log_tail(30)),
        })
    }

    fn lost_port_race(&self) -> bool {
        self.process
            .log_contents()
            .contains("Address already in use")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGTERM is a "smart" shutdown that waits for clients such as OpenBao's connection
        // pool to leave; SIGINT disconnects them and stops at once.
        self.process.stop_with(libc::SIGINT);
    }
}

/// `/usr/lib/postgresql/<newest major>/bin`.
fn newest_bin_dir() -> Result<PathBuf> {
    let not_found = || {
        Error::unexpected(
            "finding PostgreSQL",
            format!("no {DEBIAN_ROOT}/*/bin/postgres; `make postgres` installs it"),
        )
    };
    let entries = fs::read_dir(DEBIAN_ROOT).map_err(|_| not_found())?;
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
        .ok_or_else(not_found)
}

/// Runs `initdb` into `postgres/data` with a superuser password and SCRAM for TCP logins.
fn init_cluster(
    dir: &TestDir,
    bin: &Path,
    account: &SystemAccount,
    superuser_password: &str,
) -> Result<PathBuf> {
    let root = dir.path("postgres");
    fs::create_dir_all(&root).map_err(|e| Error::io("creating PostgreSQL's directory", e))?;
    account.give(&root, 0o700)?;

    let password_file = root.join("superuser-password");
    fs::write(&password_file, superuser_password)
        .map_err(|e| Error::io("writing the superuser password file", e))?;
    account.give(&password_file, 0o600)?;

    let data = root.join("data");
    let mut initdb = account.command(&bin.join("initdb"), &root);
    initdb
        .arg("-D")
        .arg(&data)
        .arg(format!("--pwfile={}", password_file.display()))
        .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C"])
        .args(["--auth-host=scram-sha-256", "--auth-local=trust"])
        // The cluster dies with the test; durability only costs time.
        .arg("--no-sync");
    let status = initdb
        .stdout(log_file(dir)?)
        .stderr(log_file(dir)?)
        .status()
        .map_err(|e| Error::io("running initdb", e))?;
    // Only initdb needs the password in a file.
    let _ = fs::remove_file(&password_file);
    if !status.success() {
        return Err(Error::unexpected(
            "running initdb",
            format!(
                "{status}; log tail:\n{}",
                crate::workdir::tail(&dir.path(LOG_FILE), 30)
            ),
        ));
    }
    Ok(data)
}

fn spawn_server(
    dir: &TestDir,
    bin: &Path,
    account: &SystemAccount,
    data: &Path,
    port: u16,
) -> Result<ManagedProcess> {
    let mut command = account.command(&bin.join("postgres"), dir.root());
    command
        .arg("-D")
        .arg(data)
        .arg("-p")
        .arg(port.to_string())
        .args(["-c", "listen_addresses=127.0.0.1"])
        // No Unix socket: nothing here uses one, and its path would have to fit in 107 bytes.
        .args(["-c", "unix_socket_directories="])
        .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
        .args(["-c", "synchronous_commit=off"])
        // Several clusters run side by side on a small machine.
        .args(["-c", "shared_buffers=16MB", "-c", "max_connections=40"]);
    ManagedProcess::spawn("PostgreSQL", command, &dir.path(LOG_FILE))
}

fn log_file(dir: &TestDir) -> Result<fs::File> {
    let path = dir.path(LOG_FILE);
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))
}

/// `value` as an SQL string literal. The server runs with `standard_conforming_strings` on (the
/// default since 9.1), so doubling quotes is enough.
fn quote_literal(value: &str) -> Result<String> {
    if value.contains('\0') {
        return Err(Error::unexpected("quoting an SQL literal", "NUL in value"));
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// A system user the server runs as.
struct SystemAccount {
    uid: u32,
    gid: u32,
}

impl SystemAccount {
    fn lookup(name: &str) -> Result<SystemAccount> {
        let passwd =
            fs::read_to_string("/etc/passwd").map_err(|e| Error::io("reading /etc/passwd", e))?;
        passwd
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                match fields.as_slice() {
                    [user, _, uid, gid, ..] if *user == name => Some(SystemAccount {
                        uid: uid.parse().ok()?,
                        gid: gid.parse().ok()?,
                    }),
                    _ => None,
                }
            })
            .next()
            .ok_or_else(|| {
                Error::unexpected(
                    "finding the PostgreSQL system user",
                    format!("no user {name:?}; `make postgres` installs the package that adds it"),
                )
            })
    }

    /// Makes `path` the account's own, private to it.
    fn give(&self, path: &Path, mode: u32) -> Result<()> {
        let action = format!("handing {} to {SYSTEM_USER}", path.display());
        chown(path, Some(self.uid), Some(self.gid)).map_err(|e| Error::io(&action, e))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(&action, e))
    }

    /// `program` run as this account from `cwd`, with a clean environment. The process itself
    /// switches user before exec, unlike su or runuser, so the parent-death signal that
    /// [`ManagedProcess`] sets survives and signals reach the server rather than a wrapper.
    fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .uid(self.uid)
            .gid(self.gid)
            .current_dir(cwd)
            .env_clear()
            .env("LC_ALL", "C");
        command
    }
}
