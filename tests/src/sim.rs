//! The simulated network.
//!
//! Each connection is an ordered pair of queues, as WebSocket over TCP is: frames on one
//! connection never overtake each other, but the simulation interleaves connections in any order
//! (reordering between peers), delivers some frames twice (duplication), and cuts connections
//! with whatever is in flight (loss: on an ordered transport a lost frame means a lost
//! connection). Partitioned peers cannot connect. Peers and the hub restart with their storage
//! (durable state survives) or without (a new actor, peer id, or hub epoch).

use std::collections::{BTreeMap, HashMap, VecDeque};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tidepool_core::automerge::ActorId;
use tidepool_core::sync::{
    AllowAll, ClientConfig, ClientDocs, ClientEngine, ClientEvent, ConnId, Hub, HubStore,
    MemoryClientDocs, MemoryHubStore,
};
use tidepool_core::wire::{Cursor, PeerId};
use tidepool_core::{DocId, Key, LocalChange, PathSegment, Record, RecordError, StoreRef, Value};

/// Fault rates, each the probability per delivery.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub cut: f64,
    pub duplicate: f64,
}

impl Faults {
    pub const NONE: Faults = Faults { cut: 0.0, duplicate: 0.0 };
}

/// A local edit a peer can make.
#[derive(Debug, Clone)]
pub enum Edit {
    Put(Value),
    Delete,
    Increment { field: String, delta: i64 },
    Splice { field: String, index: usize, delete: usize, text: String },
}

/// What survives a peer restart "with storage": documents, outbox, cursors.
#[derive(Debug, Clone)]
struct PeerStorage {
    docs: MemoryClientDocs,
    outbox: BTreeMap<u64, (StoreRef, DocId, Vec<u8>, Vec<u8>)>,
    cursors: HashMap<StoreRef, Cursor>,
    next_outbox: u64,
}

#[derive(Debug)]
struct SimPeer {
    peer: PeerId,
    engine: ClientEngine,
    storage: PeerStorage,
    conn: Option<ConnId>,
    partitioned: bool,
    to_hub: VecDeque<Vec<u8>>,
    to_peer: VecDeque<Vec<u8>>,
}

/// A hub and its peers on a simulated network.
#[derive(Debug)]
pub struct Sim {
    rng: SmallRng,
    faults: Faults,
    stores: Vec<StoreRef>,
    hub: Hub<MemoryHubStore, AllowAll>,
    peers: Vec<SimPeer>,
    time: i64,
    /// Frames delivered so far (for reporting).
    pub delivered: u64,
}

fn fresh_id(rng: &mut SmallRng) -> [u8; 16] {
    let mut id = [0u8; 16];
    rng.fill(&mut id);
    id
}

impl Sim {
    /// `peers` clients, all subscribed to every store, none connected yet.
    pub fn new(seed: u64, peers: usize, stores: Vec<StoreRef>, faults: Faults) -> Sim {
        let mut rng = SmallRng::seed_from_u64(seed);
        let hub = Hub::new(MemoryHubStore::new(fresh_id(&mut rng)), AllowAll);
        let mut sim = Sim { rng, faults, stores, hub, peers: Vec::new(), time: 0, delivered: 0 };
        for _ in 0..peers {
            let peer = sim.new_peer(None);
            sim.peers.push(peer);
        }
        sim
    }

    fn new_peer(&mut self, storage: Option<PeerStorage>) -> SimPeer {
        let id = PeerId(fresh_id(&mut self.rng));
        let storage = storage.unwrap_or_else(|| PeerStorage {
            docs: MemoryClientDocs::new(ActorId::from(fresh_id(&mut self.rng))),
            outbox: BTreeMap::new(),
            cursors: HashMap::new(),
            next_outbox: 1,
        });
        let mut engine = ClientEngine::new(ClientConfig::new(id, "sim"));
        for store in &self.stores {
            engine.subscribe(store.clone(), storage.cursors.get(store).copied());
        }
        for (oid, (store, doc, key, bytes)) in &storage.outbox {
            engine.enqueue(*oid, store.clone(), *doc, key.clone(), bytes.clone());
        }
        SimPeer {
            peer: id,
            engine,
            storage,
            conn: None,
            partitioned: false,
            to_hub: VecDeque::new(),
            to_peer: VecDeque::new(),
        }
    }

    pub fn peers(&self) -> usize {
        self.peers.len()
    }

    pub fn stores(&self) -> &[StoreRef] {
        &self.stores
    }

    /// Applies a local edit on peer `p` and hands the change to its outbox.
    pub fn edit(&mut self, p: usize, store: usize, key: &Key, edit: &Edit) -> Result<(), RecordError> {
        self.time += 1;
        let time = self.time;
        let store = self.stores[store % self.stores.len()].clone();
        let peer = &mut self.peers[p];
        let record = peer.storage.docs.record_for(&store, key)?;
        let change: Option<LocalChange> = match edit {
            Edit::Put(v) => record.put(v, time)?,
            Edit::Delete => record.delete(time)?,
            Edit::Increment { field, delta } => {
                Some(record.increment(&[PathSegment::Field(field.clone())], *delta, time)?)
            }
            Edit::Splice { field, index, delete, text } => {
                record.splice_text(&[PathSegment::Field(field.clone())], *index, *delete, text, time)?
            }
        };
        if let Some(change) = change {
            let (doc, key) = (record.id(), record.encoded_key().to_vec());
            let oid = peer.storage.next_outbox;
            peer.storage.next_outbox += 1;
            peer.storage.outbox.insert(oid, (store.clone(), doc, key.clone(), change.bytes.clone()));
            peer.engine.enqueue(oid, store, doc, key, change.bytes);
            self.collect(p);
        }
        Ok(())
    }

    /// Reads a record's current value on a peer.
    pub fn value(&mut self, p: usize, store: usize, key: &Key) -> Option<Value> {
        let store = self.stores[store % self.stores.len()].clone();
        let record: &mut Record = self.peers[p].storage.docs.record_for(&store, key).ok()?;
        record.get_plain().ok().flatten()
    }

    /// Connects peer `p` if it is not connected or partitioned.
    pub fn connect(&mut self, p: usize) {
        let peer = &mut self.peers[p];
        if peer.conn.is_some() || peer.partitioned {
            return;
        }
        peer.conn = Some(self.hub.connect());
        peer.engine.connected();
        self.collect(p);
    }

    /// Cuts peer `p`'s connection, losing whatever is in flight.
    pub fn disconnect(&mut self, p: usize) {
        let peer = &mut self.peers[p];
        if let Some(conn) = peer.conn.take() {
            self.hub.disconnect(conn);
        }
        peer.to_hub.clear();
        peer.to_peer.clear();
        peer.engine.disconnected();
    }

    pub fn partition(&mut self, p: usize, on: bool) {
        self.peers[p].partitioned = on;
        if on {
            self.disconnect(p);
        }
    }

    /// Restarts peer `p`, keeping its storage or losing it.
    pub fn restart_peer(&mut self, p: usize, keep_storage: bool) {
        self.disconnect(p);
        let storage = keep_storage.then(|| self.peers[p].storage.clone());
        let partitioned = self.peers[p].partitioned;
        self.peers[p] = self.new_peer(storage);
        self.peers[p].partitioned = partitioned;
    }

    /// Restarts the hub, keeping its storage or starting empty with a new epoch.
    pub fn restart_hub(&mut self, keep_storage: bool) {
        for p in 0..self.peers.len() {
            self.disconnect(p);
        }
        let store = if keep_storage {
            self.hub.store().clone()
        } else {
            MemoryHubStore::new(fresh_id(&mut self.rng))
        };
        self.hub = Hub::new(store, AllowAll);
    }

    /// Compacts the hub's logs so that cursors older than now need repair.
    pub fn compact_hub_logs(&mut self) {
        for store in self.stores.clone() {
            let head = self.hub.store_mut().head_seq(&store).unwrap_or(0);
            self.hub.store_mut().compact_log(&store, head);
        }
    }

    /// Moves the engine's output into the peer's queue and persists what its events say.
    fn collect(&mut self, p: usize) {
        let peer = &mut self.peers[p];
        let out = peer.engine.take_output();
        for event in out.events {
            match event {
                ClientEvent::Acked { ids } => {
                    for id in ids {
                        peer.storage.outbox.remove(&id);
                    }
                }
                ClientEvent::Cursor { store, cursor } => {
                    peer.storage.cursors.insert(store, cursor);
                }
                ClientEvent::RemoteChanged { .. }
                | ClientEvent::Synced { .. }
                | ClientEvent::HubError { .. }
                | ClientEvent::ExportPage { .. }
                | ClientEvent::Fetched { .. }
                | ClientEvent::Moved { .. } => {}
            }
        }
        if peer.conn.is_some() {
            peer.to_hub.extend(out.frames);
        }
    }

    /// Delivers one frame on a randomly chosen busy link. Returns false when nothing is in flight.
    pub fn step(&mut self) -> bool {
        let busy: Vec<(usize, bool)> = self
            .peers
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                [(!p.to_hub.is_empty()).then_some((i, true)), (!p.to_peer.is_empty()).then_some((i, false))]
            })
            .flatten()
            .collect();
        if busy.is_empty() {
            return false;
        }
        let (p, up) = busy[self.rng.random_range(0..busy.len())];
        if self.rng.random_bool(self.faults.cut) {
            self.disconnect(p);
            return true;
        }
        let times = if self.rng.random_bool(self.faults.duplicate) { 2 } else { 1 };
        let frame = if up { self.peers[p].to_hub.pop_front() } else { self.peers[p].to_peer.pop_front() };
        let Some(frame) = frame else { return true };
        for _ in 0..times {
            self.delivered += 1;
            if up {
                self.deliver_to_hub(p, &frame);
            } else {
                self.deliver_to_peer(p, &frame);
            }
        }
        true
    }

    fn deliver_to_hub(&mut self, p: usize, frame: &[u8]) {
        let Some(conn) = self.peers[p].conn else { return };
        let out = match self.hub.receive(conn, frame) {
            Ok(out) => out,
            Err(e) => panic!("in-memory hub store cannot fail: {e}"),
        };
        for o in out.sends {
            if let Some(peer) = self.peers.iter_mut().find(|q| q.conn == Some(o.to)) {
                peer.to_peer.push_back(o.frame.to_vec());
            }
        }
        for c in out.close {
            if let Some(i) = self.peers.iter().position(|q| q.conn == Some(c.conn)) {
                self.disconnect(i);
            }
        }
    }

    fn deliver_to_peer(&mut self, p: usize, frame: &[u8]) {
        let peer = &mut self.peers[p];
        if let Err(e) = peer.engine.receive(frame, &mut peer.storage.docs) {
            panic!("peer {p} refused a hub frame: {e}");
        }
        self.collect(p);
    }

    /// Delivers until nothing is in flight (or `limit` deliveries); returns deliveries made.
    pub fn run_until_quiescent(&mut self, limit: u64) -> u64 {
        let mut n = 0;
        while n < limit && self.step() {
            n += 1;
        }
        n
    }

    /// Heals partitions, connects everyone and runs fault-free until quiescent.
    pub fn settle(&mut self) {
        self.faults = Faults::NONE;
        for p in 0..self.peers.len() {
            self.peers[p].partitioned = false;
            self.connect(p);
        }
        self.run_until_quiescent(1_000_000);
    }

    /// Checks that every peer holds exactly the hub's records, with the same heads; describes the
    /// first difference.
    pub fn check_converged(&mut self) -> Result<(), String> {
        for store in self.stores.clone() {
            let hub_values = self.hub.store().values(&store);
            let hub_docs: Vec<(DocId, Vec<u8>)> =
                self.hub.store_mut().docs(&store, None, usize::MAX).unwrap_or_default();
            for (p, peer) in self.peers.iter_mut().enumerate() {
                if !peer.engine.is_idle() {
                    return Err(format!("peer {p} is not idle: {} pending", peer.engine.pending()));
                }
                let values = peer.storage.docs.values(&store);
                if values != hub_values {
                    return Err(format!("peer {p} store {store}: {values:?} != hub {hub_values:?}"));
                }
                for (doc, key) in &hub_docs {
                    let hub_heads = self.hub.store_mut().record(&store, *doc, key).map(|r| r.heads()).unwrap_or_default();
                    let heads = peer.storage.docs.record(&store, *doc, key).map(|r| r.heads()).unwrap_or_default();
                    if heads != hub_heads {
                        return Err(format!("peer {p} doc {doc}: heads differ from the hub's"));
                    }
                }
            }
        }
        Ok(())
    }

    /// The peer's id (for logs).
    pub fn peer_id(&self, p: usize) -> PeerId {
        self.peers[p].peer
    }

    /// Outbox entries waiting on peer `p`.
    pub fn pending(&self, p: usize) -> usize {
        self.peers[p].engine.pending()
    }

    pub fn hub_values(&self, store: usize) -> Vec<(Vec<u8>, Value)> {
        self.hub.store().values(&self.stores[store % self.stores.len()])
    }
}
