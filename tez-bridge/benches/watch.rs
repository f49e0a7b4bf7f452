//! Continuous-analytics benchmark (`make bench-watch`): the time from a user's edit to the
//! updated aggregate in another client, with `tidepool-bridge watch` (release builds of hub and
//! bridge, a real hub process, Tez), on a warm Tez session against a JVM per run (`--no-session`),
//! measured in the same run.
//!
//! A store of `WATCH_BENCH_RECORDS` records (default 10,000) in 10 groups; an aggregate job
//! (count and sum per group). Each edit adds 1 to one record's `amount` through one client and is
//! timed until another client, subscribed to the results store, sees that group's new sum.
//! `WATCH_BENCH_EDITS` edits (default 20) on the warm session, a quarter as many (at least 3)
//! cold. In local mode (a local run directory), and, unless `WATCH_BENCH_YARN=0`, on the YARN
//! test cluster (a MiniTezCluster with 2 NodeManagers over 2 DataNodes; needs the runner's test
//! build, `mvn test-compile` and `target/test-lib`).
//!
//! Prints a readable line and a `BENCH {json}` line per figure: p50 and p99 seconds and the
//! warm/cold ratio of the p50s.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tidepool_client::{Client, ClientOptions};
use tidepool_core::{Key, Patch, StoreRef, Value, object};
use tidepool_tez_bridge::test_cluster::{self, Running, start_announced};

const WAIT: Duration = Duration::from_secs(600);
const GROUPS: usize = 10;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    let records = env("WATCH_BENCH_RECORDS", 10_000);
    let edits = env("WATCH_BENCH_EDITS", 20);
    let yarn = env("WATCH_BENCH_YARN", 1) != 0;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let runner = root.join("jvm/target");
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let local_base = tmp.path().join("runs");
    rt.block_on(bench_mode("local", records, edits, &local_base.display().to_string(), None, tmp.path()));
    if yarn {
        let (cluster, conf, hdfs) = test_cluster::yarn(&runner, &tmp.path().join("yarn"));
        rt.block_on(bench_mode("yarn", records, edits, &format!("{hdfs}/tidepool"), Some(&conf), tmp.path()));
        drop(cluster);
    }
}

fn bin_dir() -> PathBuf {
    // Benchmarks live in target/release/deps; the binaries one level up.
    let exe = std::env::current_exe().expect("exe");
    exe.parent().and_then(Path::parent).expect("target dir").to_owned()
}

fn percentile(xs: &[f64], p: f64) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    let rank = ((p * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

async fn bench_mode(mode: &str, records: usize, edits: usize, base: &str, conf: Option<&Path>, tmp: &Path) {
    let mut hub_cmd = Command::new(bin_dir().join("tidepool-hub"));
    hub_cmd.args(["serve", "--listen", "127.0.0.1:0", "--insecure-dev", "--data"]).arg(tmp.join(format!("hub-{mode}")));
    let (hub, addr) = start_announced(hub_cmd, "listening on ");
    let url = format!("ws://{addr}/v1/sync");
    let source = StoreRef::new("app", "items");
    let writer = Client::connect(ClientOptions::new(&url, "dev"));
    writer.subscribe(source.clone());
    writer.wait_connected(WAIT).await.expect("connected");
    writer.wait_idle(WAIT).await.expect("idle");
    let started = Instant::now();
    for i in 0..records {
        let v = object! { "group" => format!("g{}", i % GROUPS), "amount" => (i % 100) as i64, "title" => format!("record {i}") };
        writer.put(&source, &Key::Number(i as f64), &v).expect("put");
    }
    writer.wait_idle(WAIT).await.expect("idle");
    eprintln!("{mode}: {records} records written in {:.1}s", started.elapsed().as_secs_f64());
    // Sums per group as the writer holds them.
    let mut amounts: Vec<i64> = (0..records).map(|i| (i % 100) as i64).collect();

    let mut p50s = Vec::new();
    for (variant, n) in [("warm", edits), ("cold", (edits / 4).max(3))] {
        let results = StoreRef::new("app", &format!("sums_{mode}_{variant}"));
        let job = tmp.join(format!("{mode}-{variant}.toml"));
        let tez = match conf {
            Some(c) => format!("\n[tez]\nconf_dir = \"{}\"\n", c.display()),
            None => String::new(),
        };
        std::fs::write(
            &job,
            format!(
                "name = \"lat-{mode}-{variant}\"\nhub = \"{url}\"\ntoken = \"dev\"\ndb = \"app\"\nstore = \"items\"\nbase = \"{base}\"\n\n[dag]\nkind = \"aggregate\"\ngroup_by = [\"group\"]\naggregates = [\"count\", \"sum:amount\"]\nresults_store = \"{}\"\n{tez}",
                results.store
            ),
        )
        .expect("job file");
        let reader = Client::connect(ClientOptions::new(&url, "dev"));
        reader.subscribe(results.clone());
        reader.wait_connected(WAIT).await.expect("connected");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidepool-bridge"));
        cmd.args(["watch", "--debounce-ms", "200", "--job"]).arg(&job);
        if variant == "cold" {
            cmd.arg("--no-session");
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).stdin(Stdio::null()).spawn().expect("bridge");
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("  bridge: {line}");
            }
        });
        let bridge = Running(child);
        let sum_of = |g: usize| -> Option<i64> {
            let v = reader.get(&results, &Key::from(format!("g{g}").as_str())).ok().flatten();
            match v {
                Some(Value::Object(f)) => match f.get("sum_amount") {
                    Some(Value::Int(s)) => Some(*s),
                    _ => None,
                },
                _ => None,
            }
        };
        let expected = |amounts: &[i64], g: usize| amounts.iter().enumerate().filter(|(i, _)| i % GROUPS == g).map(|(_, a)| a).sum::<i64>();
        wait_for(|| (0..GROUPS).all(|g| sum_of(g) == Some(expected(&amounts, g)))).await;
        let mut latencies = Vec::with_capacity(n);
        for e in 0..n {
            let key = (e * 7919) % records;
            amounts[key] += 1;
            let (g, want) = (key % GROUPS, expected(&amounts, key % GROUPS));
            let t0 = Instant::now();
            writer.update(&source, &Key::Number(key as f64), &Patch::new().set("amount", Value::Int(amounts[key]))).expect("update");
            wait_for(|| sum_of(g) == Some(want)).await;
            latencies.push(t0.elapsed().as_secs_f64());
            // The next edit is a new one, not part of the same burst.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        drop(bridge);
        reader.close().await;
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        eprintln!("{mode} {variant}: edit to result p50 {p50:.2}s p99 {p99:.2}s over {n} edits");
        println!(
            "BENCH {}",
            json!({ "section": "bench-watch", "figure": "edit_to_result", "mode": mode, "variant": variant, "records": records, "edits": n, "p50_s": p50, "p99_s": p99 })
        );
        p50s.push(p50);
    }
    let ratio = p50s[0] / p50s[1];
    eprintln!("{mode}: warm/cold p50 {ratio:.2}");
    println!("BENCH {}", json!({ "section": "bench-watch", "figure": "warm_over_cold", "mode": mode, "records": records, "ratio_p50": ratio }));
    writer.close().await;
    drop(hub);
}

/// Polls `f` every 20 ms, up to ten minutes.
async fn wait_for(f: impl Fn() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < WAIT, "timed out waiting for results");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
