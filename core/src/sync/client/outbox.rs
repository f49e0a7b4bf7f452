//! The outbox: local changes waiting for the hub, packed into pushes within the hub's limits and
//! removed when acknowledged (or refused for good).

use std::collections::HashMap;

use crate::doc_id::{DocId, StoreRef};
use crate::wire::{DocData, ErrorCode, Message, Payload};

use super::{ClientEngine, ClientEvent, OutboxId};

#[derive(Debug)]
pub(super) struct OutboxEntry {
    pub store: StoreRef,
    pub doc: DocId,
    pub key: Vec<u8>,
    pub change: Vec<u8>,
    /// The push carrying this entry, while one is in flight.
    pub batch: Option<u64>,
}

impl ClientEngine {
    /// Adds a local change to the outbox (after the shell persisted it under `id`).
    ///
    /// A change that can never fit the hub's frame limit (as the last `Welcome` told it) is
    /// refused at once: the output then carries `Acked` for it and a `HubError` with
    /// [`ErrorCode::TooLarge`], as for a push the hub refused.
    pub fn enqueue(&mut self, id: OutboxId, store: StoreRef, doc: DocId, key: Vec<u8>, change: Vec<u8>) {
        if change.len() + key.len() > self.config.max_push_bytes {
            let detail = format!("a change larger than the hub's frame limit allows ({} bytes)", self.config.max_push_bytes);
            self.event(ClientEvent::Acked { ids: vec![id] });
            self.event(ClientEvent::HubError { code: ErrorCode::TooLarge, detail });
            return;
        }
        self.outbox.insert(id, OutboxEntry { store, doc, key, change, batch: None });
        self.flush();
    }

    /// Drops outbox entries that can never fit a push under the hub's frame limit, reporting them
    /// the way the hub reports a refused push, instead of sending them to be refused forever.
    pub(super) fn refuse_oversized(&mut self) {
        let limit = self.config.max_push_bytes;
        let ids: Vec<OutboxId> = self
            .outbox
            .iter()
            .filter(|(_, e)| e.batch.is_none() && e.change.len() + e.key.len() > limit)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        for id in &ids {
            self.outbox.remove(id);
        }
        let detail = format!("{} change(s) larger than the hub's frame limit allows ({limit} bytes)", ids.len());
        self.event(ClientEvent::Acked { ids });
        self.event(ClientEvent::HubError { code: ErrorCode::TooLarge, detail });
    }

    /// Packs outbox entries not yet in flight into pushes, a store per push, within the limits.
    pub fn flush(&mut self) {
        if !self.connected {
            return;
        }
        while self.inflight.len() < self.config.max_inflight {
            let Some(store) = self.outbox.values().find(|e| e.batch.is_none()).map(|e| e.store.clone())
            else {
                return;
            };
            let batch = self.next_batch;
            self.next_batch += 1;
            let mut docs: Vec<DocData> = Vec::new();
            let mut index: HashMap<DocId, usize> = HashMap::new();
            let mut ids = Vec::new();
            let mut bytes = 0;
            for (id, entry) in self.outbox.iter_mut() {
                if entry.batch.is_some() || entry.store != store {
                    continue;
                }
                let new_doc = !index.contains_key(&entry.doc);
                let full = new_doc && docs.len() >= self.config.max_docs_per_push;
                if !ids.is_empty() && (full || bytes + entry.change.len() > self.config.max_push_bytes) {
                    break;
                }
                entry.batch = Some(batch);
                ids.push(*id);
                bytes += entry.change.len();
                match index.get(&entry.doc).map(|&i| &mut docs[i].payload) {
                    Some(Payload::Changes(chunks)) => chunks.push(entry.change.clone()),
                    _ => {
                        index.insert(entry.doc, docs.len());
                        docs.push(DocData {
                            doc: entry.doc,
                            key: entry.key.clone(),
                            payload: Payload::Changes(vec![entry.change.clone()]),
                        });
                    }
                }
            }
            self.inflight.insert(batch, ids);
            self.send(Message::Push { batch, store, docs });
        }
    }

    pub(super) fn on_ack(&mut self, batch: u64, incomplete: &[DocId]) {
        let Some(ids) = self.inflight.remove(&batch) else { return };
        let mut acked = Vec::with_capacity(ids.len());
        for id in ids {
            let waits = self.outbox.get(&id).is_some_and(|e| incomplete.contains(&e.doc));
            if waits {
                // Stays in the outbox (marked as sent) until the sync session for its document ends.
                if let Some(e) = self.outbox.get(&id) {
                    self.awaiting_repair.insert(e.doc);
                }
            } else if self.outbox.remove(&id).is_some() {
                acked.push(id);
            }
        }
        if !acked.is_empty() {
            self.event(ClientEvent::Acked { ids: acked });
        }
        self.flush();
    }

    /// A refused push is not retried: its entries would be refused again.
    pub(super) fn on_refused(&mut self, batch: u64) {
        if let Some(ids) = self.inflight.remove(&batch) {
            for id in &ids {
                self.outbox.remove(id);
            }
            self.event(ClientEvent::Acked { ids });
        }
    }
}
