//! Group commit around core's hub engine: a batch of inputs from all connections goes through
//! [`Hub::receive`], storage commits once, and only then are the outputs released.
//!
//! Releasing after the commit is what makes "durable before acknowledged" hold for every frame
//! the hub sends: acks, fan-out and catch-up pages may all mention writes of the batch. If the
//! batch fails (a frame hit a storage error, or the commit did), every write of the batch is
//! rolled back and every connection that had a frame in it is told `Internal` and closed; the
//! clients reconnect and push again, which Automerge makes idempotent.
//!
//! This module is synchronous and owns no threads or sockets, so tests drive it directly.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use tidepool_core::sync::{Authorizer, ConnId, Effect, Hub, HubConfig, HubError, HubOutput, Received};
use tidepool_core::wire::ErrorCode;

use crate::metrics::Metrics;
use crate::storage::{Backend, Storage};

/// Something a connection did.
#[derive(Debug)]
pub enum Input {
    /// A binary WebSocket message.
    Frame { conn: ConnId, bytes: Vec<u8> },
    /// A binary WebSocket message the connection's task decoded already (and, for a known
    /// peer, whose pushed payloads it parsed), so the storage thread does not.
    Decoded { conn: ConnId, frame: Box<Received> },
    /// The connection ends; `reason` is told to the client before the close, if any.
    Disconnect { conn: ConnId, reason: Option<ErrorCode> },
}

/// A frame as the batch takes it.
enum Frame {
    Bytes(Vec<u8>),
    Decoded(Box<Received>),
}

/// Something to do on a connection, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// `fanout` marks frames caused by another connection's input (the slow-consumer rule only
    /// applies to those: a client is never dropped for the replies to its own requests).
    Frame { to: ConnId, frame: Arc<Vec<u8>>, fanout: bool },
    /// The connection's `Hello` was accepted (its `Welcome` is among the frames before this).
    Authenticated { conn: ConnId },
    /// Close the connection after its frames. `reason` picks the close code; unless `told`, the
    /// shell first sends it as an error frame (core has already told the peer when `told`).
    Close { conn: ConnId, reason: Option<ErrorCode>, told: bool },
}

/// Core's hub over [`Storage`], with group commit.
pub struct Engine<B, A> {
    hub: Hub<Storage<B>, A>,
    metrics: Arc<Metrics>,
}

impl<B, A> std::fmt::Debug for Engine<B, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl<B: Backend, A: Authorizer> Engine<B, A> {
    pub fn new(storage: Storage<B>, auth: A, config: HubConfig, metrics: Arc<Metrics>) -> Self {
        Engine { hub: Hub::with_config(storage, auth, config), metrics }
    }

    pub fn connect(&mut self) -> ConnId {
        self.hub.connect()
    }

    /// Forgets a connection at once (the shell is closing it for its own reasons).
    pub fn disconnect(&mut self, conn: ConnId) {
        self.hub.disconnect(conn);
    }

    pub fn connections(&self) -> usize {
        self.hub.connections()
    }

    pub fn storage(&self) -> &Storage<B> {
        self.hub.store()
    }

    pub fn storage_mut(&mut self) -> &mut Storage<B> {
        self.hub.store_mut()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Runs a batch: every input in order, one commit, then the deliveries (empty of frames if
    /// the batch failed, apart from the `Internal` errors that say so).
    pub fn process(&mut self, batch: Vec<Input>) -> Vec<Delivery> {
        let mut deliveries = Vec::new();
        let mut members = Vec::new();
        let mut failure = None;
        for input in batch {
            let (conn, frame) = match input {
                Input::Frame { conn, bytes } => (conn, Frame::Bytes(bytes)),
                Input::Decoded { conn, frame } => (conn, Frame::Decoded(frame)),
                Input::Disconnect { conn, reason } => {
                    self.hub.disconnect(conn);
                    if let Some(code) = reason {
                        self.metrics.error(code);
                    }
                    deliveries.push(Delivery::Close { conn, reason, told: false });
                    continue;
                }
            };
            members.push(conn);
            if failure.is_some() {
                continue;
            }
            if let Err(e) = self.hub.store_mut().begin_frame() {
                failure = Some(e.to_string());
                continue;
            }
            // A panic deep in a dependency must cost this batch, not the hub: the batch
            // is rolled back like after a storage error and the process keeps serving.
            let received = std::panic::catch_unwind(AssertUnwindSafe(|| match frame {
                Frame::Bytes(bytes) => self.hub.receive(conn, &bytes),
                Frame::Decoded(frame) => self.hub.receive_decoded(conn, *frame),
            }));
            let received = received.unwrap_or_else(|_| Err(HubError("panic while handling a frame".into())));
            match received {
                Ok(out) => {
                    // Core refuses a push as a whole but may already have logged some of
                    // the batch's documents (when a later one failed to apply).
                    let refused = out.refuses_push(conn);
                    match self.hub.store_mut().end_frame(!refused) {
                        Ok(()) => self.collect(conn, out, &mut deliveries),
                        Err(e) => failure = Some(e.to_string()),
                    }
                }
                Err(e) => failure = Some(e.to_string()),
            }
        }
        if failure.is_none() {
            let started = Instant::now();
            match self.hub.store_mut().commit() {
                Ok(true) => self.metrics.commit(started.elapsed()),
                Ok(false) => {}
                Err(e) => failure = Some(e.to_string()),
            }
        }
        if let Some(error) = failure {
            tracing::error!(%error, frames = members.len(), "storage failed; the batch is rolled back");
            self.metrics.storage_failures.fetch_add(1, Relaxed);
            self.hub.store_mut().abort();
            // Nothing the batch produced may reach anyone: it may mention rolled-back writes.
            deliveries.retain(|d| matches!(d, Delivery::Close { .. }));
            members.sort_unstable();
            members.dedup();
            let frame = Arc::new(Hub::<Storage<B>, A>::error_frame(ErrorCode::Internal, "storage failure; retry"));
            for conn in members {
                self.hub.disconnect(conn);
                self.metrics.error(ErrorCode::Internal);
                deliveries.push(Delivery::Frame { to: conn, frame: frame.clone(), fanout: false });
                deliveries.push(Delivery::Close { conn, reason: Some(ErrorCode::Internal), told: true });
            }
        }
        self.update_gauges();
        self.metrics.batches.fetch_add(1, Relaxed);
        deliveries
    }

    fn collect(&mut self, from: ConnId, out: HubOutput, deliveries: &mut Vec<Delivery>) {
        for send in out.sends {
            deliveries.push(Delivery::Frame { to: send.to, fanout: send.to != from, frame: send.frame });
        }
        for effect in out.effects {
            match effect {
                Effect::Welcomed { conn, .. } => deliveries.push(Delivery::Authenticated { conn }),
                Effect::Refused { conn, code, batch, log } => {
                    tracing::debug!(conn, code = crate::metrics::code_label(code), ?batch, detail = %log, "refused");
                    self.metrics.error(code);
                }
                Effect::Acknowledged { .. } | Effect::FannedOut { .. } => {}
            }
        }
        for close in out.close {
            // Forget it now so no later frame of the batch is processed or fanned out to it.
            self.hub.disconnect(close.conn);
            deliveries.push(Delivery::Close { conn: close.conn, reason: Some(close.reason), told: true });
        }
    }

    fn update_gauges(&self) {
        let stats = self.hub.store().stats();
        self.metrics.changes_applied.store(stats.changes_appended, Relaxed);
        self.metrics.log_entries.store(stats.entries_appended, Relaxed);
        self.metrics.cached_docs.store(stats.cached_docs, Relaxed);
        self.metrics.doc_loads.store(stats.loads, Relaxed);
        self.metrics.snapshots.store(stats.snapshots, Relaxed);
        self.metrics.exports_open.store(stats.exports_open, Relaxed);
    }

    /// One bounded step of compaction, committed on its own. Returns whether work remains.
    pub fn compact(&mut self, now_ms: i64, budget: usize) -> bool {
        let storage = self.hub.store_mut();
        let result = storage.compact(now_ms, budget).and_then(|more| storage.commit().map(|_| more));
        match result {
            Ok(more) => {
                self.update_gauges();
                more
            }
            Err(e) => {
                tracing::error!(error = %e, "compaction failed; rolled back");
                self.metrics.storage_failures.fetch_add(1, Relaxed);
                self.hub.store_mut().abort();
                false
            }
        }
    }

    /// Forgets every cached document and log bound; the next access reads storage again.
    pub fn invalidate(&mut self) {
        self.hub.store_mut().abort();
    }

    /// Snapshots loaded documents and commits: a clean stop leaves a quick start.
    pub fn flush(&mut self) {
        let storage = self.hub.store_mut();
        if let Err(e) = storage.snapshot_cached().and_then(|()| storage.commit().map(|_| ())) {
            tracing::warn!(error = %e, "final snapshots failed; the log still holds everything");
            storage.abort();
        }
    }
}
