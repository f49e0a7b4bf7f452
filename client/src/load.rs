//! The load generator behind `tidepool-load`: N native clients doing random field updates on R records
//! through a hub, measuring how long a change takes to become visible on every other client.
//!
//! Each client owns one field per record (`c<client>`), and its n-th write sets that field to n.
//! A client's field only grows, so when an observer sees `c7 = 12` on a record it has seen every
//! earlier write of client 7 to that record too. A write's latency is the time from its `update` to
//! the moment the last of the other clients saw it. Every client keeps at most `window` writes
//! unacknowledged (closed loop), so the latency measures the system rather than a queue the tool
//! filled up front.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use thiserror::Error;
use tidepool_core::{Key, Patch, StoreRef, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::{Client, ClientError, ClientOptions, converge};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub url: String,
    pub token: String,
    pub clients: usize,
    pub records: usize,
    /// Total puts, spread evenly over the clients.
    pub ops: usize,
    /// Unacknowledged puts each client allows itself.
    pub window: usize,
    pub store: StoreRef,
    /// How long to wait for convergence after the last put.
    pub timeout: Duration,
}

/// The JSON line `tidepool-load` prints.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub ops: usize,
    pub seconds: f64,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub converged: bool,
    pub clients: usize,
    pub records: usize,
    /// Writes whose visibility on every other client was measured.
    pub samples: usize,
}

/// Why a load run could not complete.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("client: {0}")]
    Client(#[from] ClientError),
    #[error("at least one client and one record are needed")]
    Empty,
    /// A spread run's coordinator (stdin) or trace file failed.
    #[error("coordinating a spread run: {0}")]
    Coordination(String),
}

#[derive(Debug)]
struct Write {
    n: u64,
    at: Instant,
    /// Other clients that have not seen it yet.
    waiting: usize,
}

#[derive(Debug, Default)]
struct Tracker {
    /// Per (writer, record): its writes in order.
    writes: HashMap<(usize, usize), Vec<Write>>,
    /// Per (observer, writer, record): how many of those writes the observer has seen.
    seen: HashMap<(usize, usize, usize), usize>,
    latencies: Vec<Duration>,
}

impl Tracker {
    fn observed(&mut self, observer: usize, writer: usize, record: usize, n: u64, at: Instant) {
        let Some(writes) = self.writes.get_mut(&(writer, record)) else { return };
        let seen = self.seen.entry((observer, writer, record)).or_default();
        while let Some(w) = writes.get_mut(*seen) {
            if w.n > n {
                break;
            }
            w.waiting = w.waiting.saturating_sub(1);
            if w.waiting == 0 {
                self.latencies.push(at.saturating_duration_since(w.at));
            }
            *seen += 1;
        }
    }
}

pub(crate) fn record_key(record: usize) -> Key {
    Key::String(format!("r{record:06}"))
}

pub(crate) fn field(client: usize) -> String {
    format!("c{client}")
}

/// Parses `r000123` back to 123.
pub(crate) fn record_index(key: &[u8]) -> Option<usize> {
    match Key::decode(key).ok()? {
        Key::String(s) => s.strip_prefix('r')?.parse().ok(),
        _ => None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Runs the load and reports.
pub async fn run(options: LoadOptions) -> Result<LoadReport, LoadError> {
    if options.clients == 0 || options.records == 0 {
        return Err(LoadError::Empty);
    }
    let n = options.clients;
    let clients: Vec<Arc<Client>> = (0..n)
        .map(|_| Arc::new(Client::connect(ClientOptions::new(options.url.clone(), options.token.clone()))))
        .collect();
    for c in &clients {
        c.subscribe(options.store.clone());
    }
    for c in &clients {
        c.wait_idle(Duration::from_secs(60)).await?;
    }
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let observers: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(me, c)| {
            let mut changes = c.remote_changes();
            let tracker = tracker.clone();
            tokio::spawn(async move {
                loop {
                    let change = match changes.recv().await {
                        Ok(change) => change,
                        Err(RecvError::Lagged(missed)) => {
                            tracing::warn!(client = me, missed, "observer lagged; later changes still count");
                            continue;
                        }
                        Err(RecvError::Closed) => break,
                    };
                    let (Some(record), Some(Value::Object(fields))) = (record_index(&change.key), change.value) else {
                        continue;
                    };
                    let mut t = tracker.lock().unwrap_or_else(|p| p.into_inner());
                    for (name, value) in fields {
                        let (Some(writer), Value::Int(v)) = (name.strip_prefix('c').and_then(|w| w.parse().ok()), value) else {
                            continue;
                        };
                        if writer != me {
                            t.observed(me, writer, record, u64::try_from(v).unwrap_or(0), change.at);
                        }
                    }
                }
            })
        })
        .collect();

    let started = Instant::now();
    let writers: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(me, c)| {
            let c = c.clone();
            let tracker = tracker.clone();
            let store = options.store.clone();
            let ops = options.ops / n + usize::from(me < options.ops % n);
            let (records, window) = (options.records, options.window.max(1));
            tokio::spawn(async move {
                let mut counts: HashMap<usize, u64> = HashMap::new();
                let mut inflight = VecDeque::new();
                for _ in 0..ops {
                    if inflight.len() >= window
                        && let Some(id) = inflight.pop_front()
                    {
                        c.wait_acked(id, Duration::from_secs(120)).await?;
                    }
                    let record = rand::rng().random_range(0..records);
                    let key = record_key(record);
                    let count = counts.entry(record).or_default();
                    *count += 1;
                    // An update of this client's own field only: a put of the whole record
                    // would write back the other clients' fields as this client last saw them,
                    // reverting a remote write that arrived in between.
                    let patch = Patch::new().set(field(me), Value::Int(i64::try_from(*count).unwrap_or(i64::MAX)));
                    {
                        let mut t = tracker.lock().unwrap_or_else(|p| p.into_inner());
                        let write = Write { n: *count, at: Instant::now(), waiting: n - 1 };
                        t.writes.entry((me, record)).or_default().push(write);
                    }
                    if let Some(id) = c.update(&store, &key, &patch)? {
                        inflight.push_back(id);
                    }
                }
                Ok::<(), ClientError>(())
            })
        })
        .collect();
    for w in writers {
        match w.await {
            Ok(result) => result?,
            Err(e) => tracing::error!(error = %e, "writer task failed"),
        }
    }

    let converged = converge(&clients, &options.store, options.timeout).await;
    let seconds = started.elapsed().as_secs_f64();
    // Observers may still be handling the last events; give them a moment before reading.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for o in observers {
        o.abort();
    }
    let mut latencies = std::mem::take(&mut tracker.lock().unwrap_or_else(|p| p.into_inner()).latencies);
    latencies.sort_unstable();
    for c in clients {
        if let Ok(c) = Arc::try_unwrap(c) {
            c.close().await;
        }
    }
    Ok(LoadReport {
        ops: options.ops,
        seconds,
        ops_per_s: if seconds > 0.0 { options.ops as f64 / seconds } else { 0.0 },
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        converged,
        clients: n,
        records: options.records,
        samples: latencies.len(),
    })
}
