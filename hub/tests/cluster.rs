//! Three hub processes on one real PostgreSQL server: every database is owned by one hub at a
//! time and the others relay to it; clients converge whichever hub they connect to; killing
//! an owner under load loses no acknowledged write; a stopped owner is fenced once another hub
//! took its database over; an owner stopped cleanly hands its databases over at once.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::pg::PgServer;
use common::*;
use tidepool_client::{ChangeState, Client, ClientOptions, converge};
use tidepool_core::wire::{DocData, ErrorCode, Message, Payload};
use tidepool_core::{Key, StoreRef, object};

/// A cap, not a target: takeovers and catch-up are slower on a loaded machine.
const WAIT: Duration = Duration::from_secs(120);
/// Short, so takeovers happen within the tests' patience.
const LEASE: &str = "2s";

fn store(db: &str) -> StoreRef {
    StoreRef::new(db, "items")
}

struct Group {
    _dir: TestDir,
    hubs: Vec<HubProcess>,
    url: String,
}

fn start_group(server: &PgServer, n: usize) -> Group {
    start_group_with(server, n, LEASE)
}

fn start_group_with(server: &PgServer, n: usize, lease: &str) -> Group {
    let dir = TestDir::new();
    let url = server.admin_url();
    let hubs = (0..n)
        .map(|i| {
            let data = dir.dir.path().join(format!("hub{i}"));
            let secret = dir.secret();
            let id = format!("hub{i}");
            HubProcess::start(
                &data,
                &["--secret-file", secret.to_str().expect("utf-8"), "--storage", &url, "--lease-ttl", lease, "--hub-id", &id],
            )
        })
        .collect();
    Group { _dir: dir, hubs, url }
}

impl Group {
    /// Hubs owning `db` (by the `owned` list each hub's metrics give through the gauge total).
    fn owned_total(&self) -> f64 {
        self.hubs.iter().map(|h| h.metric("tidepool_owned_databases")).sum()
    }
}

fn client(url: &str, db: &str) -> Arc<Client> {
    let mut options = ClientOptions::new(url, full_token(db));
    options.max_backoff = Duration::from_millis(300);
    let c = Arc::new(Client::connect(options));
    c.subscribe(store(db));
    c
}

/// `tidepool-hub dump --storage URL`.
fn dump_pg(url: &str, db: &str) -> BTreeSet<String> {
    let out = std::process::Command::new(BIN)
        .args(["dump", "--storage", url, "--db", db, "--store", "items"])
        .output()
        .expect("run dump");
    assert!(out.status.success(), "dump failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line")["key"].as_str().expect("key").to_owned())
        .collect()
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_one_and_of_many_databases_converge_across_three_hubs() {
    let server = PgServer::start();
    let group = start_group(&server, 3);

    // One database, a client on every hub: two of them are relayed to the owner.
    let clients: Vec<Arc<Client>> = group.hubs.iter().map(|h| client(&h.url(), "shared")).collect();
    for (i, c) in clients.iter().enumerate() {
        for k in 0..5 {
            c.put(&store("shared"), &Key::from(format!("c{i}-{k}").as_str()), &object! { "by" => i as i64 }).expect("put");
        }
    }
    assert!(converge(&clients, &store("shared"), WAIT).await, "clients of one database diverge");
    assert_eq!(clients[0].values(&store("shared")).len(), 15);
    let relayed: f64 = group.hubs.iter().map(|h| h.metric("tidepool_relayed_connections_total")).sum();
    assert!(relayed >= 2.0, "{relayed} connections relayed");
    assert_eq!(dump_pg(&group.url, "shared").len(), 15, "dump reads PostgreSQL");

    // Many databases, each with clients on two different hubs.
    let dbs: Vec<String> = (0..12).map(|i| format!("db{i}")).collect();
    let mut per_db = Vec::new();
    for (i, db) in dbs.iter().enumerate() {
        let pair = vec![client(&group.hubs[i % 3].url(), db), client(&group.hubs[(i + 1) % 3].url(), db)];
        for (j, c) in pair.iter().enumerate() {
            for k in 0..3 {
                c.put(&store(db), &Key::from(format!("{j}-{k}").as_str()), &object! { "db" => i as i64 }).expect("put");
            }
        }
        per_db.push(pair);
    }
    for (db, pair) in dbs.iter().zip(&per_db) {
        assert!(converge(pair, &store(db), WAIT).await, "clients of {db} diverge");
        assert_eq!(pair[0].values(&store(db)).len(), 6, "{db}");
    }
    // Every database has exactly one owner, and the owners are spread.
    wait_until("13 owned databases", || group.owned_total() == 13.0).await;
    let owning = group.hubs.iter().filter(|h| h.metric("tidepool_owned_databases") > 0.0).count();
    assert!(owning >= 2, "only {owning} hub owns databases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_owner_under_load_loses_no_acknowledged_write() {
    let server = PgServer::start();
    let mut group = start_group(&server, 3);
    let db = "busy";
    // A first client makes some hub take the database; then the writers connect to the others.
    let probe = client(&group.hubs[0].url(), db);
    probe.wait_idle(WAIT).await.expect("idle");
    let owner = group.hubs.iter().position(|h| h.metric("tidepool_owned_databases") == 1.0).expect("an owner");
    let others: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    let clients: Vec<Arc<Client>> = (0..4).map(|i| client(&group.hubs[others[i % 2]].url(), db)).collect();
    for c in &clients {
        c.wait_idle(WAIT).await.expect("idle");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(w, c)| {
            let (c, stop) = (c.clone(), stop.clone());
            tokio::spawn(async move {
                let mut written = HashMap::new();
                let mut i = 0u64;
                while !stop.load(Relaxed) {
                    let key = format!("w{w}-{i:05}");
                    let id = c.put(&store("busy"), &Key::from(key.as_str()), &object! { "w" => w as i64 }).expect("put");
                    written.insert(id.expect("a change"), key);
                    i += 1;
                    // A bounded backlog: the test is about the takeover, not about draining it.
                    tokio::time::sleep(Duration::from_millis(if c.pending() > 32 { 20 } else { 2 })).await;
                }
                written
            })
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    while group.hubs[owner].metric("tidepool_changes_applied_total") < 200.0 {
        assert!(Instant::now() < deadline, "no load reached the owner");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    group.hubs[owner].kill9();
    let killed = Instant::now();
    // Writing goes on through the survivors once one of them took the lease.
    let before: u64 = clients.iter().map(|c| c.connections()).sum();
    wait_until("a takeover", || others.iter().any(|i| group.hubs[*i].metric("tidepool_owned_databases") == 1.0)).await;
    let took_over = killed.elapsed();
    stop.store(true, Relaxed);
    let mut acked = BTreeSet::new();
    let mut all = BTreeSet::new();
    for (writer, c) in writers.into_iter().zip(&clients) {
        for (id, key) in writer.await.expect("writer") {
            if c.state_of(id) == ChangeState::Acked {
                acked.insert(key.clone());
            }
            all.insert(key);
        }
    }
    assert!(acked.len() >= 200, "only {} acknowledged before the kill", acked.len());
    let converged = converge(&clients, &store(db), WAIT).await;
    let states: Vec<(usize, bool, usize)> =
        clients.iter().map(|c| (c.pending(), c.is_connected(), c.values(&store(db)).len())).collect();
    if !converged {
        for i in &others {
            let log = group.hubs[*i].log_text();
            let lines: Vec<&str> = log.lines().filter(|l| !l.contains("NOTICE") && !l.contains("cannot reach")).collect();
            eprintln!("---- hub {i}\n{}", lines[lines.len().saturating_sub(30)..].join("\n"));
        }
    }
    assert!(converged, "clients diverge after the takeover: (pending, connected, records) {states:?}");
    assert!(clients.iter().map(|c| c.connections()).sum::<u64>() > before, "clients reconnected");
    eprintln!("converged after {:?}", killed.elapsed());
    let stored = dump_pg(&group.url, db);
    let lost: Vec<&String> = acked.iter().filter(|k| !stored.contains(*k)).collect();
    assert!(lost.is_empty(), "{} acknowledged writes lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    assert_eq!(stored, all, "every write, acknowledged before the kill or not, is stored once resent");
    eprintln!("takeover after {took_over:?}; {} acknowledged writes before the kill, none lost", acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_owner_is_fenced_once_another_hub_took_its_database() {
    let server = PgServer::start();
    let group = start_group(&server, 3);
    let db = "fenced";
    let token = full_token(db);
    // Find the owner, then talk to it directly (no relay, no reconnects).
    let probe = client(&group.hubs[0].url(), db);
    probe.wait_idle(WAIT).await.expect("idle");
    let owner = group.hubs.iter().position(|h| h.metric("tidepool_owned_databases") == 1.0).expect("an owner");
    let mut ws = authed(&group.hubs[owner].url(), &token).await;
    let doc = |key: &str| {
        let (doc, key, change) = change(&store(db), key, &object! { "ok" => true });
        DocData { doc, key, payload: Payload::Changes(vec![change]) }
    };
    send(&mut ws, tidepool_core::wire::encode(&Message::Push { batch: 1, store: store(db), docs: vec![doc("before")] })).await;
    assert!(matches!(next(&mut ws).await, Some(Message::Ack { batch: 1, .. })), "the owner acknowledges");

    let pid = group.hubs[owner].pid().to_string();
    let signal = |sig: &str| assert!(std::process::Command::new("kill").args([sig, &pid]).status().expect("kill").success());
    signal("-STOP");
    // The push waits in the stopped hub's socket while another hub takes the lease over.
    send(&mut ws, tidepool_core::wire::encode(&Message::Push { batch: 2, store: store(db), docs: vec![doc("stopped")] })).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    let taken = tokio::time::timeout(WAIT, async {
        while !others.iter().any(|i| group.hubs[*i].metric("tidepool_owned_databases") == 1.0) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    signal("-CONT");
    assert!(taken.is_ok(), "no hub took the database over");

    // The old owner refuses: an error (storage refused by the fence, or the lease gone), never an ack.
    let ending = ending(&mut ws, WAIT).await;
    assert!(
        !ending.messages.iter().any(|m| matches!(m, Message::Ack { batch: 2, .. })),
        "a fenced hub acknowledged: {:?}",
        ending.messages
    );
    assert!(
        matches!(ending.error(), Some((ErrorCode::Internal | ErrorCode::ShuttingDown, _))),
        "{:?}",
        ending.messages
    );
    // The old owner found out: its lease counts as lost (and it stopped serving the database).
    // Whether it owns it at this point is not checked: rendezvous hashing still picks it, so the
    // new holder hands the database back, under a new fencing number, as soon as it sees it live.
    wait_until("the old owner to notice", || group.hubs[owner].metric("tidepool_leases_lost_total") >= 1.0).await;
    eprintln!(
        "fenced hub: {:?}, storage failures {}",
        ending.error(),
        group.hubs[owner].metric("tidepool_storage_failures_total")
    );
    let stored = dump_pg(&group.url, db);
    assert!(stored.contains("before"), "{stored:?}");
    assert!(!stored.contains("stopped"), "a write of the fenced hub is visible: {stored:?}");
    // The database is served by its new owner, through any hub.
    let after = client(&group.hubs[owner].url(), db);
    after.put(&store(db), &Key::from("after"), &object! { "ok" => true }).expect("put");
    after.wait_idle(WAIT).await.expect("the new owner serves the database");
    assert!(dump_pg(&group.url, db).contains("after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_stopped_with_sigterm_hands_its_database_over_at_once() {
    // A lease far longer than the test's patience: a takeover within WAIT can only come from
    // the stopping hub releasing its lease, never from the lease expiring.
    const LONG_LEASE: &str = "600s";
    let server = PgServer::start();
    let mut group = start_group_with(&server, 3, LONG_LEASE);
    let db = "handover";
    let probe = client(&group.hubs[0].url(), db);
    probe.put(&store(db), &Key::from("before"), &object! { "ok" => true }).expect("put");
    probe.wait_idle(WAIT).await.expect("idle");
    let owner = group.hubs.iter().position(|h| h.metric("tidepool_owned_databases") == 1.0).expect("an owner");
    let others: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    // Clients on both other hubs, relayed to the owner.
    let clients: Vec<Arc<Client>> = others.iter().map(|i| client(&group.hubs[*i].url(), db)).collect();
    assert!(converge(&clients, &store(db), WAIT).await, "clients diverge before the stop");

    let status = group.hubs[owner].terminate(WAIT);
    assert!(status.success(), "a clean stop: {status:?}\n{}", group.hubs[owner].log_text());
    assert!(group.hubs[owner].log_text().contains("lease handed over"), "{}", group.hubs[owner].log_text());
    wait_until("a survivor to take the database", || {
        others.iter().any(|i| group.hubs[*i].metric("tidepool_owned_databases") == 1.0)
    })
    .await;
    // Both clients write again, through whichever hub they are on, and converge.
    for (i, c) in clients.iter().enumerate() {
        c.put(&store(db), &Key::from(format!("after-{i}").as_str()), &object! { "ok" => true }).expect("put");
    }
    for c in &clients {
        c.wait_idle(WAIT).await.expect("the new owner acknowledges");
    }
    assert!(converge(&clients, &store(db), WAIT).await, "clients diverge after the handover");
    assert_eq!(clients[0].values(&store(db)).len(), 3);
    let stored = dump_pg(&group.url, db);
    assert_eq!(stored, BTreeSet::from(["before".to_owned(), "after-0".to_owned(), "after-1".to_owned()]));
    let owned: f64 = others.iter().map(|i| group.hubs[*i].metric("tidepool_owned_databases")).sum();
    assert_eq!(owned, 1.0, "one owner");
}
