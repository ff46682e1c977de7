//! Values that must never be printed: their `Debug` is redacted by construction.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The string fields of a fetched secret, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretFields(Vec<(String, Secret)>);

impl SecretFields {
    pub fn new(fields: Vec<(String, Secret)>) -> Self {
        Self(fields)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.expose())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_value() {
        let fields = SecretFields::new(vec![("api_key".into(), Secret::new("hunter2".into()))]);
        let shown = format!("{fields:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("api_key"), "{shown}");
    }
}
