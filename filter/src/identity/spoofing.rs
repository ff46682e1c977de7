//! Identity-carrying headers that the upstream must not believe. A caller can send any header;
//! only the ones the config names as a trusted source may pass, the rest are removed on every
//! request, bound or not, so an upstream never mistakes them for the mesh's word.

use super::{IdentitySettings, Source};

pub const XFCC_HEADER: &str = "x-forwarded-client-cert";
/// The filter's own headers (`x-latchkey-caller` to the vault, `x-latchkey-error` in replies).
pub const OWN_HEADER_PREFIX: &str = "x-latchkey-";

/// The names among `headers` to remove before the request goes upstream, each once.
pub fn spoofed_headers(settings: &IdentitySettings, headers: &[(String, Vec<u8>)]) -> Vec<String> {
    let xfcc_trusted = settings.uses(Source::Xfcc) && settings.xfcc.is_some();
    let jwt_header = settings
        .jwt_svid
        .as_ref()
        .filter(|jwt| !jwt.forward)
        .map(|jwt| jwt.header.as_str());

    let mut spoofed: Vec<String> = Vec::new();
    for (name, _) in headers {
        let name = name.to_ascii_lowercase();
        let untrusted = (name == XFCC_HEADER && !xfcc_trusted)
            || Some(name.as_str()) == jwt_header
            || name.starts_with(OWN_HEADER_PREFIX);
        if untrusted && !spoofed.contains(&name) {
            spoofed.push(name);
        }
    }
    spoofed
}

#[cfg(test)]
mod tests {
    use super::*;
    // The same tables run on wasm32 under wasm-bindgen-test (`make wasm-test`).
    use crate::identity::{TrustDomains, XfccElementChoice};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn settings(sources: Vec<Source>, xfcc: Option<XfccElementChoice>) -> IdentitySettings {
        IdentitySettings {
            sources,
            trust_domains: TrustDomains::new(vec!["example.org".into()]),
            xfcc,
            jwt_svid: None,
            local_workload: None,
        }
    }

    fn headers(names: &[&str]) -> Vec<(String, Vec<u8>)> {
        names
            .iter()
            .map(|n| (n.to_string(), b"\xff forged".to_vec()))
            .collect()
    }

    #[test]
    fn removes_xfcc_unless_it_is_a_trusted_source() {
        let sent = headers(&[XFCC_HEADER, "x-request-id"]);
        let untrusted = settings(vec![Source::PeerCertificate], None);
        assert_eq!(spoofed_headers(&untrusted, &sent), [XFCC_HEADER]);
        let trusted = settings(vec![Source::Xfcc], Some(XfccElementChoice::Last));
        assert!(spoofed_headers(&trusted, &sent).is_empty());
    }

    #[test]
    fn removes_own_headers_whatever_their_case_once_each() {
        let sent = headers(&[
            "X-Latchkey-Caller",
            "x-latchkey-caller",
            "x-latchkey-binding",
        ]);
        let plain = settings(vec![Source::PeerCertificate], None);
        assert_eq!(
            spoofed_headers(&plain, &sent),
            ["x-latchkey-caller", "x-latchkey-binding"]
        );
    }

    #[test]
    fn leaves_other_headers_alone() {
        let sent = headers(&["authorization", "x-forwarded-for", "x-latchkeys"]);
        let plain = settings(vec![Source::PeerCertificate], None);
        assert!(spoofed_headers(&plain, &sent).is_empty());
    }
}
