//! The client end of a connection: outbox, subscriptions, catch-up, repair.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use automerge::sync::{self, SyncDoc};
use thiserror::Error;

use crate::doc_id::{DocId, StoreRef};
use crate::record::{Record, RecordError};
use crate::wire::{
    self, Cursor, DecodeError, DocData, DocHeads, ErrorCode, Limits, Message, PeerId,
    Payload, Subscription, SyncEntry,
};

/// The shell's id for an outbox entry (e.g. an IndexedDB auto-increment key).
pub type OutboxId = u64;

impl From<RecordError> for ClientError {
    fn from(e: RecordError) -> Self {
        ClientError::Record(Box::new(e))
    }
}

/// Bytes a push frame may spend around its changes (at most a quarter of the hub's frame limit);
/// the rest of the limit is for changes.
const FRAME_OVERHEAD: usize = 64 * 1024;

/// How a client engine behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub peer: PeerId,
    pub token: String,
    pub agent: String,
    pub limits: Limits,
    /// Most documents per `Push`; lowered to the hub's limit once it says so.
    pub max_docs_per_push: usize,
    /// Most bytes of Automerge data per `Push`.
    pub max_push_bytes: usize,
    /// Most pushes awaiting an `Ack` at once.
    pub max_inflight: usize,
}

impl ClientConfig {
    pub fn new(peer: PeerId, token: impl Into<String>) -> Self {
        ClientConfig {
            peer,
            token: token.into(),
            agent: concat!("tidepool-core/", env!("CARGO_PKG_VERSION")).into(),
            limits: Limits::default(),
            max_docs_per_push: 1000,
            max_push_bytes: 4 * 1024 * 1024,
            max_inflight: 8,
        }
    }
}

/// The client's documents as the engine sees them. Implementations persist what they apply
/// whenever they like; the engine reports every document it changed.
pub trait ClientDocs {
    /// Merges remote Automerge bytes (change chunks or a saved document) into the document,
    /// creating it if it is new. Returns whether it changed.
    fn apply(&mut self, store: &StoreRef, doc: DocId, key: &[u8], payload: &Payload)
    -> Result<bool, RecordError>;
    /// The record, created empty if it is new (for the sync protocol).
    fn record(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<&mut Record, RecordError>;
    /// Every document of the store, with its encoded key.
    fn list(&mut self, store: &StoreRef) -> Vec<(DocId, Vec<u8>)>;
}

/// Something the shell must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// A remote change altered this document: persist it and tell the app.
    RemoteChanged { store: StoreRef, doc: DocId, key: Vec<u8> },
    /// These outbox entries are durable at the hub: delete them.
    Acked { ids: Vec<OutboxId> },
    /// Persist this cursor (after the documents reported before it).
    Cursor { store: StoreRef, cursor: Cursor },
    /// The store is caught up with the hub.
    Synced { store: StoreRef },
    /// The hub reported an error.
    HubError { code: ErrorCode, detail: String },
}

/// What the engine wants done: frames to send and events to handle, in order.
#[derive(Debug, Default)]
pub struct ClientOutput {
    pub frames: Vec<Vec<u8>>,
    pub events: Vec<ClientEvent>,
}

/// Why the engine refused a frame from the hub.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("frame from the hub does not decode: {0}")]
    Decode(#[from] DecodeError),
    #[error("the hub sent {0}, which a client does not expect")]
    Unexpected(&'static str),
    #[error("the hub sent a sync message that does not decode: {0}")]
    SyncMessage(String),
    #[error("record: {0}")]
    Record(Box<RecordError>),
}

#[derive(Debug)]
struct OutboxEntry {
    store: StoreRef,
    doc: DocId,
    key: Vec<u8>,
    change: Vec<u8>,
    /// The push carrying this entry, while one is in flight.
    batch: Option<u64>,
}

#[derive(Debug)]
enum Phase {
    /// Not connected, or subscribed but nothing heard yet.
    Waiting,
    /// Receiving the log or a full download.
    CatchingUp,
    Live,
    /// Running the sync protocol; `cursor` counts once every document is done.
    Repairing { cursor: Cursor, heads_complete: bool },
}

#[derive(Debug)]
struct Sub {
    cursor: Option<Cursor>,
    phase: Phase,
}

/// The client end of one connection (it outlives connections: outbox and cursors carry over).
#[derive(Debug)]
pub struct ClientEngine {
    config: ClientConfig,
    subs: BTreeMap<StoreRef, Sub>,
    outbox: BTreeMap<OutboxId, OutboxEntry>,
    inflight: BTreeMap<u64, Vec<OutboxId>>,
    next_batch: u64,
    connected: bool,
    /// Sync protocol sessions in progress, by document.
    sessions: HashMap<DocId, (StoreRef, sync::State)>,
    /// Documents whose outbox entries wait for a sync session to finish instead of an `Ack`.
    awaiting_repair: HashSet<DocId>,
    /// The hub's reason for refusing a read or sync on this connection (see [`Self::refusal`]).
    refusal: Option<String>,
    output: ClientOutput,
}

impl ClientEngine {
    pub fn new(config: ClientConfig) -> Self {
        ClientEngine {
            config,
            subs: BTreeMap::new(),
            outbox: BTreeMap::new(),
            inflight: BTreeMap::new(),
            next_batch: 1,
            connected: false,
            sessions: HashMap::new(),
            awaiting_repair: HashSet::new(),
            refusal: None,
            output: ClientOutput::default(),
        }
    }

    /// Follows a store from `since` (the last cursor persisted for it, if any).
    pub fn subscribe(&mut self, store: StoreRef, since: Option<Cursor>) {
        self.subs.insert(store.clone(), Sub { cursor: since, phase: Phase::Waiting });
        if self.connected {
            self.send(Message::Subscribe { subscriptions: vec![Subscription { store, since }] });
        }
    }

    /// Adds a local change to the outbox (after the shell persisted it under `id`).
    ///
    /// A change that can never fit the hub's frame limit (as the last `Welcome` told it) is
    /// refused at once: the output then carries `Acked` for it and a `HubError` with
    /// [`ErrorCode::TooLarge`], as for a push the hub refused.
    pub fn enqueue(&mut self, id: OutboxId, store: StoreRef, doc: DocId, key: Vec<u8>, change: Vec<u8>) {
        if change.len() + key.len() > self.config.max_push_bytes {
            let detail = format!("a change larger than the hub's frame limit allows ({} bytes)", self.config.max_push_bytes);
            self.event(ClientEvent::Acked { ids: vec![id] });
            self.event(ClientEvent::HubError { code: ErrorCode::TooLarge, detail });
            return;
        }
        self.outbox.insert(id, OutboxEntry { store, doc, key, change, batch: None });
        self.flush();
    }

    /// A transport is up: say hello, subscribe, push the outbox.
    pub fn connected(&mut self) {
        self.connected = true;
        self.refusal = None;
        self.send(Message::Hello {
            peer: self.config.peer,
            token: self.config.token.clone(),
            agent: self.config.agent.clone(),
        });
        let subscriptions: Vec<Subscription> = self
            .subs
            .iter()
            .map(|(store, sub)| Subscription { store: store.clone(), since: sub.cursor })
            .collect();
        if !subscriptions.is_empty() {
            self.send(Message::Subscribe { subscriptions });
        }
        // The limit learnt from an earlier welcome still holds for entries sent back to unsent.
        self.refuse_oversized();
        self.flush();
    }

    /// The transport is gone: everything in flight will be sent again on the next connection.
    pub fn disconnected(&mut self) {
        self.connected = false;
        self.inflight.clear();
        for entry in self.outbox.values_mut() {
            entry.batch = None;
        }
        for sub in self.subs.values_mut() {
            sub.phase = Phase::Waiting;
        }
        self.sessions.clear();
        self.awaiting_repair.clear();
        self.output.frames.clear();
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Outbox entries not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.outbox.len()
    }

    /// Whether every subscription is live and nothing waits for the hub.
    pub fn is_idle(&self) -> bool {
        self.outbox.is_empty()
            && self.sessions.is_empty()
            && self.subs.values().all(|s| matches!(s.phase, Phase::Live))
    }

    /// Why the hub refused access on this connection, other than to a push (a refused push is
    /// reported as `Acked` plus `HubError`): a subscription or sync the token does not grant.
    /// Such a store never becomes live, so [`Self::is_idle`] stays false until the next
    /// connection.
    pub fn refusal(&self) -> Option<&str> {
        self.refusal.as_deref()
    }

    /// The last cursor known for a store.
    pub fn cursor(&self, store: &StoreRef) -> Option<Cursor> {
        self.subs.get(store).and_then(|s| s.cursor)
    }

    /// Frames to send and events to handle since the last call.
    pub fn take_output(&mut self) -> ClientOutput {
        std::mem::take(&mut self.output)
    }

    fn send(&mut self, message: Message) {
        if self.connected {
            self.output.frames.push(wire::encode(&message));
        }
    }

    fn event(&mut self, event: ClientEvent) {
        self.output.events.push(event);
    }

    /// Drops outbox entries that can never fit a push under the hub's frame limit, reporting them
    /// the way the hub reports a refused push, instead of sending them to be refused forever.
    fn refuse_oversized(&mut self) {
        let limit = self.config.max_push_bytes;
        let ids: Vec<OutboxId> = self
            .outbox
            .iter()
            .filter(|(_, e)| e.batch.is_none() && e.change.len() + e.key.len() > limit)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        for id in &ids {
            self.outbox.remove(id);
        }
        let detail = format!("{} change(s) larger than the hub's frame limit allows ({limit} bytes)", ids.len());
        self.event(ClientEvent::Acked { ids });
        self.event(ClientEvent::HubError { code: ErrorCode::TooLarge, detail });
    }

    /// Packs outbox entries not yet in flight into pushes, a store per push, within the limits.
    pub fn flush(&mut self) {
        if !self.connected {
            return;
        }
        while self.inflight.len() < self.config.max_inflight {
            let Some(store) = self.outbox.values().find(|e| e.batch.is_none()).map(|e| e.store.clone())
            else {
                return;
            };
            let batch = self.next_batch;
            self.next_batch += 1;
            let mut docs: Vec<DocData> = Vec::new();
            let mut index: HashMap<DocId, usize> = HashMap::new();
            let mut ids = Vec::new();
            let mut bytes = 0;
            for (id, entry) in self.outbox.iter_mut() {
                if entry.batch.is_some() || entry.store != store {
                    continue;
                }
                let new_doc = !index.contains_key(&entry.doc);
                let full = new_doc && docs.len() >= self.config.max_docs_per_push;
                if !ids.is_empty() && (full || bytes + entry.change.len() > self.config.max_push_bytes) {
                    break;
                }
                entry.batch = Some(batch);
                ids.push(*id);
                bytes += entry.change.len();
                match index.get(&entry.doc).map(|&i| &mut docs[i].payload) {
                    Some(Payload::Changes(chunks)) => chunks.push(entry.change.clone()),
                    _ => {
                        index.insert(entry.doc, docs.len());
                        docs.push(DocData {
                            doc: entry.doc,
                            key: entry.key.clone(),
                            payload: Payload::Changes(vec![entry.change.clone()]),
                        });
                    }
                }
            }
            self.inflight.insert(batch, ids);
            self.send(Message::Push { batch, store, docs });
        }
    }

    /// Handles one frame from the hub.
    pub fn receive<D: ClientDocs>(&mut self, frame: &[u8], docs: &mut D) -> Result<(), ClientError> {
        let message = wire::decode(frame, &self.config.limits)?;
        self.handle(message, docs)
    }

    fn handle<D: ClientDocs>(&mut self, message: Message, docs: &mut D) -> Result<(), ClientError> {
        match message {
            Message::Welcome { max_docs_per_batch, max_frame, .. } => {
                let hub_max = usize::try_from(max_docs_per_batch).unwrap_or(usize::MAX).max(1);
                self.config.max_docs_per_push = self.config.max_docs_per_push.min(hub_max);
                // Leave room for the envelope, store names, ids and keys around the changes.
                let hub_bytes = usize::try_from(max_frame).unwrap_or(usize::MAX);
                let room = hub_bytes.saturating_sub(FRAME_OVERHEAD.min(hub_bytes / 4)).max(1);
                self.config.max_push_bytes = self.config.max_push_bytes.min(room);
                self.refuse_oversized();
                self.flush();
            }
            Message::Ack { batch, incomplete } => self.on_ack(batch, &incomplete),
            Message::Changes { store, docs: data, cursor } => {
                self.apply_all(&store, &data, docs)?;
                if let Some(sub) = self.subs.get_mut(&store) {
                    if matches!(sub.phase, Phase::Waiting) {
                        sub.phase = Phase::CatchingUp;
                    }
                    // Documents arrived before any position did: if the connection drops now,
                    // the next subscription must not claim to hold nothing.
                    let cursor = cursor.or((sub.cursor.is_none() && !data.is_empty()).then_some(Cursor::UNPLACED));
                    // While repairing, the repair's cursor is what counts once it is done.
                    if let (Some(cursor), false) = (cursor, matches!(sub.phase, Phase::Repairing { .. })) {
                        sub.cursor = Some(cursor);
                        self.event(ClientEvent::Cursor { store, cursor });
                    }
                }
            }
            Message::CaughtUp { store, cursor } => {
                if let Some(sub) = self.subs.get_mut(&store) {
                    sub.cursor = Some(cursor);
                    sub.phase = Phase::Live;
                    self.event(ClientEvent::Cursor { store: store.clone(), cursor });
                    self.event(ClientEvent::Synced { store });
                }
            }
            Message::Heads { store, docs: heads, cursor, last } => {
                self.on_heads(store, heads, cursor, last, docs)?;
            }
            Message::Sync { store, entries } => self.on_sync(store, entries, docs)?,
            Message::Error { code, detail, batch } => {
                if batch.is_none() && matches!(code, ErrorCode::Forbidden | ErrorCode::Unauthorized) {
                    self.refusal = Some(detail.clone());
                }
                if let Some(batch) = batch {
                    // A refused push is not retried: its entries would be refused again.
                    if let Some(ids) = self.inflight.remove(&batch) {
                        for id in &ids {
                            self.outbox.remove(id);
                        }
                        self.event(ClientEvent::Acked { ids });
                    }
                }
                self.event(ClientEvent::HubError { code, detail });
                self.flush();
            }
            other @ (Message::Hello { .. }
            | Message::Subscribe { .. }
            | Message::Push { .. }) => return Err(ClientError::Unexpected(other.kind())),
        }
        Ok(())
    }

    fn apply_all<D: ClientDocs>(
        &mut self,
        store: &StoreRef,
        data: &[DocData],
        docs: &mut D,
    ) -> Result<(), ClientError> {
        for d in data {
            if docs.apply(store, d.doc, &d.key, &d.payload)? {
                self.event(ClientEvent::RemoteChanged {
                    store: store.clone(),
                    doc: d.doc,
                    key: d.key.clone(),
                });
            }
        }
        Ok(())
    }

    fn on_ack(&mut self, batch: u64, incomplete: &[DocId]) {
        let Some(ids) = self.inflight.remove(&batch) else { return };
        let mut acked = Vec::with_capacity(ids.len());
        for id in ids {
            let waits = self.outbox.get(&id).is_some_and(|e| incomplete.contains(&e.doc));
            if waits {
                // Stays in the outbox (marked as sent) until the sync session for its document ends.
                if let Some(e) = self.outbox.get(&id) {
                    self.awaiting_repair.insert(e.doc);
                }
            } else if self.outbox.remove(&id).is_some() {
                acked.push(id);
            }
        }
        if !acked.is_empty() {
            self.event(ClientEvent::Acked { ids: acked });
        }
        self.flush();
    }

    fn on_heads<D: ClientDocs>(
        &mut self,
        store: StoreRef,
        heads: Vec<DocHeads>,
        cursor: Cursor,
        last: bool,
        docs: &mut D,
    ) -> Result<(), ClientError> {
        let Some(sub) = self.subs.get_mut(&store) else { return Ok(()) };
        let first_page = !matches!(sub.phase, Phase::Repairing { .. });
        sub.phase = Phase::Repairing { cursor, heads_complete: last };
        let mut entries = Vec::new();
        let mut listed: HashSet<DocId> = HashSet::new();
        for h in heads {
            listed.insert(h.doc);
            let record = docs.record(&store, h.doc, &h.key)?;
            let theirs: Vec<[u8; 32]> = h.heads;
            let ours: Vec<[u8; 32]> = record.heads().iter().map(|c| c.0).collect();
            if ours != theirs {
                entries.extend(self.start_session(&store, record));
            }
        }
        if first_page {
            // Documents the hub may not have at all: offer them too. Documents the hub lists on a
            // later page get a session from that page and are skipped here only if listed now.
            for (doc, key) in docs.list(&store) {
                if listed.contains(&doc) || self.sessions.contains_key(&doc) {
                    continue;
                }
                let record = docs.record(&store, doc, &key)?;
                entries.extend(self.start_session(&store, record));
            }
        }
        self.send_sync(store.clone(), entries);
        self.finish_repair_if_done(&store);
        Ok(())
    }

    fn start_session(&mut self, store: &StoreRef, record: &mut Record) -> Option<SyncEntry> {
        let mut state = sync::State::new();
        let message = record.doc_mut().sync().generate_sync_message(&mut state)?;
        let (doc, key) = (record.id(), record.encoded_key().to_vec());
        self.sessions.insert(doc, (store.clone(), state));
        Some(SyncEntry { doc, key, message: Some(message.encode()) })
    }

    fn send_sync(&mut self, store: StoreRef, entries: Vec<SyncEntry>) {
        let max = self.config.max_docs_per_push.max(1);
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let page: Vec<SyncEntry> = entries.by_ref().take(max).collect();
            self.send(Message::Sync { store: store.clone(), entries: page });
        }
    }

    fn on_sync<D: ClientDocs>(
        &mut self,
        store: StoreRef,
        entries: Vec<SyncEntry>,
        docs: &mut D,
    ) -> Result<(), ClientError> {
        let mut replies = Vec::new();
        for entry in entries {
            let (_, mut state) =
                self.sessions.remove(&entry.doc).unwrap_or_else(|| (store.clone(), sync::State::new()));
            let record = docs.record(&store, entry.doc, &entry.key)?;
            if let Some(bytes) = &entry.message {
                let message = sync::Message::decode(bytes)
                    .map_err(|e| ClientError::SyncMessage(e.to_string()))?;
                let before = record.heads();
                record
                    .doc_mut()
                    .sync()
                    .receive_sync_message(&mut state, message)
                    .map_err(|e| ClientError::from(RecordError::Corrupt(e)))?;
                if record.heads() != before {
                    self.output.events.push(ClientEvent::RemoteChanged {
                        store: store.clone(),
                        doc: entry.doc,
                        key: entry.key.clone(),
                    });
                }
            }
            match record.doc_mut().sync().generate_sync_message(&mut state) {
                Some(reply) => {
                    replies.push(SyncEntry {
                        doc: entry.doc,
                        key: entry.key,
                        message: Some(reply.encode()),
                    });
                    self.sessions.insert(entry.doc, (store.clone(), state));
                }
                None => self.session_done(entry.doc),
            }
        }
        self.send_sync(store.clone(), replies);
        self.finish_repair_if_done(&store);
        Ok(())
    }

    /// A document's sync session ended: the hub has everything this client has of it, durably.
    fn session_done(&mut self, doc: DocId) {
        if !self.awaiting_repair.remove(&doc) {
            return;
        }
        let ids: Vec<OutboxId> = self
            .outbox
            .iter()
            .filter(|(_, e)| e.doc == doc && e.batch.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.outbox.remove(id);
        }
        if !ids.is_empty() {
            self.event(ClientEvent::Acked { ids });
        }
    }

    fn finish_repair_if_done(&mut self, store: &StoreRef) {
        let busy = self.sessions.values().any(|(s, _)| s == store);
        let Some(sub) = self.subs.get_mut(store) else { return };
        if let (Phase::Repairing { cursor, heads_complete: true }, false) = (&sub.phase, busy) {
            let cursor = *cursor;
            sub.cursor = Some(cursor);
            sub.phase = Phase::Live;
            self.event(ClientEvent::Cursor { store: store.clone(), cursor });
            self.event(ClientEvent::Synced { store: store.clone() });
        }
    }

    /// Outbox entries, for diagnostics: (id, store, document, in flight).
    pub fn outbox(&self) -> impl Iterator<Item = (OutboxId, &StoreRef, DocId, bool)> {
        self.outbox.iter().map(|(id, e)| (*id, &e.store, e.doc, e.batch.is_some()))
    }

    /// Every unacknowledged change, for shells that rebuild state.
    pub fn unacked_ids(&self) -> BTreeSet<OutboxId> {
        self.outbox.keys().copied().collect()
    }
}
