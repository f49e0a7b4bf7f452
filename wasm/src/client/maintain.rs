//! Keeping storage healthy: compaction of segments into snapshots, and quarantine of documents
//! whose stored bytes are corrupt.
//!
//! Compaction: a document loads from its snapshot plus every later segment holding it, so
//! segments pile up with each write. Compaction saves snapshots of the documents of the oldest
//! segments and deletes a segment once every document in it has a snapshot covering it.
//!
//! Quarantine: a document that does not load is never dropped silently. Its bytes are copied to
//! `_tp_quarantine`, it is rebuilt from this client's own unacknowledged changes (the outbox has
//! them), and the store is resubscribed from scratch so the hub sends every document again and
//! the hub's copy merges back in.

use indexed_db_futures::prelude::*;
use js_sys::{Object, Reflect};
use tidepool_core::wire::Payload;
use tidepool_core::{DocId, Record};
use wasm_bindgen::JsValue;

use crate::client::open::{stamp, stamp_compaction};
use crate::client::{State, cursor_key};
use crate::docs::load::Corruption;
use crate::docs::pack;
use crate::error::Error;
use crate::idb::{self, ACKS, META, OUTBOX, QUARANTINE, REGISTRY, SEGMENTS, SNAPSHOTS, tx};
use crate::js::global;

/// Compacts at most `budget` documents; returns whether segments remain to compact.
pub async fn compact(state: &mut State, budget: usize) -> Result<bool, Error> {
    let mut docs: Vec<DocId> = Vec::new();
    let mut done_segments = Vec::new();
    let mut left_over = false;
    for seg in state.known.segment_numbers() {
        if state.known.covered(seg) {
            done_segments.push(seg);
            continue;
        }
        if docs.len() >= budget {
            left_over = true;
            break;
        }
        let segment = state.known.segment(seg).map(|s| s.docs.clone()).unwrap_or_default();
        let uncovered: Vec<DocId> = segment
            .into_iter()
            .filter(|d| state.known.get(d).and_then(|s| s.snapshot).is_none_or(|upto| upto < seg) && !docs.contains(d))
            .collect();
        let room = budget - docs.len();
        if uncovered.len() <= room {
            done_segments.push(seg);
        } else {
            left_over = true;
        }
        docs.extend(uncovered.into_iter().take(room));
    }
    if docs.is_empty() && done_segments.is_empty() {
        return Ok(false);
    }
    // Quarantined documents come back rebuilt with a snapshot of their own; nothing to do here.
    state.ensure_loaded(&docs).await?;
    let upto = state.known.last_segment();
    let tx = tx::write(&state.db, &[SNAPSHOTS, SEGMENTS, REGISTRY, META])?;
    let snapshots = tx.object_store(SNAPSHOTS)?;
    let mut saved = Vec::with_capacity(docs.len());
    for doc in &docs {
        let (Some(stored), Some(record)) = (state.known.get(doc).cloned(), state.cache.get_mut(doc)) else { continue };
        drop(snapshots.delete(idb::snapshot_range(&stored.store, &stored.key).map_err(|e| crate::error::from_dom(&e))?).primitive()?);
        snapshots.put(idb::bytes(&record.save())).with_key(idb::snapshot_key(&stored.store, &stored.key, upto)).primitive()?;
        saved.push((*doc, stored));
    }
    let segments = tx.object_store(SEGMENTS)?;
    let registry = tx.object_store(REGISTRY)?;
    for seg in &done_segments {
        drop(segments.delete(JsValue::from_f64(*seg as f64)).primitive()?);
        drop(registry.delete(JsValue::from_f64(*seg as f64)).primitive()?);
    }
    stamp(&tx, state.generation + 1)?;
    stamp_compaction(&tx, state.compactions + 1)?;
    tx::commit(tx).await?;
    state.generation += 1;
    state.compactions += 1;
    for (doc, stored) in saved {
        state.known.set_snapshot(doc, &stored.store, stored.key, upto);
    }
    for seg in done_segments {
        state.known.remove_segment(seg);
    }
    state.cache.trim();
    Ok(left_over)
}

/// This client's unacknowledged changes to `doc`, read back from the outbox rows.
async fn pending_changes(state: &State, doc: DocId) -> Result<Vec<Vec<u8>>, Error> {
    let tx = tx::read(&state.db, &[OUTBOX, ACKS])?;
    let outbox = tx.object_store(OUTBOX)?;
    let acks = tx.object_store(ACKS)?;
    let keys = outbox.get_all_keys::<JsValue>().primitive()?;
    let rows = outbox.get_all::<JsValue>().primitive()?;
    let ack_keys = acks.get_all_keys::<JsValue>().primitive()?;
    let ack_rows = acks.get_all::<JsValue>().primitive()?;
    let keys: Vec<JsValue> = keys.await?.collect::<Result<_, _>>()?;
    let rows: Vec<JsValue> = rows.await?.collect::<Result<_, _>>()?;
    let ack_keys: Vec<JsValue> = ack_keys.await?.collect::<Result<_, _>>()?;
    let ack_rows: Vec<JsValue> = ack_rows.await?.collect::<Result<_, _>>()?;
    let mut changes = Vec::new();
    for (key, row) in keys.iter().zip(&rows) {
        let Some((_, data)) = idb::read_row(row) else { continue };
        let acked: Vec<u32> = ack_keys
            .iter()
            .position(|k| k.as_f64() == key.as_f64())
            .and_then(|i| idb::to_bytes(&ack_rows[i]))
            .and_then(|b| pack::decode_acks(&b).ok())
            .unwrap_or_default();
        let Ok(entries) = pack::decode_pending(&data) else { continue };
        changes.extend(entries.into_iter().filter(|e| e.doc == doc && !acked.contains(&e.idx)).map(|e| e.change.to_vec()));
    }
    Ok(changes)
}

pub async fn quarantine(state: &mut State, doc: DocId, corruption: Corruption) -> Result<(), Error> {
    web_sys::console::error_1(
        &format!("tidepool: document {doc} of store {:?} is corrupt ({}); quarantined, fetching it again", corruption.store, corruption.reason).into(),
    );
    let store_ref = state.store_ref(&corruption.store);
    let mut record = Record::with_encoded_key(&store_ref, corruption.key.clone(), &state.actor);
    let changes = pending_changes(state, doc).await?;
    if !changes.is_empty() {
        // Parsed as a whole before anything applies: if even these are damaged, the record stays
        // empty until the hub's copy arrives.
        let _ = record.apply(&Payload::Changes(changes));
    }
    let upto = state.known.last_segment();
    let entry = Object::new();
    let set = |k: &str, v: JsValue| {
        let _ = Reflect::set(&entry, &k.into(), &v);
    };
    set("store", corruption.store.as_str().into());
    set("key", js_sys::Uint8Array::from(corruption.key.as_slice()).buffer().into());
    set("doc", doc.to_hex().into());
    set("reason", corruption.reason.as_str().into());
    set("at", global::now_ms().into());
    set("snapshot", corruption.snapshot.as_deref().map_or(JsValue::NULL, idb::bytes));
    set("chunks", idb::bytes(&corruption.chunks));
    let tx = tx::write(&state.db, &[QUARANTINE, SNAPSHOTS, META])?;
    tx.object_store(QUARANTINE)?.add(JsValue::from(entry)).primitive()?;
    let snapshots = tx.object_store(SNAPSHOTS)?;
    let range = idb::snapshot_range(&corruption.store, &corruption.key).map_err(|e| crate::error::from_dom(&e))?;
    drop(snapshots.delete(range).primitive()?);
    snapshots.put(idb::bytes(&record.save())).with_key(idb::snapshot_key(&corruption.store, &corruption.key, upto)).primitive()?;
    drop(tx.object_store(META)?.delete(JsValue::from_str(&cursor_key(&corruption.store))).primitive()?);
    stamp(&tx, state.generation + 1)?;
    stamp_compaction(&tx, state.compactions + 1)?;
    tx::commit(tx).await?;
    state.generation += 1;
    state.compactions += 1;
    state.known.set_snapshot(doc, &corruption.store, corruption.key, upto);
    state.cache.insert(doc, record);
    state.cursors.insert(corruption.store, None);
    state.engine.subscribe(store_ref, None);
    Ok(())
}
