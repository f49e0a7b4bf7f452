//! The bridge's memory does not grow with the store: a snapshot of 200,000 records, measured
//! from /proc while the bridge runs, stays below a fixed bound. (Not a timing test: the bound is
//! on bytes, and generous.)

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{client, hdfs, hub};
use tidepool_core::automerge::ActorId;
use tidepool_core::first_put::first_put;
use tidepool_core::{DocId, Key, StoreRef, object};

const RECORDS: usize = 200_000;
/// A replica of the store would take gigabytes (tens of KB per record); a page at a time takes
/// tens of MB.
const BOUND_KIB: u64 = 256 * 1024;

/// The peak resident set of a running process (`VmHWM`), in KiB.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_snapshot_runs_in_bounded_memory() {
    common::assert_runner_built();
    let tmp = tempfile::tempdir().expect("tmp");
    let (_hdfs, namenode) = hdfs(&tmp.path().join("dfs"));
    let (_hub, url) = hub(&tmp.path().join("hub"));
    let items = StoreRef::new("app", "items");

    // New records straight from their first change: the writer keeps no documents either.
    let writer = client(&url, &[]).await;
    let actor = ActorId::from([7u8; 16]);
    for i in 0..RECORDS {
        let key = Key::Number(i as f64);
        let value = object! {
            "group" => format!("g{}", i % 100),
            "amount" => (i % 1000) as i64,
            "title" => format!("record number {i}"),
            "done" => i % 3 == 0,
            "ratio" => i as f64 / 7.0
        };
        let change = first_put(&actor, &value, 0).expect("change");
        let encoded = key.encode().expect("key");
        writer.send_change(&items, DocId::from_encoded_key(&items, &encoded), &encoded, change.bytes).expect("send");
    }
    writer.wait_idle(Duration::from_secs(600)).await.expect("every record acknowledged");

    let base = format!("{namenode}/tidepool");
    let args = ["snapshot", "--hub", &url, "--token", "dev", "--db", "app", "--store", "items", "--to", &base, "--job", "big", "--run", "r1"];
    let mut bridge = Command::new(env!("CARGO_BIN_EXE_tidepool-bridge"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bridge");
    let pid = bridge.id();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = bridge.try_wait().expect("wait") {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut out = String::new();
    std::io::Read::read_to_string(bridge.stdout.as_mut().expect("stdout"), &mut out).expect("read");
    assert!(status.success(), "{out}");
    assert!(out.contains(&format!("\"records_in\":{RECORDS}")), "{out}");
    eprintln!("bridge peak RSS for a snapshot of {RECORDS} records: {} MiB", peak / 1024);
    assert!(peak > 0, "the bridge's memory was measured");
    assert!(peak < BOUND_KIB, "the bridge's peak RSS was {} MiB for {RECORDS} records", peak / 1024);
}
