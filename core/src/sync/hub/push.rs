//! A client's push: every payload parsed and checked first (by the dispatch, or by the shell
//! through [`super::Received`]), then applied, logged, acknowledged and fanned out. A document whose change the store can take on its tip
//! ([`super::HubStore::append_on_tip`]) is logged without being loaded.

use std::collections::HashSet;

use automerge::ChangeHash;

use crate::doc_id::{DocId, StoreRef};
use crate::foreign::Verified;
use crate::record::RecordError;
use crate::sync::auth::Authorizer;
use crate::wire::{Cursor, DocData, ErrorCode, Message, Payload, PeerId, SyncEntry};

use super::repair::code_for;
use super::{ConnId, Effect, Hub, HubOutput, HubStore};

/// Why a pushed document was refused: told to the peer with the batch.
fn refusal(doc: DocId, e: &RecordError) -> (ErrorCode, String) {
    (code_for(e), format!("document {doc}: {e}"))
}

impl<S: HubStore, A: Authorizer> Hub<S, A> {
    pub(super) fn push(
        &mut self,
        conn: ConnId,
        batch: u64,
        store: StoreRef,
        docs: Vec<(DocId, Vec<u8>, Result<Verified, RecordError>)>,
        out: &mut HubOutput,
    ) -> Result<(), S::Error> {
        // Every payload is checked first: a corrupt or foreign document anywhere refuses the
        // whole batch and stores nothing from it.
        let mut parsed = Vec::with_capacity(docs.len());
        for (doc, key, changes) in docs {
            match changes {
                Ok(changes) => parsed.push((doc, key, changes)),
                Err(e) => {
                    let (code, detail) = refusal(doc, &e);
                    out.refuse(conn, code, Some(batch), detail, None);
                    return Ok(());
                }
            }
        }
        let origin = self.peer(conn);
        let count = parsed.len();
        let mut incomplete = Vec::new();
        let mut fanout = Vec::new();
        let mut back = Vec::new();
        let mut last_seq = None;
        for (doc, key, changes) in parsed {
            if let Some(seq) = self.store.append_on_tip(&store, doc, &key, &changes, origin)? {
                let bytes = changes.changes().iter().map(|c| c.raw_bytes().to_vec()).collect();
                fanout.push(DocData { doc, key, payload: Payload::Changes(bytes) });
                last_seq = Some(seq);
                out.durable = true;
                continue;
            }
            let pushed: HashSet<ChangeHash> = changes.hashes().collect();
            let record = self.store.record(&store, doc, &key)?;
            let before = record.heads();
            if let Err(e) = record.apply_verified(changes) {
                // Earlier documents of the batch may be logged already; the refusal names the
                // batch, so the shell undoes the frame's writes.
                let (code, detail) = refusal(doc, &e);
                out.refuse(conn, code, Some(batch), detail, None);
                return Ok(());
            }
            if !record.missing_deps().is_empty() {
                incomplete.push((doc, key.clone()));
            }
            // A pushed change can complete changes that waited for it in the document (pushed
            // earlier by someone else, with a dependency missing). They are new to everyone,
            // the pusher included, so they are logged as an entry of their own.
            let (own, unseen): (Vec<_>, Vec<_>) =
                record.changes_after(&before).into_iter().partition(|c| pushed.contains(&c.hash()));
            let bytes = |cs: Vec<automerge::Change>| -> Vec<Vec<u8>> { cs.into_iter().map(|c| c.raw_bytes().to_vec()).collect() };
            for (changes, from) in [(bytes(own), origin), (bytes(unseen), PeerId::HUB)] {
                if changes.is_empty() {
                    continue;
                }
                let data = DocData { doc, key: key.clone(), payload: Payload::Changes(changes.clone()) };
                last_seq = Some(self.store.append(&store, doc, &key, changes, from)?);
                out.durable = true;
                if from == PeerId::HUB {
                    back.push(data.clone());
                }
                fanout.push(data);
            }
        }
        let ids: Vec<DocId> = incomplete.iter().map(|(d, _)| *d).collect();
        out.send(conn, &Message::Ack { batch, incomplete: ids });
        out.effects.push(Effect::Acknowledged { conn, batch, docs: count, incomplete: incomplete.len() });
        if !incomplete.is_empty() {
            self.start_repair(conn, &store, incomplete, out)?;
        }
        if let Some(seq) = last_seq {
            if !back.is_empty() {
                let cursor = Some(Cursor { epoch: self.store.epoch(), seq });
                out.send(conn, &Message::Changes { store: store.clone(), docs: back, cursor });
            }
            self.fan_out(conn, &store, fanout, seq, out);
        }
        Ok(())
    }

    /// Starts the sync protocol for pushed documents whose dependencies the hub lacks.
    fn start_repair(
        &mut self,
        conn: ConnId,
        store: &StoreRef,
        docs: Vec<(DocId, Vec<u8>)>,
        out: &mut HubOutput,
    ) -> Result<(), S::Error> {
        let mut entries = Vec::new();
        for (doc, key) in docs {
            let mut state = self.take_sync_state(conn, doc);
            let record = self.store.record(store, doc, &key)?;
            if let Some(message) = record.sync_message(&mut state) {
                entries.push(SyncEntry { doc, key, message: Some(message) });
            }
            self.put_sync_state(conn, doc, state);
        }
        out.send(conn, &Message::Sync { store: store.clone(), entries });
        Ok(())
    }
}
