//! `latchkey-oci` on the real module: the layout is what Istio's fetcher reads (two layers, the
//! second the module byte for byte), every digest matches its content, the same module gives the
//! same bytes twice, and a real registry (Debian's docker-registry, pushed to with skopeo on
//! loopback) serves the image back under the very digest `sha256:` must name.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use latchkey_cli::oci::{sha256_hex, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE};
use latchkey_test_harness::ports::free_port;
use latchkey_test_harness::{wasm_module, ManagedProcess, TestDir};
use serde_json::Value;

const TAG: &str = "0.1.0";

/// Runs latchkey-oci into `out`; returns the printed digest.
fn build(out: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_latchkey-oci"))
        .arg("--module")
        .arg(wasm_module().unwrap())
        .arg("--out")
        .arg(out)
        .args(["--tag", TAG])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = text.lines().find(|l| l.starts_with("digest:")).unwrap();
    line.trim_start_matches("digest:").trim().to_string()
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(
        sha256_hex(&bytes),
        hex,
        "blob {digest} does not hash to its name"
    );
    bytes
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn image_layout_holds_the_module_and_is_reproducible() {
    let dir = TestDir::new("oci_image_layout").unwrap();
    let digest = build(&dir.path("first"));
    assert_eq!(build(&dir.path("second")), digest);
    let tar = |run: &str| fs::read(dir.path(run).join("latchkey-filter.tar")).unwrap();
    assert_eq!(
        tar("first"),
        tar("second"),
        "same module, different tarball"
    );

    let layout = dir.path("first").join("latchkey-filter");
    let marker = json(&fs::read(layout.join("oci-layout")).unwrap());
    assert_eq!(marker["imageLayoutVersion"], "1.0.0");
    let index = json(&fs::read(layout.join("index.json")).unwrap());
    let entry = &index["manifests"][0];
    assert_eq!(entry["digest"], digest.as_str());
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        TAG
    );

    let manifest_bytes = blob(&layout, &digest);
    assert_eq!(entry["size"], manifest_bytes.len());
    let manifest = json(&manifest_bytes);
    assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG_MEDIA_TYPE);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        2,
        "Istio's oci variant wants exactly two layers"
    );
    for layer in layers {
        let bytes = blob(&layout, layer["digest"].as_str().unwrap());
        assert_eq!(layer["size"], bytes.len());
    }
    let runtime = json(&blob(
        &layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    assert_eq!(runtime["type"], "envoy_proxy");
    assert_eq!(layers[1]["mediaType"], WASM_LAYER_MEDIA_TYPE);
    let module = fs::read(wasm_module().unwrap()).unwrap();
    assert_eq!(blob(&layout, layers[1]["digest"].as_str().unwrap()), module);

    // The tarball holds the same files, with nothing of the build machine in its headers.
    let mut archive =
        tar::Archive::new(fs::File::open(dir.path("first").join("latchkey-filter.tar")).unwrap());
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        assert_eq!(
            (
                header.mtime().unwrap(),
                header.uid().unwrap(),
                header.gid().unwrap()
            ),
            (0, 0, 0)
        );
        names.push(entry.path().unwrap().to_string_lossy().into_owned());
    }
    assert!(names.contains(&"index.json".to_string()) && names.contains(&"oci-layout".to_string()));
    assert!(names.contains(&format!(
        "blobs/sha256/{}",
        digest.trim_start_matches("sha256:")
    )));
}

/// A tool the Makefile installs from Debian and exports the path of.
fn tool(var: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_default();
    assert!(
        path.is_file(),
        "{var} is not set to an existing file; `make registry-tools` installs it (Debian package)"
    );
    path
}

struct Registry {
    port: u16,
    _process: ManagedProcess,
}

fn start_registry(dir: &TestDir) -> Registry {
    let port = free_port().unwrap();
    let config = format!(
        "version: 0.1\nlog: {{ level: warn }}\n\
         storage: {{ filesystem: {{ rootdirectory: {} }} }}\n\
         http: {{ addr: 127.0.0.1:{port} }}\n",
        dir.path("registry-data").display()
    );
    let config_path = dir.write("registry.yml", config).unwrap();
    let mut command = Command::new(tool("LATCHKEY_REGISTRY"));
    command.arg("serve").arg(config_path);
    let process = ManagedProcess::spawn("registry", command, &dir.path("registry.log")).unwrap();

    let url = format!("http://127.0.0.1:{port}/v2/");
    let deadline = Instant::now() + Duration::from_secs(10);
    while reqwest::blocking::get(&url).map_or(true, |r| !r.status().is_success()) {
        assert!(
            Instant::now() < deadline,
            "registry not ready:\n{}",
            process.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry {
        port,
        _process: process,
    }
}

fn skopeo(args: &[&str]) {
    let output = Command::new(tool("LATCHKEY_SKOPEO"))
        .arg("--insecure-policy")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn registry_serves_the_pushed_image_under_the_same_digest() {
    let dir = TestDir::new("oci_image_registry").unwrap();
    let digest = build(&dir.path("image"));
    let layout = dir.path("image").join("latchkey-filter");
    let registry = start_registry(&dir);
    let repository = format!("127.0.0.1:{}/latchkey/latchkey-filter", registry.port);

    let source = format!("oci:{}:{TAG}", layout.display());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &source,
        &format!("docker://{repository}:{TAG}"),
    ]);

    // What Istio's fetcher does: the manifest by tag, its digest, then the wasm layer.
    let http = reqwest::blocking::Client::new();
    let base = format!(
        "http://127.0.0.1:{}/v2/latchkey/latchkey-filter",
        registry.port
    );
    let response = http
        .get(format!("{base}/manifests/{TAG}"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let served = response.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        served, digest,
        "the registry names the image by another digest"
    );
    let manifest = json(&response.bytes().unwrap());
    let layer = manifest["layers"][1]["digest"].as_str().unwrap();
    let module = http
        .get(format!("{base}/blobs/{layer}"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(
        module.as_ref(),
        fs::read(wasm_module().unwrap()).unwrap().as_slice()
    );

    // And a second client pulls it back into a layout with the same manifest.
    let pulled = dir.path("pulled");
    let target = format!("oci:{}:{TAG}", pulled.display());
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{repository}:{TAG}"),
        &target,
    ]);
    let index = json(&fs::read(pulled.join("index.json")).unwrap());
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
}
