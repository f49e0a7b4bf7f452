//! `tidepool-bridge`: snapshot a store, run a Tez job over it, write the results back, and show
//! the runs.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tidepool_tez_bridge::fs::RunFs;
use tidepool_core::StoreRef;
use tidepool_tez_bridge::job::{DagSpec, JobSpec, TezSpec, Timeouts};
use tidepool_tez_bridge::link::Link;
use tidepool_tez_bridge::run::{self, Progress};
use tidepool_tez_bridge::scratch;
use tidepool_tez_bridge::tez;
use tidepool_tez_bridge::watch::{self, WatchOptions};

#[derive(Debug, Parser)]
#[command(name = "tidepool-bridge", version, about = "Snapshots Tidepool stores to HDFS, runs Tez DAGs, writes results back")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pull the converged state of a store from the hub into a new run directory.
    Snapshot {
        #[arg(long)]
        hub: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        db: String,
        #[arg(long)]
        store: String,
        /// Base location: hdfs://host:port/path or a local directory.
        #[arg(long)]
        to: String,
        /// The job name the run is filed under.
        #[arg(long, default_value = "snapshot")]
        job: String,
        #[arg(long)]
        run: Option<String>,
        /// Only what changed since the job's last written-back run (deletions included).
        #[arg(long)]
        incremental: bool,
    },
    /// Snapshot, run the job's Tez DAG, write the results back.
    Run {
        #[arg(long)]
        job: PathBuf,
        /// Re-run this run id: a run already written back is written back again, which changes
        /// nothing.
        #[arg(long)]
        run: Option<String>,
    },
    /// Stay connected to the hub and run each job whenever its store changes (one run of a job
    /// at a time, after the store has been quiet for the debounce time), its DAG on a warm Tez
    /// session. Prints one line per run. Stops on SIGINT or SIGTERM.
    Watch {
        /// A job file; repeat for several jobs.
        #[arg(long, required = true)]
        job: Vec<PathBuf>,
        /// Quiet time, in milliseconds, after a change before a run starts.
        #[arg(long, default_value_t = 500)]
        debounce_ms: u64,
        /// Longest wait, in seconds, from the first change to the run, however busy the store.
        #[arg(long, default_value_t = 10)]
        max_delay_secs: u64,
        /// Finished runs kept per job (older ones are removed; the newest written-back run is
        /// always kept).
        #[arg(long, default_value_t = 20)]
        keep_runs: usize,
        /// Start a JVM per run instead of keeping a Tez session up.
        #[arg(long)]
        no_session: bool,
    },
    /// The runs of a job and their state.
    Status {
        #[arg(long)]
        job: PathBuf,
    },
}

/// Prints a line per phase (with its duration when it ends) and, for long phases, a line per
/// batch of records. On a terminal a spinner shows the phase in progress and the lines scroll
/// above it; otherwise (a log, a pipe) the lines alone are printed. Lines go to stderr, so stdout
/// keeps only the result (the run summary, the snapshot's state).
struct Bars {
    bar: Option<ProgressBar>,
}

impl Bars {
    fn new() -> Bars {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Bars { bar }
    }

    fn line(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Bars {
    fn phase(&self, name: &str, detail: &str) {
        self.line(format!("[{name}] {detail}"));
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{name}: {detail}"));
        }
    }

    fn done(&self, name: &str, seconds: f64) {
        self.line(format!("[{name}] done in {seconds:.2}s"));
    }

    fn count(&self, name: &str, done: usize, total: usize) {
        self.line(format!("[{name}] {done}/{total}"));
    }
}

fn fresh_run_id() -> String {
    let nonce = (SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0) & 0xffff) as u16;
    run::new_run_id(SystemTime::now(), nonce)
}

/// An error and its causes on one line, each cause once: error types that include their
/// source in their own message would otherwise print it twice.
fn report(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Resolves with the signal's name and exit status at SIGINT or SIGTERM.
async fn signalled() -> (&'static str, u8) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => ("SIGINT", 130),
        () = term => ("SIGTERM", 143),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // Dropping the command on a signal kills the DAG runner and removes the run's scratch
    // directory; the run's state keeps this process as its owner, so `status` says interrupted.
    tokio::select! {
        result = command(cli.command) => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", report(&e));
                ExitCode::FAILURE
            }
        },
        (name, status) = signalled() => {
            eprintln!("error: interrupted by {name}");
            ExitCode::from(status)
        }
    }
}

/// Opens the run location and checks that it answers.
async fn open_fs(spec: &JobSpec) -> Result<RunFs> {
    let fs = RunFs::open(&spec.base).with_context(|| format!("opening {}", spec.base))?;
    fs.check(spec.timeouts.hdfs()).await?;
    Ok(fs)
}

async fn connect(spec: &JobSpec, stores: &[StoreRef], bars: &Bars) -> Result<Link> {
    let started = Instant::now();
    bars.phase("connect", &spec.hub);
    let link = Link::open(&spec.hub, &spec.token()?, stores, spec.timeouts.hub()).await?;
    bars.done("connect", started.elapsed().as_secs_f64());
    Ok(link)
}

/// The seconds of every phase, in run order: `snapshot 0.40s (export 0.10s, hdfs-write 0.30s)`.
fn timings(seconds: &BTreeMap<String, f64>) -> String {
    const PHASES: &[(&str, &[&str])] = &[
        ("connect", &[]),
        ("snapshot", &["export", "hdfs-write"]),
        ("tez", &[]),
        ("write-back", &["output-parse", "push"]),
    ];
    let mut out = Vec::new();
    for (phase, parts) in PHASES {
        let Some(total) = seconds.get(*phase) else { continue };
        let parts: Vec<String> = parts.iter().filter_map(|p| seconds.get(*p).map(|s| format!("{p} {s:.2}s"))).collect();
        if parts.is_empty() {
            out.push(format!("{phase} {total:.2}s"));
        } else {
            out.push(format!("{phase} {total:.2}s ({})", parts.join(", ")));
        }
    }
    out.join(", ")
}

async fn command(command: Command) -> Result<()> {
    match command {
        Command::Snapshot { hub, token, db, store, to, job, run: run_id, incremental } => {
            let spec = JobSpec {
                name: job,
                hub,
                token: Some(token),
                token_file: None,
                db,
                store,
                base: to,
                incremental,
                dag: DagSpec::Enrich { fields: Default::default(), filter: None },
                tez: TezSpec::default(),
                timeouts: Timeouts::default(),
            };
            spec.validate()?;
            let fs = open_fs(&spec).await?;
            let bars = Bars::new();
            // A snapshot reads the store through an export: the bridge holds no replica.
            let link = connect(&spec, &[], &bars).await?;
            let run_id = run_id.unwrap_or_else(fresh_run_id);
            let state = run::snapshot(&fs, &spec, &link, &run_id, &bars).await?;
            bars.finish();
            println!("{}", serde_json::to_string(&state)?);
            link.close().await;
        }
        Command::Run { job, run: run_id } => {
            scratch::sweep();
            let spec = JobSpec::load(&job)?;
            let fs = open_fs(&spec).await?;
            let (_, results) = run::stores(&spec);
            let bars = Bars::new();
            // Only an aggregate's results store (one record per group) is followed; the source
            // store is exported and fetched in pages, never held.
            let stores: Vec<_> = results.into_iter().collect();
            let connect_started = Instant::now();
            let link = connect(&spec, &stores, &bars).await?;
            let connect_secs = connect_started.elapsed().as_secs_f64();
            let existing = match &run_id {
                Some(id) => run::runs(&fs, &spec.name).await?.into_iter().find(|r| &r.run == id),
                None => None,
            };
            let state = match existing {
                // A snapshot that never finished starts over under the same id.
                Some(state) if state.phase != run::Phase::Snapshotting => state,
                _ => {
                    let id = run_id.unwrap_or_else(fresh_run_id);
                    run::snapshot(&fs, &spec, &link, &id, &bars).await?
                }
            };
            let result = run::tez_and_write_back(&fs, &spec, &link, state, None, &bars).await;
            bars.finish();
            link.close().await;
            let mut state = result?;
            state.seconds.insert("connect".into(), connect_secs);
            println!(
                "run {}: {} records in, {} results out, {} changes written; {}",
                state.run,
                state.records_in,
                state.results_out.unwrap_or(0),
                state.changes_written.unwrap_or(0),
                timings(&state.seconds),
            );
        }
        Command::Watch { job, debounce_ms, max_delay_secs, keep_runs, no_session } => {
            scratch::sweep();
            let options = WatchOptions {
                debounce: Duration::from_millis(debounce_ms),
                max_delay: Duration::from_secs(max_delay_secs),
                keep_runs,
                session: !no_session,
            };
            let mut jobs = Vec::new();
            for path in &job {
                let spec = JobSpec::load(path)?;
                if jobs.iter().any(|s: &JobSpec| s.name == spec.name) {
                    anyhow::bail!("job {} is given twice", spec.name);
                }
                jobs.push(spec);
            }
            let bars = Bars::new();
            let watching = jobs.iter().map(|spec| watch_job(spec, &options, &bars));
            futures_util::future::try_join_all(watching).await?;
        }
        Command::Status { job } => {
            scratch::sweep();
            let spec = JobSpec::load(&job)?;
            let fs = open_fs(&spec).await?;
            let runs = run::runs(&fs, &spec.name).await?;
            // A run killed with SIGKILL may have left its DAG on YARN; kill it unless some run of
            // the job is still going (its application is that run's).
            let running = runs.iter().any(|r| r.phase == run::Phase::TezRunning && !r.interrupted());
            if runs.iter().any(|r| r.interrupted()) && !running {
                let killed = tez::kill_yarn_apps(&spec)?;
                for line in killed.lines() {
                    println!("on YARN, left by an interrupted run: {line}");
                }
            }
            for r in runs {
                let phase = if r.interrupted() {
                    "interrupted".to_owned()
                } else {
                    let phase = serde_json::to_value(r.phase)?;
                    phase.as_str().unwrap_or("?").to_owned()
                };
                let error = r.error.map(|e| format!("  error: {e}")).unwrap_or_default();
                println!("{}  {phase}  in={} out={} written={}{error}", r.run, r.records_in, r.results_out.unwrap_or(0), r.changes_written.unwrap_or(0));
            }
        }
    }
    Ok(())
}

/// Watches one job until an error stops it.
async fn watch_job(spec: &JobSpec, options: &WatchOptions, bars: &Bars) -> Result<()> {
    let fs = open_fs(spec).await?;
    let (_, results) = run::stores(spec);
    let stores: Vec<_> = results.into_iter().collect();
    let link = connect(spec, &stores, bars).await?;
    println!("watching {}: {}/{}", spec.name, spec.db, spec.store);
    let result = watch::watch(&fs, spec, &link, options, bars, |ran| match &ran.state {
        Ok(state) => println!(
            "{}: run {}: {} records in, {} results out, {} changes written, {:.2}s after the change; {}",
            spec.name,
            state.run,
            state.records_in,
            state.results_out.unwrap_or(0),
            state.changes_written.unwrap_or(0),
            ran.after_change.as_secs_f64(),
            timings(&state.seconds),
        ),
        Err(e) => eprintln!("error: {}: {e}", spec.name),
    })
    .await;
    link.close().await;
    result.with_context(|| format!("watching {}", spec.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_repeated_in_its_parent_is_printed_once() {
        let io = std::io::Error::other("connection refused");
        let e = anyhow::Error::new(io).context("hub: connection refused").context("opening the run");
        assert_eq!(report(&e), "opening the run: hub: connection refused");
    }

    #[test]
    fn timings_list_every_phase_in_order() {
        let s: BTreeMap<String, f64> =
            [("tez", 8.0), ("snapshot", 0.5), ("export", 0.1), ("hdfs-write", 0.4), ("connect", 0.01)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
        assert_eq!(timings(&s), "connect 0.01s, snapshot 0.50s (export 0.10s, hdfs-write 0.40s), tez 8.00s");
    }
}
