//! Bridge benchmark (`make bench-bridge`): the whole path a user waits for, with release builds
//! of the hub and the bridge, a real MiniDFSCluster and Tez local mode, at several store sizes
//! (`BRIDGE_BENCH_SIZES`, default 10000,100000,1000000; records of 5 fields).
//!
//! For each size, on a fresh hub holding the store (`BRIDGE_BENCH_RUN=0`: the snapshot only):
//! - `tidepool-bridge snapshot`, timed from process start to exit (connect, export, HDFS write),
//!   against a raw hdfs-native write of the same bytes (the snapshot's two files, read back) in
//!   the same round; rounds interleaved, medians reported. Peak RSS of the bridge (`VmHWM`) and
//!   of the hub during the snapshot (its peak reset through `/proc/<pid>/clear_refs` first), and
//!   the CPU seconds each used for it.
//! - `tidepool-bridge run` of an enrich job: wall time, the phase split from the run's state,
//!   the bridge's peak RSS and write-back changes per second (changes sent / push seconds).
//!
//! Prints a readable line and a `BENCH {json}` line per figure. `BRIDGE_BENCH_KEEP=<dir>` keeps
//! the filled hubs there for the next run (for repeated snapshot-only runs).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use tidepool_client::{Client, ClientOptions};
use tidepool_core::automerge::ActorId;
use tidepool_core::first_put::first_put;
use tidepool_core::{DocId, Key, StoreRef, object};
use tidepool_tez_bridge::fs::RunFs;
use tidepool_tez_bridge::run::RunState;
use tidepool_tez_bridge::test_cluster::{self, Running, start_announced};

const WAIT: Duration = Duration::from_secs(3600);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("BRIDGE_BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BRIDGE_BENCH_SIZES: comma-separated record counts"))
        .collect();
    let rounds: usize = std::env::var("BRIDGE_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().expect("tmp");
    let (cluster, namenode) = test_cluster::hdfs(&root.join("jvm/target"), &tmp.path().join("dfs"));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    for n in sizes {
        rt.block_on(bench_size(n, rounds, &namenode, tmp.path()));
    }
    drop(cluster);
}

fn bin_dir() -> PathBuf {
    // Benchmarks live in target/release/deps; the binaries one level up.
    let exe = std::env::current_exe().expect("exe");
    exe.parent().and_then(Path::parent).expect("target dir").to_owned()
}

/// The peak resident set (`VmHWM`) of a process, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// CPU seconds (user and system) a process used so far, from `/proc/<pid>/stat` (clock ticks
/// of 1/100 s, as Linux reports them to user space).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Resets a process's peak RSS to its current RSS.
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// Runs the bridge to completion, sampling its peak RSS and CPU time; (wall seconds, peak KiB,
/// CPU seconds, stdout).
async fn timed_bridge(args: &[&str]) -> (f64, u64, f64, String) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidepool-bridge"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bridge");
    let pid = child.id();
    let (mut peak, mut cpu) = (0, 0.0f64);
    let status = loop {
        peak = peak.max(peak_kib(pid));
        cpu = cpu.max(cpu_secs(pid));
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let secs = started.elapsed().as_secs_f64();
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(status.success(), "bridge {args:?} failed:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (secs, peak, cpu, stdout)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn bench_line(value: serde_json::Value) {
    println!("BENCH {value}");
}

async fn fill(url: &str, store: &StoreRef, n: usize) -> f64 {
    let started = Instant::now();
    let writer = Client::connect(ClientOptions::new(url, "dev"));
    writer.wait_connected(WAIT).await.expect("connected");
    let actor = ActorId::from([3u8; 16]);
    for i in 0..n {
        let value = object! {
            "group" => format!("g{}", i % 100),
            "amount" => (i % 1000) as i64,
            "title" => format!("record number {i}"),
            "done" => i % 3 == 0,
            "ratio" => i as f64 / 7.0
        };
        let change = first_put(&actor, &value, 0).expect("change");
        let key = Key::Number(i as f64).encode().expect("key");
        writer.send_change(store, DocId::from_encoded_key(store, &key), &key, change.bytes).expect("send");
        if i % 50_000 == 49_999 {
            // Keep the outbox (and this process) small.
            writer.wait_idle(WAIT).await.expect("acknowledged");
        }
    }
    writer.wait_idle(WAIT).await.expect("acknowledged");
    writer.close().await;
    started.elapsed().as_secs_f64()
}

async fn bench_size(n: usize, rounds: usize, namenode: &str, tmp: &Path) {
    // `BRIDGE_BENCH_KEEP=<dir>` keeps each size's filled hub there and reuses it (a snapshot-only
    // bench, `BRIDGE_BENCH_RUN=0`, leaves the store as filled).
    let kept = std::env::var_os("BRIDGE_BENCH_KEEP").map(PathBuf::from);
    let data = kept.as_ref().map_or_else(|| tmp.join(format!("hub-{n}")), |k| k.join(format!("hub-{n}")));
    let filled_mark = data.join("filled");
    let mut cmd = Command::new(bin_dir().join("tidepool-hub"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--insecure-dev", "--data"]).arg(&data);
    let (hub, addr): (Running, String) = start_announced(cmd, "listening on ");
    let hub_pid = hub.0.id();
    let url = format!("ws://{addr}/v1/sync");
    let store = StoreRef::new("bench", "items");
    if kept.is_some() && filled_mark.exists() {
        eprintln!("{n} records: hub kept from an earlier run in {}", data.display());
    } else {
        let filled = fill(&url, &store, n).await;
        eprintln!("{n} records: hub filled in {filled:.1}s ({:.0} records/s)", n as f64 / filled);
        if kept.is_some() {
            std::fs::write(&filled_mark, b"").expect("mark the kept hub filled");
        }
    }

    let base = format!("{namenode}/bench-{n}");
    let fs = RunFs::open(&base).expect("hdfs");
    let (mut ours, mut raw, mut bridge_cpus, mut hub_cpus) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut bridge_peak, mut hub_peak, mut bytes, mut docs_bytes) = (0, 0, 0, 0);
    for round in 0..rounds {
        reset_peak(hub_pid);
        let run = format!("s{round}");
        let hub_cpu_before = cpu_secs(hub_pid);
        let (secs, peak, bridge_cpu, _) =
            timed_bridge(&["snapshot", "--hub", &url, "--token", "dev", "--db", "bench", "--store", "items", "--to", &base, "--job", "snap", "--run", &run])
                .await;
        hub_cpus.push(cpu_secs(hub_pid) - hub_cpu_before);
        bridge_cpus.push(bridge_cpu);
        ours.push(secs);
        bridge_peak = bridge_peak.max(peak);
        hub_peak = hub_peak.max(peak_kib(hub_pid));
        // The same bytes: both files a snapshot streams (the part file and the list of its
        // documents' heads), written side by side as the snapshot writes them.
        let lines = fs.read(&format!("snap/{run}/input/part-00000.jsonl")).await.expect("part file");
        let docs = fs.read(&format!("snap/{run}/input/_manifest_docs.jsonl")).await.expect("docs file");
        (bytes, docs_bytes) = (lines.len(), docs.len());
        let started = Instant::now();
        let (lines_rel, docs_rel) = (format!("raw/{round}/part-00000.jsonl"), format!("raw/{round}/_manifest_docs.jsonl"));
        let (a, b) = tokio::join!(fs.write(&lines_rel, [Bytes::clone(&lines)]), fs.write(&docs_rel, [Bytes::clone(&docs)]));
        a.and(b).expect("raw write");
        raw.push(started.elapsed().as_secs_f64());
        drop((lines, docs));
        fs.delete(&format!("raw/{round}")).await.expect("clean");
    }
    let (ours, raw, bridge_cpu, hub_cpu) = (median(ours), median(raw), median(bridge_cpus), median(hub_cpus));
    println!(
        "bridge snapshot of {n} records ({:.1} MiB of records, {:.1} MiB of document heads), hub state to HDFS: {ours:.2}s, raw hdfs-native write of the same bytes {raw:.2}s, {:.2}x of raw; peak RSS bridge {} MiB, hub {} MiB; CPU bridge {bridge_cpu:.2}s, hub {hub_cpu:.2}s (medians of {rounds})",
        bytes as f64 / 1048576.0,
        docs_bytes as f64 / 1048576.0,
        raw / ours,
        bridge_peak / 1024,
        hub_peak / 1024
    );
    bench_line(json!({
        "figure": "snapshot", "records": n, "bytes": bytes, "docs_bytes": docs_bytes, "rounds": rounds,
        "seconds": ours, "raw_seconds": raw, "ratio_of_raw": raw / ours,
        "bridge_peak_mib": bridge_peak as f64 / 1024.0, "hub_peak_mib": hub_peak as f64 / 1024.0,
        "bridge_cpu_seconds": bridge_cpu, "hub_cpu_seconds": hub_cpu,
    }));

    // A whole run: snapshot, Tez, write-back of one field per record (`BRIDGE_BENCH_RUN=0`
    // measures snapshots only).
    if std::env::var("BRIDGE_BENCH_RUN").is_ok_and(|v| v == "0") {
        drop(hub);
        if kept.is_none() {
            let _ = std::fs::remove_dir_all(&data);
        }
        return;
    }
    let job = tmp.join(format!("enrich-{n}.toml"));
    std::fs::write(
        &job,
        format!(
            "name = \"enrich\"\nhub = \"{url}\"\ntoken = \"dev\"\ndb = \"bench\"\nstore = \"items\"\nbase = \"{base}\"\n\n[dag]\nkind = \"enrich\"\n[dag.fields]\nscore = \"amount * 2\"\n"
        ),
    )
    .expect("job file");
    reset_peak(hub_pid);
    let hub_cpu_before = cpu_secs(hub_pid);
    let (wall, peak, bridge_cpu, out) = timed_bridge(&["run", "--job", job.to_str().expect("path"), "--run", "r1"]).await;
    let hub_run_peak = peak_kib(hub_pid);
    let hub_cpu = cpu_secs(hub_pid) - hub_cpu_before;
    let state_bytes = fs.read("enrich/r1/_state.json").await.expect("state");
    let state: RunState = serde_json::from_slice(&state_bytes).expect("state json");
    let written = state.changes_written.unwrap_or(0);
    let push = state.seconds.get("push").copied().unwrap_or(f64::NAN);
    let per_sec = written as f64 / push;
    let phases: Vec<String> = ["snapshot", "export", "hdfs-write", "tez", "output-parse", "push", "write-back"]
        .iter()
        .filter_map(|p| state.seconds.get(*p).map(|s| format!("{p} {s:.2}s")))
        .collect();
    println!(
        "bridge run (enrich) of {n} records: {wall:.2}s wall ({}); {written} changes written back, {per_sec:.0} changes/s; peak RSS bridge {} MiB, hub {} MiB; CPU bridge {bridge_cpu:.1}s, hub {hub_cpu:.1}s (the DAG runner's JVM apart)",
        phases.join(", "),
        peak / 1024,
        hub_run_peak / 1024
    );
    eprintln!("{}", out.trim());
    let mut line = json!({
        "figure": "run", "records": n, "wall_seconds": wall,
        "changes_written": written, "write_back_changes_per_second": per_sec,
        "bridge_peak_mib": peak as f64 / 1024.0, "hub_peak_mib": hub_run_peak as f64 / 1024.0,
        "bridge_cpu_seconds": bridge_cpu, "hub_cpu_seconds": hub_cpu,
    });
    for (phase, secs) in &state.seconds {
        line[format!("{phase}_seconds")] = json!(secs);
    }
    bench_line(line);
    fs.delete("").await.expect("clean the size's runs");
    drop(hub);
    // A kept hub holds the run's write-back now, so it is no longer the store as filled.
    let _ = std::fs::remove_dir_all(&data);
}
