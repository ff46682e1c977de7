//! A whole latchkey gateway on this machine: OpenBao holding a KV v2 secret for the checkout
//! workload, an echo upstream standing in for the payments API, and Envoy running the filter
//! with a binding between them. The end-to-end tests and the demo start from here.

use std::time::Duration;

use serde_json::{json, Value};

use crate::binaries::wasm_module;
use crate::client::{Client, Response};
use crate::echo::EchoUpstream;
use crate::envoy::{Envoy, EnvoyConfig, DEFAULT_VAULT_CLUSTER};
use crate::error::Result;
use crate::faulty_vault::{Fault, FaultyVault};
use crate::openbao::{unique_value, OpenBao, CERT_MOUNT, CERT_ROLE};
use crate::pki::{Pki, PROXY_SPIFFE_ID, TRUST_DOMAIN, WORKLOAD_SPIFFE_ID};
use crate::workdir::TestDir;

/// The destination the binding matches.
pub const API_HOST: &str = "api.payments.example";
/// Where the checkout workload's API key lives in KV v2, as the binding renders it.
pub const SECRET_PATH: &str = "apps/payments/checkout/payments";
/// Envoy's counter of completed calls on the vault cluster: one per login or read.
pub const VAULT_CALLS_STAT: &str = "cluster.vault.upstream_rq_completed";

/// The plugin configuration of the gateway: one binding, a KV v2 key per payments workload.
pub fn plugin_config() -> Value {
    json!({
        "version": 1,
        "vault": {
            "cluster": DEFAULT_VAULT_CLUSTER,
            "authority": "localhost",
            "timeout": "2s",
            "auth": { "method": "cert", "mount": CERT_MOUNT, "role": CERT_ROLE }
        },
        "identity": { "sources": ["peer_certificate"], "trust_domains": [TRUST_DOMAIN] },
        "bindings": [{
            "name": "payments-api",
            "match": {
                "hosts": [API_HOST],
                "identities": [format!("spiffe://{TRUST_DOMAIN}/ns/payments/*")]
            },
            "credential": {
                "engine": "kv2",
                "mount": "secret",
                "path": "apps/{namespace}/{service_account}/payments",
                "field": "api_key",
                "refresh": "5m"
            },
            "inject": [{ "header": "authorization", "value": "Bearer {api_key}" }],
            "strip": ["x-api-key"]
        }]
    })
}

/// Every process of the gateway. Fields drop in order, so the work directory goes last and can
/// still print the logs of a failed test.
pub struct Gateway {
    pub envoy: Envoy,
    pub echo: EchoUpstream,
    pub openbao: OpenBao,
    pub pki: Pki,
    /// The checkout workload's API key in OpenBao, unique per run so leak checks can find it.
    pub api_key: String,
    /// Whether dropping the gateway runs the leak scan (see the `Drop` impl).
    pub scan_for_leaks_on_drop: bool,
    pub dir: TestDir,
}

impl Gateway {
    /// Starts OpenBao, the echo upstream and Envoy with the filter and [`plugin_config`].
    pub fn start(name: &str) -> Result<Gateway> {
        Self::start_with(name, plugin_config())
    }

    pub fn start_with(name: &str, plugin_config: Value) -> Result<Gateway> {
        Self::start_with_workers(name, plugin_config, 1)
    }

    /// Like [`Gateway::start_with`] with `workers` Envoy worker threads.
    pub fn start_with_workers(name: &str, plugin_config: Value, workers: u32) -> Result<Gateway> {
        Self::start_customized(name, plugin_config, |_, config| config.concurrency(workers))
    }

    /// Like [`Gateway::start_with`], with a last say on Envoy's configuration; `customize` gets
    /// the test directory too, for files such as an access log.
    pub fn start_customized(
        name: &str,
        plugin_config: Value,
        customize: impl FnOnce(&TestDir, EnvoyConfig) -> EnvoyConfig,
    ) -> Result<Gateway> {
        Self::start_inner(name, plugin_config, OpenBao::start, customize)
    }

    /// Like [`Gateway::start_with`], with a vault on file storage that keeps its state (tokens
    /// included) across [`OpenBao::restart`].
    pub fn start_with_persistent_vault(name: &str, plugin_config: Value) -> Result<Gateway> {
        Self::start_inner(
            name,
            plugin_config,
            OpenBao::start_persistent,
            |_, config| config,
        )
    }

    fn start_inner(
        name: &str,
        plugin_config: Value,
        start_vault: fn(&TestDir, &Pki) -> Result<OpenBao>,
        customize: impl FnOnce(&TestDir, EnvoyConfig) -> EnvoyConfig,
    ) -> Result<Gateway> {
        let dir = TestDir::new(name)?;
        let pki = Pki::new()?;
        let openbao = start_vault(&dir, &pki)?;
        let api_key = unique_value("sk-live-");
        openbao.kv_put(SECRET_PATH, json!({ "api_key": api_key }))?;

        let echo = EchoUpstream::start()?;
        let config = EnvoyConfig::new(&pki, echo.port())?
            .vault(openbao.tls_port(), &pki.svid(PROXY_SPIFFE_ID)?)
            .wasm_filter(wasm_module()?, plugin_config)
            .wasm_log_level("trace");
        let envoy = Envoy::start(&dir, customize(&dir, config))?;
        Ok(Gateway {
            envoy,
            echo,
            openbao,
            pki,
            api_key,
            scan_for_leaks_on_drop: true,
            dir,
        })
    }

    /// A client presenting an SVID for `spiffe_id`, or no certificate at all.
    pub fn client(&self, spiffe_id: Option<&str>) -> Result<Client> {
        match spiffe_id {
            Some(id) => Client::new(&self.pki, Some(&self.pki.svid(id)?)),
            None => Client::new(&self.pki, None),
        }
    }

    /// The checkout workload's client.
    pub fn checkout(&self) -> Result<Client> {
        self.client(Some(WORKLOAD_SPIFFE_ID))
    }

    /// `GET <path>` to the payments API through the gateway.
    pub fn call_api(
        &self,
        client: &Client,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response> {
        client.get(self.envoy.listener_port(), API_HOST, path, headers)
    }

    /// Calls made on the vault cluster so far (0 before the first).
    pub fn vault_calls(&self) -> Result<u64> {
        Ok(self.envoy.stat(VAULT_CALLS_STAT)?.unwrap_or(0))
    }

    /// Waits until Envoy counts `calls` vault calls as completed.
    pub fn wait_for_vault_calls(&self, calls: u64) -> Result<u64> {
        self.envoy
            .wait_for_stat(VAULT_CALLS_STAT, |v| v >= calls, Duration::from_secs(5))
    }

    /// OpenBao requests by operation (`read`, `update`, ...) and path, from its audit log (which
    /// logs each request twice, as request and as response; this counts responses).
    pub fn vault_requests(&self, operation: &str, path: &str) -> Result<usize> {
        let entries = self.audit_entries()?;
        let matches = |entry: &&Value| {
            let request = &entry["request"];
            entry["type"] == "response"
                && request["operation"] == operation
                && request["path"] == path
        };
        Ok(entries.iter().filter(matches).count())
    }

    /// Every vault token OpenBao issued, from its raw audit log.
    pub fn issued_tokens(&self) -> Result<Vec<String>> {
        let entries = self.audit_entries()?;
        Ok(entries
            .iter()
            .filter_map(|entry| entry["response"]["auth"]["client_token"].as_str())
            .filter(|token| !token.is_empty())
            .map(String::from)
            .collect())
    }

    /// Where the secrets this run handed out (or anything shaped like a vault token or a JWT)
    /// appear in Envoy's log, stats or config dump. Checked on every drop; see below.
    pub fn leaks(&self) -> Result<Vec<String>> {
        let mut secrets = crate::leaks::handed_out(&self.audit_entries()?);
        secrets.push((self.api_key.clone(), "credential"));
        let mut found = crate::leaks::findings("Envoy's log", &self.envoy.log_contents(), &secrets);
        for (place, path) in [
            ("Envoy's stats", "/stats"),
            ("the config dump", "/config_dump"),
        ] {
            let text = self.envoy.admin_get(path)?;
            found.extend(crate::leaks::findings(place, &text, &secrets));
        }
        Ok(found)
    }

    fn audit_entries(&self) -> Result<Vec<Value>> {
        self.openbao.audit_entries()
    }
}

/// Runs `envoy --mode validate` on a gateway with `plugin_config`, which runs the filter's
/// `on_configure`: `Ok` when Envoy accepts it, else Envoy's output with the filter's reason.
pub fn validate_plugin_config(name: &str, plugin_config: Value) -> Result<()> {
    let dir = TestDir::new(name)?;
    let pki = Pki::new()?;
    let bootstrap = EnvoyConfig::new(&pki, 9)?
        .vault(9, &pki.svid(PROXY_SPIFFE_ID)?)
        .wasm_filter(wasm_module()?, plugin_config);
    bootstrap.validate(&dir, "envoy.json").map(|_| ())
}

/// Every test that runs a gateway also checks secret hygiene: when it ends without a failure,
/// nothing the vault handed out may be found in Envoy's log (wasm at trace level), its stats or
/// its config dump.
impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() || !self.scan_for_leaks_on_drop || !self.envoy.is_running() {
            return;
        }
        match self.leaks() {
            Ok(found) if found.is_empty() => {}
            Ok(found) => panic!("secrets leaked: {found:?}"),
            Err(err) => panic!("the leak scan failed: {err}"),
        }
    }
}

/// The gateway in front of a [`FaultyVault`] instead of OpenBao.
pub struct FaultyGateway {
    pub envoy: Envoy,
    pub echo: EchoUpstream,
    pub vault: FaultyVault,
    pub pki: Pki,
    pub dir: TestDir,
}

impl FaultyGateway {
    pub fn start(name: &str, plugin_config: Value, fault: Fault) -> Result<FaultyGateway> {
        let dir = TestDir::new(name)?;
        let pki = Pki::new()?;
        let vault = FaultyVault::start(fault)?;
        let echo = EchoUpstream::start()?;
        let config = EnvoyConfig::new(&pki, echo.port())?
            .vault_stand_in(vault.port())
            .wasm_filter(wasm_module()?, plugin_config);
        let envoy = Envoy::start(&dir, config)?;
        Ok(FaultyGateway {
            envoy,
            echo,
            vault,
            pki,
            dir,
        })
    }

    /// `GET <path>` to the payments API as the checkout workload.
    pub fn call_api(&self, path: &str) -> Result<Response> {
        let client = Client::new(&self.pki, Some(&self.pki.svid(WORKLOAD_SPIFFE_ID)?))?;
        client.get(self.envoy.listener_port(), API_HOST, path, &[])
    }
}
