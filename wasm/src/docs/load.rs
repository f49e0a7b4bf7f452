//! Loading documents from IndexedDB into memory, detecting corruption instead of hiding it.
//!
//! One read transaction fetches the snapshot rows and the segment rows of every requested
//! document; a segment shared by many of them (a bulk write) is read and parsed once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use indexed_db_futures::database::Database;
use indexed_db_futures::prelude::*;
use tidepool_core::automerge::ActorId;
use tidepool_core::wire::Payload;
use tidepool_core::{DocId, Record, StoreRef};
use wasm_bindgen::JsValue;

use crate::docs::known::Known;
use crate::docs::pack::{self, ChunkKind};
use crate::error::Error;
use crate::idb::{self, SEGMENTS, SNAPSHOTS, tx};

/// A stored document that does not load, with its raw bytes so they can be quarantined.
#[derive(Debug)]
pub struct Corruption {
    pub store: String,
    pub key: Vec<u8>,
    pub reason: String,
    pub snapshot: Option<Vec<u8>>,
    /// The document's chunks, packed as in a segment row.
    pub chunks: Vec<u8>,
}

pub type Loaded = Vec<(DocId, Result<Record, Corruption>)>;

struct Parts {
    snapshot: Option<Vec<u8>>,
    chunks: Vec<(ChunkKind, Vec<u8>)>,
    problem: Option<String>,
}

/// Loads the given stored documents (unknown ids are skipped).
pub async fn load(db: &Database, db_name: &str, known: &Known, actor: &ActorId, docs: &[DocId]) -> Result<Loaded, Error> {
    let wanted: Vec<DocId> = docs.iter().copied().filter(|d| known.contains(d)).collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let tx = tx::read(db, &[SNAPSHOTS, SEGMENTS])?;
    let snapshots = tx.object_store(SNAPSHOTS)?;
    let segments = tx.object_store(SEGMENTS)?;
    // Every request is issued before the first await, so the browser works on all of them at once.
    let mut snapshot_requests = Vec::new();
    let mut segment_numbers = BTreeSet::new();
    for doc in &wanted {
        let Some(stored) = known.get(doc) else { continue };
        if let Some(upto) = stored.snapshot {
            let key = idb::snapshot_key(&stored.store, &stored.key, upto);
            snapshot_requests.push((*doc, snapshots.get::<JsValue, JsValue, _>(key).primitive()?));
        }
        segment_numbers.extend(stored.segments.iter().copied());
    }
    let mut segment_requests = Vec::new();
    for seg in &segment_numbers {
        segment_requests.push((*seg, segments.get::<JsValue, JsValue, _>(JsValue::from_f64(*seg as f64)).primitive()?));
    }
    let mut parts: HashMap<DocId, Parts> =
        wanted.iter().map(|d| (*d, Parts { snapshot: None, chunks: Vec::new(), problem: None })).collect();
    for (doc, request) in snapshot_requests {
        let part = parts.get_mut(&doc).ok_or_else(|| Error::Internal("snapshot for an unrequested document".into()))?;
        match request.await?.as_ref().and_then(idb::to_bytes) {
            Some(bytes) => part.snapshot = Some(bytes),
            None => part.problem = Some("its snapshot row is missing".into()),
        }
    }
    let mut rows: BTreeMap<u64, Option<Vec<u8>>> = BTreeMap::new();
    for (seg, request) in segment_requests {
        rows.insert(seg, request.await?.as_ref().and_then(idb::read_row).map(|(_, data)| data));
    }
    drop(tx);
    for (seg, row) in &rows {
        let Some(data) = row else {
            for doc in &wanted {
                if known.get(doc).is_some_and(|s| s.segments.contains(seg))
                    && let Some(p) = parts.get_mut(doc)
                {
                    p.problem = Some(format!("segment {seg} is missing"));
                }
            }
            continue;
        };
        match pack::decode_chunks(data) {
            Ok(chunks) => {
                for chunk in chunks {
                    if let Some(p) = parts.get_mut(&chunk.doc)
                        && known.get(&chunk.doc).is_some_and(|s| s.segments.contains(seg))
                    {
                        p.chunks.push((chunk.kind, chunk.bytes.to_vec()));
                    }
                }
            }
            Err(e) => {
                for doc in &wanted {
                    if known.get(doc).is_some_and(|s| s.segments.contains(seg))
                        && let Some(p) = parts.get_mut(doc)
                    {
                        p.problem = Some(format!("segment {seg} does not decode: {e}"));
                    }
                }
            }
        }
    }
    let mut out = Vec::with_capacity(wanted.len());
    for doc in wanted {
        let (Some(stored), Some(part)) = (known.get(&doc), parts.remove(&doc)) else { continue };
        let store = StoreRef::new(db_name, &*stored.store);
        out.push((doc, build(&store, &stored.key, actor, part)));
    }
    Ok(out)
}

fn build(store: &StoreRef, key: &[u8], actor: &ActorId, part: Parts) -> Result<Record, Corruption> {
    let corrupt = |reason: String, part: &Parts| Corruption {
        store: store.store.clone(),
        key: key.to_vec(),
        reason,
        snapshot: part.snapshot.clone(),
        chunks: pack::encode_chunks(part.chunks.iter().map(|(kind, bytes)| pack::Chunk {
            doc: DocId::from_encoded_key(store, key),
            key,
            kind: *kind,
            bytes,
        })),
    };
    if let Some(problem) = &part.problem {
        return Err(corrupt(problem.clone(), &part));
    }
    let mut record = match &part.snapshot {
        Some(bytes) => Record::load(store, key.to_vec(), &Payload::Document(bytes.clone()), actor)
            .map_err(|e| corrupt(format!("its snapshot does not load: {e}"), &part))?,
        None => Record::with_encoded_key(store, key.to_vec(), actor),
    };
    let mut changes = Vec::new();
    for (kind, bytes) in &part.chunks {
        match kind {
            ChunkKind::Change => changes.push(bytes.clone()),
            ChunkKind::Document => {
                record
                    .apply(&Payload::Document(bytes.clone()))
                    .map_err(|e| corrupt(format!("a saved chunk does not load: {e}"), &part))?;
            }
        }
    }
    if !changes.is_empty() {
        record.apply(&Payload::Changes(changes)).map_err(|e| corrupt(format!("a change does not load: {e}"), &part))?;
    }
    Ok(record)
}
