//! `tidepool-hub`: serve the sync endpoint, mint tokens, dump stored records.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use tidepool_core::sync::HubStore;
use tidepool_core::{Key, StoreRef};
use tidepool_hub::auth::{self, Claims, HubAuth, JwtAuthorizer};
use tidepool_hub::server::{self, ServerOptions};
use std::sync::Arc;

use tidepool_hub::cluster::{Cluster, ClusterOptions, ClusterServe};
use tidepool_hub::metrics::Metrics;
use tidepool_hub::storage::{
    Backend, Fences, OpenMode, PostgresBackend, SqliteBackend, Storage, StorageError, StorageOptions,
};
use tokio_util::sync::CancellationToken;

/// Automerge allocates and frees many small objects for every document it loads, applies or
/// saves; mimalloc does that with far less time in the allocator than the system's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DB_FILE: &str = "hub.sqlite";
const SECRET_FILE: &str = "secret";
const LOCK_FILE: &str = "hub.lock";
/// Documents loaded and committed together while filling export columns.
const BACKFILL_PAGE: usize = 500;

#[derive(Debug, Parser)]
#[command(name = "tidepool-hub", version, about = "Tidepool's sync hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve WebSocket sync at /v1/sync, /healthz, /metrics and optional static files.
    Serve(ServeArgs),
    /// Print a signed token granting read and/or write access to stores of one database.
    Token(TokenArgs),
    /// Print a store's current records (one consistent cut) as JSON Lines: {"key": ..., "value": ...}.
    Dump(DumpArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed on startup).
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Data directory (created if missing): the SQLite file and, by default, the token secret.
    #[arg(long)]
    data: PathBuf,
    /// Where documents are stored: `sqlite` (the file in --data) or a PostgreSQL URL
    /// (`postgres://user@host:port/dbname`), which several hubs may share.
    #[arg(long, default_value = "sqlite", value_parser = parse_storage)]
    storage: StorageArg,
    /// PostgreSQL only: this hub's id among the hubs sharing the storage (random by default).
    #[arg(long)]
    hub_id: Option<String>,
    /// PostgreSQL only: `host:port` other hubs relay connections to (default: the bound
    /// address, which suits one machine; set it when hubs run on several).
    #[arg(long)]
    advertise: Option<String>,
    /// PostgreSQL only: a database whose owner has not renewed its lease for this long is taken
    /// over by another hub. Renewals run every third of it.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    lease_ttl: Duration,
    /// Token signing secret; by default `<data>/secret`, created on first start.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Accept every connection with full access, without a token. Development only.
    #[arg(long)]
    insecure_dev: bool,
    /// Serve files from this directory at every other path.
    #[arg(long)]
    static_dir: Option<PathBuf>,
    /// Documents kept loaded in memory.
    #[arg(long, default_value_t = 10_000)]
    cache_docs: usize,
    /// Largest frame accepted, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_frame: usize,
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Most connections that have not said hello yet; more are refused (Overloaded, close 1013).
    #[arg(long, default_value_t = 1000)]
    max_unauthenticated: usize,
    /// Most documents in one push or sync frame.
    #[arg(long, default_value_t = 1000)]
    max_docs_per_batch: usize,
    /// Close authenticated connections silent for this long (e.g. 60s, 5m).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Close connections that have not said hello (and been welcomed) within this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    hello_timeout: Duration,
    /// Keep change log rows this long; older cursors are repaired instead of replayed.
    #[arg(long, default_value = "7days", value_parser = humantime::parse_duration)]
    log_retention: Duration,
    /// How often compaction runs.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    compact_interval: Duration,
    /// Bytes that may wait to be written to one connection before it counts as slow.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    max_queue_bytes: usize,
}

#[derive(Debug, Args)]
struct TokenArgs {
    #[arg(long)]
    secret_file: PathBuf,
    /// Who the token is for (people and jobs alike).
    #[arg(long)]
    sub: String,
    /// The database the grants apply to ("*" for every database).
    #[arg(long)]
    db: String,
    /// A store the token may read ("*" for all); repeatable.
    #[arg(long = "read")]
    read: Vec<String>,
    /// A store the token may write ("*" for all); repeatable.
    #[arg(long = "write")]
    write: Vec<String>,
    /// Validity, e.g. 1h, 30days.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    ttl: Duration,
}

/// Where a hub keeps its documents.
#[derive(Debug, Clone)]
enum StorageArg {
    Sqlite,
    Postgres(String),
}

fn parse_storage(s: &str) -> Result<StorageArg, String> {
    if s == "sqlite" {
        Ok(StorageArg::Sqlite)
    } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Ok(StorageArg::Postgres(s.to_owned()))
    } else {
        Err(format!("expected `sqlite` or a postgres:// URL, got {s:?}"))
    }
}

#[derive(Debug, Args)]
struct DumpArgs {
    /// The data directory of a SQLite hub.
    #[arg(long, required_unless_present = "storage", conflicts_with = "storage")]
    data: Option<PathBuf>,
    /// A PostgreSQL URL instead of --data.
    #[arg(long, value_parser = parse_storage)]
    storage: Option<StorageArg>,
    #[arg(long)]
    db: String,
    #[arg(long)]
    store: String,
}

fn main() -> Result<()> {
    // Automerge opens an info-level span for every document it loads and every column it parses;
    // formatting their fields cost about a tenth of the storage thread's time on a write-back, so
    // the default filter keeps the hub's own info lines and leaves Automerge's spans off.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,automerge=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args),
        Command::Token(args) => token(args),
        Command::Dump(args) => dump(args),
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    if args.idle_timeout < Duration::from_secs(1) {
        bail!("--idle-timeout must be at least 1s");
    }
    if args.hello_timeout < Duration::from_secs(1) {
        bail!("--hello-timeout must be at least 1s");
    }
    if args.max_unauthenticated == 0 {
        bail!("--max-unauthenticated must be at least 1");
    }
    if args.max_frame < 4096 {
        bail!("--max-frame must be at least 4096 bytes");
    }
    std::fs::create_dir_all(&args.data).with_context(|| format!("creating {}", args.data.display()))?;
    let auth = if args.insecure_dev {
        if args.secret_file.is_some() {
            bail!("--insecure-dev and --secret-file exclude each other");
        }
        tracing::warn!("--insecure-dev: every connection gets full access without a token");
        HubAuth::InsecureDev
    } else {
        let (secret, path) = match &args.secret_file {
            Some(path) => (auth::load_secret(path)?, path.clone()),
            None => {
                let path = args.data.join(SECRET_FILE);
                let (secret, created) = auth::load_or_create_secret(&path)?;
                if created {
                    eprintln!("created a token secret at {}", path.display());
                }
                (secret, path)
            }
        };
        eprintln!(
            "mint a token with: tidepool-hub token --secret-file {} --sub NAME --db DB --read '*' --write '*'",
            path.display()
        );
        HubAuth::Jwt(Box::new(JwtAuthorizer::new(&secret)))
    };
    let options = ServerOptions {
        max_frame: args.max_frame,
        max_connections: args.max_connections,
        max_docs_per_batch: args.max_docs_per_batch,
        idle_timeout: args.idle_timeout,
        hello_timeout: args.hello_timeout,
        max_unauthenticated: args.max_unauthenticated,
        compact_interval: args.compact_interval,
        max_queue_bytes: args.max_queue_bytes,
        static_dir: args.static_dir.clone(),
        ..ServerOptions::default()
    };
    let storage_options =
        StorageOptions { cache_docs: args.cache_docs, retention: args.log_retention, ..StorageOptions::default() };
    match args.storage.clone() {
        StorageArg::Sqlite => serve_sqlite(args, auth, options, storage_options),
        StorageArg::Postgres(url) => serve_postgres(args, &url, auth, options, storage_options),
    }
}

fn serve_sqlite(args: ServeArgs, auth: HubAuth, options: ServerOptions, storage_options: StorageOptions) -> Result<()> {
    if args.hub_id.is_some() || args.advertise.is_some() {
        bail!("--hub-id and --advertise apply to PostgreSQL storage only");
    }
    // Two hubs on one data directory would each trust their own cache; the second must not start.
    // The kernel drops the lock with the process, however it ends.
    let lock_path = args.data.join(LOCK_FILE);
    let lock = std::fs::File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!("another hub is running on {}", args.data.display());
    }
    let backend = SqliteBackend::open(&args.data.join(DB_FILE), OpenMode::ReadWrite)
        .with_context(|| format!("opening storage in {}", args.data.display()))?;
    let mut storage = Storage::new(backend, storage_options);
    // Documents stored before the export columns existed (a migrated file) get them before any
    // client can ask for an export; a crash part way resumes where the last page committed.
    let filled = storage.backfill_exports(BACKFILL_PAGE).context("filling export columns")?;
    if filled > 0 {
        tracing::info!(documents = filled, "export columns filled");
    }
    let where_ = args.data.display().to_string();
    run_server(args.listen, &where_, storage, auth, options, |_| None)?;
    drop(lock);
    Ok(())
}

fn serve_postgres(
    args: ServeArgs,
    url: &str,
    auth: HubAuth,
    options: ServerOptions,
    storage_options: StorageOptions,
) -> Result<()> {
    if args.lease_ttl < Duration::from_secs(1) {
        bail!("--lease-ttl must be at least 1s");
    }
    let fences = Arc::new(Fences::default());
    let mut backend = PostgresBackend::open(url, false)
        .with_context(|| format!("opening PostgreSQL storage at {}", redact(url)))?
        .with_fences(fences.clone());
    // A hub stopped inside a transaction loses its session (and the lease rows it locked)
    // before another hub's takeover would have to wait for it.
    backend.set_idle_tx_timeout(args.lease_ttl / 2).context("configuring the PostgreSQL session")?;
    let storage = Storage::new(backend, storage_options);
    let hub_id = args.hub_id.clone().unwrap_or_else(|| {
        let mut id = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut id);
        hex::encode(id)
    });
    let (url, lease_ttl, advertise) = (url.to_owned(), args.lease_ttl, args.advertise.clone());
    let auth_for_routing = auth.clone();
    run_server(args.listen, &redact(&url), storage, auth, options, move |addr| {
        let options = ClusterOptions {
            url,
            hub_id,
            advertise: advertise.unwrap_or_else(|| addr.to_string()),
            lease_ttl,
        };
        tracing::info!(hub = %options.hub_id, advertise = %options.advertise, "joining the hubs on this storage");
        let cluster = Cluster::new(options, Arc::new(Metrics::default()), fences);
        Some(ClusterServe { cluster, auth: auth_for_routing })
    })
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Binds, prints the address, and serves until a signal. `group` makes the cluster settings
/// once the address is known (it is what other hubs relay to by default).
fn run_server<B: Backend + 'static>(
    listen: SocketAddr,
    storage_name: &str,
    storage: Storage<B>,
    auth: HubAuth,
    mut options: ServerOptions,
    group: impl FnOnce(SocketAddr) -> Option<ClusterServe>,
) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        options.cluster = group(addr);
        // Tests and scripts bind port 0 and read the real address from this line.
        println!("listening on {addr}");
        std::io::stdout().flush()?;
        tracing::info!(%addr, storage = %storage_name, "hub started");
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone()));
        server::run(listener, storage, auth, options, shutdown).await?;
        tracing::info!("hub stopped");
        Ok(())
    })
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn signals(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}

fn token(args: TokenArgs) -> Result<()> {
    if args.read.is_empty() && args.write.is_empty() {
        bail!("grant at least one --read or --write store");
    }
    let secret = auth::load_secret(&args.secret_file)?;
    let claims = Claims::new(&args.sub, &args.db, &args.read, &args.write, auth::now_secs(), args.ttl);
    println!("{}", auth::mint(&secret, &claims)?);
    Ok(())
}

fn dump(args: DumpArgs) -> Result<()> {
    let store = StoreRef::new(args.db, args.store);
    let out = &mut std::io::BufWriter::new(std::io::stdout().lock());
    let options = StorageOptions { read_only: true, cache_docs: 1, ..StorageOptions::default() };
    match (args.storage, args.data) {
        (Some(StorageArg::Postgres(url)), _) => {
            let backend = PostgresBackend::open(&url, true)
                .with_context(|| format!("opening PostgreSQL storage at {}", redact(&url)))?;
            write_dump(&mut Storage::new(backend, options), &store, out)
        }
        (Some(StorageArg::Sqlite), _) | (None, None) => bail!("dump needs --data DIR or --storage postgres://..."),
        (None, Some(data)) => {
            let path = data.join(DB_FILE);
            if !path.exists() {
                bail!("{} does not exist", path.display());
            }
            let backend = SqliteBackend::open(&path, OpenMode::ReadOnly)
                .with_context(|| format!("opening {}", path.display()))?;
            write_dump(&mut Storage::new(backend, options), &store, out)
        }
    }
}

/// Prints the records of one consistent cut, read from the export columns (no document is
/// loaded); a file without them (schema version 1, or not filled yet) is read by loading each
/// document instead.
fn write_dump<B: Backend>(storage: &mut Storage<B>, store: &StoreRef, out: &mut impl std::io::Write) -> Result<()> {
    match storage.export_open(store) {
        Ok(Some((export, _))) => {
            let result = write_dump_export(storage, export, out);
            storage.export_close(export);
            result
        }
        Ok(None) => anyhow::bail!("no room for an export in a storage opened for dump alone"),
        Err(StorageError::NotMigrated(_) | StorageError::NotFilled(_)) => write_dump_loaded(storage, store, out),
        Err(e) => Err(e.into()),
    }
}

fn write_dump_export<B: Backend>(storage: &mut Storage<B>, export: u64, out: &mut impl std::io::Write) -> Result<()> {
    let mut after = None;
    loop {
        let page = storage.export_page(export, after, 1000)?.context("the export ended early")?;
        let Some(last) = page.last().map(|r| r.doc) else { break };
        for record in page {
            let Some(value) = record.value else { continue };
            let key = Key::decode(&record.key)?;
            // The same bytes as the tree form: `{"key":…,"value":…}` with the stored value as is.
            out.write_all(b"{\"key\":")?;
            serde_json::to_writer(&mut *out, &tidepool_json::JsonKey(&key))?;
            out.write_all(b",\"value\":")?;
            out.write_all(&value)?;
            out.write_all(b"}\n")?;
        }
        after = Some(last);
    }
    out.flush()?;
    Ok(())
}

fn write_dump_loaded<B: Backend>(storage: &mut Storage<B>, store: &StoreRef, out: &mut impl std::io::Write) -> Result<()> {
    let mut after = None;
    loop {
        let page = storage.records(store, after, 1000)?;
        let Some(last) = page.last().map(|r| r.id()) else { break };
        for record in page {
            let Some(value) = record.get_plain()? else { continue };
            let key = Key::decode(record.encoded_key())?;
            let line = serde_json::json!({
                "key": tidepool_json::key_to_json(&key),
                "value": tidepool_json::value_to_json(&value),
            });
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
        after = Some(last);
    }
    out.flush()?;
    Ok(())
}
