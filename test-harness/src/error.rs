//! The one error type of the harness. Every variant names what was being done, so a failing test
//! reads as "OpenBao did not become ready within 15s" rather than a bare I/O error.

use std::fmt;
use std::io;
use std::time::Duration;

/// Result alias used across the harness.
pub type Result<T> = std::result::Result<T, Error>;

/// Why the harness could not set up or talk to a process.
pub enum Error {
    /// A required environment variable is unset, or points at nothing.
    Tool { var: &'static str, problem: String },
    /// A file or process operation failed.
    Io { action: String, source: io::Error },
    /// Certificate generation failed.
    Pki(rcgen::Error),
    /// A process did not become ready in time or exited while starting.
    NotReady {
        what: String,
        waited: Duration,
        detail: String,
    },
    /// An HTTP exchange failed below the HTTP layer (connect, TLS, timeout).
    Http {
        action: String,
        source: reqwest::Error,
    },
    /// A server answered, but not as expected.
    Unexpected { action: String, detail: String },
}

impl Error {
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            action: action.into(),
            source,
        }
    }

    pub(crate) fn http(action: impl Into<String>, source: reqwest::Error) -> Error {
        Error::Http {
            action: action.into(),
            source,
        }
    }

    pub fn unexpected(action: impl Into<String>, detail: impl Into<String>) -> Error {
        Error::Unexpected {
            action: action.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Tool { var, problem } => write!(f, "{var}: {problem}"),
            Error::Io { action, source } => write!(f, "{action}: {source}"),
            Error::Pki(source) => write!(f, "generating test certificates: {source}"),
            Error::NotReady {
                what,
                waited,
                detail,
            } => write!(f, "{what} not ready after {waited:?}: {detail}"),
            Error::Http { action, source } => {
                // reqwest's Display omits the cause chain (refused, TLS alert), which is the
                // part that explains the failure.
                write!(f, "{action}: {source}")?;
                let mut cause = std::error::Error::source(source);
                while let Some(inner) = cause {
                    write!(f, ": {inner}")?;
                    cause = inner.source();
                }
                Ok(())
            }
            Error::Unexpected { action, detail } => write!(f, "{action}: {detail}"),
        }
    }
}

/// Same as Display: `unwrap()` in a test then prints log tails with their line breaks.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Pki(source) => Some(source),
            // Http already prints its cause chain.
            _ => None,
        }
    }
}

impl From<rcgen::Error> for Error {
    fn from(source: rcgen::Error) -> Error {
        Error::Pki(source)
    }
}
