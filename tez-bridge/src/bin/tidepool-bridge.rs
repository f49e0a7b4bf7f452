//! `tidepool-bridge`: snapshot a store, run a Tez job over it, write the results back, and show
//! the runs.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tidepool_tez_bridge::fs::RunFs;
use tidepool_tez_bridge::job::{DagSpec, JobSpec, TezSpec};
use tidepool_tez_bridge::link::Link;
use tidepool_tez_bridge::run::{self, Progress};

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
    /// The runs of a job and their state.
    Status {
        #[arg(long)]
        job: PathBuf,
    },
}

/// Prints a line per phase and shows a spinner while a phase runs.
struct Bars {
    bar: ProgressBar,
}

impl Bars {
    fn new() -> Bars {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
        bar.enable_steady_tick(Duration::from_millis(200));
        Bars { bar }
    }
}

impl Progress for Bars {
    fn phase(&self, name: &str, detail: &str) {
        self.bar.println(format!("[{name}] {detail}"));
        self.bar.set_message(format!("{name}: {detail}"));
    }
}

fn fresh_run_id() -> String {
    let nonce = (SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0) & 0xffff) as u16;
    run::new_run_id(SystemTime::now(), nonce)
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
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
                dag: DagSpec::Enrich { fields: Default::default() },
                tez: TezSpec::default(),
            };
            spec.validate()?;
            let fs = RunFs::open(&spec.base)?;
            let (source, _) = run::stores(&spec);
            let bars = Bars::new();
            bars.phase("connect", &spec.hub);
            let link = Link::open(&spec.hub, &spec.token()?, &[source]).await?;
            let run_id = run_id.unwrap_or_else(fresh_run_id);
            let state = run::snapshot(&fs, &spec, &link, &run_id, &bars).await?;
            bars.bar.finish_and_clear();
            println!("{}", serde_json::to_string(&state)?);
            link.close().await;
        }
        Command::Run { job, run: run_id } => {
            let spec = JobSpec::load(&job)?;
            let fs = RunFs::open(&spec.base).with_context(|| format!("opening {}", spec.base))?;
            let (source, results) = run::stores(&spec);
            let bars = Bars::new();
            bars.phase("connect", &spec.hub);
            let stores: Vec<_> = std::iter::once(source).chain(results).collect();
            let link = Link::open(&spec.hub, &spec.token()?, &stores).await?;
            let existing = match &run_id {
                Some(id) => run::runs(&fs, &spec.name).await?.into_iter().find(|r| &r.run == id),
                None => None,
            };
            let state = match existing {
                Some(state) => state,
                None => {
                    let id = run_id.unwrap_or_else(fresh_run_id);
                    run::snapshot(&fs, &spec, &link, &id, &bars).await?
                }
            };
            let result = run::tez_and_write_back(&fs, &spec, &link, state, &bars).await;
            bars.bar.finish_and_clear();
            link.close().await;
            let state = result?;
            let secs = |k: &str| state.seconds.get(k).copied().unwrap_or(0.0);
            println!(
                "run {}: {} records in, {} results out, {} changes written; snapshot {:.2}s, tez {:.2}s, write-back {:.2}s",
                state.run,
                state.records_in,
                state.results_out.unwrap_or(0),
                state.changes_written.unwrap_or(0),
                secs("snapshot"),
                secs("tez"),
                secs("write-back"),
            );
        }
        Command::Status { job } => {
            let spec = JobSpec::load(&job)?;
            let fs = RunFs::open(&spec.base)?;
            for r in run::runs(&fs, &spec.name).await? {
                let phase = serde_json::to_value(r.phase)?;
                let phase = phase.as_str().unwrap_or("?").to_owned();
                let error = r.error.map(|e| format!("  error: {e}")).unwrap_or_default();
                println!("{}  {phase}  in={} out={} written={}{error}", r.run, r.records_in, r.results_out.unwrap_or(0), r.changes_written.unwrap_or(0));
            }
        }
    }
    Ok(())
}
