//! An in-memory backend for tests: the same tables in `BTreeMap`s, with an undo journal so a
//! transaction can be rolled back and a crash (losing whatever was not committed) simulated.
//! An export copies the store's committed rows when it opens.

use std::collections::{BTreeMap, HashMap};

use tidepool_core::wire::ExportRecord;
use tidepool_core::{DocId, StoreRef};

use super::{Backend, DocRow, LogRow, StorageError, StoreMeta};

/// A document's export columns: heads, the plain value as JSON, and the tip.
type ExportCols = (Vec<[u8; 32]>, Option<Vec<u8>>, Option<Vec<u8>>);

#[derive(Debug, Clone)]
enum Undo {
    Store(StoreRef, Option<StoreMeta>),
    Doc(StoreRef, DocId, Option<DocRow>),
    Log(StoreRef, u64, Option<LogRow>),
    Export(StoreRef, DocId, Option<ExportCols>),
}

/// Tables in memory. Committed state is what survives [`MemoryBackend::crash`].
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    epoch: [u8; 16],
    stores: BTreeMap<StoreRef, StoreMeta>,
    docs: BTreeMap<StoreRef, BTreeMap<DocId, DocRow>>,
    log: BTreeMap<StoreRef, BTreeMap<u64, LogRow>>,
    export_cols: BTreeMap<StoreRef, BTreeMap<DocId, ExportCols>>,
    /// Open exports: the store's records as committed when each opened.
    exports: HashMap<u64, Vec<ExportRecord>>,
    next_export: u64,
    /// Present while a transaction is open.
    journal: Option<Vec<Undo>>,
    /// The journal length at the savepoint.
    savepoint: Option<usize>,
}

impl MemoryBackend {
    pub fn new(epoch: [u8; 16]) -> Self {
        MemoryBackend {
            epoch,
            stores: BTreeMap::new(),
            docs: BTreeMap::new(),
            log: BTreeMap::new(),
            export_cols: BTreeMap::new(),
            exports: HashMap::new(),
            next_export: 1,
            journal: None,
            savepoint: None,
        }
    }

    /// What a restart after a crash would find: the open transaction is lost.
    pub fn crash(mut self) -> Self {
        self.undo_all();
        self
    }

    fn undo_all(&mut self) {
        self.savepoint = None;
        let journal = self.journal.take().unwrap_or_default();
        self.undo(journal);
    }

    fn undo(&mut self, entries: Vec<Undo>) {
        for undo in entries.into_iter().rev() {
            match undo {
                Undo::Store(store, Some(meta)) => {
                    self.stores.insert(store, meta);
                }
                Undo::Store(store, None) => {
                    self.stores.remove(&store);
                }
                Undo::Doc(store, doc, old) => {
                    let docs = self.docs.entry(store).or_default();
                    match old {
                        Some(row) => docs.insert(doc, row),
                        None => docs.remove(&doc),
                    };
                }
                Undo::Log(store, seq, old) => {
                    let log = self.log.entry(store).or_default();
                    match old {
                        Some(row) => log.insert(seq, row),
                        None => log.remove(&seq),
                    };
                }
                Undo::Export(store, doc, old) => {
                    let cols = self.export_cols.entry(store).or_default();
                    match old {
                        Some(c) => cols.insert(doc, c),
                        None => cols.remove(&doc),
                    };
                }
            }
        }
    }

    /// The store's records and log head as of the last commit: the current rows with the open
    /// transaction's writes undone on a copy.
    fn committed(&self, store: &StoreRef) -> Result<(Vec<ExportRecord>, u64), StorageError> {
        let mut head = self.stores.get(store).map(|m| m.head);
        let mut keys: BTreeMap<DocId, Option<Vec<u8>>> =
            self.docs.get(store).into_iter().flatten().map(|(id, row)| (*id, Some(row.key.clone()))).collect();
        let mut cols = self.export_cols.get(store).cloned().unwrap_or_default();
        for undo in self.journal.iter().flatten().rev() {
            match undo {
                Undo::Store(s, old) if s == store => head = old.map(|m| m.head),
                Undo::Doc(s, doc, old) if s == store => {
                    keys.insert(*doc, old.as_ref().map(|row| row.key.clone()));
                }
                Undo::Export(s, doc, old) if s == store => match old {
                    Some(c) => {
                        cols.insert(*doc, c.clone());
                    }
                    None => {
                        cols.remove(doc);
                    }
                },
                _ => {}
            }
        }
        let mut records = Vec::new();
        for (doc, key) in keys {
            let Some(key) = key else { continue };
            let (heads, value, _) =
                cols.remove(&doc).ok_or_else(|| StorageError::Malformed(format!("{doc} has no export columns")))?;
            records.push(ExportRecord { doc, key, heads, value });
        }
        Ok((records, head.unwrap_or(0)))
    }

    fn journal(&mut self) -> Result<&mut Vec<Undo>, StorageError> {
        self.journal.as_mut().ok_or(StorageError::NoTransaction)
    }

    fn set_store(&mut self, store: &StoreRef, meta: StoreMeta) -> Result<(), StorageError> {
        let old = self.stores.insert(store.clone(), meta);
        self.journal()?.push(Undo::Store(store.clone(), old));
        Ok(())
    }

    fn set_doc(&mut self, store: &StoreRef, doc: DocId, row: DocRow) -> Result<(), StorageError> {
        let old = self.docs.entry(store.clone()).or_default().insert(doc, row);
        self.journal()?.push(Undo::Doc(store.clone(), doc, old));
        Ok(())
    }
}

impl Backend for MemoryBackend {
    fn epoch(&self) -> [u8; 16] {
        self.epoch
    }

    fn begin(&mut self) -> Result<(), StorageError> {
        if self.journal.is_some() {
            return Err(StorageError::Malformed("a transaction is already open".into()));
        }
        self.journal = Some(Vec::new());
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StorageError> {
        self.savepoint = None;
        self.journal.take().map(|_| ()).ok_or(StorageError::NoTransaction)
    }

    fn rollback(&mut self) -> Result<(), StorageError> {
        self.undo_all();
        Ok(())
    }

    fn savepoint(&mut self) -> Result<(), StorageError> {
        self.savepoint = Some(self.journal()?.len());
        Ok(())
    }

    fn rollback_to_savepoint(&mut self) -> Result<(), StorageError> {
        let mark = self.savepoint.take().ok_or(StorageError::NoTransaction)?;
        let journal = self.journal()?;
        let undone = journal.split_off(mark.min(journal.len()));
        self.undo(undone);
        Ok(())
    }

    fn release_savepoint(&mut self) -> Result<(), StorageError> {
        self.savepoint.take().map(|_| ()).ok_or(StorageError::NoTransaction)
    }

    fn store_meta(&mut self, store: &StoreRef) -> Result<Option<StoreMeta>, StorageError> {
        Ok(self.stores.get(store).copied())
    }

    fn stores(&mut self) -> Result<Vec<StoreRef>, StorageError> {
        Ok(self.stores.keys().cloned().collect())
    }

    fn doc(&mut self, store: &StoreRef, doc: DocId) -> Result<Option<DocRow>, StorageError> {
        Ok(self.docs.get(store).and_then(|d| d.get(&doc)).cloned())
    }

    fn doc_changes(&mut self, store: &StoreRef, doc: DocId, after: u64) -> Result<Vec<Vec<u8>>, StorageError> {
        let Some(log) = self.log.get(store) else { return Ok(vec![]) };
        Ok(log
            .range(after.saturating_add(1)..)
            .filter(|(_, row)| row.doc == doc)
            .flat_map(|(_, row)| row.changes.iter().cloned())
            .collect())
    }

    fn list_docs(
        &mut self,
        store: &StoreRef,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, StorageError> {
        let Some(docs) = self.docs.get(store) else { return Ok(vec![]) };
        let iter: Box<dyn Iterator<Item = (&DocId, &DocRow)>> = match after {
            Some(a) => Box::new(docs.range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))),
            None => Box::new(docs.iter()),
        };
        Ok(iter.take(limit).map(|(id, row)| (*id, row.key.clone())).collect())
    }

    fn log_since(&mut self, store: &StoreRef, after: u64, limit: usize) -> Result<Vec<LogRow>, StorageError> {
        let Some(log) = self.log.get(store) else { return Ok(vec![]) };
        Ok(log.range(after.saturating_add(1)..).take(limit).map(|(_, row)| row.clone()).collect())
    }

    fn append(&mut self, store: &StoreRef, row: &LogRow) -> Result<(), StorageError> {
        self.journal()?;
        let meta = self.stores.get(store).copied().unwrap_or_default();
        if row.seq != meta.head + 1 {
            return Err(StorageError::Malformed(format!("seq {} after head {}", row.seq, meta.head)));
        }
        self.set_store(store, StoreMeta { head: row.seq, ..meta })?;
        let old = self.log.entry(store.clone()).or_default().insert(row.seq, row.clone());
        self.journal()?.push(Undo::Log(store.clone(), row.seq, old));
        let doc = match self.docs.get(store).and_then(|d| d.get(&row.doc)) {
            Some(existing) => DocRow { last_seq: row.seq, ..existing.clone() },
            None => DocRow { key: row.key.clone(), last_seq: row.seq, snap_seq: 0, snapshot: None },
        };
        self.set_doc(store, row.doc, doc)
    }

    fn put_snapshot(&mut self, store: &StoreRef, doc: DocId, snapshot: &[u8], seq: u64) -> Result<(), StorageError> {
        self.journal()?;
        let Some(existing) = self.docs.get(store).and_then(|d| d.get(&doc)).cloned() else { return Ok(()) };
        self.set_doc(store, doc, DocRow { snap_seq: seq, snapshot: Some(snapshot.to_vec()), ..existing })
    }

    fn stale_docs(
        &mut self,
        store: &StoreRef,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, StorageError> {
        let Some(docs) = self.docs.get(store) else { return Ok(vec![]) };
        Ok(docs
            .iter()
            .filter(|(_, row)| row.snap_seq < row.last_seq && row.snap_seq < upto)
            .take(limit)
            .map(|(id, row)| (*id, row.key.clone()))
            .collect())
    }

    fn seq_before(&mut self, store: &StoreRef, before_ms: i64) -> Result<u64, StorageError> {
        let Some(log) = self.log.get(store) else { return Ok(0) };
        Ok(log.values().filter(|row| row.at_ms < before_ms).map(|row| row.seq).max().unwrap_or(0))
    }

    fn prune(&mut self, store: &StoreRef, upto: u64) -> Result<(), StorageError> {
        self.journal()?;
        let seqs: Vec<u64> = self.log.get(store).map(|l| l.range(..=upto).map(|(s, _)| *s).collect()).unwrap_or_default();
        for seq in seqs {
            let old = self.log.get_mut(store).and_then(|l| l.remove(&seq));
            self.journal()?.push(Undo::Log(store.clone(), seq, old));
        }
        let meta = self.stores.get(store).copied().unwrap_or_default();
        self.set_store(store, StoreMeta { horizon: meta.horizon.max(upto), ..meta })
    }

    fn put_export(
        &mut self,
        store: &StoreRef,
        doc: DocId,
        heads: &[[u8; 32]],
        value: Option<&[u8]>,
        tip: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        self.journal()?;
        if !self.docs.get(store).is_some_and(|d| d.contains_key(&doc)) {
            return Err(StorageError::Malformed(format!("export columns for {doc}, which has no row")));
        }
        let old = self.export_cols.entry(store.clone()).or_default().insert(doc, (heads.to_vec(), value.map(<[u8]>::to_vec), tip.map(<[u8]>::to_vec)));
        self.journal()?.push(Undo::Export(store.clone(), doc, old));
        Ok(())
    }

    fn export_row(&mut self, store: &StoreRef, doc: DocId) -> Result<Option<super::ExportRow>, StorageError> {
        let cols = self.export_cols.get(store).and_then(|c| c.get(&doc));
        Ok(cols.map(|(heads, value, tip)| super::ExportRow { heads: heads.clone(), value: value.clone(), tip: tip.clone() }))
    }

    fn unexported_docs(
        &mut self,
        store: &StoreRef,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, StorageError> {
        let Some(docs) = self.docs.get(store) else { return Ok(vec![]) };
        let cols = self.export_cols.get(store);
        Ok(docs
            .iter()
            .filter(|(id, _)| after.is_none_or(|a| **id > a) && !cols.is_some_and(|c| c.contains_key(id)))
            .take(limit)
            .map(|(id, row)| (*id, row.key.clone()))
            .collect())
    }

    fn export_open(&mut self, store: &StoreRef) -> Result<(u64, u64), StorageError> {
        let (records, head) = self.committed(store)?;
        let id = self.next_export;
        self.next_export += 1;
        self.exports.insert(id, records);
        Ok((id, head))
    }

    fn export_page(
        &mut self,
        export: u64,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Option<Vec<ExportRecord>>, StorageError> {
        let Some(records) = self.exports.get(&export) else { return Ok(None) };
        let start = after.map_or(0, |a| records.partition_point(|r| r.doc <= a));
        Ok(Some(records.iter().skip(start).take(limit).cloned().collect()))
    }

    fn export_close(&mut self, export: u64) {
        self.exports.remove(&export);
    }

    fn open_exports(&self) -> usize {
        self.exports.len()
    }
}
