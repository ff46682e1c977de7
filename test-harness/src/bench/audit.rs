//! OpenBao's audit log read incrementally: each call sees only the entries written since the
//! previous one, so counting the vault calls of one run stays cheap however long the log grows.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde_json::Value;

use crate::error::{Error, Result};

pub struct AuditTail {
    path: PathBuf,
    offset: u64,
}

/// Vault requests seen in one stretch of the audit log.
#[derive(Debug, Clone, Copy, Default)]
pub struct VaultCalls {
    pub reads: u64,
    pub logins: u64,
}

impl AuditTail {
    /// Starts at the current end of the log: earlier entries are never counted.
    pub fn from_end(path: PathBuf) -> Result<AuditTail> {
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Ok(AuditTail { path, offset })
    }

    /// Responses written since the last call: reads of `read_path` and cert logins.
    pub fn calls_since(&mut self, read_path: &str) -> Result<VaultCalls> {
        let action = || format!("reading {}", self.path.display());
        let mut file = File::open(&self.path).map_err(|e| Error::io(action(), e))?;
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|e| Error::io(action(), e))?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| Error::io(action(), e))?;
        // Only whole lines; a line being written is read next time.
        let complete = text.rfind('\n').map_or(0, |end| end + 1);
        self.offset += complete as u64;

        let mut calls = VaultCalls::default();
        let entries = text
            .get(..complete)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|entry| entry["type"] == "response");
        for entry in entries {
            let request = &entry["request"];
            match (request["operation"].as_str(), request["path"].as_str()) {
                (Some("read"), Some(path)) if path == read_path => calls.reads += 1,
                (Some("update"), Some(path)) if path.ends_with("/login") => calls.logins += 1,
                _ => {}
            }
        }
        Ok(calls)
    }
}
