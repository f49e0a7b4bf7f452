//! Reading a store without holding it: pages of a consistent export, and documents fetched by
//! id, each request answered through the background task.
//!
//! A request waits for its answer in [`Replies`]; the background task hands answers over as the
//! engine reports them. A lost connection or an error the hub reports meanwhile fails every
//! waiting request (the hub names no request in its errors, and an export does not survive its
//! connection).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tidepool_core::wire::{Cursor, DocData, DocRef, ErrorCode, ExportRecord, TipRecord};
use tidepool_core::{DocId, StoreRef};
use tokio::sync::oneshot;

use crate::client::Client;
use crate::error::ClientError;

/// One page of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPage {
    /// Names the export for the next page.
    pub export: u64,
    /// The hub cursor every page of this export is consistent with.
    pub cut: Cursor,
    /// Records in the hub's order (each document once over the whole export).
    pub records: Vec<ExportRecord>,
    /// No page follows.
    pub last: bool,
}

/// The answer to a fetch: documents answered by their tips, and whole documents (saved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    pub tips: Vec<TipRecord>,
    pub docs: Vec<DocData>,
}

type Answer<T> = oneshot::Sender<Result<T, ClientError>>;

/// An export page asked for and not yet received ([`Client::request_export_page`]).
#[derive(Debug)]
pub struct PageRequest {
    rx: oneshot::Receiver<Result<ExportPage, ClientError>>,
}

impl PageRequest {
    /// Waits for the page, at most `timeout`.
    pub async fn wait(self, timeout: Duration) -> Result<ExportPage, ClientError> {
        answer(self.rx, timeout, "an export page").await
    }
}

/// Requests waiting for the hub.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    /// Export requests per store, oldest first: the hub answers a connection's requests in order.
    exports: HashMap<StoreRef, VecDeque<Answer<ExportPage>>>,
    fetches: HashMap<u64, (Fetched, Answer<Fetched>)>,
    next_fetch: u64,
}

impl Replies {
    pub(crate) fn page(&mut self, store: &StoreRef, page: ExportPage) {
        let Some(waiting) = self.exports.get_mut(store) else { return };
        if let Some(tx) = waiting.pop_front() {
            let _ = tx.send(Ok(page));
        }
        if waiting.is_empty() {
            self.exports.remove(store);
        }
    }

    pub(crate) fn fetched(&mut self, request: u64, docs: Vec<DocData>, tips: Vec<TipRecord>, last: bool) {
        let Some((mut got, tx)) = self.fetches.remove(&request) else { return };
        got.docs.extend(docs);
        got.tips.extend(tips);
        if last {
            let _ = tx.send(Ok(got));
        } else {
            self.fetches.insert(request, (got, tx));
        }
    }

    /// Fails every waiting request.
    pub(crate) fn fail(&mut self, why: impl Fn() -> ClientError) {
        for tx in self.exports.drain().flat_map(|(_, waiting)| waiting) {
            let _ = tx.send(Err(why()));
        }
        for (_, (_, tx)) in self.fetches.drain() {
            let _ = tx.send(Err(why()));
        }
    }

    pub(crate) fn is_waiting(&self) -> bool {
        !self.exports.is_empty() || !self.fetches.is_empty()
    }
}

/// The error a waiting request fails with when the hub reports one.
pub(crate) fn hub_error(code: ErrorCode, detail: &str) -> ClientError {
    ClientError::Refused(format!("{detail} ({code:?})"))
}

impl Client {
    /// The next page of an export of `store`, at most `limit` records: `export: None` opens an
    /// export at the hub's current cut, later pages name it and the last document received
    /// (`after: None`: the page after the last one the hub sent).
    pub async fn export_page(
        &self,
        store: &StoreRef,
        export: Option<u64>,
        after: Option<DocId>,
        limit: u32,
        timeout: Duration,
    ) -> Result<ExportPage, ClientError> {
        self.request_export_page(store, export, after, limit)?.wait(timeout).await
    }

    /// Sends the request for an export page at once, without waiting for it: several requests
    /// of one export may be on their way, each answered in the order sent (a request after the
    /// last page gets an empty last page).
    pub fn request_export_page(
        &self,
        store: &StoreRef,
        export: Option<u64>,
        after: Option<DocId>,
        limit: u32,
    ) -> Result<PageRequest, ClientError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.lock();
            if !st.connected {
                return Err(ClientError::Disconnected);
            }
            st.replies.exports.entry(store.clone()).or_default().push_back(tx);
            st.engine.export(store.clone(), export, after, limit);
        }
        self.shared.kick.notify_one();
        Ok(PageRequest { rx })
    }

    /// Whole documents by id, as saved documents (for changes built on known heads).
    pub async fn fetch(&self, store: &StoreRef, docs: Vec<DocRef>, timeout: Duration) -> Result<Vec<DocData>, ClientError> {
        Ok(self.fetch_as(store, docs, false, timeout).await?.docs)
    }

    /// Documents by id, each as its tip where the hub keeps one (read without loading the
    /// document) and as the saved document otherwise.
    pub async fn fetch_tips(&self, store: &StoreRef, docs: Vec<DocRef>, timeout: Duration) -> Result<Fetched, ClientError> {
        self.fetch_as(store, docs, true, timeout).await
    }

    async fn fetch_as(&self, store: &StoreRef, docs: Vec<DocRef>, tips: bool, timeout: Duration) -> Result<Fetched, ClientError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.lock();
            if !st.connected {
                return Err(ClientError::Disconnected);
            }
            let request = st.replies.next_fetch;
            st.replies.next_fetch += 1;
            st.replies.fetches.insert(request, (Fetched::default(), tx));
            st.engine.fetch(request, store.clone(), docs, tips);
        }
        self.shared.kick.notify_one();
        answer(rx, timeout, "fetched documents").await
    }
}

async fn answer<T>(rx: oneshot::Receiver<Result<T, ClientError>>, timeout: Duration, what: &'static str) -> Result<T, ClientError> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(ClientError::Disconnected),
        Err(_) => Err(ClientError::Timeout(timeout, what)),
    }
}
