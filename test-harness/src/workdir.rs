//! One fresh directory per test under `<workspace>/target/e2e/<name>/`, holding every config file
//! and process log of that test. It is kept after the test for inspection; when the test panics,
//! dropping it prints the tail of each `*.log` so the failure shows what the processes said.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Lines of each log printed when a test panics.
const LOG_TAIL_LINES: usize = 200;

/// A test's working directory; see the module docs.
#[derive(Debug)]
pub struct TestDir {
    root: PathBuf,
}

impl TestDir {
    /// Creates `<workspace>/target/e2e/<name>/`, wiping what an earlier run left there.
    pub fn new(name: &str) -> Result<TestDir> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(Error::unexpected(
                "creating test directory",
                format!("{name:?} is not a plain directory name"),
            ));
        }

        let root = e2e_root().join(name);
        if root.exists() {
            fs::remove_dir_all(&root)
                .map_err(|e| Error::io(format!("wiping {}", root.display()), e))?;
        }
        fs::create_dir_all(&root)
            .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        Ok(TestDir { root })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path inside the directory; nothing is created.
    pub fn path(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }

    /// Writes `contents` to `file` inside the directory and returns its path.
    pub fn write(&self, file: &str, contents: impl AsRef<[u8]>) -> Result<PathBuf> {
        let path = self.path(file);
        fs::write(&path, contents)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(path)
    }

    /// Prints the tail of every `*.log` in the directory to stderr. Called on panic; a test that
    /// fails by returning an error can call it itself.
    pub fn dump_logs(&self) {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
            .collect();
        logs.sort();

        for log in logs {
            eprintln!(
                "===== {} (last {LOG_TAIL_LINES} lines) =====",
                log.display()
            );
            eprintln!("{}", tail(&log, LOG_TAIL_LINES));
        }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
    }
}

/// `<workspace>/target/e2e`, fixed at compile time so every test binary agrees on it.
fn e2e_root() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = crate_dir.parent().unwrap_or(crate_dir);
    workspace.join("target").join("e2e")
}

/// The last `lines` lines of a file, decoded lossily; empty when it cannot be read.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let Ok(bytes) = fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}
