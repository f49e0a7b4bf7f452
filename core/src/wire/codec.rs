//! Encoding and decoding frames, with size limits and structural validation.

use thiserror::Error;

use crate::doc_id::{DocId, StoreRef};
use crate::key::{Key, KeyError};
use crate::wire::message::Message;

pub const MAGIC: [u8; 4] = *b"TDPL";
pub const PROTOCOL_VERSION: u16 = 3;
const HEADER: usize = 6;
/// bincode's own allocation ceiling: no length prefix may claim more than this, whatever the
/// configured frame limit.
const BINCODE_LIMIT: usize = 256 * 1024 * 1024;

/// Size limits a decoder enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame accepted, header included.
    pub max_frame: usize,
    /// Most documents in one message.
    pub max_docs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_frame: 16 * 1024 * 1024, max_docs: 10_000 }
    }
}

/// Why bytes are not a valid frame.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("frame is shorter than its header")]
    Truncated,
    #[error("frame does not start with the Tidepool magic bytes")]
    BadMagic,
    #[error("protocol version {0} is not supported (this peer speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u16),
    #[error("frame body does not decode: {0}")]
    Body(String),
    #[error("frame has {0} bytes after its message")]
    TrailingBytes(usize),
    #[error("message carries {count} documents, more than the limit of {limit}")]
    TooManyDocs { count: usize, limit: usize },
    #[error("a record key is invalid: {0}")]
    Key(#[from] KeyError),
    #[error("document id {doc} does not belong to the key it travels with")]
    DocIdMismatch { doc: DocId },
}

impl DecodeError {
    /// What a peer is told: the same as the `Display` text, without the decoder's internals
    /// (which go to the log).
    pub fn summary(&self) -> String {
        match self {
            DecodeError::Body(_) => "frame body does not decode as a Tidepool message".to_owned(),
            other => other.to_string(),
        }
    }
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<BINCODE_LIMIT>()
}

/// Encodes a message as a frame.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    // Encoding into a Vec cannot fail for these types: no maps with unordered keys, no I/O.
    let body = bincode::encode_to_vec(message, config()).unwrap_or_default();
    out.extend_from_slice(&body);
    out
}

/// Decodes and validates a frame from untrusted bytes.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Message, DecodeError> {
    if bytes.len() > limits.max_frame {
        return Err(DecodeError::TooLarge { size: bytes.len(), limit: limits.max_frame });
    }
    let (header, body) = bytes.split_at_checked(HEADER).ok_or(DecodeError::Truncated)?;
    if header[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = u16::from_be_bytes([header[4], header[5]]);
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let (message, used): (Message, usize) = bincode::decode_from_slice(body, config())
        .map_err(|e| DecodeError::Body(e.to_string()))?;
    if used != body.len() {
        return Err(DecodeError::TrailingBytes(body.len() - used));
    }
    validate(&message, limits)?;
    Ok(message)
}

fn validate(message: &Message, limits: &Limits) -> Result<(), DecodeError> {
    let count = message.doc_ids().len();
    if count > limits.max_docs {
        return Err(DecodeError::TooManyDocs { count, limit: limits.max_docs });
    }
    let Some(store) = message.store() else { return Ok(()) };
    let check = |doc: &DocId, key: &[u8]| -> Result<(), DecodeError> { check_doc(store, doc, key) };
    match message {
        Message::Push { docs, .. } | Message::Changes { docs, .. } => docs.iter().try_for_each(|d| check(&d.doc, &d.key)),
        Message::Fetched { docs, tips, .. } => {
            docs.iter().try_for_each(|d| check(&d.doc, &d.key))?;
            tips.iter().try_for_each(|t| check(&t.doc, &t.key))
        }
        Message::ExportPage { records, .. } => records.iter().try_for_each(|r| check(&r.doc, &r.key)),
        Message::Fetch { docs, .. } => docs.iter().try_for_each(|d| check(&d.doc, &d.key)),
        Message::Heads { docs, .. } => docs.iter().try_for_each(|d| check(&d.doc, &d.key)),
        Message::Sync { entries, .. } => entries.iter().try_for_each(|e| check(&e.doc, &e.key)),
        _ => Ok(()),
    }
}

fn check_doc(store: &StoreRef, doc: &DocId, key: &[u8]) -> Result<(), DecodeError> {
    Key::decode(key)?;
    if DocId::from_encoded_key(store, key) != *doc {
        return Err(DecodeError::DocIdMismatch { doc: *doc });
    }
    Ok(())
}
