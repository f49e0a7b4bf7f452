//! What the client engine hands the shell: frames to send, events to act on, errors, and a
//! decoded frame the shell may look into before the engine takes it.

use thiserror::Error;

use crate::doc_id::{DocId, StoreRef};
use crate::record::RecordError;
use crate::wire::{Cursor, DecodeError, DocData, ErrorCode, ExportRecord, Message, TipRecord};

use super::OutboxId;

/// Something the shell must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// A remote change altered this document: persist it and tell the app.
    RemoteChanged { store: StoreRef, doc: DocId, key: Vec<u8> },
    /// These outbox entries are durable at the hub: delete them.
    Acked { ids: Vec<OutboxId> },
    /// Persist this cursor (after the documents reported before it).
    Cursor { store: StoreRef, cursor: Cursor },
    /// The store is caught up with the hub.
    Synced { store: StoreRef },
    /// The hub reported an error.
    HubError { code: ErrorCode, detail: String },
    /// A page of an export this client asked for ([`super::ClientEngine::export`]).
    ExportPage { store: StoreRef, export: u64, cut: Cursor, records: Vec<ExportRecord>, last: bool },
    /// Documents this client fetched ([`super::ClientEngine::fetch`]); not applied to its own
    /// documents.
    Fetched { request: u64, store: StoreRef, docs: Vec<DocData>, tips: Vec<TipRecord>, last: bool },
    /// A watched store's log reached `cursor` ([`super::ClientEngine::watch`]).
    Moved { store: StoreRef, cursor: Cursor },
}

/// What the engine wants done: frames to send and events to handle, in order.
#[derive(Debug, Default)]
pub struct ClientOutput {
    pub frames: Vec<Vec<u8>>,
    pub events: Vec<ClientEvent>,
}

/// Why the engine refused a frame from the hub.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("frame from the hub does not decode: {0}")]
    Decode(#[from] DecodeError),
    #[error("the hub sent {0}, which a client does not expect")]
    Unexpected(&'static str),
    #[error("the hub sent a sync message that does not decode: {0}")]
    SyncMessage(String),
    #[error("record: {0}")]
    Record(Box<RecordError>),
}

impl From<RecordError> for ClientError {
    fn from(e: RecordError) -> Self {
        ClientError::Record(Box::new(e))
    }
}

/// A frame from the hub, decoded once: the shell may learn which documents it needs loaded,
/// then hands it to [`super::ClientEngine::receive_decoded`].
#[derive(Debug)]
pub struct Incoming {
    pub(super) message: Message,
}

impl Incoming {
    /// Documents the frame names.
    pub fn doc_ids(&self) -> Vec<DocId> {
        self.message.doc_ids()
    }

    /// The store whose documents the frame compares as a whole (repair heads): the engine will
    /// look at every document of it, listed or not.
    pub fn compares_store(&self) -> Option<&StoreRef> {
        match &self.message {
            Message::Heads { store, .. } => Some(store),
            _ => None,
        }
    }

    /// The kind of message, for logs.
    pub fn kind(&self) -> &'static str {
        self.message.kind()
    }
}
