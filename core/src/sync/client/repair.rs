//! Repair: when the hub cannot tell what this client lacks, Automerge's sync protocol runs for
//! every document whose heads differ and every document the hub does not list, all documents in
//! the same frames.

use std::collections::HashSet;

use automerge::sync;

use crate::doc_id::{DocId, StoreRef};
use crate::foreign::VerifiedSync;
use crate::record::Record;
use crate::wire::{Cursor, DocHeads, Message, SyncEntry};

use super::subscription::Phase;
use super::{ClientDocs, ClientEngine, ClientError, ClientEvent, OutboxId};

impl ClientEngine {
    pub(super) fn on_heads<D: ClientDocs>(
        &mut self,
        store: StoreRef,
        heads: Vec<DocHeads>,
        cursor: Cursor,
        last: bool,
        docs: &mut D,
    ) -> Result<(), ClientError> {
        let Some(sub) = self.subs.get_mut(&store) else { return Ok(()) };
        let first_page = !matches!(sub.phase, Phase::Repairing { .. });
        sub.phase = Phase::Repairing { cursor, heads_complete: last };
        let mut entries = Vec::new();
        let mut listed: HashSet<DocId> = HashSet::new();
        for h in heads {
            listed.insert(h.doc);
            let record = docs.record(&store, h.doc, &h.key)?;
            let theirs: Vec<[u8; 32]> = h.heads;
            let ours: Vec<[u8; 32]> = record.heads().iter().map(|c| c.0).collect();
            if ours != theirs {
                entries.extend(self.start_session(&store, record));
            }
        }
        if first_page {
            // Documents the hub may not have at all: offer them too. Documents the hub lists on a
            // later page get a session from that page and are skipped here only if listed now.
            for (doc, key) in docs.list(&store) {
                if listed.contains(&doc) || self.sessions.contains_key(&doc) {
                    continue;
                }
                let record = docs.record(&store, doc, &key)?;
                entries.extend(self.start_session(&store, record));
            }
        }
        self.send_sync(store.clone(), entries);
        self.finish_repair_if_done(&store);
        Ok(())
    }

    fn start_session(&mut self, store: &StoreRef, record: &mut Record) -> Option<SyncEntry> {
        let mut state = sync::State::new();
        let message = record.sync_message(&mut state)?;
        let (doc, key) = (record.id(), record.encoded_key().to_vec());
        self.sessions.insert(doc, (store.clone(), state));
        Some(SyncEntry { doc, key, message: Some(message) })
    }

    fn send_sync(&mut self, store: StoreRef, entries: Vec<SyncEntry>) {
        let max = self.config.max_docs_per_push.max(1);
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let page: Vec<SyncEntry> = entries.by_ref().take(max).collect();
            self.send(Message::Sync { store: store.clone(), entries: page });
        }
    }

    pub(super) fn on_sync<D: ClientDocs>(
        &mut self,
        store: StoreRef,
        entries: Vec<SyncEntry>,
        docs: &mut D,
    ) -> Result<(), ClientError> {
        let mut replies = Vec::new();
        for entry in entries {
            let (_, mut state) =
                self.sessions.remove(&entry.doc).unwrap_or_else(|| (store.clone(), sync::State::new()));
            let record = docs.record(&store, entry.doc, &entry.key)?;
            if let Some(bytes) = &entry.message {
                let message = VerifiedSync::parse(bytes).map_err(|e| ClientError::SyncMessage(e.to_string()))?;
                if record.receive_sync(&mut state, message)? {
                    self.output.events.push(ClientEvent::RemoteChanged {
                        store: store.clone(),
                        doc: entry.doc,
                        key: entry.key.clone(),
                    });
                }
            }
            match record.sync_message(&mut state) {
                Some(reply) => {
                    replies.push(SyncEntry { doc: entry.doc, key: entry.key, message: Some(reply) });
                    self.sessions.insert(entry.doc, (store.clone(), state));
                }
                None => self.session_done(entry.doc),
            }
        }
        self.send_sync(store.clone(), replies);
        self.finish_repair_if_done(&store);
        Ok(())
    }

    /// A document's sync session ended: the hub has everything this client has of it, durably.
    fn session_done(&mut self, doc: DocId) {
        if !self.awaiting_repair.remove(&doc) {
            return;
        }
        let ids: Vec<OutboxId> = self
            .outbox
            .iter()
            .filter(|(_, e)| e.doc == doc && e.batch.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.outbox.remove(id);
        }
        if !ids.is_empty() {
            self.event(ClientEvent::Acked { ids });
        }
    }

    fn finish_repair_if_done(&mut self, store: &StoreRef) {
        let busy = self.sessions.values().any(|(s, _)| s == store);
        let Some(sub) = self.subs.get_mut(store) else { return };
        if let (Phase::Repairing { cursor, heads_complete: true }, false) = (&sub.phase, busy) {
            let cursor = *cursor;
            sub.cursor = Some(cursor);
            sub.phase = Phase::Live;
            self.event(ClientEvent::Cursor { store: store.clone(), cursor });
            self.event(ClientEvent::Synced { store: store.clone() });
        }
    }

}
