//! Core benchmarks, each beside a raw-Automerge baseline measured in the same run:
//! puts (reconcile) vs `AutoCommit` put+commit, applying remote changes vs `apply_changes`, and
//! the initial sync of a 1,000-, 3,000- and 10,000-record store through the engine vs Automerge's
//! sync protocol run document by document and vs raw `get_changes`/`apply_changes` shipping.
//!
//! Besides criterion's per-benchmark timings, a summary of ratios (thread CPU time, median of
//! several runs) and of round trips is printed first.

use std::collections::BTreeMap;
use std::hint::black_box;

use automerge::sync::SyncDoc;
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ObjType, ROOT};
use cpu_time::ThreadTime;
use criterion::{BatchSize, Criterion, criterion_group};
use tidepool_core::sync::{AllowAll, ClientConfig, ClientEngine, Hub, MemoryClientDocs, MemoryHubStore};
use tidepool_core::wire::{Payload, PeerId};
use tidepool_core::{Key, Record, StoreRef, Value};

const RECORDS: usize = 10_000;

fn store() -> StoreRef {
    StoreRef::new("bench", "items")
}

fn value(i: usize, round: usize) -> Value {
    let mut fields = BTreeMap::new();
    fields.insert("title".to_owned(), Value::String(format!("item {i}")));
    fields.insert("done".to_owned(), Value::Bool(false));
    fields.insert("priority".to_owned(), Value::Int((i % 5) as i64));
    fields.insert("round".to_owned(), Value::Int(round as i64));
    fields.insert("tags".to_owned(), Value::Array(vec![Value::from("a"), Value::from("b")]));
    Value::Object(fields)
}

/// Tidepool: put the whole value, one field of which changed.
fn tidepool_puts(n: usize) {
    let mut r = Record::new(&store(), &Key::from("k"), &ActorId::from([1u8; 16])).expect("key");
    for round in 0..n {
        r.put(&value(1, round), round as i64).expect("put");
    }
    black_box(r.heads());
}

/// A raw Automerge document of the benchmark's shape, and its value object.
fn raw_doc() -> (AutoCommit, automerge::ObjId) {
    let mut doc = AutoCommit::new().with_actor(ActorId::from([1u8; 16]));
    let obj = doc.put_object(ROOT, "v", ObjType::Map).expect("put");
    doc.put(&obj, "title", "item 1").expect("put");
    doc.put(&obj, "done", false).expect("put");
    doc.put(&obj, "priority", 1i64).expect("put");
    let tags = doc.put_object(&obj, "tags", ObjType::List).expect("put");
    doc.insert(&tags, 0, "a").expect("insert");
    doc.insert(&tags, 1, "b").expect("insert");
    (doc, obj)
}

/// Raw Automerge: the same document shape, writing just the changed field and committing.
fn raw_puts(n: usize) {
    let (mut doc, obj) = raw_doc();
    for round in 0..n {
        doc.put(&obj, "round", round as i64).expect("put");
        doc.commit_with(CommitOptions::default().with_time(round as i64));
    }
    black_box(doc.get_heads());
}

/// Raw Automerge doing what a Tidepool put writes and returns: the changed field, an edit count
/// beside it (the op that lets an edit win over a concurrent delete), and the change's bytes.
fn raw_puts_same_ops(n: usize) {
    let (mut doc, obj) = raw_doc();
    for round in 0..n {
        doc.put(&obj, "round", round as i64).expect("put");
        doc.put(ROOT, "edits", round as i64 + 1).expect("put");
        doc.commit_with(CommitOptions::default().with_time(round as i64));
        black_box(doc.get_last_local_change().map(|c| c.raw_bytes().to_vec()));
    }
    black_box(doc.get_heads());
}

/// Changes of one record edited `n` times by another peer.
fn remote_changes(n: usize) -> Vec<Vec<u8>> {
    let mut r = Record::new(&store(), &Key::from("k"), &ActorId::from([2u8; 16])).expect("key");
    for round in 0..n {
        r.put(&value(1, round), round as i64).expect("put");
    }
    r.changes_since(&[])
}

fn tidepool_apply(changes: &[Vec<u8>]) {
    let mut r = Record::new(&store(), &Key::from("k"), &ActorId::from([3u8; 16])).expect("key");
    for c in changes {
        r.apply(&Payload::Changes(vec![c.clone()])).expect("apply");
    }
    black_box(r.heads());
}

fn raw_apply(changes: &[Vec<u8>]) {
    let mut doc = AutoCommit::new().with_actor(ActorId::from([3u8; 16]));
    for c in changes {
        let change = automerge::Change::try_from(c.as_slice()).expect("change");
        doc.apply_changes([change]).expect("apply");
    }
    black_box(doc.get_heads());
}

/// A hub holding `n` records, and the same records as plain Automerge documents.
fn populated(n: usize) -> (MemoryHubStore, Vec<AutoCommit>) {
    let mut hub = MemoryHubStore::new([9; 16]);
    let mut raws = Vec::with_capacity(n);
    let actor = ActorId::from([4u8; 16]);
    let mut client = MemoryClientDocs::new(actor);
    for i in 0..n {
        let record = client.record_for(&store(), &Key::Number(i as f64)).expect("key");
        let change = record.put(&value(i, 0), 0).expect("put").expect("change");
        let (doc, key) = (record.id(), record.encoded_key().to_vec());
        raws.push(record.doc().clone());
        use tidepool_core::sync::HubStore;
        let hub_record = hub.record(&store(), doc, &key).expect("record");
        hub_record.apply(&Payload::Changes(vec![change.bytes.clone()])).expect("apply");
        hub.append(&store(), doc, &key, vec![change.bytes], PeerId([4; 16])).expect("append");
    }
    // Warm the snapshot cache, as a durable hub keeps snapshots.
    {
        use tidepool_core::sync::HubStore;
        for (doc, key) in hub.docs(&store(), None, usize::MAX).expect("docs") {
            hub.saved(&store(), doc, &key).expect("saved");
        }
    }
    (hub, raws)
}

/// Initial sync through the engine of a hub holding `n` records; returns round trips (client
/// flushes that got answers).
fn engine_initial_sync(hub_store: MemoryHubStore, n: usize) -> usize {
    let mut hub = Hub::new(hub_store, AllowAll);
    let conn = hub.connect();
    let mut docs = MemoryClientDocs::new(ActorId::from([5u8; 16]));
    let mut client = ClientEngine::new(ClientConfig::new(PeerId([5; 16]), "t"));
    client.subscribe(store(), None);
    client.connected();
    let mut round_trips = 0;
    loop {
        let frames = client.take_output().frames;
        if frames.is_empty() {
            break;
        }
        round_trips += 1;
        for f in frames {
            for o in hub.receive(conn, &f).expect("hub").sends {
                client.receive(&o.frame, &mut docs).expect("client");
            }
        }
    }
    assert!(client.is_idle());
    assert_eq!(docs.list(&store()).len(), n);
    round_trips
}

use tidepool_core::sync::ClientDocs;

/// Automerge's sync protocol, document by document; returns the round trips.
fn per_doc_sync(raws: &[AutoCommit]) -> usize {
    let mut round_trips = 0;
    for source in raws {
        let mut source = source.clone();
        let mut target = AutoCommit::new();
        let (mut s1, mut s2) = (automerge::sync::State::new(), automerge::sync::State::new());
        loop {
            let m1 = source.sync().generate_sync_message(&mut s1);
            let m2 = target.sync().generate_sync_message(&mut s2);
            if m1.is_none() && m2.is_none() {
                break;
            }
            round_trips += 1;
            if let Some(m) = m1 {
                target.sync().receive_sync_message(&mut s2, m).expect("sync");
            }
            if let Some(m) = m2 {
                source.sync().receive_sync_message(&mut s1, m).expect("sync");
            }
        }
    }
    round_trips
}

/// Raw change shipping: `get_changes` on one side, `apply_changes` on the other.
fn raw_shipping(raws: &mut [AutoCommit]) {
    for source in raws.iter_mut() {
        let changes: Vec<Vec<u8>> = source.get_changes(&[]).iter().map(|c| c.raw_bytes().to_vec()).collect();
        let mut target = AutoCommit::new();
        let parsed = changes.iter().map(|c| automerge::Change::try_from(c.as_slice()).expect("change"));
        target.apply_changes(parsed).expect("apply");
        black_box(target.get_heads());
    }
}

fn cpu<F: FnMut()>(runs: usize, mut f: F) -> f64 {
    cpu_with_input(runs, || (), |()| f())
}

/// Median thread CPU time of `f`, with `setup` (not timed) preparing each run's input.
fn cpu_with_input<I, S: FnMut() -> I, F: FnMut(I)>(runs: usize, mut setup: S, mut f: F) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let input = setup();
            let t = ThreadTime::now();
            f(input);
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// Tidepool: create `n` records and put each one's first value (what a browser `bulkPut` does).
fn tidepool_create(n: usize) {
    let actor = ActorId::from([1u8; 16]);
    for i in 0..n {
        let mut r = Record::new(&store(), &Key::Number(i as f64), &actor).expect("key");
        r.put(&value(i, 0), 0).expect("put");
        black_box(r.heads());
    }
}

/// Tidepool's shortcut for records that exist nowhere yet: the first change built from the value.
fn tidepool_first_put(n: usize) {
    let actor = ActorId::from([1u8; 16]);
    for i in 0..n {
        black_box(tidepool_core::first_put::first_put(&actor, &value(i, 0), 0).expect("put"));
    }
}

/// Raw Automerge: a new document with the same fields, committed.
fn raw_create(n: usize) {
    for i in 0..n {
        let mut doc = AutoCommit::new().with_actor(ActorId::from([1u8; 16]));
        let obj = doc.put_object(ROOT, "v", ObjType::Map).expect("put");
        doc.put(&obj, "title", format!("item {i}")).expect("put");
        doc.put(&obj, "done", false).expect("put");
        doc.put(&obj, "priority", (i % 5) as i64).expect("put");
        doc.put(&obj, "round", 0i64).expect("put");
        let tags = doc.put_object(&obj, "tags", ObjType::List).expect("put");
        doc.insert(&tags, 0, "a").expect("insert");
        doc.insert(&tags, 1, "b").expect("insert");
        doc.commit_with(CommitOptions::default().with_time(0));
        black_box(doc.get_heads());
    }
}

fn summary() {
    const PUTS: usize = 2000;
    let tp = cpu(5, || tidepool_create(PUTS));
    let raw = cpu(5, || raw_create(PUTS));
    println!("summary create+first put: tidepool {:.0} records/s, raw automerge {:.0}/s, ratio {:.2}x of raw", PUTS as f64 / tp, PUTS as f64 / raw, raw / tp);
    let fast = cpu(5, || tidepool_first_put(PUTS));
    println!("summary first put of a new record (change built from the value): {:.0} records/s, ratio {:.2}x of raw automerge", PUTS as f64 / fast, raw / fast);

    let tp = cpu(5, || tidepool_puts(PUTS));
    let raw = cpu(5, || raw_puts(PUTS));
    let same = cpu(5, || raw_puts_same_ops(PUTS));
    println!("summary puts: tidepool {:.0}/s, raw automerge {:.0}/s, ratio {:.2}x of raw", PUTS as f64 / tp, PUTS as f64 / raw, raw / tp);
    println!(
        "summary puts against raw automerge writing the same ops (field + edit count, change bytes): raw {:.0}/s, ratio {:.2}x",
        PUTS as f64 / same,
        same / tp
    );

    let changes = remote_changes(PUTS);
    let tp = cpu(5, || tidepool_apply(&changes));
    let raw = cpu(5, || raw_apply(&changes));
    println!("summary apply: tidepool {:.0} changes/s, raw automerge {:.0}/s, ratio {:.2}x of raw", PUTS as f64 / tp, PUTS as f64 / raw, raw / tp);

    // Growth: the same initial sync at three store sizes; CPU per record stays flat if it is linear.
    let mut per_record = Vec::new();
    for n in [RECORDS / 10, RECORDS * 3 / 10, RECORDS] {
        let (hub, raws) = populated(n);
        let mut trips = 0;
        let engine = cpu_with_input(3, || hub.clone(), |h| trips = engine_initial_sync(h, n));
        let mut per_doc_trips = 0;
        let per_doc = cpu(3, || per_doc_trips = per_doc_sync(&raws));
        let shipping = cpu_with_input(3, || raws.clone(), |mut r| raw_shipping(&mut r));
        println!(
            "summary initial sync of {n} records: engine {engine:.3}s CPU in {trips} round trips; \
             per-document sync protocol {per_doc:.3}s in {per_doc_trips} round trips; raw change shipping {shipping:.3}s; \
             engine/per-doc {:.2}x, engine/raw shipping {:.2}x",
            engine / per_doc,
            engine / shipping
        );
        per_record.push(format!("{n}: {:.1} µs", engine * 1e6 / n as f64));
    }
    println!("summary initial sync, engine CPU per record (flat is linear growth): {}", per_record.join(", "));
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("put_200");
    g.bench_function("tidepool_reconcile", |b| b.iter(|| tidepool_puts(200)));
    g.bench_function("raw_autocommit", |b| b.iter(|| raw_puts(200)));
    g.finish();

    let changes = remote_changes(200);
    let mut g = c.benchmark_group("apply_200_changes");
    g.bench_function("tidepool", |b| b.iter(|| tidepool_apply(&changes)));
    g.bench_function("raw_apply_changes", |b| b.iter(|| raw_apply(&changes)));
    g.finish();

    let (hub, raws) = populated(RECORDS);
    let mut g = c.benchmark_group("initial_sync_10k");
    g.sample_size(10);
    g.bench_function("engine", |b| b.iter_batched(|| hub.clone(), |h| engine_initial_sync(h, RECORDS), BatchSize::PerIteration));
    g.bench_function("per_doc_sync_protocol", |b| b.iter(|| per_doc_sync(&raws)));
    g.bench_function("raw_change_shipping", |b| b.iter_batched(|| raws.clone(), |mut r| raw_shipping(&mut r), BatchSize::PerIteration));
    g.finish();
}

criterion_group!(core_benches, benches);

fn main() {
    summary();
    if std::env::var_os("TIDEPOOL_BENCH_SUMMARY_ONLY").is_some() {
        return;
    }
    core_benches();
    Criterion::default().configure_from_args().final_summary();
}
