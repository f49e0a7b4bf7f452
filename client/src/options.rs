//! How a client connects and retries.

use std::time::Duration;

use tidepool_core::wire::PeerId;

/// How a client connects and retries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `ws://host:port/v1/sync`.
    pub url: String,
    pub token: String,
    /// Defaults to a random id: a client without storage is a new peer each time.
    pub peer: Option<PeerId>,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Pings keep the connection from looking idle to the hub.
    pub ping_interval: Duration,
    pub connect_timeout: Duration,
    /// Largest frame accepted from the hub.
    pub max_frame: usize,
    /// Keep remote changes to a record checked but unmerged until the record is next read,
    /// written or synced, so that a client following a large store and touching few of its
    /// records pays for merging only those (a load generator, a service). Change events then
    /// carry the changes' hashes but no value ([`crate::RemoteChange`]).
    pub lazy_merge: bool,
}

impl ClientOptions {
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        ClientOptions {
            url: url.into(),
            token: token.into(),
            peer: None,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            ping_interval: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            max_frame: 64 * 1024 * 1024,
            lazy_merge: false,
        }
    }
}
