//! The client's documents: every record of every subscribed store, in memory, as core's engine
//! applies frames to them.

use std::collections::{BTreeMap, HashMap};

use tidepool_core::automerge::ActorId;
use tidepool_core::sync::ClientDocs;
use tidepool_core::wire::Payload;
use tidepool_core::{DocId, Record, RecordError, StoreRef};

/// Every record of every subscribed store, by document id.
#[derive(Debug)]
pub(crate) struct Docs {
    pub(crate) actor: ActorId,
    pub(crate) stores: HashMap<StoreRef, BTreeMap<DocId, Record>>,
}

impl Docs {
    pub(crate) fn new(actor: ActorId) -> Docs {
        Docs { actor, stores: HashMap::new() }
    }

    pub(crate) fn get(&self, store: &StoreRef, doc: &DocId) -> Option<&Record> {
        self.stores.get(store)?.get(doc)
    }
}

impl ClientDocs for Docs {
    fn apply(&mut self, store: &StoreRef, doc: DocId, key: &[u8], payload: &Payload) -> Result<bool, RecordError> {
        let docs = self.stores.entry(store.clone()).or_default();
        if let Some(record) = docs.get_mut(&doc) {
            return record.apply(payload);
        }
        let record = Record::load(store, key.to_vec(), payload, &self.actor)?;
        docs.insert(doc, record);
        Ok(true)
    }

    fn record(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<&mut Record, RecordError> {
        let docs = self.stores.entry(store.clone()).or_default();
        Ok(docs.entry(doc).or_insert_with(|| Record::with_encoded_key(store, key.to_vec(), &self.actor)))
    }

    fn list(&mut self, store: &StoreRef) -> Vec<(DocId, Vec<u8>)> {
        let Some(docs) = self.stores.get(store) else { return vec![] };
        docs.iter().map(|(id, r)| (*id, r.encoded_key().to_vec())).collect()
    }
}
