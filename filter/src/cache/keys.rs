//! Cache keys. The generation comes first so entries of an old config never match; `|`
//! separates parts because neither SPIFFE IDs, binding names nor vault paths may hold it.

pub fn credential_key(generation: u64, binding: &str, caller: &str, vault_path: &str) -> String {
    format!("latchkey.v1|{generation:016x}|cred|{binding}|{caller}|{vault_path}")
}

pub fn token_key(generation: u64, auth_mount: &str, role: &str) -> String {
    format!("latchkey.v1|{generation:016x}|token|{auth_mount}|{role}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_every_part() {
        let base = credential_key(1, "b", "spiffe://td/a", "p");
        assert_ne!(base, credential_key(2, "b", "spiffe://td/a", "p"));
        assert_ne!(base, credential_key(1, "c", "spiffe://td/a", "p"));
        assert_ne!(base, credential_key(1, "b", "spiffe://td/b", "p"));
        assert_ne!(base, credential_key(1, "b", "spiffe://td/a", "q"));
        assert_ne!(
            credential_key(1, "b", "spiffe://td/a", "b/c"),
            credential_key(1, "b", "spiffe://td/a/b", "c")
        );
    }
}
