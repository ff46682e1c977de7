//! `envoy/gateway.yaml`, as shipped, runs end to end: only addresses, ports and file locations
//! are changed to this machine's. Real OpenBao logs the gateway in by its SVID and holds the
//! workload's key; the payments API is the echo upstream behind a second Envoy that terminates
//! TLS as `api.payments.example`, so the gateway's TLS origination (SNI, SAN check, trust
//! bundle) is exercised as written.

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use latchkey_test_harness::{
    leaks, poll_until, unique_value, wasm_module, Client, EchoUpstream, Envoy, OpenBao,
    OpenBaoCluster, Pki, TestDir, PROXY_SPIFFE_ID, WORKLOAD_SPIFFE_ID,
};
use serde_json::{json, Value};

const INSTALL_DIR: &str = "/etc/latchkey/";
const API_HOST: &str = "api.payments.example";
const SECRET_PATH: &str = "apps/payments/checkout/payments";

struct Site {
    gateway: Envoy,
    _api_front: Envoy,
    _echo: EchoUpstream,
    vault: Vault,
    pki: Pki,
    api_key: String,
    _dir: TestDir,
}

/// What stands behind the gateway's three vault endpoints.
enum Vault {
    /// One dev server behind all three: each endpoint is healthy.
    Single(Box<OpenBao>),
    /// A three-node raft cluster, one node behind each endpoint.
    Cluster(OpenBaoCluster),
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

fn lb_endpoints(cluster: &mut Value) -> &mut Vec<Value> {
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        .as_array_mut()
        .unwrap()
}

fn endpoint(lb_endpoint: &mut Value) -> &mut Value {
    &mut lb_endpoint["endpoint"]["address"]["socket_address"]
}

/// gateway.yaml with this machine's files, loopback addresses and dynamic ports: the vault
/// cluster's endpoints in order take `vault_ports`. Names the shipped file expects
/// (`openbao.internal`, the system trust store) are the only other edits.
fn localise(dir: &TestDir, vault_ports: &[u16], api_port: u16) -> Value {
    let text = shipped_gateway().replace(INSTALL_DIR, &format!("{}/", dir.root().display()));
    let mut bootstrap: Value = serde_norway::from_str(&text).unwrap();
    bootstrap["admin"]["address"]["socket_address"] =
        json!({ "address": "127.0.0.1", "port_value": 0 });
    bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"] =
        json!({ "address": "127.0.0.1", "port_value": 0 });

    // OpenBao's test certificate is for localhost.
    let vault = cluster(&mut bootstrap, "vault");
    let nodes = lb_endpoints(vault);
    assert_eq!(
        nodes.len(),
        vault_ports.len(),
        "vault nodes in gateway.yaml"
    );
    for (node, port) in nodes.iter_mut().zip(vault_ports) {
        *endpoint(node) = json!({ "address": "127.0.0.1", "port_value": port });
    }
    let vault_tls = &mut vault["transport_socket"]["typed_config"];
    vault_tls["sni"] = json!("localhost");
    vault_tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"][0]
        ["matcher"] = json!({ "exact": "localhost" });

    // The API's certificate comes from the test CA instead of a public one.
    let api = cluster(&mut bootstrap, "payments_api");
    *endpoint(&mut lb_endpoints(api)[0]) =
        json!({ "address": "127.0.0.1", "port_value": api_port });
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
    start_with(name, false)
}

fn start_with(name: &str, clustered: bool) -> Site {
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

    let vault = if clustered {
        Vault::Cluster(OpenBaoCluster::start(&dir, &pki, 3).unwrap())
    } else {
        Vault::Single(Box::new(OpenBao::start(&dir, &pki).unwrap()))
    };
    let (writer, vault_ports) = match &vault {
        Vault::Single(openbao) => (openbao.as_ref(), vec![openbao.tls_port(); 3]),
        // The cluster starts with its first node active.
        Vault::Cluster(cluster) => (cluster.node(0).unwrap(), cluster.tls_ports()),
    };
    let api_key = unique_value("sk-live-");
    writer
        .kv_put(SECRET_PATH, json!({ "api_key": api_key }))
        .unwrap();
    let echo = EchoUpstream::start().unwrap();
    let api_front =
        Envoy::start_with_bootstrap(&dir, "api-front", &api_front(&pki, echo.port()), "api")
            .unwrap();

    let bootstrap = localise(&dir, &vault_ports, api_front.listener_port());
    let gateway =
        Envoy::start_with_bootstrap(&dir, "gateway", &bootstrap.to_string(), "egress").unwrap();
    // Envoy starts routing once the first round of health checks ends, passed or not; on a
    // loaded machine a check can time out and the vault is unroutable until the next round.
    gateway
        .wait_for_stat(
            "cluster.vault.membership_healthy",
            |healthy| healthy >= 1,
            Duration::from_secs(10),
        )
        .unwrap();
    Site {
        gateway,
        _api_front: api_front,
        _echo: echo,
        vault,
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

/// Envoy's `/clusters` line `vault::127.0.0.1:<port>::<field>::<value>`, for one vault node.
fn vault_host_field(gateway: &Envoy, port: u16, field: &str) -> String {
    let prefix = format!("vault::127.0.0.1:{port}::{field}::");
    gateway
        .admin_get("/clusters")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_else(|| panic!("/clusters has no {field} for vault node :{port}"))
}

/// The shipped health check sends vault calls only to the active node of a three-node raft
/// cluster. Stopping that node while a workload keeps calling leaves it served: from the cache
/// while OpenBao elects a new leader, and a workload new to the gateway gets its key from the
/// new active node once its health check passes. Envoy's stats show the failover.
#[test]
fn shipped_gateway_follows_the_active_vault_node_through_a_failover() {
    let mut site = start_with("shipped_gateway_vault_failover", true);
    let Vault::Cluster(cluster) = &mut site.vault else {
        unreachable!("started with a cluster")
    };
    let refunds_id = "spiffe://example.org/ns/payments/sa/refunds";
    let refunds_key = unique_value("sk-live-");
    let refunds_path = "apps/payments/refunds/payments";
    let api_body = json!({ "api_key": refunds_key });
    cluster
        .node(0)
        .unwrap()
        .kv_put(refunds_path, api_body)
        .unwrap();
    assert_eq!(cluster.active(), Some(0));
    let ports = cluster.tls_ports();
    let gateway_port = site.gateway.listener_port();

    let checkout =
        Client::new(&site.pki, Some(&site.pki.svid(WORKLOAD_SPIFFE_ID).unwrap())).unwrap();
    let first = checkout
        .get(gateway_port, API_HOST, "/v1/charge", &[])
        .unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    // Standbys fail the health check (429), so they saw none of the vault calls.
    let vault_calls = |port| vault_host_field(&site.gateway, port, "rq_total");
    assert_ne!(vault_calls(ports[0]), "0");
    for &standby in &ports[1..] {
        let flags = vault_host_field(&site.gateway, standby, "health_flags");
        assert!(flags.contains("failed_active_hc"), ":{standby} is {flags}");
        assert_eq!(vault_calls(standby), "0");
    }

    // The checkout workload keeps calling through the failover.
    let calling = Arc::new(AtomicBool::new(true));
    let traffic = {
        let calling = Arc::clone(&calling);
        let svid = site.pki.svid(WORKLOAD_SPIFFE_ID).unwrap();
        let client = Client::new(&site.pki, Some(&svid)).unwrap();
        let expected = format!("Bearer {}", site.api_key);
        thread::spawn(move || {
            let mut answers = Vec::new();
            while calling.load(Ordering::Relaxed) {
                let answer = client.get(gateway_port, API_HOST, "/v1/charge", &[]);
                let served = answer.as_ref().is_ok_and(|response| {
                    response.status == 200
                        && response.echoed().is_ok_and(|echoed| {
                            echoed.header_values("authorization") == [expected.clone()]
                        })
                });
                answers.push(served.then_some(()).ok_or_else(|| format!("{answer:?}")));
                thread::sleep(Duration::from_millis(20));
            }
            answers
        })
    };
    thread::sleep(Duration::from_millis(500));
    let failures_before = site
        .gateway
        .stat("cluster.vault.health_check.failure")
        .unwrap()
        .unwrap_or(0);

    let stopped = Instant::now();
    cluster.stop(0).unwrap();
    let (elected, election) = cluster.wait_for_new_active(0).unwrap();
    let seen = poll_until(Duration::from_secs(30), || {
        let flags = vault_host_field(&site.gateway, ports[elected], "health_flags");
        (flags == "healthy").then_some(())
    });
    assert!(
        seen.is_some(),
        "Envoy never saw node {elected} become healthy"
    );
    let routed = stopped.elapsed();
    // Until the stopped node fails its checks (or refuses a call and is ejected) Envoy may
    // still pick it for a vault call; a caller with nothing cached would get a 503 then.
    let out = poll_until(Duration::from_secs(30), || {
        let flags = vault_host_field(&site.gateway, ports[0], "health_flags");
        (flags.contains("failed_active_hc") || flags.contains("failed_outlier_check")).then_some(())
    });
    assert!(out.is_some(), "Envoy never took the stopped node out");
    let taken_out = stopped.elapsed();

    // A workload the gateway has not seen before needs the vault: the new active node serves.
    let refunds = Client::new(&site.pki, Some(&site.pki.svid(refunds_id).unwrap())).unwrap();
    let response = refunds
        .get(gateway_port, API_HOST, "/v1/refund", &[])
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    let echoed = response.echoed().unwrap();
    let expected = format!("Bearer {refunds_key}");
    assert_eq!(echoed.header_values("authorization"), [expected]);
    assert_ne!(vault_calls(ports[elected]), "0");

    calling.store(false, Ordering::Relaxed);
    let answers = traffic.join().unwrap();
    let failed: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed: {failed:?}",
        failed.len(),
        answers.len()
    );
    eprintln!(
        "failover: node {elected} active {election:?} after the stop, routed to by Envoy after \
         {routed:?}, the stopped node out after {taken_out:?}; {} calls served throughout",
        answers.len()
    );

    // An ejection ends; the failed health checks keep the stopped node out.
    let settled = poll_until(Duration::from_secs(30), || {
        let flags = vault_host_field(&site.gateway, ports[0], "health_flags");
        flags.contains("failed_active_hc").then_some(())
    });
    assert!(
        settled.is_some(),
        "Envoy never marked the stopped node unhealthy"
    );
    let stats = site.gateway.stats().unwrap();
    let stat = |name: &str| stats.get(name).copied().unwrap_or(0);
    assert!(stat("cluster.vault.health_check.failure") > failures_before);
    assert_eq!(stat("cluster.vault.membership_healthy"), 1);
    assert_eq!(stat("cluster.vault.membership_total"), 3);
    assert!(stat("wasmcustom.latchkey.requests.injected") as usize > answers.len());
    assert_eq!(
        stat("wasmcustom.latchkey.requests.denied.vault_unavailable"),
        0
    );

    let mut secrets = leaks::handed_out(&cluster.audit_entries().unwrap());
    secrets.push((site.api_key.clone(), "credential"));
    secrets.push((refunds_key, "credential"));
    let mut found = leaks::findings("the gateway's log", &site.gateway.log_contents(), &secrets);
    for path in ["/stats", "/config_dump"] {
        let text = site.gateway.admin_get(path).unwrap();
        found.extend(leaks::findings(path, &text, &secrets));
    }
    assert!(found.is_empty(), "{found:?}");
}
