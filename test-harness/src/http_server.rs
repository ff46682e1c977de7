//! A small HTTP/1.1 server on 127.0.0.1 for tests: a thread per connection, keep-alive
//! honoured, chunked and sized request bodies read, every reply computed by a handler. The echo
//! upstream and the faulty vault are handlers on it. Everything stops when it is dropped.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::error::{Error, Result};

/// Largest request head accepted; Envoy's own default limit is 60 KiB.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A request as received: names lowercased, values as sent, repeats kept.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body_length: u64,
    keep_alive: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the handler answers. `delay` holds the reply back (a slow or hanging server).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Option<Duration>,
}

impl Reply {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        let headers = vec![("content-type".to_string(), "application/json".to_string())];
        Reply {
            status,
            headers,
            body: body.into(),
            delay: None,
        }
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

pub struct HttpServer {
    port: u16,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

struct State {
    handler: Handler,
    served: AtomicU64,
    shutdown: AtomicBool,
    next_connection: AtomicU64,
    /// Open connections, so that drop can unblock their reader threads.
    connections: Mutex<HashMap<u64, TcpStream>>,
}

impl HttpServer {
    /// Binds 127.0.0.1:0 and starts accepting in a background thread.
    pub fn start(name: &str, handler: Handler) -> Result<HttpServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| Error::io(format!("binding the {name}"), e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io(format!("reading the {name} port"), e))?
            .port();

        let state = Arc::new(State {
            handler,
            served: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            next_connection: AtomicU64::new(0),
            connections: Mutex::new(HashMap::new()),
        });
        let acceptor = {
            let state = Arc::clone(&state);
            thread::Builder::new()
                .name(format!("{name}-{port}"))
                .spawn(move || accept_loop(listener, state))
                .map_err(|e| Error::io(format!("starting the {name} thread"), e))?
        };
        Ok(HttpServer {
            port,
            state,
            acceptor: Some(acceptor),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Requests answered so far.
    pub fn requests_served(&self) -> u64 {
        self.state.served.load(Ordering::SeqCst)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.state.shutdown.store(true, Ordering::SeqCst);
        // accept() only returns on a connection, so make one.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }

        let connections = self
            .state
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for stream in connections.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    for stream in listener.incoming() {
        if state.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            continue;
        };
        let _ = stream.set_nodelay(true);

        let id = state.next_connection.fetch_add(1, Ordering::SeqCst);
        if let Ok(handle) = stream.try_clone() {
            state
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, handle);
        }
        let state = Arc::clone(&state);
        // Detached: a connection thread ends when its peer closes or drop shuts the socket.
        let _ = thread::Builder::new()
            .name(format!("http-conn-{id}"))
            .spawn(move || {
                let _ = serve_connection(&stream, &state);
                state
                    .connections
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
            });
    }
}

fn serve_connection(stream: &TcpStream, state: &State) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut writer = stream;
    loop {
        let Some(request) = read_request(&mut reader)? else {
            return Ok(());
        };

        let reply = (state.handler)(&request);
        if let Some(delay) = reply.delay {
            thread::sleep(delay);
        }
        let connection = if request.keep_alive {
            "keep-alive"
        } else {
            "close"
        };
        let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "content-length: {}\r\nconnection: {connection}\r\n\r\n",
            reply.body.len()
        ));
        // One write: head and body in separate segments would wait out the peer's delayed ACK.
        let mut message = head.into_bytes();
        message.extend_from_slice(&reply.body);
        writer.write_all(&message)?;
        writer.flush()?;
        state.served.fetch_add(1, Ordering::SeqCst);

        if !request.keep_alive {
            return Ok(());
        }
    }
}

/// Reads one request; `None` when the peer closed the connection between requests.
fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let Some(request_line) = read_line(reader)? else {
        return Ok(None);
    };
    let mut parts = request_line.split(' ');
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("malformed request line"));
    };
    let (method, path) = (method.to_string(), path.to_string());
    let mut keep_alive = version == "HTTP/1.1";

    let mut headers = Vec::new();
    let mut head_bytes = request_line.len();
    loop {
        let line = read_line(reader)?.ok_or_else(|| invalid("connection closed in headers"))?;
        if line.is_empty() {
            break;
        }
        head_bytes += line.len();
        if head_bytes > MAX_HEAD_BYTES {
            return Err(invalid("request head too large"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid("header line without a colon"));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }

    let header = |wanted: &'static str| lowercase_values(&headers, wanted);
    if let Some(connection) = header("connection").last() {
        keep_alive = match connection.as_str() {
            "close" => false,
            "keep-alive" => true,
            _ => keep_alive,
        };
    }
    let chunked = header("transfer-encoding").any(|v| v.contains("chunked"));
    let body_length = if chunked {
        read_chunked_body(reader)?
    } else {
        let length = header("content-length").next().unwrap_or_default();
        let length: u64 = if length.is_empty() {
            0
        } else {
            length.parse().map_err(|_| invalid("bad content-length"))?
        };
        discard(reader, length)?
    };

    Ok(Some(Request {
        method,
        path,
        headers,
        body_length,
        keep_alive,
    }))
}

fn lowercase_values<'a>(
    headers: &'a [(String, String)],
    wanted: &'a str,
) -> impl Iterator<Item = String> + 'a {
    headers
        .iter()
        .filter(move |(name, _)| name == wanted)
        .map(|(_, value)| value.to_ascii_lowercase())
}

fn read_chunked_body(reader: &mut impl BufRead) -> io::Result<u64> {
    let mut total = 0;
    loop {
        let line = read_line(reader)?.ok_or_else(|| invalid("connection closed in body"))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while read_line(reader)?.is_some_and(|trailer| !trailer.is_empty()) {}
            return Ok(total);
        }
        total += discard(reader, size)?;
        read_line(reader)?;
    }
}

/// Reads and drops exactly `length` bytes.
fn discard(reader: &mut impl BufRead, length: u64) -> io::Result<u64> {
    let copied = io::copy(&mut reader.take(length), &mut io::sink())?;
    if copied < length {
        return Err(invalid("connection closed in body"));
    }
    Ok(copied)
}

/// One CRLF-terminated line without its terminator, decoded lossily; `None` at end of stream.
fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let read = reader
        .take(MAX_HEAD_BYTES as u64)
        .read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
