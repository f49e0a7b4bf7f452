//! What one call into the hub engine produced: frames to send, connections to close, and typed
//! effects that tell the shell what happened without it decoding a frame.

use std::sync::Arc;

use crate::doc_id::StoreRef;
use crate::wire::{self, ErrorCode, Message, PeerId};

/// The shell's name for a connection.
pub type ConnId = u64;

/// A frame for one connection. Fan-out shares one encoding among all receivers.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub to: ConnId,
    pub frame: Arc<Vec<u8>>,
}

/// A connection the engine ends, after its frames, for `reason` (already told to the peer in an
/// error frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    pub conn: ConnId,
    pub reason: ErrorCode,
}

/// Something a frame did, as data the shell matches on (metrics, logs, rollback, deadlines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The connection's `Hello` was accepted.
    Welcomed { conn: ConnId, peer: PeerId },
    /// A push was applied and is acknowledged once durable; `incomplete` documents wait for the
    /// sync protocol instead.
    Acknowledged { conn: ConnId, batch: u64, docs: usize, incomplete: usize },
    /// The peer was sent an error. `log` is the full detail for the hub's log; the peer got only
    /// the code and a short reason. A refusal naming a `batch` refuses that push as a whole: any
    /// write the frame made must be undone.
    Refused { conn: ConnId, code: ErrorCode, batch: Option<u64>, log: String },
    /// Changes logged at `seq` went to `receivers` other subscribers of the store.
    FannedOut { store: StoreRef, seq: u64, receivers: usize },
}

/// What the hub wants done after a call.
#[derive(Debug, Default)]
pub struct HubOutput {
    /// Frames to deliver, in order per connection.
    pub sends: Vec<Outgoing>,
    /// Connections to close after their frames are sent.
    pub close: Vec<Close>,
    /// What happened, in order.
    pub effects: Vec<Effect>,
    /// The call wrote to the store: commit before delivering `sends` (they acknowledge or
    /// announce those writes).
    pub durable: bool,
}

impl HubOutput {
    /// Whether a push of `conn` was refused as a whole (its writes must not be kept).
    pub fn refuses_push(&self, conn: ConnId) -> bool {
        self.effects.iter().any(|e| matches!(e, Effect::Refused { conn: c, batch: Some(_), .. } if *c == conn))
    }

    pub(crate) fn send(&mut self, to: ConnId, message: &Message) {
        self.sends.push(Outgoing { to, frame: Arc::new(wire::encode(message)) });
    }

    /// Tells the peer `code` and `detail`; `log` (if different) is kept for the hub's log.
    pub(crate) fn refuse(&mut self, conn: ConnId, code: ErrorCode, batch: Option<u64>, detail: String, log: Option<String>) {
        let log = log.unwrap_or_else(|| detail.clone());
        self.send(conn, &Message::Error { code, detail, batch });
        self.effects.push(Effect::Refused { conn, code, batch, log });
    }

    /// Refuses and ends the connection.
    pub(crate) fn refuse_and_close(&mut self, conn: ConnId, code: ErrorCode, detail: String, log: Option<String>) {
        self.refuse(conn, code, None, detail, log);
        self.close.push(Close { conn, reason: code });
    }

    /// A protocol violation: said and the connection closed.
    pub(crate) fn violation(&mut self, conn: ConnId, detail: &str) {
        self.refuse_and_close(conn, ErrorCode::ProtocolViolation, detail.to_owned(), None);
    }

    /// Refuses access without saying whether the store exists.
    pub(crate) fn forbidden(&mut self, conn: ConnId, store: &StoreRef, batch: Option<u64>) {
        self.refuse(conn, ErrorCode::Forbidden, batch, format!("no access to {store}"), None);
    }
}
