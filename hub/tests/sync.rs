//! Clients converging through the real hub binary: two and many clients, long offline edits,
//! late joiners, compacted logs, plus the HTTP endpoints, the CLI and graceful shutdown.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rand::Rng;
use tidepool_core::wire::ErrorCode;
use tidepool_core::{Key, StoreRef, Value, object};
use tidepool_client::{ChangeState, Client, ClientOptions, converge};
use tidepool_json::{key_to_json, value_to_json};

const WAIT: Duration = Duration::from_secs(30);

fn store() -> StoreRef {
    StoreRef::new("app", "todos")
}

fn client(hub: &HubProcess, token: &str) -> Arc<Client> {
    let c = Arc::new(Client::connect(ClientOptions::new(hub.url(), token)));
    c.subscribe(store());
    c
}

/// A client's records in the JSON form `dump` prints, by key.
fn as_json(values: Vec<(Vec<u8>, Value)>) -> BTreeMap<String, serde_json::Value> {
    values
        .into_iter()
        .map(|(k, v)| (key_to_json(&Key::decode(&k).expect("key")).to_string(), value_to_json(&v)))
        .collect()
}

fn dumped(hub: &HubProcess, store: &StoreRef) -> BTreeMap<String, serde_json::Value> {
    dump(&hub.data, &store.db, &store.store)
        .into_iter()
        .map(|line| (line["key"].to_string(), line["value"].clone()))
        .collect()
}

/// A client that merges lazily hears of every change by hash as it arrives, reads every one of
/// them, and writes on top of them: its own edit keeps the other client's field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazily_merging_client_sees_and_builds_on_every_change() {
    let dir = TestDir::new();
    let hub = dir.start(&[]);
    let token = full_token("app");
    let eager = client(&hub, &token);
    let mut options = ClientOptions::new(hub.url(), token.as_str());
    options.lazy_merge = true;
    let lazy = Arc::new(Client::connect(options));
    lazy.subscribe(store());
    eager.wait_idle(WAIT).await.expect("eager idle");
    lazy.wait_idle(WAIT).await.expect("lazy idle");
    let mut heard = lazy.remote_changes();

    let key = Key::from("t1");
    let mut written = Vec::new();
    for n in 1..=3i64 {
        let patch = tidepool_core::Patch::new().set("n", Value::Int(n));
        let (id, hash) = eager.update_hashed(&store(), &key, &patch).expect("update").expect("a change");
        assert_eq!(eager.wait_acked(id, WAIT).await.expect("ack"), ChangeState::Acked);
        written.push(hash);
    }
    let mut arrived = Vec::new();
    while arrived.len() < written.len() {
        let change = tokio::time::timeout(WAIT, heard.recv()).await.expect("a change event").expect("event");
        assert_eq!(change.value, None, "a lazy client reads no value on arrival");
        arrived.extend(change.changes);
    }
    assert_eq!(arrived, written, "every change, by the hash its author got");
    assert_eq!(lazy.get(&store(), &key).expect("get"), Some(object! { "n" => 3i64 }));

    // A change that arrived and was not read yet: the lazy client's write depends on it, so the
    // record has one head (its own change), not two concurrent ones.
    let (id, fourth) =
        eager.update_hashed(&store(), &key, &tidepool_core::Patch::new().set("n", Value::Int(4))).expect("update").expect("a change");
    eager.wait_acked(id, WAIT).await.expect("ack");
    let change = tokio::time::timeout(WAIT, heard.recv()).await.expect("a change event").expect("event");
    assert_eq!(change.changes, vec![fourth]);
    let later = tidepool_core::Patch::new().set("m", Value::Int(1));
    let (_, own) = lazy.update_hashed(&store(), &key, &later).expect("update").expect("a change");
    let mut record = lazy.records(&store()).into_iter().next().expect("the record");
    assert_eq!(record.heads(), vec![own], "the write built on the change that had arrived");
    assert!(converge(&[eager.clone(), lazy.clone()], &store(), WAIT).await);
    assert_eq!(eager.get(&store(), &key).expect("get"), Some(object! { "n" => 4i64, "m" => 1i64 }));
    assert_eq!(dumped(&hub, &store()), as_json(lazy.values(&store())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_converge_through_the_hub() {
    let dir = TestDir::new();
    let hub = dir.start(&[]);
    let token = full_token("app");
    let (a, b) = (client(&hub, &token), client(&hub, &token));
    a.wait_idle(WAIT).await.expect("a idle");
    b.wait_idle(WAIT).await.expect("b idle");

    let id = a.put(&store(), &Key::from("t1"), &object! { "title" => "milk", "done" => false }).expect("put");
    assert_eq!(a.wait_acked(id.expect("a change"), WAIT).await.expect("ack"), ChangeState::Acked);
    assert!(converge(&[a.clone(), b.clone()], &store(), WAIT).await, "b sees a's record");
    // Concurrent edits of different fields of the same record merge.
    a.put(&store(), &Key::from("t1"), &object! { "title" => "oat milk", "done" => false }).expect("put");
    b.put(&store(), &Key::from("t1"), &object! { "title" => "milk", "done" => true }).expect("put");
    b.put(&store(), &Key::from("t2"), &object! { "title" => "bread" }).expect("put");
    assert!(converge(&[a.clone(), b.clone()], &store(), WAIT).await, "clients converge");
    assert_eq!(
        a.get(&store(), &Key::from("t1")).expect("get"),
        Some(object! { "title" => "oat milk", "done" => true })
    );
    b.delete(&store(), &Key::from("t2")).expect("delete");
    assert!(converge(&[a.clone(), b.clone()], &store(), WAIT).await);
    assert_eq!(a.get(&store(), &Key::from("t2")).expect("get"), None);
    assert_eq!(dumped(&hub, &store()), as_json(a.values(&store())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_converge_and_match_the_dump() {
    let dir = TestDir::new();
    // A tiny cache makes the hub load, evict and snapshot documents all the time.
    let hub = dir.start(&["--cache-docs", "8"]);
    let token = full_token("app");
    let clients: Vec<Arc<Client>> = (0..8).map(|_| client(&hub, &token)).collect();
    for round in 0..25 {
        for (i, c) in clients.iter().enumerate() {
            let key = Key::String(format!("k{}", rand::rng().random_range(0..40)));
            if rand::rng().random_bool(0.1) {
                c.delete(&store(), &key).expect("delete");
            } else {
                let value = object! { format!("by{i}") => round as i64, "last" => i as i64 };
                c.put(&store(), &key, &value).expect("put");
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(converge(&clients, &store(), WAIT).await, "clients converge");
    let values = as_json(clients[0].values(&store()));
    assert!(!values.is_empty());
    assert_eq!(dumped(&hub, &store()), values);
    assert!(hub.metric("tidepool_snapshots_total") > 0.0, "evictions wrote snapshots");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_offline_client_with_many_edits_converges() {
    let dir = TestDir::new();
    let hub = dir.start(&[]);
    let token = full_token("app");
    let online = client(&hub, &token);
    let offline = client(&hub, &token);
    offline.wait_idle(WAIT).await.expect("idle");
    offline.set_online(false);
    for i in 0..600 {
        let key = Key::String(format!("k{}", i % 150));
        offline.put(&store(), &key, &object! { "offline" => i as i64 }).expect("put");
        if i % 3 == 0 {
            online.put(&store(), &key, &object! { "online" => i as i64 }).expect("put");
        }
    }
    online.wait_idle(WAIT).await.expect("online side done");
    assert!(offline.pending() > 0);
    offline.set_online(true);
    assert!(converge(&[online.clone(), offline.clone()], &store(), WAIT).await, "clients converge");
    assert_eq!(offline.pending(), 0);
    // Fields written on both sides while apart are both there.
    let merged = online.get(&store(), &Key::from("k0")).expect("get").expect("exists");
    let Value::Object(fields) = merged else { panic!("an object") };
    assert!(fields.contains_key("offline") && fields.contains_key("online"), "{fields:?}");
    assert_eq!(dumped(&hub, &store()).len(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiners_download_everything_and_reconnects_resume_from_the_cursor() {
    let dir = TestDir::new();
    let hub = dir.start(&[]);
    let token = full_token("app");
    let writer = client(&hub, &token);
    for i in 0..300 {
        writer.put(&store(), &Key::Number(i as f64), &object! { "n" => i as i64 }).expect("put");
    }
    writer.wait_idle(WAIT).await.expect("idle");
    let late = client(&hub, &token);
    late.wait_idle(WAIT).await.expect("late joiner synced");
    assert_eq!(late.values(&store()).len(), 300);
    let cursor = late.cursor(&store()).expect("cursor");

    late.set_online(false);
    for i in 0..50 {
        writer.put(&store(), &Key::Number(i as f64), &object! { "n" => -(i as i64) - 1 }).expect("put");
    }
    writer.wait_idle(WAIT).await.expect("idle");
    let sent_before = hub.metric("tidepool_bytes_out_total");
    late.set_online(true);
    assert!(converge(&[writer.clone(), late.clone()], &store(), WAIT).await);
    let catch_up = hub.metric("tidepool_bytes_out_total") - sent_before;
    assert!(late.cursor(&store()).expect("cursor").seq >= cursor.seq + 50);
    // Resuming from the cursor sends the 50 new changes, not the 300 documents again.
    assert!(catch_up < 50_000.0, "catch-up sent {catch_up} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_older_than_the_compacted_log_is_repaired() {
    let dir = TestDir::new();
    let hub = dir.start(&["--log-retention", "0s", "--compact-interval", "100ms"]);
    let token = full_token("app");
    let writer = client(&hub, &token);
    let reader = client(&hub, &token);
    reader.wait_idle(WAIT).await.expect("idle");
    reader.set_online(false);
    for i in 0..40 {
        writer.put(&store(), &Key::Number(i as f64), &object! { "v" => i as i64 }).expect("put");
    }
    reader.put(&store(), &Key::from("from-reader"), &object! { "offline" => true }).expect("put");
    writer.wait_idle(WAIT).await.expect("idle");
    // Wait for compaction to prune the log the reader would need.
    let deadline = std::time::Instant::now() + WAIT;
    while hub.metric("tidepool_snapshots_total") < 40.0 {
        assert!(std::time::Instant::now() < deadline, "compaction did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reader.set_online(true);
    assert!(converge(&[writer.clone(), reader.clone()], &store(), WAIT).await, "repair converges");
    assert_eq!(writer.values(&store()).len(), 41);
    assert_eq!(dumped(&hub, &store()).len(), 41);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_static_files_are_served() {
    let dir = TestDir::new();
    let site = dir.dir.path().join("site");
    std::fs::create_dir_all(&site).expect("mkdir");
    std::fs::write(site.join("index.html"), "<h1>tidepool</h1>").expect("write");
    let hub = dir.start(&["--static-dir", site.to_str().expect("utf-8")]);
    assert_eq!(hub.get("/healthz"), (200, "ok\n".into()));
    let (status, body) = hub.get("/index.html");
    assert_eq!((status, body.as_str()), (200, "<h1>tidepool</h1>"));
    assert_eq!(hub.get("/missing.js").0, 404);

    let c = client(&hub, &full_token("app"));
    c.put(&store(), &Key::from("x"), &object! { "a" => 1i64 }).expect("put");
    c.wait_idle(WAIT).await.expect("idle");
    let (status, text) = hub.get("/metrics");
    assert_eq!(status, 200);
    for name in [
        "tidepool_connections 1",
        "tidepool_changes_applied_total 1",
        "tidepool_storage_commit_seconds_count",
        "tidepool_errors_total{code=\"unauthorized\"} 0",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(hub.metric("tidepool_frames_in_total") >= 3.0);
    assert!(hub.metric("tidepool_bytes_out_total") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_tells_clients_and_keeps_every_acknowledged_change() {
    let dir = TestDir::new();
    let mut hub = dir.start(&[]);
    let token = full_token("app");
    let c = client(&hub, &token);
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.extend(c.put(&store(), &Key::Number(i as f64), &object! { "i" => i as i64 }).expect("put"));
    }
    c.wait_idle(WAIT).await.expect("idle");
    let mut raw_conn = authed(&hub.url(), &token).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = hub.terminate(Duration::from_secs(20));
        (hub, status)
    });
    expect_error(&mut raw_conn, ErrorCode::ShuttingDown).await;
    expect_closed(&mut raw_conn).await;
    let (hub, status) = status.await.expect("join");
    assert!(status.success(), "exit status {status:?}: {}", hub.log_text());
    assert_eq!(dump(&hub.data, "app", "todos").len(), 100);
}

#[test]
fn the_token_command_mints_tokens_the_hub_accepts_and_dump_maps_values_to_json() {
    let dir = TestDir::new();
    let out = std::process::Command::new(BIN)
        .args(["token", "--secret-file", dir.secret().to_str().expect("utf-8"), "--sub", "job", "--db", "app"])
        .args(["--read", "todos", "--write", "todos", "--ttl", "10m"])
        .output()
        .expect("token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).expect("utf-8").trim().to_owned();
    let claims = tidepool_hub::auth::JwtAuthorizer::new(SECRET.as_bytes()).verify(&token).expect("valid");
    assert_eq!(claims.grants.write.get("app"), Some(&vec!["todos".to_string()]));
    assert!(claims.exp - claims.iat == 600);

    let hub = dir.start(&[]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let c = client(&hub, &token);
        let value = object! {
            "when" => Value::Date(1_700_000_000_000),
            "blob" => Value::Bytes(vec![1, 2, 255]),
            "ratio" => 0.5,
            "tags" => Value::Array(vec!["a".into(), Value::Null]),
        };
        c.put(&store(), &Key::Array(vec![Key::from("list"), Key::Number(3.0)]), &value).expect("put");
        c.wait_idle(WAIT).await.expect("idle");
    });
    let lines = dump(&hub.data, "app", "todos");
    assert_eq!(
        lines,
        vec![serde_json::json!({
            "key": ["list", 3],
            "value": { "blob": { "$bytes": "AQL/" }, "ratio": 0.5, "tags": ["a", null], "when": { "$date": 1_700_000_000_000i64 } }
        })]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_file_the_hub_creates_one_and_only_insecure_dev_skips_tokens() {
    let dir = TestDir::new();
    let data = dir.dir.path().join("fresh");
    let hub = HubProcess::start(&data, &[]);
    let secret = data.join("secret");
    assert!(secret.exists(), "the secret was created in the data directory");
    assert!(hub.log_text().contains("tidepool-hub token --secret-file"), "{}", hub.log_text());
    let mut refused = raw(&hub.url()).await;
    send(&mut refused, hello("dev")).await;
    expect_error(&mut refused, ErrorCode::Unauthorized).await;
    let minted = std::process::Command::new(BIN)
        .args(["token", "--secret-file", secret.to_str().expect("utf-8"), "--sub", "me", "--db", "app", "--write", "*"])
        .output()
        .expect("token");
    let token = String::from_utf8(minted.stdout).expect("utf-8").trim().to_owned();
    authed(&hub.url(), &token).await;
    drop(hub);

    let dev = HubProcess::start(&dir.dir.path().join("dev"), &["--insecure-dev"]);
    authed(&dev.url(), "anything").await;
}

#[test]
fn a_second_hub_on_the_same_data_directory_refuses_to_start() {
    let dir = TestDir::new();
    let mut first = dir.start(&[]);
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data", dir.data().to_str().expect("utf-8")])
        .args(["--secret-file", dir.secret().to_str().expect("utf-8")])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another hub is running"));
    // A killed hub leaves no stale lock behind.
    first.kill9();
    let _second = dir.start(&[]);
}
