//! Recently used documents in memory, bounded so a large database does not live in the heap.
//!
//! Reads never need a document (the plain stores answer them); edits and remote changes do.
//! Evicting is always safe between operations because every document change is persisted before
//! the operation that made it returns.

use std::collections::HashMap;

use tidepool_core::{DocId, Record};

#[derive(Debug)]
struct Entry {
    record: Record,
    used: u64,
}

#[derive(Debug)]
pub struct Cache {
    entries: HashMap<DocId, Entry>,
    clock: u64,
    capacity: usize,
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        Cache { entries: HashMap::new(), clock: 0, capacity: capacity.max(1) }
    }

    pub fn contains(&self, doc: &DocId) -> bool {
        self.entries.contains_key(doc)
    }

    pub fn get_mut(&mut self, doc: &DocId) -> Option<&mut Record> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(doc).map(|e| {
            e.used = clock;
            &mut e.record
        })
    }

    pub fn insert(&mut self, doc: DocId, record: Record) -> &mut Record {
        self.clock += 1;
        let entry = Entry { record, used: self.clock };
        let slot = self.entries.entry(doc).insert_entry(entry);
        &mut slot.into_mut().record
    }

    pub fn remove(&mut self, doc: &DocId) {
        self.entries.remove(doc);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Evicts the least recently used documents down to three quarters of the capacity, so trims
    /// (a sort) happen once per many inserts rather than on each.
    pub fn trim(&mut self) {
        if self.entries.len() <= self.capacity {
            return;
        }
        let keep = self.capacity * 3 / 4;
        let mut by_age: Vec<(u64, DocId)> = self.entries.iter().map(|(id, e)| (e.used, *id)).collect();
        by_age.sort_unstable();
        for (_, id) in by_age.iter().take(self.entries.len() - keep) {
            self.entries.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidepool_core::{Key, StoreRef};
    use tidepool_core::automerge::ActorId;

    fn record(n: i64) -> (DocId, Record) {
        let r = Record::new(&StoreRef::new("db", "s"), &Key::from(n), &ActorId::from([1u8; 16])).unwrap();
        (r.id(), r)
    }

    #[test]
    fn trim_keeps_the_most_recently_used() {
        let mut cache = Cache::new(4);
        let ids: Vec<DocId> = (0..5).map(|n| { let (id, r) = record(n); cache.insert(id, r); id }).collect();
        cache.get_mut(&ids[0]);
        cache.trim();
        assert_eq!(cache.len(), 3);
        assert!(cache.contains(&ids[0]) && cache.contains(&ids[4]) && cache.contains(&ids[3]));
        assert!(!cache.contains(&ids[1]));
    }
}
