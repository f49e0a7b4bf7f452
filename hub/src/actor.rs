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
    /// The connection said hello and its welcome is queued before this.
    Authenticated,
    /// Close with the status of `reason`, telling the client `reason` in an error frame first
    /// unless it was `told` already (core's own error frame went before).
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
pub enum Command {
    Connect { out: Outbound, reply: oneshot::Sender<ConnId> },
    /// The permit is released once the input is processed: it bounds how many frames one
    /// connection can have waiting here, so a flood from one client cannot starve the others.
    Input { input: Input, permit: Option<OwnedSemaphorePermit> },
    /// Run compaction steps until done or until other work arrives.
    Compact,
    /// Forget every cached document and log bound (between two batches, so no transaction is
    /// open), then run `then`. Taking a database's lease over goes through here: what was cached
    /// of it may have changed under another hub, so nothing may be written from that cache.
    Invalidate { then: Box<dyn FnOnce() + Send> },
    /// Finish what is queued, write final snapshots and exit.
    Stop,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Connect { .. } => f.write_str("Connect"),
            Command::Input { input, .. } => f.debug_struct("Input").field("input", input).finish(),
            Command::Compact => f.write_str("Compact"),
            Command::Invalidate { .. } => f.write_str("Invalidate"),
            Command::Stop => f.write_str("Stop"),
        }
    }
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
                Command::Invalidate { then } => {
                    // Inputs gathered so far were read under the old ownership; run them first.
                    if !inputs.is_empty() {
                        let deliveries = engine.process(std::mem::take(&mut inputs));
                        deliver(&mut engine, &mut conns, deliveries, options.max_queue_bytes);
                    }
                    engine.invalidate();
                    then();
                }
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
            Delivery::Authenticated { conn } => {
                if let Some(out) = conns.get(&conn) {
                    let _ = out.tx.send(Out::Authenticated);
                }
            }
            Delivery::Close { conn, reason, told } => {
                if let Some(out) = conns.remove(&conn) {
                    let _ = out.tx.send(Out::Close { reason, told });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tidepool_core::sync::{AllowAll, HubConfig};
    use tidepool_core::wire::{self, Message, PeerId};

    use super::*;
    use crate::metrics::Metrics;
    use crate::storage::{MemoryBackend, Storage, StorageOptions};

    type TestEngine = Engine<MemoryBackend, AllowAll>;

    fn engine() -> TestEngine {
        let storage = Storage::new(MemoryBackend::new([1; 16]), StorageOptions::default());
        Engine::new(storage, AllowAll, HubConfig::default(), Arc::new(Metrics::default()))
    }

    fn connect(engine: &mut TestEngine, conns: &mut HashMap<ConnId, Outbound>) -> (ConnId, mpsc::UnboundedReceiver<Out>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = engine.connect();
        conns.insert(conn, Outbound { tx, queued: Arc::new(AtomicUsize::new(0)) });
        (conn, rx)
    }

    fn run_batch(engine: &mut TestEngine, conns: &mut HashMap<ConnId, Outbound>, inputs: Vec<Input>) {
        let deliveries = engine.process(inputs);
        deliver(engine, conns, deliveries, usize::MAX);
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<Out>) -> Vec<Out> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn decoded(out: &Out) -> Option<Message> {
        let Out::Frame(frame) = out else { return None };
        wire::decode(frame, &wire::Limits { max_frame: usize::MAX, max_docs: usize::MAX }).ok()
    }

    #[test]
    fn the_welcome_is_followed_by_authenticated_and_closes_carry_their_reason() {
        let mut engine = engine();
        let mut conns = HashMap::new();
        let (welcomed, mut welcomed_rx) = connect(&mut engine, &mut conns);
        let (early, mut early_rx) = connect(&mut engine, &mut conns);
        let (idle, mut idle_rx) = connect(&mut engine, &mut conns);
        let hello = wire::encode(&Message::Hello { peer: PeerId([2; 16]), token: "t".into(), agent: "test".into() });
        let subscribe = wire::encode(&Message::Subscribe { subscriptions: vec![] });
        run_batch(
            &mut engine,
            &mut conns,
            vec![
                Input::Frame { conn: welcomed, bytes: hello },
                Input::Frame { conn: early, bytes: subscribe },
                Input::Disconnect { conn: idle, reason: Some(ErrorCode::IdleTimeout) },
            ],
        );

        let out = drain(&mut welcomed_rx);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(matches!(decoded(&out[0]), Some(Message::Welcome { .. })), "{out:?}");
        assert!(matches!(out[1], Out::Authenticated));

        // Core said why before closing; the close repeats it without saying it twice.
        let out = drain(&mut early_rx);
        assert!(
            matches!(decoded(&out[0]), Some(Message::Error { code: ErrorCode::ProtocolViolation, .. })),
            "{out:?}"
        );
        assert!(matches!(out[1..], [Out::Close { reason: Some(ErrorCode::ProtocolViolation), told: true }]), "{out:?}");

        // The shell's own reason is still to be told.
        let out = drain(&mut idle_rx);
        assert!(matches!(out[..], [Out::Close { reason: Some(ErrorCode::IdleTimeout), told: false }]), "{out:?}");

        // A client that goes away after being answered without error gets a plain close.
        run_batch(&mut engine, &mut conns, vec![Input::Disconnect { conn: welcomed, reason: None }]);
        let out = drain(&mut welcomed_rx);
        assert!(matches!(out[..], [Out::Close { reason: None, .. }]), "{out:?}");
    }
}
