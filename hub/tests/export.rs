//! Exports over real SQLite files, driven by core's client engines through the hub's engine
//! (group commit included): pages cover every document once, in id order, with exactly the heads
//! and values clients hold; every page of an export is of one cut whatever is committed between
//! pages; exports end with their connection; the hub-wide limit refuses without failing a batch;
//! the export columns match the documents after failures at every write; version-1 files are
//! migrated and backfilled; through the hub binary, a version-1 data directory is filled before
//! the hub serves, the columns survive `kill -9`, and a 50,000-record export keeps the hub's
//! memory bounded.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{HubProcess, TestDir, authed, full_token, next, send};
use tidepool_client::{Client, ClientOptions};

use rusqlite::{Connection, params};
use tidepool_core::automerge::ActorId;
use tidepool_core::sync::{AllowAll, ClientConfig, ClientEngine, ClientEvent, ConnId, HubConfig, HubStore, MemoryClientDocs};
use tidepool_core::wire::{self, Cursor, ErrorCode, ExportRecord, Message, Payload, PeerId};
use tidepool_core::{DocId, Key, Record, StoreRef, Value, Verified, object};
use tidepool_hub::engine::{Delivery, Engine, Input};
use tidepool_hub::metrics::Metrics;
use tidepool_hub::storage::{
    Backend, Faulty, MemoryBackend, OpenMode, PostgresBackend, SqliteBackend, Storage, StorageError, StorageOptions,
};

type HubEngine<B> = Engine<B, AllowAll>;

fn store() -> StoreRef {
    StoreRef::new("app", "items")
}

/// A small cache, so appends, exports and loads also meet evicted documents.
fn options() -> StorageOptions {
    StorageOptions { cache_docs: 8, snapshot_every: 4, ..StorageOptions::default() }
}

fn sqlite_engine(path: &Path) -> HubEngine<SqliteBackend> {
    let backend = SqliteBackend::open(path, OpenMode::ReadWrite).expect("open");
    Engine::new(Storage::new(backend, options()), AllowAll, HubConfig::default(), Arc::new(Metrics::default()))
}

struct Peer {
    engine: ClientEngine,
    docs: MemoryClientDocs,
    conn: ConnId,
    events: Vec<ClientEvent>,
    next_id: u64,
}

impl Peer {
    fn new<B: Backend>(hub: &mut HubEngine<B>, n: u8, subscribe: bool) -> Peer {
        let mut engine = ClientEngine::new(ClientConfig::new(PeerId([n; 16]), "token"));
        if subscribe {
            engine.subscribe(store(), None);
        }
        engine.connected();
        Peer { engine, docs: MemoryClientDocs::new(ActorId::from([n; 16])), conn: hub.connect(), events: vec![], next_id: 1 }
    }

    fn put(&mut self, key: &str, value: &Value) {
        let record = self.docs.record_for(&store(), &Key::from(key)).expect("record");
        if let Some(change) = record.put(value, 0).expect("put") {
            let (doc, key) = (record.id(), record.encoded_key().to_vec());
            self.engine.enqueue(self.next_id, store(), doc, key, change.bytes);
            self.next_id += 1;
        }
    }

    fn delete(&mut self, key: &str) {
        let record = self.docs.record_for(&store(), &Key::from(key)).expect("record");
        if let Some(change) = record.delete(0).expect("delete") {
            let (doc, key) = (record.id(), record.encoded_key().to_vec());
            self.engine.enqueue(self.next_id, store(), doc, key, change.bytes);
            self.next_id += 1;
        }
    }

    /// What an export must say about this peer's replica of the store.
    fn expected(&mut self) -> BTreeMap<DocId, ExportRecord> {
        self.docs.records(&store()).map(|r| (r.id(), export_record(r))).collect()
    }

    /// The pages received so far (and forgets them).
    fn pages(&mut self) -> Vec<(u64, Cursor, Vec<ExportRecord>, bool)> {
        let mut pages = vec![];
        for event in std::mem::take(&mut self.events) {
            match event {
                ClientEvent::ExportPage { export, cut, records, last, .. } => pages.push((export, cut, records, last)),
                ClientEvent::HubError { code, detail } => panic!("hub error {code:?}: {detail}"),
                _ => {}
            }
        }
        pages
    }

    fn errors(&mut self) -> Vec<ErrorCode> {
        std::mem::take(&mut self.events)
            .into_iter()
            .filter_map(|e| match e {
                ClientEvent::HubError { code, .. } => Some(code),
                _ => None,
            })
            .collect()
    }
}

/// The export form of a record, as the hub's storage is to write it.
fn export_record(record: &mut Record) -> ExportRecord {
    let value = record.get_plain().expect("readable").map(|v| json(&v));
    ExportRecord {
        doc: record.id(),
        key: record.encoded_key().to_vec(),
        heads: record.heads().iter().map(|h| h.0).collect(),
        value,
    }
}

fn json(value: &Value) -> Vec<u8> {
    serde_json::to_vec(&tidepool_json::JsonValue(value)).expect("json")
}

/// Delivers frames both ways, a batch (one commit) per round, until nobody has anything to say.
fn pump<B: Backend>(hub: &mut HubEngine<B>, peers: &mut [&mut Peer]) {
    for _ in 0..100 {
        let mut batch = vec![];
        for p in peers.iter_mut() {
            let out = p.engine.take_output();
            p.events.extend(out.events);
            batch.extend(out.frames.into_iter().map(|bytes| Input::Frame { conn: p.conn, bytes }));
        }
        if batch.is_empty() {
            return;
        }
        for delivery in hub.process(batch) {
            match delivery {
                Delivery::Frame { to, frame, .. } => {
                    let p = peers.iter_mut().find(|p| p.conn == to).expect("a peer");
                    p.engine.receive(&frame, &mut p.docs).expect("hub frames are valid");
                }
                Delivery::Close { conn, reason, .. } => panic!("connection {conn} closed: {reason:?}"),
                Delivery::Authenticated { .. } => {}
            }
        }
    }
    panic!("the peers never went quiet");
}

/// A value exercising the JSON mapping: nesting, dates, bytes, floats, a `$` key.
fn value(i: usize, round: usize) -> Value {
    object! {
        "i" => i as i64,
        "round" => round as i64,
        "name" => format!("item {i}"),
        "price" => i as f64 / 4.0,
        "when" => Value::Date(1_700_000_000_000 + i as i64),
        "raw" => Value::Bytes(vec![i as u8, 0, 255]),
        "tags" => Value::Array(vec![Value::from("a"), Value::Int((i % 3) as i64)]),
        "meta" => object! { "$odd" => i % 2 == 1 },
    }
}

/// Writes `n` records (every seventh deleted) and returns the writer, acknowledged.
fn populate<B: Backend>(hub: &mut HubEngine<B>, n: usize) -> Peer {
    let mut writer = Peer::new(hub, 1, true);
    pump(hub, &mut [&mut writer]);
    for i in 0..n {
        writer.put(&format!("k{i:04}"), &value(i, 0));
    }
    pump(hub, &mut [&mut writer]);
    for i in (0..n).step_by(7) {
        writer.delete(&format!("k{i:04}"));
    }
    // A record edited again after its first write: heads move, the value is the newest.
    for i in (1..n).step_by(5) {
        writer.put(&format!("k{i:04}"), &value(i, 1));
    }
    pump(hub, &mut [&mut writer]);
    assert_eq!(writer.engine.pending(), 0, "every write acknowledged");
    writer
}

/// Pages through a whole export; returns the cut and the records in the order received.
fn export_all<B: Backend>(hub: &mut HubEngine<B>, exporter: &mut Peer, limit: u32) -> (Cursor, Vec<ExportRecord>) {
    let (mut id, mut after, mut cut, mut records) = (None, None, None, vec![]);
    loop {
        exporter.engine.export(store(), id, after, limit);
        pump(hub, &mut [exporter]);
        let pages = exporter.pages();
        let [(export, page_cut, page, last)] = &pages[..] else { panic!("one page per request, got {}", pages.len()) };
        assert!(id.is_none_or(|id| id == *export), "pages of one export");
        assert!(cut.is_none_or(|c| c == *page_cut), "every page of an export has the same cut");
        assert!(page.len() <= limit as usize);
        (id, cut) = (Some(*export), Some(*page_cut));
        after = page.last().map(|r| r.doc).or(after);
        records.extend(page.iter().cloned());
        if *last {
            return (cut.expect("a cut"), records);
        }
    }
}

fn assert_covers(records: &[ExportRecord], expected: &BTreeMap<DocId, ExportRecord>, case: &str) {
    let ids: Vec<DocId> = records.iter().map(|r| r.doc).collect();
    let distinct: std::collections::BTreeSet<DocId> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "{case}: each document once over the pages");
    let got: BTreeMap<DocId, ExportRecord> = records.iter().map(|r| (r.doc, r.clone())).collect();
    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{case}: the documents");
    for (doc, want) in expected {
        assert_eq!(&got[doc], want, "{case}: the record of {doc}");
    }
}

fn postgres_engine(url: &str) -> HubEngine<PostgresBackend> {
    let backend = PostgresBackend::open(url, false).expect("open");
    Engine::new(Storage::new(backend, options()), AllowAll, HubConfig::default(), Arc::new(Metrics::default()))
}

/// A fetch for tips keeps the row for the push that follows; a write of the document in
/// between (here one that loads it) drops it, so a change on the old heads is not taken on the
/// old tip. Taken there, the row would say heads the document does not have.
#[test]
fn a_row_kept_by_a_fetch_for_tips_is_dropped_when_the_document_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = sqlite_engine(&dir.path().join("hub.sqlite"));
    let mut writer = Peer::new(&mut hub, 1, true);
    pump(&mut hub, &mut [&mut writer]);
    for key in ["a", "b"] {
        writer.put(key, &value(1, 0));
    }
    pump(&mut hub, &mut [&mut writer]);
    let s = store();
    let record = |writer: &mut Peer, key: &str| -> (DocId, Vec<u8>, Vec<u8>) {
        let r = writer.docs.record_for(&s, &Key::from(key)).expect("record");
        (r.id(), r.encoded_key().to_vec(), r.save())
    };
    // A change on the current heads of "a", made offline from a copy (as the bridge builds one
    // on a fetched tip).
    let on_heads = |saved: &[u8], key: &[u8], round: usize| -> Verified {
        let mut copy = Record::load(&s, key.to_vec(), &Payload::Document(saved.to_vec()), &ActorId::from([9u8; 16]))
            .expect("copy");
        let change = copy.put(&value(1, round), 0).expect("put").expect("a change");
        Verified::parse(&Payload::Changes(vec![change.bytes])).expect("verified")
    };

    // Fetched, then pushed on that tip: the kept row is taken.
    let (doc, key, saved) = record(&mut writer, "a");
    let storage = hub.storage_mut();
    assert!(storage.tip_record(&s, doc, &key).expect("fetch").is_some(), "a tip to fetch");
    let before = storage.stats();
    let seq = storage.append_on_tip(&s, doc, &key, &on_heads(&saved, &key, 5), PeerId([9; 16])).expect("append");
    assert!(seq.is_some(), "a change on the fetched tip is taken on it");
    assert_eq!(storage.stats().tip_rows_reused, before.tip_rows_reused + 1, "the fetched row was taken");
    storage.commit().expect("commit");

    // Fetched, then written by someone else on the document itself (core's way for a change
    // that is not a tip edit: the record loaded, the change applied and logged), then a change
    // on the fetched heads: it is no tip edit either, and the document merges both.
    let (doc, key, saved) = record(&mut writer, "b");
    let storage = hub.storage_mut();
    assert!(storage.tip_record(&s, doc, &key).expect("fetch").is_some(), "a tip to fetch");
    let other = {
        let r = writer.docs.record_for(&s, &Key::from("b")).expect("record");
        r.put(&value(1, 2), 0).expect("put").expect("a change").bytes
    };
    let storage = hub.storage_mut();
    let loaded = storage.record(&s, doc, &key).expect("load");
    loaded.apply_verified(Verified::parse(&Payload::Changes(vec![other.clone()])).expect("verified")).expect("apply");
    storage.append(&s, doc, &key, vec![other], PeerId([1; 16])).expect("append");
    let stale = on_heads(&saved, &key, 6);
    let before = storage.stats();
    let seq = storage.append_on_tip(&s, doc, &key, &stale, PeerId([9; 16])).expect("append");
    assert_eq!(seq, None, "the kept row went with the write; a change on older heads is not a tip edit");
    assert_eq!(storage.stats().tip_rows_reused, before.tip_rows_reused);
    storage.abort();
    assert_columns_match_documents(hub.storage_mut(), "after a kept row was dropped");
}

#[test]
fn pages_cover_every_document_once_with_the_heads_and_values_clients_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    pages_cover_every_document_once(sqlite_engine(&dir.path().join("hub.sqlite")));
}

fn pages_cover_every_document_once<B: Backend>(mut hub: HubEngine<B>) {
    let mut writer = populate(&mut hub, 120);
    // A client that downloaded the store sees the same documents as the writer.
    let mut reader = Peer::new(&mut hub, 2, true);
    pump(&mut hub, &mut [&mut reader]);
    let expected = writer.expected();
    assert_eq!(reader.expected(), expected, "the reader holds the writer's documents");
    let deleted = expected.values().filter(|r| r.value.is_none()).count();
    // Deleted: multiples of 7, except those put again afterwards (1 modulo 5).
    let want = (0..120).filter(|i| i % 7 == 0 && i % 5 != 1).count();
    assert_eq!(deleted, want, "deleted records are listed, without a value");

    // Edits made on a document's heads were logged on its tip, without loading it; the columns
    // they left are what loading the document gives.
    assert!(hub.storage().stats().tip_appends > 0, "no edit was taken on a tip");
    assert_columns_match_documents(hub.storage_mut(), "after edits on tips");

    let mut exporter = Peer::new(&mut hub, 3, false);
    pump(&mut hub, &mut [&mut exporter]);
    let head = hub.storage_mut().head_seq(&store()).expect("head");
    for limit in [1, 7, 50, 120, 1000] {
        let (cut, records) = export_all(&mut hub, &mut exporter, limit);
        assert_eq!(cut.seq, head, "limit {limit}: the cut is the log head");
        assert_eq!(cut.epoch, hub.storage().backend().epoch());
        assert_covers(&records, &expected, &format!("limit {limit}"));
    }
    // The value is Tidepool's JSON mapping, tags included.
    let sample = expected.values().find(|r| r.value.is_some()).expect("a live record");
    let parsed: serde_json::Value = serde_json::from_slice(sample.value.as_deref().expect("value")).expect("json");
    assert!(parsed["when"]["$date"].is_i64() && parsed["raw"]["$bytes"].is_string(), "{parsed}");
    assert_eq!(hub.storage().stats().exports_open, 0, "finished exports hold nothing");
}

#[test]
fn commits_between_pages_stay_out_of_an_open_export_and_a_new_export_sees_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    commits_between_pages_stay_out_of_an_open_export(sqlite_engine(&dir.path().join("hub.sqlite")));
}

/// The same export tests on a real PostgreSQL server (one server, a database per case).
#[test]
fn postgres_exports_are_one_consistent_cut_and_columns_survive_failing_writes() {
    let server = common::pg::PgServer::start();
    pages_cover_every_document_once(postgres_engine(&server.fresh_db()));
    commits_between_pages_stay_out_of_an_open_export(postgres_engine(&server.fresh_db()));
    an_export_opened_inside_a_batch_sees_the_last_commit(postgres_engine(&server.fresh_db()));
    let fired = columns_after_failing_writes(|_| {
        let url = server.fresh_db();
        (PostgresBackend::open(&url, false).expect("open"), move || PostgresBackend::open(&url, false).expect("reopen"))
    });
    assert!(fired >= 8, "the fault fired in only {fired} runs");
}

fn commits_between_pages_stay_out_of_an_open_export<B: Backend>(mut hub: HubEngine<B>) {
    let mut writer = populate(&mut hub, 60);
    let before = writer.expected();
    let head_before = hub.storage_mut().head_seq(&store()).expect("head");
    let mut exporter = Peer::new(&mut hub, 3, false);

    exporter.engine.export(store(), None, None, 10);
    pump(&mut hub, &mut [&mut exporter]);
    let [(export, cut, first, false)] = &exporter.pages()[..] else { panic!("a first page, not the last") };
    let (export, cut, mut records) = (*export, *cut, first.clone());
    assert_eq!(cut.seq, head_before);

    // Committed writes everywhere: before and after the page boundary, deletes, new records.
    for i in 0..60 {
        if i % 3 == 0 {
            writer.put(&format!("k{i:04}"), &value(i, 9));
        } else if i % 3 == 1 {
            writer.delete(&format!("k{i:04}"));
        }
    }
    for i in 60..90 {
        writer.put(&format!("k{i:04}"), &value(i, 9));
    }
    pump(&mut hub, &mut [&mut writer]);
    assert_eq!(writer.engine.pending(), 0, "the writes are committed and acknowledged");
    assert!(hub.storage_mut().head_seq(&store()).expect("head") > head_before);

    let mut after = records.last().map(|r| r.doc);
    loop {
        exporter.engine.export(store(), Some(export), after, 10);
        pump(&mut hub, &mut [&mut exporter]);
        let [(id, page_cut, page, last)] = &exporter.pages()[..] else { panic!("one page") };
        assert_eq!((*id, *page_cut), (export, cut), "the same export, the same cut");
        records.extend(page.iter().cloned());
        after = page.last().map(|r| r.doc).or(after);
        if *last {
            break;
        }
    }
    assert_covers(&records, &before, "the open export");

    let (new_cut, fresh) = export_all(&mut hub, &mut exporter, 25);
    assert_eq!(new_cut.seq, hub.storage_mut().head_seq(&store()).expect("head"));
    assert_covers(&fresh, &writer.expected(), "a new export");
}

/// Group commit: a push and an export in one batch. The export reads the last commit (not the
/// writer's open transaction), and its cut is that commit's head, so it is consistent.
fn an_export_opened_inside_a_batch_sees_the_last_commit<B: Backend>(mut hub: HubEngine<B>) {
    let mut writer = populate(&mut hub, 20);
    let before = writer.expected();
    let head_before = hub.storage_mut().head_seq(&store()).expect("head");
    let mut exporter = Peer::new(&mut hub, 3, false);
    pump(&mut hub, &mut [&mut exporter]);

    writer.put("k0000", &value(0, 5));
    writer.put("new", &value(99, 5));
    exporter.engine.export(store(), None, None, 1000);
    pump(&mut hub, &mut [&mut writer, &mut exporter]);
    assert_eq!(writer.engine.pending(), 0);
    let [(_, cut, records, true)] = &exporter.pages()[..] else { panic!("one last page") };
    assert_eq!(cut.seq, head_before, "the cut is the last commit");
    assert_covers(records, &before, "export opened in the writer's batch");
}

#[test]
fn an_export_opened_inside_a_batch_sees_the_last_commit_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    an_export_opened_inside_a_batch_sees_the_last_commit(sqlite_engine(&dir.path().join("hub.sqlite")));
}

#[test]
fn an_export_opened_inside_a_batch_sees_the_last_commit_memory() {
    let storage = Storage::new(MemoryBackend::new([4; 16]), options());
    let hub = Engine::new(storage, AllowAll, HubConfig::default(), Arc::new(Metrics::default()));
    an_export_opened_inside_a_batch_sees_the_last_commit(hub);
}

#[test]
fn exports_end_with_their_connection_and_the_hub_limit_refuses_without_failing_the_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = sqlite_engine(&dir.path().join("hub.sqlite"));
    let mut writer = populate(&mut hub, 30);
    let max = StorageOptions::default().max_exports;
    // Core allows 4 per connection; enough connections to reach the hub's limit and pass it.
    let mut exporters: Vec<Peer> = (0..max.div_ceil(4) + 1).map(|i| Peer::new(&mut hub, 10 + i as u8, false)).collect();
    for p in &mut exporters {
        pump(&mut hub, &mut [p]);
    }
    for p in exporters.iter_mut().take(max / 4) {
        for _ in 0..4 {
            p.engine.export(store(), None, None, 5);
        }
        pump(&mut hub, &mut [p]);
        assert_eq!(p.pages().len(), 4);
    }
    assert_eq!(hub.storage().stats().exports_open as usize, max);
    assert_eq!(hub.metrics().exports_open.load(std::sync::atomic::Ordering::Relaxed) as usize, max);

    // One more export, in the same batch as a push: the export is refused, the push committed.
    let last = exporters.last_mut().expect("an exporter");
    last.engine.export(store(), None, None, 5);
    writer.put("k0001", &value(1, 7));
    pump(&mut hub, &mut [&mut writer, last]);
    assert_eq!(last.errors(), vec![ErrorCode::Overloaded]);
    assert_eq!(writer.engine.pending(), 0, "the push in the same batch was acknowledged");
    assert_eq!(hub.storage().stats().exports_open as usize, max);

    // A connection that goes away frees its exports (and their read connections).
    let gone = exporters[0].conn;
    let _ = hub.process(vec![Input::Disconnect { conn: gone, reason: None }]);
    assert_eq!(hub.storage().stats().exports_open as usize, max - 4);
    let last = exporters.last_mut().expect("an exporter");
    last.engine.export(store(), None, None, 1000);
    pump(&mut hub, &mut [last]);
    let [(_, _, records, true)] = &last.pages()[..] else { panic!("a whole export") };
    assert_eq!(records.len(), 30);
    for p in &exporters[1..] {
        let _ = hub.process(vec![Input::Disconnect { conn: p.conn, reason: None }]);
    }
    assert_eq!(hub.storage().stats().exports_open, 0);
    assert_eq!(hub.metrics().exports_open.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// Every document's export columns, read through an export, against the document itself.
fn assert_columns_match_documents<B: Backend>(storage: &mut Storage<B>, case: &str) {
    let s = store();
    let (export, _) = storage.export_open(&s).expect("export").expect("room for an export");
    let mut records = storage.export_page(export, None, usize::MAX).expect("page").expect("open");
    storage.export_close(export);
    // Exports come in the backend's order; `docs` lists by id.
    records.sort_by_key(|r| r.doc);
    let docs = storage.docs(&s, None, usize::MAX).expect("docs");
    assert_eq!(records.len(), docs.len(), "{case}: one record per document");
    for (record, (doc, key)) in records.iter().zip(docs) {
        let loaded = storage.record(&s, doc, &key).expect("load");
        assert_eq!(record, &export_record(loaded), "{case}: export columns of {doc}");
    }
    storage.abort();
}

/// Writes through a backend that dies after `budget` writes; then the reopened file's columns
/// must equal its documents (whatever committed, the columns committed with it).
#[test]
fn export_columns_stay_consistent_with_the_log_when_writes_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fired = columns_after_failing_writes(|budget| {
        let path = dir.path().join(format!("hub-{budget}.sqlite"));
        let backend = SqliteBackend::open(&path, OpenMode::ReadWrite).expect("open");
        (backend, move || SqliteBackend::open(&path, OpenMode::ReadWrite).expect("reopen"))
    });
    assert!(fired >= 8, "the fault fired in only {fired} runs");
}

/// Per budget, `open` gives a fresh backend and how to reopen its storage after the failure.
/// Returns in how many runs the fault fired.
fn columns_after_failing_writes<B: Backend, R: FnOnce() -> B>(mut open: impl FnMut(u64) -> (B, R)) -> usize {
    let mut fired = 0;
    for budget in [1u64, 2, 3, 4, 5, 8, 13, 21, 34, 55, 89] {
        let (backend, reopen) = open(budget);
        let backend = Faulty::new(backend, budget);
        let mut hub = Engine::new(Storage::new(backend, options()), AllowAll, HubConfig::default(), Arc::new(Metrics::default()));
        let mut writer = Peer::new(&mut hub, 1, true);
        'rounds: for round in 0..6 {
            for i in 0..8 {
                match (i + round) % 4 {
                    0 => writer.delete(&format!("k{i}")),
                    _ => writer.put(&format!("k{i}"), &value(i, round)),
                }
                let batch: Vec<Input> =
                    writer.engine.take_output().frames.into_iter().map(|bytes| Input::Frame { conn: writer.conn, bytes }).collect();
                for delivery in hub.process(batch) {
                    if let Delivery::Frame { frame, .. } = delivery {
                        writer.engine.receive(&frame, &mut writer.docs).expect("hub frames are valid");
                    }
                }
                if hub.storage().backend().failed() {
                    fired += 1;
                    break 'rounds;
                }
            }
        }
        // Closing the connection discards the open transaction (SQLite and PostgreSQL alike).
        drop(hub);
        let mut storage = Storage::new(reopen(), options());
        assert_columns_match_documents(&mut storage, &format!("budget {budget}"));
    }
    fired
}

// ---- Version 1 files ----

/// The version-1 schema, as hubs before the export columns created it.
const V1_SCHEMA: &str = "
CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE stores (
    id INTEGER PRIMARY KEY, db TEXT NOT NULL, name TEXT NOT NULL,
    head INTEGER NOT NULL DEFAULT 0, horizon INTEGER NOT NULL DEFAULT 0, UNIQUE (db, name)
);
CREATE TABLE docs (
    store INTEGER NOT NULL, doc BLOB NOT NULL, key BLOB NOT NULL, last_seq INTEGER NOT NULL,
    snap_seq INTEGER NOT NULL DEFAULT 0, snapshot BLOB, PRIMARY KEY (store, doc)
);
CREATE TABLE log (
    store INTEGER NOT NULL, seq INTEGER NOT NULL, doc BLOB NOT NULL, key BLOB NOT NULL,
    origin BLOB NOT NULL, at INTEGER NOT NULL, changes BLOB NOT NULL, PRIMARY KEY (store, seq)
);
CREATE INDEX log_by_doc ON log (store, doc, seq);
CREATE INDEX log_by_time ON log (store, at);
PRAGMA user_version = 1;
";

/// Writes a version-1 file the way a version-1 hub did: log rows (changes framed by a 4-byte
/// length), document rows, some snapshots. Returns the records it holds.
fn write_v1(path: &Path, n: usize) -> BTreeMap<DocId, ExportRecord> {
    let conn = Connection::open(path).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL").expect("wal");
    conn.execute_batch(V1_SCHEMA).expect("schema");
    conn.execute("INSERT INTO meta (name, value) VALUES ('epoch', ?1)", params![vec![7u8; 16]]).expect("epoch");
    conn.execute("INSERT INTO stores (id, db, name) VALUES (1, ?1, ?2)", params![store().db, store().store])
        .expect("store");
    let frame = |change: &[u8]| [&(change.len() as u32).to_le_bytes()[..], change].concat();
    let mut seq = 0i64;
    let mut expected = BTreeMap::new();
    for i in 0..n {
        let mut record = Record::new(&store(), &Key::from(format!("k{i:04}").as_str()), &ActorId::from([5u8; 16]))
            .expect("record");
        let doc = record.id().0.to_vec();
        let key = record.encoded_key().to_vec();
        let mut changes = vec![record.put(&value(i, 0), 0).expect("put").expect("change").bytes];
        if i % 4 == 0 {
            changes.push(record.put(&value(i, 1), 0).expect("put").expect("change").bytes);
        }
        if i % 6 == 0 {
            changes.push(record.delete(0).expect("delete").expect("change").bytes);
        }
        for change in &changes {
            seq += 1;
            conn.execute(
                "INSERT INTO log (store, seq, doc, key, origin, at, changes) VALUES (1, ?1, ?2, ?3, ?4, 0, ?5)",
                params![seq, doc, key, vec![1u8; 16], frame(change)],
            )
            .expect("log row");
        }
        // Every third document has a snapshot covering its rows.
        let snapshot = (i % 3 == 0).then(|| record.save());
        conn.execute(
            "INSERT INTO docs (store, doc, key, last_seq, snap_seq, snapshot) VALUES (1, ?1, ?2, ?3, ?4, ?5)",
            params![doc, key, seq, if snapshot.is_some() { seq } else { 0 }, snapshot],
        )
        .expect("doc row");
        expected.insert(record.id(), export_record(&mut record));
    }
    conn.execute("UPDATE stores SET head = ?1", params![seq]).expect("head");
    expected
}

#[test]
fn a_version_1_file_is_migrated_and_backfilled_in_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.sqlite");
    let expected = write_v1(&path, 45);

    // Read-only: everything reads as before, exports say what to do.
    let backend = SqliteBackend::open(&path, OpenMode::ReadOnly).expect("read-only open of version 1");
    assert_eq!(backend.schema_version(), 1);
    let mut storage = Storage::new(backend, StorageOptions { read_only: true, ..options() });
    assert_eq!(storage.records(&store(), None, usize::MAX).expect("records").len(), 45);
    let err = storage.export_open(&store()).expect_err("no export columns in version 1");
    assert!(matches!(err, StorageError::NotMigrated(1)), "{err}");
    assert!(err.to_string().contains("start the hub"), "{err}");
    drop(storage);

    // Read-write: migrated in place; exports wait for the backfill.
    let backend = SqliteBackend::open(&path, OpenMode::ReadWrite).expect("migrating open");
    assert_eq!(backend.schema_version(), 3);
    let mut storage = Storage::new(backend, options());
    assert!(storage.export_open(&store()).is_err(), "an export before the backfill would lack columns");
    assert_eq!(storage.stats().exports_open, 0);

    // A backfill that dies part way keeps its committed pages and the next one finishes.
    drop(storage);
    let backend = Faulty::new(SqliteBackend::open(&path, OpenMode::ReadWrite).expect("open"), 12);
    let mut storage = Storage::new(backend, options());
    assert!(storage.backfill_exports(4).is_err(), "the fault fires during the backfill");
    drop(storage);
    let mut storage = Storage::new(SqliteBackend::open(&path, OpenMode::ReadWrite).expect("open"), options());
    let filled = storage.backfill_exports(4).expect("backfill");
    assert!(filled > 0 && filled < 45, "committed pages are not redone: {filled}");
    assert_eq!(storage.backfill_exports(4).expect("again"), 0, "nothing left to fill");

    let (export, seq) = storage.export_open(&store()).expect("export").expect("room for an export");
    assert_eq!(seq, storage.head_seq(&store()).expect("head"));
    let records = storage.export_page(export, None, usize::MAX).expect("page").expect("open");
    storage.export_close(export);
    assert_covers(&records, &expected, "backfilled");
    assert_columns_match_documents(&mut storage, "backfilled");

    // Writes after the migration keep the columns current, like on a new file.
    let conn_check = Connection::open(&path).expect("open");
    let version: i64 = conn_check.pragma_query_value(None, "user_version", |r| r.get(0)).expect("version");
    assert_eq!(version, 3);
    let unfilled: i64 =
        conn_check.query_row("SELECT COUNT(*) FROM docs WHERE heads IS NULL", [], |r| r.get(0)).expect("count");
    assert_eq!(unfilled, 0);
    let deleted: BTreeSet<DocId> = records.iter().filter(|r| r.value.is_none()).map(|r| r.doc).collect();
    assert_eq!(deleted.len(), 45usize.div_ceil(6));
}

/// A document's log rows by seq, as the index of versions 1 and 2 found them.
fn rows_by_doc(conn: &Connection) -> BTreeMap<Vec<u8>, Vec<i64>> {
    let mut stmt = conn.prepare("SELECT doc, seq FROM log ORDER BY seq").expect("rows");
    let mut out: BTreeMap<Vec<u8>, Vec<i64>> = BTreeMap::new();
    for row in stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))).expect("query") {
        let (doc, seq) = row.expect("row");
        out.entry(doc).or_default().push(seq);
    }
    out
}

#[test]
fn a_version_2_file_reads_as_before_and_is_chained_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.sqlite");
    let expected = write_v1(&path, 45);
    // What a version-2 hub's migration left (its documents still to backfill).
    let conn = Connection::open(&path).expect("open");
    conn.execute_batch(
        "ALTER TABLE docs ADD COLUMN heads BLOB; ALTER TABLE docs ADD COLUMN value BLOB;
         ALTER TABLE docs ADD COLUMN tip BLOB;
         CREATE INDEX docs_unexported ON docs (store, doc) WHERE heads IS NULL; PRAGMA user_version = 2;",
    )
    .expect("version 2");
    let rows = rows_by_doc(&conn);
    assert!(rows.values().any(|seqs| seqs.len() == 3), "some documents have several log rows");
    drop(conn);
    let loaded = |storage: &mut Storage<SqliteBackend>| -> BTreeMap<DocId, ExportRecord> {
        let mut records = storage.records(&store(), None, usize::MAX).expect("records");
        records.iter_mut().map(|r| (r.id(), export_record(r))).collect()
    };

    // Read-only (`dump` beside a version-2 hub): the documents load through the old index.
    let backend = SqliteBackend::open(&path, OpenMode::ReadOnly).expect("read-only open of version 2");
    assert_eq!(backend.schema_version(), 2);
    let mut storage = Storage::new(backend, StorageOptions { read_only: true, ..options() });
    assert_eq!(loaded(&mut storage), expected, "version 2, read-only");
    drop(storage);

    // Read-write: chained, the index gone, every document loads the same through the chain.
    let backend = SqliteBackend::open(&path, OpenMode::ReadWrite).expect("migrating open");
    assert_eq!(backend.schema_version(), 3);
    let mut storage = Storage::new(backend, options());
    assert_eq!(loaded(&mut storage), expected, "version 3, chained");
    storage.abort();
    drop(storage);
    let conn = Connection::open(&path).expect("open");
    let index: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_schema WHERE name = 'log_by_doc'", [], |r| r.get(0))
        .expect("schema");
    assert_eq!(index, 0, "the index is dropped");
    let mut stmt = conn.prepare("SELECT doc, seq, prev FROM log").expect("chain");
    for row in stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))).expect("q") {
        let (doc, seq, prev) = row.expect("row");
        let seqs = &rows[&doc];
        let at = seqs.iter().position(|s| *s == seq).expect("seq of the document");
        assert_eq!(prev, if at == 0 { 0 } else { seqs[at - 1] }, "row {seq}: the document's row before");
    }
}

#[test]
fn read_only_storage_cannot_backfill_or_write_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.sqlite");
    write_v1(&path, 3);
    let backend = SqliteBackend::open(&path, OpenMode::ReadOnly).expect("open");
    let mut storage = Storage::new(backend, StorageOptions { read_only: true, ..options() });
    assert_eq!(storage.backfill_exports(10).expect("a read-only backfill does nothing"), 0);
    let conn = Connection::open(&path).expect("open");
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("version");
    assert_eq!(version, 1, "a read-only open leaves the file at version 1");
}

// ---- Through the hub binary ----

const WAIT: Duration = Duration::from_secs(60);

/// Reads a whole export over a raw WebSocket, `limit` records a page; calls `page` after each.
async fn export_over_socket(hub: &HubProcess, limit: u32, mut page: impl FnMut(&[ExportRecord])) -> (Cursor, usize) {
    let mut ws = authed(&hub.url(), &full_token("app")).await;
    let (mut id, mut after, mut count) = (None, None, 0);
    loop {
        send(&mut ws, wire::encode(&Message::Export { store: store(), export: id, after, limit })).await;
        match next(&mut ws).await {
            Some(Message::ExportPage { export, cut, records, last, .. }) => {
                page(&records);
                count += records.len();
                (id, after) = (Some(export), records.last().map(|r| r.doc).or(after));
                if last {
                    return (cut, count);
                }
            }
            other => panic!("expected an export page, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_on_a_version_1_file_fills_the_columns_before_serving_and_they_survive_kill_9() {
    let dir = TestDir::new();
    std::fs::create_dir_all(dir.data()).expect("data dir");
    let expected = write_v1(&dir.data().join("hub.sqlite"), 40);
    // `dump` reads a version-1 file by loading documents, and prints the same lines from the
    // export columns once the hub has filled them.
    // Loaded documents come in id order, export columns in storage order: the same lines.
    let sorted = |mut lines: Vec<serde_json::Value>| {
        lines.sort_by_key(|l| l.to_string());
        lines
    };
    let dumped = sorted(common::dump(&dir.data(), "app", "items"));
    assert_eq!(dumped.len(), expected.values().filter(|r| r.value.is_some()).count());
    let mut hub = dir.start(&["--cache-docs", "5"]);
    assert_eq!(sorted(common::dump(&dir.data(), "app", "items")), dumped, "dump from the export columns");
    assert!(hub.log_text().contains("export columns filled"), "{}", hub.log_text());
    let mut records = vec![];
    let (cut, _) = export_over_socket(&hub, 15, |page| records.extend_from_slice(page)).await;
    assert!(cut.seq > 0);
    assert_covers(&records, &expected, "exported by a hub started on a version-1 file");

    // Load, then kill -9 mid-stream: whatever the log kept, the columns kept with it.
    let client = Arc::new(Client::connect(ClientOptions::new(hub.url(), full_token("app"))));
    client.subscribe(store());
    client.wait_idle(WAIT).await.expect("idle");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let (client, stop) = (client.clone(), stop.clone());
        async move {
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = Key::from(format!("k{:04}", i % 60).as_str());
                let result = if i.is_multiple_of(9) { client.delete(&store(), &key) } else { client.put(&store(), &key, &value(i, i)) };
                result.expect("edit");
                i += 1;
                if client.pending() > 32 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    while hub.metric("tidepool_changes_applied_total") < 200.0 {
        assert!(Instant::now() < deadline, "no load reached the hub");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hub.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.expect("writer");
    let path = dir.data().join("hub.sqlite");
    let mut storage = Storage::new(SqliteBackend::open(&path, OpenMode::ReadWrite).expect("reopen"), options());
    assert!(storage.head_seq(&store()).expect("head") > cut.seq, "the load was logged");
    assert_columns_match_documents(&mut storage, "after kill -9");
}

/// Writes `n` document rows of schema version 2 straight into the file, each with its export
/// columns and a `bytes`-long value: an export reads only those columns, so the documents need
/// no log rows here (this file is for measuring exports, not for loading documents).
fn write_export_rows(path: &Path, n: usize, bytes: usize) {
    drop(SqliteBackend::open(path, OpenMode::ReadWrite).expect("create"));
    let mut conn = Connection::open(path).expect("open");
    let tx = conn.transaction().expect("tx");
    tx.execute("INSERT INTO stores (id, db, name, head) VALUES (1, ?1, ?2, ?3)", params![store().db, store().store, n as i64])
        .expect("store");
    {
        let mut insert = tx
            .prepare("INSERT INTO docs (store, doc, key, last_seq, heads, value) VALUES (1, ?1, ?2, ?3, ?4, ?5)")
            .expect("prepare");
        for i in 0..n {
            let key = Key::from(format!("k{i:06}").as_str()).encode().expect("key");
            let doc = DocId::from_encoded_key(&store(), &key);
            let value = json(&object! { "i" => i as i64, "pad" => "x".repeat(bytes) });
            insert.execute(params![doc.0.to_vec(), key, i as i64 + 1, vec![i as u8; 32], value]).expect("row");
        }
    }
    tx.commit().expect("commit");
}

fn kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|l| l.starts_with(field)).expect("field");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB")
}

/// 50,000 records of 2 KiB (100 MB of values) paged through the hub binary: its peak resident
/// memory grows by a bounded amount (a page, the export connection's cache), not by the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporting_a_large_store_keeps_the_hub_memory_bounded() {
    const RECORDS: usize = 50_000;
    let dir = TestDir::new();
    std::fs::create_dir_all(dir.data()).expect("data dir");
    write_export_rows(&dir.data().join("hub.sqlite"), RECORDS, 2048);
    let hub = dir.start(&[]);
    // Warm up the connection path, then take the peak so far as the baseline.
    export_over_socket(&hub, 10, |_| {}).await;
    let before = kib(hub.pid(), "VmHWM:");
    let started = Instant::now();
    let mut bytes = 0usize;
    let (cut, count) = export_over_socket(&hub, 1000, |page| {
        bytes += page.iter().map(|r| r.value.as_ref().map_or(0, Vec::len)).sum::<usize>();
    })
    .await;
    let growth_mib = kib(hub.pid(), "VmHWM:").saturating_sub(before) / 1024;
    eprintln!(
        "exported {count} records ({} MB of values) in {:?}; hub peak RSS {} MiB before, grew by {growth_mib} MiB",
        bytes / 1_000_000,
        started.elapsed(),
        before / 1024
    );
    assert_eq!((count, cut.seq), (RECORDS, RECORDS as u64));
    assert!(growth_mib < 64, "the hub's peak memory grew by {growth_mib} MiB exporting {} MB", bytes / 1_000_000);
    assert_eq!(hub.metric("tidepool_exports_open"), 0.0, "finished exports hold nothing");
}

/// The export columns' share of an append (run with `--release --ignored --nocapture`): pushes
/// through the engine over SQLite, then the column work alone (heads, plain value, JSON, the
/// row update) for the same documents.
#[test]
#[ignore = "a measurement; prints figures"]
fn append_overhead_of_the_export_columns() {
    const DOCS: usize = 4000;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.sqlite");
    let mut hub = sqlite_engine(&path);
    let mut writer = Peer::new(&mut hub, 1, true);
    pump(&mut hub, &mut [&mut writer]);
    for round in 0..2 {
        for i in 0..DOCS {
            writer.put(&format!("k{i:05}"), &value(i, round));
        }
        let started = Instant::now();
        pump(&mut hub, &mut [&mut writer]);
        let per_append = started.elapsed() / DOCS as u32;
        assert_eq!(writer.engine.pending(), 0);
        eprintln!("round {round}: {per_append:?} per append (engine, SQLite, group commit per frame)");
    }
    let mut records: Vec<Record> = writer.docs.records(&store()).map(|r| r.clone()).collect();
    let started = Instant::now();
    let columns: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = records
        .iter_mut()
        .map(|r| {
            let heads: Vec<u8> = r.heads().iter().flat_map(|h| h.0).collect();
            (r.id().0.to_vec(), heads, json(&r.get_plain().expect("value").expect("live")))
        })
        .collect();
    let compute = started.elapsed() / DOCS as u32;
    let started = Instant::now();
    let heads: usize = records.iter_mut().map(|r| r.heads().len()).sum();
    let heads_time = started.elapsed() / DOCS as u32;
    let started = Instant::now();
    let values: Vec<Value> = records.iter().filter_map(|r| r.get_plain().expect("value")).collect();
    let plain_time = started.elapsed() / DOCS as u32;
    let started = Instant::now();
    let bytes: usize = values.iter().map(|v| json(v).len()).sum();
    let json_time = started.elapsed() / DOCS as u32;
    eprintln!(
        "breakdown: heads {heads_time:?}, plain value {plain_time:?}, JSON {json_time:?} ({} heads, {} B of JSON per record)",
        heads / DOCS,
        bytes / DOCS
    );
    let mut conn = Connection::open(&path).expect("open");
    conn.pragma_update(None, "synchronous", "FULL").expect("pragma");
    let started = Instant::now();
    for chunk in columns.chunks(DOCS / 4) {
        let tx = conn.transaction().expect("tx");
        for (doc, heads, value) in chunk {
            tx.prepare_cached("UPDATE docs SET heads = ?2, value = ?3 WHERE store = 1 AND doc = ?1")
                .expect("prepare")
                .execute(params![doc, heads, value])
                .expect("update");
        }
        tx.commit().expect("commit");
    }
    let update = started.elapsed() / DOCS as u32;
    eprintln!("export columns: {compute:?} computing (heads, plain value, JSON) + {update:?} updating the row per append");
}

#[test]
fn a_page_after_a_document_the_export_lacks_ends_it_instead_of_coming_back_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = sqlite_engine(&dir.path().join("hub.sqlite"));
    let _writer = populate(&mut hub, 10);
    let storage = hub.storage_mut();
    let (export, _) = storage.export_open(&store()).expect("export").expect("room for an export");
    let first = storage.export_page(export, None, 3).expect("page").expect("open");
    let rest = storage.export_page(export, first.last().map(|r| r.doc), 100).expect("page").expect("open");
    assert_eq!((first.len(), rest.len()), (3, 7), "the cursor continues after the page's last document");
    // A cursor the export never sent cannot be placed in storage order: no page, rather than an
    // empty one that would look like the end of the store.
    assert!(storage.export_page(export, Some(DocId([7; 16])), 100).expect("page").is_none());
    storage.export_close(export);
}
