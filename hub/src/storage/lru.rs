//! A least-recently-used map with a fixed capacity: what keeps the hub's memory independent of
//! how many documents it stores.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// Entries carry the tick of their last use; `order` maps ticks back to keys so the oldest is
/// found in O(log n). Simpler than an intrusive list and fast enough next to an Automerge load.
#[derive(Debug)]
pub(crate) struct Lru<K, V> {
    capacity: usize,
    tick: u64,
    entries: HashMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Lru { capacity: capacity.max(1), tick: 0, entries: HashMap::new(), order: BTreeMap::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// The entry, marked as just used.
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let (_, tick) = self.entries.get(key)?;
        self.order.remove(tick);
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        let entry = self.entries.get_mut(key)?;
        entry.1 = self.tick;
        Some(&mut entry.0)
    }

    /// The entry without marking it used.
    pub(crate) fn peek_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|(v, _)| v)
    }

    /// Inserts (or replaces) an entry and returns the entries evicted to stay within capacity;
    /// the new entry itself is never evicted.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Vec<(K, V)> {
        self.remove(&key);
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, (value, self.tick));
        let mut evicted = Vec::new();
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some((v, _)) = self.entries.remove(&oldest) {
                evicted.push((oldest, v));
            }
        }
        evicted
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let (v, tick) = self.entries.remove(key)?;
        self.order.remove(&tick);
        Some(v)
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.entries.iter_mut().map(|(k, (v, _))| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut lru = Lru::new(2);
        assert!(lru.insert("a", 1).is_empty());
        assert!(lru.insert("b", 2).is_empty());
        assert_eq!(lru.get_mut(&"a"), Some(&mut 1));
        assert_eq!(lru.insert("c", 3), vec![("b", 2)]);
        assert!(lru.contains(&"a") && lru.contains(&"c") && !lru.contains(&"b"));
        assert_eq!(lru.remove(&"a"), Some(1));
        assert_eq!(lru.len(), 1);
        assert!(lru.insert("c", 4).is_empty(), "replacing does not evict");
        assert_eq!(lru.peek_mut(&"c"), Some(&mut 4));
    }
}
