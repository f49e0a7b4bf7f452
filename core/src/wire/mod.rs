//! The wire protocol: versioned frames carrying Automerge bytes between peers.
//!
//! A frame is `TDPL` (4 bytes), the protocol version (2 bytes, big-endian) and a bincode-encoded
//! [`Message`]. Decoding takes untrusted bytes, checks the size limit before anything else,
//! checks every structural invariant (keys decode, document ids match their keys), returns a typed
//! error and never panics.

mod codec;
mod message;

pub use codec::{DecodeError, Limits, MAGIC, PROTOCOL_VERSION, decode, encode};
pub use message::{
    Cursor, DocData, DocHeads, DocRef, ErrorCode, ExportRecord, Message, Payload, PeerId, Subscription, TipRecord,
    SyncEntry,
};
