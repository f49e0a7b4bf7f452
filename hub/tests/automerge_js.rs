//! Tidepool and Automerge JS (`@automerge/automerge`, pinned in interop/package.json): JS reads
//! Tidepool's documents with exact values and heads; a change, a `saveIncremental` blob and a
//! whole save made in JS merge into records, through the real hub, into a fresh client and the
//! dump; a document made from scratch in JS (its own root map, not Tidepool's genesis change) is
//! refused by records, by the native client and by the hub, and stored nowhere.
//!
//! JS runs as `node interop/automerge-js.mjs` (its header describes the commands and the typed
//! JSON it prints). Without `node` every test here is skipped with a message on stderr; with
//! `node` but without the npm packages they fail: `make test-interop` installs them.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value as Json, json};
use tidepool_core::automerge::{ActorId, ROOT, ReadDoc, ScalarValue};
use tidepool_core::wire::{self, DocData, ErrorCode, Message, Payload};
use tidepool_core::{DocId, Key, PathSegment, Record, RecordError, StoreRef, Value, object};
use tidepool_client::{ChangeState, Client, ClientError, ClientOptions};
use tidepool_json::value_to_json;

const WAIT: Duration = Duration::from_secs(30);

fn store() -> StoreRef {
    StoreRef::new("app", "interop")
}

/// `node` and the interop package, or `None` (after saying so loudly) when there is no `node`.
struct Js {
    node: OsString,
    script: PathBuf,
}

impl Js {
    fn find() -> Option<Js> {
        let node = std::env::var_os("NODE").unwrap_or_else(|| "node".into());
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository root").join("interop");
        match Command::new(&node).arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!("`{} --version` failed: {}", node.to_string_lossy(), String::from_utf8_lossy(&out.stderr)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Straight to stderr: the test harness captures `eprintln!` of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED: the Automerge JS interop test needs `node` (not found; set NODE to its path). \
                     `make test-interop` installs it. ***\n"
                );
                return None;
            }
            Err(e) => panic!("cannot run {}: {e}", node.to_string_lossy()),
        }
        let pinned = read_json(&dir.join("package.json"))["dependencies"]["@automerge/automerge"].clone();
        let installed = dir.join("node_modules/@automerge/automerge/package.json");
        assert!(
            installed.exists(),
            "the npm packages of interop/ are not installed ({} is missing): run `make test-interop`, \
             or `make interop-deps` (npm ci in interop/) before `cargo test`",
            installed.display()
        );
        let version = read_json(&installed)["version"].clone();
        assert_eq!(
            version, pinned,
            "interop/node_modules holds @automerge/automerge {version}, package.json pins {pinned}: run `make interop-deps`"
        );
        Some(Js { node, script: dir.join("automerge-js.mjs") })
    }

    /// Runs one command of the script; its JSON answer.
    fn run(&self, args: &[&Path]) -> Json {
        let out = Command::new(&self.node).arg(&self.script).args(args).output().expect("run node");
        assert!(
            out.status.success(),
            "node automerge-js.mjs {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }
}

fn read_json(path: &Path) -> Json {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).expect("json")
}

/// A value in the script's typed JSON: the Automerge datatype of every scalar made explicit.
fn typed(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(n) => json!({ "int": n.to_string() }),
        Value::Float(f) => json!({ "f64": format!("{:016x}", f.to_bits()) }),
        Value::String(s) => json!({ "str": s }),
        Value::Text(s) => json!({ "text": s }),
        Value::Counter(n) => json!({ "counter": n.to_string() }),
        Value::Date(ms) => json!({ "timestamp": ms.to_string() }),
        Value::Bytes(b) => json!({ "bytes": hex::encode(b) }),
        Value::Array(items) => json!({ "list": items.iter().map(typed).collect::<Vec<_>>() }),
        Value::Object(fields) => {
            json!({ "map": fields.iter().map(|(k, v)| (k.clone(), typed(v))).collect::<serde_json::Map<_, _>>() })
        }
    }
}

/// A record as the script's `inspect` describes a document, from Tidepool's side: heads, root
/// keys, `live`, and `v` as Tidepool reads it (`value` for a deleted record, which has no value).
fn describe(record: &mut Record, value: Option<&Value>) -> Json {
    let mut heads: Vec<String> = record.heads().iter().map(ToString::to_string).collect();
    heads.sort();
    let root: Vec<String> = record.doc().keys(ROOT).collect();
    let read = record.get().expect("Tidepool reads the record");
    let v = read.as_ref().or(value).expect("an existing record, or its value before the delete");
    let mut out = json!({ "heads": heads, "root": root, "v": typed(v) });
    match record.doc().get(ROOT, "live").expect("get live") {
        Some((tidepool_core::automerge::Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Int(n) => out["live"] = json!({ "int": n.to_string() }),
            other => panic!("live holds {other:?}"),
        },
        Some(other) => panic!("live holds {other:?}"),
        None => {}
    }
    out
}

/// The script's description of a document, heads sorted and `changes` left out.
fn as_described(mut js: Json) -> Json {
    let heads = js["heads"].as_array_mut().expect("heads");
    heads.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    js.as_object_mut().expect("an object").remove("changes");
    js
}

fn fields(value: &mut Value) -> &mut BTreeMap<String, Value> {
    match value {
        Value::Object(fields) => fields,
        other => panic!("not an object: {other:?}"),
    }
}

fn at<'a>(value: &'a mut Value, path: &[&str]) -> &'a mut Value {
    path.iter().fold(value, |v, field| fields(v).get_mut(*field).unwrap_or_else(|| panic!("no field {field}")))
}

fn push_item(value: &mut Value, item: Value) {
    match value {
        Value::Array(items) => items.push(item),
        other => panic!("not an array: {other:?}"),
    }
}

fn add_to_counter(value: &mut Value, delta: i64) {
    match value {
        Value::Counter(n) => *n += delta,
        other => panic!("not a counter: {other:?}"),
    }
}

fn edit_text(value: &mut Value, edit: impl FnOnce(&str) -> String) {
    match value {
        Value::Text(s) => *s = edit(s),
        other => panic!("not text: {other:?}"),
    }
}

/// Every kind of value Tidepool stores, put in one go.
fn every_kind() -> Value {
    object! {
        "null" => Value::Null,
        "yes" => true,
        "no" => false,
        "int" => 42i64,
        "negative" => -7i64,
        "max" => i64::MAX,
        "min" => i64::MIN,
        "beyond_js" => (1i64 << 53) + 1,
        "float" => 3.25,
        "whole_float" => 2.0,
        "tiny" => 5e-324,
        "negative_zero" => -0.0,
        "infinity" => f64::INFINITY,
        "minus_infinity" => f64::NEG_INFINITY,
        "nan" => f64::NAN,
        "pi" => std::f64::consts::PI,
        "string" => "plain",
        "unicode" => "héllo wörld — 日本語 🌊 \u{0} \u{10ffff}",
        "empty" => "",
        "date" => Value::Date(1_700_000_000_123),
        "before_epoch" => Value::Date(-86_400_001),
        "bytes" => Value::Bytes(vec![0, 1, 127, 128, 254, 255]),
        "no_bytes" => Value::Bytes(vec![]),
        "array" => Value::Array(vec![1i64.into(), "two".into(), 3.5.into(), Value::Null, Value::Array(vec![true.into()]), object! { "k" => "v" }]),
        "nested" => object! { "a" => object! { "b" => object! { "c" => "deep" } }, "list" => Value::Array(vec![]) },
    }
}

const NOTES: &str = "Tide 🌊 pool";

/// The records JS reads: every value kind plus text and counters, a record whose value is not an
/// object, and a deleted record. Each with its local changes in order, and the value it holds
/// (or held before the delete).
struct Fixture {
    records: Vec<(Record, Vec<Vec<u8>>, Value)>,
}

impl Fixture {
    fn new() -> Fixture {
        let actor = ActorId::from([0x7du8; 16]);
        let path = |p: &[&str]| p.iter().map(|s| PathSegment::from(*s)).collect::<Vec<_>>();
        let mut kinds = Record::new(&store(), &Key::from("all-kinds"), &actor).expect("record");
        let mut changes = vec![kinds.put(&every_kind(), 1).expect("put").expect("a change").bytes];
        // Text by splices (indexes in UTF-16 code units: the wave is two), counters by increments.
        changes.extend(kinds.splice_text(&path(&["notes"]), 0, 0, "Tide pool", 2).expect("splice").map(|c| c.bytes));
        changes.extend(kinds.splice_text(&path(&["notes"]), 5, 0, "🌊 ", 3).expect("splice").map(|c| c.bytes));
        changes.push(kinds.increment(&path(&["visits"]), 3, 4).expect("increment").bytes);
        changes.push(kinds.increment(&path(&["visits"]), 4, 5).expect("increment").bytes);
        changes.push(kinds.increment(&path(&["nested", "score"]), -2, 6).expect("increment").bytes);
        let mut value = every_kind();
        fields(&mut value).insert("notes".into(), Value::Text(NOTES.into()));
        fields(&mut value).insert("visits".into(), Value::Counter(7));
        fields(at(&mut value, &["nested"])).insert("score".into(), Value::Counter(-2));
        assert_eq!(kinds.get().expect("get"), Some(value.clone()), "the fixture holds what it should");

        let mut scalar = Record::new(&store(), &Key::Number(7.0), &actor).expect("record");
        let scalar_change = scalar.put(&Value::Int(5), 1).expect("put").expect("a change").bytes;

        let mut gone = Record::new(&store(), &Key::from("deleted"), &actor).expect("record");
        let gone_value = object! { "was" => "here" };
        let mut gone_changes = vec![gone.put(&gone_value, 1).expect("put").expect("a change").bytes];
        gone_changes.push(gone.delete(2).expect("delete").expect("a change").bytes);

        Fixture {
            records: vec![
                (kinds, changes, value),
                (scalar, vec![scalar_change], Value::Int(5)),
                (gone, gone_changes, gone_value),
            ],
        }
    }

    /// The record holding every value kind, the one JS edits.
    fn kinds(&self) -> &Record {
        &self.records[0].0
    }

    fn kinds_value(&self) -> Value {
        self.records[0].2.clone()
    }
}

/// What the script's `change` command does to the record's value.
fn single_edit(v: &mut Value) {
    fields(v).insert("int".into(), Value::Int(43));
    fields(v).insert("from_js".into(), Value::String("single".into()));
    add_to_counter(at(v, &["visits"]), 5);
    edit_text(at(v, &["notes"]), |s| format!("JS {s}"));
}

/// What the script's `incremental` command does (three changes).
fn incremental_edit(v: &mut Value) {
    let f = fields(v);
    f.insert("inc_float".into(), Value::Float(2.5));
    f.insert("inc_whole_float".into(), Value::Float(3.0));
    f.insert("inc_date".into(), Value::Date(-1234));
    f.insert("inc_bytes".into(), Value::Bytes(vec![9, 8, 0]));
    f.insert("inc_big".into(), Value::Int((1 << 53) + 1));
    f.remove("no");
    f.insert("inc_text".into(), Value::Text("collaborative".into()));
    push_item(at(v, &["array"]), Value::String("pushed".into()));
    fields(at(v, &["nested", "a", "b"])).insert("inc".into(), Value::String("str".into()));
    add_to_counter(at(v, &["visits"]), 10);
    edit_text(at(v, &["notes"]), |s| format!("{s} (inc)"));
}

/// What the script's `save` command does before saving.
fn save_edit(v: &mut Value) {
    let saved = object! { "by" => "A.save", "at" => Value::Date(1_700_000_000_999), "n" => -5i64 };
    fields(v).insert("saved".into(), saved);
    fields(v).remove("empty");
    for item in [Value::Float(1.5), Value::Null, Value::Bool(true)] {
        push_item(at(v, &["nested", "list"]), item);
    }
}

/// Bytes written by JS from the fixture's `kinds` record, the JS document they came from, and
/// what they do to the record's value.
struct JsEdit {
    what: &'static str,
    bytes: Vec<u8>,
    after: Json,
    edit: fn(&mut Value),
}

/// The script's `change`, `incremental` and `save`, each made on the same base.
struct JsEdits {
    single: JsEdit,
    incremental: JsEdit,
    saved: JsEdit,
}

impl JsEdits {
    fn make(js: &Js, dir: &Path, base: &mut Record) -> JsEdits {
        let base_file = dir.join("base.automerge");
        std::fs::write(&base_file, base.save()).expect("write");
        let run = |command: &str, what: &'static str, edit: fn(&mut Value)| {
            let out = dir.join(format!("{command}.bin"));
            let after = js.run(&[Path::new(command), &base_file, &out]);
            JsEdit { what, bytes: std::fs::read(&out).expect("read"), after, edit }
        };
        JsEdits {
            single: run("change", "A.getLastLocalChange", single_edit),
            incremental: run("incremental", "A.saveIncremental", incremental_edit),
            saved: run("save", "A.save", save_edit),
        }
    }

    fn all(&self) -> [&JsEdit; 3] {
        [&self.single, &self.incremental, &self.saved]
    }

    /// The fixture's value with all three edits.
    fn merged_value(&self, fixture: &Fixture) -> Value {
        let mut value = fixture.kinds_value();
        for e in self.all() {
            (e.edit)(&mut value);
        }
        value
    }
}

/// A document made from scratch in JS: its save and its changes, one file each.
struct Scratch {
    save: Vec<u8>,
    changes: Vec<Vec<u8>>,
}

impl Scratch {
    fn make(js: &Js, dir: &Path) -> Scratch {
        let described = js.run(&[Path::new("scratch"), dir]);
        let count = described["changes"].as_u64().expect("a change count");
        assert!(count >= 2, "the scratch document has several changes: {described}");
        assert_eq!(described["v"]["map"]["title"], json!({ "str": "from scratch" }), "{described}");
        let changes = (0..count).map(|i| std::fs::read(dir.join(format!("scratch-{i}.change"))).expect("read")).collect();
        Scratch { save: std::fs::read(dir.join("scratch.automerge")).expect("read"), changes }
    }

    /// Every way the scratch document can arrive as a payload.
    fn payloads(&self) -> Vec<(&'static str, Payload)> {
        vec![
            ("its save as a change chunk", Payload::Changes(vec![self.save.clone()])),
            ("its changes, one per chunk", Payload::Changes(self.changes.clone())),
            ("its changes concatenated", Payload::Changes(vec![self.changes.concat()])),
            ("its first change", Payload::Changes(vec![self.changes[0].clone()])),
            ("its save as a document", Payload::Document(self.save.clone())),
        ]
    }
}

#[test]
fn javascript_reads_tidepool_documents_exactly() {
    let Some(js) = Js::find() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fixture = Fixture::new();
    for (i, (record, _, value)) in fixture.records.iter_mut().enumerate() {
        let file = dir.path().join(format!("record-{i}.automerge"));
        std::fs::write(&file, record.save()).expect("write");
        let seen = as_described(js.run(&[Path::new("inspect"), &file]));
        assert_eq!(seen, describe(record, Some(value)), "record {:?}", record.key());
    }
    // The layout as JS sees it: the deleted record keeps its `v` and lost `live`.
    let gone = &mut fixture.records[2].0;
    assert!(!gone.exists());
    assert_eq!(describe(gone, Some(&object! { "was" => "here" }))["root"], json!(["prov", "v"]));
}

#[test]
fn javascript_changes_incremental_saves_and_saves_apply_to_records() {
    let Some(js) = Js::find() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = Fixture::new();
    let mut base = fixture.kinds().clone();
    let base_heads = base.heads();
    let edits = JsEdits::make(&js, dir.path(), &mut base);

    for JsEdit { what, bytes, after, edit } in edits.all() {
        let mut record = base.clone();
        let changed = record.apply(&Payload::Changes(vec![bytes.clone()])).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(changed, "{what} changed the record");
        let mut expected = fixture.kinds_value();
        edit(&mut expected);
        assert_eq!(record.get().expect("get"), Some(expected), "{what}: Tidepool's value");
        assert_eq!(describe(&mut record, None), as_described(after.clone()), "{what}: the same document as in JS");
        assert!(record.missing_deps().is_empty(), "{what}");
        // Applying the same bytes again is a no-op.
        assert!(!record.apply(&Payload::Changes(vec![bytes.clone()])).expect("again"), "{what}");
    }

    // The incremental save is several changes in one byte string, exactly.
    let incremental = &edits.incremental;
    let mut record = base.clone();
    record.apply(&Payload::Changes(vec![incremental.bytes.clone()])).expect("apply");
    let changes = record.changes_since(&base_heads);
    assert_eq!(changes.len() as u64, incremental.after["changes"].as_u64().expect("count"));
    assert!(changes.len() >= 2, "A.saveIncremental holds {} changes", changes.len());
    assert_eq!(changes.iter().map(Vec::len).sum::<usize>(), incremental.bytes.len());

    // The three were made concurrently on the same base; merged in any order they agree.
    let expected = edits.merged_value(&fixture);
    let mut merged = base.clone();
    for e in edits.all() {
        merged.apply(&Payload::Changes(vec![e.bytes.clone()])).expect("apply");
    }
    let mut reversed = base.clone();
    reversed.apply(&Payload::Changes(edits.all().iter().rev().map(|e| e.bytes.clone()).collect())).expect("apply");
    assert_eq!(merged.get().expect("get"), Some(expected.clone()));
    assert_eq!(reversed.heads(), merged.heads());
    assert_eq!(reversed.get().expect("get"), Some(expected));
    // And JS reads the merged document as Tidepool does.
    let file = dir.path().join("merged.automerge");
    std::fs::write(&file, merged.save()).expect("write");
    assert_eq!(as_described(js.run(&[Path::new("inspect"), &file])), describe(&mut merged, None));
}

fn client(hub: &HubProcess) -> Arc<Client> {
    let c = Arc::new(Client::connect(ClientOptions::new(hub.url(), full_token("app"))));
    c.subscribe(store());
    c
}

/// Pushes raw Automerge bytes through the native client and waits for the hub's acknowledgement.
async fn push_acked(client: &Client, record: &Record, bytes: &[u8], what: &str) {
    let id = client
        .push_change(&store(), record.id(), record.encoded_key(), bytes)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .unwrap_or_else(|| panic!("{what}: new to the client"));
    assert_eq!(client.wait_acked(id, WAIT).await.expect("ack"), ChangeState::Acked, "{what}: {:?}", client.last_error());
}

/// Until the client holds `expected` at `key` (live changes may still be on their way).
async fn wait_for_value(client: &Client, key: &Key, expected: &Value) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let got = client.get(&store(), key).expect("get");
        if got.as_ref() == Some(expected) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{key:?}: {got:?} instead of {expected:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn heads_at(client: &Client, doc: DocId) -> Vec<String> {
    let mut record = client.records(&store()).into_iter().find(|r| r.id() == doc).expect("the client has the record");
    let mut heads: Vec<String> = record.heads().iter().map(ToString::to_string).collect();
    heads.sort();
    heads
}

/// `dump`'s records by key (as JSON text), with their values.
fn dumped(hub: &HubProcess) -> BTreeMap<String, Json> {
    dump(&hub.data, &store().db, &store().store).into_iter().map(|l| (l["key"].to_string(), l["value"].clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_changes_travel_through_the_hub() {
    let Some(js) = Js::find() else { return };
    let dir = TestDir::new();
    let files = tempfile::tempdir().expect("tempdir");
    let hub = dir.start(&[]);
    let fixture = Fixture::new();
    let mut base = fixture.kinds().clone();
    let edits = JsEdits::make(&js, files.path(), &mut base);

    let writer = client(&hub);
    let live = client(&hub);
    writer.wait_idle(WAIT).await.expect("writer idle");
    live.wait_idle(WAIT).await.expect("live idle");
    for (record, changes, _) in &fixture.records {
        for (i, change) in changes.iter().enumerate() {
            push_acked(&writer, record, change, &format!("{:?} change {i}", record.key())).await;
        }
    }
    for e in edits.all() {
        push_acked(&writer, &base, &e.bytes, e.what).await;
    }

    let expected = edits.merged_value(&fixture);
    let mut merged = base.clone();
    merged.apply(&Payload::Changes(edits.all().iter().map(|e| e.bytes.clone()).collect())).expect("apply");
    let mut merged_heads: Vec<String> = merged.heads().iter().map(ToString::to_string).collect();
    merged_heads.sort();

    // A client that followed live, and one that downloads everything afterwards.
    let fresh = client(&hub);
    fresh.wait_idle(WAIT).await.expect("fresh idle");
    live.wait_idle(WAIT).await.expect("live idle");
    let key = Key::from("all-kinds");
    for (name, c) in [("writer", &writer), ("live", &live), ("fresh", &fresh)] {
        wait_for_value(c, &key, &expected.to_plain()).await;
        assert_eq!(heads_at(c, base.id()), merged_heads, "{name}");
        assert_eq!(c.get(&store(), &Key::Number(7.0)).expect("get"), Some(Value::Int(5)), "{name}");
        assert_eq!(c.get(&store(), &Key::from("deleted")).expect("get"), None, "{name}");
    }
    let dump = dumped(&hub);
    assert_eq!(dump.get("\"all-kinds\""), Some(&value_to_json(&expected.to_plain())));
    assert_eq!(dump.len(), 2, "{dump:?}");
}

#[test]
fn a_document_made_from_scratch_in_javascript_is_refused_by_records() {
    let Some(js) = Js::find() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = Fixture::new();
    let mut base = fixture.kinds().clone();
    let scratch = Scratch::make(&js, dir.path());
    let edits = JsEdits::make(&js, dir.path(), &mut base);
    let fresh = Record::new(&store(), &Key::from("scratch"), &ActorId::from([1u8; 16])).expect("record");

    let mut payloads = scratch.payloads();
    // All or nothing: a good change beside a foreign one is not applied either.
    let mut mixed = vec![edits.single.bytes.clone()];
    mixed.extend(scratch.changes.iter().cloned());
    payloads.push(("a JS change on Tidepool's document, then its changes", Payload::Changes(mixed)));
    for (name, target) in [("an existing record", &base), ("a new record", &fresh)] {
        for (what, payload) in &payloads {
            let mut record = target.clone();
            let (heads, value) = (record.heads(), record.get().expect("get"));
            match record.apply(payload) {
                Err(RecordError::Foreign(..)) => {}
                other => panic!("{what} onto {name}: expected the foreign-document error, got {other:?}"),
            }
            assert_eq!(record.heads(), heads, "{what} onto {name}: nothing applied");
            assert_eq!(record.get().expect("get"), value, "{what} onto {name}");
            assert!(record.missing_deps().is_empty(), "{what} onto {name}: nothing waits either");
        }
    }
}

fn push(batch: u64, docs: Vec<DocData>) -> Vec<u8> {
    wire::encode(&Message::Push { batch, store: store(), docs })
}

fn doc_data(record: &Record, payload: Payload) -> DocData {
    DocData { doc: record.id(), key: record.encoded_key().to_vec(), payload }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_refuses_a_document_made_from_scratch_in_javascript() {
    let Some(js) = Js::find() else { return };
    let dir = TestDir::new();
    let files = tempfile::tempdir().expect("tempdir");
    let hub = dir.start(&[]);
    let fixture = Fixture::new();
    let mut base = fixture.kinds().clone();
    let scratch = Scratch::make(&js, files.path());
    let edits = JsEdits::make(&js, files.path(), &mut base);
    let fresh = Record::new(&store(), &Key::from("scratch"), &ActorId::from([1u8; 16])).expect("record");

    let mut ws = authed(&hub.url(), &full_token("app")).await;
    send(&mut ws, push(1, vec![doc_data(&base, Payload::Changes(fixture.records[0].1.clone()))])).await;
    assert!(matches!(next(&mut ws).await, Some(Message::Ack { batch: 1, .. })));

    let mut batch = 10;
    for (what, payload) in scratch.payloads() {
        for target in [&base, &fresh] {
            batch += 1;
            send(&mut ws, push(batch, vec![doc_data(target, payload.clone())])).await;
            assert_eq!(expect_error(&mut ws, ErrorCode::Foreign).await, Some(batch), "{what} onto {:?}", target.key());
        }
    }
    // Nothing of a refused batch is stored: not the good documents beside it, nor a good change
    // before the foreign one in the same document.
    let (beside, beside_key, beside_change) = change(&store(), "beside-foreign", &object! { "ok" => true });
    let good = DocData { doc: beside, key: beside_key, payload: Payload::Changes(vec![beside_change]) };
    let mut mixed = vec![edits.single.bytes.clone()];
    mixed.extend(scratch.changes.iter().cloned());
    send(&mut ws, push(30, vec![good, doc_data(&base, Payload::Changes(mixed))])).await;
    assert_eq!(expect_error(&mut ws, ErrorCode::Foreign).await, Some(30));
    // The connection goes on.
    let (after, after_key, after_change) = change(&store(), "after-refusals", &object! { "ok" => true });
    send(&mut ws, push(31, vec![DocData { doc: after, key: after_key, payload: Payload::Changes(vec![after_change]) }])).await;
    assert!(matches!(next(&mut ws).await, Some(Message::Ack { batch: 31, .. })));

    // The native client refuses the same bytes before they leave.
    let c = client(&hub);
    c.wait_idle(WAIT).await.expect("idle");
    for target in [&base, &fresh] {
        match c.push_change(&store(), target.id(), target.encoded_key(), &scratch.save) {
            Err(ClientError::Record(e)) if matches!(*e, RecordError::Foreign(..)) => {}
            other => panic!("the native client pushed a foreign document: {other:?}"),
        }
    }
    assert_eq!(c.pending(), 0);

    let base_value = fixture.kinds_value().to_plain();
    let dump = dumped(&hub);
    assert_eq!(dump.keys().cloned().collect::<Vec<_>>(), ["\"after-refusals\"", "\"all-kinds\""]);
    assert_eq!(dump["\"all-kinds\""], value_to_json(&base_value));
    let late = client(&hub);
    late.wait_idle(WAIT).await.expect("idle");
    for c in [&c, &late] {
        assert_eq!(c.get(&store(), &Key::from("all-kinds")).expect("get"), Some(base_value.clone()));
        assert_eq!(c.get(&store(), &Key::from("scratch")).expect("get"), None);
        assert_eq!(c.get(&store(), &Key::from("beside-foreign")).expect("get"), None);
        assert_eq!(c.values(&store()).len(), 2);
        let mut heads: Vec<String> = base.heads().iter().map(ToString::to_string).collect();
        heads.sort();
        assert_eq!(heads_at(c, base.id()), heads);
    }
}
