//! Tidepool's native client: core's [`ClientEngine`](tidepool_core::sync::ClientEngine) over a
//! tokio-tungstenite WebSocket, with documents in memory, reconnects with jittered exponential
//! backoff, and ways to wait for the hub (acknowledged, idle, converged) that tests, the load tool
//! and the bridge build on.
//!
//! One background task owns the socket and is the only one that sends; API calls change the
//! shared state under a mutex (never held across an await) and nudge the task.
//!
//! Code map:
//! * `options`: [`ClientOptions`] (where to connect, backoff, pings, frame limit, lazy merging).
//! * `error`: [`ClientError`], why a client call failed; [`ConnectError`], why a connection
//!   attempt failed.
//! * `change`: [`ChangeState`] of a local change and [`RemoteChange`] from other peers.
//! * `docs`: the in-memory documents core's engine applies frames to, merging remote changes at
//!   once or when a record is next used.
//! * `state`: the state shared by the API and the background task.
//! * `client`: [`Client`], edits and reads.
//! * `connection`: the background task: connect, run a session, back off, again.
//! * `export`: export pages and fetched documents, for peers that do not hold the store.
//! * `wait`: waiting for the hub (connected, idle, acknowledged, an error) and [`converge`].
//! * [`load`]: the load generator behind the `tidepool-load` binary.
//! * [`load_part`]: one process of a load run spread over processes, and the initial sync modes.
//!
//! Architecture invariant: this crate knows WebSockets and tokio, never HTTP servers, SQLite or
//! JWT; the protocol decisions stay in core.

mod change;
mod client;
mod connection;
mod docs;
mod error;
mod export;
pub mod load;
pub mod load_part;
mod options;
mod state;
mod wait;

pub use change::{ChangeState, RemoteChange, StoreMoved};
pub use client::Client;
pub use error::{ClientError, ConnectCause, ConnectError};
pub use export::{ExportPage, Fetched, PageRequest};
pub use options::ClientOptions;
pub use wait::converge;
