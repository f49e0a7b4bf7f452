//! The storage actor: one thread owns the [`Engine`] (hence core's hub and the SQLite
//! connection), takes commands from every connection through one bounded channel, and turns each
//! burst of them into one group commit.
//!
//! A thread rather than a task because SQLite calls block (a commit waits for fsync), and a
//! blocked runtime worker would stall unrelated connections.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use tidepool_core::sync::{Authorizer, ConnId};
use tidepool_core::wire::ErrorCode;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use crate::engine::{Delivery, Engine, Input};
use crate::storage::Backend;

/// What the actor sends a connection's writer.
#[derive(Debug)]
pub enum Out {
    Frame(Arc<Vec<u8>>),
    /// Close for `reason`; unless `told`, tell the client the reason in an error frame first.
    Close { reason: Option<ErrorCode>, told: bool },
}

/// A connection's outbound queue. `queued` counts the bytes not yet written to the socket: the
/// connection's reader stops reading while it is high, and fan-out to it stops at the limit.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub tx: mpsc::UnboundedSender<Out>,
    pub queued: Arc<AtomicUsize>,
}

/// A request to the actor.
#[derive(Debug)]
pub enum Command {
    Connect { out: Outbound, reply: oneshot::Sender<ConnId> },
    /// The permit is released once the input is processed: it bounds how many frames one
    /// connection can have waiting here, so a flood from one client cannot starve the others.
    Input { input: Input, permit: Option<OwnedSemaphorePermit> },
    /// Run compaction steps until done or until other work arrives.
    Compact,
    /// Finish what is queued, write final snapshots and exit.
    Stop,
}

/// Tuning of the actor.
#[derive(Debug, Clone)]
pub struct ActorOptions {
    /// Most inputs per group commit.
    pub max_batch: usize,
    /// Fan-out to a connection with more bytes than this waiting closes it as a slow consumer.
    pub max_queue_bytes: usize,
    /// Documents snapshotted per compaction step.
    pub compact_budget: usize,
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Runs until every sender is gone or `Stop` arrives.
pub fn run<B: Backend, A: Authorizer>(
    mut engine: Engine<B, A>,
    mut rx: mpsc::Receiver<Command>,
    options: ActorOptions,
) {
    let mut conns: HashMap<ConnId, Outbound> = HashMap::new();
    let mut stopping = false;
    while !stopping {
        let Some(first) = rx.blocking_recv() else { break };
        let mut inputs = Vec::new();
        let mut permits = Vec::new();
        let mut compact = false;
        let mut next = Some(first);
        while let Some(command) = next {
            match command {
                Command::Connect { out, reply } => {
                    let conn = engine.connect();
                    conns.insert(conn, out);
                    if reply.send(conn).is_err() {
                        engine.disconnect(conn);
                        conns.remove(&conn);
                    }
                }
                Command::Input { input, permit } => {
                    inputs.push(input);
                    permits.extend(permit);
                }
                Command::Compact => compact = true,
                Command::Stop => stopping = true,
            }
            next = if inputs.len() < options.max_batch { rx.try_recv().ok() } else { None };
        }
        if !inputs.is_empty() {
            let deliveries = engine.process(inputs);
            deliver(&mut engine, &mut conns, deliveries, options.max_queue_bytes);
        }
        drop(permits);
        if compact && !stopping {
            // Compaction yields to traffic: one bounded step at a time while nothing waits.
            while engine.compact(now_ms(), options.compact_budget) && rx.is_empty() {}
        }
    }
    for (_, out) in conns.drain() {
        let _ = out.tx.send(Out::Close { reason: Some(ErrorCode::ShuttingDown), told: false });
    }
    engine.flush();
    tracing::info!("storage closed");
}

fn deliver<B: Backend, A: Authorizer>(
    engine: &mut Engine<B, A>,
    conns: &mut HashMap<ConnId, Outbound>,
    deliveries: Vec<Delivery>,
    max_queue_bytes: usize,
) {
    for delivery in deliveries {
        match delivery {
            Delivery::Frame { to, frame, fanout } => {
                let Some(out) = conns.get(&to) else { continue };
                if fanout && out.queued.load(Relaxed) > max_queue_bytes {
                    // A client that does not read cannot be allowed to hold the hub's memory; it
                    // reconnects and catches up from its cursor.
                    tracing::warn!(conn = to, queued = out.queued.load(Relaxed), "slow consumer closed");
                    engine.disconnect(to);
                    engine.metrics().error(ErrorCode::Overloaded);
                    if let Some(out) = conns.remove(&to) {
                        let _ = out.tx.send(Out::Close { reason: Some(ErrorCode::Overloaded), told: false });
                    }
                    continue;
                }
                out.queued.fetch_add(frame.len(), Relaxed);
                if out.tx.send(Out::Frame(frame)).is_err() {
                    engine.disconnect(to);
                    conns.remove(&to);
                }
            }
            Delivery::Authenticated { .. } => {}
            Delivery::Close { conn, reason, told } => {
                if let Some(out) = conns.remove(&conn) {
                    let _ = out.tx.send(Out::Close { reason, told });
                }
            }
        }
    }
}
