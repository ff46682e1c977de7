//! Finds plugin configurations in what users keep in their repositories: a plain JSON or YAML
//! config, Kubernetes manifests (one or many documents) holding a `WasmPlugin`'s
//! `spec.pluginConfig` or a `TrafficExtension`'s `spec.wasm.pluginConfig`, or an Envoy bootstrap
//! whose wasm filters carry the config as a `StringValue`.

use serde::Deserialize;
use serde_json::Value;

/// One plugin configuration and where it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundConfig {
    /// `config`, or `WasmPlugin istio-system/latchkey-egress` and the like.
    pub origin: String,
    /// The configuration as the filter receives it: Istio hands `pluginConfig` over as JSON.
    pub json: Value,
}

const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// Every plugin configuration in `text`. Kubernetes documents of other kinds are skipped; a
/// file holding none at all is an error, so a typo in a path cannot pass as "valid".
pub fn plugin_configs(text: &str) -> Result<Vec<FoundConfig>, String> {
    let mut found = Vec::new();
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document)
            .map_err(|e| format!("document {}: not YAML or JSON: {e}", index + 1))?;
        if value.get("static_resources").is_some() {
            envoy_wasm_configs(&value, &mut found)?;
        } else if let Some(config) = from_document(&value)? {
            found.push(config);
        }
    }
    if found.is_empty() {
        return Err("no plugin configuration, WasmPlugin or TrafficExtension found".into());
    }
    Ok(found)
}

/// The `configuration` of every wasm HTTP filter anywhere in an Envoy bootstrap.
fn envoy_wasm_configs(node: &Value, found: &mut Vec<FoundConfig>) -> Result<(), String> {
    if node["@type"] == WASM_FILTER_TYPE {
        let config = &node["config"];
        let origin = format!(
            "Envoy wasm filter {}",
            config["name"].as_str().unwrap_or("?")
        );
        let text = config["configuration"]["value"]
            .as_str()
            .ok_or(format!("{origin}: no StringValue configuration"))?;
        let json = serde_json::from_str(text).map_err(|e| format!("{origin}: not JSON: {e}"))?;
        found.push(FoundConfig { origin, json });
        return Ok(());
    }
    match node {
        Value::Object(map) => map.values().try_for_each(|v| envoy_wasm_configs(v, found)),
        Value::Array(items) => items.iter().try_for_each(|v| envoy_wasm_configs(v, found)),
        _ => Ok(()),
    }
}

fn from_document(document: &Value) -> Result<Option<FoundConfig>, String> {
    let Some(kind) = document["kind"].as_str() else {
        // No Kubernetes kind: a plain plugin configuration, or nothing (an empty document).
        return Ok(document
            .as_object()
            .filter(|map| !map.is_empty())
            .map(|_| FoundConfig {
                origin: "config".into(),
                json: document.clone(),
            }));
    };
    let config = match kind {
        "WasmPlugin" => &document["spec"]["pluginConfig"],
        "TrafficExtension" => &document["spec"]["wasm"]["pluginConfig"],
        _ => return Ok(None),
    };
    let name = format!(
        "{kind} {}/{}",
        document["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default"),
        document["metadata"]["name"].as_str().unwrap_or("?")
    );
    if !config.is_object() {
        return Err(format!("{name}: has no pluginConfig object"));
    }
    Ok(Some(FoundConfig {
        origin: name,
        json: config.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_plugin_configs_in_both_kinds_and_skips_other_kinds() {
        let text = "\
apiVersion: v1
kind: ConfigMap
metadata: { name: unrelated }
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: a, namespace: ns }
spec: { url: oci://x, pluginConfig: { version: 1 } }
---
apiVersion: extensions.istio.io/v1alpha1
kind: TrafficExtension
metadata: { name: b, namespace: ns }
spec: { wasm: { url: oci://x, pluginConfig: { version: 2 } } }
";
        let found = plugin_configs(text).unwrap();
        let origins: Vec<&str> = found.iter().map(|f| f.origin.as_str()).collect();
        assert_eq!(origins, ["WasmPlugin ns/a", "TrafficExtension ns/b"]);
        assert_eq!(found[1].json["version"], 2);
    }

    #[test]
    fn finds_the_string_value_config_of_envoy_wasm_filters() {
        let text = r#"
static_resources:
  listeners:
    - filter_chains:
        - filters:
            - typed_config:
                http_filters:
                  - typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config:
                        name: latchkey
                        configuration:
                          "@type": type.googleapis.com/google.protobuf.StringValue
                          value: '{"version": 7}'
"#;
        let found = plugin_configs(text).unwrap();
        assert_eq!(found[0].origin, "Envoy wasm filter latchkey");
        assert_eq!(found[0].json["version"], 7);
    }

    #[test]
    fn takes_a_plain_json_config() {
        let found = plugin_configs(r#"{"version": 1, "vault": {}}"#).unwrap();
        assert_eq!(found[0].origin, "config");
        assert_eq!(found[0].json["version"], 1);
    }

    #[test]
    fn a_file_without_any_config_is_an_error() {
        assert!(plugin_configs("kind: Service\nmetadata: { name: x }\n").is_err());
        assert!(plugin_configs("").is_err());
        let without = "kind: WasmPlugin\nmetadata: { name: x }\nspec: { url: oci://x }\n";
        assert!(plugin_configs(without)
            .unwrap_err()
            .contains("no pluginConfig"));
    }
}
