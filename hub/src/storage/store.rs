//! [`Storage`]: core's `HubStore` over any [`Backend`], with a bounded cache of loaded documents,
//! lazy transactions, snapshots, log compaction, and the export columns kept current on append.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tidepool_core::automerge::{ActorId, ChangeHash};
use tidepool_core::sync::{HubStore, LogEntry};
use tidepool_core::wire::{ExportRecord, Payload, PeerId, TipRecord};
use tidepool_core::{DocId, Record, StoreRef, Tip, Verified};
use tidepool_json::JsonValue;

use super::lru::Lru;
use super::patch::patch_value;
use super::{Backend, ExportRow, LogRow, StorageError, StoreMeta};

/// How a [`Storage`] behaves.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Most documents kept loaded. Memory is bounded by this, not by what is stored.
    pub cache_docs: usize,
    /// A loaded document that gathered this many log rows since its snapshot is snapshotted
    /// right away, so a later load never replays a long log.
    pub snapshot_every: u64,
    /// Log rows older than this are pruned by compaction (after their documents are
    /// snapshotted). Clients whose cursor is older are repaired instead of replayed.
    pub retention: Duration,
    /// Never write (for `dump` next to a running hub).
    pub read_only: bool,
    /// Exports open at once, at most, over all connections. Each holds a read snapshot (on
    /// SQLite a connection with its page cache, and WAL frames the checkpoint cannot drop).
    pub max_exports: usize,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            cache_docs: 10_000,
            snapshot_every: 64,
            retention: Duration::from_secs(7 * 24 * 3600),
            read_only: false,
            max_exports: 16,
        }
    }
}

/// Counters for metrics and tests; cumulative since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageStats {
    pub loads: u64,
    pub evictions: u64,
    pub snapshots: u64,
    pub entries_appended: u64,
    pub changes_appended: u64,
    pub commits: u64,
    pub pruned_to: u64,
    pub cached_docs: u64,
    pub exports_open: u64,
    /// Documents whose export columns were filled by [`Storage::backfill_exports`].
    pub backfilled: u64,
    /// Log entries taken on a document's tip, without loading it.
    pub tip_appends: u64,
    /// Of those, the ones whose row a fetch for tips had just read (not read again).
    pub tip_rows_reused: u64,
}

struct Cached {
    record: Record,
    /// The seq of this document's newest log row.
    last_seq: u64,
    /// Log rows not covered by the stored snapshot.
    unsnapped: u64,
    /// Heads as of the last load or append. A record whose heads moved without an append holds
    /// changes that are not in the log (a frame failed half way) and must not be kept.
    persisted: Vec<ChangeHash>,
}

type Slot = (StoreRef, DocId);

/// A document's row as a fetch for tips read it: what a change taken on the tip needs, so the
/// push that follows the fetch (a write-back: fetch a batch, build on the tips, push) neither
/// reads nor decodes the row again.
struct TipRow {
    value: Vec<u8>,
    tip: Tip,
}

/// Tip rows kept between a fetch and its push: a bridge keeps three batches of a thousand on
/// their way, and an entry is a few hundred bytes.
const TIP_ROWS: usize = 4096;

/// Where a frame started, so its writes can be undone alone.
#[derive(Debug, Clone, Copy)]
struct FrameMark {
    /// A savepoint was set (the transaction was already open); otherwise undoing the frame
    /// rolls back the transaction it opened, if any.
    savepoint: bool,
    stats: StorageStats,
}

/// Documents and logs over a [`Backend`]; implements core's `HubStore`.
///
/// Transactions are lazy: the first write of a batch begins one and [`Storage::commit`] ends it,
/// so a batch that only reads costs no fsync. After any error the caller must call
/// [`Storage::abort`], which rolls back and forgets every loaded document (they may hold the
/// aborted changes) so the next access reloads the committed state.
pub struct Storage<B> {
    backend: B,
    options: StorageOptions,
    actor: ActorId,
    cache: Lru<Slot, Cached>,
    /// Rows read by fetches for tips. Invariant: an entry equals the document's row in the
    /// open transaction; every write of the row drops it, and a rollback drops them all.
    tips: Lru<Slot, TipRow>,
    /// Log bounds of stores that exist; a store that does not is looked up again each time, so
    /// clients naming random stores cannot grow this map.
    metas: HashMap<StoreRef, StoreMeta>,
    touched: HashSet<Slot>,
    in_tx: bool,
    /// Whether the open transaction wrote (one opened for reads alone commits nothing).
    wrote: bool,
    frame: Option<FrameMark>,
    stats: StorageStats,
    clock: Box<dyn Fn() -> i64 + Send>,
}

impl<B> std::fmt::Debug for Storage<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("options", &self.options)
            .field("cached", &self.cache.len())
            .field("in_tx", &self.in_tx)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn wall_clock_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A stored tip, if it reads and is of the heads stored beside it: a hub version that kept no
/// tips may have moved the heads past it, and such a tip is never used.
fn tip_of_heads(store: &StoreRef, doc: DocId, heads: &[[u8; 32]], bytes: &[u8]) -> Option<Tip> {
    let tip = match Tip::decode(bytes) {
        Ok(tip) => tip,
        Err(e) => {
            tracing::warn!(%store, %doc, error = %e, "the stored tip does not read; the document is loaded instead");
            return None;
        }
    };
    let mut stored: Vec<ChangeHash> = heads.iter().copied().map(ChangeHash).collect();
    stored.sort();
    (tip.heads() == stored.as_slice()).then_some(tip)
}

impl<B: Backend> Storage<B> {
    pub fn new(backend: B, options: StorageOptions) -> Self {
        Storage {
            backend,
            cache: Lru::new(options.cache_docs),
            tips: Lru::new(TIP_ROWS),
            options,
            // The hub never edits documents, so this actor never appears in a change.
            actor: ActorId::from(&b"tidepool-hub\0\0\0\0"[..]),
            metas: HashMap::new(),
            touched: HashSet::new(),
            in_tx: false,
            wrote: false,
            frame: None,
            stats: StorageStats::default(),
            clock: Box::new(wall_clock_ms),
        }
    }

    /// Replaces the wall clock used to date log rows (tests of retention).
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Gives the backend back; an open transaction is rolled back first.
    pub fn into_backend(mut self) -> B {
        self.abort();
        self.backend
    }

    pub fn options(&self) -> &StorageOptions {
        &self.options
    }

    pub fn stats(&self) -> StorageStats {
        StorageStats {
            cached_docs: self.cache.len() as u64,
            exports_open: self.backend.open_exports() as u64,
            ..self.stats
        }
    }

    /// Whether writes wait for [`Storage::commit`].
    pub fn in_transaction(&self) -> bool {
        self.in_tx
    }

    fn ensure_tx(&mut self) -> Result<(), StorageError> {
        if self.options.read_only {
            return Err(StorageError::ReadOnly);
        }
        self.ensure_read()?;
        self.wrote = true;
        Ok(())
    }

    /// Opens the batch's transaction for reads that come many to a frame (a fetch of a thousand
    /// tips): on SQLite a read outside one is a transaction of its own, with its locks taken and
    /// released each time. It commits nothing, so it costs no fsync.
    fn ensure_read(&mut self) -> Result<(), StorageError> {
        if !self.in_tx && !self.options.read_only {
            self.backend.begin()?;
            self.in_tx = true;
        }
        Ok(())
    }

    /// Makes every write since the last commit durable. Returns whether there was anything to
    /// commit (a transaction opened for reads alone ends here too). On error, call
    /// [`Storage::abort`].
    pub fn commit(&mut self) -> Result<bool, StorageError> {
        if !self.in_tx {
            return Ok(false);
        }
        self.backend.commit()?;
        self.in_tx = false;
        if !std::mem::take(&mut self.wrote) {
            return Ok(false);
        }
        self.stats.commits += 1;
        Ok(true)
    }

    /// Discards every write since the last commit, and every loaded document with it.
    pub fn abort(&mut self) {
        if self.in_tx
            && let Err(e) = self.backend.rollback()
        {
            tracing::warn!(error = %e, "rollback failed; the backend discards the transaction when closed");
        }
        self.in_tx = false;
        self.wrote = false;
        self.frame = None;
        self.cache.clear();
        self.tips.clear();
        self.metas.clear();
        self.touched.clear();
    }

    /// Starts a frame: its writes can later be kept or undone on their own (see
    /// [`Storage::end_frame`]) without touching the rest of the open transaction.
    pub fn begin_frame(&mut self) -> Result<(), StorageError> {
        let savepoint = self.in_tx;
        if savepoint {
            self.backend.savepoint()?;
        }
        self.frame = Some(FrameMark { savepoint, stats: self.stats });
        Ok(())
    }

    /// Ends a frame. `keep = false` undoes its writes and forgets every document it touched: a
    /// push refused as a whole must leave nothing behind, even when core had already logged some
    /// of its documents before refusing the rest.
    pub fn end_frame(&mut self, keep: bool) -> Result<(), StorageError> {
        let Some(mark) = self.frame.take() else { return Ok(()) };
        if keep {
            if mark.savepoint {
                self.backend.release_savepoint()?;
            }
            self.settle();
            return Ok(());
        }
        if mark.savepoint {
            self.backend.rollback_to_savepoint()?;
        } else if self.in_tx {
            self.backend.rollback()?;
            self.in_tx = false;
            self.wrote = false;
        }
        for slot in std::mem::take(&mut self.touched) {
            self.cache.remove(&slot);
        }
        // Rows read inside the frame may be of its writes.
        self.tips.clear();
        // Heads may have moved inside the frame; reload them from the backend.
        self.metas.clear();
        self.stats = StorageStats { evictions: self.stats.evictions, loads: self.stats.loads, ..mark.stats };
        Ok(())
    }

    /// Forgets documents changed by the last frame without a matching log row (an edit core
    /// gave up on half way): their next access reloads what is stored. [`Storage::end_frame`]
    /// calls it; callers that do not use frames call it after each frame.
    pub fn settle(&mut self) {
        for slot in std::mem::take(&mut self.touched) {
            if let Some(c) = self.cache.peek_mut(&slot)
                && c.record.heads() != c.persisted
            {
                self.cache.remove(&slot);
            }
        }
    }

    fn meta(&mut self, store: &StoreRef) -> Result<StoreMeta, StorageError> {
        if let Some(meta) = self.metas.get(store) {
            return Ok(*meta);
        }
        match self.backend.store_meta(store)? {
            Some(meta) => {
                self.metas.insert(store.clone(), meta);
                Ok(meta)
            }
            None => Ok(StoreMeta::default()),
        }
    }

    fn load(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<Cached, StorageError> {
        self.stats.loads += 1;
        let Some(row) = self.backend.doc(store, doc)? else {
            let mut record = Record::with_encoded_key(store, key.to_vec(), &self.actor);
            let persisted = record.heads();
            return Ok(Cached { record, last_seq: 0, unsnapped: 0, persisted });
        };
        let corrupt = |source| StorageError::Corrupt { doc, source: Box::new(source) };
        let mut record = match row.snapshot {
            Some(bytes) => Record::load_saved(store, row.key, &bytes, &self.actor).map_err(corrupt)?,
            None => Record::with_encoded_key(store, row.key, &self.actor),
        };
        let changes = self.backend.doc_changes(store, doc, row.snap_seq)?;
        let unsnapped = changes.len() as u64;
        if !changes.is_empty() {
            record.apply(&Payload::Changes(changes)).map_err(corrupt)?;
        }
        let persisted = record.heads();
        Ok(Cached { record, last_seq: row.last_seq, unsnapped, persisted })
    }

    /// Leaves the cache: documents with log rows past their snapshot are snapshotted on the way
    /// out, which is what keeps loads cheap without a snapshot per write.
    fn retire(&mut self, slot: Slot, mut cached: Cached) -> Result<(), StorageError> {
        self.stats.evictions += 1;
        let consistent = cached.record.heads() == cached.persisted;
        if cached.unsnapped > 0 && consistent && !self.options.read_only {
            self.write_snapshot(&slot.0, slot.1, &mut cached)?;
        }
        Ok(())
    }

    fn write_snapshot(&mut self, store: &StoreRef, doc: DocId, cached: &mut Cached) -> Result<(), StorageError> {
        self.ensure_tx()?;
        let bytes = cached.record.save();
        self.backend.put_snapshot(store, doc, &bytes, cached.last_seq)?;
        cached.unsnapped = 0;
        self.stats.snapshots += 1;
        Ok(())
    }

    fn cached(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<&mut Cached, StorageError> {
        let slot = (store.clone(), doc);
        if !self.cache.contains(&slot) {
            let loaded = self.load(store, doc, key)?;
            for (old, cached) in self.cache.insert(slot.clone(), loaded) {
                self.retire(old, cached)?;
            }
        }
        self.touched.insert(slot.clone());
        self.cache
            .get_mut(&slot)
            .ok_or_else(|| StorageError::Malformed("a document left the cache as it was loaded".into()))
    }

    /// One step of compaction: snapshots up to `budget` documents whose log rows are past the
    /// retention, and prunes a store's log once none of its documents needs those rows. Returns
    /// whether work remains. The caller commits (or aborts on error).
    pub fn compact(&mut self, now_ms: i64, mut budget: usize) -> Result<bool, StorageError> {
        if self.options.read_only {
            return Ok(false);
        }
        let retention = i64::try_from(self.options.retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms.saturating_sub(retention);
        let mut more = false;
        for store in self.backend.stores()? {
            let meta = self.meta(&store)?;
            let target = self.backend.seq_before(&store, cutoff)?;
            if target <= meta.horizon {
                continue;
            }
            if budget == 0 {
                more = true;
                break;
            }
            let stale = self.backend.stale_docs(&store, target, budget)?;
            let full = stale.len() >= budget;
            budget -= stale.len();
            for (doc, key) in stale {
                self.snapshot_doc(&store, doc, &key)?;
            }
            if full {
                more = true;
                continue;
            }
            self.ensure_tx()?;
            self.backend.prune(&store, target)?;
            self.metas.insert(store.clone(), StoreMeta { horizon: target, ..meta });
            self.stats.pruned_to = self.stats.pruned_to.max(target);
        }
        Ok(more)
    }

    fn snapshot_doc(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<(), StorageError> {
        let slot = (store.clone(), doc);
        if let Some(mut cached) = self.cache.remove(&slot) {
            let result = self.write_snapshot(store, doc, &mut cached);
            self.cache.insert(slot, cached);
            return result;
        }
        // Loaded outside the cache: compaction must not push out the documents clients use.
        let mut cached = self.load(store, doc, key)?;
        self.write_snapshot(store, doc, &mut cached)
    }

    /// A page of a store's records in document id order, loaded outside the cache (for `dump`).
    pub fn records(
        &mut self,
        store: &StoreRef,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Vec<Record>, StorageError> {
        let ids = self.backend.list_docs(store, after, limit)?;
        let mut out = Vec::with_capacity(ids.len());
        for (doc, key) in ids {
            out.push(self.load(store, doc, &key)?.record);
        }
        Ok(out)
    }

    /// Fills the export columns of documents stored before they existed (a migrated data file),
    /// `page` documents per transaction, each loaded outside the cache and dropped: memory stays
    /// bounded by a page whatever the number of documents. Returns how many were filled. Runs
    /// before the hub serves; a crash part way leaves committed pages done and resumes the rest.
    pub fn backfill_exports(&mut self, page: usize) -> Result<u64, StorageError> {
        if self.options.read_only {
            return Ok(0);
        }
        let page = page.max(1);
        let mut filled = 0;
        for store in self.backend.stores()? {
            let mut after = None;
            loop {
                let docs = self.backend.unexported_docs(&store, after, page)?;
                let Some((last, _)) = docs.last() else { break };
                after = Some(*last);
                let result = docs.iter().try_for_each(|(doc, key)| {
                    let mut cached = self.load(&store, *doc, key)?;
                    self.ensure_tx()?;
                    self.write_export(&store, *doc, &mut cached.record)
                });
                if let Err(e) = result.and_then(|()| self.commit().map(|_| ())) {
                    self.abort();
                    return Err(e);
                }
                filled += docs.len() as u64;
                self.stats.backfilled += docs.len() as u64;
                tracing::info!(%store, filled, "export columns backfilled");
            }
        }
        Ok(filled)
    }

    /// Writes the record's heads and plain value (Tidepool's JSON mapping) as its export columns,
    /// and its tip.
    fn write_export(&mut self, store: &StoreRef, doc: DocId, record: &mut Record) -> Result<(), StorageError> {
        let heads: Vec<[u8; 32]> = record.heads().iter().map(|h| h.0).collect();
        let value = match record.get_plain() {
            Ok(value) => value,
            Err(e) => {
                // Core accepted these changes, so failing here would refuse every push of the
                // document; it exports as absent, as core's reference store does, and says so.
                tracing::warn!(%store, %doc, error = %e, "the value does not read; exported as deleted");
                None
            }
        };
        let value = value
            .map(|v| serde_json::to_vec(&JsonValue(&v)))
            .transpose()
            .map_err(|e| StorageError::Malformed(format!("value of {doc} as JSON: {e}")))?;
        let tip = Tip::of(record).map(|t| t.encode());
        self.tips.remove(&(store.clone(), doc));
        self.backend.put_export(store, doc, &heads, value.as_deref(), tip.as_deref())
    }

    /// The document's row for a change taken on its tip: the one a fetch kept (taken out, as
    /// the change rewrites the row), else read. `None` when the document has no usable tip (a
    /// deleted record, none stored, or one of other heads than the row's).
    fn tip_row(&mut self, store: &StoreRef, doc: DocId) -> Result<Option<TipRow>, StorageError> {
        if let Some(row) = self.tips.remove(&(store.clone(), doc)) {
            self.stats.tip_rows_reused += 1;
            return Ok(Some(row));
        }
        let Some(ExportRow { heads, value: Some(value), tip: Some(bytes) }) = self.backend.export_row(store, doc)? else {
            return Ok(None);
        };
        Ok(tip_of_heads(store, doc, &heads, &bytes).map(|tip| TipRow { value, tip }))
    }

    /// Writes a log row (the store's head + 1) through `write` (the backend's append, with or
    /// without the document's columns) and returns its seq.
    fn log_row(
        &mut self,
        store: &StoreRef,
        doc: DocId,
        key: &[u8],
        changes: Vec<Vec<u8>>,
        origin: PeerId,
        write: impl FnOnce(&mut B, &LogRow) -> Result<(), StorageError>,
    ) -> Result<u64, StorageError> {
        self.ensure_tx()?;
        self.tips.remove(&(store.clone(), doc));
        let meta = self.meta(store)?;
        let seq = meta.head + 1;
        let count = changes.len() as u64;
        let row = LogRow { seq, doc, key: key.to_vec(), changes, origin, at_ms: (self.clock)() };
        write(&mut self.backend, &row)?;
        self.metas.insert(store.clone(), StoreMeta { head: seq, ..meta });
        self.stats.entries_appended += 1;
        self.stats.changes_appended += count;
        Ok(seq)
    }

    /// Every store with a log.
    pub fn stores(&mut self) -> Result<Vec<StoreRef>, StorageError> {
        self.backend.stores()
    }

    /// Snapshots every loaded document that has log rows past its snapshot (before a clean
    /// shutdown, so the next start loads quickly).
    pub fn snapshot_cached(&mut self) -> Result<(), StorageError> {
        if self.options.read_only {
            return Ok(());
        }
        let dirty: Vec<Slot> = self
            .cache
            .iter_mut()
            .filter_map(|(slot, c)| (c.unsnapped > 0 && c.record.heads() == c.persisted).then(|| slot.clone()))
            .collect();
        for (store, doc) in dirty {
            if let Some(mut cached) = self.cache.remove(&(store.clone(), doc)) {
                let result = self.write_snapshot(&store, doc, &mut cached);
                self.cache.insert((store, doc), cached);
                result?;
            }
        }
        Ok(())
    }
}

impl<B: Backend> HubStore for Storage<B> {
    type Error = StorageError;

    fn epoch(&self) -> [u8; 16] {
        self.backend.epoch()
    }

    fn record(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<&mut Record, StorageError> {
        Ok(&mut self.cached(store, doc, key)?.record)
    }

    fn append(
        &mut self,
        store: &StoreRef,
        doc: DocId,
        key: &[u8],
        changes: Vec<Vec<u8>>,
        origin: PeerId,
    ) -> Result<u64, StorageError> {
        let seq = self.log_row(store, doc, key, changes, origin, |b, row| b.append(store, row))?;
        let slot = (store.clone(), doc);
        let snapshot_every = self.options.snapshot_every.max(1);
        if let Some(mut cached) = self.cache.remove(&slot) {
            cached.last_seq = seq;
            cached.unsnapped += 1;
            cached.persisted = cached.record.heads();
            let result = self.write_export(store, doc, &mut cached.record).and_then(|()| {
                if cached.unsnapped >= snapshot_every { self.write_snapshot(store, doc, &mut cached) } else { Ok(()) }
            });
            self.cache.insert(slot, cached);
            result?;
        } else {
            // Core updates the record through `record()` just before, so it is cached unless the
            // cache is tiny; the log row just written makes a fresh load the same state.
            let mut loaded = self.load(store, doc, key)?;
            self.write_export(store, doc, &mut loaded.record)?;
        }
        Ok(seq)
    }

    fn append_on_tip(
        &mut self,
        store: &StoreRef,
        doc: DocId,
        key: &[u8],
        changes: &Verified,
        origin: PeerId,
    ) -> Result<Option<u64>, StorageError> {
        let [change] = changes.changes() else { return Ok(None) };
        if self.options.read_only {
            return Ok(None);
        }
        let slot = (store.clone(), doc);
        // A loaded document with edits not yet logged (an edit core gave up on half way) takes
        // the change itself.
        if self.cache.peek_mut(&slot).is_some_and(|c| c.record.heads() != c.persisted) {
            return Ok(None);
        }
        let Some(TipRow { value, tip, .. }) = self.tip_row(store, doc)? else { return Ok(None) };
        let Some(forward) = tip.forward(change) else { return Ok(None) };
        let Some(value) = patch_value(&value, &forward.edits) else { return Ok(None) };
        let tip = forward.tip.encode();
        let seq = self.log_row(store, doc, key, vec![change.raw_bytes().to_vec()], origin, |b, row| {
            b.append_exported(store, row, &[forward.head.0], Some(&value), Some(&tip))
        })?;
        // A loaded copy is now behind; the next load reads the new log row. Nothing is lost by
        // dropping it: every change it holds is logged.
        self.cache.remove(&slot);
        self.stats.tip_appends += 1;
        Ok(Some(seq))
    }

    fn tip_record(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<Option<TipRecord>, StorageError> {
        self.ensure_read()?;
        let Some(ExportRow { heads, value, tip: Some(bytes) }) = self.backend.export_row(store, doc)? else {
            return Ok(None);
        };
        let Some(tip) = tip_of_heads(store, doc, &heads, &bytes) else { return Ok(None) };
        // Kept for the push that follows (a write-back builds its changes on these tips).
        if let Some(value) = &value {
            self.tips.insert((store.clone(), doc), TipRow { value: value.clone(), tip });
        }
        Ok(Some(TipRecord { doc, key: key.to_vec(), heads, value, tip: bytes }))
    }

    fn head_seq(&mut self, store: &StoreRef) -> Result<u64, StorageError> {
        Ok(self.meta(store)?.head)
    }

    fn log_since(
        &mut self,
        store: &StoreRef,
        after: u64,
        limit: usize,
    ) -> Result<Option<Vec<LogEntry>>, StorageError> {
        if after < self.meta(store)?.horizon {
            return Ok(None);
        }
        let rows = self.backend.log_since(store, after, limit)?;
        Ok(Some(rows.into_iter().map(LogRow::entry).collect()))
    }

    fn docs(
        &mut self,
        store: &StoreRef,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, StorageError> {
        self.backend.list_docs(store, after, limit)
    }

    fn export_open(&mut self, store: &StoreRef) -> Result<Option<(u64, u64)>, StorageError> {
        if self.backend.open_exports() >= self.options.max_exports {
            return Ok(None);
        }
        self.backend.export_open(store).map(Some)
    }

    fn export_page(
        &mut self,
        export: u64,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Option<Vec<ExportRecord>>, StorageError> {
        self.backend.export_page(export, after, limit)
    }

    fn export_close(&mut self, export: u64) {
        self.backend.export_close(export);
    }

    /// A loaded document is saved afresh; otherwise a snapshot that covers every log row is
    /// returned as stored, so a full download does not churn the cache.
    fn saved(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<Vec<u8>, StorageError> {
        let slot = (store.clone(), doc);
        if let Some(cached) = self.cache.peek_mut(&slot) {
            return Ok(cached.record.save());
        }
        if let Some(row) = self.backend.doc(store, doc)?
            && let (Some(snapshot), true) = (row.snapshot, row.snap_seq >= row.last_seq)
        {
            return Ok(snapshot);
        }
        Ok(self.record(store, doc, key)?.save())
    }
}
