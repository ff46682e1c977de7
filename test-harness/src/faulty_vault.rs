//! A vault stand-in for the faults real OpenBao cannot be made to produce: malformed or huge
//! bodies, HTML error pages, hangs, 429 with `Retry-After`, values that would split a header.
//! Logins always succeed with a fixed fake token; secret reads answer with the current fault.
//! Everything else (vault down, denied, sealed, missing secret) is tested against real OpenBao.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::Result;
use crate::http_server::{HttpServer, Reply};

/// The token the stand-in hands out; leak checks look for it.
pub const FAKE_VAULT_TOKEN: &str = "s.faultyvaulttoken0123456789";

/// How the stand-in answers secret reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A well-formed KV v2 answer with `api_key`.
    Healthy { api_key: String },
    /// 200 with this body, as it is.
    Body(Vec<u8>),
    /// This status with a small HTML page.
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    TooManyRequests { retry_after_secs: u32 },
    /// No answer for this long.
    Hang(Duration),
}

/// Records what it was asked, for assertions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calls {
    pub logins: u64,
    pub reads: u64,
}

pub struct FaultyVault {
    server: HttpServer,
    fault: Arc<Mutex<Fault>>,
    /// The `lease_duration` of every login answer: any JSON, so wrong types can be served too.
    login_lease: Arc<Mutex<Value>>,
    calls: Arc<Mutex<Calls>>,
}

impl FaultyVault {
    pub fn start(fault: Fault) -> Result<FaultyVault> {
        let fault = Arc::new(Mutex::new(fault));
        let calls = Arc::new(Mutex::new(Calls::default()));
        let login_lease = Arc::new(Mutex::new(json!(3600)));
        let (current, counted) = (Arc::clone(&fault), Arc::clone(&calls));
        let lease = Arc::clone(&login_lease);
        let server = HttpServer::start(
            "faulty vault",
            Arc::new(move |request| {
                let mut calls = counted.lock().unwrap_or_else(PoisonError::into_inner);
                if request.path.starts_with("/v1/auth/") {
                    calls.logins += 1;
                    let lease = lease.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    let auth = json!({ "auth": {
                        "client_token": FAKE_VAULT_TOKEN, "lease_duration": lease, "renewable": false
                    }});
                    return Reply::json(200, auth.to_string());
                }
                calls.reads += 1;
                let fault = current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                answer(&fault)
            }),
        )?;
        Ok(FaultyVault {
            server,
            fault,
            login_lease,
            calls,
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub fn set_fault(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = fault;
    }

    /// Serves `lease` as the `lease_duration` of the next logins.
    pub fn set_login_lease(&self, lease: Value) {
        *self
            .login_lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = lease;
    }

    pub fn calls(&self) -> Calls {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn answer(fault: &Fault) -> Reply {
    match fault {
        Fault::Healthy { api_key } => {
            let body = json!({ "data": { "data": { "api_key": api_key }, "metadata": {} } });
            Reply::json(200, body.to_string())
        }
        Fault::Body(body) => Reply::json(200, body.clone()),
        Fault::Status(status) => {
            let mut reply = Reply::json(*status, "<html><body>vault is unwell</body></html>");
            reply.headers = vec![("content-type".into(), "text/html".into())];
            reply
        }
        Fault::TooManyRequests { retry_after_secs } => {
            let mut reply = Reply::json(429, r#"{"errors":["rate limited"]}"#);
            reply
                .headers
                .push(("retry-after".into(), retry_after_secs.to_string()));
            reply
        }
        Fault::Hang(duration) => {
            let mut reply = Reply::json(503, "{}");
            reply.delay = Some(*duration);
            reply
        }
    }
}
