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
    vault: Option<VaultCluster>,
    vault_cluster_name: String,
    forward_client_cert: Option<String>,
    node_metadata: Option<Value>,
    pub(crate) concurrency: u32,
    pub(crate) wasm_log_level: String,
}

#[derive(Debug, Clone)]
struct WasmFilter {
    module: PathBuf,
    configuration: Value,
    failure_policy: String,
}

#[derive(Debug, Clone)]
struct VaultCluster {
    port: u16,
    client_cert: CertKey,
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
            vault: None,
            vault_cluster_name: DEFAULT_VAULT_CLUSTER.to_string(),
            forward_client_cert: None,
            node_metadata: None,
            concurrency: 1,
            wasm_log_level: "debug".to_string(),
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
        });
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
            client_cert: client_cert.clone(),
        });
        self
    }

    /// Renames the vault cluster (default `vault`).
    pub fn vault_cluster_name(mut self, name: &str) -> Self {
        self.vault_cluster_name = name.to_string();
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
        if let Some(metadata) = &self.node_metadata {
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

        let mut http_filters = Vec::new();
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
                        "route": { "cluster": UPSTREAM_CLUSTER },
                    }],
                }],
            },
            "http_filters": http_filters,
        });
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
            "name": UPSTREAM_CLUSTER,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": endpoints(UPSTREAM_CLUSTER, self.upstream_port),
        })
    }

    fn vault_cluster(&self, vault: &VaultCluster) -> Value {
        let tls = json!({
            "@type": format!("{TLS_TYPES}.UpstreamTlsContext"),
            "sni": "localhost",
            "common_tls_context": {
                "tls_certificates": [certificate(&vault.client_cert)],
                "validation_context": {
                    "trusted_ca": { "inline_string": self.ca_pem },
                    "match_typed_subject_alt_names": [{
                        "san_type": "DNS",
                        "matcher": { "exact": "localhost" },
                    }],
                },
            },
        });
        json!({
            "name": self.vault_cluster_name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": endpoints(&self.vault_cluster_name, vault.port),
            "transport_socket": { "name": TLS_SOCKET, "typed_config": tls },
        })
    }
}

fn wasm_filter(wasm: &WasmFilter) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": WASM_ROOT_ID,
                "root_id": WASM_ROOT_ID,
                "vm_config": {
                    "vm_id": WASM_ROOT_ID,
                    // The only wasm runtime compiled into this Envoy build.
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm.module } },
                },
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
