//! Shared helpers for the bridge's integration tests: a MiniDFSCluster, a hub process, the bridge
//! binary, job files and clients. Needs the DAG runner built (`make tez-jvm`) and the hub binary.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tidepool_client::{Client, ClientOptions};
use tidepool_core::{StoreRef, Value};
use tidepool_tez_bridge::test_cluster::{self, Running, start_announced};

pub const TIMEOUT: Duration = Duration::from_secs(60);

pub fn runner_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("jvm/target")
}

pub fn assert_runner_built() {
    assert!(runner_dir().join("tidepool-tez.jar").exists(), "build the DAG runner first: make tez-jvm");
}

pub fn hdfs(base: &Path) -> (Running, String) {
    test_cluster::hdfs(&runner_dir(), base)
}

pub fn hub_binary() -> PathBuf {
    // Integration tests live in target/<profile>/deps; the hub binary one level up.
    let exe = std::env::current_exe().expect("exe");
    exe.parent().and_then(Path::parent).expect("target dir").join("tidepool-hub")
}

pub fn hub(data: &Path) -> (Running, String) {
    let mut cmd = Command::new(hub_binary());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--insecure-dev", "--data"]).arg(data);
    let (p, addr) = start_announced(cmd, "listening on ");
    (p, format!("ws://{addr}/v1/sync"))
}

/// Runs the bridge binary; (success, stdout and stderr).
pub fn bridge(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tidepool-bridge")).args(args).output().expect("bridge");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Writes a job file; `top` is extra top-level TOML (e.g. `incremental = true`).
pub fn write_job_with(dir: &Path, name: &str, hub: &str, base: &str, top: &str, dag: &str) -> PathBuf {
    write_job_as(dir, name, hub, "dev", base, top, dag)
}

/// Writes a job file whose connection uses `token`.
pub fn write_job_as(dir: &Path, name: &str, hub: &str, token: &str, base: &str, top: &str, dag: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let mut f = std::fs::File::create(&path).expect("job file");
    write!(f, "name = \"{name}\"\nhub = \"{hub}\"\ntoken = \"{token}\"\ndb = \"app\"\nstore = \"todos\"\nbase = \"{base}\"\n{top}\n\n[dag]\n{dag}\n")
        .expect("write");
    path
}

pub fn write_job(dir: &Path, name: &str, hub: &str, base: &str, dag: &str) -> PathBuf {
    write_job_with(dir, name, hub, base, "", dag)
}

pub async fn client(url: &str, stores: &[&StoreRef]) -> Client {
    client_as(url, "dev", stores).await
}

pub async fn client_as(url: &str, token: &str, stores: &[&StoreRef]) -> Client {
    let c = Client::connect(ClientOptions::new(url, token));
    for s in stores {
        c.subscribe((*s).clone());
    }
    c.wait_connected(TIMEOUT).await.expect("connected");
    c.wait_idle(TIMEOUT).await.expect("idle");
    c
}

/// Polls `f` for up to a minute.
pub async fn until<F: Fn() -> bool>(what: &str, f: F) {
    until_within(what, TIMEOUT, f).await;
}

/// Polls `f` every 100 ms for up to `limit`.
pub async fn until_within<F: Fn() -> bool>(what: &str, limit: Duration, f: F) {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

pub fn field(v: &Option<Value>, name: &str) -> Option<Value> {
    match v {
        Some(Value::Object(f)) => f.get(name).cloned(),
        _ => None,
    }
}
