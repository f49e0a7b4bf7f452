//! The client's documents: every record of every subscribed store, in memory, as core's engine
//! applies frames to them.
//!
//! Remote changes are checked completely when they arrive ([`Verified::parse`]). They are merged
//! into the record's document then, or, with lazy merging ([`crate::ClientOptions::lazy_merge`]),
//! the next time the record is read, written or synced: a client that follows a large store and
//! touches few of its records pays for merging only the records it uses. Either way a read sees
//! every change that has arrived.

use std::collections::{BTreeMap, HashMap};

use tidepool_core::automerge::{ActorId, ChangeHash};
use tidepool_core::sync::ClientDocs;
use tidepool_core::wire::Payload;
use tidepool_core::{DocId, Record, RecordError, StoreRef, Verified};

/// Every record of every subscribed store, by document id.
#[derive(Debug)]
pub(crate) struct Docs {
    pub(crate) actor: ActorId,
    stores: HashMap<StoreRef, BTreeMap<DocId, Record>>,
    /// With lazy merging: checked changes not merged yet, per document (`None`: merge at once).
    queued: Option<HashMap<DocId, (StoreRef, Vec<Verified>)>>,
    /// The hashes of the changes that arrived in the frame being handled, per document; the
    /// change events take them, and the frame's end clears what is left.
    arrived: HashMap<DocId, Vec<ChangeHash>>,
}

impl Docs {
    pub(crate) fn new(actor: ActorId, lazy: bool) -> Docs {
        Docs { actor, stores: HashMap::new(), queued: lazy.then(HashMap::new), arrived: HashMap::new() }
    }

    pub(crate) fn is_lazy(&self) -> bool {
        self.queued.is_some()
    }

    /// The record as it stands with every change that has arrived.
    pub(crate) fn get(&mut self, store: &StoreRef, doc: &DocId) -> Result<Option<&Record>, RecordError> {
        self.merge(doc)?;
        Ok(self.stores.get(store).and_then(|docs| docs.get(doc)))
    }

    /// The record without merging anything queued (the value a change event reports when
    /// changes are merged at once).
    pub(crate) fn peek(&self, store: &StoreRef, doc: &DocId) -> Option<&Record> {
        self.stores.get(store)?.get(doc)
    }

    /// Every record of a store, with every change that has arrived. A queued change that
    /// Automerge refuses to merge (it was checked on arrival, so only a peer's contradictory
    /// history does that) is logged and dropped; [`Docs::get`] returns that error instead.
    pub(crate) fn all(&mut self, store: &StoreRef) -> impl Iterator<Item = &Record> {
        if let Some(queued) = &self.queued {
            let docs: Vec<DocId> = queued.iter().filter(|(_, (s, _))| s == store).map(|(d, _)| *d).collect();
            for doc in docs {
                if let Err(error) = self.merge(&doc) {
                    tracing::warn!(%doc, %error, "a queued remote change did not merge; dropped");
                }
            }
        }
        self.stores.get(store).into_iter().flat_map(BTreeMap::values)
    }

    /// The hashes of the changes to `doc` that arrived in the frame being handled.
    pub(crate) fn take_arrived(&mut self, doc: &DocId) -> Vec<ChangeHash> {
        self.arrived.remove(doc).unwrap_or_default()
    }

    /// Ends the handling of a frame.
    pub(crate) fn frame_done(&mut self) {
        self.arrived.clear();
    }

    /// Merges what is queued for `doc` into its record.
    fn merge(&mut self, doc: &DocId) -> Result<(), RecordError> {
        let Some((store, changes)) = self.queued.as_mut().and_then(|q| q.remove(doc)) else { return Ok(()) };
        let Some(record) = self.record_mut(&store, doc) else { return Ok(()) };
        for verified in changes {
            record.apply_verified(verified)?;
        }
        Ok(())
    }

    fn record_mut(&mut self, store: &StoreRef, doc: &DocId) -> Option<&mut Record> {
        self.stores.get_mut(store)?.get_mut(doc)
    }
}

impl ClientDocs for Docs {
    fn apply(&mut self, store: &StoreRef, doc: DocId, key: &[u8], payload: &Payload) -> Result<bool, RecordError> {
        let known = self.stores.get(store).is_some_and(|docs| docs.contains_key(&doc));
        if let Payload::Document(_) = payload {
            // A whole document (a download or a repair): loaded or merged at once, after
            // everything that came before it.
            if !known {
                let record = Record::load(store, key.to_vec(), payload, &self.actor)?;
                self.stores.entry(store.clone()).or_default().insert(doc, record);
                return Ok(true);
            }
            self.merge(&doc)?;
            return self.record_mut(store, &doc).map_or(Ok(false), |r| r.apply(payload));
        }
        let verified = Verified::parse(payload)?;
        self.arrived.entry(doc).or_default().extend(verified.hashes());
        if !known {
            let record = Record::with_encoded_key(store, key.to_vec(), &self.actor);
            self.stores.entry(store.clone()).or_default().insert(doc, record);
        }
        if let Some(queued) = &mut self.queued {
            queued.entry(doc).or_insert_with(|| (store.clone(), Vec::new())).1.push(verified);
            return Ok(true);
        }
        let changed = self.record_mut(store, &doc).map_or(Ok(false), |r| r.apply_verified(verified))?;
        Ok(changed || !known)
    }

    fn record(&mut self, store: &StoreRef, doc: DocId, key: &[u8]) -> Result<&mut Record, RecordError> {
        self.merge(&doc)?;
        let docs = self.stores.entry(store.clone()).or_default();
        Ok(docs.entry(doc).or_insert_with(|| Record::with_encoded_key(store, key.to_vec(), &self.actor)))
    }

    fn list(&mut self, store: &StoreRef) -> Vec<(DocId, Vec<u8>)> {
        let Some(docs) = self.stores.get(store) else { return vec![] };
        docs.iter().map(|(id, r)| (*id, r.encoded_key().to_vec())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidepool_core::{Key, Value, object};

    fn store() -> StoreRef {
        StoreRef::new("db", "items")
    }

    /// A record written by a peer, and two later changes of it.
    fn remote() -> (Record, Vec<u8>, Vec<Vec<u8>>) {
        let mut peer = Record::new(&store(), &Key::from("k"), &ActorId::from([9u8; 16])).expect("record");
        peer.put(&object! { "n" => 1i64 }, 1).expect("put");
        let saved = peer.save();
        let later = (2..4).map(|n| peer.put(&object! { "n" => n as i64 }, n).expect("put").expect("change").bytes).collect();
        (peer, saved, later)
    }

    fn value(docs: &mut Docs, doc: &DocId) -> Option<Value> {
        docs.get(&store(), doc).expect("merge").and_then(|r| r.get_plain().expect("value"))
    }

    #[test]
    fn lazy_merging_queues_checked_changes_and_a_read_sees_all_of_them() {
        let (mut peer, saved, later) = remote();
        let (doc, key) = (peer.id(), peer.encoded_key().to_vec());
        for lazy in [false, true] {
            let mut docs = Docs::new(ActorId::from([1u8; 16]), lazy);
            assert!(docs.apply(&store(), doc, &key, &Payload::Document(saved.clone())).expect("load"));
            for change in &later {
                assert!(docs.apply(&store(), doc, &key, &Payload::Changes(vec![change.clone()])).expect("apply"));
            }
            let arrived = docs.take_arrived(&doc);
            assert_eq!(arrived.len(), 2, "lazy {lazy}: the hashes of both changes");
            // Queued, the document itself has not moved yet; merged at once, it has.
            let peeked = docs.peek(&store(), &doc).and_then(|r| r.get_plain().expect("value"));
            assert_eq!(peeked, Some(object! { "n" => if lazy { 1i64 } else { 3i64 } }), "lazy {lazy}");
            assert_eq!(value(&mut docs, &doc), Some(object! { "n" => 3i64 }), "lazy {lazy}");
            assert_eq!(docs.peek(&store(), &doc).cloned().expect("record").heads(), peer.heads(), "lazy {lazy}");
        }
    }

    #[test]
    fn lazy_merging_still_refuses_corrupt_changes_when_they_arrive() {
        let (peer, saved, later) = remote();
        let (doc, key) = (peer.id(), peer.encoded_key().to_vec());
        let mut docs = Docs::new(ActorId::from([1u8; 16]), true);
        docs.apply(&store(), doc, &key, &Payload::Document(saved)).expect("load");
        let mut corrupt = later[0].clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(docs.apply(&store(), doc, &key, &Payload::Changes(vec![corrupt])).is_err());
        assert!(docs.take_arrived(&doc).is_empty());
        assert_eq!(value(&mut docs, &doc), Some(object! { "n" => 1i64 }));
    }

    #[test]
    fn changes_that_create_a_record_are_named_and_queued_too() {
        let (mut peer, _, _) = remote();
        let (doc, key) = (peer.id(), peer.encoded_key().to_vec());
        let first = peer.changes_since(&[]);
        for lazy in [false, true] {
            let mut docs = Docs::new(ActorId::from([1u8; 16]), lazy);
            assert!(docs.apply(&store(), doc, &key, &Payload::Changes(first.clone())).expect("apply"));
            assert_eq!(docs.take_arrived(&doc).len(), first.len(), "lazy {lazy}");
            assert_eq!(docs.list(&store()).len(), 1, "lazy {lazy}");
            assert_eq!(value(&mut docs, &doc), peer.get_plain().expect("value"), "lazy {lazy}");
        }
    }

    #[test]
    fn a_write_merges_what_is_queued_first() {
        let (mut peer, saved, later) = remote();
        let (doc, key) = (peer.id(), peer.encoded_key().to_vec());
        let mut docs = Docs::new(ActorId::from([1u8; 16]), true);
        docs.apply(&store(), doc, &key, &Payload::Document(saved)).expect("load");
        docs.apply(&store(), doc, &key, &Payload::Changes(later.clone())).expect("apply");
        let record = docs.record(&store(), doc, &key).expect("record");
        assert_eq!(record.heads(), peer.heads(), "the write builds on every change that arrived");
        let all: Vec<_> = docs.all(&store()).map(|r| r.clone().heads()).collect();
        assert_eq!(all, vec![peer.heads()]);
    }
}
