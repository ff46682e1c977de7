//! Free TCP ports on 127.0.0.1, found by binding port 0 and releasing it. Another process can take
//! the port before the caller binds it, so starters that pick ports retry on a bind failure.

use std::net::{Ipv4Addr, TcpListener};

use crate::error::{Error, Result};

/// Attempts at finding two adjacent free ports before giving up.
const PAIR_ATTEMPTS: usize = 50;

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = bind(0)?;
    local_port(&listener)
}

/// A port P such that P and P + 1 were both free on 127.0.0.1; OpenBao's dev mode takes P + 1 as
/// its cluster port.
pub fn free_port_pair() -> Result<u16> {
    for _ in 0..PAIR_ATTEMPTS {
        let first = bind(0)?;
        let port = local_port(&first)?;
        let Some(next) = port.checked_add(1) else {
            continue;
        };
        if bind(next).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::unexpected(
        "finding two adjacent free ports",
        format!("none found in {PAIR_ATTEMPTS} attempts"),
    ))
}

fn bind(port: u16) -> Result<TcpListener> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .map_err(|e| Error::io(format!("binding 127.0.0.1:{port}"), e))
}

fn local_port(listener: &TcpListener) -> Result<u16> {
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| Error::io("reading a bound port", e))
}
