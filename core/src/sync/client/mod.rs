//! The client end of a connection: outbox, subscriptions, catch-up, repair.
//!
//! One [`ClientEngine`] outlives connections: the outbox and the cursors carry over. Files:
//! `outbox.rs` (pushes and acknowledgements), `subscription.rs` (cursors and catch-up),
//! `repair.rs` (the sync protocol), `output.rs` (what the shell gets back).

mod outbox;
mod output;
mod repair;
mod subscription;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use automerge::sync;

use crate::doc_id::{DocId, StoreRef};
use crate::record::{Record, RecordError};
use crate::wire::{self, Cursor, DocRef, ErrorCode, Limits, Message, Payload, PeerId, Subscription};

use outbox::OutboxEntry;
pub use output::{ClientError, ClientEvent, ClientOutput, Incoming};
use subscription::{Phase, Sub};

/// The shell's id for an outbox entry (e.g. an IndexedDB auto-increment key).
pub type OutboxId = u64;

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

/// The client end of one connection (it outlives connections: outbox and cursors carry over).
#[derive(Debug)]
pub struct ClientEngine {
    config: ClientConfig,
    subs: BTreeMap<StoreRef, Sub>,
    /// Stores whose log position is followed without their documents.
    watching: BTreeSet<StoreRef>,
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
            watching: BTreeSet::new(),
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
        if !self.watching.is_empty() {
            self.send(Message::Watch { stores: self.watching.iter().cloned().collect() });
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

    /// Handles one frame from the hub.
    pub fn receive<D: ClientDocs>(&mut self, frame: &[u8], docs: &mut D) -> Result<(), ClientError> {
        let incoming = self.decode(frame)?;
        self.receive_decoded(incoming, docs)
    }

    /// Decodes a frame from the hub, for shells that must look into it (to load the documents
    /// it names) before the engine takes it with [`Self::receive_decoded`].
    pub fn decode(&self, frame: &[u8]) -> Result<Incoming, ClientError> {
        Ok(Incoming { message: wire::decode(frame, &self.config.limits)? })
    }

    /// Handles a frame decoded by [`Self::decode`].
    pub fn receive_decoded<D: ClientDocs>(&mut self, incoming: Incoming, docs: &mut D) -> Result<(), ClientError> {
        match incoming.message {
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
            Message::Changes { store, docs: data, cursor } => self.on_changes(store, &data, cursor, docs)?,
            Message::CaughtUp { store, cursor } => self.on_caught_up(store, cursor),
            Message::Heads { store, docs: heads, cursor, last } => {
                self.on_heads(store, heads, cursor, last, docs)?;
            }
            Message::Sync { store, entries } => self.on_sync(store, entries, docs)?,
            Message::Error { code, detail, batch } => {
                if batch.is_none() && matches!(code, ErrorCode::Forbidden | ErrorCode::Unauthorized) {
                    self.refusal = Some(detail.clone());
                }
                if let Some(batch) = batch {
                    self.on_refused(batch);
                }
                self.event(ClientEvent::HubError { code, detail });
                self.flush();
            }
            Message::ExportPage { store, export, cut, records, last } => {
                self.event(ClientEvent::ExportPage { store, export, cut, records, last });
            }
            Message::Fetched { request, store, docs, tips, last } => {
                self.event(ClientEvent::Fetched { request, store, docs, tips, last });
            }
            Message::Moved { store, cursor } => {
                if self.watching.contains(&store) {
                    self.event(ClientEvent::Moved { store, cursor });
                }
            }
            other @ (Message::Hello { .. }
            | Message::Watch { .. }
            | Message::Subscribe { .. }
            | Message::Push { .. }
            | Message::Export { .. }
            | Message::Fetch { .. }) => return Err(ClientError::Unexpected(other.kind())),
        }
        Ok(())
    }

    /// Asks for the next page of an export of `store` (`export: None` opens one at the hub's
    /// current cut); the page arrives as [`ClientEvent::ExportPage`]. Nothing is sent while
    /// disconnected (an export does not outlive its connection).
    pub fn export(&mut self, store: StoreRef, export: Option<u64>, after: Option<DocId>, limit: u32) {
        self.send(Message::Export { store, export, after, limit });
    }

    /// Follows where a store's log stands without holding its documents: the position arrives
    /// as [`ClientEvent::Moved`] now (once connected) and after every change the hub logs to the
    /// store, on this connection and the next ones.
    pub fn watch(&mut self, store: StoreRef) {
        if self.watching.insert(store.clone()) {
            self.send(Message::Watch { stores: vec![store] });
        }
    }

    /// Asks for whole documents, or (with `tips`) their tips where the hub keeps them; they
    /// arrive as [`ClientEvent::Fetched`].
    pub fn fetch(&mut self, request: u64, store: StoreRef, docs: Vec<DocRef>, tips: bool) {
        self.send(Message::Fetch { request, store, docs, tips });
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
