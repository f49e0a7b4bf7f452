//! The browser client against a real hub (started by `make test-wasm`, its URL baked in at
//! compile time): offline edits on two clients converge, events carry their origin, the outbox
//! survives reopening, a refused token is reported, a quarantined document comes back.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;

use common::*;
use futures_channel::mpsc;
use futures_util::StreamExt;
use js_sys::{Array, Uint8Array};
use tidepool_core::automerge::ActorId;
use tidepool_core::sync::{ClientConfig, ClientEngine, MemoryClientDocs};
use tidepool_core::wire::{Payload, PeerId};
use tidepool_core::{Key, StoreRef, Value, WriteBack, WriteMode};
use tidepool_wasm::Tidepool;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn hub() -> &'static str {
    match option_env!("TIDEPOOL_HUB_URL") {
        Some(url) => url,
        None => panic!("TIDEPOOL_HUB_URL is set by `make test-wasm`, which starts a hub"),
    }
}

fn client(db: &str, local: &str, online: bool) -> JsValue {
    json(&format!(
        r#"{{"name": "{db}", "localName": "{local}", "hub": "{}", "online": {online},
            "stores": [{{"name": "todos", "indexes": [{{"name": "byOwner", "keyPath": "owner"}}]}}, "notes"]}}"#,
        hub()
    ))
}

async fn synced(db: &Tidepool) {
    if let Err(e) = wait(db.when_synced(Some(15_000))).await {
        panic!("not synced: {} (status {})", describe(&e), stringify(&db.status()));
    }
}

/// Polls until `check` holds (sync is asynchronous on the receiving side), or fails after 60 s
/// (a loaded machine can be slow; a pass returns as soon as it holds).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = js_sys::Date::now();
    while js_sys::Date::now() - start < 60_000.0 {
        if check().await {
            return;
        }
        sleep(50).await;
    }
    panic!("timed out waiting until {what}");
}

async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = web_sys::window().unwrap().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

fn recorder(db: &Tidepool, store: &str) -> (Array, Closure<dyn FnMut(JsValue)>) {
    let seen = Array::new();
    let sink = seen.clone();
    let callback = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        sink.push(&event);
    });
    db.subscribe(store.into(), callback.as_ref().unchecked_ref::<js_sys::Function>().clone()).unwrap();
    (seen, callback)
}

/// Origins of the recorded events that touched `key`.
fn origins_for(seen: &Array, key: &str) -> Vec<String> {
    seen.iter()
        .filter(|e| get(e, "changes").unchecked_into::<Array>().iter().any(|c| get(&c, "key").as_string().as_deref() == Some(key)))
        .map(|e| get(&e, "origin").as_string().unwrap())
        .collect()
}

#[wasm_bindgen_test]
async fn offline_edits_on_two_clients_converge() {
    let db = unique("converge");
    let a = open(client(&db, &format!("{db}-a"), true)).await;
    let b = open(client(&db, &format!("{db}-b"), true)).await;
    let (seen_a, _keep_a) = recorder(&a, "todos");
    let (seen_b, _keep_b) = recorder(&b, "todos");
    // A record both know, with a counter both know.
    ok(a.put("todos".into(), "shared".into(), json(r#"{"title": "milk", "likes": 0}"#))).await;
    ok(a.increment("todos".into(), "shared".into(), "likes".into(), 1.0)).await;
    synced(&a).await;
    eventually("b has the shared record", || async { !ok(b.get("todos".into(), "shared".into())).await.is_undefined() }).await;

    a.set_online(false).unwrap();
    b.set_online(false).unwrap();
    eventually("both are offline", || async {
        [&a, &b].iter().all(|c| get(&c.status(), "connection").as_string().as_deref() == Some("offline"))
    })
    .await;
    // Offline: different fields of the same record, the same counter, the same field, a record each.
    ok(a.put("todos".into(), "shared".into(), json(r#"{"title": "milk", "owner": "ann", "likes": 1}"#))).await;
    ok(b.put("todos".into(), "shared".into(), json(r#"{"title": "milk", "due": "friday", "likes": 1}"#))).await;
    ok(a.increment("todos".into(), "shared".into(), "likes".into(), 2.0)).await;
    ok(b.increment("todos".into(), "shared".into(), "likes".into(), 3.0)).await;
    ok(a.put("todos".into(), "contested".into(), json(r#"{"title": "from a"}"#))).await;
    ok(b.put("todos".into(), "contested".into(), json(r#"{"title": "from b"}"#))).await;
    ok(a.put("todos".into(), "only-a".into(), json(r#"{"owner": "ann"}"#))).await;
    ok(b.put("todos".into(), "only-b".into(), json(r#"{"owner": "bob"}"#))).await;
    ok(b.put("notes".into(), "n".into(), json(r#"{"text": "draft"}"#))).await;
    assert_eq!(get(&a.status(), "pending").as_f64(), Some(4.0));

    a.set_online(true).unwrap();
    b.set_online(true).unwrap();
    synced(&a).await;
    synced(&b).await;
    let expected = json(r#"{"title": "milk", "owner": "ann", "due": "friday", "likes": 6}"#);
    let converged = || async {
        let (all_a, all_b) = (ok(a.get_all("todos".into(), None, None)).await, ok(b.get_all("todos".into(), None, None)).await);
        all_a.unchecked_ref::<Array>().length() == 4 && deep_equal(&all_a, &all_b)
    };
    let start = js_sys::Date::now();
    while !converged().await {
        if js_sys::Date::now() - start > 60_000.0 {
            let (all_a, all_b) = (ok(a.get_all("todos".into(), None, None)).await, ok(b.get_all("todos".into(), None, None)).await);
            panic!("no convergence: a has {} and b has {}", stringify(&all_a), stringify(&all_b));
        }
        sleep(50).await;
    }
    for client in [&a, &b] {
        assert_same(&ok(client.get("todos".into(), "shared".into())).await, &expected);
        let title = get(&ok(client.get("todos".into(), "contested".into())).await, "title").as_string().unwrap();
        assert!(title == "from a" || title == "from b", "{title}");
        assert_consistent(client, "todos").await;
        let owned: Array = ok(client.query("todos".into(), "byOwner".into(), Some("ann".into()), None)).await.unchecked_into();
        assert_eq!(owned.length(), 2, "indexes cover records that arrived from the hub");
    }
    assert_same(&ok(a.get("notes".into(), "n".into())).await, &json(r#"{"text": "draft"}"#));
    assert_eq!(get(&a.status(), "pending").as_f64(), Some(0.0));

    assert_eq!(origins_for(&seen_a, "only-a"), ["local"]);
    assert_eq!(origins_for(&seen_a, "only-b"), ["remote"]);
    assert_eq!(origins_for(&seen_b, "only-a"), ["remote"]);
    assert!(origins_for(&seen_a, "shared").contains(&"remote".to_string()));

    // Live: with both online, a delete reaches the other side as a remote event.
    ok(a.delete("todos".into(), "only-b".into())).await;
    eventually("b sees a's delete", || async { ok(b.get("todos".into(), "only-b".into())).await.is_undefined() }).await;
    let last = seen_b.get(seen_b.length() - 1);
    assert_eq!(get(&last, "origin").as_string().as_deref(), Some("remote"));
    assert_eq!(get(&get(&last, "changes").unchecked_into::<Array>().get(0), "type").as_string().as_deref(), Some("delete"));
    ok(a.close()).await;
    ok(b.close()).await;
}

/// The read-modify-put race `update` removes: each client changes its own field of a record
/// while the other's change is in flight, and both fields survive on both.
#[wasm_bindgen_test]
async fn concurrent_updates_of_different_fields_both_survive() {
    let db = unique("update");
    let a = open(client(&db, &format!("{db}-a"), true)).await;
    let b = open(client(&db, &format!("{db}-b"), true)).await;
    ok(a.put("todos".into(), "t".into(), json(r#"{"title": "milk", "done": false, "meta": {"by": "ann"}}"#))).await;
    synced(&a).await;
    eventually("b has the record", || async { !ok(b.get("todos".into(), "t".into())).await.is_undefined() }).await;
    for round in 0..10 {
        let a_change = json(&format!(r#"{{"done": {}, "meta": {{"round": {round}}}}}"#, round % 2 == 0));
        let b_change = json(&format!(r#"{{"title": "milk {round}", "meta": {{"by": "bob {round}"}}}}"#));
        // Both in flight at once: neither waits for the other's change.
        let (pa, pb) = (a.update("todos".into(), "t".into(), a_change), b.update("todos".into(), "t".into(), b_change));
        ok(pa).await;
        ok(pb).await;
    }
    synced(&a).await;
    synced(&b).await;
    let expected = json(r#"{"title": "milk 9", "done": false, "meta": {"by": "bob 9", "round": 9}}"#);
    for (name, c) in [("a", &a), ("b", &b)] {
        eventually(&format!("{name} has both clients' fields"), || async { deep_equal(&ok(c.get("todos".into(), "t".into())).await, &expected) }).await;
    }
    ok(a.close()).await;
    ok(b.close()).await;
}

#[wasm_bindgen_test]
async fn the_outbox_survives_closing_and_reopening() {
    let db = unique("outbox");
    let local = format!("{db}-a");
    let a = open(client(&db, &local, false)).await;
    let entries: Array = (0..50).map(|i| JsValue::from(Array::of2(&(i as f64).into(), &json(&format!(r#"{{"n": {i}}}"#))))).collect();
    ok(a.bulk_put("todos".into(), entries.into())).await;
    ok(a.put("notes".into(), "x".into(), 1.into())).await;
    assert_eq!(get(&a.status(), "pending").as_f64(), Some(51.0));
    ok(a.close()).await;
    assert_eq!(raw_keys(&local, "_tp_outbox").await.length(), 2);

    let a = open(client(&db, &local, true)).await;
    assert_eq!(get(&a.status(), "pending").as_f64(), Some(51.0));
    synced(&a).await;
    assert_eq!(get(&a.status(), "pending").as_f64(), Some(0.0));
    assert_eq!(raw_keys(&local, "_tp_outbox").await.length(), 0, "acknowledged rows are deleted");
    ok(a.close()).await;

    // A brand-new device gets everything in one catch-up.
    let c = open(client(&db, &format!("{db}-c"), true)).await;
    synced(&c).await;
    assert_eq!(ok(c.get_all("todos".into(), None, None)).await.unchecked_into::<Array>().length(), 50);
    assert_eq!(ok(c.get("notes".into(), "x".into())).await.as_f64(), Some(1.0));
    assert_consistent(&c, "todos").await;
    ok(c.close()).await;
}

#[wasm_bindgen_test]
async fn going_offline_and_back_resumes_from_the_cursor() {
    let db = unique("resume");
    let a = open(client(&db, &format!("{db}-a"), true)).await;
    let b = open(client(&db, &format!("{db}-b"), true)).await;
    let statuses = Array::new();
    let sink = statuses.clone();
    let on_status = Closure::<dyn FnMut(JsValue)>::new(move |status: JsValue| {
        sink.push(&status);
    });
    b.on_status(on_status.as_ref().unchecked_ref::<js_sys::Function>().clone());
    synced(&a).await;
    synced(&b).await;
    b.set_online(false).unwrap();
    eventually("b is offline", || async { get(&b.status(), "connection").as_string().as_deref() == Some("offline") }).await;
    for i in 0..5 {
        ok(a.put("todos".into(), (i as f64).into(), json(&format!(r#"{{"n": {i}}}"#)))).await;
    }
    synced(&a).await;
    ok(b.put("todos".into(), 100.into(), json(r#"{"n": 100}"#))).await;
    b.set_online(true).unwrap();
    synced(&b).await;
    eventually("both see six records", || async {
        ok(a.get_all("todos".into(), None, None)).await.unchecked_into::<Array>().length() == 6
            && ok(b.get_all("todos".into(), None, None)).await.unchecked_into::<Array>().length() == 6
    })
    .await;
    // Status events told the app about each step: online, offline with a pending change, synced.
    let seen: Vec<(String, f64, bool)> = statuses
        .iter()
        .map(|s| (get(&s, "connection").as_string().unwrap(), get(&s, "pending").as_f64().unwrap(), get(&s, "synced").as_bool().unwrap()))
        .collect();
    assert!(seen.iter().any(|(c, _, synced)| c == "online" && *synced), "{seen:?}");
    assert!(seen.iter().any(|(c, pending, _)| c == "offline" && *pending == 1.0), "{seen:?}");
    assert_eq!(seen.last().map(|(c, p, synced)| (c.as_str(), *p, *synced)), Some(("online", 0.0, true)), "{seen:?}");
    ok(a.close()).await;
    ok(b.close()).await;
}

#[wasm_bindgen_test]
async fn a_quarantined_document_is_fetched_again_from_the_hub() {
    let db = unique("refetch");
    let local = format!("{db}-a");
    let a = open(client(&db, &local, true)).await;
    ok(a.put("notes".into(), "n".into(), json(r#"{"count": 1, "text": "kept by the hub"}"#))).await;
    synced(&a).await;
    ok(a.compact()).await;
    ok(a.close()).await;
    let keys = raw_keys(&local, "_tp_snapshots").await;
    let victim = keys.iter().find(|k| Uint8Array::new(&k.unchecked_ref::<Array>().get(1)).to_vec() == Key::from("n").encode().unwrap());
    ok(raw_put(&local, "_tp_snapshots", &victim.expect("a snapshot of n"), &Uint8Array::from(&[1u8, 2, 3][..]).into())).await;

    let a = open(client(&db, &local, true)).await;
    synced(&a).await;
    assert_eq!(err(a.increment("notes".into(), "n".into(), "count".into(), 1.0)).await, "corrupt_document");
    // The store was resubscribed from scratch: the hub's copy merges back into the rebuilt record.
    synced(&a).await;
    eventually("the record can be edited again", || async { wait(a.increment("notes".into(), "n".into(), "count".into(), 1.0)).await.is_ok() }).await;
    assert_same(&ok(a.get("notes".into(), "n".into())).await, &json(r#"{"count": 2, "text": "kept by the hub"}"#));
    assert_eq!(raw_all(&local, "_tp_quarantine").await.length(), 1);
    synced(&a).await;
    assert_consistent(&a, "notes").await;
    ok(a.close()).await;
}

#[wasm_bindgen_test]
async fn a_refused_token_is_reported_as_auth_rejected() {
    let (Some(url), Some(token)) = (option_env!("TIDEPOOL_AUTH_HUB_URL"), option_env!("TIDEPOOL_AUTH_TOKEN")) else {
        panic!("TIDEPOOL_AUTH_HUB_URL and TIDEPOOL_AUTH_TOKEN are set by `make test-wasm`");
    };
    let db = unique("auth");
    let options = |local: &str, token: &str| json(&format!(r#"{{"name": "{db}", "localName": "{local}", "hub": "{url}", "token": "{token}", "stores": ["notes"]}}"#));
    let bad = open(options(&format!("{db}-bad"), "not-a-token")).await;
    ok(bad.put("notes".into(), "k".into(), 1.into())).await;
    assert_eq!(err(bad.when_synced(Some(15_000))).await, "auth_rejected");
    let error = get(&bad.status(), "error");
    assert_eq!(get(&error, "code").as_string().as_deref(), Some("auth_rejected"));
    assert_eq!(get(&bad.status(), "pending").as_f64(), Some(1.0), "refused changes stay in the outbox");
    ok(bad.close()).await;

    let good = open(options(&format!("{db}-good"), token)).await;
    ok(good.put("notes".into(), "k".into(), 2.into())).await;
    synced(&good).await;
    ok(good.close()).await;
}

#[wasm_bindgen_test]
async fn a_hub_that_lost_its_storage_is_repaired_from_the_client() {
    let (Some(other_hub), Some(token)) = (option_env!("TIDEPOOL_AUTH_HUB_URL"), option_env!("TIDEPOOL_AUTH_TOKEN")) else {
        panic!("TIDEPOOL_AUTH_HUB_URL and TIDEPOOL_AUTH_TOKEN are set by `make test-wasm`");
    };
    let db = unique("repair");
    let local = format!("{db}-a");
    let a = open(client(&db, &local, true)).await;
    let entries: Array = (0..30).map(|i| JsValue::from(Array::of2(&(i as f64).into(), &json(&format!(r#"{{"n": {i}, "owner": "ann"}}"#))))).collect();
    ok(a.bulk_put("todos".into(), entries.into())).await;
    synced(&a).await;
    ok(a.close()).await;

    // The same device now meets a hub with other storage (a restore, a new deployment): its
    // cursor is of another epoch, so the hub lists heads and the client offers what it has.
    let moved = |local: &str| {
        json(&format!(r#"{{"name": "{db}", "localName": "{local}", "hub": "{other_hub}", "token": "{token}", "stores": [{{"name": "todos", "indexes": []}}, "notes"]}}"#))
    };
    let a = open(moved(&local)).await;
    synced(&a).await;
    ok(a.put("todos".into(), 99.into(), json(r#"{"n": 99}"#))).await;
    synced(&a).await;
    let b = open(moved(&format!("{db}-b"))).await;
    synced(&b).await;
    eventually("the new hub has every record", || async {
        ok(b.get_all("todos".into(), None, None)).await.unchecked_into::<Array>().length() == 31
    })
    .await;
    assert_same(&ok(b.get("todos".into(), 7.into())).await, &json(r#"{"n": 7, "owner": "ann"}"#));
    assert_consistent(&b, "todos").await;
    ok(a.close()).await;
    ok(b.close()).await;
}

/// A write-back as the bridge makes it: a deterministic change on the record's heads, pushed
/// through the hub by a separate engine over its own WebSocket.
async fn write_back(db: &str, store: &str, key: &str, fields: BTreeMap<String, Value>) {
    let store_ref = StoreRef::new(db, store);
    let mut docs = MemoryClientDocs::new(ActorId::from([9u8; 16]));
    let mut engine = ClientEngine::new(ClientConfig::new(PeerId([0x42; 16]), ""));
    engine.subscribe(store_ref.clone(), None);
    let ws = web_sys::WebSocket::new(hub()).unwrap();
    ws.set_binary_type(web_sys::BinaryType::Arraybuffer);
    let (tx, mut rx) = mpsc::unbounded::<Option<Vec<u8>>>();
    let opened = tx.clone();
    let on_open = Closure::<dyn FnMut()>::new(move || {
        let _ = opened.unbounded_send(None);
    });
    let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
        let _ = tx.unbounded_send(Some(Uint8Array::new(&e.data()).to_vec()));
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    assert_eq!(rx.next().await, Some(None), "the bridge's socket opens");
    engine.connected();
    let mut pushed = false;
    loop {
        for frame in engine.take_output().frames {
            ws.send_with_u8_array(&frame).unwrap();
        }
        if engine.is_idle() && !pushed {
            let record = docs.record_for(&store_ref, &Key::from(key)).unwrap();
            let heads = record.heads();
            let change = WriteBack::new("scores", "run-1").change(record, &heads, &fields, WriteMode::Fields).unwrap().unwrap();
            record.apply(&Payload::Changes(vec![change.bytes.clone()])).unwrap();
            let (doc, encoded) = (record.id(), record.encoded_key().to_vec());
            engine.enqueue(1, store_ref.clone(), doc, encoded, change.bytes);
            pushed = true;
            continue;
        }
        if pushed && engine.pending() == 0 {
            break;
        }
        let frame = rx.next().await.flatten().expect("the hub answers");
        engine.receive(&frame, &mut docs).unwrap();
    }
    ws.close().unwrap();
}

#[wasm_bindgen_test]
async fn a_write_back_arrives_as_an_analytics_event() {
    let db = unique("analytics");
    let a = open(client(&db, &format!("{db}-a"), true)).await;
    let (seen, _keep) = recorder(&a, "todos");
    ok(a.put("todos".into(), "r".into(), json(r#"{"title": "report", "owner": "ann"}"#))).await;
    synced(&a).await;
    write_back(&db, "todos", "r", [("score".to_string(), Value::Int(7))].into()).await;
    eventually("the score arrives", || async { get(&ok(a.get("todos".into(), "r".into())).await, "score").as_f64() == Some(7.0) }).await;
    assert_eq!(origins_for(&seen, "r"), ["local", "analytics"]);
    // An ordinary edit after it is local again and keeps the analytics field.
    ok(a.put("todos".into(), "r".into(), json(r#"{"title": "report v2", "owner": "ann", "score": 7}"#))).await;
    assert_eq!(origins_for(&seen, "r"), ["local", "analytics", "local"]);
    assert_consistent(&a, "todos").await;
    ok(a.close()).await;
}

/// Two instances of one local database (as two tabs have) sync through the one that leads:
/// the other's writes reach the hub, the hub's changes reach both, and both report the leader's
/// status. When the leader closes in the middle of a burst of writes, the other leads and every
/// write arrives.
#[wasm_bindgen_test]
async fn the_tabs_of_one_database_sync_through_their_leader() {
    let db = unique("tabs");
    let local = format!("{db}-a");
    let leader = open(client(&db, &local, true)).await;
    let follower = open(client(&db, &local, true)).await;
    let other = open(client(&db, &format!("{db}-c"), true)).await;
    assert_eq!(get(&leader.status(), "leader").as_bool(), Some(true));
    assert_eq!(get(&follower.status(), "leader").as_bool(), Some(false));
    let (seen_by_follower, _keep) = recorder(&follower, "notes");

    ok(follower.put("notes".into(), "f1".into(), 1.into())).await;
    ok(leader.put("notes".into(), "l1".into(), 2.into())).await;
    // The follower is synced only once the leader pushed its write and the hub acknowledged it.
    synced(&follower).await;
    synced(&leader).await;
    let status = follower.status();
    assert_eq!(get(&status, "connection").as_string().as_deref(), Some("online"), "{}", stringify(&status));
    assert_eq!(get(&status, "pending").as_f64(), Some(0.0));
    assert_eq!(raw_keys(&local, "_tp_outbox").await.length(), 0, "every row acknowledged and deleted");
    eventually("the other device has both writes", || async {
        ok(other.get("notes".into(), "f1".into())).await.as_f64() == Some(1.0) && ok(other.get("notes".into(), "l1".into())).await.as_f64() == Some(2.0)
    })
    .await;

    ok(other.put("notes".into(), "c1".into(), 3.into())).await;
    eventually("the follower hears the other device's write", || {
        let heard = origins_for(&seen_by_follower, "c1").contains(&"remote".to_string());
        async move { heard }
    })
    .await;
    assert_eq!(ok(follower.get("notes".into(), "c1".into())).await.as_f64(), Some(3.0));

    // Offline while the burst starts, so the leader surely has unsent rows when it closes.
    leader.set_online(false).unwrap();
    let burst: Vec<js_sys::Promise> = (0..60).map(|i| follower.put("todos".into(), i.into(), json(&format!(r#"{{"n": {i}}}"#)))).collect();
    let mut burst = burst.into_iter();
    for write in burst.by_ref().take(20) {
        ok(write).await;
    }
    follower.set_online(true).unwrap();
    ok(leader.close()).await;
    for write in burst {
        ok(write).await;
    }
    synced(&follower).await;
    assert_eq!(get(&follower.status(), "leader").as_bool(), Some(true));
    eventually("the other device has the whole burst", || async { ok(other.get_all("todos".into(), None, None)).await.unchecked_into::<Array>().length() == 60 }).await;
    assert_consistent(&other, "todos").await;
    assert_consistent(&follower, "todos").await;
    ok(follower.close()).await;
    ok(other.close()).await;
}
