//! Every manifest in `examples/istio/` is valid for Istio's own CRD schemas
//! (`../shared/reference/istio/customresourcedefinitions.gen.yaml`, beside the repository), in a
//! strict reading: a field the schema does not know is an error, as `kubectl --validate=strict`
//! makes it, so a typo cannot be silently pruned. The CEL rules (`x-kubernetes-validations`)
//! that apply to the fields used are evaluated by hand below; a rule without a hand check
//! fails the test. Every `pluginConfig` is parsed by the filter's own parser.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use latchkey_filter::config::Config;
use serde::Deserialize;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn crd_bundle() -> PathBuf {
    repo().join("../shared/reference/istio/customresourcedefinitions.gen.yaml")
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

/// `(apiVersion, kind)` → the `openAPIV3Schema` of that version.
fn crd_schemas() -> HashMap<(String, String), Value> {
    let path = crd_bundle();
    let text = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. The Istio CRD schemas are expected in shared/ beside the repository \
             (../shared/reference/istio/); CI lays them there.",
            path.display()
        )
    });
    let mut schemas = HashMap::new();
    for crd in yaml_documents(&text) {
        let spec = &crd["spec"];
        let kind = spec["names"]["kind"].as_str().unwrap().to_string();
        for version in spec["versions"].as_array().unwrap() {
            let api_version = format!(
                "{}/{}",
                spec["group"].as_str().unwrap(),
                version["name"].as_str().unwrap()
            );
            let schema = version["schema"]["openAPIV3Schema"].clone();
            schemas.insert((api_version, kind.clone()), schema);
        }
    }
    schemas
}

/// Objects with `properties` refuse other keys unless the schema keeps unknown fields.
fn strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let open = map.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
            if map.contains_key("properties") && !map.contains_key("additionalProperties") && !open
            {
                map.insert("additionalProperties".into(), json!(false));
            }
            map.values_mut().for_each(strict);
        }
        Value::Array(items) => items.iter_mut().for_each(strict),
        _ => {}
    }
}

fn manifests() -> Vec<(String, Value)> {
    let dir = repo().join("examples/istio");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        for doc in yaml_documents(&fs::read_to_string(&file).unwrap()) {
            let label = format!(
                "{name} {} {}",
                doc["kind"].as_str().unwrap_or("?"),
                doc["metadata"]["name"].as_str().unwrap_or("?")
            );
            all.push((label, doc));
        }
    }
    all
}

/// Schema and CEL problems of one manifest; empty when it is valid.
fn problems(schemas: &HashMap<(String, String), Value>, doc: &Value) -> Vec<String> {
    let key = (
        doc["apiVersion"].as_str().unwrap_or_default().to_string(),
        doc["kind"].as_str().unwrap_or_default().to_string(),
    );
    let Some(schema) = schemas.get(&key) else {
        return vec![format!("no CRD for {key:?}")];
    };
    let mut found = Vec::new();
    let top: Vec<&String> = doc.as_object().unwrap().keys().collect();
    for field in top {
        if !["apiVersion", "kind", "metadata", "spec"].contains(&field.as_str()) {
            found.push(format!("unexpected top-level field {field}"));
        }
    }
    for field in ["name", "namespace"] {
        if !doc["metadata"][field].is_string() {
            found.push(format!("metadata.{field} is missing"));
        }
    }

    let mut spec_schema = schema["properties"]["spec"].clone();
    strict(&mut spec_schema);
    let validator = jsonschema::draft4::new(&spec_schema).unwrap();
    found.extend(
        validator
            .iter_errors(&doc["spec"])
            .map(|e| format!("spec{}: {e}", e.instance_path())),
    );

    let mut rules = Vec::new();
    cel_rules(
        &schema["properties"]["spec"],
        &doc["spec"],
        "spec",
        &mut rules,
    );
    for (path, message, value) in rules {
        match cel_check(&message, value) {
            Some(true) => {}
            Some(false) => found.push(format!("{path}: {message}")),
            None => found.push(format!(
                "{path}: no hand check for the CEL rule {message:?}"
            )),
        }
    }
    found
}

/// Every `x-kubernetes-validations` rule whose field is present, with its value.
fn cel_rules<'v>(
    schema: &Value,
    value: &'v Value,
    path: &str,
    out: &mut Vec<(String, String, &'v Value)>,
) {
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let message = rule["message"].as_str().unwrap_or_default().to_string();
        out.push((path.to_string(), message, value));
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let child_schema = match schema["properties"].get(key) {
                    Some(s) => s,
                    None => &schema["additionalProperties"],
                };
                cel_rules(child_schema, child, &format!("{path}.{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                cel_rules(&schema["items"], item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The CEL rules that matter for these recipes, by their message; `None` for any other rule.
fn cel_check(message: &str, value: &Value) -> Option<bool> {
    let has = |field: &str| value.get(field).is_some();
    let count = |fields: &[&str]| fields.iter().filter(|f| has(f)).count();
    Some(match message {
        "only one of targetRefs or selector can be set" => {
            count(&["selector", "targetRef", "targetRefs"]) <= 1
        }
        "only one of targetRefs or workloadSelector can be set" => {
            count(&["workloadSelector", "targetRefs"]) <= 1
        }
        "exactly one of wasm or lua must be set" => has("wasm") != has("lua"),
        "url must have schema one of [http, https, file, oci]" => {
            let url = value.as_str().unwrap_or_default();
            let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
            ["", "http", "https", "file", "oci"].contains(&scheme)
        }
        "wildcard not allowed in label key match" => value
            .as_object()
            .is_some_and(|labels| labels.keys().all(|k| !k.contains('*'))),
        "key must not be empty" => value
            .as_object()
            .is_some_and(|labels| labels.keys().all(|k| !k.is_empty())),
        "wildcard not allowed in label value match" => {
            value.as_str().is_some_and(|v| !v.contains('*'))
        }
        "cross namespace referencing is not currently supported" => {
            value.as_str().is_some_and(str::is_empty)
        }
        "port must be between 1-65535" => value
            .as_u64()
            .or_else(|| value["number"].as_u64())
            .is_some_and(|port| (1..=65535).contains(&port)),
        "port number cannot be duplicated" => {
            let ports: Vec<&Value> = value
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| &p["number"])
                .collect();
            (1..ports.len()).all(|i| !ports[..i].contains(&ports[i]))
        }
        "port name must be valid" => value.as_array().into_iter().flatten().all(|port| {
            port["name"].as_str().is_some_and(|name| {
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
        }),
        "hostname cannot be wildcard" => value["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|host| host != "*"),
        "only one of WorkloadSelector or Endpoints can be set" => {
            count(&["workloadSelector", "endpoints"]) <= 1
        }
        "CIDR addresses are allowed only for NONE/STATIC resolution types" => {
            let cidr = value["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a.as_str().is_some_and(|a| a.contains('/')));
            !cidr || ["NONE", "STATIC"].contains(&value["resolution"].as_str().unwrap_or("NONE"))
        }
        "NONE mode cannot set endpoints" => {
            value["resolution"].as_str().unwrap_or("NONE") != "NONE" || !has("endpoints")
        }
        "DNS_ROUND_ROBIN mode cannot have multiple endpoints" => {
            value["resolution"] != "DNS_ROUND_ROBIN"
                || value["endpoints"].as_array().is_none_or(|e| e.len() <= 1)
        }
        m if m.starts_with("only one of credentialName")
            || m.starts_with("only one of credentialNames") =>
        {
            count(&["credentialName", "credentialNames", "tlsCertificates"]) <= 1
        }
        "portLevelMtls requires selector" => !has("portLevelMtls") || has("selector"),
        "Cannot set serviceAccounts with namespaces or principals" => {
            !has("serviceAccounts") || count(&["namespaces", "principals"]) == 0
        }
        _ => return None,
    })
}

#[test]
fn every_istio_manifest_is_valid_for_istios_crd_schemas_and_cel_rules() {
    let schemas = crd_schemas();
    let manifests = manifests();
    assert!(manifests.len() >= 13, "{} manifests", manifests.len());
    let mut kinds: Vec<&str> = manifests
        .iter()
        .map(|(_, doc)| doc["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "AuthorizationPolicy",
            "DestinationRule",
            "Gateway",
            "PeerAuthentication",
            "ServiceEntry",
            "TrafficExtension",
            "VirtualService",
            "WasmPlugin"
        ]
    );
    for (label, doc) in &manifests {
        let found = problems(&schemas, doc);
        assert!(found.is_empty(), "{label}: {found:#?}");
    }
}

/// A change to a manifest that Istio would refuse.
type Edit = fn(&mut Value);

fn egress_plugin() -> Value {
    let text = fs::read_to_string(repo().join("examples/istio/07-wasmplugin-egress-gateway.yaml"))
        .unwrap();
    yaml_documents(&text).remove(0)
}

#[test]
fn the_checks_catch_what_istio_would_refuse() {
    let schemas = crd_schemas();
    let refused = |edit: fn(&mut Value)| {
        let mut doc = egress_plugin();
        edit(&mut doc);
        problems(&schemas, &doc)
    };
    assert!(refused(|_| {}).is_empty());

    let cases: [(&str, Edit); 6] = [
        ("a misspelt field", |d| {
            d["spec"]["failStrategyy"] = json!("FAIL_OPEN")
        }),
        ("an unknown failStrategy", |d| {
            d["spec"]["failStrategy"] = json!("FAIL_CLOSED")
        }),
        ("a short sha256", |d| d["spec"]["sha256"] = json!("abc")),
        ("selector and targetRefs", |d| {
            let gateway = json!({ "kind": "Gateway", "name": "egress" });
            d["spec"]["targetRefs"] = json!([gateway]);
        }),
        ("an ftp url", |d| {
            d["spec"]["url"] = json!("ftp://registry.example/x")
        }),
        ("a wildcard label", |d| {
            d["spec"]["selector"]["matchLabels"]["istio"] = json!("egress*")
        }),
    ];
    for (what, edit) in cases {
        assert!(!refused(edit).is_empty(), "{what} passed");
    }

    let mut extension = egress_plugin();
    extension["kind"] = json!("TrafficExtension");
    extension["spec"] = json!({ "phase": "STATS" });
    let found = problems(&schemas, &extension);
    assert!(
        found
            .iter()
            .any(|p| p.contains("exactly one of wasm or lua")),
        "{found:#?}"
    );
}

/// The `pluginConfig` of every WasmPlugin and TrafficExtension.
fn plugin_configs() -> Vec<(String, Value)> {
    manifests()
        .into_iter()
        .filter_map(|(label, doc)| {
            let config = match doc["kind"].as_str() {
                Some("WasmPlugin") => doc["spec"]["pluginConfig"].clone(),
                Some("TrafficExtension") => doc["spec"]["wasm"]["pluginConfig"].clone(),
                _ => return None,
            };
            Some((label, config))
        })
        .collect()
}

#[test]
fn every_plugin_config_is_accepted_by_the_filters_parser() {
    let configs = plugin_configs();
    assert_eq!(configs.len(), 4);
    for (label, config) in configs {
        match Config::from_json(config.to_string().as_bytes()) {
            Ok(parsed) => assert!(!parsed.bindings.is_empty(), "{label}: no binding"),
            Err(err) => panic!("{label}: {err}"),
        }
    }
}

#[test]
fn wasmplugin_and_trafficextension_twins_carry_the_same_plugin() {
    let docs: HashMap<String, Value> = manifests()
        .into_iter()
        .map(|(_, doc)| {
            (
                format!(
                    "{} {}",
                    doc["kind"].as_str().unwrap(),
                    doc["metadata"]["name"].as_str().unwrap()
                ),
                doc,
            )
        })
        .collect();
    for name in ["latchkey-egress", "latchkey-outbound"] {
        let plugin = &docs[&format!("WasmPlugin {name}")]["spec"];
        let extension = &docs[&format!("TrafficExtension {name}")]["spec"];
        for field in [
            "url",
            "sha256",
            "pluginName",
            "failStrategy",
            "pluginConfig",
            "imagePullPolicy",
            "type",
        ] {
            assert_eq!(plugin[field], extension["wasm"][field], "{name}: {field}");
        }
        for field in ["selector", "phase", "priority", "match"] {
            assert_eq!(plugin[field], extension[field], "{name}: {field}");
        }
    }
}

#[test]
fn the_crd_bundle_is_where_the_readme_says() {
    assert!(
        Path::new(&crd_bundle()).is_file(),
        "{}",
        crd_bundle().display()
    );
}
