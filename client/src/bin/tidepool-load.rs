//! `tidepool-load`: N concurrent clients doing random puts through a hub; prints one JSON line.

use std::time::Duration;

use anyhow::{Context, Result};
use std::path::PathBuf;

use clap::Parser;
use tidepool_core::StoreRef;
use tidepool_client::load::{self, LoadOptions};
use tidepool_client::load_part::{self, PartOptions};

#[derive(Debug, Parser)]
#[command(name = "tidepool-load", version, about = "Drive a Tidepool hub with concurrent clients")]
struct Cli {
    /// The hub's sync endpoint, e.g. ws://127.0.0.1:8787/v1/sync.
    #[arg(long)]
    url: String,
    /// A token with read and write access to the store.
    #[arg(long, default_value = "")]
    token: String,
    #[arg(long, default_value_t = 10)]
    clients: usize,
    #[arg(long, default_value_t = 100)]
    records: usize,
    /// Total puts, spread over the clients.
    #[arg(long, default_value_t = 1000)]
    ops: usize,
    /// Unacknowledged puts each client allows itself.
    #[arg(long, default_value_t = 8)]
    window: usize,
    #[arg(long, default_value = "load")]
    db: String,
    #[arg(long, default_value = "records")]
    store: String,
    /// How long to wait for convergence after the last put.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Run clients FIRST..FIRST+COUNT of --clients as one process of a spread run, coordinated
    /// over stdin/stdout by bench/run_load.py (see `tidepool_client::load_part`).
    #[arg(long, value_names = ["FIRST", "COUNT"], num_args = 2, requires = "trace")]
    part: Option<Vec<usize>>,
    /// Where a spread run's process writes its trace.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// A spread run stops writing after this long, finished or not.
    #[arg(long, default_value = "600s", value_parser = humantime::parse_duration)]
    cap: Duration,
    /// Put --records records of FIELDS fields through one client (initial sync benchmark).
    #[arg(long, value_name = "FIELDS", conflicts_with_all = ["part", "fresh"])]
    seed: Option<usize>,
    /// A fresh client downloads the whole store; stops at --cap.
    #[arg(long, conflicts_with = "part")]
    fresh: bool,
    /// With --part: clients merge remote changes only into the records they write or read
    /// (`ClientOptions::lazy_merge`), so the load processes cost less than the hub they measure.
    #[arg(long, requires = "part")]
    lazy_merge: bool,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let store = StoreRef::new(cli.db.clone(), cli.store.clone());
    if let Some(fields) = cli.seed {
        let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
        return Ok(runtime.block_on(load_part::run_seed(&cli.url, &cli.token, &store, cli.records, fields))?);
    }
    if cli.fresh {
        let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
        return Ok(runtime.block_on(load_part::run_fresh(&cli.url, &cli.token, &store, cli.cap))?);
    }
    if let (Some(part), Some(trace)) = (&cli.part, &cli.trace) {
        let options = PartOptions {
            url: cli.url,
            token: cli.token,
            store,
            first: part[0],
            count: part[1],
            clients: cli.clients,
            records: cli.records,
            ops: cli.ops,
            window: cli.window,
            cap: cli.cap,
            converge: cli.timeout,
            trace: trace.clone(),
            lazy_merge: cli.lazy_merge,
        };
        let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
        return Ok(runtime.block_on(load_part::run_part(options))?);
    }
    let options = LoadOptions {
        url: cli.url,
        token: cli.token,
        clients: cli.clients,
        records: cli.records,
        ops: cli.ops,
        window: cli.window,
        store: StoreRef::new(cli.db, cli.store),
        timeout: cli.timeout,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let report = runtime.block_on(load::run(options))?;
    println!("{}", serde_json::to_string(&report)?);
    if !report.converged {
        std::process::exit(1);
    }
    Ok(())
}
