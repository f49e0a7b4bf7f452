//! One process's share of a load run spread over several processes (`tidepool-load --part`), and
//! the seeding and fresh-client modes of the initial sync benchmark.
//!
//! The workload is [`load`](crate::load)'s: client `c` owns field `c<c>` of every record and its
//! n-th write to a record sets it to n (an update of that field alone), at most `window`
//! unacknowledged writes per client. A run spread over processes cannot measure "seen by every
//! other client" inside one of them, so each process writes a trace instead: the wall-clock time
//! and change hash of each of its writes, and for each change its own clients received, how many
//! of them did and when the last one did. `bench/run_load.py` joins the traces by record and
//! change hash (a write's latency is the latest arrival over all processes minus its put) and
//! drives the processes through stdin and stdout: `ready`, `go`, the finals each wrote,
//! everyone's finals, `converged` (every client reads every other client's last write to every
//! record). Wall-clock times work because every process runs on one machine.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::Serialize;
use tidepool_core::automerge::ChangeHash;
use tidepool_core::{Key, Patch, StoreRef, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::load::{LoadError, field, record_index, record_key};
use crate::{Client, ClientError, ClientOptions};

/// What one process of a spread run does.
#[derive(Debug, Clone)]
pub struct PartOptions {
    pub url: String,
    pub token: String,
    pub store: StoreRef,
    /// The first client index this process runs, and how many.
    pub first: usize,
    pub count: usize,
    /// Clients over all processes, and records.
    pub clients: usize,
    pub records: usize,
    /// Total puts over all processes.
    pub ops: usize,
    pub window: usize,
    /// Writing stops at this cap even if unfinished.
    pub cap: Duration,
    /// How long to wait for convergence once everyone has written.
    pub converge: Duration,
    pub trace: PathBuf,
    /// Clients merge remote changes lazily ([`ClientOptions::lazy_merge`]): a client then
    /// merges only the records it writes (and, at the end, reads), so the load processes cost
    /// far less than the hub they measure.
    pub lazy_merge: bool,
}

/// Converts `Instant`s to milliseconds since the Unix epoch, from one reading of both clocks.
#[derive(Debug, Clone, Copy)]
struct Clock {
    instant: Instant,
    wall_ms: f64,
}

impl Clock {
    fn new() -> Self {
        let wall_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0);
        Clock { instant: Instant::now(), wall_ms }
    }

    fn ms(&self, at: Instant) -> f64 {
        self.wall_ms + at.saturating_duration_since(self.instant).as_secs_f64() * 1000.0
    }
}

#[derive(Debug, Default)]
struct Trace {
    /// (writer, record, n, put time in ms, the change's hash).
    puts: Vec<(usize, usize, u64, f64, String)>,
    /// (record, change hash) -> (clients of this process that received it, when the last one
    /// did). A change's bytes do not name its document, so two records can receive the same
    /// change (a client's first write of the same value to two new records).
    seen: HashMap<(usize, ChangeHash), (usize, f64)>,
    /// (record, change hash) -> its writer, for the writers of this process: a client that
    /// receives its own change back (completed by the hub) does not count it.
    own: HashMap<(usize, ChangeHash), usize>,
}

#[derive(Serialize)]
struct TraceFile<'a> {
    puts: &'a [(usize, usize, u64, f64, String)],
    seen: Vec<(usize, String, usize, f64)>,
}

fn lock(trace: &Mutex<Trace>) -> std::sync::MutexGuard<'_, Trace> {
    trace.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_line() -> std::io::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

async fn line() -> Result<String, LoadError> {
    tokio::task::spawn_blocking(read_line)
        .await
        .map_err(|e| LoadError::Coordination(e.to_string()))?
        .map_err(|e| LoadError::Coordination(e.to_string()))
}

fn connect(url: &str, token: &str, store: &StoreRef, lazy: bool) -> Arc<Client> {
    let mut options = ClientOptions::new(url.to_owned(), token.to_owned());
    options.lazy_merge = lazy;
    let client = Arc::new(Client::connect(options));
    client.subscribe(store.clone());
    client
}

/// Runs this process's clients; prints the protocol lines on stdout and writes the trace.
pub async fn run_part(o: PartOptions) -> Result<(), LoadError> {
    if o.count == 0 || o.records == 0 || o.first + o.count > o.clients {
        return Err(LoadError::Empty);
    }
    let clock = Clock::new();
    let clients: Vec<(usize, Arc<Client>)> =
        (o.first..o.first + o.count).map(|me| (me, connect(&o.url, &o.token, &o.store, o.lazy_merge))).collect();
    for (_, c) in &clients {
        c.wait_idle(Duration::from_secs(120)).await?;
    }
    let trace = Arc::new(Mutex::new(Trace::default()));
    let observers: Vec<_> = clients
        .iter()
        .map(|(me, c)| {
            let (me, mut changes, trace) = (*me, c.remote_changes(), trace.clone());
            tokio::spawn(async move {
                loop {
                    let change = match changes.recv().await {
                        Ok(change) => change,
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => break,
                    };
                    let Some(record) = record_index(&change.key) else { continue };
                    let at = clock.ms(change.at);
                    let mut t = lock(&trace);
                    for hash in change.changes {
                        if t.own.get(&(record, hash)) == Some(&me) {
                            continue;
                        }
                        let e = t.seen.entry((record, hash)).or_insert((0, at));
                        e.0 += 1;
                        e.1 = at;
                    }
                }
            })
        })
        .collect();
    println!("ready");
    if line().await? != "go" {
        return Err(LoadError::Coordination("expected `go`".into()));
    }
    let started = Instant::now();
    let deadline = started + o.cap;
    let writers: Vec<_> = clients
        .iter()
        .map(|(me, c)| {
            let (me, c, trace, store) = (*me, c.clone(), trace.clone(), o.store.clone());
            let ops = o.ops / o.clients + usize::from(me < o.ops % o.clients);
            let (records, window) = (o.records, o.window.max(1));
            tokio::spawn(async move {
                let mut counts: BTreeMap<usize, u64> = BTreeMap::new();
                let mut inflight = VecDeque::new();
                let mut confirmed = 0usize;
                for _ in 0..ops {
                    if inflight.len() >= window
                        && let Some(id) = inflight.pop_front()
                    {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if c.wait_acked(id, left).await.is_err() {
                            break;
                        }
                        confirmed += 1;
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                    let record = rand::rng().random_range(0..records);
                    let key: Key = record_key(record);
                    let count = counts.entry(record).or_default();
                    *count += 1;
                    // Only this client's field: the change is the one a put of the whole
                    // record with that field changed makes.
                    let patch = Patch::new().set(field(me), Value::Int(i64::try_from(*count).unwrap_or(i64::MAX)));
                    let at = clock.ms(Instant::now());
                    if let Some((id, hash)) = c.update_hashed(&store, &key, &patch)? {
                        let mut t = lock(&trace);
                        t.puts.push((me, record, *count, at, hash.to_string()));
                        t.own.insert((record, hash), me);
                        inflight.push_back(id);
                    }
                }
                while let Some(id) = inflight.pop_front() {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if c.wait_acked(id, left).await.is_err() {
                        break;
                    }
                    confirmed += 1;
                }
                Ok::<_, ClientError>((me, counts, confirmed))
            })
        })
        .collect();
    let mut finals = Vec::new();
    let mut confirmed = 0;
    for w in writers {
        let (me, counts, done) = w.await.map_err(|e| LoadError::Coordination(e.to_string()))??;
        confirmed += done;
        finals.extend(counts.into_iter().map(|(r, n)| (me, r, n)));
    }
    let seconds = started.elapsed().as_secs_f64();
    let writes = finals.iter().map(|f| f.2 as usize).sum::<usize>();
    println!("{}", serde_json::json!({ "written": finals, "writes": writes, "confirmed": confirmed, "seconds": seconds }));
    let all: Vec<(usize, usize, u64)> =
        serde_json::from_str(&line().await?).map_err(|e| LoadError::Coordination(e.to_string()))?;
    let until = Instant::now() + o.converge;
    let has_all = || {
        clients.iter().all(|(me, c)| {
            all.iter().filter(|(w, _, _)| w != me).all(|(w, r, n)| match c.get(&o.store, &record_key(*r)) {
                Ok(Some(Value::Object(fields))) => matches!(fields.get(&field(*w)), Some(Value::Int(v)) if *v >= i64::try_from(*n).unwrap_or(i64::MAX)),
                _ => false,
            })
        })
    };
    let mut converged = has_all();
    while !converged && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        converged = has_all();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for o in observers {
        o.abort();
    }
    {
        let t = lock(&trace);
        let file = TraceFile { puts: &t.puts, seen: t.seen.iter().map(|(&(r, hash), &(c, at))| (r, hash.to_string(), c, at)).collect() };
        let json = serde_json::to_vec(&file).map_err(|e| LoadError::Coordination(e.to_string()))?;
        std::fs::write(&o.trace, json).map_err(|e| LoadError::Coordination(format!("{}: {e}", o.trace.display())))?;
    }
    println!("{}", serde_json::json!({ "converged": converged, "writes": writes, "confirmed": confirmed, "seconds": seconds }));
    for (_, c) in clients {
        if let Ok(c) = Arc::try_unwrap(c) {
            c.close().await;
        }
    }
    Ok(())
}

/// Puts `records` records of `fields` fields each through one client and waits until the hub
/// has acknowledged them all; prints one JSON line.
pub async fn run_seed(url: &str, token: &str, store: &StoreRef, records: usize, fields: usize) -> Result<(), LoadError> {
    let c = connect(url, token, store, false);
    c.wait_idle(Duration::from_secs(120)).await?;
    let started = Instant::now();
    for r in 0..records {
        let value = (0..fields).map(|f| (format!("f{f}"), Value::String(format!("value {r} {f}")))).collect();
        c.put(store, &record_key(r), &Value::Object(value))?;
        // Bounded: never more than a few thousand changes queued.
        if c.pending() > 2_000 {
            c.wait_idle(Duration::from_secs(600)).await?;
        }
    }
    c.wait_idle(Duration::from_secs(600)).await?;
    println!("{}", serde_json::json!({ "mode": "seed", "records": records, "seconds": started.elapsed().as_secs_f64() }));
    if let Ok(c) = Arc::try_unwrap(c) {
        c.close().await;
    }
    Ok(())
}

/// A fresh client subscribes and waits until it holds the whole store; prints one JSON line.
pub async fn run_fresh(url: &str, token: &str, store: &StoreRef, cap: Duration) -> Result<(), LoadError> {
    let started = Instant::now();
    let c = connect(url, token, store, false);
    let finished = c.wait_idle(cap).await.is_ok();
    let seconds = started.elapsed().as_secs_f64();
    let fetched = c.records(store).len();
    println!("{}", serde_json::json!({ "mode": "fresh", "fetched": fetched, "seconds": seconds, "finished": finished }));
    if let Ok(c) = Arc::try_unwrap(c) {
        c.close().await;
    }
    Ok(())
}
