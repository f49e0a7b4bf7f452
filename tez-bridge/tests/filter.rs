//! `where` on every DAG kind, end to end: a MiniDFSCluster, a hub process, Tez in local mode, and a
//! second client that sees the results. Aggregates group by two fields with several aggregates;
//! records with a missing or null field are dropped by a filter that reads it.

mod common;

use std::collections::BTreeMap;

use common::{assert_runner_built, bridge, client, field, hdfs, hub, until, write_job, TIMEOUT};
use tidepool_core::{Key, StoreRef, Value, object};

/// The test data: record i of 30.
fn todo(i: i64) -> Value {
    let project = ["alpha", "beta", "gamma"][(i % 3) as usize];
    let priority = if i % 2 == 0 { "high" } else { "low" };
    let mut v = object! { "project" => project, "priority" => priority, "done" => i % 4 == 0, "title" => format!("task {i}") };
    if let Value::Object(f) = &mut v {
        // Every fifth record has no hours, every seventh a null.
        if i % 7 == 0 {
            f.insert("hours".into(), Value::Null);
        } else if i % 5 != 0 {
            f.insert("hours".into(), Value::Int(i));
        }
    }
    v
}

fn num(v: Option<Value>) -> f64 {
    match v {
        Some(Value::Int(n)) => n as f64,
        Some(Value::Float(x)) => x,
        other => panic!("not a number: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_filters_aggregate_and_enrich() {
    assert_runner_built();
    let tmp = tempfile::tempdir().expect("tmp");
    let (_hdfs, namenode) = hdfs(&tmp.path().join("dfs"));
    let (_hub, url) = hub(&tmp.path().join("hub"));
    let base = format!("{namenode}/tidepool");
    let todos = StoreRef::new("app", "todos");
    let stats = StoreRef::new("app", "stats");

    let user = client(&url, &[&todos, &stats]).await;
    for i in 0..30i64 {
        user.put(&todos, &Key::Number(i as f64), &todo(i)).expect("put");
    }
    user.wait_idle(TIMEOUT).await.expect("idle");

    // What the filter keeps, grouped by (project, priority): (count, sum, min) of hours.
    let mut expected: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
    for i in 0..30i64 {
        let has_hours = i % 7 != 0 && i % 5 != 0;
        if i % 4 != 0 && has_hours && i >= 3 {
            let project = ["alpha", "beta", "gamma"][(i % 3) as usize].to_owned();
            let priority = if i % 2 == 0 { "high" } else { "low" }.to_owned();
            let e = expected.entry((project, priority)).or_insert((0, 0, i64::MAX));
            *e = (e.0 + 1, e.1 + i, e.2.min(i));
        }
    }
    assert!(expected.len() == 6 && expected.values().map(|e| e.0).sum::<i64>() < 30, "the data exercises the filter");

    let job = write_job(tmp.path(), "stats", &url, &base,
        "kind = \"aggregate\"\ngroup_by = [\"project\", \"priority\"]\naggregates = [\"count\", \"sum:hours\", \"min:hours\", \"avg:hours\"]\nresults_store = \"stats\"\nwhere = \"!done && hours >= 3\"");
    let (ok, out) = bridge(&["run", "--job", job.to_str().expect("path")]);
    assert!(ok, "{out}");
    let other = client(&url, &[&todos, &stats]).await;
    until("aggregate results on another client", || other.values(&stats).len() == expected.len()).await;
    for ((project, priority), (count, sum, min)) in &expected {
        let key = Key::Array(vec![Key::from(project.as_str()), Key::from(priority.as_str())]);
        let got = other.get(&stats, &key).expect("get");
        assert_eq!(field(&got, "count"), Some(Value::Int(*count)), "{key:?}");
        assert_eq!(field(&got, "sum_hours"), Some(Value::Int(*sum)), "{key:?}");
        assert_eq!(field(&got, "min_hours"), Some(Value::Int(*min)), "{key:?}");
        let avg = num(field(&got, "avg_hours"));
        assert!((avg - *sum as f64 / *count as f64).abs() < 1e-9, "{key:?}: avg {avg}");
        assert_eq!(field(&got, "project"), Some(Value::from(project.as_str())));
    }

    // enrich: only alpha records get the field; a missing hours gives null, not a dropped record.
    let job = write_job(tmp.path(), "tenfold", &url, &base,
        "kind = \"enrich\"\nwhere = \"project == 'alpha'\"\n[dag.fields]\ntenfold = \"hours * 10\"");
    let (ok, out) = bridge(&["run", "--job", job.to_str().expect("path")]);
    assert!(ok, "{out}");
    assert!(out.contains("30 records in, 10 results out"), "{out}");
    until("tenfold on the other client", || field(&other.get(&todos, &Key::Number(3.0)).ok().flatten(), "tenfold").is_some()).await;
    other.wait_idle(TIMEOUT).await.expect("idle");
    for i in 0..30i64 {
        let got = field(&other.get(&todos, &Key::Number(i as f64)).expect("get"), "tenfold");
        let want = match (i % 3, i % 7 != 0 && i % 5 != 0) {
            (0, true) => Some(Value::Int(i * 10)),
            (0, false) => Some(Value::Null),
            _ => None,
        };
        assert_eq!(got, want, "record {i}");
    }

    // A `where` that does not parse is refused before anything runs, naming the expression.
    let job = write_job(tmp.path(), "broken", &url, &base,
        "kind = \"enrich\"\nwhere = \"hours >\"\n[dag.fields]\nx = \"1\"");
    let before = other.values(&todos);
    let (ok, out) = bridge(&["run", "--job", job.to_str().expect("path")]);
    assert!(!ok, "{out}");
    assert!(out.contains("--where") && out.contains("hours >"), "{out}");
    other.wait_idle(TIMEOUT).await.expect("idle");
    assert_eq!(other.values(&todos), before, "nothing written");
}
