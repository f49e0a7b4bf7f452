//! Which documents the database holds and where their bytes are, kept in memory.
//!
//! Opening a database reads the registry rows (documents per segment, no Automerge bytes) and the
//! snapshot keys, which is enough to know every stored document without loading any. A document's
//! bytes are its snapshot (if any) plus its chunks in the segments after the snapshot's `upto`.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use tidepool_core::DocId;

/// Where one stored document's bytes are.
#[derive(Debug, Clone)]
pub struct StoredDoc {
    pub store: Rc<str>,
    pub key: Vec<u8>,
    /// The `upto` of its snapshot row, if it has one.
    pub snapshot: Option<u64>,
    /// Segments after the snapshot that hold chunks of it, ascending.
    pub segments: Vec<u64>,
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub docs: Vec<DocId>,
}

#[derive(Debug, Default)]
pub struct Known {
    docs: HashMap<DocId, StoredDoc>,
    segments: BTreeMap<u64, Segment>,
    /// Interned store names, so ten thousand documents do not hold ten thousand copies.
    names: Vec<Rc<str>>,
    next_segment: u64,
}

impl Known {
    fn intern(&mut self, store: &str) -> Rc<str> {
        if let Some(name) = self.names.iter().find(|n| &***n == store) {
            return name.clone();
        }
        let name: Rc<str> = Rc::from(store);
        self.names.push(name.clone());
        name
    }

    pub fn get(&self, doc: &DocId) -> Option<&StoredDoc> {
        self.docs.get(doc)
    }

    pub fn contains(&self, doc: &DocId) -> bool {
        self.docs.contains_key(doc)
    }

    /// A fresh segment number; numbers only grow, so "after the snapshot" is a comparison.
    pub fn allocate_segment(&mut self) -> u64 {
        self.next_segment += 1;
        self.next_segment
    }

    /// The newest segment number handed out (what a snapshot taken now covers).
    pub fn last_segment(&self) -> u64 {
        self.next_segment
    }

    /// Makes sure numbers handed out later are above `seen` (a number found in storage).
    pub fn observe_segment(&mut self, seen: u64) {
        self.next_segment = self.next_segment.max(seen);
    }

    /// Records that `seg` holds chunks of these documents of `store`.
    pub fn add_segment(&mut self, seg: u64, store: &str, docs: impl IntoIterator<Item = (DocId, Vec<u8>)>) {
        self.observe_segment(seg);
        let store = self.intern(store);
        let mut ids = Vec::new();
        for (doc, key) in docs {
            let entry = self.docs.entry(doc).or_insert_with(|| StoredDoc {
                store: store.clone(),
                key,
                snapshot: None,
                segments: Vec::new(),
            });
            if entry.snapshot.is_none_or(|upto| upto < seg) && entry.segments.last() != Some(&seg) {
                // Segments arrive in ascending order at open and are allocated ascending later.
                let at = entry.segments.partition_point(|s| *s < seg);
                entry.segments.insert(at, seg);
            }
            ids.push(doc);
        }
        self.segments.insert(seg, Segment { docs: ids });
    }

    /// Records a snapshot of `doc` covering every segment up to `upto`.
    pub fn set_snapshot(&mut self, doc: DocId, store: &str, key: Vec<u8>, upto: u64) {
        self.observe_segment(upto);
        let store = self.intern(store);
        let entry = self.docs.entry(doc).or_insert_with(|| StoredDoc {
            store,
            key,
            snapshot: None,
            segments: Vec::new(),
        });
        entry.snapshot = Some(entry.snapshot.map_or(upto, |old| old.max(upto)));
        entry.segments.retain(|s| *s > upto);
    }

    pub fn segment(&self, seg: u64) -> Option<&Segment> {
        self.segments.get(&seg)
    }

    /// Segments, oldest first.
    pub fn segment_numbers(&self) -> Vec<u64> {
        self.segments.keys().copied().collect()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Forgets a segment whose documents all have snapshots covering it.
    pub fn remove_segment(&mut self, seg: u64) {
        self.segments.remove(&seg);
    }

    /// Whether every document in `seg` has a snapshot that covers it (so the row can go).
    pub fn covered(&self, seg: u64) -> bool {
        self.segments.get(&seg).is_some_and(|s| {
            s.docs.iter().all(|d| self.docs.get(d).and_then(|d| d.snapshot).is_some_and(|upto| upto >= seg))
        })
    }

    /// Every stored document of `store`, with its key.
    pub fn docs_of(&self, store: &str) -> Vec<(DocId, Vec<u8>)> {
        self.docs.iter().filter(|(_, d)| &*d.store == store).map(|(id, d)| (*id, d.key.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_cover_older_segments_only() {
        let mut known = Known::default();
        let (a, b) = (DocId([1; 16]), DocId([2; 16]));
        let s1 = known.allocate_segment();
        known.add_segment(s1, "todos", [(a, b"a".to_vec()), (b, b"b".to_vec())]);
        let s2 = known.allocate_segment();
        known.add_segment(s2, "todos", [(a, b"a".to_vec())]);
        assert_eq!(known.get(&a).unwrap().segments, vec![s1, s2]);
        assert!(!known.covered(s1));
        known.set_snapshot(a, "todos", b"a".to_vec(), s2);
        assert!(known.get(&a).unwrap().segments.is_empty());
        assert!(!known.covered(s1), "b still lives in s1");
        known.set_snapshot(b, "todos", b"b".to_vec(), s2);
        assert!(known.covered(s1) && known.covered(s2));
        let s3 = known.allocate_segment();
        assert!(s3 > s2);
        assert_eq!(known.docs_of("todos").len(), 2);
        assert!(known.docs_of("other").is_empty());
    }
}
