//! Heads per document for a whole snapshot, kept compact: what write-back builds on and what an
//! incremental snapshot compares against.
//!
//! Almost every document has one head, so a document costs its id and one hash (48 bytes) in a
//! sorted vector instead of a hash map entry with a heap-allocated list (over 100 bytes): a
//! million documents fit in under 64 MB. Documents with concurrent heads go to a small side map.

use std::collections::HashMap;

use tidepool_core::DocId;
use tidepool_core::automerge::ChangeHash;

/// Heads per document.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DocHeads {
    /// Documents with exactly one head, sorted by id once [`DocHeads::insert`]ing is done (kept
    /// sorted when entries arrive in id order; [`DocHeads::seal`] sorts them otherwise).
    single: Vec<(DocId, ChangeHash)>,
    sorted: bool,
    /// Documents with no or several heads.
    other: HashMap<DocId, Vec<ChangeHash>>,
}

impl DocHeads {
    pub fn new() -> Self {
        DocHeads { single: Vec::new(), sorted: true, other: HashMap::new() }
    }

    /// Room for `n` documents.
    pub fn with_capacity(n: usize) -> Self {
        DocHeads { single: Vec::with_capacity(n), ..Self::new() }
    }

    /// Sets the heads of `doc` (replacing what it had). Inserts in id order, or replacing
    /// documents already present, keep lookups fast; after inserts out of order, call
    /// [`DocHeads::seal`] before reading.
    pub fn insert(&mut self, doc: DocId, heads: Vec<ChangeHash>) {
        let found = if self.sorted { self.single.binary_search_by_key(&doc, |(d, _)| *d).ok() } else { None };
        match (heads.as_slice(), found) {
            ([one], Some(i)) => self.single[i].1 = *one,
            ([one], None) => {
                self.other.remove(&doc);
                if self.single.last().is_some_and(|(last, _)| *last >= doc) {
                    self.sorted = false;
                }
                self.single.push((doc, *one));
            }
            (_, found) => {
                if let Some(i) = found {
                    self.single.remove(i);
                }
                self.other.insert(doc, heads);
            }
        }
    }

    fn position(&self, doc: &DocId) -> Option<usize> {
        if self.sorted {
            self.single.binary_search_by_key(doc, |(d, _)| *d).ok()
        } else {
            self.single.iter().rposition(|(d, _)| d == doc)
        }
    }

    /// Finishes inserts made out of id order, so lookups are binary searches.
    pub fn seal(&mut self) {
        if self.sorted {
            return;
        }
        // Stable, so of several entries for one document the last inserted is kept.
        self.single.sort_by_key(|(doc, _)| *doc);
        self.single.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                *kept = *later;
            }
            same
        });
        let other = &self.other;
        self.single.retain(|(doc, _)| !other.contains_key(doc));
        self.sorted = true;
    }

    /// The heads of `doc`, if the snapshot saw it.
    pub fn get(&self, doc: &DocId) -> Option<&[ChangeHash]> {
        if let Some(h) = self.other.get(doc) {
            return Some(h);
        }
        self.position(doc).map(|i| std::slice::from_ref(&self.single[i].1))
    }

    pub fn len(&self) -> usize {
        self.single.len() + self.other.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FromIterator<(DocId, Vec<ChangeHash>)> for DocHeads {
    fn from_iter<I: IntoIterator<Item = (DocId, Vec<ChangeHash>)>>(iter: I) -> Self {
        let mut heads = DocHeads::new();
        for (doc, h) in iter {
            heads.insert(doc, h);
        }
        heads.seal();
        heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> ChangeHash {
        ChangeHash([n; 32])
    }

    #[test]
    fn finds_heads_in_any_insertion_order() {
        let mut heads = DocHeads::new();
        heads.insert(DocId([3; 16]), vec![hash(3)]);
        heads.insert(DocId([1; 16]), vec![hash(1)]);
        heads.insert(DocId([2; 16]), vec![hash(2), hash(9)]);
        heads.insert(DocId([4; 16]), vec![]);
        heads.seal();
        assert_eq!(heads.get(&DocId([1; 16])), Some(&[hash(1)][..]));
        assert_eq!(heads.get(&DocId([2; 16])), Some(&[hash(2), hash(9)][..]));
        assert_eq!(heads.get(&DocId([4; 16])), Some(&[][..]));
        assert_eq!(heads.get(&DocId([5; 16])), None);
        assert_eq!(heads.len(), 4);
        // Replacing moves a document between the two forms.
        heads.insert(DocId([2; 16]), vec![hash(7)]);
        heads.insert(DocId([3; 16]), vec![hash(5), hash(6)]);
        heads.seal();
        assert_eq!(heads.get(&DocId([2; 16])), Some(&[hash(7)][..]));
        assert_eq!(heads.get(&DocId([3; 16])), Some(&[hash(5), hash(6)][..]));
        assert_eq!(heads.len(), 4);
    }
}
