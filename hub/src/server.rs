//! The HTTP side: `/v1/sync` (WebSocket), `/healthz`, `/metrics` and optional static files, with
//! a connection limit and graceful shutdown (stop accepting, drain, close cleanly, last commit).

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use tidepool_core::sync::{Authorizer, HubConfig};
use tidepool_core::wire::{ErrorCode, Limits};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::services::ServeDir;

use crate::actor::{self, ActorOptions, Command};
use crate::cluster::{self, ClusterServe, Route};
use crate::conn::{self, ConnContext, ConnLimits, HelloPlace};
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::storage::{Backend, Storage};

/// Room above the frame limit at the WebSocket layer, so a frame slightly over the limit reaches
/// core's decoder (which answers `TooLarge` precisely) while a huge one is cut off unread.
const WS_SLACK: usize = 64 * 1024;
/// Bytes tungstenite reads from the socket at a time, and the size of the read buffer it
/// allocates (and zero-fills) for every connection up front. Larger messages still arrive
/// whole: the buffer grows to a message's length once its header is read. The default,
/// 128 KiB, was most of what an idle connection cost.
const READ_BUFFER: usize = 4 * 1024;
/// Outgoing frames are buffered up to this many bytes before they are written to the socket
/// (the writer also flushes after each burst). tungstenite's write buffer keeps the capacity it
/// grew to, so a small target stops bursts of small frames from growing it (a single frame
/// larger than this still does, to that frame's size).
const WRITE_BUFFER: usize = 16 * 1024;

/// Limits and tuning of a running hub. The defaults suit a small production hub.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub max_frame: usize,
    pub max_connections: usize,
    pub max_docs_per_batch: usize,
    pub idle_timeout: Duration,
    /// A connection must say hello within this long.
    pub hello_timeout: Duration,
    /// Connections that have not said hello yet, at most; more are refused with `Overloaded`.
    pub max_unauthenticated: usize,
    pub max_queue_bytes: usize,
    pub max_inflight: usize,
    pub max_batch: usize,
    pub compact_interval: Duration,
    pub compact_budget: usize,
    /// How long shutdown waits for connections to drain.
    pub drain_timeout: Duration,
    pub static_dir: Option<PathBuf>,
    /// Several hubs on one PostgreSQL: leases, and relaying to the owning hub.
    pub cluster: Option<ClusterServe>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_frame: 16 * 1024 * 1024,
            max_connections: 10_000,
            max_docs_per_batch: 1000,
            idle_timeout: Duration::from_secs(60),
            hello_timeout: Duration::from_secs(10),
            max_unauthenticated: 1000,
            max_queue_bytes: 64 * 1024 * 1024,
            max_inflight: 16,
            max_batch: 512,
            compact_interval: Duration::from_secs(60),
            compact_budget: 1000,
            drain_timeout: Duration::from_secs(10),
            static_dir: None,
            cluster: None,
        }
    }
}

impl ServerOptions {
    /// Core's hub configuration for these limits.
    pub fn hub_config(&self) -> HubConfig {
        let defaults = HubConfig::default();
        HubConfig {
            limits: Limits { max_frame: self.max_frame, max_docs: self.max_docs_per_batch.max(defaults.limits.max_docs) },
            max_docs_per_batch: self.max_docs_per_batch,
            // Catch-up pages must fit the clients' frame limit (core's default for clients).
            page_bytes: defaults.page_bytes.min(self.max_frame / 2).max(1),
            ..defaults
        }
    }
}

struct App {
    actor: mpsc::Sender<Command>,
    metrics: Arc<Metrics>,
    options: ServerOptions,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    active: AtomicUsize,
    storage_alive: Arc<AtomicBool>,
}

/// Counts a connection for the limit and the gauge while it lives.
struct Active<'a>(&'a App);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
        self.0.metrics.connections.fetch_sub(1, Relaxed);
    }
}

impl App {
    fn context(&self) -> ConnContext {
        ConnContext {
            actor: self.actor.clone(),
            metrics: self.metrics.clone(),
            limits: ConnLimits {
                hello_timeout: self.options.hello_timeout,
                idle_timeout: self.options.idle_timeout,
                max_queue_bytes: self.options.max_queue_bytes,
                max_inflight: self.options.max_inflight,
            },
            wire: self.options.hub_config().limits,
            shutdown: self.shutdown.clone(),
        }
    }

    async fn accept(&self, mut socket: WebSocket, relayed: bool) {
        let count = self.active.fetch_add(1, Relaxed) + 1;
        self.metrics.connections.fetch_add(1, Relaxed);
        let _active = Active(self);
        if count > self.options.max_connections {
            tracing::warn!(limit = self.options.max_connections, "connection refused: limit reached");
            self.metrics.error(ErrorCode::Overloaded);
            conn::refuse(&mut socket, ErrorCode::Overloaded).await;
            return;
        }
        if self.shutdown.is_cancelled() {
            conn::refuse(&mut socket, ErrorCode::ShuttingDown).await;
            return;
        }
        // Connections that never say hello could otherwise take every place up to
        // `max_connections` for a whole hello timeout; this limit keeps most places (and the
        // memory) for clients that authenticate, whose connections no longer count here.
        let Some(place) = HelloPlace::take(&self.metrics, self.options.max_unauthenticated) else {
            tracing::warn!(limit = self.options.max_unauthenticated, "connection refused: too many have not said hello");
            self.metrics.error(ErrorCode::Overloaded);
            conn::refuse(&mut socket, ErrorCode::Overloaded).await;
            return;
        };
        self.metrics.connections_total.fetch_add(1, Relaxed);
        match &self.options.cluster {
            None => conn::serve(socket, self.context(), place, None).await,
            Some(group) => self.route(socket, place, group, relayed).await,
        }
    }

    /// Serves a connection here if this hub owns its database, relays it to the owner
    /// otherwise, or waits (up to the lease time and the hello timeout) for the lease to settle.
    async fn route(&self, mut socket: WebSocket, place: HelloPlace, group: &ClusterServe, relayed: bool) {
        use futures_util::StreamExt;
        let first = loop {
            match tokio::time::timeout(self.options.hello_timeout, socket.next()).await {
                Ok(Some(Ok(axum::extract::ws::Message::Binary(bytes)))) => break Vec::from(bytes),
                Ok(Some(Ok(axum::extract::ws::Message::Ping(_) | axum::extract::ws::Message::Pong(_)))) => {}
                Ok(Some(Ok(axum::extract::ws::Message::Text(_)))) => {
                    conn::refuse(&mut socket, ErrorCode::Malformed).await;
                    return;
                }
                Err(_) => {
                    conn::refuse(&mut socket, ErrorCode::IdleTimeout).await;
                    return;
                }
                Ok(_) => return,
            }
        };
        let Some(db) = group.database(&first, self.options.max_frame) else {
            // A token for several databases, or one core will refuse: served here, where core
            // answers it (writes to databases another hub owns are refused by fencing).
            conn::serve(socket, self.context(), place, Some(first)).await;
            return;
        };
        let cluster = &group.cluster;
        let deadline = tokio::time::Instant::now() + cluster.options.lease_ttl * 2 + self.options.hello_timeout;
        loop {
            let changed = cluster.changed.notified();
            match cluster.route(&db) {
                Route::Local => {
                    let Some(lost) = cluster.serving(&db) else { continue };
                    // The connection ends (ShuttingDown, close 1001) when the lease goes, and the
                    // client reconnects to whichever hub owns the database then.
                    let mut context = self.context();
                    let stop = self.shutdown.child_token();
                    context.shutdown = stop.clone();
                    let watcher = tokio::spawn({
                        let stop = stop.clone();
                        async move {
                            tokio::select! {
                                () = lost.cancelled() => stop.cancel(),
                                () = stop.cancelled() => {}
                            }
                        }
                    });
                    conn::serve(socket, context, place, Some(first)).await;
                    stop.cancel();
                    let _ = watcher.await;
                    return;
                }
                Route::Relay(addr) if !relayed => {
                    drop(place);
                    self.metrics.relayed_connections.fetch_add(1, Relaxed);
                    tracing::debug!(%db, %addr, "relaying to the owning hub");
                    let end = cluster::relay(socket, &addr, first, self.options.max_frame.saturating_add(WS_SLACK)).await;
                    if end == cluster::RelayEnd::Owner {
                        // The client reconnects; by then this hub should know the new owner.
                        cluster.refresh();
                    }
                    return;
                }
                Route::Relay(_) | Route::Wait => {
                    cluster.want(&db);
                    if tokio::time::Instant::now() >= deadline {
                        tracing::info!(%db, "no owner in time; the client retries");
                        self.metrics.error(ErrorCode::Overloaded);
                        conn::refuse(&mut socket, ErrorCode::Overloaded).await;
                        return;
                    }
                    let _ = tokio::time::timeout(Duration::from_millis(200), changed).await;
                }
            }
        }
    }
}

async fn sync(
    State(app): State<Arc<App>>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let relayed = headers.contains_key(cluster::RELAYED_HEADER);
    let limit = app.options.max_frame.saturating_add(WS_SLACK);
    let ws = ws.read_buffer_size(READ_BUFFER).write_buffer_size(WRITE_BUFFER);
    ws.max_message_size(limit).max_frame_size(limit).on_upgrade(move |socket| {
        let tracker = app.tracker.clone();
        tracker.track_future(async move { app.accept(socket, relayed).await })
    })
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    if app.storage_alive.load(Relaxed) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "storage stopped\n").into_response()
    }
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render()).into_response()
}

/// Serves until `shutdown` is cancelled, then drains: connections are told `ShuttingDown`
/// after the replies to everything they sent, storage commits and closes.
pub async fn run<B, A>(
    listener: TcpListener,
    storage: Storage<B>,
    auth: A,
    options: ServerOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    B: Backend + 'static,
    A: Authorizer + Send + 'static,
{
    let metrics = match &options.cluster {
        Some(group) => group.cluster.metrics.clone(),
        None => Arc::new(Metrics::default()),
    };
    let engine = Engine::new(storage, auth, options.hub_config(), metrics.clone());
    let (tx, rx) = mpsc::channel(4096);
    let storage_alive = Arc::new(AtomicBool::new(true));
    let actor_options = ActorOptions {
        max_batch: options.max_batch,
        max_queue_bytes: options.max_queue_bytes,
        compact_budget: options.compact_budget,
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<bool>();
    let alive = storage_alive.clone();
    let stop_everything = shutdown.clone();
    std::thread::Builder::new().name("tidepool-storage".into()).spawn(move || {
        let clean = std::panic::catch_unwind(AssertUnwindSafe(|| actor::run(engine, rx, actor_options))).is_ok();
        alive.store(false, Relaxed);
        if !clean {
            // Without its storage the hub can only refuse; stop, so a supervisor restarts it.
            tracing::error!("the storage actor panicked; shutting down");
            stop_everything.cancel();
        }
        let _ = done_tx.send(clean);
    })?;

    let ticker = tokio::spawn({
        let tx = tx.clone();
        let shutdown = shutdown.clone();
        let every = options.compact_interval;
        async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {
                        if tx.send(Command::Compact).await.is_err() { break }
                    }
                    () = shutdown.cancelled() => break,
                }
            }
        }
    });

    let keeper = match &options.cluster {
        Some(group) => {
            let (cluster, actor) = (group.cluster.clone(), tx.clone());
            let started = tokio::task::spawn_blocking(move || cluster::start_keeper(cluster, actor)).await;
            Some(started.map_err(std::io::Error::other)?.map_err(std::io::Error::other)?)
        }
        None => None,
    };

    let app = Arc::new(App {
        actor: tx.clone(),
        metrics,
        options: options.clone(),
        shutdown: shutdown.clone(),
        tracker: TaskTracker::new(),
        active: AtomicUsize::new(0),
        storage_alive,
    });
    let mut router = Router::new()
        .route("/v1/sync", get(sync))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(app.clone());
    if let Some(dir) = &options.static_dir {
        router = router.fallback_service(ServeDir::new(dir));
    }
    let listener = listener.tap_io(|tcp| {
        // Sync frames are small and latency-bound; Nagle would hold them back.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).with_graceful_shutdown(shutdown.clone().cancelled_owned()).await?;

    tracing::info!("draining connections");
    app.tracker.close();
    if tokio::time::timeout(options.drain_timeout, app.tracker.wait()).await.is_err() {
        tracing::warn!("connections did not drain in time; closing storage anyway");
    }
    ticker.abort();
    let _ = tx.send(Command::Stop).await;
    drop(tx);
    drop(app);
    let done = done_rx.await;
    if let Some(keeper) = keeper {
        // After the last commit: release the leases so other hubs take over at once.
        let _ = tokio::task::spawn_blocking(move || keeper.stop()).await;
    }
    match done {
        Ok(true) => Ok(()),
        _ => Err(std::io::Error::other("the storage actor stopped abnormally")),
    }
}
