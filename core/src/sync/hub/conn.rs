//! One connection's protocol state at the hub: who it is, what it may do, what it follows, and
//! its sync protocol sessions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use automerge::sync;

use crate::doc_id::{DocId, StoreRef};
use crate::sync::auth::Grants;
use crate::wire::PeerId;

use super::{ConnId, Hub, HubStore};
use crate::sync::auth::Authorizer;

#[derive(Debug, Default)]
pub(super) struct Conn {
    /// Set by an accepted `Hello`, with `grants`.
    pub peer: Option<PeerId>,
    pub grants: Option<Grants>,
    pub subs: BTreeSet<StoreRef>,
    /// Stores whose log position this connection follows (`Watch`), without their changes.
    pub watching: BTreeSet<StoreRef>,
    /// Automerge sync protocol state per document in repair.
    pub sync: HashMap<DocId, sync::State>,
    /// Open exports: id -> (store, log seq of the cut).
    pub exports: BTreeMap<u64, (StoreRef, u64)>,
}

impl<S: HubStore, A: Authorizer> Hub<S, A> {
    pub(super) fn take_sync_state(&mut self, conn: ConnId, doc: DocId) -> sync::State {
        self.conns.get_mut(&conn).and_then(|c| c.sync.remove(&doc)).unwrap_or_default()
    }

    pub(super) fn put_sync_state(&mut self, conn: ConnId, doc: DocId, state: sync::State) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.sync.insert(doc, state);
        }
    }

    pub(super) fn end_sync(&mut self, conn: ConnId, doc: DocId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.sync.remove(&doc);
        }
    }

    /// Connections watching `store`.
    pub(super) fn watchers<'a>(&'a self, store: &'a StoreRef) -> impl Iterator<Item = ConnId> + 'a {
        self.conns.iter().filter(move |(_, c)| c.watching.contains(store)).map(|(id, _)| *id)
    }

    /// Other connections subscribed to `store`.
    pub(super) fn subscribers<'a>(&'a self, store: &'a StoreRef, except: ConnId) -> impl Iterator<Item = ConnId> + 'a {
        self.conns.iter().filter(move |(id, c)| **id != except && c.subs.contains(store)).map(|(id, _)| *id)
    }
}
