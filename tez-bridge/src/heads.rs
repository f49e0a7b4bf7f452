//! Heads per document for a whole snapshot, kept compact: what write-back builds on and what an
//! incremental snapshot compares against.
//!
//! Almost every document has one head, so a document costs its id and one hash (48 bytes) in a
//! sorted vector instead of a hash map entry with a heap-allocated list (over 100 bytes): a
//! million documents fit in under 64 MB. Documents with concurrent heads go to a small side map.
//!
//! Document ids are hashes, so they spread evenly over their first two bytes: once sealed, a
//! lookup searches only the entries of its 16-bit prefix (about 15 at a million documents,
//! through a 256 KiB table of where each prefix starts) instead of the whole vector, whose twenty
//! probes each missed the cache and were a twelfth of the write-back's time.

use std::collections::HashMap;

use tidepool_core::DocId;
use tidepool_core::automerge::ChangeHash;

/// Heads per document.
#[derive(Debug, Default, Clone)]
pub struct DocHeads {
    /// Documents with exactly one head, sorted by id once [`DocHeads::insert`]ing is done (kept
    /// sorted when entries arrive in id order; [`DocHeads::seal`] sorts them otherwise).
    single: Vec<(DocId, ChangeHash)>,
    sorted: bool,
    /// Where each 16-bit id prefix starts in `single` (and where it ends, at the next one):
    /// built by [`DocHeads::seal`], dropped by an insert that moves entries.
    starts: Option<Box<[u32]>>,
    /// Documents with no or several heads.
    other: HashMap<DocId, Vec<ChangeHash>>,
}

/// Equal when they hold the same heads (the prefix table is only a way to find them).
impl PartialEq for DocHeads {
    fn eq(&self, other: &Self) -> bool {
        self.single == other.single && self.sorted == other.sorted && self.other == other.other
    }
}

impl Eq for DocHeads {}

/// The first two bytes of an id, which order ids first.
fn prefix(doc: &DocId) -> usize {
    usize::from(u16::from_be_bytes([doc.0[0], doc.0[1]]))
}

impl DocHeads {
    pub fn new() -> Self {
        DocHeads { single: Vec::new(), sorted: true, starts: None, other: HashMap::new() }
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
                self.starts = None;
                self.other.remove(&doc);
                if self.single.last().is_some_and(|(last, _)| *last >= doc) {
                    self.sorted = false;
                }
                self.single.push((doc, *one));
            }
            (_, found) => {
                if let Some(i) = found {
                    self.starts = None;
                    self.single.remove(i);
                }
                self.other.insert(doc, heads);
            }
        }
    }

    fn position(&self, doc: &DocId) -> Option<usize> {
        if let Some(starts) = &self.starts {
            let p = prefix(doc);
            let (from, to) = (starts[p] as usize, starts[p + 1] as usize);
            return self.single[from..to].binary_search_by_key(doc, |(d, _)| *d).ok().map(|i| from + i);
        }
        if self.sorted {
            self.single.binary_search_by_key(doc, |(d, _)| *d).ok()
        } else {
            self.single.iter().rposition(|(d, _)| d == doc)
        }
    }

    /// Finishes inserts made out of id order, so lookups are binary searches within a prefix.
    pub fn seal(&mut self) {
        self.sort();
        if self.starts.is_none() {
            self.starts = Some(self.prefix_starts());
        }
    }

    /// Where each prefix starts in the sorted `single`, and its end.
    fn prefix_starts(&self) -> Box<[u32]> {
        let mut starts = vec![0u32; (1 << 16) + 1];
        let mut at = 0usize;
        for (p, start) in starts.iter_mut().enumerate() {
            while at < self.single.len() && prefix(&self.single[at].0) < p {
                at += 1;
            }
            // More than 4 billion documents would not fit in memory as this holds them anyway.
            *start = u32::try_from(at).unwrap_or(u32::MAX);
        }
        starts.into_boxed_slice()
    }

    fn sort(&mut self) {
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

    /// Ids as the store makes them (hashes), many sharing a prefix table, against a plain map,
    /// through seals and the inserts after them that drop the table.
    #[test]
    fn finds_every_document_through_the_prefix_table() {
        let store = tidepool_core::StoreRef::new("db", "items");
        let id = |i: u32| DocId::from_encoded_key(&store, &i.to_be_bytes());
        let mut heads = DocHeads::new();
        let mut want: HashMap<DocId, Vec<ChangeHash>> = HashMap::new();
        for i in 0..50_000u32 {
            let h = if i % 97 == 0 { vec![hash(1), hash(2)] } else { vec![ChangeHash([(i % 251) as u8; 32])] };
            heads.insert(id(i), h.clone());
            want.insert(id(i), h);
        }
        heads.seal();
        assert!(heads.starts.is_some(), "sealed");
        let check = |heads: &DocHeads, want: &HashMap<DocId, Vec<ChangeHash>>| {
            for (doc, h) in want {
                assert_eq!(heads.get(doc), Some(h.as_slice()), "{doc}");
            }
            for i in 50_000..51_000u32 {
                assert_eq!(heads.get(&id(i)), None, "never inserted");
            }
            assert_eq!(heads.len(), want.len());
        };
        check(&heads, &want);
        // Replacing in place keeps the table; adding, or turning one head into two, drops it.
        heads.insert(id(5), vec![hash(9)]);
        want.insert(id(5), vec![hash(9)]);
        assert!(heads.starts.is_some(), "a replacement in place moves nothing");
        heads.insert(id(7), vec![hash(3), hash(4)]);
        want.insert(id(7), vec![hash(3), hash(4)]);
        heads.insert(id(300_000), vec![hash(8)]);
        want.insert(id(300_000), vec![hash(8)]);
        assert!(heads.starts.is_none());
        for doc in [id(5), id(7), id(300_000), id(11)] {
            assert_eq!(heads.get(&doc), Some(want[&doc].as_slice()), "before the seal: {doc}");
        }
        heads.seal();
        check(&heads, &want);
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
