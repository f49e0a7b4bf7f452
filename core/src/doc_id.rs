//! Document identity: which record a document is, derived from (database, store, key).
//!
//! The id is a hash of the triple, so two clients that create the same key offline create the same
//! document and their fields merge instead of one record replacing the other.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::key::{Key, KeyError};

/// An IndexedDB object store inside a database: the unit of subscription and authorization.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, bincode::Encode, bincode::Decode)]
pub struct StoreRef {
    pub db: String,
    pub store: String,
}

impl StoreRef {
    pub fn new(db: impl Into<String>, store: impl Into<String>) -> Self {
        StoreRef { db: db.into(), store: store.into() }
    }
}

impl fmt::Display for StoreRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.db, self.store)
    }
}

/// A 16-byte document id; shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, bincode::Encode, bincode::Decode)]
pub struct DocId(pub [u8; 16]);

impl DocId {
    /// The id of the record `key` in `store`. Lengths are hashed too, so no two distinct triples
    /// share a preimage.
    pub fn derive(store: &StoreRef, key: &Key) -> Result<DocId, KeyError> {
        Ok(Self::from_encoded_key(store, &key.encode()?))
    }

    /// As [`DocId::derive`], from a key already in canonical encoding.
    pub fn from_encoded_key(store: &StoreRef, key: &[u8]) -> DocId {
        let mut h = Sha256::new();
        h.update(b"tidepool/doc/v1\0");
        for part in [store.db.as_bytes(), store.store.as_bytes(), key] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        DocId(id)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<DocId> {
        let mut id = [0u8; 16];
        hex::decode_to_slice(s, &mut id).ok()?;
        Some(DocId(id))
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocId({})", self.to_hex())
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_separates_components() {
        let k = Key::from("x");
        let a = DocId::derive(&StoreRef::new("ab", "c"), &k).unwrap();
        let b = DocId::derive(&StoreRef::new("a", "bc"), &k).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, DocId::derive(&StoreRef::new("ab", "c"), &Key::from("x")).unwrap());
        assert_eq!(DocId::from_hex(&a.to_hex()), Some(a));
    }
}
