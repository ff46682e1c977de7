//! Why a request was stopped: a stable error code, its HTTP status and a short message. The
//! local reply body is built from these alone, so it can never carry a secret.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    NoIdentity,
    AmbiguousIdentity,
    InvalidIdentity,
    InvalidJwtSvid,
    UntrustedIdentity,
    NoBinding,
    IdentityUnusable,
    VaultUnavailable,
    VaultLoginFailed,
    VaultDenied,
    CredentialNotFound,
    InvalidCredential,
    NotConfigured,
}

impl Denial {
    /// Every denial; the test below fails to compile when a variant is missing here.
    pub const ALL: [Denial; 13] = [
        Denial::NoIdentity,
        Denial::AmbiguousIdentity,
        Denial::InvalidIdentity,
        Denial::InvalidJwtSvid,
        Denial::UntrustedIdentity,
        Denial::NoBinding,
        Denial::IdentityUnusable,
        Denial::VaultUnavailable,
        Denial::VaultLoginFailed,
        Denial::VaultDenied,
        Denial::CredentialNotFound,
        Denial::InvalidCredential,
        Denial::NotConfigured,
    ];

    /// Position in [`Denial::ALL`].
    pub fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|d| *d == self)
            .unwrap_or_default()
    }

    pub fn status(self) -> u32 {
        match self {
            Self::NoIdentity
            | Self::AmbiguousIdentity
            | Self::InvalidIdentity
            | Self::InvalidJwtSvid
            | Self::UntrustedIdentity
            | Self::NoBinding
            | Self::IdentityUnusable
            | Self::VaultDenied
            | Self::CredentialNotFound => 403,
            Self::VaultUnavailable | Self::VaultLoginFailed | Self::NotConfigured => 503,
            Self::InvalidCredential => 502,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::NoIdentity => "no_identity",
            Self::AmbiguousIdentity => "ambiguous_identity",
            Self::InvalidIdentity => "invalid_identity",
            Self::InvalidJwtSvid => "invalid_jwt_svid",
            Self::UntrustedIdentity => "untrusted_identity",
            Self::NoBinding => "no_binding",
            Self::IdentityUnusable => "identity_unusable",
            Self::VaultUnavailable => "vault_unavailable",
            Self::VaultLoginFailed => "vault_login_failed",
            Self::VaultDenied => "vault_denied",
            Self::CredentialNotFound => "credential_not_found",
            Self::InvalidCredential => "invalid_credential",
            Self::NotConfigured => "not_configured",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::NoIdentity => "the caller presented no verified SPIFFE identity",
            Self::AmbiguousIdentity => "the caller's certificate names more than one URI",
            Self::InvalidIdentity => "the caller's identity is not a valid SPIFFE ID",
            Self::InvalidJwtSvid => "the caller's JWT-SVID did not verify",
            Self::UntrustedIdentity => "the caller's trust domain is not accepted by this proxy",
            Self::NoBinding => "no binding lets this caller reach this destination",
            Self::IdentityUnusable => "the caller's identity does not fit the binding's vault path",
            Self::VaultUnavailable => "the vault could not be reached; try again later",
            Self::VaultLoginFailed => "the proxy could not log in to the vault",
            Self::VaultDenied => "the vault refused the credential for this caller",
            Self::CredentialNotFound => "no credential is stored for this caller",
            Self::InvalidCredential => "the credential from the vault cannot be used",
            Self::NotConfigured => "the filter has no valid configuration",
        }
    }

    /// `{"error": code, "message": message}`.
    pub fn body(self) -> Vec<u8> {
        serde_json::json!({ "error": self.code(), "message": self.message() })
            .to_string()
            .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_denial_once() {
        // Exhaustive on purpose: a new variant must be added here and to `ALL`.
        let listed = |denial: Denial| match denial {
            Denial::NoIdentity
            | Denial::AmbiguousIdentity
            | Denial::InvalidIdentity
            | Denial::InvalidJwtSvid
            | Denial::UntrustedIdentity
            | Denial::NoBinding
            | Denial::IdentityUnusable
            | Denial::VaultUnavailable
            | Denial::VaultLoginFailed
            | Denial::VaultDenied
            | Denial::CredentialNotFound
            | Denial::InvalidCredential
            | Denial::NotConfigured => Denial::ALL.contains(&denial),
        };
        assert!(Denial::ALL.iter().all(|d| listed(*d)));
        let codes: std::collections::HashSet<_> = Denial::ALL.iter().map(|d| d.code()).collect();
        assert_eq!(codes.len(), Denial::ALL.len());
    }

    #[test]
    fn body_holds_code_and_message() {
        let body: serde_json::Value = serde_json::from_slice(&Denial::NoIdentity.body()).unwrap();
        assert_eq!(body["error"], "no_identity");
        assert_eq!(body["message"], Denial::NoIdentity.message());
    }
}
