//! The load generator: keep-alive HTTP/1.1 connections over mTLS, each presenting the SVID of
//! one workload, one thread per connection.
//!
//! Open loop: connection `j` of `C` sends on its own fixed schedule (every `C / rate` seconds,
//! offset by `j / rate`) whatever the answers do, and latency counts from the intended send time.
//! A request held back by a slow answer is charged for its wait, so a stalling proxy cannot hide
//! behind the requests it delayed (coordinated omission). Closed loop: every connection sends
//! back to back; only its throughput means anything.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::error::{Error, Result};
use crate::pki::{CertKey, Pki};

/// Every thread but the driver's is a connection; a handshake needs little stack.
const CONNECTION_STACK: usize = 256 * 1024;
/// An answer slower than this counts as an error and the connection is opened again.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What every request asks for: the destination the latchkey binding matches.
#[derive(Debug, Clone)]
pub struct Target {
    pub port: u16,
    pub host: String,
    pub path: String,
}

impl Target {
    fn request(&self) -> Vec<u8> {
        format!("GET {} HTTP/1.1\r\nhost: {}\r\n\r\n", self.path, self.host).into_bytes()
    }
}

/// A TLS client configuration presenting `svid` and trusting only `pki`'s CA.
pub fn client_config(pki: &Pki, svid: &CertKey) -> Result<Arc<ClientConfig>> {
    let tls_error = |e: rustls::Error| Error::unexpected("building a TLS client", e.to_string());
    let pem_error = |what: &str| Error::unexpected("building a TLS client", format!("bad {what}"));

    let mut roots = RootCertStore::empty();
    let ca =
        CertificateDer::from_pem_slice(pki.ca_pem().as_bytes()).map_err(|_| pem_error("CA PEM"))?;
    roots.add(ca).map_err(tls_error)?;
    let chain = CertificateDer::pem_slice_iter(svid.cert_pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| pem_error("certificate PEM"))?;
    let key =
        PrivateKeyDer::from_pem_slice(svid.key_pem.as_bytes()).map_err(|_| pem_error("key PEM"))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(tls_error)?;
    Ok(Arc::new(config))
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// One keep-alive connection and the identity it was opened with.
struct Connection {
    stream: BufReader<Tls>,
    tls: Arc<ClientConfig>,
}

impl Connection {
    fn open(port: u16, tls: &Arc<ClientConfig>) -> io::Result<Connection> {
        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(READ_TIMEOUT))?;
        let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
        let session = ClientConnection::new(Arc::clone(tls), name).map_err(io::Error::other)?;
        Ok(Connection {
            stream: BufReader::new(StreamOwned::new(session, tcp)),
            tls: Arc::clone(tls),
        })
    }

    /// Sends one request and reads its whole answer; the status code.
    fn exchange(&mut self, request: &[u8]) -> io::Result<u16> {
        self.stream.get_mut().write_all(request)?;
        self.stream.get_mut().flush()?;

        let mut line = String::new();
        self.stream.read_line(&mut line)?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0;
        loop {
            line.clear();
            if self.stream.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().map_err(io::Error::other)?;
                }
            }
        }
        let copied = io::copy(&mut (&mut self.stream).take(length), &mut io::sink())?;
        if copied < length {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(status)
    }

    /// One exchange; after an I/O error the connection is opened again for the next one.
    fn exchange_or_reopen(&mut self, port: u16, request: &[u8]) -> std::result::Result<(), String> {
        match self.exchange(request) {
            Ok(200) => Ok(()),
            Ok(status) => Err(format!("status {status}")),
            Err(err) => {
                if let Ok(fresh) = Connection::open(port, &self.tls) {
                    *self = fresh;
                }
                Err(err.to_string())
            }
        }
    }
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct RunResult {
    /// Per answered request, from intended (open loop) or actual (closed loop) send time.
    pub latencies_ns: Vec<u64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

impl RunResult {
    pub fn requests(&self) -> u64 {
        self.latencies_ns.len() as u64
    }

    pub fn throughput(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64()
    }

    fn merge(&mut self, other: ConnectionResult) {
        self.latencies_ns.extend(other.latencies_ns);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

#[derive(Default)]
struct ConnectionResult {
    latencies_ns: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl ConnectionResult {
    fn record(&mut self, outcome: std::result::Result<(), String>, latency: Duration) {
        match outcome {
            Ok(()) => self
                .latencies_ns
                .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX)),
            Err(err) => {
                self.errors += 1;
                self.first_error.get_or_insert(err);
            }
        }
    }
}

/// Keep-alive connections to one Envoy listener, opened once and reused by every run.
pub struct Pool {
    target: Target,
    request: Vec<u8>,
    connections: Vec<Connection>,
    /// What [`Pool::unpark`] opens again.
    identities: Vec<Arc<ClientConfig>>,
    size: usize,
    parallel: usize,
}

impl Pool {
    /// Opens `connections` connections, connection `i` presenting `identities[i % len]`, and
    /// sends one request on each (so a latchkey cache holds every identity's credential),
    /// `parallel` connections at a time.
    pub fn open(
        target: Target,
        identities: &[Arc<ClientConfig>],
        connections: usize,
        parallel: usize,
    ) -> Result<Pool> {
        if identities.is_empty() {
            return Err(Error::unexpected("opening connections", "no identities"));
        }
        let request = target.request();
        let all = connect(&target, &request, identities, connections, parallel)?;
        Ok(Pool {
            target,
            request,
            connections: all,
            identities: identities.to_vec(),
            size: connections,
            parallel,
        })
    }

    /// Closes every connection; [`Pool::unpark`] opens them again. Two pools of 10,000
    /// connections do not fit in the open-file limit of a container that cannot raise it.
    pub fn park(&mut self) {
        self.connections.clear();
    }

    /// Opens the connections [`Pool::park`] closed, each with its first request again.
    pub fn unpark(&mut self) -> Result<()> {
        if self.connections.is_empty() {
            self.connections = connect(
                &self.target,
                &self.request,
                &self.identities,
                self.size,
                self.parallel,
            )?;
        }
        Ok(())
    }

    /// How many connections the pool has when open.
    pub fn size(&self) -> usize {
        self.size
    }
}

/// Opens `connections` connections, `parallel` at a time, and sends `request` on each.
fn connect(
    target: &Target,
    request: &[u8],
    identities: &[Arc<ClientConfig>],
    connections: usize,
    parallel: usize,
) -> Result<Vec<Connection>> {
    let chunk = connections.div_ceil(parallel.max(1));
    let opened: Vec<io::Result<Vec<Connection>>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .step_by(chunk.max(1))
            .map(|first| {
                scope.spawn(move || {
                    let last = (first + chunk).min(connections);
                    (first..last)
                        .map(|i| {
                            let tls = &identities[i % identities.len()];
                            let mut connection = Connection::open(target.port, tls)?;
                            match connection.exchange(request)? {
                                200 => Ok(connection),
                                status => Err(io::Error::other(format!("status {status}"))),
                            }
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("panicked")))
            })
            .collect()
    });

    let mut all = Vec::with_capacity(connections);
    for batch in opened {
        let batch = batch.map_err(|e| Error::io("opening a benchmark connection", e))?;
        all.extend(batch);
    }
    Ok(all)
}

impl Pool {
    pub fn len(&self) -> usize {
        self.connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    /// One request on the first connection, timed.
    pub fn single(&mut self) -> std::result::Result<Duration, String> {
        let (port, request) = (self.target.port, &self.request[..]);
        let connection = self.connections.first_mut().ok_or("no connection")?;
        let sent_at = Instant::now();
        connection.exchange_or_reopen(port, request)?;
        Ok(sent_at.elapsed())
    }

    /// The first `count` connections alone, e.g. to hold concurrency equal across pools.
    pub fn closed_loop_on(&mut self, count: usize, duration: Duration) -> RunResult {
        let rest = self
            .connections
            .split_off(count.min(self.connections.len()));
        let result = self.closed_loop(duration);
        self.connections.extend(rest);
        result
    }

    /// `rate` requests per second in total for `duration`, each connection on its own schedule.
    pub fn open_loop(&mut self, rate: f64, duration: Duration) -> RunResult {
        let count = self.connections.len();
        let period = Duration::from_secs_f64(count as f64 / rate);
        self.run(duration, move |j, start| {
            let first = start + Duration::from_secs_f64(j as f64 / rate);
            Schedule::Fixed {
                next: first,
                period,
            }
        })
    }

    /// Every connection sends back to back for `duration`.
    pub fn closed_loop(&mut self, duration: Duration) -> RunResult {
        self.run(duration, |_, _| Schedule::BackToBack)
    }

    fn run(
        &mut self,
        duration: Duration,
        schedule: impl Fn(usize, Instant) -> Schedule + Sync,
    ) -> RunResult {
        let gate = StartGate::default();
        let (port, request) = (self.target.port, &self.request[..]);
        let (gate, schedule) = (&gate, &schedule);

        let mut result = RunResult::default();
        thread::scope(|scope| {
            let mut handles = Vec::new();
            for (j, connection) in self.connections.iter_mut().enumerate() {
                let spawned = thread::Builder::new()
                    .stack_size(CONNECTION_STACK)
                    .spawn_scoped(scope, move || {
                        let start = gate.wait();
                        if let Some(wait) = start.checked_duration_since(Instant::now()) {
                            thread::sleep(wait);
                        }
                        drive(
                            connection,
                            port,
                            request,
                            schedule(j, start),
                            start + duration,
                        )
                    });
                match spawned {
                    Ok(handle) => handles.push(handle),
                    Err(err) => {
                        result.errors += 1;
                        result.first_error = Some(format!("cannot start a load thread: {err}"));
                        break;
                    }
                }
            }
            // The start is fixed only once every thread exists, and leaves them time to wake
            // from the gate (about 10 µs each on a busy core), so that none starts late.
            let settle =
                Duration::from_millis(20) + Duration::from_micros(10) * handles.len() as u32;
            gate.open(Instant::now() + settle);
            for handle in handles {
                if let Ok(done) = handle.join() {
                    result.merge(done);
                }
            }
        });
        result.elapsed = duration;
        result
    }
}

/// Holds every load thread until the common start time is known.
#[derive(Default)]
struct StartGate {
    start: Mutex<Option<Instant>>,
    opened: Condvar,
}

impl StartGate {
    fn open(&self, start: Instant) {
        *self.start.lock().unwrap_or_else(PoisonError::into_inner) = Some(start);
        self.opened.notify_all();
    }

    fn wait(&self) -> Instant {
        let mut start = self.start.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(start) = *start {
                return start;
            }
            start = self
                .opened
                .wait(start)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

enum Schedule {
    Fixed { next: Instant, period: Duration },
    BackToBack,
}

fn drive(
    connection: &mut Connection,
    port: u16,
    request: &[u8],
    mut schedule: Schedule,
    end: Instant,
) -> ConnectionResult {
    let mut result = ConnectionResult::default();
    loop {
        let sent_at = match &mut schedule {
            Schedule::Fixed { next, period } => {
                let intended = *next;
                if intended >= end {
                    return result;
                }
                *next += *period;
                if let Some(wait) = intended.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                intended
            }
            Schedule::BackToBack => {
                let now = Instant::now();
                if now >= end {
                    return result;
                }
                now
            }
        };
        let outcome = connection.exchange_or_reopen(port, request);
        result.record(outcome, sent_at.elapsed());
    }
}
