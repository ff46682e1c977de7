//! The Istio recipes in `examples/istio/` run for real: the OpenBao setup script configures a
//! real OpenBao, and the egress gateway's WasmPlugin runs in Envoy in the shape istiod gives it
//! (plugin `<namespace>.<name>`, `root_id` from `pluginName`, no `vm_id`, the `pluginConfig` as
//! a `StringValue` of JSON, `failure_policy` from `failStrategy`, Istio's cluster names and
//! node metadata), with the mesh's trust domain `cluster.local`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use latchkey_test_harness::{
    bao_binary, unique_value, wasm_module, Client, EchoUpstream, Envoy, EnvoyConfig, OpenBao, Pki,
    TestDir,
};
use serde_json::{json, Value};

const TRUST_DOMAIN: &str = "cluster.local";
const GATEWAY_ID: &str =
    "spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account";
const CHECKOUT_ID: &str = "spiffe://cluster.local/ns/payments/sa/checkout";
const VAULT_CLUSTER: &str = "outbound|8200||openbao.vault.svc.cluster.local";
const API_CLUSTER: &str = "outbound|443||api.payments.example";
const API_HOST: &str = "api.payments.example";

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/istio")
}

fn manifest(file: &str) -> Value {
    let text = fs::read_to_string(examples().join(file)).unwrap();
    serde_norway::from_str(&text).unwrap()
}

/// Runs `openbao-setup.sh` against `openbao` with the mesh CA of `pki`; its output on failure.
fn run_setup(dir: &TestDir, openbao: &OpenBao, pki: &Pki, extra: &[(&str, &Path)]) {
    let ca = pki.write_ca(dir.root(), "mesh-ca.crt").unwrap();
    let mut command = Command::new("bash");
    command
        .arg(examples().join("openbao-setup.sh"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir.root())
        .env("BAO", bao_binary().unwrap())
        .env("BAO_ADDR", format!("http://{}", openbao.api_addr()))
        .env("BAO_TOKEN", openbao.root_token())
        .env("MESH_CA_FILE", &ca)
        .env("TRUST_DOMAIN", TRUST_DOMAIN);
    for (name, path) in extra {
        command.env(name, path);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "openbao-setup.sh failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn openbao_setup_script_configures_roles_policies_and_audit_twice_over() {
    let dir = TestDir::new("openbao_setup_script").unwrap();
    let pki = Pki::new_with_trust_domain(TRUST_DOMAIN).unwrap();
    let openbao = OpenBao::start(&dir, &pki).unwrap();
    let jwt_keys = dir
        .write(
            "jwt-svid-issuer.pem",
            rcgen::KeyPair::generate().unwrap().public_key_pem(),
        )
        .unwrap();

    // A second run must change nothing and fail on nothing.
    for _ in 0..2 {
        run_setup(&dir, &openbao, &pki, &[("JWT_PUBKEYS_FILE", &jwt_keys)]);
    }

    let role = openbao
        .api_ok("GET", "auth/cert/certs/latchkey-egress-gateway", None)
        .unwrap();
    assert_eq!(role["data"]["allowed_uri_sans"], json!([GATEWAY_ID]));
    assert_eq!(
        role["data"]["token_policies"],
        json!(["latchkey-egress-gateway"])
    );
    let policy = openbao
        .api_ok("GET", "sys/policies/acl/latchkey-egress-gateway", None)
        .unwrap();
    let rules = policy["data"]["policy"].as_str().unwrap();
    assert!(
        rules.contains(r#"path "secret/data/apps/+/+/payments""#),
        "{rules}"
    );
    assert!(
        !rules.contains("update") && !rules.contains("create"),
        "{rules}"
    );

    let sidecar = openbao
        .api_ok("GET", "auth/cert/certs/latchkey-sidecar-payments", None)
        .unwrap();
    assert_eq!(
        sidecar["data"]["allowed_uri_sans"],
        json!(["spiffe://cluster.local/ns/payments/sa/*"])
    );
    let mounts = openbao.api_ok("GET", "sys/mounts", None).unwrap();
    assert_eq!(mounts["data"]["secret/"]["options"]["version"], "2");
    let audit = openbao
        .api(
            "GET",
            "sys/config/auditing/request-headers/x-latchkey-caller",
            None,
        )
        .unwrap();
    assert_eq!(audit.status, 200, "{}", audit.body);

    let jwt_role = openbao
        .api_ok("GET", "auth/jwt/role/payments-checkout", None)
        .unwrap();
    assert_eq!(jwt_role["data"]["bound_subject"], CHECKOUT_ID);
    assert_eq!(jwt_role["data"]["bound_audiences"], json!(["latchkey"]));
}

/// istiod's `failStrategy` → Envoy `failure_policy`.
fn failure_policy(fail_strategy: &Value) -> &'static str {
    match fail_strategy.as_str() {
        Some("FAIL_OPEN") => "FAIL_OPEN",
        Some("FAIL_RELOAD") => "FAIL_RELOAD",
        _ => "FAIL_CLOSED",
    }
}

/// The node an Istio egress gateway's agent writes into the bootstrap.
fn egress_gateway_node() -> Value {
    json!({
        "id": concat!(
            "router~10.0.0.7~istio-egressgateway-7d9f-x2x4p.istio-system",
            "~istio-system.svc.cluster.local"
        ),
        "cluster": "istio-egressgateway.istio-system",
        "metadata": {
            "NAMESPACE": "istio-system",
            "SERVICE_ACCOUNT": "istio-egressgateway-service-account",
            "WORKLOAD_NAME": "istio-egressgateway",
            "CLUSTER_ID": "Kubernetes",
            "MESH_ID": "cluster.local",
            "LABELS": { "istio": "egressgateway" },
        },
    })
}

#[test]
fn egress_gateway_wasmplugin_runs_in_the_shape_istiod_generates() {
    let dir = TestDir::new("istio_shaped_egress_gateway").unwrap();
    let pki = Pki::new_with_trust_domain(TRUST_DOMAIN).unwrap();
    let openbao = OpenBao::start(&dir, &pki).unwrap();
    run_setup(&dir, &openbao, &pki, &[]);
    let api_key = unique_value("sk-live-");
    openbao
        .kv_put(
            "apps/payments/checkout/payments",
            json!({ "api_key": api_key }),
        )
        .unwrap();

    let plugin = manifest("07-wasmplugin-egress-gateway.yaml");
    let spec = &plugin["spec"];
    let resource = format!(
        "{}.{}",
        plugin["metadata"]["namespace"].as_str().unwrap(),
        plugin["metadata"]["name"].as_str().unwrap()
    );
    let echo = EchoUpstream::start().unwrap();
    let config = EnvoyConfig::new(&pki, echo.port())
        .unwrap()
        .node(egress_gateway_node())
        .upstream_cluster_name(API_CLUSTER)
        .vault_cluster_name(VAULT_CLUSTER)
        .vault(openbao.tls_port(), &pki.svid(GATEWAY_ID).unwrap())
        .wasm_filter(wasm_module().unwrap(), spec["pluginConfig"].clone())
        .wasm_names(&resource, spec["pluginName"].as_str().unwrap(), "")
        .wasm_failure_policy(failure_policy(&spec["failStrategy"]))
        .wasm_env("ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION", "1");
    let envoy = Envoy::start(&dir, config).unwrap();
    let checkout = Client::new(&pki, Some(&pki.svid(CHECKOUT_ID).unwrap())).unwrap();

    let headers = [("authorization", "Bearer stale"), ("x-api-key", "stale")];
    let port = envoy.listener_port();
    let response = checkout
        .get(port, API_HOST, "/v1/charge", &headers)
        .unwrap();

    assert_eq!(response.status, 200, "{}", response.body);
    let echoed = response.echoed().unwrap();
    assert_eq!(
        echoed.header_values("authorization"),
        [format!("Bearer {api_key}")]
    );
    assert!(echoed.header_values("x-api-key").is_empty());
    let vault_calls = format!("cluster.{VAULT_CLUSTER}.upstream_rq_completed");
    assert_eq!(envoy.stat(&vault_calls).unwrap(), Some(2), "login and read");

    // Outside the binding's path prefix nothing is injected and nothing is removed.
    let other = checkout.get(port, API_HOST, "/status", &headers).unwrap();
    assert_eq!(other.status, 200, "{}", other.body);
    assert_eq!(
        other.echoed().unwrap().header_values("authorization"),
        ["Bearer stale"]
    );
}
