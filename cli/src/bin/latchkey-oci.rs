//! `latchkey-oci`: packs the filter module as an OCI image layout (directory and tar) for
//! Istio's WasmPlugin and prints the digest to put in `sha256`. See `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use latchkey_cli::oci::{self, Image};

const USAGE: &str = "\
usage: latchkey-oci --module FILE --out DIR [--tag TAG]

Writes DIR/latchkey-filter/ (an OCI image layout) and DIR/latchkey-filter.tar, and prints the
manifest digest. The same module always gives the same digest. TAG defaults to the version.";

const NAME: &str = "latchkey-filter";

fn main() -> ExitCode {
    let mut module = None;
    let mut out = None;
    let mut tag = env!("CARGO_PKG_VERSION").to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--module", Some(value)) => module = Some(PathBuf::from(value)),
            ("--out", Some(value)) => out = Some(PathBuf::from(value)),
            ("--tag", Some(value)) => tag = value,
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(module), Some(out)) = (module, out) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };

    let bytes = match std::fs::read(&module) {
        Ok(bytes) if bytes.starts_with(b"\0asm") => bytes,
        Ok(_) => {
            eprintln!("latchkey-oci: {} is not a wasm module", module.display());
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("latchkey-oci: {}: {e}", module.display());
            return ExitCode::from(2);
        }
    };
    let image = Image::new(bytes, &tag, env!("CARGO_PKG_VERSION"));
    match oci::write(&image, &out, NAME) {
        Ok((layout, tarball)) => {
            println!("layout:  {}  (tag {tag})", layout.display());
            println!("tarball: {}", tarball.display());
            println!("digest:  {}", image.digest());
            let hex = image.digest().trim_start_matches("sha256:").to_string();
            println!("WasmPlugin / TrafficExtension:  sha256: {hex}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("latchkey-oci: writing {}: {e}", out.display());
            ExitCode::from(2)
        }
    }
}
