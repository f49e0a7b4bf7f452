//! [`Client`]: a connection to a hub that survives disconnects, with edits and reads on its
//! in-memory documents.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use tidepool_core::automerge::{ActorId, ChangeHash};
use tidepool_core::sync::{ClientConfig, ClientDocs, ClientEngine, OutboxId};
use tidepool_core::wire::{Cursor, ErrorCode, Payload, PeerId};
use tidepool_core::{DocId, Key, LocalChange, Patch, Record, StoreRef, Value};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::change::{ChangeState, RemoteChange, StoreMoved};
use crate::connection;
use crate::docs::Docs;
use crate::error::{ClientError, ConnectError};
use crate::options::ClientOptions;
use crate::state::{Shared, State};

/// A connection to a hub that survives disconnects. Dropping it stops the background task.
#[derive(Debug)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

impl Client {
    /// Starts the client; it connects (and reconnects) in the background. Must be called inside
    /// a tokio runtime.
    pub fn connect(options: ClientOptions) -> Client {
        let peer = options.peer.unwrap_or_else(|| {
            let mut id = [0u8; 16];
            rand::rng().fill_bytes(&mut id);
            PeerId(id)
        });
        let mut config = ClientConfig::new(peer, options.token.clone());
        config.agent = concat!("tidepool-client/", env!("CARGO_PKG_VERSION")).into();
        config.limits.max_frame = options.max_frame;
        let state = State::new(ClientEngine::new(config), Docs::new(ActorId::from(peer.0), options.lazy_merge));
        let shared = Arc::new(Shared::new(options, state));
        let task = tokio::spawn(connection::run(shared.clone()));
        Client { shared, task }
    }

    /// Follows a store (from the cursor this client already has for it, if any).
    pub fn subscribe(&self, store: StoreRef) {
        let mut st = self.shared.lock();
        let since = st.engine.cursor(&store);
        st.engine.subscribe(store, since);
        drop(st);
        self.shared.kick.notify_one();
    }

    /// Follows where a store's change log stands without holding its records: every move
    /// (one now, once connected, then one per change the hub logs) arrives on [`Client::moves`].
    /// Survives reconnection.
    pub fn watch(&self, store: StoreRef) {
        self.shared.lock().engine.watch(store);
        self.shared.kick.notify_one();
    }

    /// Moves of the stores this client watches, from now on. A receiver that falls more than
    /// 4,096 moves behind misses the oldest (it learns how many); the newest position is always
    /// the last one received.
    pub fn moves(&self) -> broadcast::Receiver<StoreMoved> {
        self.shared.moves.subscribe()
    }

    fn edit(
        &self,
        store: &StoreRef,
        key: &Key,
        edit: impl FnOnce(&mut Record) -> Result<Option<LocalChange>, ClientError>,
    ) -> Result<Option<OutboxId>, ClientError> {
        Ok(self.edit_hashed(store, key, edit)?.map(|(id, _)| id))
    }

    fn edit_hashed(
        &self,
        store: &StoreRef,
        key: &Key,
        edit: impl FnOnce(&mut Record) -> Result<Option<LocalChange>, ClientError>,
    ) -> Result<Option<(OutboxId, ChangeHash)>, ClientError> {
        let encoded = key.encode()?;
        let doc = DocId::from_encoded_key(store, &encoded);
        let mut st = self.shared.lock();
        let record = st.docs.record(store, doc, &encoded)?;
        let Some(change) = edit(record)? else { return Ok(None) };
        let id = st.next_id;
        st.next_id += 1;
        st.pending.insert(id);
        st.engine.enqueue(id, store.clone(), doc, encoded, change.bytes);
        drop(st);
        self.shared.kick.notify_one();
        self.shared.bump();
        Ok(Some((id, change.hash)))
    }

    /// Writes a record. Returns the change's id, or `None` if the record already held the value.
    pub fn put(&self, store: &StoreRef, key: &Key, value: &Value) -> Result<Option<OutboxId>, ClientError> {
        self.edit(store, key, |r| Ok(r.put(value, now_secs())?))
    }

    /// Changes only the fields `patch` names, on top of the record's current state (a record that
    /// does not exist becomes the patch's object). Unlike a put of a copy read earlier, it cannot
    /// revert a remote edit of another field that arrived in between. Returns `None` if nothing
    /// changed.
    pub fn update(&self, store: &StoreRef, key: &Key, patch: &Patch) -> Result<Option<OutboxId>, ClientError> {
        self.edit(store, key, |r| Ok(r.update(patch, now_secs())?))
    }

    /// As [`Client::update`], with the hash of the change made: how the peers that receive it
    /// name it ([`RemoteChange::changes`]).
    pub fn update_hashed(
        &self,
        store: &StoreRef,
        key: &Key,
        patch: &Patch,
    ) -> Result<Option<(OutboxId, ChangeHash)>, ClientError> {
        self.edit_hashed(store, key, |r| Ok(r.update(patch, now_secs())?))
    }

    /// Deletes a record. Returns `None` if it did not exist.
    pub fn delete(&self, store: &StoreRef, key: &Key) -> Result<Option<OutboxId>, ClientError> {
        self.edit(store, key, |r| Ok(r.delete(now_secs())?))
    }

    /// The record's current value as plain data, `None` if it does not exist.
    pub fn get(&self, store: &StoreRef, key: &Key) -> Result<Option<Value>, ClientError> {
        let encoded = key.encode()?;
        let doc = DocId::from_encoded_key(store, &encoded);
        let mut st = self.shared.lock();
        Ok(st.docs.get(store, &doc)?.map(Record::get_plain).transpose()?.flatten())
    }

    /// Copies of every record of a store, deleted ones included (for snapshots).
    pub fn records(&self, store: &StoreRef) -> Vec<Record> {
        let mut st = self.shared.lock();
        st.docs.all(store).cloned().collect()
    }

    /// Sends a change made elsewhere (e.g. a deterministic write-back): applies it to the local
    /// copy and queues it for the hub. Returns `None` if the copy already had it.
    pub fn push_change(
        &self,
        store: &StoreRef,
        doc: DocId,
        key: &[u8],
        change: &[u8],
    ) -> Result<Option<OutboxId>, ClientError> {
        self.edit_raw(store, doc, key, change)
    }

    /// Queues a change for the hub without keeping a copy of its document (a peer that does not
    /// hold the store). The bytes are checked first, so corrupt or foreign bytes fail here and
    /// nothing is sent.
    pub fn send_change(&self, store: &StoreRef, doc: DocId, key: &[u8], change: Vec<u8>) -> Result<OutboxId, ClientError> {
        tidepool_core::Verified::parse(&Payload::Changes(vec![change.clone()]))?;
        Ok(self.send_built_change(store, doc, key, change))
    }

    /// [`Client::send_change`] for a change core built in this process (a write-back's, from
    /// `WriteBack`), without parsing it again: core's encoders are property-tested byte for byte
    /// against Automerge's, and the hub parses and checks every payload it is sent, so a bad one
    /// is still refused, by the hub and with its reason. Parsing it here as well cost the
    /// bridge's write-back a sixth of its time.
    pub fn send_built_change(&self, store: &StoreRef, doc: DocId, key: &[u8], change: Vec<u8>) -> OutboxId {
        let mut st = self.shared.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.pending.insert(id);
        st.engine.enqueue(id, store.clone(), doc, key.to_vec(), change);
        drop(st);
        self.shared.kick.notify_one();
        self.shared.bump();
        id
    }

    fn edit_raw(&self, store: &StoreRef, doc: DocId, key: &[u8], change: &[u8]) -> Result<Option<OutboxId>, ClientError> {
        let mut st = self.shared.lock();
        let record = st.docs.record(store, doc, key)?;
        if !record.apply(&Payload::Changes(vec![change.to_vec()]))? {
            return Ok(None);
        }
        let id = st.next_id;
        st.next_id += 1;
        st.pending.insert(id);
        st.engine.enqueue(id, store.clone(), doc, key.to_vec(), change.to_vec());
        drop(st);
        self.shared.kick.notify_one();
        self.shared.bump();
        Ok(Some(id))
    }

    /// Every existing record of a store as (encoded key, plain value), in key order.
    pub fn values(&self, store: &StoreRef) -> Vec<(Vec<u8>, Value)> {
        let mut st = self.shared.lock();
        tidepool_core::record::plain_values(st.docs.all(store))
    }

    pub fn state_of(&self, id: OutboxId) -> ChangeState {
        let st = self.shared.lock();
        if st.pending.contains(&id) {
            ChangeState::Pending
        } else if st.refused.contains_key(&id) {
            ChangeState::Refused
        } else {
            ChangeState::Acked
        }
    }

    /// Local changes not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.shared.lock().engine.pending()
    }

    pub fn cursor(&self, store: &StoreRef) -> Option<Cursor> {
        self.shared.lock().engine.cursor(store)
    }

    pub fn is_connected(&self) -> bool {
        self.shared.lock().connected
    }

    /// How many connections this client has made.
    pub fn connections(&self) -> u64 {
        self.shared.lock().connections
    }

    /// Why the hub refused a change (its error code and detail), if it did.
    pub fn refusal_of(&self, id: OutboxId) -> Option<(ErrorCode, String)> {
        self.shared.lock().refused.get(&id).cloned()
    }

    /// The last failed connection attempt, if the client is not connected since.
    pub fn last_connect_error(&self) -> Option<ConnectError> {
        self.shared.lock().last_connect_error.clone()
    }

    /// The last error the hub reported.
    pub fn last_error(&self) -> Option<(ErrorCode, String)> {
        self.shared.lock().last_error.clone()
    }

    /// Changes made by other peers, as they arrive.
    pub fn remote_changes(&self) -> broadcast::Receiver<RemoteChange> {
        self.shared.events.subscribe()
    }

    /// Going offline closes the connection and stops reconnecting; local edits keep queueing.
    pub fn set_online(&self, online: bool) {
        self.shared.online.send_replace(online);
    }
}
