//! The filter module as an OCI image in the *oci* variant of the Wasm image specification that
//! Istio pulls: a runtime config (`application/vnd.module.wasm.config.v1+json`) as the manifest's
//! config and first layer, and the module itself, byte for byte, as the second layer
//! (`application/vnd.module.wasm.content.layer.v1+wasm`). Istio's fetcher takes the layer of
//! that media type among exactly two layers, and checks `sha256` against the manifest digest.
//!
//! Written as an OCI image layout (a directory and a tar of it) with no timestamps, owners or
//! file-system order in it: the same module always gives the same bytes and the same digest.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// The filter's root context name (`pluginName` in Istio).
pub const ROOT_ID: &str = "latchkey";

/// A content-addressed blob.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Self {
        Self { media_type, bytes }
    }

    /// `sha256:<hex>`.
    pub fn digest(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.bytes))
    }

    fn descriptor(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest(), "size": self.bytes.len() })
    }
}

/// The image, ready to be written.
#[derive(Debug, Clone)]
pub struct Image {
    pub tag: String,
    pub runtime_config: Blob,
    pub module: Blob,
    pub manifest: Blob,
}

impl Image {
    pub fn new(module: Vec<u8>, tag: &str, version: &str) -> Image {
        let runtime = json!({
            "type": "envoy_proxy",
            "abiVersions": ["v0.2.1"],
            "config": { "rootIds": [ROOT_ID] },
        });
        let runtime_config = Blob::new(WASM_CONFIG_MEDIA_TYPE, to_bytes(&runtime));
        let module = Blob::new(WASM_LAYER_MEDIA_TYPE, module);

        let titled = |blob: &Blob, title: &str| {
            let mut descriptor = blob.descriptor();
            descriptor["annotations"] = json!({ "org.opencontainers.image.title": title });
            descriptor
        };
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": runtime_config.descriptor(),
            "layers": [
                titled(&runtime_config, "runtime-config.json"),
                titled(&module, "plugin.wasm"),
            ],
            "annotations": {
                "org.opencontainers.image.title": "latchkey-filter",
                "org.opencontainers.image.version": version,
            },
        });
        Image {
            tag: tag.to_string(),
            runtime_config,
            module,
            manifest: Blob::new(MANIFEST_MEDIA_TYPE, to_bytes(&manifest)),
        }
    }

    /// The manifest digest: what Istio's `sha256` must hold (without the `sha256:` prefix).
    pub fn digest(&self) -> String {
        self.manifest.digest()
    }

    /// Every file of the image layout, by relative path, in a fixed order.
    pub fn layout_files(&self) -> Vec<(String, Vec<u8>)> {
        let mut manifest = self.manifest.descriptor();
        manifest["annotations"] = json!({ "org.opencontainers.image.ref.name": self.tag });
        let index = json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [manifest],
        });
        let mut files = vec![
            (
                "oci-layout".to_string(),
                to_bytes(&json!({ "imageLayoutVersion": "1.0.0" })),
            ),
            ("index.json".to_string(), to_bytes(&index)),
        ];
        let mut blobs: Vec<&Blob> = vec![&self.runtime_config, &self.module, &self.manifest];
        blobs.sort_by_key(|blob| blob.digest());
        for blob in blobs {
            let path = format!("blobs/sha256/{}", sha256_hex(&blob.bytes));
            files.push((path, blob.bytes.clone()));
        }
        files
    }

    /// Writes the layout into `dir` (replacing what is there).
    pub fn write_layout(&self, dir: &Path) -> io::Result<()> {
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        for (path, bytes) in self.layout_files() {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(path, bytes)?;
        }
        Ok(())
    }

    /// The layout as a tar: ustar entries sorted by path, mtime 0, owner 0:0, mode 0644/0755.
    pub fn tar(&self) -> io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut header = fixed_header(tar::EntryType::Directory, 0o755, 0);
            builder.append_data(&mut header, dir, io::empty())?;
        }
        let mut files = self.layout_files();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, bytes) in files {
            let mut header = fixed_header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
            builder.append_data(&mut header, path, bytes.as_slice())?;
        }
        builder.into_inner()
    }
}

fn fixed_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Writes `<out>/<name>/` (the layout) and `<out>/<name>.tar`; returns both paths.
pub fn write(image: &Image, out: &Path, name: &str) -> io::Result<(PathBuf, PathBuf)> {
    fs::create_dir_all(out)?;
    let layout = out.join(name);
    image.write_layout(&layout)?;
    let tarball = out.join(format!("{name}.tar"));
    fs::write(&tarball, image.tar()?)?;
    Ok((layout, tarball))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// serde_json keeps keys sorted here, so equal values always give equal bytes.
fn to_bytes(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_module_same_bytes_and_digest() {
        let a = Image::new(b"\0asm\x01\0\0\0".to_vec(), "0.1.0", "0.1.0");
        let b = Image::new(b"\0asm\x01\0\0\0".to_vec(), "0.1.0", "0.1.0");
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.tar().unwrap(), b.tar().unwrap());
        let c = Image::new(b"\0asm\x01\0\0\0\0".to_vec(), "0.1.0", "0.1.0");
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn manifest_has_the_two_layers_istio_expects() {
        let image = Image::new(b"\0asm".to_vec(), "t", "v");
        let manifest: Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
        let types: Vec<&str> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|layer| layer["mediaType"].as_str().unwrap())
            .collect();
        assert_eq!(types, [WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE]);
        assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG_MEDIA_TYPE);
        assert_eq!(manifest["layers"][1]["digest"], image.module.digest());
    }
}
