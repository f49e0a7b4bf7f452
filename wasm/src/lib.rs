//! Tidepool's browser client: an offline-first JavaScript API over IndexedDB that syncs records
//! through a hub with core's engine.
//!
//! Each app store is a plain IndexedDB object store holding current values (readable by any
//! IndexedDB code); beside it Tidepool keeps every record's Automerge document, the outbox of
//! unsynced changes and its metadata, all updated in the same transaction as the plain value.
//! See `idb` for the layout, `client` for the operations, `sync` for the connection, `tabs` for
//! how the tabs of one database share it.

mod api;
mod client;
mod docs;
mod error;
mod events;
mod idb;
mod js;
mod options;
mod status;
mod sync;
mod tabs;
mod typescript;

pub use api::Tidepool;
pub use error::Error;
