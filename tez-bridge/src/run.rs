//! A run of a job: snapshot -> Tez -> write-back, with the state of every run kept beside it.
//!
//! Layout under the job's base location:
//!
//! ```text
//! <base>/<job>/<run>/input/part-00000.jsonl   records, one JSON object per line
//! <base>/<job>/<run>/input/_manifest.json     heads of every document, hub cursor, counts
//! <base>/<job>/<run>/output/                  what the DAG wrote (part files, _SUCCESS)
//! <base>/<job>/<run>/_state.json              phase, counts, seconds per phase, error, owner
//! ```
//!
//! A running phase records its owner (pid, host): a run left `tez-running` by a bridge that was
//! killed shows as interrupted. A snapshot in progress names its owner with an empty file,
//! `_owner-<pid>-<host>-<process>` (hex), instead: an empty HDFS file closes at once.
//!
//! Files starting with `_` are hidden from Hadoop input formats, so the DAG reads only records.
//! A run directory is written under `<base>/<job>/.tmp-<run>` and renamed into place, so it
//! appears whole or not at all.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tidepool_core::automerge::ActorId;
use tidepool_core::{DocId, StoreRef, WriteBack};

use crate::fs::{FsError, RunFs};
use crate::job::{DagSpec, JobError, JobSpec};
use crate::link::{Link, LinkError};
use crate::output::{self, OutputError};
use crate::owner::Owner;
use crate::plan::{self, PlanError, PlannedChange};
use crate::heads::DocHeads;
use crate::snapshot::{self, Manifest, ManifestDoc, SnapshotId, SnapshotWriter};
use crate::session::Session;
use crate::tez::{self, TezError};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The export is being written (the state lives in `<job>/.tmp-<run>` until it is whole).
    Snapshotting,
    Snapshotted,
    TezRunning,
    TezFailed,
    /// Tez finished; its results are being turned into changes and sent.
    WritingBack,
    WriteBackFailed,
    WrittenBack,
}

/// `_state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub job: String,
    pub run: String,
    pub phase: Phase,
    pub records_in: usize,
    #[serde(default)]
    pub results_out: Option<usize>,
    #[serde(default)]
    pub changes_written: Option<usize>,
    #[serde(default)]
    pub seconds: BTreeMap<String, f64>,
    #[serde(default)]
    pub error: Option<String>,
    /// The bridge process running the current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// When the snapshot was taken (seconds since 1970, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_at: Option<u64>,
}

impl RunState {
    /// A phase that is in progress according to the state, but whose bridge is gone.
    pub fn interrupted(&self) -> bool {
        matches!(self.phase, Phase::Snapshotting | Phase::TezRunning | Phase::WritingBack)
            && self.owner.as_ref().is_some_and(Owner::is_gone)
    }
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Job(#[from] JobError),
    #[error("storage: {0}")]
    Fs(#[from] FsError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("snapshot: {0}")]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    #[error("Tez: {0}")]
    Tez(#[from] TezError),
    #[error("Tez output: {0}")]
    Output(#[from] OutputError),
    #[error("write-back: {0}")]
    Plan(#[from] PlanError),
    #[error("run {0} already exists")]
    Exists(String),
    #[error("run {run} is being {doing} by process {pid} on {host}")]
    Busy { run: String, doing: &'static str, pid: u32, host: String },
    #[error("run {run} is {phase:?} and has no complete Tez output to write back")]
    NotRunnable { run: String, phase: Phase },
    #[error("corrupt run file {file}: {detail}")]
    Corrupt { file: String, detail: String },
}

/// Reports progress, one line per phase (the CLI prints them and shows progress bars).
pub trait Progress {
    /// What a phase is doing or did.
    fn phase(&self, name: &str, detail: &str);
    /// A phase ended after `seconds`.
    fn done(&self, name: &str, seconds: f64) {
        let _ = (name, seconds);
    }
    /// A long phase has done `done` of `total` records.
    fn count(&self, name: &str, done: usize, total: usize) {
        let _ = (name, done, total);
    }
}

/// Prints nothing.
#[derive(Debug)]
pub struct Quiet;

impl Progress for Quiet {
    fn phase(&self, _: &str, _: &str) {}
}

fn run_dir(job: &str, run: &str) -> String {
    format!("{job}/{run}")
}

async fn write_json<T: Serialize>(fs: &RunFs, rel: &str, value: &T) -> Result<(), RunError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| RunError::Corrupt { file: rel.into(), detail: e.to_string() })?;
    fs.write(rel, [Bytes::from(bytes)]).await?;
    Ok(())
}

async fn read_json<T: for<'de> Deserialize<'de>>(fs: &RunFs, rel: &str) -> Result<T, RunError> {
    let bytes = fs.read(rel).await?;
    serde_json::from_slice(&bytes).map_err(|e| RunError::Corrupt { file: rel.into(), detail: e.to_string() })
}

pub async fn save_state(fs: &RunFs, state: &RunState) -> Result<(), RunError> {
    write_json(fs, &format!("{}/_state.json", run_dir(&state.job, &state.run)), state).await
}

/// Every run of a job, oldest first (run ids sort by time when generated by [`new_run_id`]).
pub async fn runs(fs: &RunFs, job: &str) -> Result<Vec<RunState>, RunError> {
    let mut out = Vec::new();
    let names = fs.list(job).await?;
    for name in &names {
        let rel = match name.strip_prefix(".tmp-") {
            Some(run) if names.iter().any(|n| n == run) => continue,
            Some(run) => {
                out.extend(snapshotting(fs, job, run).await?);
                continue;
            }
            None if name.starts_with('.') => continue,
            None => format!("{job}/{name}/_state.json"),
        };
        if fs.exists(&rel).await? {
            out.push(read_json::<RunState>(fs, &rel).await?);
        }
    }
    out.sort_by(|a, b| a.run.cmp(&b.run));
    Ok(out)
}

/// A snapshot still in `<job>/.tmp-<run>`, in progress or killed in progress: owned by the
/// process its marker file names ([`Owner::marker`]). The state file a snapshot writes at its
/// end counts only once the directory is renamed into place. A directory without a marker (left
/// by an older bridge) shows the state file it holds, if any.
async fn snapshotting(fs: &RunFs, job: &str, run: &str) -> Result<Option<RunState>, RunError> {
    let tmp = format!("{job}/.tmp-{run}");
    let Some(owner) = fs.list(&tmp).await?.iter().find_map(|name| Owner::from_marker(name)) else {
        let rel = format!("{tmp}/_state.json");
        return if fs.exists(&rel).await? { read_json(fs, &rel).await.map(Some) } else { Ok(None) };
    };
    Ok(Some(RunState {
        job: job.to_owned(),
        run: run.to_owned(),
        phase: Phase::Snapshotting,
        records_in: 0,
        results_out: None,
        changes_written: None,
        seconds: BTreeMap::new(),
        error: None,
        owner: Some(owner),
        snapshot_at: None,
    }))
}

/// A new run id for `now` that sorts after `last` (an earlier run's id): the nonce counts up
/// from `last`'s within the same second, so runs started quickly one after another keep their
/// order (an incremental run's base is the newest run).
pub fn next_run_id(now: std::time::SystemTime, nonce: u16, last: Option<&str>) -> String {
    let id = new_run_id(now, nonce);
    match last {
        Some(last) if id.as_str() <= last => {
            let (prefix, last_nonce) = last.rsplit_once('-').unwrap_or((last, "0"));
            let n = u16::from_str_radix(last_nonce, 16).unwrap_or(0).saturating_add(1);
            format!("{prefix}-{n:04x}")
        }
        _ => id,
    }
}

/// The hub cursor a run's snapshot is consistent with (`None` for a snapshot of a hub that had
/// no position to give).
pub async fn snapshot_cut(fs: &RunFs, job: &str, run: &str) -> Result<Option<tidepool_core::wire::Cursor>, RunError> {
    let rel = format!("{}/input/_manifest.json", run_dir(job, run));
    let manifest: Manifest = read_json(fs, &rel).await?;
    let Ok(epoch) = <[u8; 16]>::try_from(hex::decode(&manifest.hub_epoch).unwrap_or_default()) else { return Ok(None) };
    Ok(Some(tidepool_core::wire::Cursor { epoch, seq: manifest.hub_seq }))
}

/// Ends a snapshotted run that holds no record to compute (an incremental snapshot of a store
/// in which nothing changed but the job's own results): written back, with nothing written.
pub async fn nothing_to_run(fs: &RunFs, mut state: RunState) -> Result<RunState, RunError> {
    state.phase = Phase::WrittenBack;
    state.results_out = Some(0);
    state.changes_written = Some(0);
    state.owner = None;
    save_state(fs, &state).await?;
    Ok(state)
}

/// Removes all but the newest `keep` runs of a job that are over (written back or failed),
/// never the newest written-back run (the next incremental snapshot starts from it) nor a run
/// in progress. Returns how many it removed.
pub async fn prune(fs: &RunFs, job: &str, keep: usize) -> Result<usize, RunError> {
    let runs = runs(fs, job).await?;
    let newest_done = runs.iter().rev().find(|r| r.phase == Phase::WrittenBack).map(|r| r.run.clone());
    let over: Vec<&RunState> = runs
        .iter()
        .filter(|r| matches!(r.phase, Phase::WrittenBack | Phase::TezFailed | Phase::WriteBackFailed) || r.interrupted())
        .collect();
    let mut removed = 0;
    for r in over.iter().take(over.len().saturating_sub(keep)) {
        if Some(&r.run) == newest_done.as_ref() {
            continue;
        }
        fs.delete(&run_dir(job, &r.run)).await?;
        fs.delete(&format!("{job}/.tmp-{}", r.run)).await?;
        removed += 1;
    }
    Ok(removed)
}

/// A time as RFC 3339 in UTC: `2023-11-14T22:13:20Z`.
pub fn rfc3339(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A run id that sorts by creation time: `YYYYMMDDTHHMMSSZ-xxxx`.
pub fn new_run_id(now: std::time::SystemTime, nonce: u16) -> String {
    let secs = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z-{nonce:04x}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Gregorian date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The source store and, for aggregates, the results store.
pub fn stores(job: &JobSpec) -> (StoreRef, Option<StoreRef>) {
    let source = StoreRef::new(&job.db, &job.store);
    let results = match &job.dag {
        DagSpec::Aggregate { results_store, .. } => Some(StoreRef::new(&job.db, results_store)),
        _ => None,
    };
    (source, results)
}

/// Takes a snapshot of the job's store through `link` into a new run directory.
pub async fn snapshot(
    fs: &RunFs,
    job: &JobSpec,
    link: &Link,
    run: &str,
    progress: &dyn Progress,
) -> Result<RunState, RunError> {
    let started = Instant::now();
    let dir = run_dir(&job.name, run);
    if fs.exists(&dir).await? {
        return Err(RunError::Exists(run.to_owned()));
    }
    let (source, _) = stores(job);
    let previous = if incremental(job) { latest_heads(fs, &job.name).await? } else { None };
    let since_run = previous.as_ref().map(|(run, _)| run.clone());
    let tmp = format!("{}/.tmp-{run}", job.name);
    if let Some(earlier) = snapshotting(fs, &job.name, run).await?
        && let Some(owner) = earlier.owner.filter(|o| !o.is_gone())
    {
        return Err(RunError::Busy { run: run.to_owned(), doing: "snapshotted", pid: owner.pid, host: owner.host });
    }
    fs.delete(&tmp).await?;
    fs.mkdirs(&format!("{tmp}/input")).await?;
    // Every HDFS file with content costs a close the namenode may make wait (half a second,
    // typically), so the snapshot pays for one round of them: an empty marker names the owner
    // while the export runs, and the manifest and the state are written while the two big files
    // close. Until the rename, `status` goes by the marker alone.
    fs.write(&format!("{tmp}/{}", Owner::current().marker()), []).await?;
    let state = RunState {
        job: job.name.clone(),
        run: run.to_owned(),
        phase: Phase::Snapshotted,
        records_in: 0,
        results_out: None,
        changes_written: None,
        seconds: BTreeMap::new(),
        error: None,
        owner: None,
        snapshot_at: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs()),
    };
    let tmp = &tmp;
    let finish = async move |writer: SnapshotWriter, cut| {
        let mut state = state;
        let exported = started.elapsed().as_secs_f64();
        progress.done("export", exported);
        let id = SnapshotId { job: &job.name, run, db: &job.db, store: &job.store, cursor: cut };
        let manifest = writer.manifest(&id, since_run);
        progress.phase("snapshot", &format!("{} records, {} deleted", manifest.records, manifest.deleted));
        state.records_in = manifest.records;
        // Seconds up to the last files' closes and the rename.
        let total = started.elapsed().as_secs_f64();
        state.seconds.extend([("snapshot".into(), total), ("export".into(), exported), ("hdfs-write".into(), total - exported)]);
        let manifest_rel = format!("{tmp}/input/_manifest.json");
        let state_rel = format!("{tmp}/_state.json");
        tokio::try_join!(write_json(fs, &manifest_rel, &manifest), write_json(fs, &state_rel, &state))?;
        Ok((state, exported))
    };
    let (mut state, exported) = export_to(fs, tmp, link, &source, previous.map(|(_, heads)| heads), progress, finish).await?;
    fs.rename(tmp, &dir).await?;
    // The state file was written before the files finished closing; the state returned (and
    // saved again by the next phase) counts the closes and the rename too.
    let total = started.elapsed().as_secs_f64();
    state.seconds.extend([("snapshot".into(), total), ("hdfs-write".into(), total - exported)]);
    progress.done("hdfs-write", total - exported);
    Ok(state)
}

/// Records per export page: what a hub sends by default (a hub may send fewer).
const EXPORT_PAGE: u32 = tidepool_core::sync::EXPORT_PAGE_DOCS as u32;
/// Export pages asked for ahead of the one being written: the hub reads one while the next is on
/// its way and this side works on a third.
const PAGES_AHEAD: usize = 2;
/// Bytes gathered before a chunk goes to the file system.
const CHUNK: usize = 1 << 20;

/// Streams an export of `source` into the run's input: JSON lines to `input/part-00000.jsonl`
/// and manifest entries to `input/_manifest_docs.jsonl`, each written while later pages are
/// still being fetched. Memory holds a few pages and a chunk of each file, whatever the store's size.
/// Once the last chunk is handed to the files, `finish` gets the writer and the export's cut
/// while the files close; its result is returned once they are closed.
async fn export_to<T>(
    fs: &RunFs,
    dir: &str,
    link: &Link,
    source: &StoreRef,
    previous: Option<DocHeads>,
    progress: &dyn Progress,
    finish: impl AsyncFnOnce(SnapshotWriter, Option<tidepool_core::wire::Cursor>) -> Result<T, RunError>,
) -> Result<T, RunError> {
    let (lines_tx, lines_rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let (docs_tx, docs_rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let lines_rel = format!("{dir}/input/part-00000.jsonl");
    let docs_rel = format!("{dir}/input/_manifest_docs.jsonl");
    let writing = async { tokio::try_join!(fs.write_stream(&lines_rel, lines_rx), fs.write_stream(&docs_rel, docs_rx)) };
    // Moves the senders in: they are dropped (and the files close) as the export ends.
    let exporting = async move {
        let mut writer = SnapshotWriter::new(previous);
        let (mut lines, mut docs) = (Vec::with_capacity(CHUNK), Vec::with_capacity(CHUNK));
        let mut page = link.export_page(source, None, None, EXPORT_PAGE).await?;
        let (export, cut) = (page.export, Some(page.cut));
        // Pages asked for and not yet received: the hub reads them while this side turns the
        // page before into lines, so neither waits for the other.
        let mut asked = VecDeque::with_capacity(PAGES_AHEAD);
        if !page.last {
            for _ in 0..PAGES_AHEAD {
                asked.push_back(link.request_next_page(source, export, EXPORT_PAGE)?);
            }
        }
        loop {
            for record in &page.records {
                writer.add(record, &mut lines, &mut docs)?;
            }
            progress.count("export", writer.seen, 0);
            for (buffer, tx) in [(&mut lines, &lines_tx), (&mut docs, &docs_tx)] {
                if buffer.len() >= CHUNK || page.last {
                    let chunk = Bytes::from(std::mem::replace(buffer, Vec::with_capacity(CHUNK)));
                    // A closed channel means the writer failed; its error is the one reported.
                    if tx.send(chunk).await.is_err() {
                        return Ok((writer, cut));
                    }
                }
            }
            if page.last {
                break;
            }
            // Every page but the last leaves a request behind it (asked for above or below).
            let Some(request) = asked.pop_front() else {
                let detail = format!("export {export}: no request left for the page after a page that was not the last");
                return Err(RunError::Snapshot(crate::snapshot::SnapshotError::Export(detail)));
            };
            page = link.page(request).await?;
            if !page.last {
                asked.push_back(link.request_next_page(source, export, EXPORT_PAGE)?);
            }
        }
        // The requests sent after the one the last page answered get empty last pages.
        for request in asked {
            let after = link.page(request).await?;
            if !after.records.is_empty() {
                let detail = format!("export {export} sent {} records after its last page", after.records.len());
                return Err(RunError::Snapshot(crate::snapshot::SnapshotError::Export(detail)));
            }
        }
        Ok::<_, RunError>((writer, cut))
    };
    let finishing = async move {
        let (writer, cut) = exporting.await?;
        finish(writer, cut).await
    };
    let (written, finished) = tokio::join!(writing, finishing);
    written?;
    finished
}

/// Whether the job's snapshots hold only what changed since its last written-back run.
///
/// Only per-record DAGs (enrich, user) run incrementally: a record's result depends on that
/// record alone. An aggregate depends on every record of its groups, and not every aggregate can
/// be updated from a delta (a deleted record's value cannot be taken out of a `min` or `max`), so
/// aggregates always recompute over the whole store: their results then equal a full run's by
/// construction.
pub fn incremental(job: &JobSpec) -> bool {
    job.incremental && !matches!(job.dag, DagSpec::Aggregate { .. })
}

/// What a run's write-back made of its documents, as runs before `_written.jsonl` kept it: for
/// every document it changed, the heads the document has once the change is applied (the
/// change's hash alone, as the change depends on exactly the snapshot heads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub heads: BTreeMap<String, Vec<String>>,
}

/// Heads per document of a run's snapshot: from `_manifest_docs.jsonl`, read a line at a time,
/// or from the manifest itself for runs written before the list had a file of its own.
async fn snapshot_heads(fs: &RunFs, dir: &str) -> Result<DocHeads, RunError> {
    let manifest: Manifest = read_json(fs, &format!("{dir}/input/_manifest.json")).await?;
    if manifest.version < snapshot::MANIFEST_VERSION {
        return Ok(manifest.docs.iter().filter_map(snapshot::entry_heads).collect());
    }
    let rel = format!("{dir}/input/_manifest_docs.jsonl");
    let mut heads = DocHeads::with_capacity(manifest.records + manifest.deleted);
    json_lines(fs, &rel, |n, entry: ManifestDoc| {
        let (doc, h) = snapshot::entry_heads(&entry)
            .ok_or_else(|| RunError::Corrupt { file: rel.clone(), detail: format!("line {n}: bad document id or heads") })?;
        heads.insert(doc, h);
        Ok(())
    })
    .await?;
    heads.seal();
    Ok(heads)
}

/// Calls `f` with each non-empty line of a JSON Lines file, parsed, and its line number, a
/// line at a time; a line that does not parse is a [`RunError::Corrupt`] naming the file and line.
async fn json_lines<T: for<'de> Deserialize<'de>>(
    fs: &RunFs,
    rel: &str,
    mut f: impl FnMut(usize, T) -> Result<(), RunError>,
) -> Result<(), RunError> {
    let mut lines = fs.lines(rel).await?;
    while let Some((n, line)) = lines.next_line().await? {
        if line.is_empty() {
            continue;
        }
        let value = serde_json::from_slice(line).map_err(|e| RunError::Corrupt { file: rel.to_owned(), detail: format!("line {n}: {e}") })?;
        f(n, value)?;
    }
    Ok(())
}

/// One line of `_written.jsonl`: a document a run's write-back changed and its heads after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenDoc {
    pub doc: String,
    pub heads: Vec<String>,
}

/// Lays what a run's write-back wrote over its snapshot heads: `_written.jsonl`, or the
/// `_written.json` map of runs from before it was streamed.
async fn overlay_written(fs: &RunFs, dir: &str, heads: &mut DocHeads) -> Result<(), RunError> {
    let mut set = |doc: &str, after: &[String]| {
        let Some(doc) = DocId::from_hex(doc) else { return };
        let after: Option<Vec<_>> = after.iter().map(|h| h.parse().ok()).collect();
        if let Some(after) = after.filter(|_| heads.get(&doc).is_some()) {
            heads.insert(doc, after);
        }
    };
    let rel = format!("{dir}/_written.jsonl");
    if fs.exists(&rel).await? {
        json_lines(fs, &rel, |_, w: WrittenDoc| {
            set(&w.doc, &w.heads);
            Ok(())
        })
        .await?;
    } else if fs.exists(&format!("{dir}/_written.json")).await? {
        let written: Written = read_json(fs, &format!("{dir}/_written.json")).await?;
        for (doc, after) in &written.heads {
            set(doc, after);
        }
    }
    heads.seal();
    Ok(())
}

/// The base of an incremental snapshot: the run id and the document heads of the newest run
/// that was written back, with the heads its own write-back gave the documents it changed, so
/// that the job's own results do not count as changes.
async fn latest_heads(fs: &RunFs, job: &str) -> Result<Option<(String, DocHeads)>, RunError> {
    let done = runs(fs, job).await?.into_iter().rev().find(|r| r.phase == Phase::WrittenBack);
    let Some(run) = done else { return Ok(None) };
    let dir = format!("{job}/{}", run.run);
    let mut heads = snapshot_heads(fs, &dir).await?;
    overlay_written(fs, &dir, &mut heads).await?;
    Ok(Some((run.run, heads)))
}

/// Runs the job's DAG over a snapshotted run (on `session` if given, else in a JVM of its own),
/// then writes the results back. A failed DAG, a missing `_SUCCESS` or output that does not
/// parse writes nothing, and the state says why.
pub async fn tez_and_write_back(
    fs: &RunFs,
    job: &JobSpec,
    link: &Link,
    mut state: RunState,
    session: Option<&mut Session>,
    progress: &dyn Progress,
) -> Result<RunState, RunError> {
    let dir = run_dir(&job.name, &state.run);
    let output_rel = format!("{dir}/output");
    // Tez's output is complete once `_SUCCESS` exists: a run interrupted or failed while
    // writing back resumes from there.
    let tez_done = matches!(state.phase, Phase::WritingBack | Phase::WriteBackFailed | Phase::WrittenBack)
        && fs.exists(&format!("{output_rel}/_SUCCESS")).await?;
    if !tez_done {
        state.phase = Phase::TezRunning;
        state.owner = Some(Owner::current());
        save_state(fs, &state).await?;
        fs.delete(&output_rel).await?;
        progress.phase("tez", &format!("running the {} DAG", dag_name(&job.dag)));
        let (input, output) = (fs.uri(&format!("{dir}/input")), fs.uri(&output_rel));
        let result = match session {
            Some(session) => session.run(job, &input, &output).await,
            None => tez::run(job, &fs.default_fs(), &input, &output).await,
        };
        match result {
            Ok(r) => {
                state.seconds.insert("tez".into(), r.seconds);
                progress.done("tez", r.seconds);
            }
            Err(e) => return fail(fs, state, Phase::TezFailed, e.into()).await,
        }
    }
    state.phase = Phase::WritingBack;
    state.owner = Some(Owner::current());
    save_state(fs, &state).await?;
    match write_back(fs, job, link, &mut state, &output_rel, progress).await {
        Ok(()) => {
            state.phase = Phase::WrittenBack;
            state.error = None;
            state.owner = None;
            save_state(fs, &state).await?;
            Ok(state)
        }
        Err(e) => {
            let phase = if matches!(e, RunError::Output(_)) { Phase::TezFailed } else { Phase::WriteBackFailed };
            fail(fs, state, phase, e).await
        }
    }
}

async fn fail(fs: &RunFs, mut state: RunState, phase: Phase, error: RunError) -> Result<RunState, RunError> {
    state.phase = phase;
    state.owner = None;
    state.error = Some(error.to_string());
    save_state(fs, &state).await?;
    Err(error)
}

fn dag_name(dag: &DagSpec) -> &'static str {
    match dag {
        DagSpec::Aggregate { .. } => "aggregate",
        DagSpec::Enrich { .. } => "enrich",
        DagSpec::User { .. } => "user",
    }
}

/// The part files of the output, after checking `_SUCCESS`.
async fn output_parts(fs: &RunFs, output_rel: &str) -> Result<Vec<String>, RunError> {
    if !fs.exists(&format!("{output_rel}/_SUCCESS")).await? {
        return Err(OutputError::NoSuccess.into());
    }
    let mut parts: Vec<String> = fs.list(output_rel).await?.into_iter().filter(|n| n.starts_with("part-")).collect();
    parts.sort();
    Ok(parts)
}

/// Calls `f` with every result line of the output's part files, a line at a time.
async fn each_line<T>(
    fs: &RunFs,
    output_rel: &str,
    parts: &[String],
    parse: fn(&str, usize, &[u8]) -> Result<Option<T>, OutputError>,
    mut f: impl AsyncFnMut(T) -> Result<(), RunError>,
) -> Result<(), RunError> {
    for name in parts {
        let mut lines = fs.lines(&format!("{output_rel}/{name}")).await?;
        while let Some((n, line)) = lines.next_line().await? {
            if let Some(result) = parse(name, n, line)? {
                f(result).await?;
            }
        }
    }
    Ok(())
}

async fn write_back(
    fs: &RunFs,
    job: &JobSpec,
    link: &Link,
    state: &mut RunState,
    output_rel: &str,
    progress: &dyn Progress,
) -> Result<(), RunError> {
    let started = Instant::now();
    let parts = output_parts(fs, output_rel).await?;
    let wb = WriteBack::new(&job.name, &state.run);
    let (source, results_store) = stores(job);
    let dir = run_dir(&job.name, &state.run);
    let written = if let (DagSpec::Aggregate { .. }, Some(results_store)) = (&job.dag, results_store) {
        // One result per group: as many as the results store has records, which the link
        // follows anyway.
        let mut groups = Vec::new();
        each_line(fs, output_rel, &parts, output::group_line, async |g| {
            groups.push(g);
            Ok(())
        })
        .await?;
        state.results_out = Some(groups.len());
        if let (DagSpec::Aggregate { computed_at_field: Some(field), .. }, Some(at)) = (&job.dag, state.snapshot_at) {
            // The snapshot's time, kept in the run's state, so a write-back done again builds the
            // same changes.
            let at = tidepool_core::Value::String(rfc3339(at));
            for g in &mut groups {
                g.value.insert(field.clone(), at.clone());
            }
        }
        let (mut existing, _) = link.records(&results_store);
        // The local actor never writes: write-back changes use the run's derived actor.
        let actor = ActorId::from([0u8; 16]);
        let changes = plan::group_changes(&wb, &results_store, &groups, &mut existing, &actor)?;
        let parsed = started.elapsed().as_secs_f64();
        state.seconds.insert("output-parse".into(), parsed);
        progress.done("output-parse", parsed);
        progress.phase("write-back", &format!("{} changes from {} results", changes.len(), groups.len()));
        link.push(&changes, progress).await?
    } else {
        // First every line is read and checked against the snapshot, so output that does not
        // parse, or names a record the snapshot does not hold, writes nothing; then the results
        // are read again and written back a batch at a time.
        let heads = snapshot_heads(fs, &dir).await?;
        let mut count = 0;
        each_line(fs, output_rel, &parts, output::field_line, async |r| {
            check_result(&source, &heads, &r)?;
            count += 1;
            Ok(())
        })
        .await?;
        state.results_out = Some(count);
        let parsed = started.elapsed().as_secs_f64();
        state.seconds.insert("output-parse".into(), parsed);
        progress.done("output-parse", parsed);
        progress.phase("write-back", &format!("{count} results"));
        write_fields(fs, &dir, output_rel, &parts, link, &wb, &source, &heads, count, progress).await?
    };
    state.changes_written = Some(written);
    let total = started.elapsed().as_secs_f64();
    let parsed = state.seconds.get("output-parse").copied().unwrap_or(0.0);
    state.seconds.extend([("write-back".into(), total), ("push".into(), total - parsed)]);
    progress.done("push", total - parsed);
    Ok(())
}

/// A field result must name a record of the snapshot, by its document and its key.
fn check_result(source: &StoreRef, heads: &DocHeads, r: &output::FieldResult) -> Result<(), RunError> {
    if heads.get(&r.doc).is_none() {
        return Err(PlanError::UnknownDoc(r.doc).into());
    }
    if DocId::derive(source, &r.key).ok() != Some(r.doc) {
        return Err(PlanError::KeyMismatch { doc: r.doc, key: format!("{:?}", r.key) }.into());
    }
    Ok(())
}

/// Results per write-back batch: the documents fetched for one batch are all memory holds.
const WRITE_BACK_BATCH: usize = 1_000;

/// Batches sent and not yet acknowledged while the next is built: enough that the hub's storage
/// thread always has the next push queued behind the one it commits.
const SENDS_IN_FLIGHT: usize = 3;

/// Field results onto the snapshotted records, a batch at a time: the batch's tips are fetched
/// from the hub (and the documents of records a tip cannot serve), the changes built on the
/// snapshot heads and sent. Changes the hub already has (a run written back before) are not sent
/// again. Every changed document and its heads after the change go to `_written.jsonl` once the
/// hub acknowledged them. Returns how many were sent.
///
/// Several batches move at once, so the hub always has work queued: while one batch's changes
/// are built here, the hub stores the batches before it ([`SENDS_IN_FLIGHT`]) and serves the
/// tips of the next.
#[allow(clippy::too_many_arguments)]
async fn write_fields(
    fs: &RunFs,
    dir: &str,
    output_rel: &str,
    parts: &[String],
    link: &Link,
    wb: &WriteBack,
    source: &StoreRef,
    heads: &DocHeads,
    total: usize,
    progress: &dyn Progress,
) -> Result<usize, RunError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let written_rel = format!("{dir}/_written.jsonl");
    let writing = fs.write_stream(&written_rel, rx);
    let (batches_tx, mut batches) = tokio::sync::mpsc::channel::<Vec<output::FieldResult>>(1);
    let reading = async move {
        let mut batch = Vec::with_capacity(WRITE_BACK_BATCH);
        each_line(fs, output_rel, parts, output::field_line, async |r| {
            batch.push(r);
            if batch.len() == WRITE_BACK_BATCH {
                // A closed channel means the sending side ended early; its error is the one
                // reported.
                let _ = batches_tx.send(std::mem::replace(&mut batch, Vec::with_capacity(WRITE_BACK_BATCH))).await;
            }
            Ok(())
        })
        .await?;
        if !batch.is_empty() {
            let _ = batches_tx.send(batch).await;
        }
        Ok::<_, RunError>(())
    };
    // A batch's changes are built on the records' tips where the hub keeps them; only the
    // records that need their documents are fetched whole.
    let fetch = async |batch: Option<Vec<output::FieldResult>>| -> Result<_, RunError> {
        match batch {
            Some(b) => {
                let count = b.len();
                let (tips, mut records) = link.fetch_tips(source, &b).await?;
                let (planned, rest) = plan::tip_changes(wb, source, b, heads, &tips)?;
                let missing: Vec<output::FieldResult> = rest.iter().filter(|r| !records.contains_key(&r.doc)).cloned().collect();
                if !missing.is_empty() {
                    records.extend(link.fetch(source, &missing).await?);
                }
                Ok(Some((count, planned, rest, records)))
            }
            None => Ok(None),
        }
    };
    let sending = async move {
        let (mut sent, mut done) = (0, 0);
        let mut in_flight: std::collections::VecDeque<(crate::link::Sending, Bytes, usize)> = std::collections::VecDeque::new();
        let mut current = fetch(batches.recv().await).await?;
        while let Some((count, planned, rest, records)) = current.take() {
            let next = batches.recv().await;
            let build = async {
                let mut changes = planned;
                changes.extend(plan::field_changes(wb, source, &rest, heads, records)?);
                let mut lines = Vec::new();
                for c in &changes {
                    let entry = WrittenDoc { doc: c.doc.to_hex(), heads: vec![c.hash.to_string()] };
                    let _ = serde_json::to_writer(&mut lines, &entry);
                    lines.push(b'\n');
                }
                let fresh: Vec<PlannedChange> = changes.into_iter().filter(|c| !c.known).collect();
                let sending = link.start_send(&fresh)?;
                in_flight.push_back((sending, Bytes::from(lines), count));
                while in_flight.len() > SENDS_IN_FLIGHT {
                    let Some(earlier) = in_flight.pop_front() else { break };
                    finish(link, earlier, &tx, &mut sent, &mut done, total, progress).await?;
                }
                Ok::<_, RunError>(())
            };
            // The next batch's fetch goes out first, before this batch is built.
            let (fetched, built) = tokio::join!(fetch(next), build);
            built?;
            current = fetched?;
        }
        while let Some(earlier) = in_flight.pop_front() {
            finish(link, earlier, &tx, &mut sent, &mut done, total, progress).await?;
        }
        Ok::<_, RunError>(sent)
    };
    let (read, written, sent) = tokio::join!(reading, writing, sending);
    read?;
    let sent = sent?;
    written?;
    Ok(sent)
}

/// Waits for a sent batch's acknowledgements, then records its documents in `_written.jsonl`
/// (only what the hub stored counts as written) and reports progress.
async fn finish(
    link: &Link,
    (sending, lines, results): (crate::link::Sending, Bytes, usize),
    written: &tokio::sync::mpsc::Sender<Bytes>,
    sent: &mut usize,
    done: &mut usize,
    total: usize,
    progress: &dyn Progress,
) -> Result<(), RunError> {
    *sent += link.finish_send(sending).await?;
    // A closed channel means the file's writer failed; its error is the one reported.
    let _ = written.send(lines).await;
    *done += results;
    progress.count("write-back", *done, total);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(new_run_id(t, 0xab), "20231114T221320Z-00ab");
        let later = t + std::time::Duration::from_secs(61);
        assert!(new_run_id(later, 0) > new_run_id(t, 0xffff));
    }

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn a_run_id_sorts_after_the_last_within_the_same_second() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let last = new_run_id(t, 0x9000);
        assert_eq!(next_run_id(t, 0x0010, Some(&last)), "20231114T221320Z-9001");
        assert_eq!(next_run_id(t, 0xa000, Some(&last)), "20231114T221320Z-a000");
        let later = t + std::time::Duration::from_secs(1);
        assert_eq!(next_run_id(later, 0x0001, Some(&last)), "20231114T221321Z-0001");
        assert_eq!(next_run_id(t, 7, None), "20231114T221320Z-0007");
    }
}
