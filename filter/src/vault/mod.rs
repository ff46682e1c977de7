//! The Vault HTTP API that OpenBao and HashiCorp Vault share: request builders and parsers for
//! the responses. Every response is untrusted input; nothing here ever formats a token, a secret
//! or a response body into an error or a log line.

mod request;
mod response;
mod secret;

pub use request::{cert_login, jwt_login, renew_self, secret_read, VaultRequest, CALLER_HEADER};
pub use response::{
    parse_login, parse_retry_after, parse_secret, FetchedSecret, VaultError, VaultLogin,
    MAX_BODY_BYTES,
};
pub use secret::{Secret, SecretFields};
