//! Bringing a subscriber up to date: the log after its cursor, a full download, or the heads of
//! every document for repair. Every way takes a constant number of round trips.

use crate::doc_id::{DocId, StoreRef};
use crate::sync::auth::Authorizer;
use crate::wire::{Cursor, DocData, DocHeads, Message, Payload};

use super::{ConnId, Hub, HubOutput, HubStore};

/// Documents with their encoded keys, in id order.
type DocPage = Vec<(DocId, Vec<u8>)>;

/// Pages through a store's documents in id order, `page` at a time.
struct DocPages {
    store: StoreRef,
    after: Option<DocId>,
    page: usize,
    done: bool,
}

impl DocPages {
    fn new(store: &StoreRef, page: usize) -> Self {
        DocPages { store: store.clone(), after: None, page: page.max(1), done: false }
    }

    /// The next page, or `None` after the last one. A page shorter than `page` is the last.
    fn next<S: HubStore>(&mut self, hub: &mut S) -> Result<Option<DocPage>, S::Error> {
        if self.done {
            return Ok(None);
        }
        let ids = hub.docs(&self.store, self.after, self.page)?;
        self.done = ids.len() < self.page;
        match ids.last() {
            Some((last, _)) => {
                self.after = Some(*last);
                Ok(Some(ids))
            }
            None => Ok(None),
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

impl<S: HubStore, A: Authorizer> Hub<S, A> {
    pub(super) fn cursor(&mut self, store: &StoreRef) -> Result<Cursor, S::Error> {
        Ok(Cursor { epoch: self.store.epoch(), seq: self.store.head_seq(store)? })
    }

    /// Brings a new subscriber up to date: from the log, as a full download, or by repair.
    pub(super) fn catch_up(
        &mut self,
        conn: ConnId,
        store: &StoreRef,
        since: Option<Cursor>,
        out: &mut HubOutput,
    ) -> Result<(), S::Error> {
        let head = self.cursor(store)?;
        match since {
            None => self.full_download(conn, store, head, out),
            Some(c) if c.epoch == head.epoch && c.seq <= head.seq => {
                if self.log_catch_up(conn, store, c.seq, head, out)? {
                    Ok(())
                } else {
                    self.send_heads(conn, store, head, out)
                }
            }
            Some(_) => self.send_heads(conn, store, head, out),
        }
    }

    /// Streams the log after `after`; `false` if the log no longer reaches back that far.
    fn log_catch_up(
        &mut self,
        conn: ConnId,
        store: &StoreRef,
        mut after: u64,
        head: Cursor,
        out: &mut HubOutput,
    ) -> Result<bool, S::Error> {
        let peer = self.peer(conn);
        while after < head.seq {
            let Some(entries) = self.store.log_since(store, after, self.config.page_docs)? else {
                return Ok(false);
            };
            let Some(last) = entries.last().map(|e| e.seq) else { break };
            // The subscriber's own pushes are not sent back to it.
            let docs: Vec<DocData> = entries
                .into_iter()
                .filter(|e| e.origin != peer)
                .map(|e| DocData { doc: e.doc, key: e.key, payload: Payload::Changes(e.changes) })
                .collect();
            let cursor = Some(Cursor { epoch: head.epoch, seq: last });
            out.send(conn, &Message::Changes { store: store.clone(), docs, cursor });
            after = last;
        }
        out.send(conn, &Message::CaughtUp { store: store.clone(), cursor: head });
        Ok(true)
    }

    /// Every document as one saved chunk, pages bounded by count and bytes.
    fn full_download(
        &mut self,
        conn: ConnId,
        store: &StoreRef,
        head: Cursor,
        out: &mut HubOutput,
    ) -> Result<(), S::Error> {
        let mut pages = DocPages::new(store, self.config.page_docs);
        while let Some(ids) = pages.next(&mut self.store)? {
            let send = |out: &mut HubOutput, docs| out.send(conn, &Message::Changes { store: store.clone(), docs, cursor: None });
            let rest = self.saved_pages(store, ids, |docs| send(out, docs))?;
            if !rest.is_empty() {
                send(out, rest);
            }
        }
        out.send(conn, &Message::CaughtUp { store: store.clone(), cursor: head });
        Ok(())
    }

    /// The documents `ids`, saved, handed to `send` in pages of about `page_bytes` as they
    /// fill; returns the last page, not yet sent (it may be empty).
    pub(super) fn saved_pages(
        &mut self,
        store: &StoreRef,
        ids: impl IntoIterator<Item = (DocId, Vec<u8>)>,
        mut send: impl FnMut(Vec<DocData>),
    ) -> Result<Vec<DocData>, S::Error> {
        let mut page = Vec::new();
        let mut bytes = 0;
        for (doc, key) in ids {
            let saved = self.store.saved(store, doc, &key)?;
            bytes += saved.len();
            page.push(DocData { doc, key, payload: Payload::Document(saved) });
            if bytes >= self.config.page_bytes {
                send(std::mem::take(&mut page));
                bytes = 0;
            }
        }
        Ok(page)
    }

    /// Every document's heads, for repair; the last page says so (an empty store sends one
    /// empty last page).
    fn send_heads(
        &mut self,
        conn: ConnId,
        store: &StoreRef,
        head: Cursor,
        out: &mut HubOutput,
    ) -> Result<(), S::Error> {
        let mut pages = DocPages::new(store, self.config.page_docs);
        loop {
            let ids = pages.next(&mut self.store)?.unwrap_or_default();
            let mut docs = Vec::with_capacity(ids.len());
            for (doc, key) in ids {
                let heads = self.store.record(store, doc, &key)?.heads().iter().map(|h| h.0).collect();
                docs.push(DocHeads { doc, key, heads });
            }
            let last = pages.is_done();
            out.send(conn, &Message::Heads { store: store.clone(), docs, cursor: head, last });
            if last {
                return Ok(());
            }
        }
    }
}
