//! Frames from the hub: load what they touch, let the engine apply them, then persist every
//! document it changed (chunks and plain value together), acknowledgements and cursors in one
//! transaction, and report what changed and where it came from.
//!
//! [`settle`] is also how the shell handles engine output that no frame caused (an outbox entry
//! the engine refuses on enqueue is reported as acknowledged plus an error): every engine event,
//! whatever triggered it, is persisted the same way.

use std::collections::{BTreeMap, HashMap, HashSet};

use indexed_db_futures::prelude::*;
use tidepool_core::DocId;
use tidepool_core::sync::{ClientEvent, OutboxId};
use tidepool_core::wire::{Cursor, ErrorCode};
use wasm_bindgen::JsValue;

use crate::client::open::stamp;
use crate::client::outbox::AckWrite;
use crate::client::{State, cursor_key, encode_cursor};
use crate::docs::adapter::{Before, EngineDocs, provenance};
use crate::docs::pack::{self, Chunk, ChunkKind};
use crate::error::Error;
use crate::events::{Origin, Written};
use crate::idb::{self, ACKS, META, OUTBOX, REGISTRY, SEGMENTS, tx};
use crate::js::{key as js_key, value as js_value};

/// What handling a frame produced.
#[derive(Debug, Default)]
pub struct Received {
    pub frames: Vec<Vec<u8>>,
    /// Per store and origin, the records that changed.
    pub changes: Vec<(String, Origin, Vec<Written>)>,
    pub hub_errors: Vec<(ErrorCode, String)>,
}

/// One document the frame changed, ready to persist.
struct Changed {
    doc: DocId,
    key: Vec<u8>,
    chunks: Vec<(ChunkKind, Vec<u8>)>,
    written: Written,
    origin: Origin,
}

pub async fn receive(state: &mut State, frame: &[u8]) -> Result<Received, Error> {
    // Decoded once: the engine says which documents the frame needs, they are loaded, then the
    // engine takes the decoded frame.
    let incoming = match state.engine.decode(frame) {
        Ok(incoming) => Some(incoming),
        Err(e) => {
            web_sys::console::warn_1(&format!("tidepool: a frame from the hub was refused: {e}").into());
            None
        }
    };
    let Some(incoming) = incoming else { return settle(state, &HashMap::new()).await };
    let mut docs = incoming.doc_ids();
    if let Some(store) = incoming.compares_store() {
        // Repair compares every document of the store, listed or not.
        docs.extend(state.known.docs_of(&store.store).into_iter().map(|(d, _)| d));
    }
    state.ensure_loaded(&docs).await?;

    let mut adapter = EngineDocs::new(&mut state.cache, &state.known, &state.actor);
    let result = state.engine.receive_decoded(incoming, &mut adapter);
    let EngineDocs { touched, unloaded, .. } = adapter;
    if let Err(e) = &result {
        web_sys::console::warn_1(&format!("tidepool: a frame from the hub was refused: {e}").into());
    }
    if !unloaded.is_empty() {
        web_sys::console::error_1(&format!("tidepool: {} documents were not loaded before a frame", unloaded.len()).into());
    }
    settle(state, &touched).await
}

/// Takes the engine's output and persists what its events say. `touched` describes the documents
/// the engine changed (empty when no frame was applied).
pub async fn settle(state: &mut State, touched: &HashMap<DocId, Before>) -> Result<Received, Error> {
    let output = state.engine.take_output();

    let mut changed: BTreeMap<String, Vec<Changed>> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut acked: Vec<OutboxId> = Vec::new();
    let mut cursors: BTreeMap<String, Cursor> = BTreeMap::new();
    let mut received = Received { frames: output.frames, ..Default::default() };
    for event in output.events {
        match event {
            ClientEvent::RemoteChanged { store, doc, key } => {
                if state.check_store(&store.store).is_err() || !seen.insert(doc) {
                    continue;
                }
                let before = touched.get(&doc);
                if let Some(c) = describe(state, doc, key, before)? {
                    changed.entry(store.store).or_default().push(c);
                }
            }
            ClientEvent::Acked { ids } => acked.extend(ids),
            ClientEvent::Cursor { store, cursor } => {
                cursors.insert(store.store, cursor);
            }
            // The browser client asks for neither exports nor fetches.
            ClientEvent::Synced { .. } | ClientEvent::ExportPage { .. } | ClientEvent::Fetched { .. } | ClientEvent::Moved { .. } => {}
            ClientEvent::HubError { code, detail } => received.hub_errors.push((code, detail)),
        }
    }

    let ack_writes = state.outbox.ack(&acked);
    if changed.is_empty() && ack_writes.is_empty() && cursors.is_empty() {
        return Ok(received);
    }
    let segments: Vec<(String, u64)> = changed.keys().map(|s| (s.clone(), state.known.allocate_segment())).collect();
    if let Err(e) = persist(state, &changed, &segments, &ack_writes, &cursors).await {
        state.evict(touched.keys().copied());
        return Err(e);
    }
    state.generation += 1;
    for (store, segment) in &segments {
        let docs = changed[store].iter().filter(|c| !c.chunks.is_empty()).map(|c| (c.doc, c.key.clone()));
        state.known.add_segment(*segment, store, docs);
    }
    for (store, cursor) in cursors {
        state.cursors.insert(store, Some(cursor));
    }
    for (store, docs) in changed {
        let mut by_origin: BTreeMap<&'static str, (Origin, Vec<Written>)> = BTreeMap::new();
        for c in docs {
            by_origin.entry(c.origin.as_str()).or_insert_with(|| (c.origin, Vec::new())).1.push(c.written);
        }
        for (_, (origin, written)) in by_origin {
            received.changes.push((store.clone(), origin, written));
        }
    }
    state.cache.trim();
    Ok(received)
}

/// What to store and report for one changed document.
fn describe(state: &mut State, doc: DocId, key: Vec<u8>, before: Option<&Before>) -> Result<Option<Changed>, Error> {
    let Some(record) = state.cache.get_mut(&doc) else { return Ok(None) };
    let chunks = match before.and_then(|b| b.created_from.clone()) {
        Some(saved) => vec![(ChunkKind::Document, saved)],
        None => {
            let heads = before.and_then(|b| b.heads.clone()).unwrap_or_default();
            record.changes_since(&heads).into_iter().map(|c| (ChunkKind::Change, c)).collect()
        }
    };
    let prov_before = before.map(|b| b.provenance.as_slice()).unwrap_or_default();
    let origin = if provenance(record) != prov_before { Origin::Analytics } else { Origin::Remote };
    let value = record.get_plain()?.map(|v| js_value::to_js(&v));
    let written = Written { key: js_key::encoded_to_js(&key)?, value };
    Ok(Some(Changed { doc, key, chunks, written, origin }))
}

async fn persist(
    state: &State,
    changed: &BTreeMap<String, Vec<Changed>>,
    segments: &[(String, u64)],
    ack_writes: &[AckWrite],
    cursors: &BTreeMap<String, Cursor>,
) -> Result<(), Error> {
    let mut stores: Vec<&str> = changed.keys().map(String::as_str).collect();
    stores.extend([SEGMENTS, REGISTRY, OUTBOX, ACKS, META]);
    let tx = tx::write(&state.db, &stores)?;
    for (store, segment) in segments {
        let docs = &changed[store];
        let plain = tx.object_store(store)?;
        for c in docs {
            match &c.written.value {
                Some(value) => drop(plain.put(value.clone()).with_key(c.written.key.clone()).primitive()?),
                None => drop(plain.delete(c.written.key.clone()).primitive()?),
            }
        }
        let with_chunks: Vec<&Changed> = docs.iter().filter(|c| !c.chunks.is_empty()).collect();
        let chunks = pack::encode_chunks(with_chunks.iter().flat_map(|c| {
            c.chunks.iter().map(|(kind, bytes)| Chunk { doc: c.doc, key: &c.key, kind: *kind, bytes })
        }));
        let registry = pack::encode_registry(with_chunks.iter().map(|c| (c.doc, c.key.as_slice())));
        let id = JsValue::from_f64(*segment as f64);
        tx.object_store(SEGMENTS)?.put(idb::row(store, &chunks)).with_key(id.clone()).primitive()?;
        tx.object_store(REGISTRY)?.put(idb::row(store, &registry)).with_key(id).primitive()?;
    }
    let outbox = tx.object_store(OUTBOX)?;
    let acks = tx.object_store(ACKS)?;
    for write in ack_writes {
        match write {
            AckWrite::Delete(segment) => {
                let id = JsValue::from_f64(*segment as f64);
                drop(outbox.delete(id.clone()).primitive()?);
                drop(acks.delete(id).primitive()?);
            }
            AckWrite::Acked(segment, idx) => {
                acks.put(idb::bytes(&pack::encode_acks(idx.iter().copied()))).with_key(JsValue::from_f64(*segment as f64)).primitive()?;
            }
        }
    }
    let meta = tx.object_store(META)?;
    for (store, cursor) in cursors {
        meta.put(idb::bytes(&encode_cursor(cursor))).with_key(JsValue::from_str(&cursor_key(store))).primitive()?;
    }
    stamp(&tx, state.generation + 1)?;
    tx::commit(tx).await
}
