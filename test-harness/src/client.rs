//! The calling workload: an HTTPS client that trusts only the test CA, optionally presents an
//! SVID, and sends to `https://127.0.0.1:<port>` with any `Host` header, because the filter picks
//! its binding by host. Headers may repeat; responses come back whole, whatever their status.

use std::time::Duration;

use reqwest::blocking;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Certificate, Identity, Method};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::pki::{CertKey, Pki};

/// Per-request timeout; long enough for a cold vault fetch, short enough to fail a hung test.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTPS client for requests through Envoy.
#[derive(Debug, Clone)]
pub struct Client {
    http: blocking::Client,
}

impl Client {
    /// Trusts only `pki`'s CA; presents `svid` as client certificate when given.
    pub fn new(pki: &Pki, svid: Option<&CertKey>) -> Result<Client> {
        Self::with_timeout(pki, svid, TIMEOUT)
    }

    /// Like [`Client::new`], giving up on a request after `timeout` (and closing it).
    pub fn with_timeout(pki: &Pki, svid: Option<&CertKey>, timeout: Duration) -> Result<Client> {
        let ca = Certificate::from_pem(pki.ca_pem().as_bytes())
            .map_err(|e| Error::http("loading the test CA", e))?;
        let mut builder = blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .no_proxy()
            .timeout(timeout);
        if let Some(svid) = svid {
            let identity = Identity::from_pem(svid.identity_pem().as_bytes())
                .map_err(|e| Error::http("loading the client certificate", e))?;
            builder = builder.identity(identity);
        }

        let http = builder
            .build()
            .map_err(|e| Error::http("building the HTTPS client", e))?;
        Ok(Client { http })
    }

    /// `GET https://127.0.0.1:<port><path>` with `Host: <host>` and `headers` (repeats kept).
    pub fn get(
        &self,
        port: u16,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response> {
        self.request("GET", port, host, path, headers, "")
    }

    /// Like [`Client::get`], with header values as raw bytes (for values that are not UTF-8).
    pub fn get_raw(
        &self,
        port: u16,
        host: &str,
        path: &str,
        headers: &[(&str, &[u8])],
    ) -> Result<Response> {
        let action = format!("GET {host}{path} via port {port}");
        let mut header_map = HeaderMap::new();
        header_map.insert(
            "host",
            HeaderValue::from_str(host).map_err(|_| Error::unexpected(&action, "invalid host"))?,
        );
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::unexpected(&action, format!("invalid header name {name:?}")))?;
            let value = HeaderValue::from_bytes(value)
                .map_err(|_| Error::unexpected(&action, format!("invalid value for {name}")))?;
            header_map.append(name, value);
        }
        let url = format!("https://127.0.0.1:{port}{path}");
        let response = self
            .http
            .get(url)
            .headers(header_map)
            .send()
            .map_err(|e| Error::http(&action, e))?;
        Response::read(response, &action)
    }

    /// Like [`Client::get`] with any method and body.
    pub fn request(
        &self,
        method: &str,
        port: u16,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Response> {
        let action = format!("{method} {host}{path} via port {port}");
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| Error::unexpected(&action, "invalid method"))?;

        let mut header_map = HeaderMap::new();
        for (name, value) in std::iter::once(&("host", host)).chain(headers) {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::unexpected(&action, format!("invalid header name {name:?}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| Error::unexpected(&action, format!("invalid value for {name}")))?;
            header_map.append(name, value);
        }

        let url = format!("https://127.0.0.1:{port}{path}");
        let mut request = self.http.request(method, url).headers(header_map);
        // An empty body would still add `content-length: 0`, which a GET does not carry.
        if !body.is_empty() {
            request = request.body(body.to_string());
        }
        let response = request.send().map_err(|e| Error::http(&action, e))?;
        Response::read(response, &action)
    }
}

impl Response {
    fn read(response: blocking::Response, action: &str) -> Result<Response> {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect();
        let body = response.text().map_err(|e| Error::http(action, e))?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// A response as received.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lowercased names, in order, repeats kept.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body)
            .map_err(|e| Error::unexpected("parsing a response body as JSON", e.to_string()))
    }

    /// The body parsed as the echo upstream's answer.
    pub fn echoed(&self) -> Result<Echoed> {
        serde_json::from_str(&self.body).map_err(|e| {
            let detail = format!("{e} (status {}, body {:?})", self.status, self.body);
            Error::unexpected("parsing the echo upstream's answer", detail)
        })
    }
}

/// What the echo upstream saw.
#[derive(Debug, Clone, Deserialize)]
pub struct Echoed {
    pub method: String,
    pub path: String,
    /// Lowercased names, in order, repeats kept.
    pub headers: Vec<(String, String)>,
    pub body_length: u64,
}

impl Echoed {
    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The first value of header `name`, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
