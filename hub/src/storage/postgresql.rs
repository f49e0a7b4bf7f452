//! The PostgreSQL backend: the same tables as SQLite in one PostgreSQL database, shared by any
//! number of hubs. A commit returns after PostgreSQL's commit (with its default
//! `synchronous_commit = on` the WAL is flushed first), which is the hub's "durable before
//! acknowledged".
//!
//! Fencing: when a hub runs with leases (see `crate::cluster`), every write checks, once per
//! transaction and database, that the database's lease row still carries the fencing number
//! this hub acquired, and locks that row (`FOR KEY SHARE`) until the commit. A takeover locks
//! the row `FOR UPDATE` before raising the number, which waits for that lock: either this transaction commits first
//! (its writes are then visible to the new owner when it loads) or the takeover committed first
//! and the check fails, so the transaction rolls back and nothing of it is visible. A hub that
//! was paused past its lease can therefore never write after another hub took the database over.
//! Renewals only move `expires` (a `FOR NO KEY UPDATE` lock), which `FOR KEY SHARE` does not
//! block, so a busy owner's writes never hold up its own renewals.
//!
//! Exports each open a connection of their own in a `REPEATABLE READ READ ONLY` transaction:
//! its snapshot is fixed at the first query (the store's log head), so every page sees the same
//! commit and never the writer's open transaction, as on SQLite.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use postgres::{Client, NoTls};
use rand::RngCore;
use tidepool_core::wire::{ExportRecord, PeerId};
use tidepool_core::{DocId, StoreRef};

use super::{
    Backend, DocRow, ExportRow, LogRow, StorageError, StoreMeta, decode_changes, decode_heads, encode_changes, encode_heads,
};

/// Created in one transaction under an advisory lock, so hubs starting together on an empty
/// database do not race on `CREATE TABLE`.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tidepool_meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS tidepool_stores (
    id BIGSERIAL PRIMARY KEY,
    db TEXT NOT NULL,
    name TEXT NOT NULL,
    head BIGINT NOT NULL DEFAULT 0,
    horizon BIGINT NOT NULL DEFAULT 0,
    UNIQUE (db, name)
);
CREATE TABLE IF NOT EXISTS tidepool_docs (
    store BIGINT NOT NULL,
    doc BYTEA NOT NULL,
    key BYTEA NOT NULL,
    last_seq BIGINT NOT NULL,
    snap_seq BIGINT NOT NULL DEFAULT 0,
    snapshot BYTEA,
    heads BYTEA,
    value BYTEA,
    PRIMARY KEY (store, doc)
);
ALTER TABLE tidepool_docs ADD COLUMN IF NOT EXISTS tip BYTEA;
CREATE INDEX IF NOT EXISTS tidepool_docs_unexported ON tidepool_docs (store, doc) WHERE heads IS NULL;
CREATE TABLE IF NOT EXISTS tidepool_log (
    store BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    doc BYTEA NOT NULL,
    key BYTEA NOT NULL,
    origin BYTEA NOT NULL,
    at BIGINT NOT NULL,
    changes BYTEA NOT NULL,
    PRIMARY KEY (store, seq)
);
CREATE INDEX IF NOT EXISTS tidepool_log_by_doc ON tidepool_log (store, doc, seq);
CREATE INDEX IF NOT EXISTS tidepool_log_by_time ON tidepool_log (store, at);
CREATE TABLE IF NOT EXISTS tidepool_hubs (
    id TEXT PRIMARY KEY,
    addr TEXT NOT NULL,
    expires TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS tidepool_leases (
    db TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    fence BIGINT NOT NULL,
    expires TIMESTAMPTZ NOT NULL
);
";

/// Any fixed number: the advisory lock key that serialises schema creation.
const SCHEMA_LOCK: i64 = 0x7469_6465_706f_6f6c;

/// Fencing numbers of the databases this hub holds leases on, shared with the lease keeper.
#[derive(Debug, Default)]
pub struct Fences {
    held: Mutex<HashMap<String, i64>>,
}

impl Fences {
    pub fn set(&self, db: &str, fence: i64) {
        self.lock().insert(db.to_owned(), fence);
    }

    pub fn remove(&self, db: &str) {
        self.lock().remove(db);
    }

    pub fn get(&self, db: &str) -> Option<i64> {
        self.lock().get(db).copied()
    }

    pub fn held(&self) -> Vec<String> {
        let mut dbs: Vec<String> = self.lock().keys().cloned().collect();
        dbs.sort();
        dbs
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        // A panic while holding this lock leaves a plain map: still consistent.
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Hub storage in a PostgreSQL database.
pub struct PostgresBackend {
    client: Client,
    url: String,
    epoch: [u8; 16],
    in_tx: bool,
    read_only: bool,
    /// Reapplied to a new session after a reconnect.
    idle_tx_timeout_ms: Option<i64>,
    ids: HashMap<StoreRef, i64>,
    /// `Some`: writes are fenced by these leases.
    fences: Option<Arc<Fences>>,
    /// Databases whose lease row this transaction has checked and locked.
    checked: HashSet<String>,
    exports: HashMap<u64, Export>,
    next_export: u64,
}

struct Export {
    client: Client,
    store: Option<i64>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend").field("epoch", &hex::encode(self.epoch)).finish_non_exhaustive()
    }
}

fn seq_u64(v: i64) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|_| StorageError::Malformed(format!("negative sequence number {v}")))
}

fn seq_i64(v: u64) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|_| StorageError::Malformed(format!("sequence number {v} overflows")))
}

fn doc_id(bytes: Vec<u8>) -> Result<DocId, StorageError> {
    let id: [u8; 16] = bytes.try_into().map_err(|_| StorageError::Malformed("document id is not 16 bytes".into()))?;
    Ok(DocId(id))
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Connects, with a clear error naming the server (never the password).
pub fn postgres_connect(url: &str) -> Result<Client, StorageError> {
    Client::connect(url, NoTls).map_err(|e| StorageError::Postgres(Box::new(e)))
}

impl PostgresBackend {
    /// Connects and creates the schema and the epoch if the database has none yet.
    pub fn open(url: &str, read_only: bool) -> Result<Self, StorageError> {
        let mut client = postgres_connect(url)?;
        if !read_only {
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
            tx.batch_execute(SCHEMA)?;
            let mut epoch = [0u8; 16];
            rand::rng().fill_bytes(&mut epoch);
            tx.execute(
                "INSERT INTO tidepool_meta (name, value) VALUES ('epoch', $1) ON CONFLICT (name) DO NOTHING",
                &[&epoch.as_slice()],
            )?;
            tx.commit()?;
        }
        let row = client.query_opt("SELECT value FROM tidepool_meta WHERE name = 'epoch'", &[]).map_err(|e| {
            if read_only { StorageError::Malformed(format!("no hub storage in this database ({e})")) } else { e.into() }
        })?;
        let epoch: Vec<u8> = row.ok_or_else(|| StorageError::Malformed("no epoch stored".into()))?.get(0);
        let epoch: [u8; 16] = epoch.try_into().map_err(|_| StorageError::Malformed("epoch is not 16 bytes".into()))?;
        Ok(PostgresBackend {
            client,
            url: url.to_owned(),
            epoch,
            in_tx: false,
            read_only,
            idle_tx_timeout_ms: None,
            ids: HashMap::new(),
            fences: None,
            checked: HashSet::new(),
            exports: HashMap::new(),
            next_export: 1,
        })
    }

    /// Every write from now on must hold a lease in `fences` for its database.
    pub fn with_fences(mut self, fences: Arc<Fences>) -> Self {
        self.fences = Some(fences);
        self
    }

    /// Sets `idle_in_transaction_session_timeout` on the writer: a hub stopped in the middle of
    /// a transaction (SIGSTOP, a stuck disk) then loses its session, and the lease rows it
    /// locked, instead of blocking a takeover for as long as it is stopped.
    pub fn set_idle_tx_timeout(&mut self, timeout: std::time::Duration) -> Result<(), StorageError> {
        let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::from(i32::MAX)).clamp(1, i64::from(i32::MAX));
        self.client.batch_execute(&format!("SET idle_in_transaction_session_timeout = {ms}"))?;
        self.idle_tx_timeout_ms = Some(ms);
        Ok(())
    }

    /// A lost session (the server restarted, or ended an idle transaction) is replaced before
    /// the next transaction; the one it was in is gone with it, as a rollback.
    fn reconnect_if_closed(&mut self) -> Result<(), StorageError> {
        if self.client.is_closed() {
            tracing::warn!("the PostgreSQL session was closed; reconnecting");
            self.client = postgres_connect(&self.url)?;
            if let Some(ms) = self.idle_tx_timeout_ms {
                self.client.batch_execute(&format!("SET idle_in_transaction_session_timeout = {ms}"))?;
            }
            self.ids.clear();
        }
        Ok(())
    }

    fn writable(&self) -> Result<(), StorageError> {
        if self.read_only {
            return Err(StorageError::ReadOnly);
        }
        if !self.in_tx {
            return Err(StorageError::NoTransaction);
        }
        Ok(())
    }

    /// The fencing check of a write to `db` (see the module comment).
    fn fence(&mut self, db: &str) -> Result<(), StorageError> {
        let Some(fences) = &self.fences else { return Ok(()) };
        if self.checked.contains(db) {
            return Ok(());
        }
        let fence = fences.get(db).ok_or_else(|| StorageError::NotOwner(db.to_owned()))?;
        let row = self.client.query_opt(
            "SELECT 1 FROM tidepool_leases WHERE db = $1 AND fence = $2 FOR KEY SHARE",
            &[&db, &fence],
        )?;
        if row.is_none() {
            return Err(StorageError::Fenced { db: db.to_owned(), fence });
        }
        self.checked.insert(db.to_owned());
        Ok(())
    }

    fn store_id(&mut self, store: &StoreRef) -> Result<Option<i64>, StorageError> {
        if let Some(id) = self.ids.get(store) {
            return Ok(Some(*id));
        }
        let row = self
            .client
            .query_opt("SELECT id FROM tidepool_stores WHERE db = $1 AND name = $2", &[&store.db, &store.store])?;
        let id = row.map(|r| r.get::<_, i64>(0));
        if let Some(id) = id {
            self.ids.insert(store.clone(), id);
        }
        Ok(id)
    }

    fn create_store(&mut self, store: &StoreRef) -> Result<i64, StorageError> {
        if let Some(id) = self.store_id(store)? {
            return Ok(id);
        }
        let row = self.client.query_one(
            "INSERT INTO tidepool_stores (db, name) VALUES ($1, $2) RETURNING id",
            &[&store.db, &store.store],
        )?;
        let id: i64 = row.get(0);
        self.ids.insert(store.clone(), id);
        Ok(id)
    }

    fn doc_pairs(rows: Vec<postgres::Row>) -> Result<Vec<(DocId, Vec<u8>)>, StorageError> {
        rows.into_iter().map(|r| Ok((doc_id(r.get(0))?, r.get(1)))).collect()
    }
}

impl Backend for PostgresBackend {
    fn epoch(&self) -> [u8; 16] {
        self.epoch
    }

    fn begin(&mut self) -> Result<(), StorageError> {
        self.reconnect_if_closed()?;
        self.client.batch_execute("BEGIN")?;
        self.in_tx = true;
        self.checked.clear();
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StorageError> {
        self.checked.clear();
        self.in_tx = false;
        self.client.batch_execute("COMMIT")?;
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), StorageError> {
        self.ids.clear();
        self.checked.clear();
        if self.in_tx {
            self.in_tx = false;
            if !self.client.is_closed() {
                self.client.batch_execute("ROLLBACK")?;
            }
        }
        Ok(())
    }

    fn savepoint(&mut self) -> Result<(), StorageError> {
        self.client.batch_execute("SAVEPOINT frame")?;
        Ok(())
    }

    fn rollback_to_savepoint(&mut self) -> Result<(), StorageError> {
        // A store created after the savepoint loses its row, and a lease row locked after it
        // loses its lock: check both again.
        self.ids.clear();
        self.checked.clear();
        self.client.batch_execute("ROLLBACK TO SAVEPOINT frame; RELEASE SAVEPOINT frame")?;
        Ok(())
    }

    fn release_savepoint(&mut self) -> Result<(), StorageError> {
        self.client.batch_execute("RELEASE SAVEPOINT frame")?;
        Ok(())
    }

    fn store_meta(&mut self, store: &StoreRef) -> Result<Option<StoreMeta>, StorageError> {
        let row = self.client.query_opt(
            "SELECT head, horizon FROM tidepool_stores WHERE db = $1 AND name = $2",
            &[&store.db, &store.store],
        )?;
        row.map(|r| Ok(StoreMeta { head: seq_u64(r.get(0))?, horizon: seq_u64(r.get(1))? })).transpose()
    }

    fn stores(&mut self) -> Result<Vec<StoreRef>, StorageError> {
        // With leases, only the stores of the databases this hub owns: compaction must not
        // write to the others.
        let rows = self.client.query("SELECT db, name FROM tidepool_stores ORDER BY db, name", &[])?;
        let fences = self.fences.clone();
        Ok(rows
            .into_iter()
            .map(|r| StoreRef::new(r.get::<_, String>(0), r.get::<_, String>(1)))
            .filter(|s| fences.as_ref().is_none_or(|f| f.get(&s.db).is_some()))
            .collect())
    }

    fn doc(&mut self, store: &StoreRef, doc: DocId) -> Result<Option<DocRow>, StorageError> {
        let Some(id) = self.store_id(store)? else { return Ok(None) };
        let row = self.client.query_opt(
            "SELECT key, last_seq, snap_seq, snapshot FROM tidepool_docs WHERE store = $1 AND doc = $2",
            &[&id, &doc.0.as_slice()],
        )?;
        row.map(|r| {
            Ok(DocRow { key: r.get(0), last_seq: seq_u64(r.get(1))?, snap_seq: seq_u64(r.get(2))?, snapshot: r.get(3) })
        })
        .transpose()
    }

    fn doc_changes(&mut self, store: &StoreRef, doc: DocId, after: u64) -> Result<Vec<Vec<u8>>, StorageError> {
        let Some(id) = self.store_id(store)? else { return Ok(vec![]) };
        let rows = self.client.query(
            "SELECT changes FROM tidepool_log WHERE store = $1 AND doc = $2 AND seq > $3 ORDER BY seq",
            &[&id, &doc.0.as_slice(), &seq_i64(after)?],
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.extend(decode_changes(row.get::<_, &[u8]>(0))?);
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
        // An empty bytea sorts before every id (bytea compares bytewise, like SQLite's blobs).
        let after = after.map(|d| d.0.to_vec()).unwrap_or_default();
        let rows = self.client.query(
            "SELECT doc, key FROM tidepool_docs WHERE store = $1 AND doc > $2 ORDER BY doc LIMIT $3",
            &[&id, &after, &limit_i64(limit)],
        )?;
        Self::doc_pairs(rows)
    }

    fn log_since(&mut self, store: &StoreRef, after: u64, limit: usize) -> Result<Vec<LogRow>, StorageError> {
        let Some(id) = self.store_id(store)? else { return Ok(vec![]) };
        let rows = self.client.query(
            "SELECT seq, doc, key, origin, at, changes FROM tidepool_log
             WHERE store = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&id, &seq_i64(after)?, &limit_i64(limit)],
        )?;
        rows.into_iter()
            .map(|r| {
                let origin: Vec<u8> = r.get(3);
                let origin: [u8; 16] =
                    origin.try_into().map_err(|_| StorageError::Malformed("origin is not 16 bytes".into()))?;
                Ok(LogRow {
                    seq: seq_u64(r.get(0))?,
                    doc: doc_id(r.get(1))?,
                    key: r.get(2),
                    changes: decode_changes(r.get::<_, &[u8]>(5))?,
                    origin: PeerId(origin),
                    at_ms: r.get(4),
                })
            })
            .collect()
    }

    fn append(&mut self, store: &StoreRef, row: &LogRow) -> Result<(), StorageError> {
        self.writable()?;
        self.fence(&store.db)?;
        let id = self.create_store(store)?;
        let seq = seq_i64(row.seq)?;
        let doc = row.doc.0.as_slice();
        self.client.execute(
            "INSERT INTO tidepool_log (store, seq, doc, key, origin, at, changes) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&id, &seq, &doc, &row.key, &row.origin.0.as_slice(), &row.at_ms, &encode_changes(&row.changes)],
        )?;
        self.client.execute(
            "INSERT INTO tidepool_docs (store, doc, key, last_seq) VALUES ($1, $2, $3, $4)
             ON CONFLICT (store, doc) DO UPDATE SET last_seq = excluded.last_seq",
            &[&id, &doc, &row.key, &seq],
        )?;
        self.client.execute("UPDATE tidepool_stores SET head = $2 WHERE id = $1", &[&id, &seq])?;
        Ok(())
    }

    fn put_snapshot(&mut self, store: &StoreRef, doc: DocId, snapshot: &[u8], seq: u64) -> Result<(), StorageError> {
        self.writable()?;
        // A document of a database this hub no longer holds may still be evicted from the
        // cache: its snapshot is only a shortcut (the log has every change), so it is skipped
        // rather than failing the batch that evicted it.
        if self.fences.as_ref().is_some_and(|f| f.get(&store.db).is_none()) {
            return Ok(());
        }
        self.fence(&store.db)?;
        let Some(id) = self.store_id(store)? else { return Ok(()) };
        self.client.execute(
            "UPDATE tidepool_docs SET snapshot = $3, snap_seq = $4 WHERE store = $1 AND doc = $2",
            &[&id, &doc.0.as_slice(), &snapshot, &seq_i64(seq)?],
        )?;
        Ok(())
    }

    fn stale_docs(
        &mut self,
        store: &StoreRef,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, StorageError> {
        let Some(id) = self.store_id(store)? else { return Ok(vec![]) };
        let rows = self.client.query(
            "SELECT doc, key FROM tidepool_docs WHERE store = $1 AND snap_seq < last_seq AND snap_seq < $2 LIMIT $3",
            &[&id, &seq_i64(upto)?, &limit_i64(limit)],
        )?;
        Self::doc_pairs(rows)
    }

    fn seq_before(&mut self, store: &StoreRef, before_ms: i64) -> Result<u64, StorageError> {
        let Some(id) = self.store_id(store)? else { return Ok(0) };
        let row = self
            .client
            .query_one("SELECT MAX(seq) FROM tidepool_log WHERE store = $1 AND at < $2", &[&id, &before_ms])?;
        seq_u64(row.get::<_, Option<i64>>(0).unwrap_or(0))
    }

    fn prune(&mut self, store: &StoreRef, upto: u64) -> Result<(), StorageError> {
        self.writable()?;
        self.fence(&store.db)?;
        let Some(id) = self.store_id(store)? else { return Ok(()) };
        let upto = seq_i64(upto)?;
        self.client.execute("DELETE FROM tidepool_log WHERE store = $1 AND seq <= $2", &[&id, &upto])?;
        self.client
            .execute("UPDATE tidepool_stores SET horizon = GREATEST(horizon, $2) WHERE id = $1", &[&id, &upto])?;
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
        self.writable()?;
        self.fence(&store.db)?;
        let Some(id) = self.store_id(store)? else {
            return Err(StorageError::Malformed(format!("export columns for {doc} of a store without rows")));
        };
        let updated = self.client.execute(
            "UPDATE tidepool_docs SET heads = $3, value = $4, tip = $5 WHERE store = $1 AND doc = $2",
            &[&id, &doc.0.as_slice(), &encode_heads(heads), &value, &tip],
        )?;
        if updated != 1 {
            return Err(StorageError::Malformed(format!("export columns for {doc}, which has no row")));
        }
        Ok(())
    }

    fn export_row(&mut self, store: &StoreRef, doc: DocId) -> Result<Option<ExportRow>, StorageError> {
        let Some(id) = self.store_id(store)? else { return Ok(None) };
        let row = self.client.query_opt(
            "SELECT heads, value, tip FROM tidepool_docs WHERE store = $1 AND doc = $2 AND heads IS NOT NULL",
            &[&id, &doc.0.as_slice()],
        )?;
        row.map(|r| {
            let heads: &[u8] = r.get(0);
            Ok(ExportRow { heads: decode_heads(heads)?, value: r.get(1), tip: r.get(2) })
        })
        .transpose()
    }

    fn unexported_docs(
        &mut self,
        store: &StoreRef,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, StorageError> {
        let Some(id) = self.store_id(store)? else { return Ok(vec![]) };
        let after = after.map(|d| d.0.to_vec()).unwrap_or_default();
        let rows = self.client.query(
            "SELECT doc, key FROM tidepool_docs WHERE store = $1 AND doc > $2 AND heads IS NULL ORDER BY doc LIMIT $3",
            &[&id, &after, &limit_i64(limit)],
        )?;
        Self::doc_pairs(rows)
    }

    fn export_open(&mut self, store: &StoreRef) -> Result<(u64, u64), StorageError> {
        let mut client = postgres_connect(&self.url)?;
        client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        // The snapshot is taken by this first query: the head and every later page agree.
        let row = client.query_opt(
            "SELECT id, head FROM tidepool_stores WHERE db = $1 AND name = $2",
            &[&store.db, &store.store],
        )?;
        let (export, head) = match row {
            None => (Export { client, store: None }, 0),
            Some(r) => {
                let id: i64 = r.get(0);
                let unfilled: bool = client
                    .query_one("SELECT EXISTS (SELECT 1 FROM tidepool_docs WHERE store = $1 AND heads IS NULL)", &[&id])?
                    .get(0);
                if unfilled {
                    return Err(StorageError::NotFilled(store.clone()));
                }
                (Export { client, store: Some(id) }, seq_u64(r.get(1))?)
            }
        };
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
        let Some(export) = self.exports.get_mut(&export) else { return Ok(None) };
        let Some(id) = export.store else { return Ok(Some(vec![])) };
        let after = after.map(|d| d.0.to_vec()).unwrap_or_default();
        let rows = export.client.query(
            "SELECT doc, key, heads, value FROM tidepool_docs WHERE store = $1 AND doc > $2 ORDER BY doc LIMIT $3",
            &[&id, &after, &limit_i64(limit)],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let doc = doc_id(r.get(0))?;
            let heads: Option<&[u8]> = r.get(2);
            let heads = heads.ok_or_else(|| StorageError::Malformed(format!("{doc} has no export columns")))?;
            out.push(ExportRecord { doc, key: r.get(1), heads: decode_heads(heads)?, value: r.get(3) });
        }
        Ok(Some(out))
    }

    fn export_close(&mut self, export: u64) {
        // Closing the connection ends its transaction and frees its snapshot.
        self.exports.remove(&export);
    }

    fn open_exports(&self) -> usize {
        self.exports.len()
    }
}
