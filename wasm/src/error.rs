//! The errors every exported method can throw, each with a stable `code` for JavaScript callers.

use thiserror::Error;
use wasm_bindgen::JsValue;

/// Why a Tidepool operation failed. Each variant maps to one stable `code` string: callers branch on
/// the code, people read the message.
#[derive(Debug, Error)]
pub enum Error {
    #[error("invalid options: {0}")]
    BadOptions(String),
    #[error("value cannot be stored: {0}")]
    BadValue(String),
    #[error("invalid key: {0}")]
    BadKey(String),
    #[error("invalid path: {0}")]
    BadPath(String),
    #[error("invalid key range: {0}")]
    BadRange(String),
    #[error("unknown store {0:?} (declare it in Tidepool.open's `stores`)")]
    UnknownStore(String),
    #[error("store {store:?} has no index {index:?}")]
    UnknownIndex { store: String, index: String },
    #[error("the record does not exist")]
    NotFound,
    #[error("{0}")]
    WrongType(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("a unique index rejected the write: {0}")]
    Constraint(String),
    #[error("the browser's storage quota is exhausted: {0}")]
    QuotaExceeded(String),
    #[error(
        "the stored document of this record was corrupt ({0}); it was quarantined and will be \
         fetched again from the hub"
    )]
    CorruptDocument(String),
    #[error("the hub rejected the token")]
    AuthRejected,
    #[error("no hub is configured for this database")]
    NoHub,
    #[error("the database is closed")]
    Closed,
    #[error("{0} is open elsewhere in this browser (another tab or instance); close it first")]
    InUse(String),
    #[error("timed out after {0} ms")]
    Timeout(u32),
    #[error("IndexedDB failed: {0}")]
    Storage(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The stable machine-readable code JavaScript sees as `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadOptions(_) => "bad_options",
            Error::BadValue(_) => "bad_value",
            Error::BadKey(_) => "bad_key",
            Error::BadPath(_) => "bad_path",
            Error::BadRange(_) => "bad_range",
            Error::UnknownStore(_) => "unknown_store",
            Error::UnknownIndex { .. } => "unknown_index",
            Error::NotFound => "not_found",
            Error::WrongType(_) => "wrong_type",
            Error::OutOfRange(_) => "out_of_range",
            Error::Constraint(_) => "constraint",
            Error::QuotaExceeded(_) => "quota_exceeded",
            Error::CorruptDocument(_) => "corrupt_document",
            Error::AuthRejected => "auth_rejected",
            Error::NoHub => "no_hub",
            Error::Closed => "closed",
            Error::InUse(_) => "in_use",
            Error::Timeout(_) => "timeout",
            Error::Storage(_) => "storage",
            Error::Internal(_) => "internal",
        }
    }

    /// A JavaScript `Error` named `TidepoolError` carrying `code`.
    pub fn to_js(&self) -> JsValue {
        let error = js_sys::Error::new(&self.to_string());
        error.set_name("TidepoolError");
        // Setting a property on a fresh Error object cannot fail.
        let _ = js_sys::Reflect::set(&error, &"code".into(), &self.code().into());
        error.into()
    }
}

impl From<Error> for JsValue {
    fn from(e: Error) -> JsValue {
        e.to_js()
    }
}

impl From<tidepool_core::RecordError> for Error {
    fn from(e: tidepool_core::RecordError) -> Self {
        use tidepool_core::RecordError as R;
        match e {
            R::Key(k) => Error::BadKey(k.to_string()),
            R::Value(v) => Error::BadValue(v.to_string()),
            R::NotFound => Error::NotFound,
            e @ (R::NoSuchPath(_) | R::WrongType { .. }) => Error::WrongType(e.to_string()),
            e @ R::SpliceOutOfRange { .. } => Error::OutOfRange(e.to_string()),
            e @ (R::Corrupt(_) | R::CorruptChange(_)) => Error::CorruptDocument(e.to_string()),
            e => Error::Internal(e.to_string()),
        }
    }
}

impl From<tidepool_core::KeyError> for Error {
    fn from(e: tidepool_core::KeyError) -> Self {
        Error::BadKey(e.to_string())
    }
}

/// The `name` of a DOMException-like JavaScript error, if it has one.
fn dom_name(value: &JsValue) -> Option<String> {
    js_sys::Reflect::get(value, &"name".into()).ok()?.as_string()
}

fn dom_message(value: &JsValue) -> String {
    js_sys::Reflect::get(value, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

/// Maps an IndexedDB failure (a DOMException or anything thrown) onto a code callers can act on.
pub fn from_dom(value: &JsValue) -> Error {
    let message = dom_message(value);
    match dom_name(value).as_deref() {
        Some("ConstraintError") => Error::Constraint(message),
        Some("QuotaExceededError") => Error::QuotaExceeded(message),
        Some("DataError") => Error::BadKey(message),
        Some("DataCloneError") => Error::BadValue(message),
        Some("InvalidStateError") if message.contains("clos") => Error::Closed,
        _ => Error::Storage(message),
    }
}

impl From<indexed_db_futures::error::Error> for Error {
    fn from(e: indexed_db_futures::error::Error) -> Self {
        use indexed_db_futures::error::Error as E;
        match &e {
            E::DomException(d) => from_dom(d.as_ref()),
            _ => Error::Storage(e.to_string()),
        }
    }
}

impl From<indexed_db_futures::error::OpenDbError> for Error {
    fn from(e: indexed_db_futures::error::OpenDbError) -> Self {
        match e {
            indexed_db_futures::error::OpenDbError::Base(b) => b.into(),
            other => Error::Storage(other.to_string()),
        }
    }
}
