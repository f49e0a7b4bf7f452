//! Several hubs on one PostgreSQL, beside one hub on SQLite, in the same run: writes per second
//! and p99 visibility with 1, 2 and 3 hubs over 30 databases (clients spread over the hubs, so
//! most are relayed to the owner), then the time from `kill -9` of a database's owner to a
//! client writing again (default lease, 10 s).
//!
//! `make bench-hub-pg` (`cargo bench -p tidepool-hub --bench pg`). A real PostgreSQL from
//! Debian's packages is started in a temporary directory. Knobs (environment): `PG_DBS`
//! (default 30), `PG_OPS` (writes per database, default 200), `PG_CLIENTS` (per database, 2).
//! Prints a Markdown table and one JSON line. Figures are ratios against the SQLite hub
//! measured in the same run: the machine is shared and absolute rates move.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pg::PgServer;
use common::*;
use tidepool_client::load::{LoadOptions, run};
use tidepool_client::{ChangeState, Client, ClientOptions};
use tidepool_core::{Key, StoreRef, object};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Figures {
    label: String,
    writes_per_s: f64,
    p99_median_ms: f64,
    p99_worst_ms: f64,
}

fn start_pg_hubs(dir: &TestDir, url: &str, n: usize, lease: &str) -> Vec<HubProcess> {
    (0..n)
        .map(|i| {
            let secret = dir.secret();
            HubProcess::start(
                &dir.dir.path().join(format!("pg-hub{i}")),
                &["--secret-file", secret.to_str().expect("utf-8"), "--storage", url, "--lease-ttl", lease],
            )
        })
        .collect()
}

async fn load(label: &str, hubs: &[HubProcess]) -> Figures {
    let (dbs, ops, clients) = (env("PG_DBS", 30), env("PG_OPS", 200), env("PG_CLIENTS", 2));
    let started = Instant::now();
    let runs: Vec<_> = (0..dbs)
        .map(|i| {
            let db = format!("bench{i}");
            let options = LoadOptions {
                url: hubs[i % hubs.len()].url(),
                token: full_token(&db),
                clients,
                records: 50,
                ops,
                window: 8,
                store: StoreRef::new(db, "records"),
                timeout: Duration::from_secs(300),
            };
            tokio::spawn(run(options))
        })
        .collect();
    let mut p99s = Vec::new();
    let mut total = 0;
    for r in runs {
        let report = r.await.expect("load task").expect("load run");
        assert!(report.converged, "{label}: a database did not converge");
        total += report.ops;
        p99s.push(report.p99_ms);
    }
    let seconds = started.elapsed().as_secs_f64();
    p99s.sort_by(f64::total_cmp);
    let figures = Figures {
        label: label.to_owned(),
        writes_per_s: total as f64 / seconds,
        p99_median_ms: p99s[p99s.len() / 2],
        p99_worst_ms: p99s[p99s.len() - 1],
    };
    eprintln!(
        "{label}: {total} writes over {dbs} databases in {seconds:.1} s = {:.0}/s, p99 median {:.1} ms, worst {:.1} ms",
        figures.writes_per_s, figures.p99_median_ms, figures.p99_worst_ms
    );
    figures
}

/// Kills the owner of a busy database; returns the time until a write issued after the kill
/// is acknowledged.
async fn failover(server: &PgServer, dir: &TestDir) -> Duration {
    let url = server.fresh_db();
    let mut hubs = start_pg_hubs(dir, &url, 3, "10s");
    let db = "failover";
    let store = StoreRef::new(db, "items");
    let probe = Arc::new(Client::connect(ClientOptions::new(hubs[0].url(), full_token(db))));
    probe.subscribe(store.clone());
    probe.wait_idle(Duration::from_secs(60)).await.expect("idle");
    let owner = hubs.iter().position(|h| h.metric("tidepool_owned_databases") == 1.0).expect("an owner");
    let via = (owner + 1) % 3;
    let mut options = ClientOptions::new(hubs[via].url(), full_token(db));
    options.max_backoff = Duration::from_millis(200);
    let writer = Client::connect(options);
    writer.subscribe(store.clone());
    writer.wait_idle(Duration::from_secs(60)).await.expect("idle");
    for i in 0..50 {
        writer.put(&store, &Key::from(format!("before{i}").as_str()), &object! { "i" => i as i64 }).expect("put");
    }
    writer.wait_idle(Duration::from_secs(60)).await.expect("idle");
    hubs[owner].kill9();
    let killed = Instant::now();
    let mut i = 0;
    loop {
        let id = writer.put(&store, &Key::from(format!("after{i}").as_str()), &object! { "i" => i as i64 }).expect("put");
        i += 1;
        let id = id.expect("a change");
        if writer.wait_acked(id, Duration::from_millis(100)).await.ok() == Some(ChangeState::Acked) {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(120), "no hub took over");
    }
    killed.elapsed()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let server = PgServer::start();
    let dir = TestDir::new();
    let mut figures = Vec::new();
    {
        let hub = dir.start(&[]);
        figures.push(load("SQLite, 1 hub", std::slice::from_ref(&hub)).await);
    }
    for n in 1..=3 {
        let url = server.fresh_db();
        let hubs = start_pg_hubs(&dir, &url, n, "10s");
        figures.push(load(&format!("PostgreSQL, {n} hub{}", if n > 1 { "s" } else { "" }), &hubs).await);
    }
    let resumed = failover(&server, &dir).await;
    let base = figures[0].writes_per_s;
    println!("| storage | writes/s | vs SQLite | p99 visibility, median db (ms) | worst db (ms) |");
    println!("|---|---|---|---|---|");
    for f in &figures {
        println!(
            "| {} | {:.0} | {:.2} | {:.1} | {:.1} |",
            f.label,
            f.writes_per_s,
            f.writes_per_s / base,
            f.p99_median_ms,
            f.p99_worst_ms
        );
    }
    println!("\nkill -9 of an owner (lease 10 s) to a write acknowledged again: {:.1} s", resumed.as_secs_f64());
    let json: Vec<String> = figures
        .iter()
        .map(|f| format!("{{\"label\":\"{}\",\"writes_per_s\":{:.1},\"p99_ms\":{:.1}}}", f.label, f.writes_per_s, f.p99_median_ms))
        .collect();
    println!("{{\"runs\":[{}],\"failover_s\":{:.2}}}", json.join(","), resumed.as_secs_f64());
}
