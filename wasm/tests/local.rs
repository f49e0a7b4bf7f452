//! The browser client without a hub, in real Chromium: reads and writes, indexes, reopening,
//! atomicity, bulk writes, value and key conversion, errors, events, compaction, quarantine.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use js_sys::{Array, Uint8Array};
use tidepool_wasm::Tidepool;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn todos_options(name: &str) -> JsValue {
    json(&format!(
        r#"{{"name": "{name}", "stores": [{{"name": "todos", "indexes": [
            {{"name": "byDone", "keyPath": "done"}},
            {{"name": "byOwnerAndRank", "keyPath": ["owner", "rank"]}},
            {{"name": "byTag", "keyPath": "tags", "multiEntry": true}}
        ]}}, "notes"]}}"#
    ))
}

/// `done` is 0 or 1: booleans are not IndexedDB keys, so a boolean field could not be indexed.
fn todo(i: u32, done: bool, owner: &str) -> JsValue {
    let done = u8::from(done);
    json(&format!(r#"{{"title": "todo {i}", "done": {done}, "owner": "{owner}", "rank": {i}, "tags": ["t{}", "all"]}}"#, i % 3))
}

#[wasm_bindgen_test]
async fn put_get_delete_round_trip() {
    let name = unique("crud");
    let db = open(todos_options(&name)).await;
    let value = json(r#"{"title": "milk", "done": false, "n": 3, "f": 1.5, "nested": {"a": [1, "two", null, true]}}"#);
    set(&value, "when", js_sys::Date::new(&JsValue::from_f64(1_700_000_000_123.0)));
    set(&value, "bytes", Uint8Array::from(&[1u8, 0, 255][..]));
    ok(db.put("todos".into(), "t1".into(), value.clone())).await;
    assert_same(&ok(db.get("todos".into(), "t1".into())).await, &value);
    // The plain store holds exactly the value, readable by any IndexedDB code.
    let raw = raw_all(&name, "todos").await;
    assert_eq!(raw.length(), 1);
    assert_same(&raw.get(0), &value);

    let changed = json(r#"{"title": "oat milk", "done": true}"#);
    ok(db.put("todos".into(), "t1".into(), changed.clone())).await;
    assert_same(&ok(db.get("todos".into(), "t1".into())).await, &changed);

    ok(db.delete("todos".into(), "t1".into())).await;
    assert!(ok(db.get("todos".into(), "t1".into())).await.is_undefined());
    assert_eq!(raw_all(&name, "todos").await.length(), 0);
    assert_consistent(&db, "todos").await;
    ok(db.close()).await;
}

#[wasm_bindgen_test]
async fn get_all_and_queries_use_the_declared_indexes() {
    let name = unique("query");
    let db = open(todos_options(&name)).await;
    let entries: Array = (0..20u32).map(|i| JsValue::from(Array::of2(&(i as f64).into(), &todo(i, i % 4 == 0, if i < 10 { "ann" } else { "bob" })))).collect();
    ok(db.bulk_put("todos".into(), entries.into())).await;

    let all: Array = ok(db.get_all("todos".into(), None, None)).await.unchecked_into();
    assert_eq!(all.length(), 20);
    let range = web_sys::IdbKeyRange::bound(&5.into(), &9.into()).unwrap();
    let some: Array = ok(db.get_all("todos".into(), Some(range.into()), None)).await.unchecked_into();
    assert_eq!(some.length(), 5);
    assert_eq!(get(&some.get(0), "rank").as_f64(), Some(5.0));
    let limited: Array = ok(db.get_all("todos".into(), None, Some(3))).await.unchecked_into();
    assert_eq!(limited.length(), 3);
    let keys: Array = ok(db.get_all_keys("todos".into(), None, None)).await.unchecked_into();
    assert_eq!(keys.length(), 20);
    assert_eq!(keys.get(19).as_f64(), Some(19.0));

    let done: Array = ok(db.query("todos".into(), "byDone".into(), Some(1.into()), None)).await.unchecked_into();
    assert_eq!(done.length(), 5, "0, 4, 8, 12, 16");
    let bob_top = web_sys::IdbKeyRange::bound(&Array::of2(&"bob".into(), &15.into()), &Array::of2(&"bob".into(), &100.into())).unwrap();
    let bob: Array = ok(db.query("todos".into(), "byOwnerAndRank".into(), Some(bob_top.into()), None)).await.unchecked_into();
    assert_eq!(bob.length(), 5);
    let tagged: Array = ok(db.query("todos".into(), "byTag".into(), Some("t1".into()), None)).await.unchecked_into();
    assert_eq!(tagged.length(), 7, "multiEntry index over the tags array");

    assert_eq!(err(db.query("todos".into(), "nope".into(), None, None)).await, "unknown_index");
    assert_eq!(err(db.get_all("nope".into(), None, None)).await, "unknown_store");
    assert_eq!(err(db.get_all("todos".into(), Some(json(r#"{"not": "a key"}"#)), None)).await, "bad_range");
    assert_eq!(err(db.query("todos".into(), "byDone".into(), Some(true.into()), None)).await, "bad_range");
    ok(db.close()).await;
}

#[wasm_bindgen_test]
async fn reopening_finds_everything_and_keeps_editing() {
    let name = unique("reopen");
    let db = open(todos_options(&name)).await;
    for i in 0..5u32 {
        ok(db.put("todos".into(), (i as f64).into(), todo(i, false, "ann"))).await;
    }
    ok(db.put("notes".into(), "n".into(), json(r#"{"text": "hello", "likes": 1}"#))).await;
    ok(db.delete("todos".into(), 3.into())).await;
    ok(db.close()).await;
    assert_eq!(err(db.get("todos".into(), 1.into())).await, "closed");

    let db = open(todos_options(&name)).await;
    assert_eq!(ok(db.get_all("todos".into(), None, None)).await.unchecked_into::<Array>().length(), 4);
    assert!(ok(db.get("todos".into(), 3.into())).await.is_undefined());
    // Edits after reopening load the documents from storage and build on them.
    ok(db.increment("notes".into(), "n".into(), "likes".into(), 2.0)).await;
    ok(db.splice_text("notes".into(), "n".into(), "text".into(), 5.0, 0.0, ", world".into())).await;
    assert_same(&ok(db.get("notes".into(), "n".into())).await, &json(r#"{"text": "hello, world", "likes": 3}"#));
    let (documents, plain) = assert_consistent(&db, "todos").await;
    assert_eq!((documents, plain), (4, 4));
    assert_consistent(&db, "notes").await;
    ok(db.close()).await;

    let db = open(todos_options(&name)).await;
    assert_same(&ok(db.get("notes".into(), "n".into())).await, &json(r#"{"text": "hello, world", "likes": 3}"#));
    ok(db.close()).await;
}

#[wasm_bindgen_test]
async fn an_aborted_transaction_leaves_nothing_behind() {
    let name = unique("abort");
    let options = json(&format!(
        r#"{{"name": "{name}", "stores": [{{"name": "users", "indexes": [{{"name": "byEmail", "keyPath": "email", "unique": true}}]}}]}}"#
    ));
    let db = open(options.clone()).await;
    ok(db.put("users".into(), "a".into(), json(r#"{"email": "a@x"}"#))).await;
    let segments_before = raw_keys(&name, "_tp_segments").await.length();
    let outbox_before = raw_keys(&name, "_tp_outbox").await.length();

    // The third entry breaks the unique index: IndexedDB aborts the transaction, and none of the
    // bulk may survive, neither plain values nor document chunks nor outbox entries.
    let bulk = json(r#"[["b", {"email": "b@x"}], ["c", {"email": "c@x"}], ["d", {"email": "a@x"}]]"#);
    assert_eq!(err(db.bulk_put("users".into(), bulk)).await, "constraint");
    assert_eq!(raw_all(&name, "users").await.length(), 1);
    assert_eq!(raw_keys(&name, "_tp_segments").await.length(), segments_before);
    assert_eq!(raw_keys(&name, "_tp_registry").await.length(), segments_before);
    assert_eq!(raw_keys(&name, "_tp_outbox").await.length(), outbox_before);
    assert_eq!(get(&db.status(), "pending").as_f64(), Some(1.0), "only the first put waits for the hub");

    // A failed put on an existing record leaves its document as it was.
    ok(db.put("users".into(), "b".into(), json(r#"{"email": "b@x", "v": 1}"#))).await;
    assert_eq!(err(db.put("users".into(), "b".into(), json(r#"{"email": "a@x", "v": 2}"#))).await, "constraint");
    ok(db.put("users".into(), "b".into(), json(r#"{"email": "b@x", "v": 1, "w": 3}"#))).await;
    assert_same(&ok(db.get("users".into(), "b".into())).await, &json(r#"{"email": "b@x", "v": 1, "w": 3}"#));
    assert_consistent(&db, "users").await;
    ok(db.close()).await;

    let db = open(options).await;
    let (documents, plain) = assert_consistent(&db, "users").await;
    assert_eq!((documents, plain), (2, 2));
    ok(db.close()).await;
}

#[wasm_bindgen_test]
async fn bulk_put_writes_one_row_per_internal_store() {
    let name = unique("bulk");
    let db = open(todos_options(&name)).await;
    let entries: Array = (0..1000u32)
        .map(|i| {
            let entry = js_sys::Object::new();
            set(&entry, "key", Array::of2(&"k".into(), &(i as f64).into()));
            set(&entry, "value", todo(i, i % 2 == 0, "ann"));
            JsValue::from(entry)
        })
        .collect();
    ok(db.bulk_put("todos".into(), entries.into())).await;
    assert_eq!(raw_all(&name, "todos").await.length(), 1000);
    assert_eq!(raw_keys(&name, "_tp_segments").await.length(), 1);
    assert_eq!(raw_keys(&name, "_tp_outbox").await.length(), 1);
    assert_eq!(get(&db.status(), "pending").as_f64(), Some(1000.0));
    assert_eq!(ok(db.query("todos".into(), "byDone".into(), Some(0.into()), None)).await.unchecked_into::<Array>().length(), 500);
    ok(db.close()).await;
    let db = open(todos_options(&name)).await;
    assert_eq!(get(&db.status(), "pending").as_f64(), Some(1000.0), "the outbox survives reopening");
    assert_eq!(assert_consistent(&db, "todos").await, (1000, 1000));
    ok(db.close()).await;
}

/// New records take a shortcut (their first change is built without a document in memory):
/// they must be editable at once, a key given twice in one batch keeps its last value, and
/// the documents must match the plain values.
#[wasm_bindgen_test]
async fn records_created_in_bulk_are_editable_at_once() {
    let name = unique("bulk-edit");
    let db = open(todos_options(&name)).await;
    let entries = json(
        r#"[[1, {"title": "one", "n": 1, "tags": ["a", {"deep": [1, 2]}]}],
            [2, {"title": "two", "n": 2}],
            [1, {"title": "one again", "n": 10}],
            [3, "just a string"],
            [4, {"note": "x"}]]"#,
    );
    ok(db.bulk_put("notes".into(), entries)).await;
    ok(db.increment("notes".into(), 1.into(), "n".into(), 5.0)).await;
    ok(db.put("notes".into(), 2.into(), json(r#"{"title": "two", "n": 3}"#))).await;
    ok(db.increment("notes".into(), 2.into(), "n".into(), 1.0)).await;
    ok(db.splice_text("notes".into(), 4.into(), "note".into(), 1.0, 0.0, "yz".into())).await;
    assert_same(&ok(db.get("notes".into(), 1.into())).await, &json(r#"{"title": "one again", "n": 15}"#));
    assert_same(&ok(db.get("notes".into(), 2.into())).await, &json(r#"{"title": "two", "n": 4}"#));
    assert_same(&ok(db.get("notes".into(), 3.into())).await, &json(r#""just a string""#));
    assert_same(&ok(db.get("notes".into(), 4.into())).await, &json(r#"{"note": "xyz"}"#));
    assert_eq!(assert_consistent(&db, "notes").await, (4, 4));
    ok(db.close()).await;
    let db = open(todos_options(&name)).await;
    assert_eq!(assert_consistent(&db, "notes").await, (4, 4));
    ok(db.close()).await;
}

#[wasm_bindgen_test]
async fn values_and_keys_round_trip_exactly() {
    let name = unique("values");
    let db = open(todos_options(&name)).await;
    let value = json(r#"{"int": 42, "float": 0.1, "neg": -7, "max": 9007199254740991, "empty": {}, "list": [[], [1, [2]]], "s": "\u00e9\ud83d\ude00"}"#);
    set(&value, "negzero", JsValue::from_f64(-0.0));
    // Beyond 2^53: stored as a 64-bit integer, read back as a BigInt so no digit is lost.
    set(&value, "huge", big("1234567890123456789"));
    set(&value, "buffer", Uint8Array::from(&[9u8, 8][..]).buffer());
    let expected: JsValue = js_sys::Object::assign(&js_sys::Object::new(), value.unchecked_ref()).into();
    // An ArrayBuffer is stored as bytes and read back as a Uint8Array.
    set(&expected, "buffer", Uint8Array::from(&[9u8, 8][..]));
    ok(db.put("notes".into(), "v".into(), value)).await;
    assert_same(&ok(db.get("notes".into(), "v".into())).await, &expected);

    let keys = [
        JsValue::from_f64(-1.5),
        js_sys::Date::new(&JsValue::from_f64(0.0)).into(),
        "".into(),
        Uint8Array::from(&[0u8, 1][..]).buffer().into(),
        Array::of3(&1.into(), &"a".into(), &Array::of1(&2.into())).into(),
    ];
    for (i, key) in keys.iter().enumerate() {
        ok(db.put("notes".into(), key.clone(), (i as f64).into())).await;
        assert_eq!(ok(db.get("notes".into(), key.clone())).await.as_f64(), Some(i as f64));
    }
    let (documents, _) = assert_consistent(&db, "notes").await;
    assert_eq!(documents, 6);
    ok(db.close()).await;
}

#[wasm_bindgen_test]
async fn update_changes_only_the_named_fields() {
    let name = unique("update");
    let db = open(todos_options(&name)).await;
    // A record that does not exist becomes the object of the given fields; `undefined` removes
    // nothing there.
    let first = json(r#"{"title": "milk", "meta": {"by": "ann"}}"#);
    set(&first, "note", JsValue::UNDEFINED);
    ok(db.update("notes".into(), "n1".into(), first)).await;
    assert_same(&ok(db.get("notes".into(), "n1".into())).await, &json(r#"{"title": "milk", "meta": {"by": "ann"}}"#));

    ok(db.put("notes".into(), "n1".into(), json(r#"{"title": "milk", "done": false, "note": "x", "meta": {"by": "ann", "at": 1}, "tags": ["a"]}"#))).await;
    ok(db.increment("notes".into(), "n1".into(), "likes".into(), 2.0)).await;
    let changes = json(r#"{"done": true, "meta": {"at": 2, "extra": {"deep": 1}}, "tags": ["a", "b"], "likes": 5}"#);
    set(&changes, "note", JsValue::UNDEFINED);
    set(&get(&changes, "meta"), "by", JsValue::UNDEFINED);
    ok(db.update("notes".into(), "n1".into(), changes)).await;
    let expected = json(r#"{"title": "milk", "done": true, "meta": {"at": 2, "extra": {"deep": 1}}, "tags": ["a", "b"], "likes": 5}"#);
    assert_same(&ok(db.get("notes".into(), "n1".into())).await, &expected);
    // The plain store and the document agree, also after reopening.
    assert_same(&raw_all(&name, "notes").await.get(0), &expected);
    assert_consistent(&db, "notes").await;
    ok(db.close()).await;
    let db = open(todos_options(&name)).await;
    ok(db.update("notes".into(), "n1".into(), json(r#"{"title": "oat milk"}"#))).await;
    assert_eq!(get(&ok(db.get("notes".into(), "n1".into())).await, "title").as_string().as_deref(), Some("oat milk"));
    assert_eq!(get(&ok(db.get("notes".into(), "n1".into())).await, "done").as_bool(), Some(true));
    assert_consistent(&db, "notes").await;

    // Bad changes are refused before anything is written.
    for bad in [json("[]"), json("1"), JsValue::NULL, JsValue::UNDEFINED, make_map()] {
        assert_eq!(err(db.update("notes".into(), "n1".into(), bad.clone())).await, "bad_value", "{bad:?}");
    }
    let nested = json(r#"{"meta": {"f": 1}}"#);
    set(&get(&nested, "meta"), "f", make_function());
    let thrown = wait(db.update("notes".into(), "n1".into(), nested)).await.unwrap_err();
    let message = get(&thrown, "message").as_string().unwrap();
    assert!(message.contains("`meta.f`"), "the message names the path: {message}");
    assert_eq!(get(&ok(db.get("notes".into(), "n1".into())).await, "title").as_string().as_deref(), Some("oat milk"));
    ok(db.close()).await;
}

#[wasm_bindgen_test]
async fn bad_input_is_refused_with_a_code() {
    let name = unique("errors");
    let db = open(todos_options(&name)).await;
    for bad in [make_map(), make_class_instance(), make_function(), make_symbol(), with_undefined_field(), sparse_array(), JsValue::UNDEFINED] {
        assert_eq!(err(db.put("notes".into(), "k".into(), bad.clone())).await, "bad_value", "{bad:?}");
    }
    let nested = json(r#"{"a": {"b": 1}}"#);
    set(&get(&nested, "a"), "f", make_function());
    let thrown = wait(db.put("notes".into(), "k".into(), nested)).await.unwrap_err();
    let message = get(&thrown, "message").as_string().unwrap();
    assert!(message.contains("`a.f`"), "the message names the path: {message}");
    assert_eq!(get(&thrown, "name").as_string().as_deref(), Some("TidepoolError"));

    for bad in [JsValue::from_f64(f64::NAN), json(r#"{"k": 1}"#), JsValue::NULL, true.into()] {
        assert_eq!(err(db.put("notes".into(), bad, 1.into())).await, "bad_key");
    }
    assert_eq!(err(db.put("nope".into(), "k".into(), 1.into())).await, "unknown_store");
    assert_eq!(err(db.bulk_put("notes".into(), json(r#"[["a", 1], ["b"]]"#))).await, "bad_value");
    assert_eq!(err(db.bulk_put("notes".into(), json(r#"{"a": 1}"#))).await, "bad_value");
    assert_eq!(err(db.increment("notes".into(), "missing".into(), "n".into(), 1.0)).await, "not_found");
    assert_eq!(err(db.increment("notes".into(), "k".into(), "n".into(), 0.5)).await, "bad_value");
    ok(db.put("notes".into(), "k".into(), json(r#"{"s": "abc", "n": 1}"#))).await;
    assert_eq!(err(db.increment("notes".into(), "k".into(), "s".into(), 1.0)).await, "wrong_type");
    assert_eq!(err(db.increment("notes".into(), "k".into(), json("[]"), 1.0)).await, "bad_path");
    assert_eq!(err(db.splice_text("notes".into(), "k".into(), "s".into(), 2.0, 5.0, "x".into())).await, "out_of_range");
    assert!(db.subscribe("nope".into(), js_sys::Function::new_no_args("")).is_err());
    assert_eq!(err(db.when_synced(Some(10))).await, "no_hub");
    assert_eq!(err(Tidepool::open(json(r#"{"name": "x", "stores": [{"name": "_tp_meta"}]}"#))).await, "bad_options");
    assert_eq!(err(Tidepool::open(json(r#"{"stores": ["a"]}"#))).await, "bad_options");
    assert_same(&ok(db.get("notes".into(), "k".into())).await, &json(r#"{"s": "abc", "n": 1}"#));
    ok(db.close()).await;
}

#[wasm_bindgen_test]
async fn counters_and_text_read_back_as_plain_values() {
    let name = unique("collab");
    let db = open(todos_options(&name)).await;
    ok(db.put("notes".into(), "doc".into(), json(r#"{"body": "", "stats": {"views": 0}}"#))).await;
    ok(db.splice_text("notes".into(), "doc".into(), "body".into(), 0.0, 0.0, "Hello world".into())).await;
    ok(db.splice_text("notes".into(), "doc".into(), "body".into(), 5.0, 6.0, "!".into())).await;
    for _ in 0..3 {
        ok(db.increment("notes".into(), "doc".into(), json(r#"["stats", "views"]"#), 2.0)).await;
    }
    assert_same(&ok(db.get("notes".into(), "doc".into())).await, &json(r#"{"body": "Hello!", "stats": {"views": 6}}"#));
    // Putting the same plain value back changes nothing and creates no outbox entry.
    let pending = get(&db.status(), "pending").as_f64();
    ok(db.put("notes".into(), "doc".into(), json(r#"{"body": "Hello!", "stats": {"views": 6}}"#))).await;
    assert_eq!(get(&db.status(), "pending").as_f64(), pending);
    assert_consistent(&db, "notes").await;
    ok(db.close()).await;
}

#[wasm_bindgen_test]
async fn listeners_hear_local_writes() {
    let name = unique("events");
    let db = open(todos_options(&name)).await;
    let seen = Array::new();
    let sink = seen.clone();
    let callback = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        sink.push(&event);
    });
    let id = db.subscribe("todos".into(), callback.as_ref().unchecked_ref::<js_sys::Function>().clone()).unwrap();
    ok(db.put("todos".into(), 1.into(), todo(1, false, "ann"))).await;
    ok(db.put("notes".into(), 1.into(), 1.into())).await;
    ok(db.bulk_put("todos".into(), json(r#"[[2, {"a": 1}], [3, {"a": 2}]]"#))).await;
    ok(db.delete("todos".into(), 1.into())).await;
    assert_eq!(seen.length(), 3, "one event per write, only for the subscribed store");
    let first = seen.get(0);
    assert_eq!(get(&first, "origin").as_string().as_deref(), Some("local"));
    assert_eq!(get(&first, "store").as_string().as_deref(), Some("todos"));
    let change = get(&first, "changes").unchecked_into::<Array>().get(0);
    assert_eq!(get(&change, "type").as_string().as_deref(), Some("put"));
    assert_same(&get(&change, "value"), &todo(1, false, "ann"));
    assert_eq!(get(&seen.get(1), "changes").unchecked_into::<Array>().length(), 2);
    let deleted = get(&seen.get(2), "changes").unchecked_into::<Array>().get(0);
    assert_eq!(get(&deleted, "type").as_string().as_deref(), Some("delete"));
    assert!(db.unsubscribe(id));
    ok(db.put("todos".into(), 9.into(), 9.into())).await;
    assert_eq!(seen.length(), 3);
    ok(db.close()).await;
}

#[wasm_bindgen_test]
async fn compaction_folds_segments_into_snapshots() {
    let name = unique("compact");
    let db = open(todos_options(&name)).await;
    for round in 0..3u32 {
        for i in 0..20u32 {
            ok(db.put("todos".into(), (i as f64).into(), todo(i + round, round % 2 == 0, "ann"))).await;
        }
    }
    assert_eq!(raw_keys(&name, "_tp_segments").await.length(), 60);
    ok(db.compact()).await;
    assert_eq!(raw_keys(&name, "_tp_segments").await.length(), 0);
    assert_eq!(raw_keys(&name, "_tp_snapshots").await.length(), 20);
    ok(db.put("todos".into(), 0.into(), todo(100, true, "bob"))).await;
    ok(db.close()).await;
    let db = open(todos_options(&name)).await;
    assert_eq!(assert_consistent(&db, "todos").await, (20, 20));
    assert_same(&ok(db.get("todos".into(), 0.into())).await, &todo(100, true, "bob"));
    // Snapshots and later segments combine: this edit builds on both.
    ok(db.increment("todos".into(), 0.into(), "rank".into(), 1.0)).await;
    assert_eq!(get(&ok(db.get("todos".into(), 0.into())).await, "rank").as_f64(), Some(101.0));
    ok(db.close()).await;
}

#[wasm_bindgen_test]
async fn a_corrupt_document_is_reported_and_quarantined() {
    let name = unique("corrupt");
    let db = open(todos_options(&name)).await;
    ok(db.put("notes".into(), "n".into(), json(r#"{"count": 1}"#))).await;
    ok(db.put("notes".into(), "m".into(), json(r#"{"count": 5}"#))).await;
    ok(db.compact()).await;
    ok(db.close()).await;
    // Damage n's snapshot as a failing disk or a buggy extension might.
    let keys = raw_keys(&name, "_tp_snapshots").await;
    let victim = keys.iter().find(|k| {
        let key = k.unchecked_ref::<Array>().get(1);
        Uint8Array::new(&key).to_vec() == tidepool_core::Key::from("n").encode().unwrap()
    });
    let victim = victim.expect("n has a snapshot");
    ok(raw_put(&name, "_tp_snapshots", &victim, &Uint8Array::from(&b"not automerge"[..]).into())).await;

    let db = open(todos_options(&name)).await;
    // Reads come from the plain store and still work.
    assert_same(&ok(db.get("notes".into(), "n".into())).await, &json(r#"{"count": 1}"#));
    assert_eq!(err(db.increment("notes".into(), "n".into(), "count".into(), 1.0)).await, "corrupt_document");
    let quarantined = raw_all(&name, "_tp_quarantine").await;
    assert_eq!(quarantined.length(), 1);
    let entry = quarantined.get(0);
    assert_eq!(Uint8Array::new(&get(&entry, "snapshot")).to_vec(), b"not automerge");
    assert!(get(&entry, "reason").as_string().unwrap().contains("snapshot"));
    // Other records are untouched.
    ok(db.increment("notes".into(), "m".into(), "count".into(), 1.0)).await;
    assert_eq!(get(&ok(db.get("notes".into(), "m".into())).await, "count").as_f64(), Some(6.0));
    ok(db.close()).await;
}

#[wasm_bindgen_test]
async fn a_change_too_large_to_sync_is_kept_locally_and_reported() {
    let name = unique("large");
    let db = open(todos_options(&name)).await;
    let value = js_sys::Object::new();
    set(&value, "blob", Uint8Array::new_with_length(5 * 1024 * 1024));
    ok(db.put("notes".into(), "big".into(), value.into())).await;
    // The engine refuses to push a change larger than a push may be: it stays local, leaves the
    // outbox at once (it could never be acknowledged) and the status says why.
    let status = db.status();
    assert_eq!(get(&status, "pending").as_f64(), Some(0.0), "{}", stringify(&status));
    assert_eq!(get(&get(&status, "error"), "code").as_string().as_deref(), Some("hub_too_large"));
    assert_eq!(raw_keys(&name, "_tp_outbox").await.length(), 0);
    let stored = ok(db.get("notes".into(), "big".into())).await;
    assert_eq!(Uint8Array::new(&get(&stored, "blob")).length(), 5 * 1024 * 1024);
    ok(db.close()).await;
}

async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = web_sys::window().unwrap().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Every change event `db` gets for `store`, as they come.
fn recorder(db: &Tidepool, store: &str) -> Array {
    let seen = Array::new();
    let sink = seen.clone();
    let callback = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        sink.push(&event);
    });
    db.subscribe(store.into(), callback.as_ref().unchecked_ref::<js_sys::Function>().clone()).unwrap();
    callback.forget();
    seen
}

/// Waits (polling, up to 10 s) until some recorded event carries `key` with `value`.
async fn heard(seen: &Array, key: &JsValue, value: &JsValue) {
    let start = js_sys::Date::now();
    while js_sys::Date::now() - start < 10_000.0 {
        let found = seen.iter().any(|e| {
            get(&e, "changes").unchecked_into::<Array>().iter().any(|c| deep_equal(&get(&c, "key"), key) && deep_equal(&get(&c, "value"), value))
        });
        if found {
            return;
        }
        sleep(10).await;
    }
    panic!("no change event with {} = {} among {}", stringify(key), stringify(value), stringify(seen));
}

async fn until_leader(db: &Tidepool) {
    let start = js_sys::Date::now();
    while get(&db.status(), "leader").as_bool() != Some(true) {
        assert!(js_sys::Date::now() - start < 10_000.0, "no takeover: {}", stringify(&db.status()));
        sleep(10).await;
    }
}

/// Two instances of one database (as two tabs have) both open at once, read and write it, and
/// hear each other's writes; when the leading one closes, the other leads.
#[wasm_bindgen_test]
async fn two_instances_of_a_database_share_it() {
    let name = unique("tabs");
    let first = open(todos_options(&name)).await;
    let second = open(todos_options(&name)).await;
    assert_eq!(get(&first.status(), "leader").as_bool(), Some(true));
    assert_eq!(get(&second.status(), "leader").as_bool(), Some(false));
    let (heard_by_first, heard_by_second) = (recorder(&first, "notes"), recorder(&second, "notes"));

    ok(first.put("notes".into(), 1.into(), json(r#"{"by": "first", "n": 1}"#))).await;
    heard(&heard_by_second, &1.into(), &json(r#"{"by": "first", "n": 1}"#)).await;
    assert_same(&ok(second.get("notes".into(), 1.into())).await, &json(r#"{"by": "first", "n": 1}"#));
    // Edits of one record from both sides, each on top of the other's.
    ok(second.update("notes".into(), 1.into(), json(r#"{"second": true}"#))).await;
    ok(first.update("notes".into(), 1.into(), json(r#"{"n": 2}"#))).await;
    ok(second.increment("notes".into(), 1.into(), "n".into(), 5.0)).await;
    let expected = json(r#"{"by": "first", "n": 7, "second": true}"#);
    heard(&heard_by_first, &1.into(), &expected).await;
    assert_same(&ok(first.get("notes".into(), 1.into())).await, &expected);
    // Many interleaved writes: segment numbers never collide, nothing is lost.
    let mut writes = Vec::new();
    for i in 0..40 {
        let db = if i % 2 == 0 { &first } else { &second };
        writes.push(wait(db.put("todos".into(), i.into(), todo(i, i % 3 == 0, "ann"))));
    }
    for w in writes {
        w.await.expect("a write from either instance succeeds");
    }
    ok(second.bulk_put("todos".into(), (40..60).map(|i| JsValue::from(Array::of2(&i.into(), &todo(i, false, "bob")))).collect::<Array>().into())).await;
    for db in [&first, &second] {
        assert_eq!(ok(db.get_all("todos".into(), None, None)).await.unchecked_into::<Array>().length(), 60);
        assert_consistent(db, "todos").await;
        assert_consistent(db, "notes").await;
    }

    ok(first.close()).await;
    until_leader(&second).await;
    ok(second.put("notes".into(), 2.into(), 2.into())).await;
    ok(second.compact()).await;
    assert_consistent(&second, "todos").await;
    ok(second.close()).await;
    let again = open(todos_options(&name)).await;
    assert_same(&ok(again.get("notes".into(), 1.into())).await, &expected);
    assert_eq!(ok(again.get_all("todos".into(), None, None)).await.unchecked_into::<Array>().length(), 60);
    assert_consistent(&again, "notes").await;
    ok(again.close()).await;
}

/// A follower that closes leaves the queue for the lead: when the leader closes, a follower that
/// is still open leads, and the closed one stays closed.
#[wasm_bindgen_test]
async fn a_closed_follower_does_not_take_the_lead() {
    let name = unique("tabs-closed");
    let leader = open(todos_options(&name)).await;
    let closed = open(todos_options(&name)).await;
    let open_one = open(todos_options(&name)).await;
    ok(closed.close()).await;
    ok(leader.close()).await;
    until_leader(&open_one).await;
    assert_eq!(get(&closed.status(), "leader").as_bool(), Some(false));
    assert_eq!(err(closed.put("notes".into(), 1.into(), 1.into())).await, "closed");
    ok(open_one.put("notes".into(), 1.into(), 1.into())).await;
    ok(open_one.close()).await;
}

/// The leader compacts away segments a follower wrote, while the follower keeps documents of
/// them in memory: the follower rereads storage before its next write, and both stay consistent.
#[wasm_bindgen_test]
async fn a_follower_writes_on_top_of_the_leaders_compaction() {
    let name = unique("tabs-compact");
    let leader = open(todos_options(&name)).await;
    let follower = open(todos_options(&name)).await;
    for i in 0..30 {
        ok(follower.put("notes".into(), (i % 5).into(), json(&format!(r#"{{"v": {i}}}"#)))).await;
        ok(leader.update("notes".into(), (i % 5).into(), json(&format!(r#"{{"w": {i}}}"#)))).await;
    }
    ok(leader.compact()).await;
    for i in 0..5 {
        ok(follower.update("notes".into(), i.into(), json(r#"{"last": "follower"}"#))).await;
    }
    ok(follower.compact()).await;
    ok(leader.update("notes".into(), 0.into(), json(r#"{"last": "leader"}"#))).await;
    for db in [&leader, &follower] {
        assert_consistent(db, "notes").await;
    }
    assert_same(&ok(follower.get("notes".into(), 0.into())).await, &json(r#"{"v": 25, "w": 25, "last": "leader"}"#));
    assert_same(&ok(leader.get("notes".into(), 4.into())).await, &json(r#"{"v": 29, "w": 29, "last": "follower"}"#));
    ok(leader.close()).await;
    ok(follower.close()).await;
}

#[wasm_bindgen_test]
async fn declaring_a_new_index_upgrades_the_database() {
    let name = unique("upgrade");
    let db = open_json(&format!(r#"{{"name": "{name}", "stores": ["items"]}}"#)).await;
    ok(db.put("items".into(), 1.into(), json(r#"{"color": "red"}"#))).await;
    ok(db.put("items".into(), 2.into(), json(r#"{"color": "blue"}"#))).await;
    ok(db.close()).await;
    let db = open_json(&format!(
        r#"{{"name": "{name}", "stores": [{{"name": "items", "indexes": [{{"name": "byColor", "keyPath": "color"}}]}}, "more"]}}"#
    ))
    .await;
    let red: Array = ok(db.query("items".into(), "byColor".into(), Some("red".into()), None)).await.unchecked_into();
    assert_eq!(red.length(), 1, "the new index covers records written before it existed");
    ok(db.put("more".into(), 1.into(), 1.into())).await;
    ok(db.close()).await;
    let names: Array = ok(raw_index_names(&name, "items")).await.unchecked_into();
    assert_eq!(names.length(), 1);
    // Dropping the index from the declaration removes it; the data stays.
    let db = open_json(&format!(r#"{{"name": "{name}", "stores": ["items"]}}"#)).await;
    assert_eq!(ok(db.get_all("items".into(), None, None)).await.unchecked_into::<Array>().length(), 2);
    ok(db.close()).await;
    let names: Array = ok(raw_index_names(&name, "items")).await.unchecked_into();
    assert_eq!(names.length(), 0);
    ok(Tidepool::delete_database(name.clone())).await;
}
