//! Tidepool's core: IndexedDB records as Automerge documents, their merge semantics, the sync
//! engine and the wire protocol. Sans-IO: no sockets, files, clocks or randomness that were not
//! passed in, so the same code runs in the browser, the hub, the bridge and simulations.

pub mod doc_id;
pub mod first_put;
pub mod foreign;
pub mod key;
pub mod layout;
mod reconcile;
pub mod record;
pub mod sync;
pub mod tip;
pub mod value;
pub mod wire;
pub mod writeback;

pub use automerge;
pub use doc_id::{DocId, StoreRef};
pub use key::{Key, KeyError};
pub use record::{FieldUpdate, LocalChange, Patch, Record, RecordError};
pub use value::{PathSegment, Value, ValueError};
pub use foreign::{Verified, VerifiedSync};
pub use layout::Provenance;
pub use tip::{Forward, Tip, TipError};
pub use writeback::{WriteBack, WriteBackError, WriteMode};
