//! The lease keeper: a thread with its own PostgreSQL session that, every third of the lease
//! time, registers this hub (`tidepool_hubs`), renews the leases it holds, takes the databases
//! rendezvous hashing gives it once their lease is free or expired (raising the fencing number),
//! and hands over those another live hub should now own.
//!
//! Times are PostgreSQL's (`clock_timestamp()`), so hubs need no synchronised clocks. A hub that
//! misses renewals (paused, partitioned) finds its lease gone at the next round and stops
//! serving the database; until then its writes are already refused by the fencing check.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;

use postgres::Client;
use tokio::sync::mpsc;

use super::{Cluster, rendezvous};
use crate::actor::Command;
use crate::storage::{StorageError, postgres_connect};

/// A running keeper; [`KeeperHandle::stop`] releases the leases for a quick handover.
#[derive(Debug)]
pub struct KeeperHandle {
    stop: Arc<AtomicBool>,
    cluster: Arc<Cluster>,
    thread: Option<JoinHandle<()>>,
}

impl KeeperHandle {
    /// Stops renewing, releases every lease and deregisters (a clean shutdown, after the last
    /// commit), so other hubs take over at once instead of after the lease time.
    pub fn stop(mut self) {
        self.stop.store(true, Relaxed);
        self.cluster.want("");
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Keeper {
    cluster: Arc<Cluster>,
    actor: mpsc::Sender<Command>,
    client: Client,
    ttl_secs: f64,
}

/// Starts the keeper thread and waits for its first round, so a hub alone on its storage owns
/// its databases before it serves. The PostgreSQL session is made on that thread: the
/// synchronous client runs its own runtime and must not be created inside the server's.
pub fn start_keeper(cluster: Arc<Cluster>, actor: mpsc::Sender<Command>) -> Result<KeeperHandle, StorageError> {
    let stop = Arc::new(AtomicBool::new(false));
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("tidepool-leases".into())
        .spawn({
            let stop = stop.clone();
            let cluster = cluster.clone();
            move || {
                let keeper = Keeper::connect(cluster, actor).and_then(|mut k| k.round().map(|()| k));
                match keeper {
                    Ok(keeper) => {
                        let _ = first_tx.send(Ok(()));
                        keeper.run(&stop);
                    }
                    Err(e) => {
                        let _ = first_tx.send(Err(e));
                    }
                }
            }
        })
        .map_err(|e| StorageError::Malformed(format!("cannot start the lease keeper: {e}")))?;
    first_rx
        .recv()
        .map_err(|_| StorageError::Malformed("the lease keeper stopped before its first round".into()))??;
    Ok(KeeperHandle { stop, cluster, thread: Some(thread) })
}

impl Keeper {
    fn connect(cluster: Arc<Cluster>, actor: mpsc::Sender<Command>) -> Result<Keeper, StorageError> {
        let mut client = postgres_connect(&cluster.options.url)?;
        // A takeover must not wait for ever on a lease row locked by a stopped hub's transaction
        // (that session is ended by its idle-in-transaction timeout; the next round tries again).
        let lock_ms = (cluster.options.lease_ttl.as_millis() / 3).max(100);
        client.batch_execute(&format!("SET lock_timeout = {lock_ms}"))?;
        let ttl_secs = cluster.options.lease_ttl.as_secs_f64();
        Ok(Keeper { cluster, actor, client, ttl_secs })
    }

    fn run(mut self, stop: &AtomicBool) {
        let period = self.cluster.options.lease_ttl / 3;
        while !stop.load(Relaxed) {
            if let Err(e) = self.round() {
                tracing::warn!(error = %e, "lease round failed; retrying");
                if self.client.is_closed() {
                    match postgres_connect(&self.cluster.options.url) {
                        Ok(client) => self.client = client,
                        Err(e) => tracing::warn!(error = %e, "cannot reconnect the lease keeper"),
                    }
                }
            }
            self.cluster.sleep(period);
        }
        if let Err(e) = self.release_all() {
            tracing::warn!(error = %e, "releasing leases failed; they expire instead");
        }
    }

    fn round(&mut self) -> Result<(), StorageError> {
        let me = self.cluster.options.hub_id.clone();
        self.client.execute(
            "INSERT INTO tidepool_hubs (id, addr, expires) VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
             ON CONFLICT (id) DO UPDATE SET addr = excluded.addr, expires = excluded.expires",
            &[&me, &self.cluster.options.advertise, &self.ttl_secs],
        )?;
        // Hubs gone for an hour leave no row behind (ids are random per start by default).
        self.client
            .execute("DELETE FROM tidepool_hubs WHERE expires < clock_timestamp() - interval '1 hour'", &[])?;
        for db in self.cluster.fences.held() {
            let Some(fence) = self.cluster.fences.get(&db) else { continue };
            let renewed = self.client.execute(
                "UPDATE tidepool_leases SET expires = clock_timestamp() + make_interval(secs => $4)
                 WHERE db = $1 AND owner = $2 AND fence = $3",
                &[&db, &me, &fence, &self.ttl_secs],
            )?;
            if renewed == 0 {
                tracing::warn!(db, fence, "lease lost: another hub took the database over");
                self.cluster.metrics.leases_lost.fetch_add(1, Relaxed);
                self.cluster.drop_db(&db);
                self.forget_cache();
            }
        }
        let hubs: HashMap<String, String> = self
            .client
            .query("SELECT id, addr FROM tidepool_hubs WHERE expires > clock_timestamp()", &[])?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        // db -> (owner, unexpired)
        let leases: HashMap<String, (String, bool)> = self
            .client
            .query("SELECT db, owner, expires > clock_timestamp() FROM tidepool_leases", &[])?
            .into_iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        let mut candidates: HashSet<String> = self
            .client
            .query("SELECT DISTINCT db FROM tidepool_stores", &[])?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        candidates.extend(leases.keys().cloned());
        candidates.extend(self.cluster.take_wanted().into_iter().filter(|db| !db.is_empty()));
        let ids: Vec<&str> = hubs.keys().map(String::as_str).chain([me.as_str()]).collect();
        for db in &candidates {
            let desired = rendezvous::owner(db, ids.iter().copied()).unwrap_or(&me);
            let held = self.cluster.fences.get(db);
            match held {
                Some(fence) if desired != me && hubs.contains_key(desired) => self.release(db, fence)?,
                Some(_) => {}
                None if desired == me => {
                    let free = leases.get(db).is_none_or(|(owner, live)| !live || *owner == me);
                    if free {
                        self.acquire(db)?;
                    }
                }
                None => {}
            }
        }
        let others = leases
            .into_iter()
            .filter(|(_, (owner, live))| *live && *owner != me && hubs.contains_key(owner))
            .map(|(db, (owner, _))| (db, owner))
            .collect();
        self.cluster.set_view(hubs.into_iter().filter(|(id, _)| *id != me).collect(), others);
        self.cluster.changed.notify_waiters();
        Ok(())
    }

    /// Takes the lease with the next fencing number, then has the storage actor forget what it
    /// cached of the database (it may have changed under another owner) before the fence is
    /// installed, so no write of this hub is based on an older state.
    fn acquire(&mut self, db: &str) -> Result<(), StorageError> {
        let me = &self.cluster.options.hub_id;
        let taken = (|| -> Result<Option<i64>, postgres::Error> {
            let mut tx = self.client.transaction()?;
            // FOR UPDATE waits for every write transaction that checked the old fence (they
            // hold the row FOR KEY SHARE) and makes later checks wait for this one: no write
            // under the old fence can commit after the new one is visible.
            let current = tx.query_opt(
                "SELECT owner, expires <= clock_timestamp() FROM tidepool_leases WHERE db = $1 FOR UPDATE",
                &[&db],
            )?;
            let fence = match current {
                None => tx.query_opt(
                    "INSERT INTO tidepool_leases (db, owner, fence, expires)
                     VALUES ($1, $2, 1, clock_timestamp() + make_interval(secs => $3))
                     ON CONFLICT (db) DO NOTHING RETURNING fence",
                    &[&db, me, &self.ttl_secs],
                )?,
                Some(row) if row.get::<_, bool>(1) || row.get::<_, String>(0) == *me => tx.query_opt(
                    "UPDATE tidepool_leases SET owner = $2, fence = fence + 1,
                       expires = clock_timestamp() + make_interval(secs => $3)
                     WHERE db = $1 RETURNING fence",
                    &[&db, me, &self.ttl_secs],
                )?,
                Some(_) => None,
            };
            tx.commit()?;
            Ok(fence.map(|r| r.get::<_, i64>(0)))
        })();
        let fence = match taken {
            Ok(Some(fence)) => fence,
            Ok(None) => return Ok(()),
            Err(e) if e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
                tracing::info!(db, "lease row busy (its last owner is mid-transaction); next round");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(db, fence, "lease acquired");
        let cluster = self.cluster.clone();
        let db_owned = db.to_owned();
        let install = Box::new(move || {
            cluster.fences.set(&db_owned, fence);
            cluster.metrics.leases_acquired.fetch_add(1, Relaxed);
            cluster.metrics.owned_databases.store(cluster.fences.held().len() as i64, Relaxed);
            cluster.changed.notify_waiters();
        });
        if self.actor.blocking_send(Command::Invalidate { then: install }).is_err() {
            tracing::warn!(db, "storage stopped; lease not installed");
        }
        Ok(())
    }

    /// Hands `db` to the hub that should own it: stops writing, ends its connections, then
    /// expires the lease (waiting for a transaction that already checked it to commit).
    fn release(&mut self, db: &str, fence: i64) -> Result<(), StorageError> {
        self.cluster.drop_db(db);
        self.forget_cache();
        self.cluster.metrics.leases_released.fetch_add(1, Relaxed);
        tracing::info!(db, fence, "lease handed over");
        let result = self.client.execute(
            "UPDATE tidepool_leases SET expires = clock_timestamp() - interval '1 second'
             WHERE db = $1 AND owner = $2 AND fence = $3",
            &[&db, &self.cluster.options.hub_id, &fence],
        );
        match result {
            Ok(_) => Ok(()),
            // The lease then simply expires.
            Err(e) if e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The storage actor drops what it cached (of a database no longer held, among others):
    /// memory goes to the databases this hub serves.
    fn forget_cache(&self) {
        let _ = self.actor.blocking_send(Command::Invalidate { then: Box::new(|| {}) });
    }

    fn release_all(&mut self) -> Result<(), StorageError> {
        for db in self.cluster.fences.held() {
            if let Some(fence) = self.cluster.fences.get(&db) {
                self.release(&db, fence)?;
            }
        }
        self.client.execute("DELETE FROM tidepool_hubs WHERE id = $1", &[&self.cluster.options.hub_id])?;
        Ok(())
    }
}
