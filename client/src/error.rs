//! Why a client call failed.

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
}

// Boxed to keep every client call's `Result` small; record errors are rare.
impl From<RecordError> for ClientError {
    fn from(e: RecordError) -> Self {
        ClientError::Record(Box::new(e))
    }
}
