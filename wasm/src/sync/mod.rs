//! Sync with the hub: a WebSocket, reconnection with backoff, and the loop that feeds frames to
//! core's engine and persists what it reports.

pub mod backoff;
pub mod driver;
pub mod link;
pub mod socket;
