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

use tidepool_core::sync::{Authorizer, ConnId, Hub, HubConfig, HubError, HubOutput};
use tidepool_core::wire::{self, ErrorCode, Limits, Message};

use crate::metrics::Metrics;
use crate::storage::{Backend, Storage};

/// Something a connection did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A binary WebSocket message.
    Frame { conn: ConnId, bytes: Vec<u8> },
    /// The connection ends; `reason` is told to the client before the close, if any.
    Disconnect { conn: ConnId, reason: Option<ErrorCode> },
}

/// Something to do on a connection, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// `fanout` marks frames caused by another connection's input (the slow-consumer rule only
    /// applies to those: a client is never dropped for the replies to its own requests).
    Frame { to: ConnId, frame: Arc<Vec<u8>>, fanout: bool },
    /// Close the connection after its frames, telling it `reason` first if there is one.
    Close { conn: ConnId, reason: Option<ErrorCode> },
    /// The connection said hello and was welcomed (the welcome frame comes just before).
    Authenticated { conn: ConnId },
}

/// Error frames are small; anything larger is not inspected.
const ERROR_FRAME_PEEK: usize = 64 * 1024;
/// bincode writes an enum's variant index first (a one-byte varint for small indexes), right
/// after the 6-byte header; `Message::Error` is variant 9. Checking that byte spares decoding
/// every reply; `error_in` decodes to confirm, and a test pins the layout.
const ERROR_VARIANT_AT: usize = 6;
const ERROR_VARIANT: u8 = 9;

/// The error a frame carries, if it is an error frame: (code, detail, batch).
pub fn error_in(frame: &[u8]) -> Option<(ErrorCode, String, Option<u64>)> {
    if frame.len() > ERROR_FRAME_PEEK || frame.get(ERROR_VARIANT_AT) != Some(&ERROR_VARIANT) {
        return None;
    }
    match wire::decode(frame, &Limits { max_frame: ERROR_FRAME_PEEK, max_docs: 0 }) {
        Ok(Message::Error { code, detail, batch }) => Some((code, detail, batch)),
        _ => None,
    }
}

/// Core refuses a push as a whole with an error naming its batch, but may already have logged
/// some of the batch's documents (when a later one fails to apply); the frame's writes must go.
fn refuses_a_push(conn: ConnId, out: &HubOutput) -> bool {
    out.sends.iter().any(|s| s.to == conn && matches!(error_in(&s.frame), Some((_, _, Some(_)))))
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
            match input {
                Input::Frame { conn, bytes } => {
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
                    let received = std::panic::catch_unwind(AssertUnwindSafe(|| self.hub.receive(conn, &bytes)));
                    let received = received.unwrap_or_else(|_| Err(HubError("panic while handling a frame".into())));
                    match received {
                        Ok(out) => {
                            let refused = refuses_a_push(conn, &out);
                            match self.hub.store_mut().end_frame(!refused) {
                                Ok(()) => self.collect(conn, out, &mut deliveries),
                                Err(e) => failure = Some(e.to_string()),
                            }
                        }
                        Err(e) => failure = Some(e.to_string()),
                    }
                }
                Input::Disconnect { conn, reason } => {
                    self.hub.disconnect(conn);
                    if let Some(code) = reason {
                        self.metrics.error(code);
                    }
                    deliveries.push(Delivery::Close { conn, reason });
                }
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
                deliveries.push(Delivery::Close { conn, reason: None });
            }
        }
        self.update_gauges();
        self.metrics.batches.fetch_add(1, Relaxed);
        deliveries
    }

    fn collect(&mut self, from: ConnId, out: HubOutput, deliveries: &mut Vec<Delivery>) {
        for send in out.sends {
            if send.to == from
                && let Some((code, detail, _)) = error_in(&send.frame)
            {
                tracing::debug!(conn = from, code = crate::metrics::code_label(code), %detail, "error frame");
                self.metrics.error(code);
            }
            // Welcomes are small: larger frames are not decoded to look for one.
            let welcome = send.to == from
                && send.frame.len() <= ERROR_FRAME_PEEK
                && matches!(
                    wire::decode(&send.frame, &Limits { max_frame: ERROR_FRAME_PEEK, max_docs: 0 }),
                    Ok(Message::Welcome { .. })
                );
            deliveries.push(Delivery::Frame { to: send.to, fanout: send.to != from, frame: send.frame });
            if welcome {
                deliveries.push(Delivery::Authenticated { conn: from });
            }
        }
        for conn in out.close {
            // Forget it now so no later frame of the batch is processed or fanned out to it.
            self.hub.disconnect(conn);
            deliveries.push(Delivery::Close { conn, reason: None });
        }
    }

    fn update_gauges(&self) {
        let stats = self.hub.store().stats();
        self.metrics.changes_applied.store(stats.changes_appended, Relaxed);
        self.metrics.log_entries.store(stats.entries_appended, Relaxed);
        self.metrics.cached_docs.store(stats.cached_docs, Relaxed);
        self.metrics.doc_loads.store(stats.loads, Relaxed);
        self.metrics.snapshots.store(stats.snapshots, Relaxed);
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

    /// Snapshots loaded documents and commits: a clean stop leaves a quick start.
    pub fn flush(&mut self) {
        let storage = self.hub.store_mut();
        if let Err(e) = storage.snapshot_cached().and_then(|()| storage.commit().map(|_| ())) {
            tracing::warn!(error = %e, "final snapshots failed; the log still holds everything");
            storage.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_frames_are_recognized_and_nothing_else_is() {
        let error = wire::encode(&Message::Error { code: ErrorCode::Forbidden, detail: "no".into(), batch: Some(3) });
        assert_eq!(error_in(&error), Some((ErrorCode::Forbidden, "no".into(), Some(3))));
        let ack = wire::encode(&Message::Ack { batch: 9, incomplete: vec![] });
        assert_eq!(error_in(&ack), None);
        assert_eq!(error_in(&[]), None);
    }
}
