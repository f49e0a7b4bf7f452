//! `tidepool-bridge watch` for real: a MiniDFSCluster, a hub process, Tez in local mode on a warm
//! session. An edit from one client produces the updated analytics results in another client,
//! for an aggregate and an enrich job watched together; a killed session is replaced and the
//! next edit is computed on the new one; SIGTERM stops the bridge and its session.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{client, field, hdfs, hub, write_job_with, TIMEOUT};
use tidepool_core::{Key, Patch, StoreRef, Value, object};
use tidepool_tez_bridge::test_cluster::Running;

/// Polls `f` for up to three minutes (a first session starts a JVM and a Tez AM), showing the
/// bridge's output on failure.
async fn until<F: Fn() -> bool>(what: &str, log: &Arc<Mutex<String>>, f: F) {
    for _ in 0..1800 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}; the bridge said:\n{}", log.lock().expect("log"));
}

/// Processes whose parent is `parent` and whose command line holds `needle`.
fn children(parent: u32, needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The parent is the second field after the parenthesised command name.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == Some(parent) && String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([sig, &pid.to_string()]).status().expect("kill").success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_recomputes_on_every_edit_and_replaces_a_killed_session() {
    common::assert_runner_built();
    let tmp = tempfile::tempdir().expect("tmp");
    let (_hdfs, namenode) = hdfs(&tmp.path().join("dfs"));
    let (_hub, url) = hub(&tmp.path().join("hub"));
    let base = format!("{namenode}/tidepool");
    let todos = StoreRef::new("app", "todos");
    let stats = StoreRef::new("app", "stats");
    let dir = tmp.path();
    let stats_job = write_job_with(dir, "stats", &url, &base, "",
        "kind = \"aggregate\"\ngroup_by = [\"project\"]\naggregates = [\"count\", \"sum:hours\"]\nwhere = \"!done\"\nresults_store = \"stats\"\ncomputed_at_field = \"computed_at\"");
    let sizes_job = write_job_with(dir, "sizes", &url, &base, "incremental = true",
        "kind = \"enrich\"\n[dag.fields]\nsize = \"if(hours >= 5, 'large', 'small')\"");

    let user = client(&url, &[&todos]).await;
    for i in 0..10i64 {
        let v = object! { "project" => if i % 2 == 0 { "alpha" } else { "beta" }, "hours" => i, "done" => false };
        user.put(&todos, &Key::Number(i as f64), &v).expect("put");
    }
    user.wait_idle(TIMEOUT).await.expect("idle");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidepool-bridge"));
    cmd.args(["watch", "--debounce-ms", "300", "--keep-runs", "3", "--job"]).arg(&stats_job).arg("--job").arg(&sizes_job);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null()).spawn().expect("bridge");
    let log = Arc::new(Mutex::new(String::new()));
    for stream in [child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>), child.stderr.take().map(|s| Box::new(s) as _)] {
        let log = log.clone();
        let stream = stream.expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut log = log.lock().expect("log");
                log.push_str(&line);
                log.push('\n');
            }
        });
    }
    let bridge_pid = child.id();
    let bridge = Running(child);

    // The first runs: nothing was computed before.
    let other = client(&url, &[&todos, &stats]).await;
    let group = |name: &str| -> (Option<Value>, Option<Value>) {
        let v = other.get(&stats, &Key::from(name)).ok().flatten();
        (field(&v, "count"), field(&v, "sum_hours"))
    };
    let size = |key: i64| field(&other.get(&todos, &Key::Number(key as f64)).ok().flatten(), "size");
    until("the first totals", &log, || group("alpha") == (Some(Value::Int(5)), Some(Value::Int(20)))).await;
    until("the first sizes", &log, || (0..10).all(|k| size(k).is_some())).await;
    assert_eq!(size(7), Some(Value::from("large")));
    let computed_at = || match field(&other.get(&stats, &Key::from("alpha")).ok().flatten(), "computed_at") {
        Some(Value::String(at)) => at,
        other => panic!("no computed_at: {other:?}"),
    };
    let first_at = computed_at();
    assert!(first_at.len() == 20 && first_at.ends_with('Z'), "{first_at}");
    assert_eq!(size(2), Some(Value::from("small")));

    // An edit in one client reaches the totals and the sizes in the other.
    user.put(&todos, &Key::Number(10.0), &object! { "project" => "alpha", "hours" => 7i64, "done" => false }).expect("put");
    user.update(&todos, &Key::Number(1.0), &Patch::new().set("done", Value::Bool(true))).expect("update");
    until("totals after the edit", &log, || group("alpha") == (Some(Value::Int(6)), Some(Value::Int(27)))).await;
    until("beta without the finished task", &log, || group("beta") == (Some(Value::Int(4)), Some(Value::Int(24)))).await;
    until("the new record's size", &log, || size(10) == Some(Value::from("large"))).await;
    assert!(computed_at() >= first_at, "{} < {first_at}", computed_at());

    // Both jobs run on one warm session each.
    let sessions = children(bridge_pid, "dev.tidepool.tez.SessionRunner");
    assert_eq!(sessions.len(), 2, "a session per job: {sessions:?}\n{}", log.lock().expect("log"));

    // A killed session is replaced, and the next edit is computed on the new one.
    for pid in &sessions {
        signal(*pid, "-KILL");
    }
    user.put(&todos, &Key::Number(11.0), &object! { "project" => "beta", "hours" => 1i64, "done" => false }).expect("put");
    until("totals computed on a new session", &log, || group("beta") == (Some(Value::Int(5)), Some(Value::Int(25)))).await;
    until("a size computed on a new session", &log, || size(11) == Some(Value::from("small"))).await;
    let replaced = children(bridge_pid, "dev.tidepool.tez.SessionRunner");
    assert_eq!(replaced.len(), 2, "{replaced:?}");
    assert!(replaced.iter().all(|p| !sessions.contains(p)), "new sessions: {sessions:?} -> {replaced:?}");

    // The job's own write-back does not make it run for ever: the store settles.
    let settled = || log.lock().expect("log").matches(" after the change").count();
    let mut last = settled();
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = settled();
        if now == last {
            break;
        }
        last = now;
    }
    assert!(last < 20, "runs keep coming: {}", log.lock().expect("log"));

    // SIGTERM stops the bridge and its sessions.
    signal(bridge_pid, "-TERM");
    for _ in 0..300 {
        if !alive(bridge_pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in &replaced {
        for _ in 0..300 {
            if !alive(*pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!alive(*pid), "session {pid} outlived its bridge");
    }
    drop(bridge);
    let text = log.lock().expect("log").clone();
    assert!(text.contains("watching stats") && text.contains("watching sizes"), "{text}");
}
