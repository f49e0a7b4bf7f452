//! [`Received`]: a client's frame decoded, and a push's payloads parsed and checked, before the
//! engine takes it. Both need nothing of the hub's state, so a shell may do them where it reads
//! the frame (the hub on the connection's task) and leave the engine, whose thread is the one
//! every connection waits for, only the work that needs the store.

use crate::foreign::Verified;
use crate::record::RecordError;
use crate::wire::{self, DecodeError, Limits, Message, Payload};

/// A decoded frame for [`super::Hub::receive_decoded`]; [`super::Hub::receive`] makes one itself.
#[derive(Debug)]
pub struct Received {
    pub(super) message: Result<Message, DecodeError>,
    /// A push's payloads, parsed in order (their bytes are dropped once parsed), or `None`
    /// when [`Received::check_payloads`] was not called.
    pub(super) checked: Option<Vec<Result<Verified, RecordError>>>,
}

impl Received {
    /// Decodes a frame under the hub's limits (`HubConfig::limits`): the engine's first step,
    /// and how it fails (a frame that does not decode is refused the same way).
    pub fn decode(frame: &[u8], limits: &Limits) -> Received {
        Received { message: wire::decode(frame, limits), checked: None }
    }

    /// Parses and checks every payload of a push (as [`Verified::parse`]), the push's first
    /// step, so the engine does not. Anything else is left as it is. Only worth it for a
    /// connection the hub knows: before the hello a push is refused unread.
    pub fn check_payloads(&mut self) {
        let Ok(Message::Push { docs, .. }) = &mut self.message else { return };
        let checked = docs
            .iter_mut()
            .map(|d| {
                let parsed = Verified::parse(&d.payload);
                d.payload = Payload::Changes(Vec::new());
                parsed
            })
            .collect();
        self.checked = Some(checked);
    }
}
