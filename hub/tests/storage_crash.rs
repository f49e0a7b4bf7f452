//! Storage crash-consistency: the hub's engine over a backend that fails after N writes (SQLite
//! on disk, and the in-memory backend), driven by real client engines. After the failure the
//! storage is reopened and compared with a reference model (core's `MemoryHubStore` fed the
//! same frames up to the last committed batch): nothing acknowledged is lost, nothing of the
//! failed batch is half there, the export columns equal the documents, and the clients then
//! converge on the reopened storage.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tidepool_core::automerge::{ActorId, ChangeHash};
use tidepool_core::sync::{
    AllowAll, ClientConfig, ClientEngine, ClientEvent, ConnId, Hub, HubConfig, HubStore, LogEntry, MemoryClientDocs,
    MemoryHubStore, OutboxId,
};
use tidepool_core::wire::PeerId;
use tidepool_core::{DocId, Key, StoreRef, Value, object};
use tidepool_hub::engine::{Delivery, Engine, Input};
use tidepool_hub::metrics::Metrics;
use tidepool_hub::storage::{
    Backend, Faulty, MemoryBackend, OpenMode, PostgresBackend, SqliteBackend, Storage, StorageOptions,
};

mod common;

const EPOCH: [u8; 16] = [9; 16];
const ROUNDS: usize = 20;

fn store() -> StoreRef {
    StoreRef::new("app", "notes")
}

/// A tiny cache, eager snapshots and zero retention, so loads, evictions, snapshots and pruning
/// all happen (and all count as writes that can fail).
fn options() -> StorageOptions {
    StorageOptions { cache_docs: 3, snapshot_every: 3, retention: Duration::ZERO, ..StorageOptions::default() }
}

struct Peer {
    engine: ClientEngine,
    docs: MemoryClientDocs,
    conn: ConnId,
    twin_conn: ConnId,
    next_id: OutboxId,
    sent: HashMap<OutboxId, (DocId, Vec<u8>, ChangeHash)>,
    acked: Vec<(DocId, Vec<u8>, ChangeHash)>,
}

impl Peer {
    fn receive(&mut self, frame: &[u8]) {
        self.engine.receive(frame, &mut self.docs).expect("hub frames are valid");
        for event in self.engine.take_output().events {
            if let ClientEvent::Acked { ids } = event {
                self.acked.extend(ids.iter().filter_map(|id| self.sent.get(id).cloned()));
            }
        }
    }
}

type TestEngine<B> = Engine<Faulty<B>, AllowAll>;

fn new_engine<B: Backend>(backend: B, budget: u64) -> TestEngine<B> {
    let storage = Storage::new(Faulty::new(backend, budget), options());
    Engine::new(storage, AllowAll, HubConfig::default(), Arc::new(Metrics::default()))
}

/// Routes deliveries to peers; returns whether any connection was closed.
fn route(peers: &mut [Peer], deliveries: Vec<Delivery>) -> bool {
    let mut closed = false;
    for d in deliveries {
        match d {
            Delivery::Frame { to, frame, .. } => {
                if let Some(p) = peers.iter_mut().find(|p| p.conn == to) {
                    p.receive(&frame);
                }
            }
            Delivery::Authenticated { .. } => {}
            Delivery::Close { .. } => closed = true,
        }
    }
    closed
}

fn outgoing(peers: &mut [Peer]) -> Vec<(usize, Vec<u8>)> {
    let mut frames = Vec::new();
    for (i, p) in peers.iter_mut().enumerate() {
        frames.extend(p.engine.take_output().frames.into_iter().map(|f| (i, f)));
    }
    frames
}

fn sorted(entries: Vec<LogEntry>) -> Vec<LogEntry> {
    entries
        .into_iter()
        .map(|mut e| {
            e.changes.sort();
            e
        })
        .collect()
}

fn stored_values<B: Backend>(storage: &mut Storage<B>) -> Vec<(Vec<u8>, Value)> {
    let mut out: Vec<(Vec<u8>, Value)> = storage
        .records(&store(), None, usize::MAX)
        .expect("records")
        .into_iter()
        .filter_map(|r| Some((r.encoded_key().to_vec(), r.get_plain().expect("readable")?)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Checks the reopened storage against the reference model and the acknowledgements.
fn compare<B: Backend>(storage: &mut Storage<B>, reference: &mut MemoryHubStore, peers: &[Peer], case: &str) {
    let s = store();
    assert_eq!(storage.head_seq(&s).expect("head"), reference.head_seq(&s).expect("head"), "{case}: log head");
    assert_eq!(stored_values(storage), reference.values(&s), "{case}: values");
    let head = reference.head_seq(&s).expect("head");
    let from = (0..=head).find(|after| storage.log_since(&s, *after, usize::MAX).expect("log").is_some());
    let from = from.unwrap_or_else(|| panic!("{case}: the log reaches nowhere"));
    let ours = storage.log_since(&s, from, usize::MAX).expect("log").expect("reaches");
    let theirs = reference.log_since(&s, from, usize::MAX).expect("log").expect("reaches");
    assert_eq!(sorted(ours), sorted(theirs), "{case}: log after {from}");
    for (doc, key) in reference.docs(&s, None, usize::MAX).expect("docs") {
        let expected = reference.record(&s, doc, &key).expect("record").heads();
        assert_eq!(storage.record(&s, doc, &key).expect("record").heads(), expected, "{case}: heads of {doc}");
    }
    // The export columns committed with the log: they equal the loaded documents.
    let (export, cut) = storage.export_open(&s).expect("export").expect("room for an export");
    assert_eq!(cut, head, "{case}: the export's cut");
    let records = storage.export_page(export, None, usize::MAX).expect("page").expect("open");
    storage.export_close(export);
    assert_eq!(records.len(), reference.docs(&s, None, usize::MAX).expect("docs").len(), "{case}: exported documents");
    for r in records {
        let record = storage.record(&s, r.doc, &r.key).expect("record");
        let heads: Vec<[u8; 32]> = record.heads().iter().map(|h| h.0).collect();
        let value = record.get_plain().expect("readable").map(|v| serde_json::to_vec(&tidepool_json::JsonValue(&v)).expect("json"));
        assert_eq!((r.heads, r.value), (heads, value), "{case}: export columns of {}", r.doc);
    }
    for p in peers {
        for (doc, key, hash) in &p.acked {
            let record = storage.record(&s, *doc, key).expect("record");
            assert!(record.has_change(hash), "{case}: acknowledged change {hash} lost");
        }
    }
    storage.abort();
}

/// Runs clients against a failing backend, reopens, compares, recovers. Returns whether the fault fired.
fn scenario<B: Backend>(
    case: &str,
    seed: u64,
    budget: u64,
    backend: B,
    reopen: impl FnOnce(TestEngine<B>) -> B,
) -> bool {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut engine = new_engine(backend, budget);
    let mut twin = Hub::new(MemoryHubStore::new(EPOCH), AllowAll);
    let mut peers: Vec<Peer> = (0..3u8)
        .map(|i| {
            let mut engine_ = ClientEngine::new(ClientConfig::new(PeerId([i + 1; 16]), "token"));
            engine_.subscribe(store(), None);
            engine_.connected();
            Peer {
                engine: engine_,
                docs: MemoryClientDocs::new(ActorId::from([i + 1; 16])),
                conn: engine.connect(),
                twin_conn: twin.connect(),
                next_id: 1,
                sent: HashMap::new(),
                acked: Vec::new(),
            }
        })
        .collect();
    let mut reference = twin.store().clone();
    let mut failed = false;
    for round in 0..ROUNDS {
        for (i, p) in peers.iter_mut().enumerate() {
            for _ in 0..rng.random_range(0..4) {
                let key = Key::String(format!("k{}", rng.random_range(0..8)));
                let record = p.docs.record_for(&store(), &key).expect("record");
                let value = object! { format!("p{i}") => rng.random_range(0..1000i64), "shared" => round as i64 };
                let change = if rng.random_bool(0.1) { record.delete(0) } else { record.put(&value, 0) };
                if let Some(change) = change.expect("edit") {
                    let (doc, key) = (record.id(), record.encoded_key().to_vec());
                    p.sent.insert(p.next_id, (doc, key.clone(), change.hash));
                    p.engine.enqueue(p.next_id, store(), doc, key, change.bytes);
                    p.next_id += 1;
                }
            }
        }
        let frames = outgoing(&mut peers);
        reference = twin.store().clone();
        for (i, frame) in &frames {
            twin.receive(peers[*i].twin_conn, frame).expect("twin");
        }
        let batch = frames.into_iter().map(|(i, bytes)| Input::Frame { conn: peers[i].conn, bytes }).collect();
        let deliveries = engine.process(batch);
        // Whatever the engine releases reaches the clients, even from a failed batch: the engine,
        // not this harness, must hold back acknowledgements of what was not committed.
        let closed = route(&mut peers, deliveries);
        if engine.storage().backend().failed() {
            failed = true;
            break;
        }
        assert!(!closed, "{case}: a healthy batch closed a connection");
        if round % 6 == 5 {
            // Compaction far in the future: everything is past retention.
            engine.compact(i64::MAX / 2, rng.random_range(1..4));
            if engine.storage().backend().failed() {
                reference = twin.store().clone();
                failed = true;
                break;
            }
        }
    }
    if !failed {
        reference = twin.store().clone();
    }

    let backend = reopen(engine);
    let mut storage = Storage::new(backend, options());
    compare(&mut storage, &mut reference, &peers, case);

    // Recovery: the same clients reconnect to the reopened storage and converge.
    let mut engine = Engine::new(storage, AllowAll, HubConfig::default(), Arc::new(Metrics::default()));
    for p in &mut peers {
        p.engine.disconnected();
        p.conn = engine.connect();
        p.engine.connected();
    }
    for _ in 0..100 {
        let frames = outgoing(&mut peers);
        if frames.is_empty() {
            break;
        }
        let batch = frames.into_iter().map(|(i, bytes)| Input::Frame { conn: peers[i].conn, bytes }).collect();
        let deliveries = engine.process(batch);
        assert!(!route(&mut peers, deliveries), "{case}: recovery closed a connection");
    }
    let expected = peers[0].docs.values(&store());
    for p in &peers {
        assert_eq!(p.engine.pending(), 0, "{case}: unacknowledged changes after recovery");
        assert!(p.engine.is_idle(), "{case}: a client is not idle after recovery");
        assert_eq!(p.docs.values(&store()), expected, "{case}: clients diverge after recovery");
    }
    assert_eq!(stored_values(engine.storage_mut()), expected, "{case}: storage differs from the clients");
    failed
}

/// Early, middle and late faults (a different seed each), plus one run that never fails.
fn budgets(salt: u64) -> impl Iterator<Item = (u64, u64)> {
    [1u64, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, u64::MAX].into_iter().map(move |budget| (budget, budget ^ salt))
}

#[test]
fn sqlite_storage_survives_failing_after_n_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fired = 0;
    for (budget, seed) in budgets(0x5eed) {
        let path = dir.path().join(format!("hub-{budget}-{seed}.sqlite"));
        let backend = SqliteBackend::open(&path, OpenMode::ReadWrite).expect("open");
        let case = format!("sqlite budget {budget} seed {seed}");
        let reopen = |engine: TestEngine<SqliteBackend>| {
            // Dropping the engine closes the connection; SQLite discards the open transaction.
            drop(engine);
            SqliteBackend::open(&path, OpenMode::ReadWrite).expect("reopen")
        };
        fired += usize::from(scenario(&case, seed, budget, backend, reopen));
    }
    assert!(fired >= 9, "the fault fired in only {fired} runs");
}

#[test]
fn postgres_storage_survives_failing_after_n_writes() {
    let server = common::pg::PgServer::start();
    let mut fired = 0;
    for (budget, seed) in budgets(0x96) {
        let url = server.fresh_db();
        let backend = PostgresBackend::open(&url, false).expect("open");
        let case = format!("postgres budget {budget} seed {seed}");
        let reopen = |engine: TestEngine<PostgresBackend>| {
            // Dropping the engine closes the session; PostgreSQL discards the open transaction.
            drop(engine);
            PostgresBackend::open(&url, false).expect("reopen")
        };
        fired += usize::from(scenario(&case, seed, budget, backend, reopen));
    }
    assert!(fired >= 9, "the fault fired in only {fired} runs");
}

#[test]
fn memory_storage_survives_failing_after_n_writes() {
    let mut fired = 0;
    for (budget, seed) in budgets(0x3e3) {
        let case = format!("memory budget {budget} seed {seed}");
        let reopen = |mut engine: TestEngine<MemoryBackend>| {
            let inner = std::mem::replace(engine.storage_mut().backend_mut(), Faulty::new(MemoryBackend::new(EPOCH), 0));
            inner.into_inner().crash()
        };
        fired += usize::from(scenario(&case, seed, budget, MemoryBackend::new(EPOCH), reopen));
    }
    assert!(fired >= 9, "the fault fired in only {fired} runs");
}
