//! Why a client call failed, and why a connection attempt failed.

use std::fmt;
use std::time::Duration;

use thiserror::Error;
use tidepool_core::{KeyError, RecordError};

/// Why a client call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("invalid key: {0}")]
    Key(#[from] KeyError),
    #[error("record: {0}")]
    Record(Box<RecordError>),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    #[error("the client was closed")]
    Closed,
    #[error("the hub refused access: {0}")]
    Refused(String),
    #[error("the connection to the hub was lost before it answered")]
    Disconnected,
    /// The hub sent a frame this client cannot use (it does not decode, or breaks the protocol):
    /// the connection is dropped and made again, and requests waiting on it fail with the cause.
    #[error("the hub sent a frame this client cannot use, so the connection was dropped: {0}")]
    Unusable(String),
    /// No connection: the URL can never work, or the last attempt failed when the wait ended.
    #[error("{0}")]
    Connect(ConnectError),
}

// Boxed to keep every client call's `Result` small; record errors are rare.
impl From<RecordError> for ClientError {
    fn from(e: RecordError) -> Self {
        ClientError::Record(Box::new(e))
    }
}

/// The last failed connection attempt: where to, why, and how many attempts failed so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    pub url: String,
    pub cause: ConnectCause,
    pub attempts: u64,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot connect to {}", self.url)?;
        if self.attempts > 1 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        write!(f, ": {}", self.cause)
    }
}

impl std::error::Error for ConnectError {}

/// Why a connection attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectCause {
    /// Not a URL at all.
    BadUrl(String),
    /// Only `ws://` is spoken (`wss://` needs a TLS-terminating proxy in front of this client).
    BadScheme(String),
    /// The host name does not resolve.
    Dns { host: String, detail: String },
    /// Nothing listens on that port.
    Refused,
    /// The server answered HTTP without upgrading to a WebSocket (a wrong path, a web server).
    HttpStatus { status: u16, reason: String },
    /// The server spoke something that is not a WebSocket handshake.
    NotWebSocket(String),
    Tls(String),
    /// Neither an answer nor a refusal within the connect timeout.
    Timeout(Duration),
    Io(String),
}

impl ConnectCause {
    /// Whether retrying the same URL cannot help, so waiting for a connection should stop now.
    pub fn is_permanent(&self) -> bool {
        match self {
            ConnectCause::BadUrl(_) | ConnectCause::BadScheme(_) | ConnectCause::Dns { .. } | ConnectCause::Tls(_) => true,
            // 5xx may come from a proxy whose upstream hub is restarting.
            ConnectCause::HttpStatus { status, .. } => *status < 500,
            ConnectCause::Refused | ConnectCause::NotWebSocket(_) | ConnectCause::Timeout(_) | ConnectCause::Io(_) => false,
        }
    }
}

impl fmt::Display for ConnectCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectCause::BadUrl(e) => write!(f, "not a valid URL ({e}); expected ws://host:port/v1/sync"),
            ConnectCause::BadScheme(s) => {
                write!(f, "unsupported scheme {s}://; the hub speaks WebSocket: ws://host:port/v1/sync")
            }
            ConnectCause::Dns { host, detail } => write!(f, "cannot resolve host {host}: {detail}"),
            ConnectCause::Refused => write!(f, "connection refused (is the hub running on that port?)"),
            ConnectCause::HttpStatus { status, reason } => write!(
                f,
                "the server answered HTTP {status} {reason} instead of a WebSocket upgrade (is the path /v1/sync?)"
            ),
            ConnectCause::NotWebSocket(e) => write!(f, "not a WebSocket endpoint: {e}"),
            ConnectCause::Tls(e) => write!(f, "TLS: {e}"),
            ConnectCause::Timeout(d) => write!(f, "no answer within {d:?}"),
            ConnectCause::Io(e) => write!(f, "{e}"),
        }
    }
}
