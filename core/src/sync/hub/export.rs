//! Exports and fetches: how a peer without a replica (the analytics bridge) reads a store.
//!
//! An export streams every record of a store as it was at one cut (document id, key, heads and
//! plain value), a page per request, so neither end ever holds the store. The hub's store keeps
//! the cut (a read snapshot) until the last page or until the connection closes. A request that
//! names no document continues after the last page sent, so a reader may keep several requests
//! on their way; one that arrives after the last page gets an empty last page. A fetch returns
//! whole documents by id, for changes built on known heads; one that asks for tips gets, for
//! every document whose tip the store keeps, that instead (read without loading the document).

use crate::doc_id::{DocId, StoreRef};
use crate::sync::auth::Authorizer;
use crate::wire::{Cursor, DocRef, ErrorCode, Message, TipRecord};

use super::conn::{ENDED_EXPORTS, OpenExport};
use super::{ConnId, Hub, HubOutput, HubStore};

/// Exports one connection may hold open at once.
const MAX_OPEN_EXPORTS: usize = 4;

impl<S: HubStore, A: Authorizer> Hub<S, A> {
    pub(super) fn export(
        &mut self,
        conn: ConnId,
        store: StoreRef,
        export: Option<u64>,
        after: Option<DocId>,
        limit: u32,
        out: &mut HubOutput,
    ) -> Result<(), S::Error> {
        let most = self.config.export_docs.min(self.config.limits.max_docs).max(1);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX).clamp(1, most);
        let (id, seq, after) = match export {
            Some(id) => {
                let state = self.conns.get(&conn);
                let open = state.and_then(|c| c.exports.get(&id)).filter(|o| o.store == store);
                let ended = state.and_then(|c| c.ended.iter().find(|(e, o)| *e == id && o.store == store));
                if let Some(open) = open {
                    // No document named: on from the last page sent.
                    (id, open.seq, after.or(open.last))
                } else if let Some((_, ended)) = ended {
                    // Asked for before the last page arrived: there is nothing after it.
                    let cut = Cursor { epoch: self.store.epoch(), seq: ended.seq };
                    out.send(conn, &Message::ExportPage { store, export: id, cut, records: vec![], last: true });
                    return Ok(());
                } else {
                    out.refuse(conn, ErrorCode::UnknownExport, None, format!("no export {id} of {store} on this connection"), None);
                    return Ok(());
                }
            }
            None => {
                if self.conns.get(&conn).is_some_and(|c| c.exports.len() >= MAX_OPEN_EXPORTS) {
                    let detail = format!("at most {MAX_OPEN_EXPORTS} exports open per connection");
                    out.refuse(conn, ErrorCode::Overloaded, None, detail, None);
                    return Ok(());
                }
                let Some((id, seq)) = self.store.export_open(&store)? else {
                    let detail = "the hub holds as many exports as it can; retry later".to_owned();
                    out.refuse(conn, ErrorCode::Overloaded, None, detail, None);
                    return Ok(());
                };
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.exports.insert(id, OpenExport { store: store.clone(), seq, last: None });
                }
                (id, seq, after)
            }
        };
        let Some(mut records) = self.store.export_page(id, after, limit)? else {
            self.end_export(conn, id, false);
            out.refuse(conn, ErrorCode::UnknownExport, None, format!("export {id} of {store} has ended, or the document it was asked to continue after is not in it"), None);
            return Ok(());
        };
        // A page is bounded by bytes too (large values), with at least one record so that the
        // export always moves on; a page cut short is not the last.
        let fits = fitting(&records, self.config.page_bytes);
        let trimmed = fits < records.len();
        records.truncate(fits);
        let last = !trimmed && records.len() < limit;
        if let Some(open) = self.conns.get_mut(&conn).and_then(|c| c.exports.get_mut(&id)) {
            open.last = records.last().map(|r| r.doc).or(after);
        }
        if last {
            self.end_export(conn, id, true);
        }
        let cut = Cursor { epoch: self.store.epoch(), seq };
        out.send(conn, &Message::ExportPage { store, export: id, cut, records, last });
        Ok(())
    }

    /// Closes an export; one that `finished` (sent its last page) is remembered for a while.
    pub(super) fn end_export(&mut self, conn: ConnId, export: u64, finished: bool) {
        if let Some(c) = self.conns.get_mut(&conn)
            && let Some(open) = c.exports.remove(&export)
            && finished
        {
            if c.ended.len() == ENDED_EXPORTS {
                c.ended.pop_front();
            }
            c.ended.push_back((export, open));
        }
        self.store.export_close(export);
    }

    /// Whole documents, saved, in frames bounded like catch-up pages.
    pub(super) fn fetch(
        &mut self,
        conn: ConnId,
        request: u64,
        store: StoreRef,
        docs: Vec<DocRef>,
        tips: bool,
        out: &mut HubOutput,
    ) -> Result<(), S::Error> {
        let mut rest = Vec::with_capacity(docs.len());
        let mut records: Vec<TipRecord> = Vec::new();
        let mut bytes = 0;
        for DocRef { doc, key } in docs {
            match tips.then(|| self.store.tip_record(&store, doc, &key)).transpose()?.flatten() {
                Some(record) => {
                    bytes += record.key.len() + 32 * record.heads.len() + record.tip.len() + record.value.as_ref().map_or(0, Vec::len);
                    records.push(record);
                    if bytes >= self.config.page_bytes {
                        let tips = std::mem::take(&mut records);
                        out.send(conn, &Message::Fetched { request, store: store.clone(), docs: vec![], tips, last: false });
                        bytes = 0;
                    }
                }
                None => rest.push((doc, key)),
            }
        }
        let page = self.saved_pages(&store, rest, |docs| {
            out.send(conn, &Message::Fetched { request, store: store.clone(), docs, tips: vec![], last: false });
        })?;
        out.send(conn, &Message::Fetched { request, store, docs: page, tips: records, last: true });
        Ok(())
    }
}

/// How many of `records`, from the first, fit in `bytes` (at least one).
fn fitting(records: &[crate::wire::ExportRecord], bytes: usize) -> usize {
    let mut total = 0;
    for (i, r) in records.iter().enumerate() {
        total += r.key.len() + 32 * r.heads.len() + r.value.as_ref().map_or(0, Vec::len) + 32;
        if total > bytes {
            return i.max(1);
        }
    }
    records.len()
}
