//! The SQLite backend: WAL mode with `synchronous = FULL`, so a commit returns only after the
//! write-ahead log is fsync'd. That is the hub's "durable before acknowledged".
//!
//! Exports read through connections of their own, one per export, each inside a read
//! transaction begun when the export opened. In WAL mode a reader's snapshot is fixed at its
//! first read, so every page of an export sees the same commit (never the writer's open
//! transaction) and the cut seq read in that snapshot matches its rows, whatever the writer
//! commits meanwhile.
//!
//! Schema versions: 1 had no export columns; 2 adds `docs.heads` (the concatenated 32-byte head
//! hashes, NULL until written) and `docs.value` (the plain value as JSON, NULL when deleted);
//! 3 chains each document's log rows (`log.prev`, the seq of the document's row before) in place
//! of the `log_by_doc` index. An older file opened read-write is migrated in place; a version-1
//! file's documents get their columns from `Storage::backfill_exports`. A read-only open of an
//! older file reads what it holds the way its version did (a version-1 file: everything but
//! exports).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::RngCore;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tidepool_core::wire::{ExportRecord, PeerId};
use tidepool_core::{DocId, StoreRef};

use super::{
    Backend, DocRow, ExportRow, LogRow, StorageError, StoreMeta, decode_changes, decode_heads, encode_changes, encode_heads,
};

const SCHEMA_VERSION: i64 = 3;
/// The first version with export columns.
const EXPORT_VERSION: i64 = 2;
/// The first version whose log rows name the document's row before (`log.prev`).
const CHAIN_VERSION: i64 = 3;
/// Page cache of an export's connection (KiB, as SQLite's negative `cache_size`): pages are read
/// once in key order, so a small cache loses little, and there may be many exports.
const EXPORT_CACHE_KIB: i64 = 1024;

/// `log` columns as stored: seq, doc, key, origin, at, changes.
type RawLogRow = (i64, Vec<u8>, Vec<u8>, Vec<u8>, i64, Vec<u8>);
/// `docs` columns as stored: key, last_seq, snap_seq, snapshot.
type RawDocRow = (Vec<u8>, i64, i64, Option<Vec<u8>>);

const SCHEMA: &str = "
CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE stores (
    id INTEGER PRIMARY KEY,
    db TEXT NOT NULL,
    name TEXT NOT NULL,
    head INTEGER NOT NULL DEFAULT 0,
    horizon INTEGER NOT NULL DEFAULT 0,
    UNIQUE (db, name)
);
CREATE TABLE docs (
    store INTEGER NOT NULL,
    doc BLOB NOT NULL,
    key BLOB NOT NULL,
    last_seq INTEGER NOT NULL,
    snap_seq INTEGER NOT NULL DEFAULT 0,
    snapshot BLOB,
    heads BLOB,
    value BLOB,
    tip BLOB,
    PRIMARY KEY (store, doc)
);
CREATE INDEX docs_unexported ON docs (store, doc) WHERE heads IS NULL;
CREATE TABLE log (
    store INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    doc BLOB NOT NULL,
    key BLOB NOT NULL,
    origin BLOB NOT NULL,
    at INTEGER NOT NULL,
    changes BLOB NOT NULL,
    prev INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (store, seq)
);
CREATE INDEX log_by_time ON log (store, at);
";

/// The index exports page through: a store's documents in rowid (storage) order.
const DOCS_BY_STORE: &str = "CREATE INDEX IF NOT EXISTS docs_by_store ON docs (store)";

/// Version 1 to 2: the export columns, empty until backfilled (`heads IS NULL` marks a document
/// still to fill, and the partial index finds those without a scan).
const MIGRATE_1_TO_2: &str = "
ALTER TABLE docs ADD COLUMN heads BLOB;
ALTER TABLE docs ADD COLUMN value BLOB;
CREATE INDEX docs_unexported ON docs (store, doc) WHERE heads IS NULL;
PRAGMA user_version = 2;
";

/// Version 2 to 3: each log row names the seq of its document's row before it (0: none), filled
/// here through `log_by_doc`, which then goes. A document's rows are found by walking back from
/// `docs.last_seq`, so a change is one more column in the row it writes anyway, where the index
/// was an insert at a random place in a b-tree as large as the log (at a million documents most
/// of the pages every commit wrote, and checkpointed again).
const MIGRATE_2_TO_3: &str = "
ALTER TABLE log ADD COLUMN prev INTEGER NOT NULL DEFAULT 0;
UPDATE log SET prev = COALESCE(
    (SELECT MAX(p.seq) FROM log p WHERE p.store = log.store AND p.doc = log.doc AND p.seq < log.seq), 0);
DROP INDEX IF EXISTS log_by_doc;
PRAGMA user_version = 3;
";

/// WAL pages between automatic checkpoints (SQLite's default is 1,000): about 40 MiB of WAL.
const WAL_CHECKPOINT_PAGES: i64 = 10_000;

/// The tip column, added to files of version 2 that lack it. No version of its own: a hub that
/// keeps no tips ignores it, and a tip names the heads it is of.
const ADD_TIP: &str = "ALTER TABLE docs ADD COLUMN tip BLOB";

/// An open export: a connection inside its read transaction.
struct Export {
    conn: Connection,
    /// The store's id in the snapshot (`None`: the store did not exist at the cut).
    store: Option<i64>,
}

/// How to open a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the file (with a fresh epoch) if it does not exist.
    ReadWrite,
    /// Read what a hub wrote, even while it runs (WAL readers do not block the writer).
    ReadOnly,
}

/// Hub storage in one SQLite file.
pub struct SqliteBackend {
    conn: Connection,
    path: PathBuf,
    /// The file's schema version (a read-only open may find an older one).
    version: i64,
    epoch: [u8; 16],
    /// Store ids by name; cleared on rollback since a rolled-back insert frees its id.
    ids: HashMap<StoreRef, i64>,
    exports: HashMap<u64, Export>,
    next_export: u64,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend").field("epoch", &hex::encode(self.epoch)).finish_non_exhaustive()
    }
}

fn seq_u64(v: i64) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|_| StorageError::Malformed(format!("negative sequence number {v}")))
}

fn seq_i64(v: u64) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|_| StorageError::Malformed(format!("sequence number {v} overflows")))
}

fn doc_ref(bytes: &[u8]) -> Result<DocId, StorageError> {
    let raw: [u8; 16] =
        bytes.try_into().map_err(|_| StorageError::Malformed("document id is not 16 bytes".into()))?;
    Ok(DocId(raw))
}

fn doc_id(bytes: Vec<u8>) -> Result<DocId, StorageError> {
    doc_ref(&bytes)
}

impl SqliteBackend {
    /// Opens (or creates) the data file.
    pub fn open(path: &Path, mode: OpenMode) -> Result<Self, StorageError> {
        let flags = match mode {
            OpenMode::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            OpenMode::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // A bounded page cache (32 MiB): the document cache above is where most memory is meant
        // to go, but a change taken on a tip reads and writes its document row here.
        conn.pragma_update(None, "cache_size", -32768)?;
        if mode == OpenMode::ReadWrite {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            // FULL: fsync the WAL on every commit. NORMAL would lose the last commits on power
            // loss, and those were acknowledged.
            conn.pragma_update(None, "synchronous", "FULL")?;
            // Checkpoint every WAL_CHECKPOINT_PAGES: each checkpoint copies a page once however
            // often commits rewrote it since, so a longer interval copies the hot pages (the log's
            // last leaves, its indexes, the stores row) far less often than SQLite's default.
            conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
        }
        let mut version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        match (version, mode) {
            (0, OpenMode::ReadWrite) => {
                Self::create_schema(&conn)?;
                version = SCHEMA_VERSION;
            }
            (1, OpenMode::ReadWrite) => {
                Self::migrate_from_1(&conn)?;
                Self::migrate_from_2(&conn)?;
                version = SCHEMA_VERSION;
            }
            (2, OpenMode::ReadWrite) => {
                Self::migrate_from_2(&conn)?;
                version = SCHEMA_VERSION;
            }
            // An older file reads the way its version did (`dump` of an old file, or of one an
            // older hub still serves): version 1 everything but exports, both through `log_by_doc`.
            (1 | 2, OpenMode::ReadOnly) | (SCHEMA_VERSION, _) => {}
            (found, _) => return Err(StorageError::Schema { found, expected: SCHEMA_VERSION }),
        }
        if mode == OpenMode::ReadWrite {
            let has_tip: bool =
                conn.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('docs') WHERE name = 'tip'", [], |r| r.get(0))?;
            if !has_tip {
                conn.execute_batch(ADD_TIP)?;
            }
            // Exports page through it in storage order. Every file gets it here, whether new,
            // migrated or written before exports read that way (built once, then a no-op).
            conn.execute_batch(DOCS_BY_STORE)?;
        }
        let epoch: Vec<u8> =
            conn.query_row("SELECT value FROM meta WHERE name = 'epoch'", [], |r| r.get(0))?;
        let epoch: [u8; 16] =
            epoch.try_into().map_err(|_| StorageError::Malformed("epoch is not 16 bytes".into()))?;
        Ok(SqliteBackend {
            conn,
            path: path.to_owned(),
            version,
            epoch,
            ids: HashMap::new(),
            exports: HashMap::new(),
            next_export: 1,
        })
    }

    /// Writes a log row whose document's row before it is `prev` (0: none).
    fn insert_log(&self, id: i64, seq: i64, prev: i64, row: &LogRow) -> Result<(), StorageError> {
        self.conn
            .prepare_cached(
                "INSERT INTO log (store, seq, doc, key, origin, at, changes, prev) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                id,
                seq,
                row.doc.0.as_slice(),
                row.key,
                row.origin.0.as_slice(),
                row.at_ms,
                encode_changes(&row.changes),
                prev
            ])?;
        Ok(())
    }

    /// The document's row: its rowid and last log seq.
    fn doc_position(&self, id: i64, doc: DocId) -> Result<Option<(i64, i64)>, StorageError> {
        Ok(self
            .conn
            .prepare_cached("SELECT rowid, last_seq FROM docs WHERE store = ?1 AND doc = ?2")?
            .query_row(params![id, doc.0.as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// The data file's schema version.
    pub fn schema_version(&self) -> i64 {
        self.version
    }

    /// Runs one migration step in one transaction: a crash leaves the version before or the
    /// version after, never half of it.
    fn migrate(conn: &Connection, step: &str, done: &str) -> Result<(), StorageError> {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(step)?;
        tx.commit()?;
        tracing::info!("storage migrated: {done}");
        Ok(())
    }

    /// Adds the export columns; the documents are backfilled afterwards, page by page.
    fn migrate_from_1(conn: &Connection) -> Result<(), StorageError> {
        Self::migrate(conn, MIGRATE_1_TO_2, "schema version 1 to 2; export columns are backfilled next")
    }

    /// Chains the log rows per document.
    fn migrate_from_2(conn: &Connection) -> Result<(), StorageError> {
        Self::migrate(conn, MIGRATE_2_TO_3, "schema version 2 to 3; log rows chained per document")
    }

    fn create_schema(conn: &Connection) -> Result<(), StorageError> {
        let mut epoch = [0u8; 16];
        rand::rng().fill_bytes(&mut epoch);
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(SCHEMA)?;
        tx.execute("INSERT INTO meta (name, value) VALUES ('epoch', ?1)", params![epoch.to_vec()])?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        Ok(())
    }

    /// Runs a WAL checkpoint so the main file holds everything (clean shutdown).
    pub fn checkpoint(&mut self) -> Result<(), StorageError> {
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    fn store_id(&mut self, store: &StoreRef) -> Result<Option<i64>, StorageError> {
        if let Some(id) = self.ids.get(store) {
            return Ok(Some(*id));
        }
        let id: Option<i64> = self
            .conn
            .prepare_cached("SELECT id FROM stores WHERE db = ?1 AND name = ?2")?
            .query_row(params![store.db, store.store], |r| r.get(0))
            .optional()?;
        if let Some(id) = id {
            self.ids.insert(store.clone(), id);
        }
        Ok(id)
    }

    fn create_store(&mut self, store: &StoreRef) -> Result<i64, StorageError> {
        if let Some(id) = self.store_id(store)? {
            return Ok(id);
        }
        self.conn
            .prepare_cached("INSERT INTO stores (db, name) VALUES (?1, ?2)")?
            .execute(params![store.db, store.store])?;
        let id = self.conn.last_insert_rowid();
        self.ids.insert(store.clone(), id);
        Ok(id)
    }

    fn open_export(&self, store: &StoreRef) -> Result<(Export, u64), StorageError> {
        if self.version < EXPORT_VERSION {
            return Err(StorageError::NotMigrated(self.version));
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "cache_size", -EXPORT_CACHE_KIB)?;
        // Outside WAL a long reader would block the writer's commits for as long as it reads.
        let journal: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(StorageError::Malformed(format!("exports need WAL mode; the file is in {journal} mode")));
        }
        conn.execute_batch("BEGIN")?;
        // The snapshot is taken by this first read: the head and every later page agree.
        let row: Option<(i64, i64)> = conn
            .query_row("SELECT id, head FROM stores WHERE db = ?1 AND name = ?2", params![store.db, store.store], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let Some((id, head)) = row else { return Ok((Export { conn, store: None }, 0)) };
        let unfilled: bool = conn.query_row(
            // Named, so that the planner never walks the store's rows through `docs_by_store`.
            "SELECT EXISTS (SELECT 1 FROM docs INDEXED BY docs_unexported WHERE store = ?1 AND heads IS NULL)",
            params![id],
            |r| r.get(0),
        )?;
        if unfilled {
            return Err(StorageError::NotFilled(store.clone()));
        }
        Ok((Export { conn, store: Some(id) }, seq_u64(head)?))
    }

    /// `doc_changes` of a chained log: back from the document's last row, one row at a time by
    /// the log's primary key, to the first at or before `after`. A row missing on the way is
    /// an error, never a shorter history.
    fn chained_changes(&self, id: i64, doc: DocId, after: u64) -> Result<Vec<Vec<u8>>, StorageError> {
        let Some((_, last)) = self.doc_position(id, doc)? else { return Ok(vec![]) };
        let after = seq_i64(after)?;
        let mut stmt = self.conn.prepare_cached("SELECT prev, changes FROM log WHERE store = ?1 AND seq = ?2 AND doc = ?3")?;
        let mut blobs = Vec::new();
        let mut seq = last;
        while seq > after {
            let row: Option<(i64, Vec<u8>)> =
                stmt.query_row(params![id, seq, doc.0.as_slice()], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
            let Some((prev, blob)) = row else {
                return Err(StorageError::Malformed(format!("log row {seq} of {doc} is missing")));
            };
            if prev >= seq {
                return Err(StorageError::Malformed(format!("log row {seq} of {doc} names row {prev} as its previous")));
            }
            blobs.push(blob);
            seq = prev;
        }
        let mut out = Vec::new();
        for blob in blobs.iter().rev() {
            out.extend(decode_changes(blob)?);
        }
        Ok(out)
    }

    fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawLogRow> {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
    }
}

impl Backend for SqliteBackend {
    fn epoch(&self) -> [u8; 16] {
        self.epoch
    }

    fn begin(&mut self) -> Result<(), StorageError> {
        // IMMEDIATE takes the write lock now, so a concurrent reader (dump) cannot make the
        // commit fail half way with SQLITE_BUSY.
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StorageError> {
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), StorageError> {
        self.ids.clear();
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }

    fn savepoint(&mut self) -> Result<(), StorageError> {
        self.conn.execute_batch("SAVEPOINT frame")?;
        Ok(())
    }

    fn rollback_to_savepoint(&mut self) -> Result<(), StorageError> {
        // A store created after the savepoint loses its row, and with it its id.
        self.ids.clear();
        self.conn.execute_batch("ROLLBACK TO frame; RELEASE frame")?;
        Ok(())
    }

    fn release_savepoint(&mut self) -> Result<(), StorageError> {
        self.conn.execute_batch("RELEASE frame")?;
        Ok(())
    }

    fn store_meta(&mut self, store: &StoreRef) -> Result<Option<StoreMeta>, StorageError> {
        let row: Option<(i64, i64)> = self
            .conn
            .prepare_cached("SELECT head, horizon FROM stores WHERE db = ?1 AND name = ?2")?
            .query_row(params![store.db, store.store], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        row.map(|(head, horizon)| Ok(StoreMeta { head: seq_u64(head)?, horizon: seq_u64(horizon)? }))
            .transpose()
    }

    fn stores(&mut self) -> Result<Vec<StoreRef>, StorageError> {
        let mut stmt = self.conn.prepare_cached("SELECT db, name FROM stores ORDER BY db, name")?;
        let rows = stmt.query_map([], |r| Ok(StoreRef::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn doc(&mut self, store: &StoreRef, doc: DocId) -> Result<Option<DocRow>, StorageError> {
        let Some(id) = self.store_id(store)? else { return Ok(None) };
        let row: Option<RawDocRow> = self
            .conn
            .prepare_cached("SELECT key, last_seq, snap_seq, snapshot FROM docs WHERE store = ?1 AND doc = ?2")?
            .query_row(params![id, doc.0.to_vec()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?;
        row.map(|(key, last, snap, snapshot)| {
            Ok(DocRow { key, last_seq: seq_u64(last)?, snap_seq: seq_u64(snap)?, snapshot })
        })
        .transpose()
    }

    fn doc_changes(&mut self, store: &StoreRef, doc: DocId, after: u64) -> Result<Vec<Vec<u8>>, StorageError> {
        let Some(id) = self.store_id(store)? else { return Ok(vec![]) };
        if self.version >= CHAIN_VERSION {
            return self.chained_changes(id, doc, after);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT changes FROM log WHERE store = ?1 AND doc = ?2 AND seq > ?3 ORDER BY seq")?;
        let mut rows = stmt.query(params![id, doc.0.to_vec(), seq_i64(after)?])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let blob: Vec<u8> = row.get(0)?;
            out.extend(decode_changes(&blob)?);
        }
        Ok(out)
    }

    fn list_docs(
        &mut self,
        store: &StoreRef,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, StorageError> {
        let Some(id) = self.store_id(store)? else { return Ok(vec![]) };
        // An empty blob sorts before every 16-byte id, so "after nothing" needs no second query.
        let after = after.map(|d| d.0.to_vec()).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT doc, key FROM docs WHERE store = ?1 AND doc > ?2 ORDER BY doc LIMIT ?3")?;
        let mut rows = stmt.query(params![id, after, limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push((doc_id(row.get(0)?)?, row.get(1)?));
        }
        Ok(out)
    }

    fn log_since(&mut self, store: &StoreRef, after: u64, limit: usize) -> Result<Vec<LogRow>, StorageError> {
        let Some(id) = self.store_id(store)? else { return Ok(vec![]) };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, doc, key, origin, at, changes FROM log WHERE store = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let mut rows = stmt.query(params![id, seq_i64(after)?, limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let (seq, doc, key, origin, at_ms, changes) = Self::read_row(row)?;
            let origin: [u8; 16] =
                origin.try_into().map_err(|_| StorageError::Malformed("origin is not 16 bytes".into()))?;
            out.push(LogRow {
                seq: seq_u64(seq)?,
                doc: doc_id(doc)?,
                key,
                changes: decode_changes(&changes)?,
                origin: PeerId(origin),
                at_ms,
            });
        }
        Ok(out)
    }

    fn append(&mut self, store: &StoreRef, row: &LogRow) -> Result<(), StorageError> {
        if self.conn.is_autocommit() {
            return Err(StorageError::NoTransaction);
        }
        let id = self.create_store(store)?;
        let seq = seq_i64(row.seq)?;
        match self.doc_position(id, row.doc)? {
            Some((rowid, last)) => {
                self.insert_log(id, seq, last, row)?;
                self.conn.prepare_cached("UPDATE docs SET last_seq = ?2 WHERE rowid = ?1")?.execute(params![rowid, seq])?;
            }
            None => {
                self.insert_log(id, seq, 0, row)?;
                self.conn
                    .prepare_cached("INSERT INTO docs (store, doc, key, last_seq) VALUES (?1, ?2, ?3, ?4)")?
                    .execute(params![id, row.doc.0.as_slice(), row.key, seq])?;
            }
        }
        self.conn.prepare_cached("UPDATE stores SET head = ?2 WHERE id = ?1")?.execute(params![id, seq])?;
        Ok(())
    }

    fn append_exported(
        &mut self,
        store: &StoreRef,
        row: &LogRow,
        heads: &[[u8; 32]],
        value: Option<&[u8]>,
        tip: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        if self.conn.is_autocommit() {
            return Err(StorageError::NoTransaction);
        }
        if self.version < EXPORT_VERSION {
            return Err(StorageError::NotMigrated(self.version));
        }
        let id = self.create_store(store)?;
        let seq = seq_i64(row.seq)?;
        // The row exists (a tip was read from it): one update for the log position and columns.
        let Some((rowid, last)) = self.doc_position(id, row.doc)? else {
            return Err(StorageError::Malformed(format!("export columns for {}, which has no row", row.doc)));
        };
        self.insert_log(id, seq, last, row)?;
        self.conn
            .prepare_cached("UPDATE docs SET last_seq = ?2, heads = ?3, value = ?4, tip = ?5 WHERE rowid = ?1")?
            .execute(params![rowid, seq, encode_heads(heads), value, tip])?;
        self.conn.prepare_cached("UPDATE stores SET head = ?2 WHERE id = ?1")?.execute(params![id, seq])?;
        Ok(())
    }

    fn put_snapshot(&mut self, store: &StoreRef, doc: DocId, snapshot: &[u8], seq: u64) -> Result<(), StorageError> {
        if self.conn.is_autocommit() {
            return Err(StorageError::NoTransaction);
        }
        let Some(id) = self.store_id(store)? else { return Ok(()) };
        self.conn
            .prepare_cached("UPDATE docs SET snapshot = ?3, snap_seq = ?4 WHERE store = ?1 AND doc = ?2")?
            .execute(params![id, doc.0.to_vec(), snapshot, seq_i64(seq)?])?;
        Ok(())
    }

    fn stale_docs(
        &mut self,
        store: &StoreRef,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, StorageError> {
        let Some(id) = self.store_id(store)? else { return Ok(vec![]) };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT doc, key FROM docs WHERE store = ?1 AND snap_seq < last_seq AND snap_seq < ?2 LIMIT ?3",
        )?;
        let mut rows = stmt.query(params![id, seq_i64(upto)?, limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push((doc_id(row.get(0)?)?, row.get(1)?));
        }
        Ok(out)
    }

    fn seq_before(&mut self, store: &StoreRef, before_ms: i64) -> Result<u64, StorageError> {
        let Some(id) = self.store_id(store)? else { return Ok(0) };
        let seq: Option<i64> = self
            .conn
            .prepare_cached("SELECT MAX(seq) FROM log WHERE store = ?1 AND at < ?2")?
            .query_row(params![id, before_ms], |r| r.get(0))?;
        seq_u64(seq.unwrap_or(0))
    }

    fn prune(&mut self, store: &StoreRef, upto: u64) -> Result<(), StorageError> {
        if self.conn.is_autocommit() {
            return Err(StorageError::NoTransaction);
        }
        let Some(id) = self.store_id(store)? else { return Ok(()) };
        let upto = seq_i64(upto)?;
        self.conn.prepare_cached("DELETE FROM log WHERE store = ?1 AND seq <= ?2")?.execute(params![id, upto])?;
        self.conn
            .prepare_cached("UPDATE stores SET horizon = MAX(horizon, ?2) WHERE id = ?1")?
            .execute(params![id, upto])?;
        Ok(())
    }

    fn put_export(
        &mut self,
        store: &StoreRef,
        doc: DocId,
        heads: &[[u8; 32]],
        value: Option<&[u8]>,
        tip: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        if self.conn.is_autocommit() {
            return Err(StorageError::NoTransaction);
        }
        if self.version < EXPORT_VERSION {
            return Err(StorageError::NotMigrated(self.version));
        }
        let Some(id) = self.store_id(store)? else {
            return Err(StorageError::Malformed(format!("export columns for {doc} of a store without rows")));
        };
        let updated = self
            .conn
            .prepare_cached("UPDATE docs SET heads = ?3, value = ?4, tip = ?5 WHERE store = ?1 AND doc = ?2")?
            .execute(params![id, doc.0.to_vec(), encode_heads(heads), value, tip])?;
        if updated != 1 {
            return Err(StorageError::Malformed(format!("export columns for {doc}, which has no row")));
        }
        Ok(())
    }

    fn export_row(&mut self, store: &StoreRef, doc: DocId) -> Result<Option<ExportRow>, StorageError> {
        let Some(id) = self.store_id(store)? else { return Ok(None) };
        let row = self
            .conn
            .prepare_cached("SELECT heads, value, tip FROM docs WHERE store = ?1 AND doc = ?2 AND heads IS NOT NULL")?
            .query_row(params![id, doc.0.to_vec()], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Option<Vec<u8>>>(1)?, r.get::<_, Option<Vec<u8>>>(2)?))
            })
            .optional()?;
        row.map(|(heads, value, tip)| Ok(ExportRow { heads: decode_heads(&heads)?, value, tip })).transpose()
    }

    fn unexported_docs(
        &mut self,
        store: &StoreRef,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, StorageError> {
        if self.version < EXPORT_VERSION {
            return Ok(vec![]);
        }
        let Some(id) = self.store_id(store)? else { return Ok(vec![]) };
        let after = after.map(|d| d.0.to_vec()).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT doc, key FROM docs INDEXED BY docs_unexported WHERE store = ?1 AND doc > ?2 AND heads IS NULL ORDER BY doc LIMIT ?3",
        )?;
        let mut rows = stmt.query(params![id, after, limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push((doc_id(row.get(0)?)?, row.get(1)?));
        }
        Ok(out)
    }

    fn export_open(&mut self, store: &StoreRef) -> Result<(u64, u64), StorageError> {
        let (export, head) = self.open_export(store)?;
        let id = self.next_export;
        self.next_export += 1;
        self.exports.insert(id, export);
        Ok((id, head))
    }

    fn export_page(
        &mut self,
        export: u64,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Option<Vec<ExportRecord>>, StorageError> {
        let Some(export) = self.exports.get(&export) else { return Ok(None) };
        let Some(id) = export.store else { return Ok(Some(vec![])) };
        // Pages follow the table's own order (rowid, through `docs_by_store`), which reads each
        // page of the table once; document id order would seek across the table for every
        // record. The cursor is the last document sent, whose place the primary key finds.
        let from: i64 = match after {
            None => i64::MIN,
            Some(doc) => {
                let found = export
                    .conn
                    .prepare_cached("SELECT rowid FROM docs WHERE store = ?1 AND doc = ?2")?
                    .query_row(params![id, doc.0.to_vec()], |r| r.get(0))
                    .optional()?;
                let Some(rowid) = found else { return Ok(None) };
                rowid
            }
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = export.conn.prepare_cached(
            "SELECT doc, key, heads, value FROM docs WHERE store = ?1 AND rowid > ?2 ORDER BY rowid LIMIT ?3",
        )?;
        let mut rows = stmt.query(params![id, from, limit])?;
        let mut out = Vec::new();
        // Borrowed where the record takes no copy (the id, the heads blob): this runs once per
        // record of the store.
        let column = |e: rusqlite::types::FromSqlError| StorageError::Malformed(format!("an export column: {e}"));
        while let Some(row) = rows.next()? {
            let doc = doc_ref(row.get_ref(0)?.as_blob().map_err(column)?)?;
            let heads = row.get_ref(2)?.as_blob_or_null().map_err(column)?;
            let heads = heads.ok_or_else(|| StorageError::Malformed(format!("{doc} has no export columns")))?;
            out.push(ExportRecord { doc, key: row.get(1)?, heads: decode_heads(heads)?, value: row.get(3)? });
        }
        Ok(Some(out))
    }

    fn export_close(&mut self, export: u64) {
        // Dropping the connection ends its read transaction: the WAL can be checkpointed past it.
        self.exports.remove(&export);
    }

    fn open_exports(&self) -> usize {
        self.exports.len()
    }
}
