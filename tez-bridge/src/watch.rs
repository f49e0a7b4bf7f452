//! Continuous analytics: a job runs again whenever its store changes.
//!
//! The bridge watches the job's source store through the hub (`Watch`: the log's position, no
//! records, so memory does not grow with the store). A move past the cut of the job's last
//! written-back run starts a run once the store has been quiet for the debounce time (or the
//! longest delay has passed since the first move), so a burst of edits makes one run. One run of
//! a job at a time: moves during a run make the next one. The DAG runs on a warm Tez session
//! that stays up between runs; a session found dead is replaced, and a run whose session died
//! under it is retried once on the new one. A run that fails for any other reason is reported
//! and the job waits for the next change.
//!
//! A job that writes back into its own store (enrich) moves it: the next, incremental, snapshot
//! then finds only the job's own results, which it does not count as changes, and ends without
//! running Tez; a full enrich finds every value already written and writes nothing.

use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;
use tidepool_core::wire::Cursor;
use tokio::sync::broadcast::error::RecvError;

use crate::fs::RunFs;
use crate::job::JobSpec;
use crate::link::Link;
use crate::run::{self, Phase, Progress, RunError, RunState};
use crate::session::Session;
use crate::tez::TezError;

/// How `watch` paces runs.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Quiet time after the last change before a run starts.
    pub debounce: Duration,
    /// Longest wait from the first change to the run's start, however busy the store.
    pub max_delay: Duration,
    /// Finished runs kept per job (the newest written-back run is always kept).
    pub keep_runs: usize,
    /// Run the DAGs on a warm session (else each run starts its own JVM).
    pub session: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions { debounce: Duration::from_millis(500), max_delay: Duration::from_secs(10), keep_runs: 20, session: true }
    }
}

#[derive(Debug, Error)]
pub enum WatchError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("the connection to the hub closed")]
    Closed,
}

/// What one run triggered by a change did, for the caller to report.
#[derive(Debug)]
pub struct Ran {
    pub state: Result<RunState, RunError>,
    /// From the first change seen to the end of the run.
    pub after_change: Duration,
}

/// Watches `job`'s store through `link` and runs the job whenever it changed, calling `ran`
/// after every run. Returns only on an error that stops watching (the hub connection closed,
/// the run location failed).
pub async fn watch(
    fs: &RunFs,
    job: &JobSpec,
    link: &Link,
    options: &WatchOptions,
    progress: &dyn Progress,
    mut ran: impl FnMut(&Ran),
) -> Result<(), WatchError> {
    let (source, _) = run::stores(job);
    let mut moves = link.watch(&source);
    let mut done = last_cut(fs, &job.name).await?;
    let mut session: Option<Session> = None;
    loop {
        // Wait for the store to move past what the last run saw.
        let first = loop {
            match moves.recv().await {
                Ok(m) if m.store == source && beyond(m.cursor, done) => break Instant::now(),
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Err(WatchError::Closed),
            }
        };
        // Then for it to be quiet.
        loop {
            let left = options.max_delay.saturating_sub(first.elapsed());
            match tokio::time::timeout(options.debounce.min(left), moves.recv()).await {
                Err(_) => break,
                Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) => return Err(WatchError::Closed),
            }
        }
        let state = run_once(fs, job, link, options, &mut session, progress).await;
        if let Ok(s) = &state {
            done = run::snapshot_cut(fs, &job.name, &s.run).await?.or(done);
        } else if let Some(latest) = run::runs(fs, &job.name).await?.last() {
            // A failed run waits for the next change: its snapshot's cut counts as seen.
            if latest.phase != Phase::Snapshotting {
                done = run::snapshot_cut(fs, &job.name, &latest.run).await.ok().flatten().or(done);
            }
        }
        ran(&Ran { state, after_change: first.elapsed() });
        if let Err(e) = run::prune(fs, &job.name, options.keep_runs).await {
            tracing::warn!(job = %job.name, "could not remove old runs: {e}");
        }
    }
}

/// Whether a position is past `done` (a position of another hub storage lifetime always is).
fn beyond(cursor: Cursor, done: Option<Cursor>) -> bool {
    done.is_none_or(|d| d.epoch != cursor.epoch || cursor.seq > d.seq)
}

/// The cut of the job's newest written-back run.
async fn last_cut(fs: &RunFs, job: &str) -> Result<Option<Cursor>, RunError> {
    match run::runs(fs, job).await?.into_iter().rev().find(|r| r.phase == Phase::WrittenBack) {
        Some(r) => run::snapshot_cut(fs, job, &r.run).await,
        None => Ok(None),
    }
}

/// One run: snapshot, then the DAG on the session (started or replaced as needed), then
/// write-back.
async fn run_once(
    fs: &RunFs,
    job: &JobSpec,
    link: &Link,
    options: &WatchOptions,
    session: &mut Option<Session>,
    progress: &dyn Progress,
) -> Result<RunState, RunError> {
    let last = run::runs(fs, &job.name).await?.last().map(|r| r.run.clone());
    let nonce = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos() & 0xfff).unwrap_or(0) as u16;
    let id = run::next_run_id(SystemTime::now(), nonce, last.as_deref());
    let state = run::snapshot(fs, job, link, &id, progress).await?;
    if run::incremental(job) && state.records_in == 0 {
        return run::nothing_to_run(fs, state).await;
    }
    let warm = options.session && Session::supports(job);
    for attempt in 0..2 {
        if warm && !session.as_mut().is_some_and(Session::is_alive) {
            *session = None;
            progress.phase("session", &format!("starting a Tez session for {}", job.name));
            let started = Instant::now();
            *session = Some(Session::start(job, &fs.default_fs()).await?);
            progress.done("session", started.elapsed().as_secs_f64());
        }
        let state = match attempt {
            0 => state.clone(),
            // The failed attempt saved its state; go on from there.
            _ => run::runs(fs, &job.name).await?.into_iter().find(|r| r.run == id).unwrap_or_else(|| state.clone()),
        };
        match run::tez_and_write_back(fs, job, link, state, session.as_mut(), progress).await {
            Err(RunError::Tez(TezError::SessionEnded { diagnostics })) if attempt == 0 => {
                tracing::warn!(job = %job.name, "the Tez session ended during run {id}; starting a new one: {diagnostics}");
                *session = None;
            }
            result => return result,
        }
    }
    unreachable!("the second attempt returns")
}
