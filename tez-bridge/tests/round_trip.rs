//! The bridge for real: a MiniDFSCluster, a hub process, Tez in local mode, and clients that see
//! the results. Needs the DAG runner built (`make test` builds it with Maven) and the hub binary.

mod common;

use std::time::Duration;

use common::{bridge, client, field, hdfs, hub, runner_dir, until, write_job, TIMEOUT};
use tidepool_core::{Key, StoreRef, Value, object};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_tez_write_back_round_trip() {
    assert!(runner_dir().join("tidepool-tez.jar").exists(), "build the DAG runner first: make tez-jvm");
    let tmp = tempfile::tempdir().expect("tmp");
    let (_hdfs, namenode) = hdfs(&tmp.path().join("dfs"));
    let (_hub, url) = hub(&tmp.path().join("hub"));
    let base = format!("{namenode}/tidepool");
    let todos = StoreRef::new("app", "todos");
    let stats = StoreRef::new("app", "stats");

    let user = client(&url, &[&todos, &stats]).await;
    let projects = ["alpha", "beta"];
    for i in 0..20i64 {
        let v = object! { "project" => projects[(i % 2) as usize], "hours" => i, "title" => format!("task {i}") };
        user.put(&todos, &Key::Number(i as f64), &v).expect("put");
    }
    user.wait_idle(TIMEOUT).await.expect("idle");

    // aggregate: results become records of the results store, keyed by group.
    let job = write_job(tmp.path(), "stats", &url, &base,
        "kind = \"aggregate\"\ngroup_by = [\"project\"]\naggregates = [\"count\", \"sum:hours\", \"max:hours\"]\nresults_store = \"stats\"");
    let (ok, out) = bridge(&["run", "--job", job.to_str().expect("path")]);
    assert!(ok, "{out}");
    let other = client(&url, &[&todos, &stats]).await;
    until("aggregate results on another client", || other.values(&stats).len() == 2).await;
    let alpha = other.get(&stats, &Key::from("alpha")).expect("get");
    assert_eq!(field(&alpha, "count"), Some(Value::Int(10)));
    assert_eq!(field(&alpha, "sum_hours"), Some(Value::Int(90)));
    assert_eq!(field(&alpha, "max_hours"), Some(Value::Int(18)));

    // enrich, with edits between snapshot and write-back.
    let job = write_job(tmp.path(), "score", &url, &base, "kind = \"enrich\"\n[dag.fields]\nscore = \"hours * 2\"");
    let (ok, out) = bridge(&["snapshot", "--hub", &url, "--token", "dev", "--db", "app", "--store", "todos", "--to", &base, "--job", "score", "--run", "r1"]);
    assert!(ok, "{out}");
    let edited = object! { "project" => "alpha", "hours" => 4i64, "title" => "edited after the snapshot" };
    user.put(&todos, &Key::Number(4.0), &edited).expect("put");
    user.delete(&todos, &Key::Number(5.0)).expect("delete");
    user.wait_idle(TIMEOUT).await.expect("idle");
    until("the other client sees the delete and the edit", || {
        other.get(&todos, &Key::Number(5.0)).ok().flatten().is_none()
            && field(&other.get(&todos, &Key::Number(4.0)).ok().flatten(), "title") == Some(Value::from("edited after the snapshot"))
    })
    .await;
    let before = other.values(&todos).len();
    assert_eq!(before, 19);

    let (ok, out) = bridge(&["run", "--job", job.to_str().expect("path"), "--run", "r1"]);
    assert!(ok, "{out}");
    assert!(out.contains("20 records in, 20 results out, 20 changes written"), "{out}");
    until("scores on the other client", || field(&other.get(&todos, &Key::Number(3.0)).ok().flatten(), "score").is_some()).await;
    until("scores on the editing client", || field(&user.get(&todos, &Key::Number(4.0)).ok().flatten(), "score").is_some()).await;
    let four = user.get(&todos, &Key::Number(4.0)).expect("get");
    assert_eq!(field(&four, "title"), Some(Value::from("edited after the snapshot")), "the user's edit survives");
    assert_eq!(field(&four, "score"), Some(Value::Int(8)));
    assert_eq!(other.get(&todos, &Key::Number(5.0)).expect("get"), None, "a deleted record is not resurrected");
    assert_eq!(other.values(&todos).len(), before);

    // writing back the same run again changes nothing.
    until("every score on the other client", || {
        other.values(&todos).iter().all(|(_, v)| field(&Some(v.clone()), "score").is_some())
    })
    .await;
    other.wait_idle(TIMEOUT).await.expect("idle");
    let snapshot_values = other.values(&todos);
    let (ok, out) = bridge(&["run", "--job", job.to_str().expect("path"), "--run", "r1"]);
    assert!(ok, "{out}");
    assert!(out.contains(" 0 changes written"), "{out}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(other.values(&todos), snapshot_values);

    // a failing Tez job writes nothing and says why.
    let runner = runner_dir();
    let fail = format!(
        "kind = \"user\"\njar = \"{}\"\nmain_class = \"dev.tidepool.tez.DagRunner\"\nargs = [\"--dag\", \"fail\", \"--fs-default\", \"{{fs}}\", \"--input\", \"{{input}}\", \"--output\", \"{{output}}\"]",
        runner.join("tidepool-tez.jar").display()
    );
    let job = write_job(tmp.path(), "broken", &url, &base, &fail);
    let (ok, out) = bridge(&["run", "--job", job.to_str().expect("path")]);
    assert!(!ok, "a failed DAG must fail the run: {out}");
    assert!(out.contains("Tez"), "{out}");
    let (_, status) = bridge(&["status", "--job", job.to_str().expect("path")]);
    assert!(status.contains("tez-failed"), "{status}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(other.values(&todos), snapshot_values, "nothing written back");
}
