//! An upstream that answers every request with a chosen status and a JSON echo of what it
//! received: `{"method", "path", "headers": [[name, value], ...], "body_length"}`, header names
//! lowercased, values kept as received, repeats kept as separate entries.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::error::Result;
use crate::http_server::{HttpServer, Reply};

/// The echo server; see the module docs. Stops when dropped.
pub struct EchoUpstream {
    server: HttpServer,
    status: Arc<AtomicU16>,
}

impl EchoUpstream {
    /// Binds 127.0.0.1:0 and starts answering.
    pub fn start() -> Result<EchoUpstream> {
        let status = Arc::new(AtomicU16::new(200));
        let answer = Arc::clone(&status);
        let server = HttpServer::start(
            "echo upstream",
            Arc::new(move |request| {
                let body = json!({
                    "method": request.method,
                    "path": request.path,
                    "headers": request.headers,
                    "body_length": request.body_length,
                });
                Reply::json(answer.load(Ordering::SeqCst), body.to_string())
            }),
        )?;
        Ok(EchoUpstream { server, status })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Makes every later response carry `status` (e.g. 401 to mimic a rejected credential).
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Requests answered so far.
    pub fn requests_served(&self) -> u64 {
        self.server.requests_served()
    }
}
