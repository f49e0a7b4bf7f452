//! Peak memory of a hub holding many documents with a small cache: generates the documents
//! through the hub's own storage code, starts the real `tidepool-hub` binary on them, drives
//! random writes spread over all of them (so nearly every write loads a document and evicts
//! another), and reports the hub process's peak RSS as one JSON line.
//!
//! `make bench-hub-rss`. Knobs (environment): `RSS_DOCS` (default 1,000,000), `RSS_CACHE`
//! (10,000), `RSS_OPS` (50,000), `RSS_CLIENTS` (16), `RSS_DIR` (reuse a generated data directory).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;
use tidepool_core::automerge::ActorId;
use tidepool_core::wire::PeerId;
use tidepool_core::{Key, Record, StoreRef, object};
use tidepool_client::{Client, ClientOptions};
use tidepool_hub::storage::{Backend, LogRow, OpenMode, SqliteBackend};

const TARGET_MIB: f64 = 512.0;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

fn store() -> StoreRef {
    StoreRef::new("bench", "docs")
}

fn key(i: usize) -> Key {
    Key::String(format!("d{i:08}"))
}

/// Writes `docs` documents as the hub stores them after a push and an eviction: a log row and a
/// snapshot each, in transactions of 10,000. Goes through the backend directly, because going
/// through the cache would spend most of the time loading documents nobody reads.
fn generate(data: &Path, docs: usize) -> Result<()> {
    std::fs::create_dir_all(data)?;
    let mut backend = SqliteBackend::open(&data.join("hub.sqlite"), OpenMode::ReadWrite)?;
    let store = store();
    let actor = ActorId::from([42u8; 16]);
    let started = Instant::now();
    backend.begin()?;
    for i in 0..docs {
        let mut record = Record::new(&store, &key(i), &actor)?;
        let change = record.put(&object! { "n" => i as i64, "title" => format!("document {i}") }, 0)?;
        let Some(change) = change else { bail!("a put on a new record makes a change") };
        let seq = i as u64 + 1;
        let row = LogRow {
            seq,
            doc: record.id(),
            key: record.encoded_key().to_vec(),
            changes: vec![change.bytes],
            origin: PeerId([1; 16]),
            at_ms: 0,
        };
        backend.append(&store, &row)?;
        backend.put_snapshot(&store, record.id(), &record.save(), seq)?;
        if seq.is_multiple_of(10_000) {
            backend.commit()?;
            backend.begin()?;
            if seq.is_multiple_of(100_000) {
                eprintln!("generated {seq} documents in {:.0?}", started.elapsed());
            }
        }
    }
    backend.commit()?;
    Ok(())
}

fn status_kib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; this harness takes no arguments.
    let docs = env("RSS_DOCS", 1_000_000);
    let cache = env("RSS_CACHE", 10_000);
    let ops = env("RSS_OPS", 50_000);
    let clients = env("RSS_CLIENTS", 16).max(1);
    let temp = tempfile::tempdir()?;
    let data: PathBuf = match std::env::var_os("RSS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => temp.path().join("data"),
    };
    let started = Instant::now();
    if !data.join("hub.sqlite").exists() {
        eprintln!("generating {docs} documents in {}", data.display());
        generate(&data, docs)?;
    }
    let generate_s = started.elapsed().as_secs_f64();

    let mut hub = Command::new(env!("CARGO_BIN_EXE_tidepool-hub"))
        .args(["serve", "--listen", "127.0.0.1:0", "--insecure-dev", "--cache-docs", &cache.to_string(), "--data"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting tidepool-hub")?;
    let pid = hub.id();
    let stdout = hub.stdout.take().context("hub stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        match lines.next() {
            Some(line) => {
                if let Some(addr) = line?.strip_prefix("listening on ") {
                    break addr.trim().to_owned();
                }
            }
            None => bail!("the hub exited before listening"),
        }
    };
    let url = format!("ws://{addr}/v1/sync");
    let rss_start = status_kib(pid, "VmRSS:").unwrap_or(0.0) / 1024.0;

    let runtime = tokio::runtime::Runtime::new()?;
    let load_started = Instant::now();
    runtime.block_on(async {
        let writers: Vec<_> = (0..clients)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move {
                    let client = Arc::new(Client::connect(ClientOptions::new(url, "dev")));
                    let mut last = None;
                    for n in 0..ops / clients {
                        let i = rand::rng().random_range(0..docs);
                        last = client.put(&store(), &key(i), &object! { "n" => i as i64, "touched" => n as i64 })?.or(last);
                        if client.pending() > 64
                            && let Some(id) = last
                        {
                            client.wait_acked(id, Duration::from_secs(300)).await?;
                        }
                    }
                    client.wait_idle(Duration::from_secs(300)).await?;
                    anyhow::Ok(())
                })
            })
            .collect();
        for w in writers {
            w.await??;
        }
        anyhow::Ok(())
    })?;
    let load_s = load_started.elapsed().as_secs_f64();
    // The kernel's high-water mark: the peak over the hub's whole life, not a sample.
    let peak = status_kib(pid, "VmHWM:").unwrap_or(0.0) / 1024.0;
    let rss_end = status_kib(pid, "VmRSS:").unwrap_or(0.0) / 1024.0;
    let _ = hub.kill();
    let _ = hub.wait();
    let report = serde_json::json!({
        "docs": docs,
        "cache_docs": cache,
        "ops": ops,
        "clients": clients,
        "generate_s": (generate_s * 10.0).round() / 10.0,
        "ops_per_s": (ops as f64 / load_s).round(),
        "rss_start_mib": rss_start.round(),
        "rss_end_mib": rss_end.round(),
        "peak_rss_mib": peak.round(),
        "target_mib": TARGET_MIB,
        "within_target": peak < TARGET_MIB,
    });
    println!("{report}");
    Ok(())
}
