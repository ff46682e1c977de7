//! Patterns that bindings use to name the identities they serve: an exact SPIFFE ID, or a
//! prefix ending in `/*` on a segment boundary (`spiffe://example.org/*` is a whole trust domain).

use super::SpiffeId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityPattern {
    Exact(SpiffeId),
    /// Stored with its trailing `/`, so `ns/pay/*` never matches `ns/payments`.
    Prefix(String),
}

impl IdentityPattern {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let Some(prefix) = raw.strip_suffix("/*") else {
            return SpiffeId::parse(raw)
                .map(Self::Exact)
                .map_err(|e| e.to_string());
        };
        // The part before `/*` must itself be a valid ID, so patterns obey the same grammar.
        let base = SpiffeId::parse(prefix).map_err(|e| e.to_string())?;
        Ok(Self::Prefix(format!("{}/", base.as_str())))
    }

    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            Self::Exact(exact) => exact == id,
            Self::Prefix(prefix) => id.as_str().starts_with(prefix.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The same tables run on wasm32 under wasm-bindgen-test (`make wasm-test`).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn id(raw: &str) -> SpiffeId {
        SpiffeId::parse(raw).unwrap()
    }

    #[test]
    fn prefix_matches_on_segment_boundary_only() {
        let pattern = IdentityPattern::parse("spiffe://example.org/ns/pay/*").unwrap();
        assert!(pattern.matches(&id("spiffe://example.org/ns/pay/sa/a")));
        assert!(!pattern.matches(&id("spiffe://example.org/ns/payments/sa/a")));
        assert!(!pattern.matches(&id("spiffe://example.org/ns/pay")));
    }

    #[test]
    fn trust_domain_pattern_does_not_leak_into_longer_domains() {
        let pattern = IdentityPattern::parse("spiffe://example.org/*").unwrap();
        assert!(pattern.matches(&id("spiffe://example.org/anything")));
        assert!(!pattern.matches(&id("spiffe://example.org.evil/anything")));
    }

    #[test]
    fn exact_pattern_matches_only_itself() {
        let pattern = IdentityPattern::parse("spiffe://example.org/a").unwrap();
        assert!(pattern.matches(&id("spiffe://example.org/a")));
        assert!(!pattern.matches(&id("spiffe://example.org/a/b")));
    }

    #[test]
    fn rejects_wildcards_elsewhere() {
        assert!(IdentityPattern::parse("spiffe://example.org/ns/*/sa/x").is_err());
        assert!(IdentityPattern::parse("spiffe://example.org/ns*").is_err());
    }
}
