//! One connection's protocol state at the hub: who it is, what it may do, what it follows, and
//! its sync protocol sessions.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

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
    /// Open exports by id.
    pub exports: BTreeMap<u64, OpenExport>,
    /// Exports that sent their last page, newest last (at most [`ENDED_EXPORTS`]): a request
    /// already on its way for the page after the last gets an empty last page, not an error.
    pub ended: VecDeque<(u64, OpenExport)>,
}

/// Ended exports a connection remembers.
pub(super) const ENDED_EXPORTS: usize = 8;

/// An export a connection holds open.
#[derive(Debug, Clone)]
pub(super) struct OpenExport {
    pub store: StoreRef,
    /// The log seq of the cut.
    pub seq: u64,
    /// The last document sent: where a request that names no document continues.
    pub last: Option<DocId>,
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
