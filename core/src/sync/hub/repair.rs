//! Repair: rounds of Automerge's sync protocol for many documents per frame, and fan-out of
//! whatever they bring in.

use std::sync::Arc;

use automerge::ChangeHash;

use crate::doc_id::{DocId, StoreRef};
use crate::record::RecordError;
use crate::sync::auth::Authorizer;
use crate::foreign::VerifiedSync;
use crate::wire::{self, Cursor, DocData, ErrorCode, Message, Payload, PeerId, SyncEntry};

use super::{ConnId, Effect, Hub, HubOutput, HubStore, Outgoing};

impl<S: HubStore, A: Authorizer> Hub<S, A> {
    pub(super) fn sync_round(
        &mut self,
        conn: ConnId,
        store: StoreRef,
        entries: Vec<SyncEntry>,
        out: &mut HubOutput,
    ) -> Result<(), S::Error> {
        let can_write = self.grants(conn).is_some_and(|g| g.can_write(&store));
        let origin = self.peer(conn);
        let mut replies = Vec::with_capacity(entries.len());
        let mut fanout = Vec::new();
        let mut last_seq = None;
        for entry in entries {
            let Some(bytes) = &entry.message else {
                self.end_sync(conn, entry.doc);
                continue;
            };
            let message = match VerifiedSync::parse(bytes) {
                Ok(m) if m.carries_changes() && !can_write => {
                    out.forbidden(conn, &store, None);
                    continue;
                }
                Ok(m) => m,
                Err(e) => {
                    out.refuse(conn, code_for(&e), None, format!("document {}: {e}", entry.doc), None);
                    continue;
                }
            };
            let mut state = self.take_sync_state(conn, entry.doc);
            let record = self.store.record(&store, entry.doc, &entry.key)?;
            let before = record.heads();
            if let Err(e) = record.receive_sync(&mut state, message) {
                out.refuse(conn, code_for(&e), None, format!("document {}: {e}", entry.doc), None);
                continue;
            }
            let answer = record.sync_message(&mut state);
            if let Some((seq, data)) = self.log_new_changes(&store, entry.doc, &entry.key, &before, origin)? {
                last_seq = Some(seq);
                out.durable = true;
                fanout.push(data);
            }
            self.put_sync_state(conn, entry.doc, state);
            replies.push(SyncEntry { doc: entry.doc, key: entry.key, message: answer });
        }
        if !replies.is_empty() {
            out.send(conn, &Message::Sync { store: store.clone(), entries: replies });
        }
        if let Some(seq) = last_seq {
            self.fan_out(conn, &store, fanout, seq, out);
        }
        Ok(())
    }

    /// If `doc` changed since `before`, logs the new changes and returns (seq, what to fan out).
    fn log_new_changes(
        &mut self,
        store: &StoreRef,
        doc: DocId,
        key: &[u8],
        before: &[ChangeHash],
        origin: PeerId,
    ) -> Result<Option<(u64, DocData)>, S::Error> {
        let record = self.store.record(store, doc, key)?;
        let changes = record.changes_since(before);
        if changes.is_empty() {
            return Ok(None);
        }
        let seq = self.store.append(store, doc, key, changes.clone(), origin)?;
        Ok(Some((seq, DocData { doc, key: key.to_vec(), payload: Payload::Changes(changes) })))
    }

    /// Sends changes logged up to `seq` to every other subscriber of the store, one encoding
    /// shared by all, and the store's new position to every connection watching it.
    pub(super) fn fan_out(&self, from: ConnId, store: &StoreRef, docs: Vec<DocData>, seq: u64, out: &mut HubOutput) {
        let cursor = Cursor { epoch: self.store.epoch(), seq };
        let frame = Arc::new(wire::encode(&Message::Changes { store: store.clone(), docs, cursor: Some(cursor) }));
        let before = out.sends.len();
        out.sends.extend(self.subscribers(store, from).map(|to| Outgoing { to, frame: frame.clone() }));
        let receivers = out.sends.len() - before;
        let mut watchers = self.watchers(store).peekable();
        if watchers.peek().is_some() {
            let moved = Arc::new(wire::encode(&Message::Moved { store: store.clone(), cursor }));
            out.sends.extend(watchers.map(|to| Outgoing { to, frame: moved.clone() }));
        }
        out.effects.push(Effect::FannedOut { store: store.clone(), seq, receivers });
    }
}

/// The code a peer is told for bytes that were refused.
pub(super) fn code_for(e: &RecordError) -> ErrorCode {
    match e {
        RecordError::Foreign(_) => ErrorCode::Foreign,
        _ => ErrorCode::CorruptData,
    }
}
