//! Several hubs on one PostgreSQL database: each Tidepool database is served by one hub at a
//! time, the holder of its lease row (`lease.rs`), chosen by rendezvous hashing over the hubs
//! registered in PostgreSQL (`rendezvous.rs`). A client may connect to any hub: one that does
//! not own the client's database relays the connection to the owner (`relay.rs`), frames both
//! ways, so clients need no change.
//!
//! [`Cluster`] is what the lease keeper, the storage actor and the connection tasks share: the
//! fencing numbers of the leases held (checked by every write, see `storage::PostgresBackend`),
//! the keeper's latest view of hubs and leases, and a cancellation token per owned database
//! that ends its local connections when the lease is handed over or lost.

mod lease;
mod relay;
pub mod rendezvous;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use lease::{KeeperHandle, start_keeper};
pub use relay::{RELAYED_HEADER, RelayEnd, relay};

use crate::metrics::Metrics;
use crate::storage::Fences;

/// Settings of a hub in a group of hubs.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The PostgreSQL URL (the same storage every hub uses).
    pub url: String,
    /// Unique per running hub; a random one by default.
    pub hub_id: String,
    /// `host:port` other hubs use to relay connections here.
    pub advertise: String,
    /// A lease not renewed for this long may be taken over.
    pub lease_ttl: Duration,
}

/// What a server in a group needs: the shared state, and how to read a connection's database
/// from its first frame.
#[derive(Clone)]
pub struct ClusterServe {
    pub cluster: Arc<Cluster>,
    pub auth: crate::auth::HubAuth,
}

impl std::fmt::Debug for ClusterServe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterServe").field("hub", &self.cluster.options.hub_id).finish_non_exhaustive()
    }
}

impl ClusterServe {
    /// The database of a connection whose first frame is `frame`: its `Hello`'s token. This is
    /// the one frame the shell decodes itself (core decodes it again when it is served here):
    /// routing must happen before any hub's engine sees the connection.
    pub fn database(&self, frame: &[u8], max_frame: usize) -> Option<String> {
        let limits = tidepool_core::wire::Limits { max_frame, max_docs: 1 };
        match tidepool_core::wire::decode(frame, &limits).ok()? {
            tidepool_core::wire::Message::Hello { token, .. } => self.auth.database(&token),
            _ => None,
        }
    }
}

/// Where a connection for a database should go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This hub holds the lease: serve it here.
    Local,
    /// This hub should own it but does not hold the lease yet: wait for the keeper.
    Wait,
    /// Relay to the hub at this address.
    Relay(String),
}

#[derive(Debug, Default)]
struct View {
    /// Live hubs: id -> address.
    hubs: HashMap<String, String>,
    /// Unexpired leases held by other hubs: database -> hub id.
    leases: HashMap<String, String>,
}

/// State shared by the lease keeper, the storage actor and the connections.
#[derive(Debug)]
pub struct Cluster {
    pub options: ClusterOptions,
    pub fences: Arc<Fences>,
    pub metrics: Arc<Metrics>,
    view: Mutex<View>,
    /// Per owned database: cancelled when the lease goes.
    serving: Mutex<HashMap<String, CancellationToken>>,
    /// Databases clients asked this hub for that it should own.
    wanted: Mutex<HashSet<String>>,
    /// Wakes the keeper early (a wanted database).
    wake: Condvar,
    wake_lock: Mutex<bool>,
    /// Notified after every keeper round that changed what this hub holds.
    pub changed: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps stay consistent if a holder panicked.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Cluster {
    /// `fences` are the ones the storage backend checks.
    pub fn new(options: ClusterOptions, metrics: Arc<Metrics>, fences: Arc<Fences>) -> Arc<Cluster> {
        Arc::new(Cluster {
            options,
            fences,
            metrics,
            view: Mutex::new(View::default()),
            serving: Mutex::new(HashMap::new()),
            wanted: Mutex::new(HashSet::new()),
            wake: Condvar::new(),
            wake_lock: Mutex::new(false),
            changed: Notify::new(),
        })
    }

    /// Where a connection for `db` goes now.
    pub fn route(&self, db: &str) -> Route {
        if self.fences.get(db).is_some() {
            return Route::Local;
        }
        let view = lock(&self.view);
        let me = self.options.hub_id.as_str();
        let holder = view.leases.get(db).map(String::as_str);
        let target = holder.or_else(|| rendezvous::owner(db, view.hubs.keys().map(String::as_str).chain([me])));
        match target {
            Some(hub) if hub != me => match view.hubs.get(hub) {
                Some(addr) => Route::Relay(addr.clone()),
                None => Route::Wait,
            },
            _ => Route::Wait,
        }
    }

    /// A client asked for `db`, which this hub should own: ask the keeper to take it now.
    pub fn want(&self, db: &str) {
        if lock(&self.wanted).insert(db.to_owned()) {
            self.refresh();
        }
    }

    /// Asks the keeper for a round now rather than at its next renewal: an owner went away or
    /// could not be reached, so the view of hubs and leases may be out of date (a hub stopping
    /// cleanly has released its leases; the databases it held are free to take at once).
    /// Wakes coalesce, so many clients of a gone owner cost one round, not one each.
    pub fn refresh(&self) {
        *lock(&self.wake_lock) = true;
        self.wake.notify_one();
    }

    /// The token ending the local connections of `db` when its lease goes (`None`: not owned).
    pub fn serving(&self, db: &str) -> Option<CancellationToken> {
        self.fences.get(db)?;
        Some(lock(&self.serving).entry(db.to_owned()).or_default().clone())
    }

    /// Databases whose lease this hub holds.
    pub fn owned(&self) -> Vec<String> {
        self.fences.held()
    }

    fn take_wanted(&self) -> HashSet<String> {
        std::mem::take(&mut *lock(&self.wanted))
    }

    fn set_view(&self, hubs: HashMap<String, String>, leases: HashMap<String, String>) {
        *lock(&self.view) = View { hubs, leases };
    }

    /// Stops serving `db` here: writes are refused from now on and its connections end.
    fn drop_db(&self, db: &str) {
        self.fences.remove(db);
        if let Some(token) = lock(&self.serving).remove(db) {
            token.cancel();
        }
        self.metrics.owned_databases.store(self.fences.held().len() as i64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sleeps until `timeout` or an early wake.
    fn sleep(&self, timeout: Duration) {
        let mut woken = lock(&self.wake_lock);
        if !*woken {
            woken = self.wake.wait_timeout(woken, timeout).unwrap_or_else(PoisonError::into_inner).0;
        }
        *woken = false;
    }
}
