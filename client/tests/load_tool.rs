//! `tidepool-load` against the real hub binary, with a real token: one converged run, reported as
//! one JSON line. The hub binary is this workspace's (`cargo build -p tidepool-hub --bins`, which
//! `cargo test --workspace` does too), found beside `tidepool-load`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const LOAD: &str = env!("CARGO_BIN_EXE_tidepool-load");

fn hub_binary() -> PathBuf {
    let path = Path::new(LOAD).with_file_name("tidepool-hub");
    assert!(path.exists(), "{} is missing: build it with `cargo build -p tidepool-hub --bins`", path.display());
    path
}

/// A hub process, killed when dropped.
struct Hub(Child);

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tidepool-hub serve` on 127.0.0.1:0; returns it and its sync URL.
fn start_hub(data: &Path) -> (Hub, String) {
    let mut child = Command::new(hub_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tidepool-hub");
    let stdout = child.stdout.take().expect("stdout");
    let hub = Hub(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).expect("the hub announces its address");
    (hub, format!("ws://{addr}/v1/sync"))
}

fn hub_command(args: &[&str], data: &Path) -> String {
    let out = Command::new(hub_binary()).args(args).args([Path::new("--data"), data]).output().expect("run tidepool-hub");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn the_load_tool_reports_a_converged_run_as_one_json_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (_hub, url) = start_hub(&data);
    let secret = data.join("secret");
    let token = Command::new(hub_binary())
        .args(["token", "--secret-file", secret.to_str().expect("utf-8"), "--sub", "load", "--db", "load"])
        .args(["--read", "*", "--write", "*"])
        .output()
        .expect("mint a token");
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    let token = String::from_utf8(token.stdout).expect("utf-8").trim().to_owned();

    let out = Command::new(LOAD)
        .args(["--url", &url, "--token", &token])
        .args(["--clients", "3", "--records", "10", "--ops", "60"])
        .output()
        .expect("run tidepool-load");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(report["ops"], 60);
    assert_eq!(report["converged"], true);
    assert_eq!(report["samples"], 60, "every write was seen by every other client");
    for field in ["seconds", "ops_per_s", "p50_ms", "p99_ms"] {
        assert!(report[field].as_f64().is_some_and(|v| v > 0.0), "{field}: {report}");
    }
    assert!(report["p99_ms"].as_f64() >= report["p50_ms"].as_f64());
    let records = hub_command(&["dump", "--db", "load", "--store", "records"], &data).lines().count();
    assert!((1..=10).contains(&records), "{records} records");
}
