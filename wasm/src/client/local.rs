//! Local writes: edit the documents, then write plain values, document chunks and outbox entries
//! in one IndexedDB transaction.
//!
//! Nothing reaches the sync engine before that transaction commits, and a failed transaction
//! evicts the edited documents from memory, so memory, storage and the hub never disagree about
//! a write that did not happen. A bulk write is one transaction and one row in each internal
//! store, however many records it touches. A put that creates a record this database has never
//! held builds its change straight from the value (`core::first_put`) and keeps no document in
//! memory: that is what lets `bulkPut` of new records run near raw IndexedDB speed.

use std::collections::HashSet;

use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::Transaction;
use tidepool_core::first_put::first_put;
use tidepool_core::{DocId, Key, LocalChange, Patch, PathSegment, Record, Value};
use wasm_bindgen::JsValue;

use crate::client::State;
use crate::client::outbox::{MAX_ENTRIES, outbox_id};
use crate::docs::pack::{self, Chunk, ChunkKind, Pending};
use crate::error::Error;
use crate::events::Written;
use crate::client::open::stamp;
use crate::idb::{self, META, OUTBOX, REGISTRY, SEGMENTS, tx};
use crate::js::{global, key as js_key, value as js_value};

/// One edit of one record.
#[derive(Debug, Clone)]
pub enum Edit {
    Put(Value),
    /// Changes only the named fields, on top of the document's current state.
    Update(Patch),
    Delete,
    Increment { path: Vec<PathSegment>, delta: i64 },
    Splice { path: Vec<PathSegment>, index: usize, delete: usize, text: String },
}

struct Target {
    doc: DocId,
    encoded: Vec<u8>,
    js_key: JsValue,
}

/// Applies the edits to `store` atomically; returns what to tell listeners.
pub async fn write(state: &mut State, store: &str, edits: Vec<(Key, Edit)>) -> Result<Vec<Written>, Error> {
    state.check_store(store)?;
    if edits.len() > MAX_ENTRIES {
        return Err(Error::BadValue(format!("one write may change at most {MAX_ENTRIES} records")));
    }
    let store_ref = state.store_ref(store);
    let mut targets = Vec::with_capacity(edits.len());
    for (key, _) in &edits {
        let encoded = key.encode()?;
        let doc = DocId::from_encoded_key(&store_ref, &encoded);
        targets.push(Target { doc, encoded, js_key: js_key::to_js(key) });
    }
    let docs: Vec<DocId> = targets.iter().map(|t| t.doc).collect();
    let corrupt = state.ensure_loaded(&docs).await?;
    if let Some(bad) = corrupt.first() {
        return Err(Error::CorruptDocument(format!("document {bad}")));
    }

    let time = global::now_seconds();
    // The transaction opens before the edits, so the browser stores each plain value while the
    // next record's change is computed: IndexedDB's work overlaps with Automerge's.
    let tx = tx::write(&state.db, &[store, SEGMENTS, REGISTRY, OUTBOX, META])?;
    let plain = tx.object_store(store)?;
    let mut changes: Vec<(usize, LocalChange)> = Vec::new();
    let mut written = Vec::with_capacity(edits.len());
    let mut touched: HashSet<DocId> = HashSet::new();
    let mut seen = HashSet::new();
    let repeated: HashSet<DocId> = targets.iter().filter(|t| !seen.insert(t.doc)).map(|t| t.doc).collect();
    let mut failure = None;
    for (i, ((_, edit), target)) in edits.into_iter().zip(&targets).enumerate() {
        touched.insert(target.doc);
        let new_record = !state.cache.contains(&target.doc) && !state.known.contains(&target.doc) && !repeated.contains(&target.doc);
        let outcome = match edit {
            // A record this database has never held: its change is built straight from the
            // value, and its document is loaded from storage when it is next needed.
            Edit::Put(value) if new_record => first_put(&state.actor, &value, time)
                .map(|change| (Some(change), Some(js_value::to_js(&value))))
                .map_err(Error::from),
            // Nothing to merge with: the record becomes the patch's object, as `Record::update`
            // makes a record that does not exist.
            Edit::Update(patch) if new_record => {
                let value = patch.to_value();
                first_put(&state.actor, &value, time).map(|change| (Some(change), Some(js_value::to_js(&value)))).map_err(Error::from)
            }
            edit => {
                let record = match state.cache.get_mut(&target.doc) {
                    Some(record) => record,
                    None => state.cache.insert(target.doc, Record::with_encoded_key(&store_ref, target.encoded.clone(), &state.actor)),
                };
                apply(record, edit, time)
            }
        };
        let outcome = outcome.and_then(|(change, value)| {
            match &value {
                Some(value) => drop(plain.put(value.clone()).with_key(target.js_key.clone()).primitive()?),
                None => drop(plain.delete(target.js_key.clone()).primitive()?),
            }
            Ok((change, value))
        });
        match outcome {
            Ok((change, value)) => {
                if let Some(change) = change {
                    changes.push((i, change));
                }
                written.push(Written { key: target.js_key.clone(), value });
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let segment = (failure.is_none() && !changes.is_empty()).then(|| state.known.allocate_segment());
    let staged = match (failure, segment) {
        (Some(e), _) => Err(e),
        (None, Some(segment)) => write_rows(&tx, store, &targets, &changes, segment),
        (None, None) => Ok(()),
    };
    let staged = staged.and_then(|()| stamp(&tx, state.generation + 1));
    let result = match staged {
        Ok(()) => tx::commit(tx).await,
        Err(e) => {
            // Dropping the transaction aborts it: nothing of this write is stored.
            drop(tx);
            Err(e)
        }
    };
    if let Err(e) = result {
        state.evict(touched);
        return Err(e);
    }
    state.generation += 1;

    if let Some(segment) = segment {
        let mut seen = HashSet::new();
        let docs = changes
            .iter()
            .map(|(i, _)| &targets[*i])
            .filter(|t| seen.insert(t.doc))
            .map(|t| (t.doc, t.encoded.clone()));
        state.known.add_segment(segment, store, docs);
        state.outbox.add(segment, 0..changes.len() as u32, []);
        for (idx, (i, change)) in changes.into_iter().enumerate() {
            let target = &targets[i];
            state.engine.enqueue(outbox_id(segment, idx as u32), store_ref.clone(), target.doc, target.encoded.clone(), change.bytes);
        }
    }
    state.cache.trim();
    Ok(written)
}

/// Applies one edit; returns the change (none if it changed nothing) and the record's new plain
/// value (`None` once deleted).
fn apply(record: &mut Record, edit: Edit, time: i64) -> Result<(Option<LocalChange>, Option<JsValue>), Error> {
    Ok(match edit {
        Edit::Put(value) => {
            let change = record.put(&value, time)?;
            // After a put the document holds exactly this value, so its plain form is the value's
            // (`to_js` already renders text and counters as plain strings and numbers).
            (change, Some(js_value::to_js(&value)))
        }
        Edit::Update(patch) => {
            let change = record.update(&patch, time)?;
            (change, plain(record)?)
        }
        Edit::Delete => (record.delete(time)?, None),
        Edit::Increment { path, delta } => {
            let change = record.increment(&path, delta, time)?;
            (Some(change), plain(record)?)
        }
        Edit::Splice { path, index, delete, text } => {
            let change = record.splice_text(&path, index, delete, &text, time)?;
            (change, plain(record)?)
        }
    })
}

fn plain(record: &Record) -> Result<Option<JsValue>, Error> {
    Ok(record.get_plain()?.map(|v| js_value::to_js(&v)))
}

/// The segment, registry and outbox rows of one write.
fn write_rows(tx: &Transaction<'_>, store: &str, targets: &[Target], changes: &[(usize, LocalChange)], segment: u64) -> Result<(), Error> {
    let id = JsValue::from_f64(segment as f64);
    let chunks = pack::encode_chunks(changes.iter().map(|(i, c)| Chunk {
        doc: targets[*i].doc,
        key: &targets[*i].encoded,
        kind: ChunkKind::Change,
        bytes: &c.bytes,
    }));
    let mut seen = HashSet::new();
    let registry = pack::encode_registry(
        changes.iter().map(|(i, _)| &targets[*i]).filter(|t| seen.insert(t.doc)).map(|t| (t.doc, t.encoded.as_slice())),
    );
    let pending = pack::encode_pending(changes.iter().enumerate().map(|(idx, (i, c))| Pending {
        idx: idx as u32,
        doc: targets[*i].doc,
        key: &targets[*i].encoded,
        change: &c.bytes,
    }));
    tx.object_store(SEGMENTS)?.put(idb::row(store, &chunks)).with_key(id.clone()).primitive()?;
    tx.object_store(REGISTRY)?.put(idb::row(store, &registry)).with_key(id.clone()).primitive()?;
    tx.object_store(OUTBOX)?.put(idb::row(store, &pending)).with_key(id).primitive()?;
    Ok(())
}
