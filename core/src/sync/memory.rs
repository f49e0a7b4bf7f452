//! In-memory document stores for both ends: for tests, benchmarks, and as the reference model
//! that durable stores are compared against.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;

use automerge::ActorId;

use crate::doc_id::{DocId, StoreRef};
use crate::key::Key;
use crate::record::{Record, RecordError, plain_values};
use crate::sync::client::ClientDocs;
use crate::sync::hub::{HubStore, LogEntry};
use crate::value::Value;
use crate::wire::{ExportRecord, Payload, PeerId};

/// A client's documents, all in memory.
#[derive(Debug, Clone)]
pub struct MemoryClientDocs {
    actor: ActorId,
    stores: HashMap<StoreRef, BTreeMap<DocId, Record>>,
}

impl MemoryClientDocs {
    pub fn new(actor: ActorId) -> Self {
        MemoryClientDocs { actor, stores: HashMap::new() }
    }

    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// The record for `key`, created empty if new, for local edits.
    pub fn record_for(&mut self, store: &StoreRef, key: &Key) -> Result<&mut Record, RecordError> {
        let encoded = key.encode()?;
        let doc = DocId::from_encoded_key(store, &encoded);
        self.record(store, doc, &encoded)
    }

    /// Every existing record of a store as (key, plain value), in key order.
    pub fn values(&self, store: &StoreRef) -> Vec<(Vec<u8>, Value)> {
        plain_values(self.stores.get(store).into_iter().flat_map(BTreeMap::values))
    }

    /// Every record of a store, deleted ones included.
    pub fn records(&mut self, store: &StoreRef) -> impl Iterator<Item = &mut Record> {
        self.stores.entry(store.clone()).or_default().values_mut()
    }
}

impl ClientDocs for MemoryClientDocs {
    fn apply(
        &mut self,
        store: &StoreRef,
        doc: DocId,
        key: &[u8],
        payload: &Payload,
    ) -> Result<bool, RecordError> {
        let docs = self.stores.entry(store.clone()).or_default();
        match docs.get_mut(&doc) {
            Some(record) => record.apply(payload),
            None => {
                let record = Record::load(store, key.to_vec(), payload, &self.actor)?;
                docs.insert(doc, record);
                Ok(true)
            }
        }
    }

    fn record(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<&mut Record, RecordError> {
        let actor = &self.actor;
        Ok(self
            .stores
            .entry(store.clone())
            .or_default()
            .entry(doc)
            .or_insert_with(|| Record::with_encoded_key(store, key.to_vec(), actor)))
    }

    fn list(&mut self, store: &StoreRef) -> Vec<(DocId, Vec<u8>)> {
        self.stores
            .get(store)
            .into_iter()
            .flat_map(|docs| docs.iter().map(|(id, r)| (*id, r.encoded_key().to_vec())))
            .collect()
    }
}

#[derive(Debug, Clone, Default)]
struct StoreLog {
    entries: Vec<LogEntry>,
    /// Entries up to this seq were compacted away.
    horizon: u64,
    head: u64,
}

/// A hub store in memory: documents and per-store logs.
#[derive(Debug, Clone)]
pub struct MemoryHubStore {
    epoch: [u8; 16],
    actor: ActorId,
    docs: HashMap<StoreRef, BTreeMap<DocId, Record>>,
    logs: HashMap<StoreRef, StoreLog>,
    /// Saved snapshots, as a durable store keeps them; dropped whenever the log grows.
    snapshots: HashMap<DocId, Vec<u8>>,
    /// Open exports: the records as of the cut (an in-memory store may copy them).
    exports: HashMap<u64, Vec<ExportRecord>>,
    next_export: u64,
    /// How an exported plain value is written (the hub writes Tidepool's JSON mapping).
    encode_value: fn(&Value) -> Vec<u8>,
}

/// The default encoding of exported values: Rust's debug form (core knows no JSON).
fn debug_value(value: &Value) -> Vec<u8> {
    format!("{value:?}").into_bytes()
}

impl MemoryHubStore {
    /// An empty store; `epoch` must be fresh randomness for every new storage.
    pub fn new(epoch: [u8; 16]) -> Self {
        MemoryHubStore {
            epoch,
            actor: ActorId::from(&b"tidepool-hub\0\0\0\0"[..]),
            docs: HashMap::new(),
            logs: HashMap::new(),
            snapshots: HashMap::new(),
            exports: HashMap::new(),
            next_export: 1,
            encode_value: debug_value,
        }
    }

    /// Writes exported values with `encode` instead of their debug form.
    pub fn with_value_encoder(mut self, encode: fn(&Value) -> Vec<u8>) -> Self {
        self.encode_value = encode;
        self
    }

    /// Exports still open (a finished or abandoned export must not hold anything).
    pub fn open_exports(&self) -> usize {
        self.exports.len()
    }

    /// Drops log entries up to `seq`, as a hub that compacts its log would; subscribers with an
    /// older cursor then need repair.
    pub fn compact_log(&mut self, store: &StoreRef, seq: u64) {
        let log = self.logs.entry(store.clone()).or_default();
        log.entries.retain(|e| e.seq > seq);
        log.horizon = log.horizon.max(seq.min(log.head));
    }

    /// Every existing record of a store as (key, plain value), in key order.
    pub fn values(&self, store: &StoreRef) -> Vec<(Vec<u8>, Value)> {
        plain_values(self.docs.get(store).into_iter().flat_map(BTreeMap::values))
    }

    pub fn get(&self, store: &StoreRef, doc: &DocId) -> Option<&Record> {
        self.docs.get(store)?.get(doc)
    }
}

impl HubStore for MemoryHubStore {
    type Error = Infallible;

    fn export_open(&mut self, store: &StoreRef) -> Result<Option<(u64, u64)>, Infallible> {
        let seq = self.logs.get(store).map_or(0, |l| l.head);
        let encode = self.encode_value;
        let records = self
            .docs
            .get_mut(store)
            .into_iter()
            .flat_map(|docs| docs.values_mut())
            .map(|r| ExportRecord {
                doc: r.id(),
                key: r.encoded_key().to_vec(),
                heads: r.heads().iter().map(|h| h.0).collect(),
                value: r.get_plain().ok().flatten().map(|v| encode(&v)),
            })
            .collect();
        let id = self.next_export;
        self.next_export += 1;
        self.exports.insert(id, records);
        Ok(Some((id, seq)))
    }

    fn export_page(&mut self, export: u64, after: Option<DocId>, limit: usize) -> Result<Option<Vec<ExportRecord>>, Infallible> {
        let Some(records) = self.exports.get(&export) else { return Ok(None) };
        let start = after.map_or(0, |a| records.partition_point(|r| r.doc <= a));
        Ok(Some(records.iter().skip(start).take(limit).cloned().collect()))
    }

    fn export_close(&mut self, export: u64) {
        self.exports.remove(&export);
    }

    fn epoch(&self) -> [u8; 16] {
        self.epoch
    }

    fn record(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<&mut Record, Infallible> {
        let actor = &self.actor;
        Ok(self
            .docs
            .entry(store.clone())
            .or_default()
            .entry(doc)
            .or_insert_with(|| Record::with_encoded_key(store, key.to_vec(), actor)))
    }

    fn append(
        &mut self,
        store: &StoreRef,
        doc: DocId,
        key: &[u8],
        changes: Vec<Vec<u8>>,
        origin: PeerId,
    ) -> Result<u64, Infallible> {
        self.snapshots.remove(&doc);
        let log = self.logs.entry(store.clone()).or_default();
        log.head += 1;
        log.entries.push(LogEntry { seq: log.head, doc, key: key.to_vec(), changes, origin });
        Ok(log.head)
    }

    fn saved(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<Vec<u8>, Infallible> {
        if let Some(saved) = self.snapshots.get(&doc) {
            return Ok(saved.clone());
        }
        let saved = self.record(store, doc, key)?.save();
        self.snapshots.insert(doc, saved.clone());
        Ok(saved)
    }

    fn head_seq(&mut self, store: &StoreRef) -> Result<u64, Infallible> {
        Ok(self.logs.get(store).map_or(0, |l| l.head))
    }

    fn log_since(
        &mut self,
        store: &StoreRef,
        after: u64,
        limit: usize,
    ) -> Result<Option<Vec<LogEntry>>, Infallible> {
        let Some(log) = self.logs.get(store) else { return Ok(Some(vec![])) };
        if after < log.horizon {
            return Ok(None);
        }
        let start = log.entries.partition_point(|e| e.seq <= after);
        Ok(Some(log.entries[start..].iter().take(limit).cloned().collect()))
    }

    fn docs(
        &mut self,
        store: &StoreRef,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, Infallible> {
        let Some(docs) = self.docs.get(store) else { return Ok(vec![]) };
        let range = match after {
            Some(a) => docs.range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => docs.range(..),
        };
        Ok(range.take(limit).map(|(id, r)| (*id, r.encoded_key().to_vec())).collect())
    }
}
