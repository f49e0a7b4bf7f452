//! Hub storage: a narrow [`Backend`] trait over tables, and [`Storage`], which turns any backend
//! into core's `HubStore` with a bounded cache of loaded documents.
//!
//! The split follows what each layer must guarantee. A backend only has to store rows and make a
//! transaction atomic and durable on `commit`; it never sees an Automerge document. `Storage` owns
//! the document logic (load = snapshot + later log rows, snapshots on eviction and compaction) and
//! is shared by every backend, so the crash tests exercise the same code the server runs.
//!
//! Data model, per store (a `(database, store)` pair):
//! * a change log: one row per applied push, numbered by `seq` from 1 without gaps; rows at or
//!   below the store's `horizon` were pruned by compaction;
//! * a document table: one row per document that ever received a change, with its key, the seq
//!   of its newest log row, and an optional snapshot (a saved document) covering all its log
//!   rows up to `snap_seq`;
//! * per document, its export columns: the heads and the plain value as JSON (none while the
//!   record is deleted), rewritten in the transaction of every log row of the document, so an
//!   export reads rows and loads no document. Rows written before these columns existed are
//!   filled by [`Storage::backfill_exports`]. Beside them the document's tip (core's `Tip`),
//!   with which a change made directly on the heads is logged and its columns rewritten without
//!   loading the document; the tip names the heads it is of, so one left behind by a hub that
//!   kept no tips is never used.
//!
//! A document's state is its snapshot (or the empty genesis) plus its log rows after `snap_seq`.
//! Compaction snapshots a document before pruning any log row it still needs.

mod faulty;
mod lru;
mod memory;
mod patch;
mod postgresql;
mod sqlite;
mod store;

use std::path::PathBuf;

use thiserror::Error;
use tidepool_core::sync::LogEntry;
use tidepool_core::wire::{ExportRecord, PeerId};
use tidepool_core::{DocId, RecordError, StoreRef};

pub use faulty::Faulty;
pub use memory::MemoryBackend;
pub use postgresql::{Fences, PostgresBackend, postgres_connect};
pub use sqlite::{OpenMode, SqliteBackend};
pub use store::{Storage, StorageOptions, StorageStats};

/// Why storage failed. Any error aborts the current transaction: nothing from it is acknowledged.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("sqlite: {0}")]
    Sqlite(Box<rusqlite::Error>),
    #[error("postgres: {}", postgres_detail(.0))]
    Postgres(Box<::postgres::Error>),
    #[error("this hub holds no lease on database {0:?}")]
    NotOwner(String),
    #[error("the lease on database {db:?} moved past fencing number {fence}: another hub owns it now")]
    Fenced { db: String, fence: i64 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("stored document {doc} does not load: {source}")]
    Corrupt { doc: DocId, source: Box<RecordError> },
    #[error("stored data is malformed: {0}")]
    Malformed(String),
    #[error("storage schema version {found} is not supported (this hub reads {expected})")]
    Schema { found: i64, expected: i64 },
    #[error("storage was opened read-only")]
    ReadOnly,
    #[error("write outside a transaction")]
    NoTransaction,
    #[error("injected fault: the backend stopped after {0} writes")]
    Injected(u64),
    #[error("storage schema version {0} has no export columns; start the hub once on this data to migrate it")]
    NotMigrated(i64),
    #[error("{0} has documents without export columns; start the hub once on this data to fill them")]
    NotFilled(StoreRef),
}

// Boxed: errors travel through every storage call, and rusqlite's error is large.
impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Sqlite(Box::new(e))
    }
}

/// The server's message and code when there is one (`postgres::Error` alone says "db error").
fn postgres_detail(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

// Boxed for the same reason.
impl From<::postgres::Error> for StorageError {
    fn from(e: ::postgres::Error) -> Self {
        StorageError::Postgres(Box::new(e))
    }
}

/// A store's log bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreMeta {
    /// The newest log row's seq (0 for an empty log).
    pub head: u64,
    /// Log rows at or below this seq were pruned.
    pub horizon: u64,
}

/// A document's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRow {
    pub key: Vec<u8>,
    /// The seq of the newest log row for this document.
    pub last_seq: u64,
    /// The snapshot covers this document's log rows up to this seq.
    pub snap_seq: u64,
    pub snapshot: Option<Vec<u8>>,
}

/// A document's export columns and tip, as [`Backend::export_row`] reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    pub heads: Vec<[u8; 32]>,
    pub value: Option<Vec<u8>>,
    pub tip: Option<Vec<u8>>,
}

/// A log row as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    pub seq: u64,
    pub doc: DocId,
    pub key: Vec<u8>,
    pub changes: Vec<Vec<u8>>,
    pub origin: PeerId,
    /// Wall-clock milliseconds when written; compaction prunes by age.
    pub at_ms: i64,
}

impl LogRow {
    pub fn entry(self) -> LogEntry {
        LogEntry { seq: self.seq, doc: self.doc, key: self.key, changes: self.changes, origin: self.origin }
    }
}

/// Tables with transactions. Writes happen only between [`Backend::begin`] and
/// [`Backend::commit`] / [`Backend::rollback`]; `commit` returns once the transaction is durable.
/// Reads see the open transaction's own writes.
pub trait Backend: Send {
    /// Names this storage's lifetime; fixed when the storage was created.
    fn epoch(&self) -> [u8; 16];
    fn begin(&mut self) -> Result<(), StorageError>;
    fn commit(&mut self) -> Result<(), StorageError>;
    fn rollback(&mut self) -> Result<(), StorageError>;
    /// Marks the current point of the open transaction (one level: a frame).
    fn savepoint(&mut self) -> Result<(), StorageError>;
    /// Undoes every write since [`Backend::savepoint`] and forgets the mark.
    fn rollback_to_savepoint(&mut self) -> Result<(), StorageError>;
    /// Keeps the writes since [`Backend::savepoint`] and forgets the mark.
    fn release_savepoint(&mut self) -> Result<(), StorageError>;

    /// The store's log bounds, or `None` if no change was ever written to it.
    fn store_meta(&mut self, store: &StoreRef) -> Result<Option<StoreMeta>, StorageError>;
    /// Every store that has a log.
    fn stores(&mut self) -> Result<Vec<StoreRef>, StorageError>;
    fn doc(&mut self, store: &StoreRef, doc: DocId) -> Result<Option<DocRow>, StorageError>;
    /// The document's change chunks from log rows after `after`, oldest first.
    fn doc_changes(&mut self, store: &StoreRef, doc: DocId, after: u64)
    -> Result<Vec<Vec<u8>>, StorageError>;
    /// Documents in id order after `after`, at most `limit`, with their keys.
    fn list_docs(
        &mut self,
        store: &StoreRef,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, StorageError>;
    /// Log rows after `after`, oldest first, at most `limit`.
    fn log_since(&mut self, store: &StoreRef, after: u64, limit: usize) -> Result<Vec<LogRow>, StorageError>;

    /// Writes a log row whose seq is the store's head + 1, moves the head, and creates or updates
    /// the document's row (`last_seq`).
    fn append(&mut self, store: &StoreRef, row: &LogRow) -> Result<(), StorageError>;
    /// Stores a snapshot covering the document's log rows up to `seq`.
    fn put_snapshot(&mut self, store: &StoreRef, doc: DocId, snapshot: &[u8], seq: u64)
    -> Result<(), StorageError>;
    /// Documents that have log rows at or below `upto` not covered by their snapshot.
    fn stale_docs(
        &mut self,
        store: &StoreRef,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, StorageError>;
    /// The newest seq written before `before_ms` (0 if none).
    fn seq_before(&mut self, store: &StoreRef, before_ms: i64) -> Result<u64, StorageError>;
    /// Deletes log rows at or below `upto` and moves the horizon there.
    fn prune(&mut self, store: &StoreRef, upto: u64) -> Result<(), StorageError>;

    /// Sets the document's export columns (its row exists: written after [`Backend::append`] in
    /// the same transaction). `value` is `None` for a deleted record, `tip` for a document that
    /// has none (core's [`tidepool_core::Tip`], encoded).
    fn put_export(
        &mut self,
        store: &StoreRef,
        doc: DocId,
        heads: &[[u8; 32]],
        value: Option<&[u8]>,
        tip: Option<&[u8]>,
    ) -> Result<(), StorageError>;
    /// [`Backend::append`] and [`Backend::put_export`] of the same document together (a change
    /// taken on the document's tip); a backend may write the document's row once for both.
    fn append_exported(
        &mut self,
        store: &StoreRef,
        row: &LogRow,
        heads: &[[u8; 32]],
        value: Option<&[u8]>,
        tip: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        self.append(store, row)?;
        self.put_export(store, row.doc, heads, value, tip)
    }
    /// The document's export columns and tip, or `None` if it has no row or its export columns
    /// were never written.
    fn export_row(&mut self, store: &StoreRef, doc: DocId) -> Result<Option<ExportRow>, StorageError>;
    /// Documents in id order after `after`, at most `limit`, whose export columns were never
    /// written (stored before they existed).
    fn unexported_docs(
        &mut self,
        store: &StoreRef,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, StorageError>;
    /// Opens a read snapshot of the last commit (never the open transaction) and returns its id
    /// and the store's log head in that snapshot.
    fn export_open(&mut self, store: &StoreRef) -> Result<(u64, u64), StorageError>;
    /// The snapshot's records of its store after `after` (a document an earlier page of this
    /// export returned), at most `limit`, in an order of the backend's choosing that is the same
    /// for every page (SQLite: storage order, which reads the table sequentially; the others: id
    /// order). `None` for an export that is not open, and on SQLite also when its snapshot lacks
    /// `after` (storage order has no place for it; id order continues after any id).
    fn export_page(
        &mut self,
        export: u64,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Option<Vec<ExportRecord>>, StorageError>;
    /// Ends a snapshot and frees what it holds; unknown ids are ignored.
    fn export_close(&mut self, export: u64);
    fn open_exports(&self) -> usize;
}

/// Heads as stored in one blob: the 32-byte hashes one after the other.
pub(crate) fn encode_heads(heads: &[[u8; 32]]) -> Vec<u8> {
    heads.concat()
}

pub(crate) fn decode_heads(bytes: &[u8]) -> Result<Vec<[u8; 32]>, StorageError> {
    let (chunks, rest) = bytes.as_chunks::<32>();
    if !rest.is_empty() {
        return Err(StorageError::Malformed(format!("heads blob of {} bytes", bytes.len())));
    }
    Ok(chunks.to_vec())
}

/// Log rows keep several change chunks in one blob: each as a 4-byte little-endian length and
/// the bytes. Automerge chunks are self-delimiting too, but an explicit frame lets a corrupt blob
/// be detected without parsing Automerge.
pub(crate) fn encode_changes(changes: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(changes.iter().map(|c| c.len() + 4).sum());
    for change in changes {
        let len = u32::try_from(change.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(change);
    }
    out
}

pub(crate) fn decode_changes(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, StorageError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| StorageError::Malformed("truncated change length".into()))?;
        let len = usize::try_from(u32::from_le_bytes(*len))
            .map_err(|_| StorageError::Malformed("change length overflows".into()))?;
        let (change, rest) = rest
            .split_at_checked(len)
            .ok_or_else(|| StorageError::Malformed("truncated change".into()))?;
        out.push(change.to_vec());
        bytes = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_blobs_round_trip_and_reject_truncation() {
        let changes = vec![vec![1, 2, 3], vec![], vec![9; 300]];
        let blob = encode_changes(&changes);
        assert_eq!(decode_changes(&blob).ok(), Some(changes));
        assert!(decode_changes(&blob[..blob.len() - 1]).is_err());
        assert!(decode_changes(&[1, 0]).is_err());
    }
}
