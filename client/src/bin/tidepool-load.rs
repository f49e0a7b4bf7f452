//! `tidepool-load`: N concurrent clients doing random puts through a hub; prints one JSON line.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tidepool_core::StoreRef;
use tidepool_client::load::{self, LoadOptions};

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
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
