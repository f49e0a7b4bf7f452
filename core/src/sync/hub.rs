//! The hub end: every connection's protocol state, catch-up, fan-out and repair, over a
//! [`HubStore`] that the hub shell backs with durable storage.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use automerge::ChangeHash;
use automerge::sync::{self, SyncDoc};
use thiserror::Error;

use crate::doc_id::{DocId, StoreRef};
use crate::record::{Record, RecordError};
use crate::sync::auth::{Authorizer, Grants};
use crate::wire::{
    self, Cursor, DecodeError, DocData, DocHeads, ErrorCode, Limits, Message, Payload, PeerId,
    SyncEntry,
};

/// The shell's name for a connection.
pub type ConnId = u64;

/// One entry of a store's change log: the changes one push (or sync round) added to a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    pub doc: DocId,
    pub key: Vec<u8>,
    pub changes: Vec<Vec<u8>>,
    pub origin: PeerId,
}

/// The hub's documents and change logs. Writes made during one [`Hub::receive`] must become
/// durable before the shell delivers that call's output (see [`HubOutput::durable`]).
pub trait HubStore {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Names this lifetime of the storage; a new, empty storage must get a new epoch.
    fn epoch(&self) -> [u8; 16];
    /// The record, loaded on demand, or created empty if the store does not hold it.
    fn record(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<&mut Record, Self::Error>;
    /// Appends to the store's log the changes just applied to `doc` (the record is already
    /// updated) and returns the entry's sequence number.
    fn append(
        &mut self,
        store: &StoreRef,
        doc: DocId,
        key: &[u8],
        changes: Vec<Vec<u8>>,
        origin: PeerId,
    ) -> Result<u64, Self::Error>;
    /// The sequence number of the store's newest log entry (0 for an empty log).
    fn head_seq(&mut self, store: &StoreRef) -> Result<u64, Self::Error>;
    /// Log entries after `after`, oldest first, at most `limit`; `None` if the log no longer
    /// reaches back that far (it was compacted).
    fn log_since(
        &mut self,
        store: &StoreRef,
        after: u64,
        limit: usize,
    ) -> Result<Option<Vec<LogEntry>>, Self::Error>;
    /// Documents of the store in id order after `after`, at most `limit`, with their keys.
    fn docs(
        &mut self,
        store: &StoreRef,
        after: Option<DocId>,
        limit: usize,
    ) -> Result<Vec<(DocId, Vec<u8>)>, Self::Error>;
    /// The whole document, saved. Stores that keep saved snapshots return them directly.
    fn saved(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<Vec<u8>, Self::Error> {
        Ok(self.record(store, doc, key)?.save())
    }
}

/// A frame for one connection. Fan-out shares one encoding among all receivers.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub to: ConnId,
    pub frame: Arc<Vec<u8>>,
}

/// What the hub wants done after a call.
#[derive(Debug, Default)]
pub struct HubOutput {
    /// Frames to deliver, in order per connection.
    pub sends: Vec<Outgoing>,
    /// Connections to close after their frames are sent.
    pub close: Vec<ConnId>,
    /// The call wrote to the store: commit before delivering `sends` (they acknowledge or
    /// announce those writes).
    pub durable: bool,
}

/// A storage failure: the call's effects must not be acknowledged.
#[derive(Debug, Error)]
#[error("hub storage failed: {0}")]
pub struct HubError(pub Box<dyn std::error::Error + Send + Sync>);

#[derive(Debug, Default)]
struct Conn {
    peer: Option<PeerId>,
    grants: Option<Grants>,
    subs: BTreeSet<StoreRef>,
    sync: HashMap<DocId, sync::State>,
}

/// Tuning for a hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub limits: Limits,
    /// Most documents a client may put in one push or sync frame.
    pub max_docs_per_batch: usize,
    /// Most documents (or log entries) per catch-up frame.
    pub page_docs: usize,
    /// Most Automerge bytes per catch-up frame.
    pub page_bytes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            limits: Limits::default(),
            max_docs_per_batch: 1000,
            page_docs: 2000,
            page_bytes: 4 * 1024 * 1024,
        }
    }
}

/// The hub's sync engine: all connections, one store.
#[derive(Debug)]
pub struct Hub<S, A> {
    store: S,
    auth: A,
    config: HubConfig,
    conns: HashMap<ConnId, Conn>,
    next_conn: ConnId,
}

impl<S: HubStore, A: Authorizer> Hub<S, A> {
    pub fn new(store: S, auth: A) -> Self {
        Self::with_config(store, auth, HubConfig::default())
    }

    pub fn with_config(store: S, auth: A, config: HubConfig) -> Self {
        Hub { store, auth, config, conns: HashMap::new(), next_conn: 1 }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// A new connection.
    pub fn connect(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(id, Conn::default());
        id
    }

    /// The connection is gone.
    pub fn disconnect(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// An error frame for a connection the shell refuses (e.g. over the connection limit).
    pub fn error_frame(code: ErrorCode, detail: &str) -> Vec<u8> {
        wire::encode(&Message::Error { code, detail: detail.to_owned(), batch: None })
    }

    /// Handles one frame from a connection.
    pub fn receive(&mut self, conn: ConnId, frame: &[u8]) -> Result<HubOutput, HubError> {
        let mut out = HubOutput::default();
        if !self.conns.contains_key(&conn) {
            return Ok(out);
        }
        let message = match wire::decode(frame, &self.config.limits) {
            Ok(m) => m,
            Err(e) => {
                let (code, close) = match e {
                    DecodeError::TooLarge { .. } => (ErrorCode::TooLarge, true),
                    DecodeError::UnsupportedVersion(_) => (ErrorCode::UnsupportedVersion, true),
                    DecodeError::TooManyDocs { .. } => (ErrorCode::TooManyDocs, false),
                    _ => (ErrorCode::Malformed, true),
                };
                reply(&mut out, conn, Message::Error { code, detail: e.to_string(), batch: None });
                if close {
                    out.close.push(conn);
                }
                return Ok(out);
            }
        };
        self.handle(conn, message, &mut out).map_err(|e| HubError(Box::new(e)))?;
        Ok(out)
    }

    fn handle(&mut self, conn: ConnId, message: Message, out: &mut HubOutput) -> Result<(), S::Error> {
        let authenticated = self.conns.get(&conn).is_some_and(|c| c.grants.is_some());
        match message {
            Message::Hello { peer, token, .. } => {
                if authenticated {
                    violation(out, conn, "hello sent twice");
                    return Ok(());
                }
                match self.auth.authorize(&token) {
                    Ok(grants) => {
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.peer = Some(peer);
                            c.grants = Some(grants);
                        }
                        let welcome = Message::Welcome {
                            epoch: self.store.epoch(),
                            max_frame: u32::try_from(self.config.limits.max_frame).unwrap_or(u32::MAX),
                            max_docs_per_batch: u32::try_from(self.config.max_docs_per_batch)
                                .unwrap_or(u32::MAX),
                        };
                        reply(out, conn, welcome);
                    }
                    Err(_) => {
                        let detail = "token refused".to_owned();
                        reply(out, conn, Message::Error { code: ErrorCode::Unauthorized, detail, batch: None });
                        out.close.push(conn);
                    }
                }
            }
            _ if !authenticated => {
                violation(out, conn, "the first frame must be hello");
            }
            Message::Subscribe { subscriptions } => {
                for sub in subscriptions {
                    if !self.grants(conn).is_some_and(|g| g.can_read(&sub.store)) {
                        forbidden(out, conn, &sub.store, None);
                        continue;
                    }
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.subs.insert(sub.store.clone());
                    }
                    self.catch_up(conn, &sub.store, sub.since, out)?;
                }
            }
            Message::Push { batch, store, docs } => {
                if !self.grants(conn).is_some_and(|g| g.can_write(&store)) {
                    forbidden(out, conn, &store, Some(batch));
                    return Ok(());
                }
                if docs.len() > self.config.max_docs_per_batch {
                    let detail = format!("{} documents, limit {}", docs.len(), self.config.max_docs_per_batch);
                    reply(out, conn, Message::Error { code: ErrorCode::TooManyDocs, detail, batch: Some(batch) });
                    return Ok(());
                }
                self.push(conn, batch, store, docs, out)?;
            }
            Message::Sync { store, entries } => {
                let grants = self.grants(conn);
                if !grants.is_some_and(|g| g.can_read(&store)) {
                    forbidden(out, conn, &store, None);
                    return Ok(());
                }
                if entries.len() > self.config.max_docs_per_batch {
                    let detail = format!("{} documents, limit {}", entries.len(), self.config.max_docs_per_batch);
                    reply(out, conn, Message::Error { code: ErrorCode::TooManyDocs, detail, batch: None });
                    return Ok(());
                }
                self.sync_round(conn, store, entries, out)?;
            }
            other @ (Message::Welcome { .. }
            | Message::Ack { .. }
            | Message::Changes { .. }
            | Message::CaughtUp { .. }
            | Message::Heads { .. }
            | Message::Error { .. }) => {
                violation(out, conn, &format!("{} is sent by hubs, not clients", other.kind()));
            }
        }
        Ok(())
    }

    fn grants(&self, conn: ConnId) -> Option<&Grants> {
        self.conns.get(&conn).and_then(|c| c.grants.as_ref())
    }

    fn peer(&self, conn: ConnId) -> PeerId {
        self.conns.get(&conn).and_then(|c| c.peer).unwrap_or(PeerId([0; 16]))
    }

    fn cursor(&mut self, store: &StoreRef) -> Result<Cursor, S::Error> {
        Ok(Cursor { epoch: self.store.epoch(), seq: self.store.head_seq(store)? })
    }

    /// Brings a new subscriber up to date: from the log, as a full download, or by repair.
    fn catch_up(
        &mut self,
        conn: ConnId,
        store: &StoreRef,
        since: Option<Cursor>,
        out: &mut HubOutput,
    ) -> Result<(), S::Error> {
        let head = self.cursor(store)?;
        match since {
            None => self.full_download(conn, store, head, out),
            Some(c) if c.epoch == head.epoch && c.seq <= head.seq => {
                if self.log_catch_up(conn, store, c.seq, head, out)? {
                    Ok(())
                } else {
                    self.send_heads(conn, store, head, out)
                }
            }
            Some(_) => self.send_heads(conn, store, head, out),
        }
    }

    /// Streams the log after `after`; `false` if the log no longer reaches back that far.
    fn log_catch_up(
        &mut self,
        conn: ConnId,
        store: &StoreRef,
        mut after: u64,
        head: Cursor,
        out: &mut HubOutput,
    ) -> Result<bool, S::Error> {
        let peer = self.peer(conn);
        while after < head.seq {
            let Some(entries) = self.store.log_since(store, after, self.config.page_docs)? else {
                return Ok(false);
            };
            let Some(last) = entries.last().map(|e| e.seq) else { break };
            let docs: Vec<DocData> = entries
                .into_iter()
                .filter(|e| e.origin != peer)
                .map(|e| DocData { doc: e.doc, key: e.key, payload: Payload::Changes(e.changes) })
                .collect();
            let cursor = Some(Cursor { epoch: head.epoch, seq: last });
            reply(out, conn, Message::Changes { store: store.clone(), docs, cursor });
            after = last;
        }
        reply(out, conn, Message::CaughtUp { store: store.clone(), cursor: head });
        Ok(true)
    }

    fn full_download(
        &mut self,
        conn: ConnId,
        store: &StoreRef,
        head: Cursor,
        out: &mut HubOutput,
    ) -> Result<(), S::Error> {
        let mut after = None;
        loop {
            let ids = self.store.docs(store, after, self.config.page_docs)?;
            let Some(last) = ids.last().map(|(d, _)| *d) else { break };
            let mut page = Vec::new();
            let mut bytes = 0;
            for (doc, key) in ids {
                let saved = self.store.saved(store, doc, &key)?;
                bytes += saved.len();
                page.push(DocData { doc, key, payload: Payload::Document(saved) });
                if bytes >= self.config.page_bytes {
                    let docs = std::mem::take(&mut page);
                    reply(out, conn, Message::Changes { store: store.clone(), docs, cursor: None });
                    bytes = 0;
                }
            }
            if !page.is_empty() {
                reply(out, conn, Message::Changes { store: store.clone(), docs: page, cursor: None });
            }
            after = Some(last);
        }
        reply(out, conn, Message::CaughtUp { store: store.clone(), cursor: head });
        Ok(())
    }

    fn send_heads(
        &mut self,
        conn: ConnId,
        store: &StoreRef,
        head: Cursor,
        out: &mut HubOutput,
    ) -> Result<(), S::Error> {
        let mut after = None;
        loop {
            let ids = self.store.docs(store, after, self.config.page_docs)?;
            let last = ids.last().map(|(d, _)| *d);
            let mut docs = Vec::with_capacity(ids.len());
            for (doc, key) in ids {
                let heads = self.store.record(store, doc, &key)?.heads().iter().map(|h| h.0).collect();
                docs.push(DocHeads { doc, key, heads });
            }
            let done = last.is_none() || docs.len() < self.config.page_docs;
            reply(out, conn, Message::Heads { store: store.clone(), docs, cursor: head, last: done });
            if done {
                return Ok(());
            }
            after = last;
        }
    }

    fn push(
        &mut self,
        conn: ConnId,
        batch: u64,
        store: StoreRef,
        docs: Vec<DocData>,
        out: &mut HubOutput,
    ) -> Result<(), S::Error> {
        // Parse every payload first: a corrupt document anywhere refuses the whole batch and
        // stores nothing from it.
        let mut parsed = Vec::with_capacity(docs.len());
        for d in docs {
            match parse(&d.payload) {
                Ok(changes) => parsed.push((d, changes)),
                Err(detail) => {
                    let detail = format!("document {}: {detail}", d.doc);
                    reply(out, conn, Message::Error { code: ErrorCode::CorruptData, detail, batch: Some(batch) });
                    return Ok(());
                }
            }
        }
        let origin = self.peer(conn);
        let mut incomplete = Vec::new();
        let mut fanout = Vec::new();
        let mut back = Vec::new();
        let mut last_seq = None;
        for (d, changes) in parsed {
            let pushed: HashSet<ChangeHash> = changes.iter().map(automerge::Change::hash).collect();
            let record = self.store.record(&store, d.doc, &d.key)?;
            let before = record.heads();
            if let Err(e) = record.doc_mut().apply_changes(changes) {
                let detail = format!("document {}: {e}", d.doc);
                reply(out, conn, Message::Error { code: ErrorCode::CorruptData, detail, batch: Some(batch) });
                return Ok(());
            }
            if !record.missing_deps().is_empty() {
                incomplete.push((d.doc, d.key.clone()));
            }
            // A pushed change can complete changes that waited for it in the document (pushed
            // earlier by someone else, with a dependency missing). They are new to everyone,
            // the pusher included, so they are logged as an entry of their own.
            let (own, unseen): (Vec<Vec<u8>>, Vec<Vec<u8>>) = {
                let new = record.doc_mut().get_changes(&before);
                let (own, unseen): (Vec<_>, Vec<_>) = new.into_iter().partition(|c| pushed.contains(&c.hash()));
                let bytes = |cs: Vec<automerge::Change>| cs.into_iter().map(|c| c.raw_bytes().to_vec()).collect();
                (bytes(own), bytes(unseen))
            };
            for (changes, from) in [(own, origin), (unseen, PeerId::HUB)] {
                if changes.is_empty() {
                    continue;
                }
                let data = DocData { doc: d.doc, key: d.key.clone(), payload: Payload::Changes(changes.clone()) };
                last_seq = Some(self.store.append(&store, d.doc, &d.key, changes, from)?);
                out.durable = true;
                if from == PeerId::HUB {
                    back.push(data.clone());
                }
                fanout.push(data);
            }
        }
        let ids: Vec<DocId> = incomplete.iter().map(|(d, _)| *d).collect();
        reply(out, conn, Message::Ack { batch, incomplete: ids });
        if !incomplete.is_empty() {
            let mut entries = Vec::new();
            for (doc, key) in incomplete {
                let mut state = self.take_sync_state(conn, doc);
                let record = self.store.record(&store, doc, &key)?;
                if let Some(m) = record.doc_mut().sync().generate_sync_message(&mut state) {
                    entries.push(SyncEntry { doc, key, message: Some(m.encode()) });
                }
                self.put_sync_state(conn, doc, state);
            }
            reply(out, conn, Message::Sync { store: store.clone(), entries });
        }
        if let Some(seq) = last_seq {
            if !back.is_empty() {
                let cursor = Some(Cursor { epoch: self.store.epoch(), seq });
                reply(out, conn, Message::Changes { store: store.clone(), docs: back, cursor });
            }
            self.fan_out(conn, &store, fanout, seq, out);
        }
        Ok(())
    }

    /// If `doc` changed since `before`, logs the new changes and returns (seq, what to fan out).
    fn record_new_changes(
        &mut self,
        store: &StoreRef,
        doc: DocId,
        key: &[u8],
        before: &[ChangeHash],
        origin: PeerId,
    ) -> Result<Option<(u64, DocData)>, S::Error> {
        let record = self.store.record(store, doc, key)?;
        let changes = record.changes_since(before);
        if changes.is_empty() {
            return Ok(None);
        }
        let seq = self.store.append(store, doc, key, changes.clone(), origin)?;
        Ok(Some((seq, DocData { doc, key: key.to_vec(), payload: Payload::Changes(changes) })))
    }

    fn fan_out(&self, from: ConnId, store: &StoreRef, docs: Vec<DocData>, seq: u64, out: &mut HubOutput) {
        let cursor = Some(Cursor { epoch: self.store.epoch(), seq });
        let frame = Arc::new(wire::encode(&Message::Changes { store: store.clone(), docs, cursor }));
        for (id, c) in &self.conns {
            if *id != from && c.subs.contains(store) {
                out.sends.push(Outgoing { to: *id, frame: frame.clone() });
            }
        }
    }

    fn take_sync_state(&mut self, conn: ConnId, doc: DocId) -> sync::State {
        self.conns.get_mut(&conn).and_then(|c| c.sync.remove(&doc)).unwrap_or_default()
    }

    fn put_sync_state(&mut self, conn: ConnId, doc: DocId, state: sync::State) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.sync.insert(doc, state);
        }
    }

    fn sync_round(
        &mut self,
        conn: ConnId,
        store: StoreRef,
        entries: Vec<SyncEntry>,
        out: &mut HubOutput,
    ) -> Result<(), S::Error> {
        let can_write = self.grants(conn).is_some_and(|g| g.can_write(&store));
        let origin = self.peer(conn);
        let mut replies = Vec::with_capacity(entries.len());
        let mut fanout = Vec::new();
        let mut last_seq = None;
        for entry in entries {
            let Some(bytes) = &entry.message else {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.sync.remove(&entry.doc);
                }
                continue;
            };
            let message = match sync::Message::decode(bytes) {
                Ok(m) => m,
                Err(e) => {
                    let detail = format!("document {}: sync message: {e}", entry.doc);
                    reply(out, conn, Message::Error { code: ErrorCode::CorruptData, detail, batch: None });
                    continue;
                }
            };
            if !message.changes.is_empty() && !can_write {
                forbidden(out, conn, &store, None);
                continue;
            }
            let mut state = self.take_sync_state(conn, entry.doc);
            let record = self.store.record(&store, entry.doc, &entry.key)?;
            let before = record.heads();
            if let Err(e) = record.doc_mut().sync().receive_sync_message(&mut state, message) {
                let detail = format!("document {}: {e}", entry.doc);
                reply(out, conn, Message::Error { code: ErrorCode::CorruptData, detail, batch: None });
                continue;
            }
            let answer = record.doc_mut().sync().generate_sync_message(&mut state).map(|m| m.encode());
            if let Some((seq, data)) = self.record_new_changes(&store, entry.doc, &entry.key, &before, origin)? {
                last_seq = Some(seq);
                out.durable = true;
                fanout.push(data);
            }
            self.put_sync_state(conn, entry.doc, state);
            replies.push(SyncEntry { doc: entry.doc, key: entry.key, message: answer });
        }
        if !replies.is_empty() {
            reply(out, conn, Message::Sync { store: store.clone(), entries: replies });
        }
        if let Some(seq) = last_seq {
            self.fan_out(conn, &store, fanout, seq, out);
        }
        Ok(())
    }
}

/// Parses a pushed payload completely; pushes carry changes only.
fn parse(payload: &Payload) -> Result<Vec<automerge::Change>, String> {
    match payload {
        Payload::Changes(chunks) => chunks
            .iter()
            .map(|c| automerge::Change::try_from(c.as_slice()).map_err(|e| e.to_string()))
            .collect(),
        Payload::Document(_) => Err("pushes carry changes, not whole documents".into()),
    }
}

fn reply(out: &mut HubOutput, conn: ConnId, message: Message) {
    out.sends.push(Outgoing { to: conn, frame: Arc::new(wire::encode(&message)) });
}

fn violation(out: &mut HubOutput, conn: ConnId, detail: &str) {
    reply(out, conn, Message::Error { code: ErrorCode::ProtocolViolation, detail: detail.into(), batch: None });
    out.close.push(conn);
}

/// Refuses access without saying whether the store exists.
fn forbidden(out: &mut HubOutput, conn: ConnId, store: &StoreRef, batch: Option<u64>) {
    let detail = format!("no access to {store}");
    reply(out, conn, Message::Error { code: ErrorCode::Forbidden, detail, batch });
}

impl From<RecordError> for HubError {
    fn from(e: RecordError) -> Self {
        HubError(Box::new(e))
    }
}
