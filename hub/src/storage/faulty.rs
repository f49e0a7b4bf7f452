//! A backend wrapper that fails after a number of writes, as a dying disk would: the tool of the
//! crash-consistency tests.

use tidepool_core::wire::ExportRecord;
use tidepool_core::{DocId, StoreRef};

use super::{Backend, DocRow, LogRow, StorageError, StoreMeta};

/// Passes everything to `inner` until `budget` writes (appends, export columns, snapshots, prunes
/// and commits) have succeeded; from then on every operation but `rollback` fails.
#[derive(Debug)]
pub struct Faulty<B> {
    inner: B,
    budget: u64,
    writes: u64,
    failed: bool,
}

impl<B: Backend> Faulty<B> {
    pub fn new(inner: B, budget: u64) -> Self {
        Faulty { inner, budget, writes: 0, failed: false }
    }

    /// Whether the injected fault has fired.
    pub fn failed(&self) -> bool {
        self.failed
    }

    pub fn writes(&self) -> u64 {
        self.writes
    }

    pub fn into_inner(self) -> B {
        self.inner
    }

    fn alive(&self) -> Result<(), StorageError> {
        if self.failed { Err(StorageError::Injected(self.writes)) } else { Ok(()) }
    }

    fn write(&mut self) -> Result<(), StorageError> {
        self.alive()?;
        if self.writes >= self.budget {
            self.failed = true;
            return Err(StorageError::Injected(self.writes));
        }
        self.writes += 1;
        Ok(())
    }
}

impl<B: Backend> Backend for Faulty<B> {
    fn epoch(&self) -> [u8; 16] {
        self.inner.epoch()
    }

    fn begin(&mut self) -> Result<(), StorageError> {
        self.alive()?;
        self.inner.begin()
    }

    fn commit(&mut self) -> Result<(), StorageError> {
        self.write()?;
        self.inner.commit()
    }

    fn rollback(&mut self) -> Result<(), StorageError> {
        self.inner.rollback()
    }

    fn savepoint(&mut self) -> Result<(), StorageError> {
        self.alive()?;
        self.inner.savepoint()
    }

    fn rollback_to_savepoint(&mut self) -> Result<(), StorageError> {
        self.alive()?;
        self.inner.rollback_to_savepoint()
    }

    fn release_savepoint(&mut self) -> Result<(), StorageError> {
        self.alive()?;
        self.inner.release_savepoint()
    }

    fn store_meta(&mut self, store: &StoreRef) -> Result<Option<StoreMeta>, StorageError> {
        self.alive()?;
        self.inner.store_meta(store)
    }

    fn stores(&mut self) -> Result<Vec<StoreRef>, StorageError> {
        self.alive()?;
        self.inner.stores()
    }

    fn doc(&mut self, store: &StoreRef, doc: DocId) -> Result<Option<DocRow>, StorageError> {
        self.alive()?;
        self.inner.doc(store, doc)
    }

    fn doc_changes(&mut self, store: &StoreRef, doc: DocId, after: u64) -> Result<Vec<Vec<u8>>, StorageError> {
        self.alive()?;
        self.inner.doc_changes(store, doc, after)
    }

    fn list_docs(
        &mut self,
        store: &StoreRef,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, StorageError> {
        self.alive()?;
        self.inner.list_docs(store, after, limit)
    }

    fn log_since(&mut self, store: &StoreRef, after: u64, limit: usize) -> Result<Vec<LogRow>, StorageError> {
        self.alive()?;
        self.inner.log_since(store, after, limit)
    }

    fn append(&mut self, store: &StoreRef, row: &LogRow) -> Result<(), StorageError> {
        self.write()?;
        self.inner.append(store, row)
    }

    fn put_snapshot(&mut self, store: &StoreRef, doc: DocId, snapshot: &[u8], seq: u64) -> Result<(), StorageError> {
        self.write()?;
        self.inner.put_snapshot(store, doc, snapshot, seq)
    }

    fn stale_docs(
        &mut self,
        store: &StoreRef,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, StorageError> {
        self.alive()?;
        self.inner.stale_docs(store, upto, limit)
    }

    fn seq_before(&mut self, store: &StoreRef, before_ms: i64) -> Result<u64, StorageError> {
        self.alive()?;
        self.inner.seq_before(store, before_ms)
    }

    fn prune(&mut self, store: &StoreRef, upto: u64) -> Result<(), StorageError> {
        self.write()?;
        self.inner.prune(store, upto)
    }

    fn export_row(&mut self, store: &StoreRef, doc: DocId) -> Result<Option<super::ExportRow>, StorageError> {
        self.inner.export_row(store, doc)
    }

    fn put_export(
        &mut self,
        store: &StoreRef,
        doc: DocId,
        heads: &[[u8; 32]],
        value: Option<&[u8]>,
        tip: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        self.write()?;
        self.inner.put_export(store, doc, heads, value, tip)
    }

    fn unexported_docs(
        &mut self,
        store: &StoreRef,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, StorageError> {
        self.alive()?;
        self.inner.unexported_docs(store, after, limit)
    }

    fn export_open(&mut self, store: &StoreRef) -> Result<(u64, u64), StorageError> {
        self.alive()?;
        self.inner.export_open(store)
    }

    fn export_page(
        &mut self,
        export: u64,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Option<Vec<ExportRecord>>, StorageError> {
        self.alive()?;
        self.inner.export_page(export, after, limit)
    }

    fn export_close(&mut self, export: u64) {
        self.inner.export_close(export);
    }

    fn open_exports(&self) -> usize {
        self.inner.open_exports()
    }
}
