//! `kill -9` of the hub while clients push: after a restart on the same data directory every
//! acknowledged change is there (counted with `dump`), and the clients reconnect and converge.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tidepool_core::{Key, StoreRef, object};
use tidepool_client::{ChangeState, Client, ClientOptions, converge};

const WAIT: Duration = Duration::from_secs(60);

fn store() -> StoreRef {
    StoreRef::new("app", "events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_change() {
    let dir = TestDir::new();
    let mut hub = dir.start(&["--cache-docs", "50"]);
    let listen = hub.addr.to_string();
    let token = full_token("app");
    let clients: Vec<Arc<Client>> = (0..4)
        .map(|_| {
            let mut options = ClientOptions::new(hub.url(), token.clone());
            options.max_backoff = Duration::from_millis(500);
            let c = Arc::new(Client::connect(options));
            c.subscribe(store());
            c
        })
        .collect();
    for c in &clients {
        c.wait_idle(WAIT).await.expect("idle");
    }

    // Every client writes its own keys, so each acknowledged put must appear as its own record.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(w, c)| {
            let (c, stop) = (c.clone(), stop.clone());
            tokio::spawn(async move {
                let mut written = HashMap::new();
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = format!("w{w}-{i:05}");
                    let id = c.put(&store(), &Key::from(key.as_str()), &object! { "writer" => w as i64, "i" => i as i64 });
                    written.insert(id.expect("put").expect("a change"), key);
                    i += 1;
                    if c.pending() > 64 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    } else if i.is_multiple_of(8) {
                        tokio::task::yield_now().await;
                    }
                }
                written
            })
        })
        .collect();

    // Let acknowledgements pile up, then pull the plug mid-stream.
    let deadline = std::time::Instant::now() + WAIT;
    while clients.iter().map(|c| c.pending()).sum::<usize>() == 0 || hub.metric("tidepool_changes_applied_total") < 300.0 {
        assert!(std::time::Instant::now() < deadline, "no load reached the hub");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hub.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
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
    // The hub had committed 300 changes; their acknowledgements may still have been in flight.
    assert!(!acked.is_empty(), "nothing was acknowledged before the kill");
    assert!(all.len() > acked.len(), "the kill should catch changes in flight");

    let stored: BTreeSet<String> =
        dump(&hub.data, "app", "events").iter().filter_map(|l| l["key"].as_str().map(str::to_owned)).collect();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "{} acknowledged changes lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);

    // Same address and data: the clients reconnect by themselves and push what was not acked.
    let _restarted = dir.start(&["--listen", &listen, "--cache-docs", "50"]);
    assert!(converge(&clients, &store(), WAIT).await, "clients converge after the restart");
    for c in &clients {
        assert_eq!(c.pending(), 0);
        assert!(c.connections() >= 2);
    }
    let stored: BTreeSet<String> =
        dump(&hub.data, "app", "events").iter().filter_map(|l| l["key"].as_str().map(str::to_owned)).collect();
    assert_eq!(stored, all, "the hub holds every write after the restart");
    assert_eq!(clients[0].values(&store()).len(), all.len());
}
