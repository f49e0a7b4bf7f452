//! The bridge against a group of hubs: three hub processes on one real PostgreSQL server, a
//! MiniDFSCluster and Tez in local mode. The bridge is pointed at a hub that does not own the
//! job's database, so its snapshot, export pages and write-back all go through that hub's relay
//! to the owner; a client on the third hub sees the results. Needs the DAG runner built, the hub
//! binary, and PostgreSQL's server binaries (`make test` installs them).

mod common;

// The hub's tests start PostgreSQL the same way; one file serves both crates' tests (this crate
// must not depend on the hub, so it is shared by path rather than through a library).
#[allow(dead_code)]
#[path = "../../hub/tests/common/pg.rs"]
mod pg;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use common::{TIMEOUT, assert_runner_built, bridge, client_as, field, hdfs, hub_binary, until, write_job_as};
use tidepool_core::{Key, StoreRef, Value, object};
use tidepool_tez_bridge::test_cluster::{Running, start_announced};

/// Short, so ownership settles quickly; the test does not depend on its length.
const LEASE: &str = "2s";

struct GroupHub {
    _process: Running,
    addr: String,
}

impl GroupHub {
    fn start(data: &Path, storage: &str, secret: &Path, id: &str) -> GroupHub {
        let mut cmd = Command::new(hub_binary());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--storage", storage, "--lease-ttl", LEASE, "--hub-id", id])
            .arg("--data")
            .arg(data)
            .arg("--secret-file")
            .arg(secret);
        let (process, addr) = start_announced(cmd, "listening on ");
        GroupHub { _process: process, addr }
    }

    fn url(&self) -> String {
        format!("ws://{}/v1/sync", self.addr)
    }

    /// One counter or gauge of the hub's `/metrics` (0 when absent).
    fn metric(&self, name: &str) -> f64 {
        let mut stream = TcpStream::connect(&self.addr).expect("connect to the hub");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        write!(stream, "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr).expect("request");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("response");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}

/// A token for database `app` only: the hubs route a connection by the one database its token
/// names.
fn token(secret: &Path) -> String {
    let out = Command::new(hub_binary())
        .args(["token", "--sub", "bridge-job", "--db", "app", "--read", "*", "--write", "*", "--secret-file"])
        .arg(secret)
        .output()
        .expect("tidepool-hub token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

/// `tidepool-hub dump --storage URL`: the keys of a store as PostgreSQL holds them.
fn dump(storage: &str, store: &str) -> Vec<String> {
    let out = Command::new(hub_binary())
        .args(["dump", "--storage", storage, "--db", "app", "--store", store])
        .output()
        .expect("tidepool-hub dump");
    assert!(out.status.success(), "dump failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut keys: Vec<String> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line")["key"].as_str().expect("a string key").to_owned())
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_through_a_hub_that_does_not_own_its_database() {
    assert_runner_built();
    let server = pg::PgServer::start();
    let storage = server.fresh_db();
    let tmp = tempfile::tempdir().expect("tmp");
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "bridge-test-secret-0123456789abcdef0123456789").expect("secret");
    let hubs: Vec<GroupHub> =
        (0..3).map(|i| GroupHub::start(&tmp.path().join(format!("hub{i}")), &storage, &secret, &format!("hub{i}"))).collect();
    let (_hdfs, namenode) = hdfs(&tmp.path().join("dfs"));
    let base = format!("{namenode}/tidepool");
    let token = token(&secret);
    let todos = StoreRef::new("app", "todos");
    let stats = StoreRef::new("app", "stats");

    // The first client makes the database's hub take it; then the owner is known.
    let user = client_as(&hubs[0].url(), &token, &[&todos, &stats]).await;
    let projects = ["alpha", "beta"];
    for i in 0..20i64 {
        let v = object! { "project" => projects[(i % 2) as usize], "hours" => i, "title" => format!("task {i}") };
        user.put(&todos, &Key::Number(i as f64), &v).expect("put");
    }
    user.wait_idle(TIMEOUT).await.expect("idle");
    let owned: Vec<f64> = hubs.iter().map(|h| h.metric("tidepool_owned_databases")).collect();
    assert_eq!(owned.iter().sum::<f64>(), 1.0, "one hub owns the one database: {owned:?}");
    let owner = owned.iter().position(|n| *n == 1.0).expect("an owner");
    let (via, watcher) = match owner {
        0 => (1, 2),
        1 => (2, 0),
        _ => (0, 1),
    };
    let other = client_as(&hubs[watcher].url(), &token, &[&todos, &stats]).await;
    let relayed_before = hubs[via].metric("tidepool_relayed_connections_total");

    // aggregate: new records in the results store, written through the non-owner.
    let job = write_job_as(tmp.path(), "stats", &hubs[via].url(), &token, &base, "",
        "kind = \"aggregate\"\ngroup_by = [\"project\"]\naggregates = [\"count\", \"sum:hours\"]\nresults_store = \"stats\"");
    let (ok, out) = bridge(&["run", "--job", job.to_str().expect("path")]);
    assert!(ok, "{out}");
    assert!(
        hubs[via].metric("tidepool_relayed_connections_total") > relayed_before,
        "the bridge's connection was relayed by the hub it was pointed at"
    );
    assert_eq!(hubs[via].metric("tidepool_owned_databases"), 0.0, "the bridge's hub took no ownership");
    until("aggregate results on a client of the third hub", || other.values(&stats).len() == 2).await;
    let alpha = other.get(&stats, &Key::from("alpha")).expect("get");
    assert_eq!(field(&alpha, "count"), Some(Value::Int(10)));
    assert_eq!(field(&alpha, "sum_hours"), Some(Value::Int(90)));
    let beta = other.get(&stats, &Key::from("beta")).expect("get");
    assert_eq!(field(&beta, "sum_hours"), Some(Value::Int(100)));
    assert_eq!(dump(&storage, "stats"), ["alpha", "beta"], "the results are in PostgreSQL");

    // enrich: write-back changes to the existing records, through the same non-owner.
    let job = write_job_as(tmp.path(), "score", &hubs[via].url(), &token, &base, "", "kind = \"enrich\"\n[dag.fields]\nscore = \"hours * 2\"");
    let (ok, out) = bridge(&["run", "--job", job.to_str().expect("path")]);
    assert!(ok, "{out}");
    assert!(out.contains("20 records in, 20 results out, 20 changes written"), "{out}");
    until("every score on a client of the third hub", || {
        let values = other.values(&todos);
        values.len() == 20 && values.iter().all(|(_, v)| field(&Some(v.clone()), "score").is_some())
    })
    .await;
    assert_eq!(field(&other.get(&todos, &Key::Number(7.0)).expect("get"), "score"), Some(Value::Int(14)));
    until("the scores reach the first client too", || field(&user.get(&todos, &Key::Number(19.0)).ok().flatten(), "score") == Some(Value::Int(38))).await;
    // Ownership did not move while the bridge worked through the relay.
    assert_eq!(hubs[owner].metric("tidepool_owned_databases"), 1.0);
}
