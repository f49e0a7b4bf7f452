//! The hub end: every connection's protocol state, catch-up, fan-out and repair, over a
//! [`HubStore`] that the hub shell backs with durable storage.
//!
//! A frame is decoded once, here; what it did comes back as typed [`Effect`]s beside the frames
//! to send, so shells never decode the engine's output.

mod catch_up;
mod conn;
mod export;
mod output;
mod push;
mod received;
mod repair;
mod store;

use std::collections::HashMap;

use thiserror::Error;

use crate::foreign::Verified;
use crate::record::RecordError;
use crate::sync::auth::{Authorizer, Grants};
use crate::wire::{self, Cursor, DecodeError, ErrorCode, Limits, Message, PeerId};

use conn::Conn;
pub use output::{Close, ConnId, Effect, HubOutput, Outgoing};
pub use received::Received;
pub use store::{HubStore, LogEntry};

/// A storage failure: the call's effects must not be acknowledged.
#[derive(Debug, Error)]
#[error("hub storage failed: {0}")]
pub struct HubError(pub Box<dyn std::error::Error + Send + Sync>);

impl From<RecordError> for HubError {
    fn from(e: RecordError) -> Self {
        HubError(Box::new(e))
    }
}

/// Records per export page by default ([`HubConfig::export_docs`]), and what the bridge asks for.
pub const EXPORT_PAGE_DOCS: usize = 8_000;

/// Tuning for a hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub limits: Limits,
    /// Most documents a client may put in one push or sync frame.
    pub max_docs_per_batch: usize,
    /// Most documents (or log entries) per catch-up frame.
    pub page_docs: usize,
    /// Most Automerge bytes per catch-up frame (and bytes of records per export page).
    pub page_bytes: usize,
    /// Most records per export page. Larger than a catch-up page: an export is a bulk read, and
    /// at 2,000 records a page a million-record export spent its time in round trips. Kept under
    /// the peers' limit on documents per frame.
    pub export_docs: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            limits: Limits::default(),
            max_docs_per_batch: 1000,
            page_docs: 2000,
            page_bytes: 4 * 1024 * 1024,
            export_docs: EXPORT_PAGE_DOCS,
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

    /// The connection is gone (its open exports end with it).
    pub fn disconnect(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            for export in c.exports.keys() {
                self.store.export_close(*export);
            }
        }
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// An error frame for a connection the shell refuses on its own (over a limit, shutting
    /// down, a storage failure).
    pub fn error_frame(code: ErrorCode, detail: &str) -> Vec<u8> {
        wire::encode(&Message::Error { code, detail: detail.to_owned(), batch: None })
    }

    /// Handles one frame from a connection.
    pub fn receive(&mut self, conn: ConnId, frame: &[u8]) -> Result<HubOutput, HubError> {
        if !self.conns.contains_key(&conn) {
            return Ok(HubOutput::default());
        }
        self.receive_decoded(conn, Received::decode(frame, &self.config.limits))
    }

    /// Handles one frame from a connection, decoded (and perhaps its payloads checked) by the
    /// shell with [`Received`], under this hub's limits.
    pub fn receive_decoded(&mut self, conn: ConnId, received: Received) -> Result<HubOutput, HubError> {
        let mut out = HubOutput::default();
        if !self.conns.contains_key(&conn) {
            return Ok(out);
        }
        let message = match received.message {
            Ok(m) => m,
            Err(e) => {
                refuse_undecodable(conn, &e, &mut out);
                return Ok(out);
            }
        };
        self.handle(conn, message, received.checked, &mut out).map_err(|e| HubError(Box::new(e)))?;
        Ok(out)
    }

    fn handle(
        &mut self,
        conn: ConnId,
        message: Message,
        checked: Option<Vec<Result<Verified, RecordError>>>,
        out: &mut HubOutput,
    ) -> Result<(), S::Error> {
        let authenticated = self.grants(conn).is_some();
        match message {
            Message::Hello { peer, token, .. } => {
                if authenticated {
                    out.violation(conn, "hello sent twice");
                } else {
                    self.hello(conn, peer, &token, out);
                }
            }
            _ if !authenticated => out.violation(conn, "the first frame must be hello"),
            Message::Subscribe { subscriptions } => {
                for sub in subscriptions {
                    if !self.grants(conn).is_some_and(|g| g.can_read(&sub.store)) {
                        out.forbidden(conn, &sub.store, None);
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
                    out.forbidden(conn, &store, Some(batch));
                } else if let Some(detail) = self.over_batch_limit(docs.len()) {
                    out.refuse(conn, ErrorCode::TooManyDocs, Some(batch), detail, None);
                } else {
                    // Parsed here unless the shell did it already, after the checks above.
                    let parsed = match checked {
                        Some(checked) => docs.into_iter().zip(checked).map(|(d, v)| (d.doc, d.key, v)).collect(),
                        None => docs.into_iter().map(|d| (d.doc, d.key, Verified::parse(&d.payload))).collect(),
                    };
                    self.push(conn, batch, store, parsed, out)?;
                }
            }
            Message::Sync { store, entries } => {
                if !self.grants(conn).is_some_and(|g| g.can_read(&store)) {
                    out.forbidden(conn, &store, None);
                } else if let Some(detail) = self.over_batch_limit(entries.len()) {
                    out.refuse(conn, ErrorCode::TooManyDocs, None, detail, None);
                } else {
                    self.sync_round(conn, store, entries, out)?;
                }
            }
            Message::Export { store, export, after, limit } => {
                if self.grants(conn).is_some_and(|g| g.can_read(&store)) {
                    self.export(conn, store, export, after, limit, out)?;
                } else {
                    out.forbidden(conn, &store, None);
                }
            }
            Message::Fetch { request, store, docs, tips } => {
                if !self.grants(conn).is_some_and(|g| g.can_read(&store)) {
                    out.forbidden(conn, &store, None);
                } else if let Some(detail) = self.over_batch_limit(docs.len()) {
                    out.refuse(conn, ErrorCode::TooManyDocs, None, detail, None);
                } else {
                    self.fetch(conn, request, store, docs, tips, out)?;
                }
            }
            Message::Watch { stores } => {
                for store in stores {
                    if !self.grants(conn).is_some_and(|g| g.can_read(&store)) {
                        out.forbidden(conn, &store, None);
                        continue;
                    }
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.watching.insert(store.clone());
                    }
                    let cursor = Cursor { epoch: self.store.epoch(), seq: self.store.head_seq(&store)? };
                    out.send(conn, &Message::Moved { store, cursor });
                }
            }
            other @ (Message::Welcome { .. }
            | Message::Moved { .. }
            | Message::ExportPage { .. }
            | Message::Fetched { .. }
            | Message::Ack { .. }
            | Message::Changes { .. }
            | Message::CaughtUp { .. }
            | Message::Heads { .. }
            | Message::Error { .. }) => {
                out.violation(conn, &format!("{} is sent by hubs, not clients", other.kind()));
            }
        }
        Ok(())
    }

    fn hello(&mut self, conn: ConnId, peer: PeerId, token: &str, out: &mut HubOutput) {
        match self.auth.authorize(token) {
            Ok(grants) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.peer = Some(peer);
                    c.grants = Some(grants);
                }
                let welcome = Message::Welcome {
                    epoch: self.store.epoch(),
                    max_frame: u32::try_from(self.config.limits.max_frame).unwrap_or(u32::MAX),
                    max_docs_per_batch: u32::try_from(self.config.max_docs_per_batch).unwrap_or(u32::MAX),
                };
                out.send(conn, &welcome);
                out.effects.push(Effect::Welcomed { conn, peer });
            }
            Err(reason) => {
                let log = format!("token refused: {reason}");
                out.refuse_and_close(conn, ErrorCode::Unauthorized, "token refused".into(), Some(log));
            }
        }
    }

    fn over_batch_limit(&self, docs: usize) -> Option<String> {
        let limit = self.config.max_docs_per_batch;
        (docs > limit).then(|| format!("{docs} documents, limit {limit}"))
    }

    fn grants(&self, conn: ConnId) -> Option<&Grants> {
        self.conns.get(&conn).and_then(|c| c.grants.as_ref())
    }

    fn peer(&self, conn: ConnId) -> PeerId {
        self.conns.get(&conn).and_then(|c| c.peer).unwrap_or(PeerId::HUB)
    }
}

/// A frame that does not decode: the peer learns the code and a summary, the log the detail.
fn refuse_undecodable(conn: ConnId, e: &DecodeError, out: &mut HubOutput) {
    let code = match e {
        DecodeError::TooLarge { .. } => ErrorCode::TooLarge,
        DecodeError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
        DecodeError::TooManyDocs { .. } => ErrorCode::TooManyDocs,
        _ => ErrorCode::Malformed,
    };
    if code == ErrorCode::TooManyDocs {
        // The frame itself is sound; the connection may go on.
        out.refuse(conn, code, None, e.summary(), Some(e.to_string()));
    } else {
        out.refuse_and_close(conn, code, e.summary(), Some(e.to_string()));
    }
}
