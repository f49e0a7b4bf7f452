//! The bridge when things go wrong, with real processes: a hub that is not where the job says, an
//! HDFS namenode that does not answer, a token that may not write the results, and a bridge
//! killed while Tez runs. Each failure is quick, says what and why (once), and leaves no process
//! and no file in /tmp behind. Needs the DAG runner built (`make tez-jvm`) and the hub binary.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidepool_client::{Client, ClientOptions};
use tidepool_core::{Key, StoreRef, object};
use tidepool_tez_bridge::test_cluster::{Running, start_announced};

/// Generous: only a hang (the old 300-s wait) fails it, not a slow machine.
const FAIL_WITHIN: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(60);
const RUNNER_MAIN: &str = "dev.tidepool.tez.DagRunner";

fn runner_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("jvm/target")
}

fn hub_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    exe.parent().and_then(Path::parent).expect("target dir").join("tidepool-hub")
}

/// A hub with JWT auth; returns it, its sync URL and its data directory (holding the secret).
fn hub(data: &Path) -> (Running, String) {
    let mut cmd = Command::new(hub_binary());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(data);
    let (p, addr) = start_announced(cmd, "listening on ");
    (p, format!("ws://{addr}/v1/sync"))
}

fn token(data: &Path, read: &[&str], write: &[&str]) -> String {
    let mut cmd = Command::new(hub_binary());
    cmd.args(["token", "--secret-file"]).arg(data.join("secret")).args(["--sub", "bridge", "--db", "app"]);
    for r in read {
        cmd.args(["--read", r]);
    }
    for w in write {
        cmd.args(["--write", w]);
    }
    let out = cmd.output().expect("token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Runs the bridge; returns success, stdout + stderr, and how long it took.
fn bridge(args: &[&str]) -> (bool, String, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_tidepool-bridge")).args(args).output().expect("bridge");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text, started.elapsed())
}

fn write_job(dir: &Path, name: &str, hub: &str, token: &str, base: &str, extra: &str, dag: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let mut f = std::fs::File::create(&path).expect("job file");
    write!(f, "name = \"{name}\"\nhub = \"{hub}\"\ntoken = \"{token}\"\ndb = \"app\"\nstore = \"todos\"\nbase = \"{base}\"\n{extra}\n[dag]\n{dag}\n")
        .expect("write");
    path
}

const AGGREGATE: &str = "kind = \"aggregate\"\ngroup_by = [\"project\"]\naggregates = [\"count\"]\nresults_store = \"stats\"";

/// Fails quickly, naming `what` and `cause`, and says it once.
fn assert_fails(job: &Path, what: &str, cause: &str) -> Duration {
    let (ok, out, took) = bridge(&["run", "--job", job.to_str().expect("path")]);
    assert!(!ok, "{out}");
    assert!(took < FAIL_WITHIN, "took {took:?}: {out}");
    let error = out.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line: {out}"));
    assert!(error.contains(what), "{error} should name {what}");
    assert!(error.contains(cause), "{error} should say {cause}");
    assert_eq!(error.matches(cause).count(), 1, "said twice: {error}");
    assert!(!out.contains("Caused by"), "{out}");
    eprintln!("{took:.1?}: {error}");
    took
}

#[test]
fn a_wrong_hub_url_fails_at_once_naming_it_and_why() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("hub");
    let (_hub, url) = hub(&data);
    let t = token(&data, &["*"], &["*"]);
    let base = tmp.path().join("runs");
    let base = base.to_str().expect("path");
    let port = url.trim_start_matches("ws://").trim_end_matches("/v1/sync").to_owned();
    let cases = [
        (format!("ws://127.0.0.1:{}/v1/sync", free_port()), "connection refused"),
        (format!("ws://{port}/no/such/path"), "HTTP 404"),
        (format!("http://{port}/v1/sync"), "unsupported scheme http://"),
    ];
    for (i, (url, cause)) in cases.iter().enumerate() {
        let job = write_job(tmp.path(), &format!("hub{i}"), url, &t, base, "[timeouts]\nhub_connect = 3", AGGREGATE);
        assert_fails(&job, url, cause);
    }
    // The default connect timeout, and the snapshot command, fail as clearly.
    let url = format!("ws://127.0.0.1:{}/v1/sync", free_port());
    let job = write_job(tmp.path(), "hub-default", &url, &t, base, "", AGGREGATE);
    assert_fails(&job, &url, "connection refused");
    let (ok, out, took) = bridge(&["snapshot", "--hub", "http://127.0.0.1:1/v1/sync", "--token", &t, "--db", "app", "--store", "todos", "--to", base]);
    assert!(!ok && took < FAIL_WITHIN && out.contains("http://127.0.0.1:1/v1/sync") && out.contains("unsupported scheme"), "{out}");
}

#[test]
fn an_unreachable_namenode_fails_in_bounded_time_naming_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let namenode = format!("hdfs://127.0.0.1:{}", free_port());
    let base = format!("{namenode}/tidepool");
    // The hub is never reached: the run location is checked first.
    let job = write_job(tmp.path(), "nn", "ws://127.0.0.1:1/v1/sync", "t", &base, "[timeouts]\nhdfs_connect = 5", AGGREGATE);
    assert_fails(&job, &namenode, "unreachable");
    let (ok, out, took) = bridge(&["status", "--job", job.to_str().expect("path")]);
    assert!(!ok && took < FAIL_WITHIN && out.contains(&namenode), "{out}");
}

/// Java processes running the DAG runner for `run`.
fn runner_pids(run: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(RUNNER_MAIN) && cmdline.contains(run) {
            pids.push(pid);
        }
    }
    pids
}

fn cmdline(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).replace('\0', " ")
}

/// Entries of /tmp a DAG runner would leave there.
fn tmp_leftovers() -> BTreeSet<String> {
    std::fs::read_dir("/tmp")
        .expect("/tmp")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| (n.starts_with("snappy-") && n.ends_with("libsnappyjava.so")) || n.starts_with("tidepool-tez-"))
        .collect()
}

/// Another project's DAG runner (not started by this test) that may write to /tmp meanwhile.
fn foreign_runner_running(ours: &[&str]) -> bool {
    runner_pids("").into_iter().any(|pid| {
        let c = cmdline(pid);
        !ours.iter().any(|run| c.contains(run))
    })
}

/// Names directly inside the scratch directories of the bridge with this pid.
fn scratch_entries(bridge_pid: u32) -> Vec<String> {
    let prefix = format!("tidepool-bridge-{bridge_pid}-");
    let mut names = Vec::new();
    for dir in std::fs::read_dir(std::env::temp_dir()).expect("tmp").flatten() {
        if dir.file_name().to_string_lossy().starts_with(&prefix) {
            for e in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
                names.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    names
}

async fn seed(url: &str, token: &str) {
    let todos = StoreRef::new("app", "todos");
    let c = Client::connect(ClientOptions::new(url, token));
    c.subscribe(todos.clone());
    c.wait_idle(TIMEOUT).await.expect("idle");
    for i in 0..20i64 {
        let v = object! { "project" => ["alpha", "beta"][(i % 2) as usize], "hours" => i };
        c.put(&todos, &Key::Number(i as f64), &v).expect("put");
    }
    c.wait_idle(TIMEOUT).await.expect("idle");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tez_runs_refused_or_killed_leave_nothing_behind() {
    assert!(runner_dir().join("tidepool-tez.jar").exists(), "build the DAG runner first: make tez-jvm");
    let before = tmp_leftovers();
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("hub");
    let (_hub, url) = hub(&data);
    seed(&url, &token(&data, &["*"], &["*"])).await;
    let base = tmp.path().join("runs");
    let base = base.to_str().expect("path");
    let nonce = std::process::id();
    let refused_run = format!("refused-{nonce}");
    let killed_run = format!("killed-{nonce}");
    let termed_run = format!("terminated-{nonce}");
    let ours = [refused_run.as_str(), killed_run.as_str(), termed_run.as_str()];
    let mut foreign = foreign_runner_running(&ours);

    // A token that may read the results store but not write it: the run fails at write-back,
    // naming the store and the missing grant.
    let reader = token(&data, &["todos", "stats"], &["todos"]);
    let refused_job = write_job(tmp.path(), "stats", &url, &reader, base, "", AGGREGATE);
    let (ok, out, took) = bridge(&["run", "--job", refused_job.to_str().expect("path"), "--run", &refused_run]);
    assert!(!ok, "{out}");
    let error = out.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{out}"));
    assert!(error.contains("app/stats") && error.contains("write access"), "{error}");
    eprintln!("refused write-back after {took:.1?}: {error}");
    assert!(out.contains("[tez] done in"), "a line per phase with its duration, without a terminal: {out}");

    // Killed during the Tez phase: its DAG runner goes too, and status says interrupted.
    let writer = token(&data, &["*"], &["*"]);
    let job = write_job(tmp.path(), "stats2", &url, &writer, base, "", AGGREGATE);
    let job = job.to_str().expect("path");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidepool-bridge"))
        .args(["run", "--job", job, "--run", &killed_run])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bridge");
    let bridge_pid = child.id();
    let started = Instant::now();
    let runner = loop {
        foreign |= foreign_runner_running(&ours);
        if let Some(pid) = runner_pids(&killed_run).first() {
            break *pid;
        }
        assert!(started.elapsed() < TIMEOUT, "the DAG runner never started");
        assert!(child.try_wait().expect("wait").is_none(), "the bridge ended before Tez started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let scratch_prefix = format!("-Djava.io.tmpdir={}/tidepool-bridge-{bridge_pid}-", std::env::temp_dir().display());
    assert!(cmdline(runner).contains(&scratch_prefix), "{}", cmdline(runner));
    // Well into the Tez phase (JVM and Tez start-up); meanwhile the runner's temporary files
    // appear in the bridge's scratch directory, not in /tmp.
    let mut in_scratch = BTreeSet::new();
    let waiting = Instant::now();
    while !in_scratch.iter().any(|n: &String| n.starts_with("tidepool-tez-")) && waiting.elapsed() < TIMEOUT {
        assert!(child.try_wait().expect("wait").is_none(), "the bridge ended during the Tez phase");
        in_scratch.extend(scratch_entries(bridge_pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("in the scratch directory: {in_scratch:?}");
    assert!(in_scratch.iter().any(|n| n.starts_with("tidepool-tez-")), "{in_scratch:?}");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let killed = Instant::now();
    while !runner_pids(&killed_run).is_empty() {
        assert!(killed.elapsed() < FAIL_WITHIN, "the DAG runner outlived the bridge: {:?}", runner_pids(&killed_run));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("the DAG runner exited {:.1?} after the bridge was killed", killed.elapsed());
    let (ok, status, _) = bridge(&["status", "--job", job]);
    assert!(ok, "{status}");
    let line = status.lines().find(|l| l.starts_with(&killed_run)).unwrap_or_else(|| panic!("{status}"));
    assert!(line.contains("interrupted"), "{status}");
    let (_, status, _) = bridge(&["status", "--job", refused_job.to_str().expect("path")]);
    let line = status.lines().find(|l| l.starts_with(&refused_run)).unwrap_or_else(|| panic!("{status}"));
    assert!(line.contains("write-back-failed"), "a finished run is not interrupted: {status}");

    // SIGTERM: the bridge itself kills the runner and removes its scratch directory.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidepool-bridge"))
        .args(["run", "--job", job, "--run", &termed_run])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bridge");
    let termed_pid = child.id();
    let started = Instant::now();
    while runner_pids(&termed_run).is_empty() {
        foreign |= foreign_runner_running(&ours);
        assert!(started.elapsed() < TIMEOUT, "the DAG runner never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Signalled once the runner's JVM is up (its temporary files are in the scratch directory),
    // not after a fixed wait: a small DAG on an idle machine finishes, and the run with it, in
    // about two seconds.
    let waiting = Instant::now();
    while !scratch_entries(termed_pid).iter().any(|n| n.starts_with("tidepool-tez-")) {
        assert!(waiting.elapsed() < TIMEOUT, "the runner's files never appeared");
        assert!(child.try_wait().expect("wait").is_none(), "the bridge ended during the Tez phase");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let termed = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &termed_pid.to_string()]).status().expect("kill").success());
    let out = child.wait_with_output().expect("reap");
    assert_eq!(out.status.code(), Some(143), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted by SIGTERM"));
    assert!(scratch_entries(termed_pid).is_empty(), "the bridge removes its scratch directory");
    while !runner_pids(&termed_run).is_empty() {
        assert!(termed.elapsed() < FAIL_WITHIN, "the DAG runner outlived the bridge");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("SIGTERM: bridge and runner gone {:.1?} after the signal", termed.elapsed());

    // The killed run's scratch directory went with the next bridge (status); nothing in /tmp.
    let scratch: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .expect("tmp")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("tidepool-bridge-{bridge_pid}-")))
        .collect();
    assert!(scratch.is_empty(), "scratch left: {:?}", scratch.iter().map(|e| e.path()).collect::<Vec<_>>());
    foreign |= foreign_runner_running(&ours);
    let new: Vec<_> = tmp_leftovers().difference(&before).cloned().collect();
    if foreign && !new.is_empty() {
        eprintln!("another DAG runner ran meanwhile; not attributing {new:?} to this test");
    } else {
        assert!(new.is_empty(), "left in /tmp: {new:?}");
    }
}
