//! The configurations under test, all alive at once for the whole run so that their runs can
//! interleave: one Envoy each (`--concurrency 1`, pinned with `taskset`), the same downstream
//! mTLS listener (client certificate required) and the same echo upstream; the latchkey ones
//! share one OpenBao.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use serde_json::{json, Value};

use super::load::{Pool, Target};
use crate::binaries::{noop_wasm_module, wasm_module};
use crate::echo::EchoUpstream;
use crate::envoy::{Envoy, EnvoyConfig};
use crate::error::Result;
use crate::openbao::OpenBao;
use crate::pki::{Pki, PROXY_SPIFFE_ID};
use crate::scenario::{self, API_HOST};
use crate::workdir::TestDir;

/// The KV v2 secret every cache-hit identity shares: one vault read per identity at warm-up.
pub const HIT_SECRET: &str = "apps/shared/payments";
/// The secret of the refresh configuration, apart so that its reads can be counted alone.
pub const REFRESH_SECRET: &str = "apps/refresh/payments";
/// The refresh configuration's credential lifetime and how early it stops being used.
pub const REFRESH_TTL_MS: u64 = 2_000;
pub const REFRESH_MARGIN_MS: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NoFilter,
    /// Envoy without a filter, loaded by as many callers (one connection each) as the widest
    /// latchkey run: the baseline for that run's tail, which the connection count drives.
    NoFilterWide {
        identities: usize,
    },
    NoopWasm,
    NativeInjector,
    LatchkeyHit {
        identities: usize,
    },
    /// The credential lives 2 s and is not refreshed ahead: each key misses once per lifetime.
    LatchkeyRefresh {
        identities: usize,
    },
}

impl Kind {
    pub fn id(&self) -> String {
        match self {
            Kind::NoFilter => "no-filter".to_string(),
            Kind::NoFilterWide { identities } => format!("no-filter-{identities}"),
            Kind::NoopWasm => "noop-wasm".to_string(),
            Kind::NativeInjector => "native-injector".to_string(),
            Kind::LatchkeyHit { identities } => format!("latchkey-hit-{identities}"),
            Kind::LatchkeyRefresh { identities } => format!("latchkey-miss-{identities}"),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Kind::NoFilter => "Envoy, no filter".to_string(),
            Kind::NoFilterWide { identities } => {
                format!("Envoy, no filter, {}", identity_count(*identities))
            }
            Kind::NoopWasm => "no-op wasm filter".to_string(),
            Kind::NativeInjector => "native credential_injector".to_string(),
            Kind::LatchkeyHit { identities } => {
                format!("latchkey hit, {}", identity_count(*identities))
            }
            Kind::LatchkeyRefresh { identities } => {
                format!("latchkey 2 s credential, {}", identity_count(*identities))
            }
        }
    }

    pub fn identities(&self) -> usize {
        match self {
            Kind::NoFilterWide { identities }
            | Kind::LatchkeyHit { identities }
            | Kind::LatchkeyRefresh { identities } => *identities,
            _ => 1,
        }
    }
}

/// What every configuration shares.
pub struct Shared<'a> {
    pub pki: &'a Pki,
    pub echo: &'a EchoUpstream,
    pub openbao: &'a OpenBao,
    pub envoy_cpus: &'a str,
}

/// One configuration: its Envoy and the connections that load it.
pub struct Subject {
    pub kind: Kind,
    pub envoy: Envoy,
    pub pool: Pool,
    /// Declared last: the directory outlives Envoy.
    pub dir: TestDir,
}

impl Subject {
    /// Starts the Envoy of `kind` and opens `connections` connections to it (at least one per
    /// identity), each sending one request so that caches are warm.
    pub fn start(
        kind: Kind,
        shared: &Shared<'_>,
        identities: &[Arc<ClientConfig>],
        connections: usize,
    ) -> Result<Subject> {
        Subject::start_with(kind, None, shared, identities, connections)
    }

    /// [`Subject::start`], with latchkey from `module` rather than the shipped build.
    pub fn start_with(
        kind: Kind,
        module: Option<PathBuf>,
        shared: &Shared<'_>,
        identities: &[Arc<ClientConfig>],
        connections: usize,
    ) -> Result<Subject> {
        let dir = TestDir::new(&format!("bench-{}", kind.id()))?;
        let config = EnvoyConfig::new(shared.pki, shared.echo.port())?
            .require_client_certificate(true)
            // SDS needs a node identity; every configuration gets the same one.
            .node(json!({ "id": "bench", "cluster": "bench" }))
            .concurrency(1)
            .cpu_list(shared.envoy_cpus)
            .wasm_log_level("info");
        let config = match kind {
            Kind::NoFilter | Kind::NoFilterWide { .. } => config,
            Kind::NoopWasm => config.wasm_filter(noop_wasm_module()?, json!({})),
            Kind::NativeInjector => {
                let sds = write_sds_secret(&dir)?;
                config.http_filter(native_injector(&sds))
            }
            Kind::LatchkeyHit { identities } => {
                latchkey(config, shared, module, hit_config(identities))?
            }
            Kind::LatchkeyRefresh { .. } => latchkey(config, shared, module, refresh_config())?,
        };
        let envoy = Envoy::start(&dir, config)?;

        let target = Target {
            port: envoy.listener_port(),
            host: API_HOST.to_string(),
            path: "/v1/charge".to_string(),
        };
        let used = identities.get(..kind.identities()).unwrap_or(identities);
        let pool = Pool::open(target, used, connections.max(used.len()), 8)?;
        Ok(Subject {
            kind,
            envoy,
            pool,
            dir,
        })
    }
}

fn latchkey(
    config: EnvoyConfig,
    shared: &Shared<'_>,
    module: Option<PathBuf>,
    plugin: Value,
) -> Result<EnvoyConfig> {
    let module = match module {
        Some(module) => module,
        None => wasm_module()?,
    };
    let proxy_svid = shared.pki.svid(PROXY_SPIFFE_ID)?;
    Ok(config
        .vault(shared.openbao.tls_port(), &proxy_svid)
        .wasm_filter(module, plugin))
}

/// The end-to-end gateway's binding, every identity sharing one secret, refreshed too rarely to
/// happen during a run, with room in the cache for every identity.
fn hit_config(identities: usize) -> Value {
    let mut config = scenario::plugin_config();
    config["bindings"][0]["credential"]["path"] = json!(HIT_SECRET);
    config["bindings"][0]["credential"]["refresh"] = json!("1h");
    // A key may live in one of two neighbouring slots only: at a quarter full, about 9 % of keys
    // share a pair with two others and evict each other on every fetch. At 1 % full, a handful.
    // Slots cost memory only once written.
    let slots = (identities * 100).clamp(1_000, 1_000_000);
    config["cache"] = json!({ "max_entries": slots });
    config
}

/// A credential that lives 2 s and stops being used 100 ms before its end, later than the
/// refresh-ahead point would ever come: every key misses once per lifetime, for real.
fn refresh_config() -> Value {
    let mut config = scenario::plugin_config();
    config["bindings"][0]["credential"]["path"] = json!(REFRESH_SECRET);
    config["bindings"][0]["credential"]["refresh"] = json!(format!("{REFRESH_TTL_MS}ms"));
    config["cache"] = json!({
        "refresh_at": 0.99,
        "jitter": 0,
        "expiry_margin": format!("{REFRESH_MARGIN_MS}ms"),
    });
    config
}

const SDS_SECRET_NAME: &str = "bench-credential";

/// Envoy's own `credential_injector` with a generic credential read from an SDS file.
fn native_injector(sds_path: &Path) -> Value {
    json!({
        "name": "envoy.filters.http.credential_injector",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.\
                      CredentialInjector",
            "overwrite": true,
            "credential": {
                "name": "envoy.http.injected_credentials.generic",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.injected_credentials.\
                              generic.v3.Generic",
                    "credential": {
                        "name": SDS_SECRET_NAME,
                        "sds_config": { "path_config_source": { "path": sds_path } },
                    },
                    "header": "authorization",
                },
            },
        },
    })
}

fn write_sds_secret(dir: &TestDir) -> Result<std::path::PathBuf> {
    let secret = json!({
        "resources": [{
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
            "name": SDS_SECRET_NAME,
            "generic_secret": { "secret": { "inline_string": "Bearer sk-bench-static" } },
        }],
    });
    dir.write("credential-sds.json", secret.to_string())
}

fn identity_count(identities: usize) -> String {
    match identities {
        1 => "1 identity".to_string(),
        n => format!("{} identities", thousands(n)),
    }
}

/// 10000 → "10,000".
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
