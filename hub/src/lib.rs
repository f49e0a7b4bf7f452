//! Tidepool's hub: a thin tokio/axum shell that moves WebSocket frames between clients and core's
//! sans-IO [`Hub`](tidepool_core::sync::Hub) engine, over durable SQLite storage.
//!
//! Code map:
//! * [`storage`]: the narrow [`storage::Backend`] trait (SQLite, memory, fault-injecting) and
//!   [`storage::Storage`], which implements core's `HubStore` with a bounded document cache.
//! * [`engine`]: group commit: a batch of frames from all connections, one commit, then delivery.
//! * [`actor`]: the thread that owns the engine and the SQLite connection.
//! * [`server`] and [`conn`]: axum routes, one task per WebSocket, limits, graceful shutdown.
//! * [`cluster`]: several hubs on one PostgreSQL: leases with fencing, rendezvous hashing,
//!   relaying connections to the owning hub.
//! * [`auth`]: signed tokens (JWT, HS256) turned into core's `Grants`.
//! * [`metrics`]: counters and a histogram rendered in Prometheus text format.
//!
//! Not here: the native client and `tidepool-load` (`tidepool-client`, which the tests and
//! benchmarks use), the JSON mapping behind `dump` (`tidepool-json`).
//!
//! Architecture invariant: only this crate knows HTTP serving, SQLite and JWT; the protocol
//! decisions (what to send, what to store, who may read) all stay in core.

pub mod actor;
pub mod auth;
pub mod cluster;
pub mod conn;
pub mod engine;
pub mod metrics;
pub mod server;
pub mod storage;
