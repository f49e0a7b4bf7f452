//! Authorization as the sync engine sees it: who may read and write which stores.
//!
//! Verifying a token (signatures, expiry) needs keys and a clock, so it lives in the hub shell
//! behind [`Authorizer`]; the engine checks the resulting [`Grants`] on every frame.

use std::collections::BTreeMap;

use crate::doc_id::StoreRef;

/// What a token grants: per database, the stores it may read and the stores it may write.
/// `"*"` as a store name grants every store of that database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub read: BTreeMap<String, Vec<String>>,
    pub write: BTreeMap<String, Vec<String>>,
}

fn granted(map: &BTreeMap<String, Vec<String>>, store: &StoreRef) -> bool {
    map.get(&store.db).is_some_and(|stores| stores.iter().any(|s| s == "*" || *s == store.store))
}

impl Grants {
    /// Grants reading and writing everything: for development hubs and tests.
    pub fn everything() -> Grants {
        Grants { read: [("*".into(), vec!["*".into()])].into(), write: [("*".into(), vec!["*".into()])].into() }
    }

    pub fn can_read(&self, store: &StoreRef) -> bool {
        granted(&self.read, store) || granted_any_db(&self.read, store)
    }

    pub fn can_write(&self, store: &StoreRef) -> bool {
        granted(&self.write, store) || granted_any_db(&self.write, store)
    }
}

fn granted_any_db(map: &BTreeMap<String, Vec<String>>, store: &StoreRef) -> bool {
    map.get("*").is_some_and(|stores| stores.iter().any(|s| s == "*" || *s == store.store))
}

/// Turns the token of a `Hello` into grants, or refuses it.
pub trait Authorizer {
    /// Returns the grants, or a message for the hub's log; the client only learns that the token
    /// was refused.
    fn authorize(&self, token: &str) -> Result<Grants, String>;
}

/// Accepts every token with every grant. Only for tests and explicit development mode.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _token: &str) -> Result<Grants, String> {
        Ok(Grants::everything())
    }
}
