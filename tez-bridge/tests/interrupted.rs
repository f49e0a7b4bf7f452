//! A bridge killed with SIGKILL in the middle of a run, against a real hub, MiniDFSCluster and
//! Tez: during the export, and during the write-back. In between, `status` says the run was
//! interrupted; re-running the same run id finishes it, and the results are in the hub's log
//! exactly once (counted in the hub's SQLite log, which records only changes new to it).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bridge, client, field, hdfs, hub, write_job};
use tidepool_core::automerge::ActorId;
use tidepool_core::first_put::first_put;
use tidepool_core::{DocId, Key, StoreRef, Value, object};

/// More than two export pages (8,000 records each), so the export can be killed between pages.
const RECORDS: usize = 20_000;

/// Starts `tidepool-bridge args` and kills it with SIGKILL once it printed a progress line of
/// `phase` that is not its last (`[phase] done/total` with done < total). Returns what it
/// printed.
fn kill_during(args: &[&str], phase: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidepool-bridge"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bridge");
    let stderr = child.stderr.take().expect("stderr");
    let mut seen = String::new();
    let prefix = format!("[{phase}] ");
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        seen.push_str(&line);
        seen.push('\n');
        let Some(count) = line.strip_prefix(&prefix) else { continue };
        // `done/total`, where a total of 0 means not known in advance (the export's).
        let mid = count.split_once('/').is_some_and(|(done, total)| match (done.parse::<usize>(), total.parse::<usize>()) {
            (Ok(d), Ok(0)) => d < RECORDS,
            (Ok(d), Ok(t)) => d < t,
            _ => false,
        });
        if mid {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
            return seen;
        }
    }
    let status = child.wait().expect("wait");
    panic!("the bridge ended ({status}) before it could be killed during {phase}:\n{seen}");
}

/// The status line of `run` (`<run>  <phase>  in=.. out=.. written=..`).
fn status_of(job: &Path, run: &str) -> String {
    let (ok, out) = bridge(&["status", "--job", job.to_str().expect("path")]);
    assert!(ok, "{out}");
    out.lines().find(|l| l.starts_with(run)).map(str::to_owned).unwrap_or_else(|| panic!("no run {run} in:\n{out}"))
}

/// Rows in the hub's log for `store`: one per document per push that brought new changes.
fn log_rows(hub_data: &Path, store: &StoreRef) -> i64 {
    let db = rusqlite::Connection::open_with_flags(hub_data.join("hub.sqlite"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("hub database");
    db.query_row(
        "SELECT COUNT(*) FROM log WHERE store = (SELECT id FROM stores WHERE db = ?1 AND name = ?2)",
        [&store.db, &store.store],
        |row| row.get(0),
    )
    .expect("count")
}

/// The log's row count once it stopped growing for three seconds.
async fn settled_log_rows(hub_data: &Path, store: &StoreRef) -> i64 {
    let started = std::time::Instant::now();
    let (mut rows, mut since) = (log_rows(hub_data, store), std::time::Instant::now());
    while since.elapsed() < Duration::from_secs(3) {
        assert!(started.elapsed() < Duration::from_secs(120), "the hub's log kept growing");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = log_rows(hub_data, store);
        if now != rows {
            (rows, since) = (now, std::time::Instant::now());
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_under_its_id_and_writes_once() {
    common::assert_runner_built();
    let tmp = tempfile::tempdir().expect("tmp");
    let (_hdfs, namenode) = hdfs(&tmp.path().join("dfs"));
    let hub_data = tmp.path().join("hub");
    let (_hub, url) = hub(&hub_data);
    let todos = StoreRef::new("app", "todos");

    let writer = client(&url, &[]).await;
    let actor = ActorId::from([5u8; 16]);
    for i in 0..RECORDS {
        let change = first_put(&actor, &object! { "hours" => (i % 40) as i64, "title" => format!("task {i}") }, 0).expect("change");
        let key = Key::Number(i as f64).encode().expect("key");
        writer.send_change(&todos, DocId::from_encoded_key(&todos, &key), &key, change.bytes).expect("send");
    }
    writer.wait_idle(Duration::from_secs(300)).await.expect("records acknowledged");
    let inserted = log_rows(&hub_data, &todos);
    assert_eq!(inserted, RECORDS as i64);

    let base = format!("{namenode}/tidepool");
    let job = write_job(tmp.path(), "score", &url, &base, "kind = \"enrich\"\n[dag.fields]\nscore = \"hours * 2\"");
    let job_arg = job.to_str().expect("path");
    // A second job with another result, so its run changes every record again.
    let job3 = write_job(tmp.path(), "triple", &url, &base, "kind = \"enrich\"\n[dag.fields]\nscore3 = \"hours * 3\"");
    let job3_arg = job3.to_str().expect("path");

    // Killed while exporting: the run shows as interrupted, and the same id starts over.
    let printed = kill_during(&["run", "--job", job_arg, "--run", "r1"], "export");
    assert!(status_of(&job, "r1").contains("interrupted"), "after a kill during the export:\n{printed}");
    let (ok, out) = bridge(&["run", "--job", job_arg, "--run", "r1"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{RECORDS} records in, {RECORDS} results out, {RECORDS} changes written")), "{out}");
    assert!(status_of(&job, "r1").contains("written-back"));
    assert_eq!(log_rows(&hub_data, &todos), inserted + RECORDS as i64, "one write-back change per record");

    // Killed while writing back: interrupted, then resumed without running Tez again; every
    // record gets this run's change once.
    let printed = kill_during(&["run", "--job", job3_arg, "--run", "r2"], "write-back");
    let between = status_of(&job3, "r2");
    assert!(between.contains("interrupted"), "{between}\n{printed}");
    // The hub still stores what the killed bridge sent before it died.
    let partial = settled_log_rows(&hub_data, &todos).await - inserted - RECORDS as i64;
    assert!(partial < RECORDS as i64, "killed before the write-back finished: {partial} written");
    let (ok, out) = bridge(&["run", "--job", job3_arg, "--run", "r2"]);
    assert!(ok, "{out}");
    assert!(!out.contains("[tez]"), "the finished Tez output is reused:\n{out}");
    let resumed: i64 = out
        .split(" changes written")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no change count in: {out}"));
    assert_eq!(resumed + partial, RECORDS as i64, "the resumed run sends only what the hub lacks:\n{out}");
    assert_eq!(log_rows(&hub_data, &todos), inserted + 2 * RECORDS as i64, "exactly once per record and run");
    assert!(status_of(&job3, "r2").contains("written-back"));

    // Every record carries both results.
    let observer = client(&url, &[&todos]).await;
    let values = observer.values(&todos);
    assert_eq!(values.len(), RECORDS);
    for (_, v) in values {
        let v = Some(v);
        let Some(Value::Int(hours)) = field(&v, "hours") else { panic!("no hours in {v:?}") };
        assert_eq!(field(&v, "score"), Some(Value::Int(hours * 2)), "{v:?}");
        assert_eq!(field(&v, "score3"), Some(Value::Int(hours * 3)), "{v:?}");
    }
}
