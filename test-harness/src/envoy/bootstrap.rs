//! `EnvoyConfig`: the bootstrap (JSON) of the Envoy under test. One TLS listener that asks for,
//! but by default does not require, a client certificate from the test CA; an optional latchkey
//! wasm filter before the router; cluster `upstream` (plain HTTP/1.1 to the echo server) and an
//! optional vault cluster (mTLS with the proxy SVID to OpenBao's TLS listener). Certificates are
//! inlined, so the bootstrap is self-contained.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::error::Result;
use crate::pki::{CertKey, Pki};

/// Name of the listener; the harness finds its port by this name.
pub(crate) const LISTENER_NAME: &str = "ingress";
/// Cluster every route goes to.
pub const UPSTREAM_CLUSTER: &str = "upstream";
/// Default name of the cluster that leads to OpenBao.
pub const DEFAULT_VAULT_CLUSTER: &str = "vault";
/// The plugin's `root_id` and `vm_id`.
pub const WASM_ROOT_ID: &str = "latchkey";

const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
const TLS_TYPES: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3";

/// Builder for the Envoy under test; see the module docs.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    server_cert: CertKey,
    ca_pem: String,
    upstream_port: u16,
    require_client_certificate: bool,
    client_san_matchers: Vec<Value>,
    wasm: Option<WasmFilter>,
    /// HTTP filters placed before the wasm filter and the router, as Envoy JSON.
    http_filters: Vec<Value>,
    vault: Option<VaultCluster>,
    vault_cluster_name: String,
    upstream_cluster_name: String,
    node: Option<Value>,
    forward_client_cert: Option<String>,
    node_metadata: Option<Value>,
    pub(crate) concurrency: u32,
    pub(crate) wasm_log_level: String,
    /// `taskset -c` CPU list Envoy is started on; any CPU when `None`.
    pub(crate) cpu_list: Option<String>,
    access_log: Option<(PathBuf, String)>,
}

#[derive(Debug, Clone)]
struct WasmFilter {
    module: PathBuf,
    configuration: Value,
    failure_policy: String,
    name: String,
    root_id: String,
    vm_id: String,
    environment: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct VaultCluster {
    port: u16,
    /// `None` for a plain-HTTP stand-in (fault injection); the real vault always gets mTLS.
    client_cert: Option<CertKey>,
}

impl EnvoyConfig {
    /// A baseline Envoy (router only) in front of the echo server at `upstream_port`, serving a
    /// `localhost`/`127.0.0.1` certificate from `pki` and trusting `pki`'s CA for clients.
    pub fn new(pki: &Pki, upstream_port: u16) -> Result<EnvoyConfig> {
        Ok(EnvoyConfig {
            server_cert: pki.localhost_cert()?,
            ca_pem: pki.ca_pem().to_string(),
            upstream_port,
            require_client_certificate: false,
            client_san_matchers: Vec::new(),
            wasm: None,
            http_filters: Vec::new(),
            vault: None,
            vault_cluster_name: DEFAULT_VAULT_CLUSTER.to_string(),
            upstream_cluster_name: UPSTREAM_CLUSTER.to_string(),
            node: None,
            forward_client_cert: None,
            node_metadata: None,
            concurrency: 1,
            wasm_log_level: "debug".to_string(),
            cpu_list: None,
            access_log: None,
        })
    }

    /// Whether the listener rejects handshakes without a client certificate (default false, so
    /// that such requests reach the filter).
    pub fn require_client_certificate(mut self, required: bool) -> Self {
        self.require_client_certificate = required;
        self
    }

    /// Adds a `match_typed_subject_alt_names` entry (Envoy's `SubjectAltNameMatcher` as JSON) to
    /// the listener's client certificate validation.
    pub fn match_client_san(mut self, matcher: Value) -> Self {
        self.client_san_matchers.push(matcher);
        self
    }

    /// Inserts the wasm filter from `module` before the router; `configuration` is handed to the
    /// plugin as a JSON string.
    pub fn wasm_filter(mut self, module: impl Into<PathBuf>, configuration: Value) -> Self {
        self.wasm = Some(WasmFilter {
            module: module.into(),
            configuration,
            failure_policy: "FAIL_CLOSED".to_string(),
            name: WASM_ROOT_ID.to_string(),
            root_id: WASM_ROOT_ID.to_string(),
            vm_id: WASM_ROOT_ID.to_string(),
            environment: Vec::new(),
        });
        self
    }

    /// Adds an HTTP filter (Envoy's JSON: `name` and `typed_config`) before the router, ahead of
    /// the wasm filter if there is one.
    pub fn http_filter(mut self, filter: Value) -> Self {
        self.http_filters.push(filter);
        self
    }

    /// The plugin's `name`, `root_id` and `vm_id` (all `latchkey` by default). istiod names a
    /// plugin `<namespace>.<name>`, takes `root_id` from `pluginName` and sets no `vm_id`.
    /// Only meaningful after [`EnvoyConfig::wasm_filter`].
    pub fn wasm_names(mut self, name: &str, root_id: &str, vm_id: &str) -> Self {
        if let Some(wasm) = &mut self.wasm {
            wasm.name = name.to_string();
            wasm.root_id = root_id.to_string();
            wasm.vm_id = vm_id.to_string();
        }
        self
    }

    /// Adds an entry to the VM's `environment_variables.key_values`, as istiod does for the
    /// plugin's resource version. Only meaningful after [`EnvoyConfig::wasm_filter`].
    pub fn wasm_env(mut self, key: &str, value: &str) -> Self {
        if let Some(wasm) = &mut self.wasm {
            wasm.environment.push((key.to_string(), value.to_string()));
        }
        self
    }

    /// The wasm plugin's `failure_policy` (`FAIL_CLOSED`, `FAIL_OPEN`, `FAIL_RELOAD`). Only
    /// meaningful after [`EnvoyConfig::wasm_filter`].
    pub fn wasm_failure_policy(mut self, policy: &str) -> Self {
        if let Some(wasm) = &mut self.wasm {
            wasm.failure_policy = policy.to_string();
        }
        self
    }

    /// Adds the vault cluster: mTLS to 127.0.0.1:`tls_port` presenting `client_cert`, verifying
    /// the server against the test CA with SNI `localhost`.
    pub fn vault(mut self, tls_port: u16, client_cert: &CertKey) -> Self {
        self.vault = Some(VaultCluster {
            port: tls_port,
            client_cert: Some(client_cert.clone()),
        });
        self
    }

    /// Points the vault cluster at a plain-HTTP stand-in on 127.0.0.1:`port`, for faults real
    /// OpenBao cannot be made to produce.
    pub fn vault_stand_in(mut self, port: u16) -> Self {
        self.vault = Some(VaultCluster {
            port,
            client_cert: None,
        });
        self
    }

    /// Renames the vault cluster (default `vault`).
    pub fn vault_cluster_name(mut self, name: &str) -> Self {
        self.vault_cluster_name = name.to_string();
        self
    }

    /// Renames the cluster every route goes to (default `upstream`).
    pub fn upstream_cluster_name(mut self, name: &str) -> Self {
        self.upstream_cluster_name = name.to_string();
        self
    }

    /// The bootstrap's `node` (id, cluster, metadata), as Istio's agent writes it.
    pub fn node(mut self, node: Value) -> Self {
        self.node = Some(node);
        self
    }

    /// The HTTP connection manager's `forward_client_cert_details` (`SANITIZE` when unset, as in
    /// Envoy). `APPEND_FORWARD` and `SANITIZE_SET` also set the client certificate's URI SAN.
    pub fn forward_client_cert(mut self, mode: &str) -> Self {
        self.forward_client_cert = Some(mode.to_string());
        self
    }

    /// The node's `metadata`, as Istio sets `NAMESPACE` and `SERVICE_ACCOUNT` on a sidecar.
    pub fn node_metadata(mut self, metadata: Value) -> Self {
        self.node_metadata = Some(metadata);
        self
    }

    /// Worker threads (`--concurrency`, default 1).
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// Envoy's log level for the wasm component (default `debug`).
    pub fn wasm_log_level(mut self, level: &str) -> Self {
        self.wasm_log_level = level.to_string();
        self
    }

    /// Starts Envoy through `taskset -c <cpus>` (util-linux), e.g. `"0"` for the first core.
    pub fn cpu_list(mut self, cpus: &str) -> Self {
        self.cpu_list = Some(cpus.to_string());
        self
    }

    /// Writes an access log line per request to `path` in Envoy's `format`.
    pub fn access_log(mut self, path: impl Into<PathBuf>, format: &str) -> Self {
        self.access_log = Some((path.into(), format.to_string()));
        self
    }

    /// The bootstrap as JSON.
    pub fn bootstrap(&self) -> Value {
        let mut clusters = vec![self.upstream_cluster()];
        if let Some(vault) = &self.vault {
            clusters.push(self.vault_cluster(vault));
        }

        let mut bootstrap = json!({
            "admin": { "address": socket_address(0) },
            "static_resources": {
                "listeners": [self.listener()],
                "clusters": clusters,
            },
        });
        if let Some(node) = &self.node {
            bootstrap["node"] = node.clone();
        } else if let Some(metadata) = &self.node_metadata {
            bootstrap["node"] = json!({
                "id": "latchkey-test",
                "cluster": "latchkey-test",
                "metadata": metadata,
            });
        }
        bootstrap
    }

    fn listener(&self) -> Value {
        let mut validation = json!({ "trusted_ca": { "inline_string": self.ca_pem } });
        if !self.client_san_matchers.is_empty() {
            validation["match_typed_subject_alt_names"] = json!(self.client_san_matchers);
        }
        let tls = json!({
            "@type": format!("{TLS_TYPES}.DownstreamTlsContext"),
            "require_client_certificate": self.require_client_certificate,
            "common_tls_context": {
                "tls_certificates": [certificate(&self.server_cert)],
                "validation_context": validation,
                "alpn_protocols": ["h2", "http/1.1"],
            },
        });

        let mut http_filters = self.http_filters.clone();
        if let Some(wasm) = &self.wasm {
            http_filters.push(wasm_filter(wasm));
        }
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            },
        }));

        let mut hcm = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.\
                      http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": LISTENER_NAME,
            "codec_type": "AUTO",
            // As recommended for deployments, so that a binding's path prefix sees the path the
            // upstream will act on.
            "normalize_path": true,
            "merge_slashes": true,
            "route_config": {
                "name": "all",
                "virtual_hosts": [{
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{
                        "match": { "prefix": "/" },
                        "route": { "cluster": self.upstream_cluster_name },
                    }],
                }],
            },
            "http_filters": http_filters,
        });
        if let Some((path, format)) = &self.access_log {
            hcm["access_log"] = json!([{
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": path,
                    "log_format": { "text_format_source": { "inline_string": format } },
                },
            }]);
        }
        if let Some(mode) = &self.forward_client_cert {
            hcm["forward_client_cert_details"] = json!(mode);
            if mode == "APPEND_FORWARD" || mode == "SANITIZE_SET" {
                hcm["set_current_client_cert_details"] = json!({ "uri": true });
            }
        }

        json!({
            "name": LISTENER_NAME,
            "address": socket_address(0),
            "filter_chains": [{
                "transport_socket": { "name": TLS_SOCKET, "typed_config": tls },
                "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm,
                }],
            }],
        })
    }

    fn upstream_cluster(&self) -> Value {
        json!({
            "name": self.upstream_cluster_name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": endpoints(&self.upstream_cluster_name, self.upstream_port),
        })
    }

    fn vault_cluster(&self, vault: &VaultCluster) -> Value {
        let mut cluster = json!({
            "name": self.vault_cluster_name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": endpoints(&self.vault_cluster_name, vault.port),
        });
        let Some(client_cert) = &vault.client_cert else {
            return cluster;
        };
        let tls = json!({
            "@type": format!("{TLS_TYPES}.UpstreamTlsContext"),
            "sni": "localhost",
            "common_tls_context": {
                "tls_certificates": [certificate(client_cert)],
                "validation_context": {
                    "trusted_ca": { "inline_string": self.ca_pem },
                    "match_typed_subject_alt_names": [{
                        "san_type": "DNS",
                        "matcher": { "exact": "localhost" },
                    }],
                },
            },
        });
        cluster["transport_socket"] = json!({ "name": TLS_SOCKET, "typed_config": tls });
        cluster
    }
}

fn wasm_filter(wasm: &WasmFilter) -> Value {
    let environment: serde_json::Map<String, Value> = wasm
        .environment
        .iter()
        .map(|(key, value)| (key.clone(), json!(value)))
        .collect();
    let mut vm_config = json!({
        "vm_id": wasm.vm_id,
        // The only wasm runtime compiled into this Envoy build.
        "runtime": "envoy.wasm.runtime.v8",
        "code": { "local": { "filename": wasm.module } },
    });
    if !environment.is_empty() {
        vm_config["environment_variables"] = json!({ "key_values": environment });
    }
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": wasm.name,
                "root_id": wasm.root_id,
                "vm_config": vm_config,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": wasm.configuration.to_string(),
                },
                // Replaces the deprecated `fail_open`.
                "failure_policy": wasm.failure_policy,
            },
        },
    })
}

fn certificate(cert: &CertKey) -> Value {
    json!({
        "certificate_chain": { "inline_string": cert.cert_pem },
        "private_key": { "inline_string": cert.key_pem },
    })
}

fn endpoints(cluster: &str, port: u16) -> Value {
    json!({
        "cluster_name": cluster,
        "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(port) } }] }],
    })
}

fn socket_address(port: u16) -> Value {
    json!({ "socket_address": { "address": "127.0.0.1", "port_value": port } })
}
