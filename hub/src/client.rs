//! A native Tidepool client: core's [`ClientEngine`] over a tokio-tungstenite WebSocket, with
//! documents in memory, reconnects with jittered exponential backoff, and ways to wait for the
//! hub (acknowledged, idle) that tests, the load tool and the bridge build on.
//!
//! One background task owns the socket and is the only one that sends; API calls change the
//! shared state under a mutex (never held across an await) and nudge the task.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use rand::{Rng, RngCore};
use thiserror::Error;
use tidepool_core::automerge::ActorId;
use tidepool_core::sync::{ClientConfig, ClientDocs, ClientEngine, ClientEvent, OutboxId};
use tidepool_core::wire::{Cursor, ErrorCode, Payload, PeerId};
use tidepool_core::{DocId, Key, KeyError, Record, RecordError, StoreRef, Value};
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How a client connects and retries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `ws://host:port/v1/sync`.
    pub url: String,
    pub token: String,
    /// Defaults to a random id: a client without storage is a new peer each time.
    pub peer: Option<PeerId>,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Pings keep the connection from looking idle to the hub.
    pub ping_interval: Duration,
    pub connect_timeout: Duration,
    /// Largest frame accepted from the hub.
    pub max_frame: usize,
}

impl ClientOptions {
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        ClientOptions {
            url: url.into(),
            token: token.into(),
            peer: None,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            ping_interval: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            max_frame: 64 * 1024 * 1024,
        }
    }
}

/// Why a client call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("invalid key: {0}")]
    Key(#[from] KeyError),
    #[error("record: {0}")]
    Record(Box<RecordError>),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    #[error("the client was closed")]
    Closed,
    #[error("the hub refused access: {0}")]
    Refused(String),
}

// Boxed to keep every client call's `Result` small; record errors are rare.
impl From<RecordError> for ClientError {
    fn from(e: RecordError) -> Self {
        ClientError::Record(Box::new(e))
    }
}

/// A document changed by another peer, with its value just after the change.
#[derive(Debug, Clone)]
pub struct RemoteChange {
    pub store: StoreRef,
    pub key: Vec<u8>,
    /// `None` if the record does not exist (deleted).
    pub value: Option<Value>,
    pub at: Instant,
}

/// What became of a local change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeState {
    /// Waiting for the hub.
    Pending,
    /// Durable at the hub.
    Acked,
    /// The hub refused it (e.g. no write access); it will not be retried.
    Refused,
}

/// The client's documents: every record of every subscribed store, in memory.
#[derive(Debug)]
struct Docs {
    actor: ActorId,
    stores: HashMap<StoreRef, BTreeMap<DocId, Record>>,
}

impl Docs {
    fn get(&self, store: &StoreRef, doc: &DocId) -> Option<&Record> {
        self.stores.get(store)?.get(doc)
    }
}

impl ClientDocs for Docs {
    fn apply(&mut self, store: &StoreRef, doc: DocId, key: &[u8], payload: &Payload) -> Result<bool, RecordError> {
        let docs = self.stores.entry(store.clone()).or_default();
        if let Some(record) = docs.get_mut(&doc) {
            return record.apply(payload);
        }
        let record = Record::load(store, key.to_vec(), payload, &self.actor)?;
        docs.insert(doc, record);
        Ok(true)
    }

    fn record(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<&mut Record, RecordError> {
        let docs = self.stores.entry(store.clone()).or_default();
        Ok(docs.entry(doc).or_insert_with(|| Record::with_encoded_key(store, key.to_vec(), &self.actor)))
    }

    fn list(&mut self, store: &StoreRef) -> Vec<(DocId, Vec<u8>)> {
        let Some(docs) = self.stores.get(store) else { return vec![] };
        docs.iter().map(|(id, r)| (*id, r.encoded_key().to_vec())).collect()
    }
}

#[derive(Debug)]
struct State {
    engine: ClientEngine,
    docs: Docs,
    next_id: OutboxId,
    pending: HashSet<OutboxId>,
    refused: HashSet<OutboxId>,
    connected: bool,
    connections: u64,
    last_error: Option<(ErrorCode, String)>,
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    options: ClientOptions,
    state: Mutex<State>,
    kick: Notify,
    version: watch::Sender<u64>,
    online: watch::Sender<bool>,
    events: broadcast::Sender<RemoteChange>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind, still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}

/// A connection to a hub that survives disconnects. Dropping it stops the background task.
#[derive(Debug)]
pub struct Client {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

impl Client {
    /// Starts the client; it connects (and reconnects) in the background. Must be called inside
    /// a tokio runtime.
    pub fn connect(options: ClientOptions) -> Client {
        let peer = options.peer.unwrap_or_else(|| {
            let mut id = [0u8; 16];
            rand::rng().fill_bytes(&mut id);
            PeerId(id)
        });
        let mut config = ClientConfig::new(peer, options.token.clone());
        config.agent = concat!("tidepool-hub-client/", env!("CARGO_PKG_VERSION")).into();
        config.limits.max_frame = options.max_frame;
        let state = State {
            engine: ClientEngine::new(config),
            docs: Docs { actor: ActorId::from(peer.0), stores: HashMap::new() },
            next_id: 1,
            pending: HashSet::new(),
            refused: HashSet::new(),
            connected: false,
            connections: 0,
            last_error: None,
            closed: false,
        };
        let shared = Arc::new(Shared {
            options,
            state: Mutex::new(state),
            kick: Notify::new(),
            version: watch::Sender::new(0),
            online: watch::Sender::new(true),
            events: broadcast::Sender::new(65_536),
        });
        let task = tokio::spawn(run(shared.clone()));
        Client { shared, task }
    }

    /// Follows a store (from the cursor this client already has for it, if any).
    pub fn subscribe(&self, store: StoreRef) {
        let mut st = self.shared.lock();
        let since = st.engine.cursor(&store);
        st.engine.subscribe(store, since);
        drop(st);
        self.shared.kick.notify_one();
    }

    fn edit(
        &self,
        store: &StoreRef,
        key: &Key,
        edit: impl FnOnce(&mut Record) -> Result<Option<tidepool_core::LocalChange>, ClientError>,
    ) -> Result<Option<OutboxId>, ClientError> {
        let encoded = key.encode()?;
        let doc = DocId::from_encoded_key(store, &encoded);
        let mut st = self.shared.lock();
        let record = st.docs.record(store, doc, &encoded)?;
        let Some(change) = edit(record)? else { return Ok(None) };
        let id = st.next_id;
        st.next_id += 1;
        st.pending.insert(id);
        st.engine.enqueue(id, store.clone(), doc, encoded, change.bytes);
        drop(st);
        self.shared.kick.notify_one();
        self.shared.bump();
        Ok(Some(id))
    }

    /// Writes a record. Returns the change's id, or `None` if the record already held the value.
    pub fn put(&self, store: &StoreRef, key: &Key, value: &Value) -> Result<Option<OutboxId>, ClientError> {
        self.edit(store, key, |r| Ok(r.put(value, now_secs())?))
    }

    /// Deletes a record. Returns `None` if it did not exist.
    pub fn delete(&self, store: &StoreRef, key: &Key) -> Result<Option<OutboxId>, ClientError> {
        self.edit(store, key, |r| Ok(r.delete(now_secs())?))
    }

    /// The record's current value as plain data, `None` if it does not exist.
    pub fn get(&self, store: &StoreRef, key: &Key) -> Result<Option<Value>, ClientError> {
        let encoded = key.encode()?;
        let doc = DocId::from_encoded_key(store, &encoded);
        let st = self.shared.lock();
        Ok(st.docs.get(store, &doc).map(Record::get_plain).transpose()?.flatten())
    }

    /// Copies of every record of a store, deleted ones included (for snapshots).
    pub fn records(&self, store: &StoreRef) -> Vec<Record> {
        let st = self.shared.lock();
        st.docs.stores.get(store).map(|docs| docs.values().cloned().collect()).unwrap_or_default()
    }

    /// Sends a change made elsewhere (e.g. a deterministic write-back): applies it to the local
    /// copy and queues it for the hub. Returns `None` if the copy already had it.
    pub fn push_change(
        &self,
        store: &StoreRef,
        doc: DocId,
        key: &[u8],
        change: &[u8],
    ) -> Result<Option<OutboxId>, ClientError> {
        self.edit_raw(store, doc, key, change)
    }

    fn edit_raw(&self, store: &StoreRef, doc: DocId, key: &[u8], change: &[u8]) -> Result<Option<OutboxId>, ClientError> {
        let mut st = self.shared.lock();
        let record = st.docs.record(store, doc, key)?;
        if !record.apply(&Payload::Changes(vec![change.to_vec()]))? {
            return Ok(None);
        }
        let id = st.next_id;
        st.next_id += 1;
        st.pending.insert(id);
        st.engine.enqueue(id, store.clone(), doc, key.to_vec(), change.to_vec());
        drop(st);
        self.shared.kick.notify_one();
        self.shared.bump();
        Ok(Some(id))
    }

    /// Every existing record of a store as (encoded key, plain value), in key order.
    pub fn values(&self, store: &StoreRef) -> Vec<(Vec<u8>, Value)> {
        let st = self.shared.lock();
        tidepool_core::record::plain_values(st.docs.stores.get(store).into_iter().flat_map(BTreeMap::values))
    }

    pub fn state_of(&self, id: OutboxId) -> ChangeState {
        let st = self.shared.lock();
        if st.pending.contains(&id) {
            ChangeState::Pending
        } else if st.refused.contains(&id) {
            ChangeState::Refused
        } else {
            ChangeState::Acked
        }
    }

    /// Local changes not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.shared.lock().engine.pending()
    }

    pub fn cursor(&self, store: &StoreRef) -> Option<Cursor> {
        self.shared.lock().engine.cursor(store)
    }

    pub fn is_connected(&self) -> bool {
        self.shared.lock().connected
    }

    /// How many connections this client has made.
    pub fn connections(&self) -> u64 {
        self.shared.lock().connections
    }

    /// The last error the hub reported.
    pub fn last_error(&self) -> Option<(ErrorCode, String)> {
        self.shared.lock().last_error.clone()
    }

    /// Changes made by other peers, as they arrive.
    pub fn remote_changes(&self) -> broadcast::Receiver<RemoteChange> {
        self.shared.events.subscribe()
    }

    /// Going offline closes the connection and stops reconnecting; local edits keep queueing.
    pub fn set_online(&self, online: bool) {
        self.shared.online.send_replace(online);
    }

    async fn wait_for(
        &self,
        timeout: Duration,
        what: &'static str,
        done: impl Fn(&State) -> bool,
    ) -> Result<(), ClientError> {
        let mut version = self.shared.version.subscribe();
        let wait = async {
            loop {
                {
                    let st = self.shared.lock();
                    if done(&st) {
                        return Ok(());
                    }
                    if st.closed {
                        return Err(ClientError::Closed);
                    }
                }
                if version.changed().await.is_err() {
                    return Err(ClientError::Closed);
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| ClientError::Timeout(timeout, what))?
    }

    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        self.wait_for(timeout, "a connection", |st| st.connected).await
    }

    /// Until connected, every subscription is live and every local change is acknowledged.
    /// Fails at once with [`ClientError::Refused`] if the hub refused a subscription, which
    /// would otherwise keep the client from ever being idle.
    pub async fn wait_idle(&self, timeout: Duration) -> Result<(), ClientError> {
        let idle = |st: &State| st.connected && st.engine.is_idle();
        self.wait_for(timeout, "the client to be idle", |st| idle(st) || st.engine.refusal().is_some()).await?;
        let st = self.shared.lock();
        match st.engine.refusal() {
            Some(detail) if !idle(&st) => Err(ClientError::Refused(detail.to_owned())),
            _ => Ok(()),
        }
    }

    pub async fn wait_acked(&self, id: OutboxId, timeout: Duration) -> Result<ChangeState, ClientError> {
        self.wait_for(timeout, "an acknowledgement", |st| !st.pending.contains(&id)).await?;
        Ok(self.state_of(id))
    }

    /// Until the hub reports an error (returns it).
    pub async fn wait_error(&self, timeout: Duration) -> Result<(ErrorCode, String), ClientError> {
        self.wait_for(timeout, "an error from the hub", |st| st.last_error.is_some()).await?;
        self.last_error().ok_or(ClientError::Closed)
    }

    /// Closes the connection and stops the client.
    pub async fn close(self) {
        self.set_online(false);
        let mut version = self.shared.version.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while self.is_connected() {
                if version.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        self.shared.lock().closed = true;
        self.shared.bump();
    }
}

/// How long a session must last to count as healthy for the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(2);

/// Connects, runs a session, backs off, and again, for as long as the client is online.
async fn run(shared: Arc<Shared>) {
    let options = shared.options.clone();
    let mut online = shared.online.subscribe();
    let mut backoff = options.min_backoff;
    loop {
        while !*online.borrow_and_update() {
            if online.changed().await.is_err() {
                return;
            }
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(options.max_frame + 1024))
            .max_frame_size(Some(options.max_frame + 1024));
        let connecting = tokio_tungstenite::connect_async_with_config(options.url.as_str(), Some(config), true);
        let started = Instant::now();
        match tokio::time::timeout(options.connect_timeout, connecting).await {
            Ok(Ok((ws, _))) => {
                // Only a session that lasted resets the backoff: one the hub ends at once (e.g.
                // refusing the same frame again and again) must not turn into a reconnect storm.
                if session(&shared, ws, &mut online).await && started.elapsed() >= STABLE_SESSION {
                    backoff = options.min_backoff;
                }
            }
            Ok(Err(e)) => tracing::debug!(url = %options.url, error = %e, "connect failed"),
            Err(_) => tracing::debug!(url = %options.url, "connect timed out"),
        }
        // Jitter keeps a crowd of clients from reconnecting to a restarted hub in lockstep.
        let pause = rand::rng().random_range(backoff / 2..=backoff);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = online.changed() => {}
        }
        backoff = (backoff * 2).min(options.max_backoff);
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One connection's life. Returns whether the hub answered at all (then backoff starts over).
async fn session(shared: &Shared, ws: Socket, online: &mut watch::Receiver<bool>) -> bool {
    let (mut sink, mut stream) = ws.split();
    let frames = {
        let mut st = shared.lock();
        st.connected = true;
        st.connections += 1;
        st.engine.connected();
        st.engine.take_output().frames
    };
    shared.bump();
    let mut heard = false;
    let mut ping = tokio::time::interval(shared.options.ping_interval);
    ping.reset();
    let mut ok = send_all(&mut sink, frames).await;
    while ok {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(WsMessage::Binary(frame))) => {
                    heard = true;
                    match handle_frame(shared, &frame) {
                        Some(frames) => ok = send_all(&mut sink, frames).await,
                        None => ok = false,
                    }
                    shared.bump();
                }
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => ok = false,
                Some(Ok(_)) => {}
            },
            () = shared.kick.notified() => {
                let frames = shared.lock().engine.take_output().frames;
                ok = send_all(&mut sink, frames).await;
            }
            _ = ping.tick() => ok = sink.send(WsMessage::Ping(Default::default())).await.is_ok(),
            changed = online.changed() => {
                if changed.is_err() || !*online.borrow() {
                    let _ = sink.send(WsMessage::Close(None)).await;
                    ok = false;
                }
            }
        }
    }
    {
        let mut st = shared.lock();
        st.engine.disconnected();
        st.connected = false;
    }
    shared.bump();
    heard
}

async fn send_all<S>(sink: &mut S, frames: Vec<Vec<u8>>) -> bool
where
    S: futures_util::Sink<WsMessage> + Unpin,
{
    for frame in frames {
        if sink.feed(WsMessage::Binary(frame.into())).await.is_err() {
            return false;
        }
    }
    sink.flush().await.is_ok()
}

/// Applies a frame from the hub; returns the frames to send back, or `None` if the frame was
/// unusable (the connection is then dropped and re-established).
fn handle_frame(shared: &Shared, frame: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut guard = shared.lock();
    let st = &mut *guard;
    if let Err(e) = st.engine.receive(frame, &mut st.docs) {
        tracing::warn!(error = %e, "unusable frame from the hub; reconnecting");
        return None;
    }
    let output = st.engine.take_output();
    let listening = shared.events.receiver_count() > 0;
    let at = Instant::now();
    let mut events = output.events.iter().peekable();
    while let Some(event) = events.next() {
        match event {
            ClientEvent::Acked { ids } => {
                // The engine reports a refused push as "acked" followed by the hub's error.
                let refused = matches!(events.peek(), Some(ClientEvent::HubError { .. }));
                for id in ids {
                    st.pending.remove(id);
                    if refused {
                        st.refused.insert(*id);
                    }
                }
            }
            ClientEvent::HubError { code, detail } => {
                tracing::debug!(?code, %detail, "the hub reported an error");
                st.last_error = Some((*code, detail.clone()));
            }
            ClientEvent::RemoteChanged { store, doc, key } if listening => {
                let value = st.docs.get(store, doc).and_then(|r| r.get_plain().ok().flatten());
                let _ = shared.events.send(RemoteChange { store: store.clone(), key: key.clone(), value, at });
            }
            _ => {}
        }
    }
    Some(output.frames)
}
