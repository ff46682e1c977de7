//! Why a request was stopped: a stable error code, its HTTP status and a short message. The
//! local reply body is built from these alone, so it can never carry a secret.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    NoIdentity,
    AmbiguousIdentity,
    InvalidIdentity,
    InvalidJwtSvid,
    UntrustedIdentity,
    IdentityUnusable,
    VaultUnavailable,
    VaultLoginFailed,
    VaultDenied,
    CredentialNotFound,
    InvalidCredential,
    NotConfigured,
}

impl Denial {
    pub fn status(self) -> u32 {
        match self {
            Self::NoIdentity
            | Self::AmbiguousIdentity
            | Self::InvalidIdentity
            | Self::InvalidJwtSvid
            | Self::UntrustedIdentity
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
    fn body_holds_code_and_message() {
        let body: serde_json::Value = serde_json::from_slice(&Denial::NoIdentity.body()).unwrap();
        assert_eq!(body["error"], "no_identity");
        assert_eq!(body["message"], Denial::NoIdentity.message());
    }
}
