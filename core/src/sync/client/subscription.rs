//! Subscriptions: the cursor persisted per store and the phase of catching up with the hub.

use crate::doc_id::StoreRef;
use crate::wire::{Cursor, DocData, Message, Subscription};

use super::{ClientDocs, ClientEngine, ClientError, ClientEvent};

#[derive(Debug)]
pub(super) enum Phase {
    /// Not connected, or subscribed but nothing heard yet.
    Waiting,
    /// Receiving the log or a full download.
    CatchingUp,
    Live,
    /// Running the sync protocol; `cursor` counts once every document is done.
    Repairing { cursor: Cursor, heads_complete: bool },
}

#[derive(Debug)]
pub(super) struct Sub {
    pub cursor: Option<Cursor>,
    pub phase: Phase,
}

impl ClientEngine {
    /// Follows a store from `since` (the last cursor persisted for it, if any).
    pub fn subscribe(&mut self, store: StoreRef, since: Option<Cursor>) {
        self.subs.insert(store.clone(), Sub { cursor: since, phase: Phase::Waiting });
        if self.connected {
            self.send(Message::Subscribe { subscriptions: vec![Subscription { store, since }] });
        }
    }

    /// Changes for a store: applied, and the cursor they carry persisted when it is safe.
    pub(super) fn on_changes<D: ClientDocs>(
        &mut self,
        store: StoreRef,
        data: &[DocData],
        cursor: Option<Cursor>,
        docs: &mut D,
    ) -> Result<(), ClientError> {
        self.apply_all(&store, data, docs)?;
        if let Some(sub) = self.subs.get_mut(&store) {
            if matches!(sub.phase, Phase::Waiting) {
                sub.phase = Phase::CatchingUp;
            }
            // Documents arrived before any position did: if the connection drops now,
            // the next subscription must not claim to hold nothing.
            let cursor = cursor.or((sub.cursor.is_none() && !data.is_empty()).then_some(Cursor::UNPLACED));
            // While repairing, the repair's cursor is what counts once it is done.
            if let (Some(cursor), false) = (cursor, matches!(sub.phase, Phase::Repairing { .. })) {
                sub.cursor = Some(cursor);
                self.event(ClientEvent::Cursor { store, cursor });
            }
        }
        Ok(())
    }

    pub(super) fn on_caught_up(&mut self, store: StoreRef, cursor: Cursor) {
        if let Some(sub) = self.subs.get_mut(&store) {
            sub.cursor = Some(cursor);
            sub.phase = Phase::Live;
            self.event(ClientEvent::Cursor { store: store.clone(), cursor });
            self.event(ClientEvent::Synced { store });
        }
    }

    fn apply_all<D: ClientDocs>(
        &mut self,
        store: &StoreRef,
        data: &[DocData],
        docs: &mut D,
    ) -> Result<(), ClientError> {
        for d in data {
            if docs.apply(store, d.doc, &d.key, &d.payload)? {
                self.event(ClientEvent::RemoteChanged {
                    store: store.clone(),
                    doc: d.doc,
                    key: d.key.clone(),
                });
            }
        }
        Ok(())
    }

}
