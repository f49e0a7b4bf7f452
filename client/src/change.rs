//! What became of a local change, and a change that arrived from another peer.

use std::time::Instant;

use tidepool_core::automerge::ChangeHash;
use tidepool_core::wire::Cursor;
use tidepool_core::{StoreRef, Value};

/// A document changed by another peer, with its value just after the change.
#[derive(Debug, Clone)]
pub struct RemoteChange {
    pub store: StoreRef,
    pub key: Vec<u8>,
    /// `None` if the record does not exist (deleted), and always with lazy merging
    /// ([`crate::ClientOptions::lazy_merge`]), which reads no value when changes arrive.
    pub value: Option<Value>,
    /// The changes that arrived, by hash (how their author knows them:
    /// [`crate::Client::update_hashed`]); empty when a whole document arrived.
    pub changes: Vec<ChangeHash>,
    pub at: Instant,
}

/// What became of a local change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeState {
    /// Waiting for the hub.
    Pending,
    /// Durable at the hub.
    Acked,
    /// The hub refused it (e.g. no write access); it will not be retried.
    Refused,
}

/// A watched store's change log moved ([`crate::Client::watch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreMoved {
    pub store: StoreRef,
    /// Where the store's log stands now.
    pub cursor: Cursor,
}
