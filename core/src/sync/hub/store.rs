//! [`HubStore`]: the hub's documents and change logs as the engine needs them; the hub shell backs
//! it with durable storage.

use crate::doc_id::{DocId, StoreRef};
use crate::foreign::Verified;
use crate::record::Record;
use crate::wire::{ExportRecord, PeerId, TipRecord};

/// One entry of a store's change log: the changes one push (or sync round) added to a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    pub doc: DocId,
    pub key: Vec<u8>,
    pub changes: Vec<Vec<u8>>,
    pub origin: PeerId,
}

/// The hub's documents and change logs. Writes made during one [`super::Hub::receive`] must
/// become durable before the shell delivers that call's output (see [`super::HubOutput::durable`]).
pub trait HubStore {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Names this lifetime of the storage; a new, empty storage must get a new epoch.
    fn epoch(&self) -> [u8; 16];
    /// The record, loaded on demand, or created empty if the store does not hold it.
    fn record(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<&mut Record, Self::Error>;
    /// Appends to the store's log the changes just applied to `doc` (the record is already
    /// updated) and returns the entry's sequence number.
    fn append(
        &mut self,
        store: &StoreRef,
        doc: DocId,
        key: &[u8],
        changes: Vec<Vec<u8>>,
        origin: PeerId,
    ) -> Result<u64, Self::Error>;
    /// Logs `changes` for `doc` without loading the record, where the store can take them on the
    /// document's tip (one change made directly on its heads, see [`crate::tip`]), and returns
    /// the entry's sequence number; `None` when it cannot, and the engine loads the record.
    fn append_on_tip(
        &mut self,
        _store: &StoreRef,
        _doc: DocId,
        _key: &[u8],
        _changes: &Verified,
        _origin: PeerId,
    ) -> Result<Option<u64>, Self::Error> {
        Ok(None)
    }
    /// The document's export columns and tip, where the store keeps a tip of its current heads;
    /// `None` otherwise (the document is fetched whole).
    fn tip_record(&mut self, _store: &StoreRef, _doc: DocId, _key: &[u8]) -> Result<Option<TipRecord>, Self::Error> {
        Ok(None)
    }
    /// The sequence number of the store's newest log entry (0 for an empty log).
    fn head_seq(&mut self, store: &StoreRef) -> Result<u64, Self::Error>;
    /// Log entries after `after`, oldest first, at most `limit`; `None` if the log no longer
    /// reaches back that far (it was compacted).
    fn log_since(
        &mut self,
        store: &StoreRef,
        after: u64,
        limit: usize,
    ) -> Result<Option<Vec<LogEntry>>, Self::Error>;
    /// Documents of the store in id order after `after`, at most `limit`, with their keys.
    fn docs(
        &mut self,
        store: &StoreRef,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, Self::Error>;
    /// Opens a consistent export of `store`: every page read from it sees the store as it is
    /// now, whatever is written meanwhile. Returns the export's id and the log sequence number
    /// of that cut, or `None` when the store holds as many exports as it can (the request is
    /// refused as `Overloaded`; nothing failed). Stores keep each document's heads and plain
    /// value ready, so an export reads rows and loads no document.
    fn export_open(&mut self, store: &StoreRef) -> Result<Option<(u64, u64)>, Self::Error>;
    /// The export's records after `after` (the last document of an earlier page), at most
    /// `limit`, each document once over the whole export, in an order of the store's choosing;
    /// `None` if the store does not hold that export (any more), or if its order has no place for
    /// an `after` that is not in it.
    fn export_page(
        &mut self,
        export: u64,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Option<Vec<ExportRecord>>, Self::Error>;
    /// Ends an export and frees what it holds.
    fn export_close(&mut self, export: u64);
    /// The whole document, saved. Stores that keep saved snapshots return them directly.
    fn saved(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<Vec<u8>, Self::Error> {
        Ok(self.record(store, doc, key)?.save())
    }
}
