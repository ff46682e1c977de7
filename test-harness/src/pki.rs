//! A throw-away PKI made at run time: one CA per trust domain (the SPIFFE trust bundle),
//! X.509-SVIDs with exactly one URI SAN, and server certificates for localhost. Keys are ECDSA
//! P-256 and never leave the test directory.

use std::fmt;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::{Error, Result};

/// Trust domain of the PKI that [`Pki::new`] makes.
pub const TRUST_DOMAIN: &str = "example.org";

/// The proxy's own identity: the SVID Envoy presents to OpenBao, and the only one OpenBao's cert
/// role accepts.
pub const PROXY_SPIFFE_ID: &str = "spiffe://example.org/ns/latchkey/sa/gateway";

/// A typical calling workload, for tests that need one.
pub const WORKLOAD_SPIFFE_ID: &str = "spiffe://example.org/ns/payments/sa/checkout";

/// A CA for one trust domain; see the module docs.
pub struct Pki {
    trust_domain: String,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    /// A CA for [`TRUST_DOMAIN`].
    pub fn new() -> Result<Pki> {
        Pki::new_with_trust_domain(TRUST_DOMAIN)
    }

    /// A CA for another trust domain, unrelated to every other `Pki` (for negative tests).
    pub fn new_with_trust_domain(trust_domain: &str) -> Result<Pki> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("latchkey test CA {trust_domain}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];

        let ca_pem = params.self_signed(&key)?.pem();
        Ok(Pki {
            trust_domain: trust_domain.to_string(),
            ca_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// The trust domain this CA stands for.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes the CA certificate to `dir/file` and returns its path.
    pub fn write_ca(&self, dir: &Path, file: &str) -> Result<PathBuf> {
        write_file(&dir.join(file), &self.ca_pem)
    }

    /// An X.509-SVID for `spiffe_id`: one URI SAN, no DNS SAN, client and server auth. The ID is
    /// not checked against the trust domain, so tests can mint mismatching identities.
    pub fn svid(&self, spiffe_id: &str) -> Result<CertKey> {
        self.client_cert(&[spiffe_id])
    }

    /// An SVID that a client can also check as a server name: the one URI SAN plus DNS and IP
    /// SANs, which the X.509-SVID standard allows. For proxies that use one SVID both ways.
    pub fn server_svid(
        &self,
        spiffe_id: &str,
        dns_names: &[&str],
        ips: &[IpAddr],
    ) -> Result<CertKey> {
        let mut params = leaf_params("latchkey test proxy");
        params
            .subject_alt_names
            .push(SanType::URI(spiffe_id.try_into()?));
        for dns in dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName((*dns).try_into()?));
        }
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        self.sign(params)
    }

    /// A leaf like an SVID but with any number of URI SANs, for malformed-identity tests.
    pub fn client_cert(&self, uri_sans: &[&str]) -> Result<CertKey> {
        let mut params = leaf_params("latchkey test workload");
        for uri in uri_sans {
            params
                .subject_alt_names
                .push(SanType::URI((*uri).try_into()?));
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        self.sign(params)
    }

    /// A server certificate with the given DNS and IP SANs.
    pub fn server_cert(&self, dns_names: &[&str], ips: &[IpAddr]) -> Result<CertKey> {
        let subject = dns_names.first().copied().unwrap_or("latchkey test server");
        let mut params = leaf_params(subject);
        for dns in dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName((*dns).try_into()?));
        }
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// The usual server certificate: `localhost` and `127.0.0.1`.
    pub fn localhost_cert(&self) -> Result<CertKey> {
        self.server_cert(&["localhost"], &[IpAddr::from([127, 0, 0, 1])])
    }

    fn sign(&self, params: CertificateParams) -> Result<CertKey> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// A certificate and its private key (PKCS#8), both PEM.
#[derive(Clone)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Where [`CertKey::write`] put the two files.
#[derive(Debug, Clone)]
pub struct CertKeyPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertKey {
    /// Writes `dir/<stem>.crt` and `dir/<stem>.key`.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<CertKeyPaths> {
        Ok(CertKeyPaths {
            cert: write_file(&dir.join(format!("{stem}.crt")), &self.cert_pem)?,
            key: write_file(&dir.join(format!("{stem}.key")), &self.key_pem)?,
        })
    }

    /// Certificate followed by key, the form TLS clients take as an identity.
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

impl fmt::Debug for CertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

fn leaf_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "latchkey tests");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn write_file(path: &Path, contents: &str) -> Result<PathBuf> {
    fs::write(path, contents).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(path.to_path_buf())
}
