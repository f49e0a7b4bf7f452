//! Opening a database: schema, identity, and the in-memory indexes, without loading documents.
//!
//! Opening reads the registry (which documents each segment holds), the snapshot keys, the
//! outbox and the cursors: a handful of requests whatever the number of records, which is what
//! keeps a cold open of a large database fast.

use std::collections::{BTreeSet, HashMap};

use indexed_db_futures::prelude::*;
use tidepool_core::automerge::ActorId;
use tidepool_core::sync::{ClientConfig, ClientEngine};
use tidepool_core::wire::PeerId;
use tidepool_core::{DocId, StoreRef};
use indexed_db_futures::internals::SystemRepr;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

use crate::client::outbox::{OutboxRows, outbox_id};
use crate::options::StoreSpec;
use crate::tabs;
use indexed_db_futures::database::Database;
use tidepool_core::wire::Cursor;
use crate::client::{State, cursor_key, decode_cursor};
use crate::docs::cache::Cache;
use crate::docs::known::Known;
use crate::docs::pack;
use crate::error::Error;
use crate::idb::{self, ACKS, LAYOUT_VERSION, META, OUTBOX, REGISTRY, SNAPSHOTS, schema, tx};
use crate::js::{global, lock};
use crate::options::OpenOptions;

const ACTOR: &str = "actor";
const PEER: &str = "peer";
const LAYOUT: &str = "layout";
/// The `_tp_meta` key of the write counter every readwrite transaction bumps.
const GENERATION: &str = "generation";
/// The `_tp_meta` key of the counter of transactions that replaced snapshots or deleted segments
/// (compaction, quarantine): while it stays, other tabs only ever added segments.
const COMPACTIONS: &str = "compactions";

fn console_error(what: &str, detail: &str) {
    web_sys::console::error_1(&format!("tidepool: {what}: {detail}").into());
}

/// Keys and values of a whole store, in key order.
async fn everything(store: &indexed_db_futures::object_store::ObjectStore<'_>) -> Result<Vec<(JsValue, JsValue)>, Error> {
    let keys = store.get_all_keys::<JsValue>().primitive()?;
    let values = store.get_all::<JsValue>().primitive()?;
    let keys: Vec<JsValue> = keys.await?.collect::<Result<_, _>>()?;
    let values: Vec<JsValue> = values.await?.collect::<Result<_, _>>()?;
    Ok(keys.into_iter().zip(values).collect())
}

/// Unacknowledged outbox entries of one row: its segment, store and `(idx, doc, key, change)`.
pub type PendingRow = (u64, String, Vec<(u32, DocId, Vec<u8>, Vec<u8>)>);

/// What storage says about documents, outbox and cursors: read at open, and read again when
/// another tab has written since (`client::refresh`). Never document bytes.
#[derive(Debug)]
pub struct Indexes {
    /// `_tp_meta`'s write counter when this was read.
    pub generation: u64,
    /// `_tp_meta`'s compaction counter when this was read.
    pub compactions: u64,
    /// With a `Known` to build on: the documents of the segments added to it.
    pub added: Option<Vec<DocId>>,
    pub actor: Option<Vec<u8>>,
    pub peer: Option<Vec<u8>>,
    pub known: Known,
    pub outbox: OutboxRows,
    /// The unacknowledged entries of the outbox rows read: every row, or with a base, the rows
    /// it did not know.
    pub pending: Vec<PendingRow>,
    pub cursors: HashMap<String, Option<Cursor>>,
}

/// Reads the indexes in one transaction. With `base` (the indexes as this tab knew them, when no
/// compaction happened since), only the registry and outbox rows it lacks are read and added to
/// it: the snapshot keys (one per document) and a large unsynced outbox are what make a full read
/// slow. Outbox rows it knows are kept if still stored, with the acknowledgements stored for them.
pub async fn read_indexes(db: &Database, db_name: &str, stores: &[StoreSpec], base: Option<(Known, OutboxRows)>) -> Result<Indexes, Error> {
    let tx = tx::read(db, &[META, REGISTRY, SNAPSHOTS, OUTBOX, ACKS])?;
    let meta = tx.object_store(META)?;
    let get_meta = |key: &str| meta.get::<JsValue, JsValue, _>(JsValue::from_str(key)).primitive();
    let actor = get_meta(ACTOR)?;
    let peer = get_meta(PEER)?;
    let generation = get_meta(GENERATION)?;
    let compactions = get_meta(COMPACTIONS)?;
    let mut cursor_requests = Vec::new();
    for store in stores {
        cursor_requests.push((store.name.clone(), get_meta(&cursor_key(&store.name))?));
    }
    let registry = tx.object_store(REGISTRY)?;
    let snapshots = tx.object_store(SNAPSHOTS)?;
    let outbox = tx.object_store(OUTBOX)?;
    let acks = tx.object_store(ACKS)?;
    let (snapshot_keys, registry_rows) = match base.as_ref().map(|(known, _)| known) {
        None => {
            let snapshot_keys = snapshots.get_all_keys::<JsValue>().primitive()?;
            let registry_rows = everything(&registry).await?;
            (snapshot_keys.await?.collect::<Result<Vec<JsValue>, _>>()?, registry_rows)
        }
        Some(known) => {
            let keys: Vec<JsValue> = registry.get_all_keys::<JsValue>().primitive()?.await?.collect::<Result<_, _>>()?;
            let mut rows = Vec::new();
            for key in keys.into_iter().filter(|k| k.as_f64().is_some_and(|seg| known.segment(seg as u64).is_none())) {
                let row = registry.get::<JsValue, JsValue, _>(key.clone()).primitive()?.await?;
                rows.extend(row.map(|row| (key, row)));
            }
            (Vec::new(), rows)
        }
    };
    let (outbox_keys, outbox_rows) = match base.as_ref().map(|(_, rows)| rows) {
        None => (None, everything(&outbox).await?),
        Some(known_rows) => {
            let keys: Vec<JsValue> = outbox.get_all_keys::<JsValue>().primitive()?.await?.collect::<Result<_, _>>()?;
            let mut rows = Vec::new();
            for key in keys.iter().filter(|k| k.as_f64().is_some_and(|seg| !known_rows.contains(seg as u64))) {
                let row = outbox.get::<JsValue, JsValue, _>(key.clone()).primitive()?.await?;
                rows.extend(row.map(|row| (key.clone(), row)));
            }
            (Some(keys.iter().filter_map(|k| k.as_f64().map(|s| s as u64)).collect::<BTreeSet<u64>>()), rows)
        }
    };
    let ack_rows = everything(&acks).await?;
    let actor = actor.await?.as_ref().and_then(idb::to_bytes);
    let peer = peer.await?.as_ref().and_then(idb::to_bytes);
    let generation = generation.await?.and_then(|g| g.as_f64()).map_or(0, |g| g as u64);
    let compactions = compactions.await?.and_then(|g| g.as_f64()).map_or(0, |g| g as u64);
    let mut cursors = HashMap::new();
    for (store, request) in cursor_requests {
        cursors.insert(store, request.await?.as_ref().and_then(idb::to_bytes).and_then(|b| decode_cursor(&b)));
    }
    drop(tx);

    let (base_known, base_rows) = base.map_or((None, None), |(known, rows)| (Some(known), Some(rows)));
    let mut added = base_known.is_some().then(Vec::new);
    let mut known = base_known.unwrap_or_default();
    for key in &snapshot_keys {
        let Some((store, key, upto)) = idb::read_snapshot_key(key) else {
            console_error("ignoring a snapshot row with an unexpected key", &format!("{key:?}"));
            continue;
        };
        let doc = DocId::from_encoded_key(&StoreRef::new(db_name, store.as_str()), &key);
        known.set_snapshot(doc, &store, key, upto);
    }
    for (seg, row) in &registry_rows {
        let (Some(seg), Some((store, data))) = (seg.as_f64(), idb::read_row(row)) else {
            console_error("ignoring a registry row of unexpected shape", &format!("{seg:?}"));
            continue;
        };
        match pack::decode_registry(&data) {
            Ok(docs) => {
                if let Some(added) = added.as_mut() {
                    added.extend(docs.iter().map(|(d, _)| *d));
                }
                known.add_segment(seg as u64, &store, docs.into_iter().map(|(d, k)| (d, k.to_vec())));
            }
            Err(e) => console_error(&format!("registry row {seg} does not decode"), &e.to_string()),
        }
    }
    let acked: HashMap<u64, BTreeSet<u32>> = ack_rows
        .iter()
        .filter_map(|(seg, row)| Some((seg.as_f64()? as u64, pack::decode_acks(&idb::to_bytes(row)?).ok()?.into_iter().collect())))
        .collect();
    let mut rows = match (base_rows, &outbox_keys) {
        (Some(mut rows), Some(stored)) => {
            rows.reconcile(stored, &acked);
            rows
        }
        _ => OutboxRows::default(),
    };
    let mut pending = Vec::new();
    for (seg, row) in &outbox_rows {
        let (Some(seg), Some((store, data))) = (seg.as_f64().map(|s| s as u64), idb::read_row(row)) else { continue };
        known.observe_segment(seg);
        let entries = match pack::decode_pending(&data) {
            Ok(entries) => entries,
            Err(e) => {
                console_error(&format!("outbox row {seg} does not decode; its changes stay local"), &e.to_string());
                continue;
            }
        };
        let done = acked.get(&seg).cloned().unwrap_or_default();
        rows.add(seg, entries.iter().map(|e| e.idx), done.iter().copied());
        let waiting = entries
            .into_iter()
            .filter(|e| !done.contains(&e.idx))
            .map(|e| (e.idx, e.doc, e.key.to_vec(), e.change.to_vec()))
            .collect();
        pending.push((seg, store, waiting));
    }
    Ok(Indexes { generation, compactions, added, actor, peer, known, outbox: rows, pending, cursors })
}

/// A sync engine holding the stores' subscriptions (from `cursors`) and every unacknowledged
/// outbox entry of `pending`.
pub fn engine(config: &ClientConfig, db_name: &str, stores: &[StoreSpec], cursors: &HashMap<String, Option<Cursor>>, pending: Vec<PendingRow>) -> ClientEngine {
    let mut engine = ClientEngine::new(config.clone());
    for store in stores {
        let since = cursors.get(&store.name).copied().flatten();
        engine.subscribe(StoreRef::new(db_name, store.name.as_str()), since);
    }
    enqueue(&mut engine, db_name, pending);
    engine
}

/// Hands outbox entries to the engine.
pub fn enqueue(engine: &mut ClientEngine, db_name: &str, pending: Vec<PendingRow>) {
    for (seg, store, entries) in pending {
        let store_ref = StoreRef::new(db_name, store.as_str());
        for (idx, doc, key, change) in entries {
            engine.enqueue(outbox_id(seg, idx), store_ref.clone(), doc, key, change);
        }
    }
}

pub async fn open(options: &OpenOptions) -> Result<State, Error> {
    let db = schema::open(&options.local_name, &options.stores).await?;
    let connection: web_sys::IdbDatabase = db.as_sys().clone().unchecked_into();
    let on_version_change = Closure::<dyn FnMut()>::new(move || {
        web_sys::console::warn_1(&"tidepool: another connection is upgrading or deleting this database; closing".into());
        connection.close();
    });
    let sys: &web_sys::IdbDatabase = db.as_sys().unchecked_ref();
    sys.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
    // Other tabs of this database write while they run; holding the write lock makes what is
    // read here one consistent state, and makes a new database get one identity, not one per tab.
    let _write = lock::acquire(&tabs::write_lock_name(&options.local_name), true, None).await?;
    let indexes = read_indexes(&db, &options.name, &options.stores, None).await?;
    let mut generation = indexes.generation;

    let (actor, peer) = match (&indexes.actor, &indexes.peer) {
        (Some(a), Some(p)) if a.len() == 16 && p.len() == 16 => {
            let mut peer = [0u8; 16];
            peer.copy_from_slice(p);
            (ActorId::from(a.as_slice()), peer)
        }
        _ => {
            // A new database (or one whose identity was lost): a new actor and peer, as the
            // protocol requires of a peer that lost its storage.
            let (actor, peer) = (global::random_id()?, global::random_id()?);
            let tx = tx::write(&db, &[META])?;
            let meta = tx.object_store(META)?;
            meta.put(idb::bytes(&actor)).with_key(JsValue::from_str(ACTOR)).primitive()?;
            meta.put(idb::bytes(&peer)).with_key(JsValue::from_str(PEER)).primitive()?;
            meta.put(JsValue::from(LAYOUT_VERSION)).with_key(JsValue::from_str(LAYOUT)).primitive()?;
            stamp(&tx, generation + 1)?;
            tx::commit(tx).await?;
            generation += 1;
            (ActorId::from(&actor[..]), peer)
        }
    };

    let mut config = ClientConfig::new(PeerId(peer), options.token.clone());
    config.agent = concat!("tidepool-wasm/", env!("CARGO_PKG_VERSION")).into();
    let Indexes { known, outbox, pending, cursors, compactions, .. } = indexes;
    let engine = engine(&config, &options.name, &options.stores, &cursors, pending);
    Ok(State {
        db,
        db_name: options.name.clone(),
        stores: options.stores.clone(),
        actor,
        config,
        engine,
        known,
        cache: Cache::new(super::CACHE_CAPACITY),
        outbox,
        cursors,
        generation,
        compactions,
        _on_version_change: on_version_change,
    })
}

/// Writes the generation a write transaction commits, so other tabs see that they must reread
/// the indexes (`client::refresh`). Every readwrite transaction on Tidepool's stores calls it.
pub fn stamp(tx: &indexed_db_futures::transaction::Transaction<'_>, generation: u64) -> Result<(), Error> {
    tx.object_store(META)?.put(JsValue::from_f64(generation as f64)).with_key(JsValue::from_str(GENERATION)).primitive()?;
    Ok(())
}

/// `_tp_meta`'s write and compaction counters as stored now.
pub async fn stored_generation(db: &Database) -> Result<(u64, u64), Error> {
    let tx = tx::read(db, &[META])?;
    let meta = tx.object_store(META)?;
    let generation = meta.get::<JsValue, JsValue, _>(JsValue::from_str(GENERATION)).primitive()?;
    let compactions = meta.get::<JsValue, JsValue, _>(JsValue::from_str(COMPACTIONS)).primitive()?;
    let number = |v: Option<JsValue>| v.and_then(|g| g.as_f64()).map_or(0, |g| g as u64);
    Ok((number(generation.await?), number(compactions.await?)))
}

/// Bumps the compaction counter in a transaction that replaces snapshots or deletes segments,
/// which makes other tabs reread their indexes whole.
pub fn stamp_compaction(tx: &indexed_db_futures::transaction::Transaction<'_>, compactions: u64) -> Result<(), Error> {
    tx.object_store(META)?.put(JsValue::from_f64(compactions as f64)).with_key(JsValue::from_str(COMPACTIONS)).primitive()?;
    Ok(())
}
