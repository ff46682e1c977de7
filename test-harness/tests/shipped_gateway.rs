//! `envoy/gateway.yaml`, as shipped, runs end to end: only addresses, ports and file locations
//! are changed to this machine's. Real OpenBao logs the gateway in by its SVID and holds the
//! workload's key; the payments API is the echo upstream behind a second Envoy that terminates
//! TLS as `api.payments.example`, so the gateway's TLS origination (SNI, SAN check, trust
//! bundle) is exercised as written.

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;

use latchkey_test_harness::{
    unique_value, wasm_module, Client, EchoUpstream, Envoy, OpenBao, Pki, TestDir, PROXY_SPIFFE_ID,
    WORKLOAD_SPIFFE_ID,
};
use serde_json::{json, Value};

const INSTALL_DIR: &str = "/etc/latchkey/";
const API_HOST: &str = "api.payments.example";
const SECRET_PATH: &str = "apps/payments/checkout/payments";

struct Site {
    gateway: Envoy,
    _api_front: Envoy,
    _echo: EchoUpstream,
    _openbao: OpenBao,
    pki: Pki,
    api_key: String,
    _dir: TestDir,
}

fn shipped_gateway() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../envoy/gateway.yaml");
    fs::read_to_string(path).unwrap()
}

fn cluster<'v>(bootstrap: &'v mut Value, name: &str) -> &'v mut Value {
    bootstrap["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|cluster| cluster["name"] == name)
        .unwrap_or_else(|| panic!("gateway.yaml has no cluster {name}"))
}

fn endpoint(cluster: &mut Value) -> &mut Value {
    &mut cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        ["socket_address"]
}

/// gateway.yaml with this machine's files, loopback addresses and dynamic ports. Names the
/// shipped file expects (`openbao.internal`, the system trust store) are the only other edits.
fn localise(dir: &TestDir, vault_port: u16, api_port: u16) -> Value {
    let text = shipped_gateway().replace(INSTALL_DIR, &format!("{}/", dir.root().display()));
    let mut bootstrap: Value = serde_norway::from_str(&text).unwrap();
    bootstrap["admin"]["address"]["socket_address"] =
        json!({ "address": "127.0.0.1", "port_value": 0 });
    bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"] =
        json!({ "address": "127.0.0.1", "port_value": 0 });

    // OpenBao's test certificate is for localhost.
    let vault = cluster(&mut bootstrap, "vault");
    *endpoint(vault) = json!({ "address": "127.0.0.1", "port_value": vault_port });
    let vault_tls = &mut vault["transport_socket"]["typed_config"];
    vault_tls["sni"] = json!("localhost");
    vault_tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"][0]
        ["matcher"] = json!({ "exact": "localhost" });

    // The API's certificate comes from the test CA instead of a public one.
    let api = cluster(&mut bootstrap, "payments_api");
    *endpoint(api) = json!({ "address": "127.0.0.1", "port_value": api_port });
    api["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]
        ["trusted_ca"] = json!({ "filename": dir.path("ca.crt") });
    bootstrap
}

const TYPES: &str = "type.googleapis.com/envoy.extensions";
const DOWNSTREAM_TLS: &str = "transport_sockets.tls.v3.DownstreamTlsContext";
const HCM: &str = "http_connection_manager.v3.HttpConnectionManager";

/// An Envoy that terminates TLS as api.payments.example and forwards to the echo upstream.
fn api_front(pki: &Pki, echo_port: u16) -> String {
    let cert = pki.server_cert(&[API_HOST], &[]).unwrap();
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": {
            "listeners": [{
                "name": "api",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                "filter_chains": [{
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": format!("{TYPES}.{DOWNSTREAM_TLS}"),
                            "common_tls_context": { "tls_certificates": [{
                                "certificate_chain": { "inline_string": cert.cert_pem },
                                "private_key": { "inline_string": cert.key_pem },
                            }] },
                        },
                    },
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": format!("{TYPES}.filters.network.{HCM}"),
                            "stat_prefix": "api",
                            "route_config": { "virtual_hosts": [{
                                "name": "api",
                                "domains": ["*"],
                                "routes": [{
                                    "match": { "prefix": "/" },
                                    "route": { "cluster": "echo" },
                                }],
                            }] },
                            "http_filters": [{
                                "name": "envoy.filters.http.router",
                                "typed_config": {
                                    "@type": format!("{TYPES}.filters.http.router.v3.Router"),
                                },
                            }],
                        },
                    }],
                }],
            }],
            "clusters": [{
                "name": "echo",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": { "cluster_name": "echo", "endpoints": [{ "lb_endpoints": [{
                    "endpoint": { "address": { "socket_address": {
                        "address": "127.0.0.1", "port_value": echo_port,
                    } } },
                }] }] },
            }],
        },
    })
    .to_string()
}

fn start(name: &str) -> Site {
    let dir = TestDir::new(name).unwrap();
    let pki = Pki::new().unwrap();
    pki.write_ca(dir.root(), "ca.crt").unwrap();
    // Workloads reach the gateway as 127.0.0.1 here, and the harness client checks that name.
    let loopback = [IpAddr::from([127, 0, 0, 1])];
    pki.server_svid(PROXY_SPIFFE_ID, &[], &loopback)
        .unwrap()
        .write(dir.root(), "gateway")
        .unwrap();
    fs::copy(wasm_module().unwrap(), dir.path("latchkey_filter.wasm")).unwrap();

    let openbao = OpenBao::start(&dir, &pki).unwrap();
    let api_key = unique_value("sk-live-");
    openbao
        .kv_put(SECRET_PATH, json!({ "api_key": api_key }))
        .unwrap();
    let echo = EchoUpstream::start().unwrap();
    let api_front =
        Envoy::start_with_bootstrap(&dir, "api-front", &api_front(&pki, echo.port()), "api")
            .unwrap();

    let bootstrap = localise(&dir, openbao.tls_port(), api_front.listener_port());
    let gateway =
        Envoy::start_with_bootstrap(&dir, "gateway", &bootstrap.to_string(), "egress").unwrap();
    Site {
        gateway,
        _api_front: api_front,
        _echo: echo,
        _openbao: openbao,
        pki,
        api_key,
        _dir: dir,
    }
}

#[test]
fn shipped_gateway_injects_the_workloads_key_over_originated_tls() {
    let site = start("shipped_gateway_injects");
    let app = Client::new(&site.pki, Some(&site.pki.svid(WORKLOAD_SPIFFE_ID).unwrap())).unwrap();

    let headers = [("authorization", "Bearer stale"), ("x-api-key", "stale")];
    let port = site.gateway.listener_port();
    let response = app.get(port, API_HOST, "/v1/charge", &headers).unwrap();

    assert_eq!(response.status, 200, "{}", response.body);
    let echoed = response.echoed().unwrap();
    let expected = format!("Bearer {}", site.api_key);
    assert_eq!(echoed.header_values("authorization"), [expected]);
    assert!(echoed.header_values("x-api-key").is_empty());
    // Set by the API's TLS front: the hop from the gateway was TLS, SNI api.payments.example.
    assert_eq!(echoed.header_values("x-forwarded-proto"), ["https"]);
}

#[test]
fn shipped_gateway_refuses_a_foreign_trust_domain_at_the_handshake() {
    let site = start("shipped_gateway_foreign_domain");
    // Signed by the trusted CA, but outside spiffe://example.org/: the SAN matcher refuses it.
    let svid = site
        .pki
        .svid("spiffe://evil.example/ns/payments/sa/checkout")
        .unwrap();
    let client = Client::new(&site.pki, Some(&svid)).unwrap();

    let result = client.get(site.gateway.listener_port(), API_HOST, "/v1/charge", &[]);

    assert!(result.is_err(), "the handshake was accepted: {result:?}");
    let refused_by_san: u64 = site
        .gateway
        .stats()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.starts_with("listener.") && name.ends_with(".ssl.fail_verify_san"))
        .map(|(_, value)| *value)
        .sum();
    assert_eq!(refused_by_san, 1);
    assert_eq!(
        site.gateway
            .stat("cluster.vault.upstream_rq_completed")
            .unwrap()
            .unwrap_or(0),
        0
    );
}
