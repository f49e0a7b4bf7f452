//! The sync engine: sans-IO state machines for both ends of a connection.
//!
//! A connection links a client (browser, bridge, native client) to the hub and multiplexes every
//! document of every store the client subscribes to.
//!
//! * **Catch-up.** The client subscribes with the cursor it last persisted. If the cursor is of
//!   the hub's current epoch and the hub's log still reaches back to it, the hub streams the log
//!   after it (skipping changes the client itself pushed) and closes with `CaughtUp`. A client
//!   without a cursor gets every document as one saved chunk, many documents per frame. Either
//!   way the round trips do not grow with the number of documents.
//! * **Push.** Local changes wait in an outbox, travel in `Push` batches and leave the outbox
//!   when the hub's `Ack` says they are durable. After a reconnect the unacknowledged entries
//!   are pushed again; Automerge ignores changes it already has, so this is safe.
//! * **Live.** Changes the hub applies are fanned out to every other subscriber with their log
//!   cursor.
//! * **Repair.** When the hub cannot tell what the client lacks (the cursor is from another
//!   epoch or beyond what the log holds) it sends every document's heads; the client runs
//!   Automerge's own sync protocol for the documents whose heads differ, all documents in the
//!   same frames. When a pushed change depends on changes the hub lacks, the hub starts the sync
//!   protocol for that document instead of acknowledging it.
//!
//! ```
//! use tidepool_core::sync::{ClientConfig, ClientEngine, Hub, MemoryClientDocs, MemoryHubStore, AllowAll};
//! use tidepool_core::{Key, Record, StoreRef, Value, object, wire::PeerId};
//! use automerge::ActorId;
//!
//! let store = StoreRef::new("app", "todos");
//! let mut hub = Hub::new(MemoryHubStore::new([7; 16]), AllowAll);
//! let mut docs = MemoryClientDocs::new(ActorId::from([1u8; 16]));
//! let mut client = ClientEngine::new(ClientConfig::new(PeerId([1; 16]), "token"));
//! client.subscribe(store.clone(), None);
//!
//! // A local edit: change the record, then hand the change to the outbox.
//! let record = docs.record_for(&store, &Key::from("t1")).unwrap();
//! let change = record.put(&object! { "title" => "milk" }, 0).unwrap().unwrap();
//! let (doc, key) = (record.id(), record.encoded_key().to_vec());
//! client.enqueue(1, store.clone(), doc, key, change.bytes);
//!
//! // Move frames until nobody has anything left to say.
//! client.connected();
//! let conn = hub.connect();
//! loop {
//!     let to_hub = client.take_output().frames;
//!     if to_hub.is_empty() { break; }
//!     for frame in to_hub {
//!         for out in hub.receive(conn, &frame).unwrap().sends {
//!             client.receive(&out.frame, &mut docs).unwrap();
//!         }
//!     }
//! }
//! assert_eq!(client.pending(), 0);
//! ```

mod auth;
mod client;
mod hub;
mod memory;

pub use auth::{AllowAll, Authorizer, Grants};
pub use client::{ClientConfig, ClientDocs, ClientEngine, ClientError, ClientEvent, ClientOutput, Incoming, OutboxId};
pub use hub::{Close, ConnId, EXPORT_PAGE_DOCS, Effect, Hub, HubConfig, HubError, HubOutput, HubStore, LogEntry, Outgoing, Received};
pub use memory::{MemoryClientDocs, MemoryHubStore};
