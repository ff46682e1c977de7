//! A real OpenBao dev server, configured the way latchkey expects its vault: a plain API listener
//! for the harness (root token), a TLS listener for cert auth, a file audit device, the cert role
//! `latchkey-gateway` that accepts only [`PROXY_SPIFFE_ID`], and KV v2 at `secret/`.
//! Dev mode keeps everything in memory: state is gone once it stops; [`OpenBao::start_persistent`]
//! and [`OpenBaoCluster`] run real servers on integrated raft storage instead.

mod cluster;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::blocking;
use reqwest::{Certificate, Identity, Method};
use serde_json::{json, Value};

use crate::binaries::bao_binary;
use crate::error::{Error, Result};
use crate::pki::{CertKey, CertKeyPaths, Pki, PROXY_SPIFFE_ID};
use crate::poll;
use crate::ports::{free_port, free_port_pair};
use crate::process::ManagedProcess;
use crate::workdir::TestDir;

pub use cluster::OpenBaoCluster;

/// Mount path of the cert auth method.
pub const CERT_MOUNT: &str = "cert";
/// The cert auth role the proxy logs in with.
pub const CERT_ROLE: &str = "latchkey-gateway";
/// The policy attached to tokens of [`CERT_ROLE`]: read on `secret/data/*`, and on the paths
/// of the engines that `enable_database` and `enable_identity_tokens` turn on.
pub const READ_POLICY: &str = "latchkey-read";

const READY_TIMEOUT: Duration = Duration::from_secs(15);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Starts retried when another process took a port between picking and binding it.
const START_ATTEMPTS: usize = 3;
/// Names the files of a single server: `openbao.json`, `openbao.log`, `openbao-audit.log`, ….
const FILE_STEM: &str = "openbao";

/// A running OpenBao; stopped when dropped.
pub struct OpenBao {
    process: ManagedProcess,
    launch: Launch,
    /// Set for a server with file storage: a restart comes back sealed.
    unseal_key: Option<String>,
    api_port: u16,
    tls_port: u16,
    root_token: String,
    audit_log: PathBuf,
    ca_pem: String,
    http: blocking::Client,
}

/// The outcome of a cert-auth login; the token itself is not kept.
#[derive(Debug, Clone)]
pub struct CertLogin {
    pub status: u16,
    pub token_issued: bool,
    pub policies: Vec<String>,
    pub lease_duration: Option<u64>,
    /// OpenBao's `errors` array, for refused logins.
    pub errors: Vec<String>,
}

/// A vault token other than the root token; its Debug output hides the value.
#[derive(Clone)]
pub struct VaultToken(String);

impl fmt::Debug for VaultToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultToken(<redacted>)")
    }
}

/// Status and JSON body of an API call (`Null` when the body is empty).
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
}

impl OpenBao {
    /// Starts OpenBao, waits until it answers `sys/health` and configures it (see module docs).
    /// The TLS listener serves a `localhost`/`127.0.0.1` certificate from `pki` and asks for
    /// client certificates without requiring them.
    pub fn start(dir: &TestDir, pki: &Pki) -> Result<OpenBao> {
        let launch = Launch::prepare(dir, pki, FILE_STEM)?;
        let http = blocking::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| Error::http("building the OpenBao API client", e))?;

        let mut attempt = 1;
        loop {
            let api_port = free_port_pair()?;
            let tls_port = free_port()?;
            let root_token = random_token();
            let process = launch.spawn(dir, api_port, tls_port, &root_token)?;

            let ports = (api_port, tls_port);
            let mut bao = Self::launched(&launch, process, ports, root_token, pki, http.clone());
            match bao.wait_ready(Role::Active) {
                Ok(()) => {
                    bao.configure()?;
                    return Ok(bao);
                }
                Err(_) if attempt < START_ATTEMPTS && bao.lost_port_race() => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Like [`OpenBao::start`], but a real server with file storage in the test directory:
    /// initialised with one unseal key and unsealed, so that [`OpenBao::restart`] keeps every
    /// secret, policy and token, as a production vault coming back after an outage does.
    pub fn start_persistent(dir: &TestDir, pki: &Pki) -> Result<OpenBao> {
        let audit_log = format!("{FILE_STEM}-audit.log");
        let mut bao = Self::spawn_on_raft(dir, pki, FILE_STEM, &audit_log)?;
        bao.initialise()?;
        Ok(bao)
    }

    /// Starts a server on raft storage of its own, named `stem`, and waits until it listens;
    /// it is uninitialised and sealed. `audit_log` names its audit log in the test directory:
    /// the nodes of a cluster share theirs, since raft replicates the audit table and OpenBao
    /// refuses to unseal a node whose configured device differs from it.
    fn spawn_on_raft(dir: &TestDir, pki: &Pki, stem: &str, audit_log: &str) -> Result<OpenBao> {
        let mut launch = Launch::prepare(dir, pki, stem)?;
        launch.audit_log = dir.path(audit_log);
        let storage = dir.path(&format!("{stem}-data"));
        fs::create_dir_all(&storage).map_err(|e| Error::io("creating OpenBao's storage", e))?;
        launch.storage = Some(storage);
        // Initialising raft storage elects a leader first, which takes seconds on a busy machine.
        let http = blocking::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT * 6)
            .build()
            .map_err(|e| Error::http("building the OpenBao API client", e))?;
        let api_port = free_port_pair()?;
        let tls_port = free_port()?;
        let process = launch.spawn(dir, api_port, tls_port, "")?;
        let ports = (api_port, tls_port);
        let mut bao = Self::launched(&launch, process, ports, String::new(), pki, http);
        bao.wait_listening()?;
        Ok(bao)
    }

    /// Initialises a fresh raft server with one unseal key, unseals it, waits until it is
    /// active and configures it (KV v2 at `secret/`, then as [`OpenBao::start`] does).
    fn initialise(&mut self) -> Result<()> {
        let init = json!({ "secret_shares": 1, "secret_threshold": 1 });
        let keys = self.api_ok("PUT", "sys/init", Some(&init))?;
        let key = keys["keys_base64"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.root_token = keys["root_token"].as_str().unwrap_or_default().to_string();
        self.unseal_key = Some(key);
        self.unseal()?;
        self.wait_ready(Role::Active)?;
        let kv = json!({ "type": "kv", "options": { "version": "2" } });
        self.api_ok("POST", "sys/mounts/secret", Some(&kv))?;
        self.configure()
    }

    fn launched(
        launch: &Launch,
        process: ManagedProcess,
        (api_port, tls_port): (u16, u16),
        root_token: String,
        pki: &Pki,
        http: blocking::Client,
    ) -> OpenBao {
        OpenBao {
            process,
            launch: launch.clone(),
            unseal_key: None,
            api_port,
            tls_port,
            root_token,
            audit_log: launch.audit_log.clone(),
            ca_pem: pki.ca_pem().to_string(),
            http,
        }
    }

    /// `127.0.0.1:P`, the plain HTTP API listener.
    pub fn api_addr(&self) -> String {
        format!("127.0.0.1:{}", self.api_port)
    }

    /// `127.0.0.1:Q`, the TLS listener where cert auth works.
    pub fn tls_addr(&self) -> String {
        format!("127.0.0.1:{}", self.tls_port)
    }

    /// The TLS listener's port.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// The dev root token. Do not print it; tests of redaction look for it in logs.
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The file audit device's log: one JSON object per request.
    pub fn audit_log_path(&self) -> &Path {
        &self.audit_log
    }

    /// The audit log's entries, in order; a line cut short by a running write is left out.
    pub fn audit_entries(&self) -> Result<Vec<Value>> {
        let audit = match fs::read_to_string(&self.audit_log) {
            Ok(audit) => audit,
            // A standby that never served a request has not written its log yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io("reading the OpenBao audit log", e)),
        };
        Ok(audit
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect())
    }

    /// The server's own log.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Stops the server; afterwards connections to both listeners are refused at once.
    /// Starts a fresh server on the same ports with the same root token and configuration, as
    /// a vault coming back after an outage would; dev-mode state (tokens, secrets) is gone, so
    /// write the secrets again.
    pub fn restart(&mut self, dir: &TestDir) -> Result<()> {
        self.process.stop();
        self.process = self
            .launch
            .spawn(dir, self.api_port, self.tls_port, &self.root_token)?;
        if self.unseal_key.is_some() {
            // File storage: everything is still there, behind the seal.
            self.wait_listening()?;
            self.unseal()?;
            return self.wait_ready(Role::Active);
        }
        self.wait_ready(Role::Active)?;
        self.configure()
    }

    fn unseal(&self) -> Result<()> {
        let key = self.unseal_key.clone().unwrap_or_default();
        self.api_ok("PUT", "sys/unseal", Some(&json!({ "key": key })))?;
        Ok(())
    }

    /// Waits until the API listener answers at all (a sealed server answers 503).
    fn wait_listening(&mut self) -> Result<()> {
        let health = format!("http://{}/v1/sys/health", self.api_addr());
        let started = Instant::now();
        let answered = poll::until(READY_TIMEOUT, || self.http.get(&health).send().ok());
        answered.map(|_| ()).ok_or_else(|| Error::NotReady {
            what: "OpenBao".to_string(),
            waited: started.elapsed(),
            detail: format!("no answer; log tail:\n{}", self.process.log_tail(30)),
        })
    }

    pub fn stop(&mut self) {
        // A frozen process would not act on SIGTERM.
        self.process.resume();
        self.process.stop();
    }

    /// Freezes the server: connections are accepted by the kernel but never answered.
    pub fn pause(&self) {
        self.process.pause();
    }

    pub fn resume(&self) {
        self.process.resume();
    }

    /// Calls `/v1/<path>` on the plain listener with the root token.
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> Result<ApiResponse> {
        self.call(Some(&self.root_token), method, path, body)
    }

    /// Calls `/v1/<path>` on the plain listener with `token`, e.g. to act as the proxy.
    pub fn api_as(
        &self,
        token: &VaultToken,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse> {
        self.call(Some(&token.0), method, path, body)
    }

    /// `token` is None for the few unauthenticated endpoints.
    pub(crate) fn call(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse> {
        let action = format!("OpenBao {method} /v1/{path}");
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| Error::unexpected(&action, "invalid method"))?;
        let url = format!("http://{}/v1/{path}", self.api_addr());
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }

        let response = request.send().map_err(|e| Error::http(&action, e))?;
        let status = response.status().as_u16();
        let text = response.text().map_err(|e| Error::http(&action, e))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .map_err(|e| Error::unexpected(&action, format!("body is not JSON: {e}")))?
        };
        Ok(ApiResponse { status, body })
    }

    /// Like [`OpenBao::api`], failing on a non-2xx status with OpenBao's error messages (never
    /// the body of a success, which may hold secrets).
    pub fn api_ok(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let response = self.api(method, path, body)?;
        if !(200..300).contains(&response.status) {
            let detail = format!(
                "status {}: {}",
                response.status,
                errors(&response.body).join("; ")
            );
            return Err(Error::unexpected(
                format!("OpenBao {method} /v1/{path}"),
                detail,
            ));
        }
        Ok(response.body)
    }

    /// Writes `data` as the current version of `secret/data/<path>`.
    pub fn kv_put(&self, path: &str, data: Value) -> Result<()> {
        let body = json!({ "data": data });
        self.api_ok("POST", &format!("secret/data/{path}"), Some(&body))?;
        Ok(())
    }

    /// Reads the current version of `secret/data/<path>`: the `data.data` object.
    pub fn kv_get(&self, path: &str) -> Result<Value> {
        let body = self.api_ok("GET", &format!("secret/data/{path}"), None)?;
        Ok(body["data"]["data"].clone())
    }

    /// Logs in to [`CERT_ROLE`] over TLS presenting `cert`, as the proxy would.
    pub fn cert_login(&self, cert: &CertKey) -> Result<CertLogin> {
        let (status, body) = self.cert_login_exchange(cert)?;
        let auth = &body["auth"];
        Ok(CertLogin {
            status,
            token_issued: auth["client_token"].as_str().is_some_and(|t| !t.is_empty()),
            policies: strings(&auth["token_policies"]),
            lease_duration: auth["lease_duration"].as_u64(),
            errors: errors(&body),
        })
    }

    /// Logs in like [`OpenBao::cert_login`] and keeps the token, for calls with
    /// [`OpenBao::api_as`]; fails unless OpenBao issued one.
    pub fn cert_login_token(&self, cert: &CertKey) -> Result<VaultToken> {
        let (status, body) = self.cert_login_exchange(cert)?;
        match body["auth"]["client_token"].as_str() {
            Some(token) if !token.is_empty() => Ok(VaultToken(token.to_string())),
            _ => Err(Error::unexpected(
                "OpenBao cert login over TLS",
                format!("status {status}, no token: {}", errors(&body).join("; ")),
            )),
        }
    }

    fn cert_login_exchange(&self, cert: &CertKey) -> Result<(u16, Value)> {
        let action = "OpenBao cert login over TLS";
        let ca = Certificate::from_pem(self.ca_pem.as_bytes())
            .map_err(|e| Error::http("loading the test CA", e))?;
        let identity = Identity::from_pem(cert.identity_pem().as_bytes())
            .map_err(|e| Error::http("loading the client certificate", e))?;
        let client = blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .identity(identity)
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| Error::http(action, e))?;

        let url = format!("https://{}/v1/auth/{CERT_MOUNT}/login", self.tls_addr());
        let response = client
            .post(url)
            .json(&json!({ "name": CERT_ROLE }))
            .send()
            .map_err(|e| Error::http(action, e))?;
        let status = response.status().as_u16();
        let body: Value = response.json().unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Waits until the server is unsealed in `role` and both listeners take connections.
    fn wait_ready(&mut self, role: Role) -> Result<()> {
        let started = Instant::now();
        let query = match role {
            Role::Active => "",
            Role::Standby => "?standbyok=true",
        };
        let health = format!("http://{}/v1/sys/health{query}", self.api_addr());
        let tls_addr = (Ipv4Addr::LOCALHOST, self.tls_port);
        let mut exited = false;
        let ready = poll::until(READY_TIMEOUT, || {
            if !self.process.is_running() {
                exited = true;
                return Some(false);
            }
            let healthy = self
                .http
                .get(&health)
                .send()
                .is_ok_and(|r| r.status().is_success());
            (healthy && TcpStream::connect(tls_addr).is_ok()).then_some(true)
        });

        if ready == Some(true) {
            return Ok(());
        }
        let reason = if exited {
            "exited while starting"
        } else {
            "no healthy answer"
        };
        Err(Error::NotReady {
            what: "OpenBao".to_string(),
            waited: started.elapsed(),
            detail: format!("{reason}; log tail:\n{}", self.process.log_tail(30)),
        })
    }

    fn lost_port_race(&self) -> bool {
        self.process
            .log_contents()
            .contains("address already in use")
    }

    fn configure(&self) -> Result<()> {
        let mounts = self.api_ok("GET", "sys/mounts", None)?;
        let kv = &mounts["data"]["secret/"];
        if kv["type"] != "kv" || kv["options"]["version"] != "2" {
            return Err(Error::unexpected(
                "checking the dev-mode KV mount",
                format!(
                    "secret/ is not KV v2: type {}, options {}",
                    kv["type"], kv["options"]
                ),
            ));
        }

        let policy = r#"path "secret/data/*" { capabilities = ["read"] }"#;
        self.api_ok(
            "PUT",
            &format!("sys/policies/acl/{READ_POLICY}"),
            Some(&json!({ "policy": policy })),
        )?;

        self.api_ok(
            "POST",
            &format!("sys/auth/{CERT_MOUNT}"),
            Some(&json!({ "type": "cert" })),
        )?;
        let role = json!({
            "certificate": self.ca_pem,
            "allowed_uri_sans": [PROXY_SPIFFE_ID],
            "token_policies": [READ_POLICY],
            "token_ttl": "1h",
        });
        self.api_ok(
            "POST",
            &format!("auth/{CERT_MOUNT}/certs/{CERT_ROLE}"),
            Some(&role),
        )?;
        Ok(())
    }
}

/// What a server is waited for as: the active node, or a standby of a cluster (whose
/// `sys/health` answers 429 unless asked with `standbyok`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Active,
    Standby,
}

/// What every start attempt shares: the binary and the files it reads.
#[derive(Clone)]
struct Launch {
    /// Stem of the file names in the test directory, and the raft node id.
    stem: String,
    binary: PathBuf,
    server_cert: CertKeyPaths,
    client_ca: PathBuf,
    home: PathBuf,
    audit_log: PathBuf,
    /// File storage that survives a restart; `None` runs dev mode, in memory.
    storage: Option<PathBuf>,
}

impl Launch {
    fn prepare(dir: &TestDir, pki: &Pki, stem: &str) -> Result<Launch> {
        let home = dir.path(&format!("{stem}-home"));
        fs::create_dir_all(&home).map_err(|e| Error::io("creating OpenBao's HOME", e))?;
        Ok(Launch {
            stem: stem.to_string(),
            binary: bao_binary()?,
            server_cert: pki
                .localhost_cert()?
                .write(dir.root(), &format!("{stem}-server"))?,
            client_ca: pki.write_ca(dir.root(), &format!("{stem}-client-ca.crt"))?,
            home,
            audit_log: dir.path(&format!("{stem}-audit.log")),
            storage: None,
        })
    }

    fn spawn(
        &self,
        dir: &TestDir,
        api_port: u16,
        tls_port: u16,
        root_token: &str,
    ) -> Result<ManagedProcess> {
        let mut config = json!({
            "listener": [{"tcp": {
                "address": format!("127.0.0.1:{tls_port}"),
                "tls_cert_file": self.server_cert.cert,
                "tls_key_file": self.server_cert.key,
                "tls_client_ca_file": self.client_ca,
                "tls_require_and_verify_client_cert": false,
            }}],
            // OpenBao refuses to enable audit devices through the API; config only. The
            // description keeps the HCL JSON parser from folding `options` into the keys.
            // Raw, so that leak checks can learn every token OpenBao handed out.
            "audit": [{"file": {"file": {
                "description": "latchkey test audit log",
                "options": {"file_path": self.audit_log, "log_raw": "true"},
            }}}],
        });
        if let Some(storage) = &self.storage {
            // A real server: the plain API listener and the storage come from the config.
            // Integrated raft storage (OpenBao has no file backend), which needs a cluster
            // address: the API port + 1, as the ports were picked. Raft's timing at multiplier 1,
            // as production is advised to run, elects a new leader within seconds.
            config["storage"] = json!({ "raft": {
                "path": storage,
                "node_id": self.stem,
                "performance_multiplier": 1,
            } });
            config["api_addr"] = json!(format!("http://127.0.0.1:{api_port}"));
            config["cluster_addr"] = json!(format!("https://127.0.0.1:{}", api_port + 1));
            if let Some(listeners) = config["listener"].as_array_mut() {
                listeners.push(json!({ "tcp": {
                    "address": format!("127.0.0.1:{api_port}"),
                    "tls_disable": true,
                }}));
            }
        }
        let config_path = dir.write(&format!("{}.json", self.stem), config.to_string())?;

        let mut command = Command::new(&self.binary);
        command.arg("server");
        if self.storage.is_none() {
            command
                .arg("-dev")
                .arg("-dev-no-store-token")
                .arg(format!("-dev-listen-address=127.0.0.1:{api_port}"));
        }
        command
            .arg(format!("-config={}", config_path.display()))
            // No inherited VAULT_*/BAO_* settings and no ~/.vault-token; the root token goes
            // through the environment because argv is readable by every local user.
            .env_clear()
            .env("HOME", &self.home)
            .env("BAO_DEV_ROOT_TOKEN_ID", root_token);
        let log = dir.path(&format!("{}.log", self.stem));
        ManagedProcess::spawn("OpenBao", command, &log)
    }
}

/// A root token unique to this server, so that a leak check can look for it verbatim.
fn random_token() -> String {
    unique_value("lk-root-")
}

/// `prefix` and 32 random hex digits: test secrets that a leak check can look for verbatim.
pub fn unique_value(prefix: &str) -> String {
    let mut value = String::from(prefix);
    for part in 0..2u64 {
        // RandomState keys are seeded from the OS and differ between instances.
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(part);
        value.push_str(&format!("{:016x}", hasher.finish()));
    }
    value
}

pub(crate) fn errors(body: &Value) -> Vec<String> {
    strings(&body["errors"])
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
