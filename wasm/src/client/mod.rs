//! The client's state and the operations on it: local writes, reads, remote frames, maintenance.
//!
//! Every operation runs with exclusive access to [`State`] (an async mutex in [`shared`]), so a
//! remote frame and a local write never interleave half-way and reads see earlier writes. An
//! operation that writes also holds the database's cross-tab write lock and first rereads the
//! indexes if another tab wrote since ([`refresh`]), so the tabs of one database take turns.

pub mod local;
pub mod maintain;
pub mod open;
pub mod outbox;
pub mod read;
pub mod refresh;
pub mod remote;
pub mod shared;
pub mod verify;

use std::collections::HashMap;

use indexed_db_futures::database::Database;
use tidepool_core::automerge::ActorId;
use tidepool_core::sync::{ClientConfig, ClientEngine};
use tidepool_core::wire::Cursor;
use tidepool_core::{DocId, StoreRef};

use crate::docs::cache::Cache;
use crate::docs::known::Known;
use crate::docs::load;
use crate::error::Error;
use wasm_bindgen::closure::Closure;
use crate::options::StoreSpec;
use outbox::OutboxRows;

/// Documents kept in memory between operations.
const CACHE_CAPACITY: usize = 4096;

#[derive(Debug)]
pub struct State {
    pub db: Database,
    pub db_name: String,
    pub stores: Vec<StoreSpec>,
    pub actor: ActorId,
    /// What the engine was made with, to make it again when another tab changed the outbox.
    pub config: ClientConfig,
    pub engine: ClientEngine,
    pub known: Known,
    pub cache: Cache,
    pub outbox: OutboxRows,
    /// The cursor persisted for each store: what a resubscription after a failure starts from.
    pub cursors: HashMap<String, Option<Cursor>>,
    /// `_tp_meta`'s write counter as of this tab's last write or read of the indexes: when
    /// storage holds another, a different tab wrote since (see `refresh`).
    pub generation: u64,
    /// `_tp_meta`'s compaction counter as of then: while storage holds the same, other tabs only
    /// added segments, and a reread can build on the indexes in memory.
    pub compactions: u64,
    /// Closes the connection when another connection needs a version change (a schema upgrade
    /// or a deletion), which would otherwise wait for this one forever.
    pub _on_version_change: Closure<dyn FnMut()>,
}

impl State {
    pub fn store_ref(&self, store: &str) -> StoreRef {
        StoreRef::new(self.db_name.as_str(), store)
    }

    pub fn check_store(&self, store: &str) -> Result<(), Error> {
        if self.stores.iter().any(|s| s.name == store) { Ok(()) } else { Err(Error::UnknownStore(store.to_owned())) }
    }

    /// Brings the given stored documents into memory. Corrupt ones are quarantined (and rebuilt
    /// from this client's unsynced changes) and returned, so the caller can refuse to edit them.
    pub async fn ensure_loaded(&mut self, docs: &[DocId]) -> Result<Vec<DocId>, Error> {
        let mut missing: Vec<DocId> = docs.iter().copied().filter(|d| self.known.contains(d) && !self.cache.contains(d)).collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let loaded = load::load(&self.db, &self.db_name, &self.known, &self.actor, &missing).await?;
        let mut corrupt = Vec::new();
        for (doc, outcome) in loaded {
            match outcome {
                Ok(record) => {
                    self.cache.insert(doc, record);
                }
                Err(corruption) => {
                    maintain::quarantine(self, doc, corruption).await?;
                    corrupt.push(doc);
                }
            }
        }
        Ok(corrupt)
    }

    /// Forgets in-memory documents whose changes did not reach storage, so the next use reloads
    /// them as stored.
    pub fn evict(&mut self, docs: impl IntoIterator<Item = DocId>) {
        for doc in docs {
            self.cache.remove(&doc);
        }
    }
}

/// The `_tp_meta` key of a store's cursor.
pub fn cursor_key(store: &str) -> String {
    format!("cursor/{store}")
}

pub fn encode_cursor(cursor: &Cursor) -> Vec<u8> {
    let mut out = cursor.epoch.to_vec();
    out.extend_from_slice(&cursor.seq.to_be_bytes());
    out
}

pub fn decode_cursor(bytes: &[u8]) -> Option<Cursor> {
    let epoch: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
    let seq: [u8; 8] = bytes.get(16..24)?.try_into().ok()?;
    (bytes.len() == 24).then(|| Cursor { epoch, seq: u64::from_be_bytes(seq) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_bad_lengths() {
        let c = Cursor { epoch: [7; 16], seq: u64::MAX - 3 };
        assert_eq!(decode_cursor(&encode_cursor(&c)), Some(c));
        assert_eq!(decode_cursor(&[0; 23]), None);
        assert_eq!(decode_cursor(&[0; 25]), None);
    }
}
