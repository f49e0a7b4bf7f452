//! The engine's view of the documents during one frame: the in-memory cache, plus a note of what
//! each touched document looked like before, so the shell can persist exactly what changed and
//! tell the app where a change came from.
//!
//! The engine's document trait is synchronous while IndexedDB is not, so the shell loads every
//! document a frame names before handing the frame over; this adapter never reads storage.

use std::collections::HashMap;

use tidepool_core::automerge::{ActorId, ChangeHash, ObjId, ROOT, ReadDoc};
use tidepool_core::sync::ClientDocs;
use tidepool_core::wire::Payload;
use tidepool_core::{DocId, Record, RecordError, StoreRef};

use crate::docs::cache::Cache;
use crate::docs::known::Known;

/// A touched document's state before the frame.
#[derive(Debug, Default)]
pub struct Before {
    /// `None` for a document this client did not have.
    pub heads: Option<Vec<ChangeHash>>,
    /// The saved document that created it, when that was all that happened: stored as it came
    /// instead of re-encoding the same bytes.
    pub created_from: Option<Vec<u8>>,
    pub provenance: Vec<(String, ObjId)>,
}

/// Which analytics runs wrote which fields: entries of the `prov` map (record layout v1, see
/// ARCHITECTURE.md). A write-back replaces entries, so a changed fingerprint means analytics.
pub fn provenance(record: &Record) -> Vec<(String, ObjId)> {
    let doc = record.doc();
    let Ok(Some((_, prov))) = doc.get(ROOT, "prov") else { return Vec::new() };
    doc.keys(&prov).filter_map(|k| doc.get(&prov, k.as_str()).ok().flatten().map(|(_, id)| (k, id))).collect()
}

#[derive(Debug)]
pub struct EngineDocs<'a> {
    pub cache: &'a mut Cache,
    pub known: &'a Known,
    pub actor: &'a ActorId,
    pub touched: HashMap<DocId, Before>,
    /// Documents the engine asked for that were stored but not loaded: a shell bug, reported.
    pub unloaded: Vec<DocId>,
}

impl<'a> EngineDocs<'a> {
    pub fn new(cache: &'a mut Cache, known: &'a Known, actor: &'a ActorId) -> Self {
        EngineDocs { cache, known, actor, touched: HashMap::new(), unloaded: Vec::new() }
    }

    fn note(&mut self, doc: DocId) {
        if self.touched.contains_key(&doc) {
            return;
        }
        let before = match self.cache.get_mut(&doc) {
            Some(record) => Before { heads: Some(record.heads()), created_from: None, provenance: provenance(record) },
            None => Before::default(),
        };
        self.touched.insert(doc, before);
    }

    // The error type is the engine's trait's, core's `RecordError`.
    #[allow(clippy::result_large_err)]
    fn check_loaded(&mut self, doc: DocId) -> Result<(), RecordError> {
        if self.known.contains(&doc) && !self.cache.contains(&doc) {
            self.unloaded.push(doc);
            return Err(RecordError::CorruptChange("document was not loaded before the frame".into()));
        }
        Ok(())
    }
}

impl ClientDocs for EngineDocs<'_> {
    fn apply(&mut self, store: &StoreRef, doc: DocId, key: &[u8], payload: &Payload) -> Result<bool, RecordError> {
        self.check_loaded(doc)?;
        let fresh = !self.touched.contains_key(&doc) && !self.cache.contains(&doc);
        self.note(doc);
        if let Some(record) = self.cache.get_mut(&doc) {
            let changed = record.apply(payload)?;
            if changed && let Some(before) = self.touched.get_mut(&doc) {
                before.created_from = None;
            }
            return Ok(changed);
        }
        let record = Record::load(store, key.to_vec(), payload, self.actor)?;
        self.cache.insert(doc, record);
        if let (true, Payload::Document(bytes), Some(before)) = (fresh, payload, self.touched.get_mut(&doc)) {
            before.created_from = Some(bytes.clone());
        }
        Ok(true)
    }

    fn record(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<&mut Record, RecordError> {
        self.check_loaded(doc)?;
        self.note(doc);
        if let Some(before) = self.touched.get_mut(&doc) {
            // The sync protocol may change it in ways the saved bytes do not cover.
            before.created_from = None;
        }
        if !self.cache.contains(&doc) {
            let record = Record::with_encoded_key(store, key.to_vec(), self.actor);
            return Ok(self.cache.insert(doc, record));
        }
        self.cache.get_mut(&doc).ok_or(RecordError::NotFound)
    }

    fn list(&mut self, store: &StoreRef) -> Vec<(DocId, Vec<u8>)> {
        let mut docs = self.known.docs_of(&store.store);
        for (doc, before) in &self.touched {
            if before.heads.is_none()
                && !self.known.contains(doc)
                && let Some(record) = self.cache.get_mut(doc)
            {
                let key = record.encoded_key().to_vec();
                // Ids derive from (store, key): this is how a record tells its store.
                if DocId::from_encoded_key(store, &key) == *doc {
                    docs.push((*doc, key));
                }
            }
        }
        docs
    }
}
