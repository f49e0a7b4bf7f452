//! The bridge's connection to the hub: an ordinary sync peer (the native client) with the
//! job's own scoped token.

use std::collections::BTreeMap;
use std::time::Duration;

use thiserror::Error;
use tidepool_client::{ChangeState, Client, ClientError, ClientOptions, ExportPage, PageRequest, StoreMoved};
use tokio::sync::broadcast;
use tidepool_core::automerge::ActorId;
use tidepool_core::wire::{Cursor, DocData, DocRef, ErrorCode, TipRecord};
use tidepool_core::{DocId, Record, StoreRef};

use crate::output::FieldResult;
use crate::plan::PlannedChange;
use crate::run::Progress;

/// How often (in acknowledged changes) a long write-back reports progress.
pub const PROGRESS_EVERY: usize = 10_000;

#[derive(Debug, Error)]
pub enum LinkError {
    #[error("hub: {0}")]
    Client(#[from] ClientError),
    #[error("document {doc} fetched from the hub: {detail}")]
    Fetched { doc: DocId, detail: String },
    /// The hub refused a write-back change; `detail` is the hub's reason.
    #[error("the hub refused the write-back to {store} ({detail}){hint}", hint = refusal_hint(*code, store))]
    Refused { store: StoreRef, code: Option<ErrorCode>, detail: String },
}

fn refusal_hint(code: Option<ErrorCode>, store: &StoreRef) -> String {
    match code {
        Some(ErrorCode::Forbidden | ErrorCode::Unauthorized) => {
            format!("; the job's token needs write access to {store}")
        }
        _ => String::new(),
    }
}

/// How long to wait for the hub before giving up on a phase.
pub const HUB_TIMEOUT: Duration = Duration::from_secs(300);

/// Changes sent and not yet known to be acknowledged.
#[derive(Debug)]
#[must_use = "finish_send tells whether the hub stored the changes"]
pub struct Sending {
    ids: Vec<(u64, StoreRef)>,
}

#[derive(Debug)]
pub struct Link {
    client: Client,
}

impl Link {
    /// Connects and follows `stores`, waiting until they are synced. Fails at once if the URL
    /// cannot work, and after `connect_timeout` if the hub is not reached, naming the URL and
    /// the last attempt's error.
    pub async fn open(url: &str, token: &str, stores: &[StoreRef], connect_timeout: Duration) -> Result<Link, LinkError> {
        let client = Client::connect(ClientOptions::new(url, token));
        for s in stores {
            client.subscribe(s.clone());
        }
        client.wait_connected(connect_timeout).await?;
        client.wait_idle(HUB_TIMEOUT).await?;
        Ok(Link { client })
    }

    /// The bridge's copies of a store's records (deleted ones included), and the cursor they
    /// are consistent with.
    pub fn records(&self, store: &StoreRef) -> (BTreeMap<DocId, Record>, Option<Cursor>) {
        let records = self.client.records(store).into_iter().map(|r| (r.id(), r)).collect();
        (records, self.client.cursor(store))
    }

    /// Sends write-back changes and waits until the hub has acknowledged every one.
    pub async fn push(&self, changes: &[PlannedChange], progress: &dyn Progress) -> Result<usize, LinkError> {
        let mut ids = Vec::with_capacity(changes.len());
        for c in changes {
            if let Some(id) = self.client.push_change(&c.store, c.doc, &c.key, &c.bytes)? {
                ids.push((id, &c.store));
            }
        }
        for (n, (id, store)) in ids.iter().enumerate() {
            self.acked(*id, store).await?;
            if (n + 1) % PROGRESS_EVERY == 0 {
                progress.count("write-back", n + 1, ids.len());
            }
        }
        Ok(ids.len())
    }

    /// Waits for the hub's acknowledgement of one change; a refusal names the store and the
    /// hub's reason.
    async fn acked(&self, id: u64, store: &StoreRef) -> Result<(), LinkError> {
        match self.client.wait_acked(id, HUB_TIMEOUT).await? {
            ChangeState::Acked => Ok(()),
            state => {
                let (code, detail) = match self.client.refusal_of(id) {
                    Some((code, detail)) => (Some(code), format!("{code:?}: {detail}")),
                    None => (None, format!("change {id} is {state:?}")),
                };
                Err(LinkError::Refused { store: store.clone(), code, detail })
            }
        }
    }

    /// The next page of an export of `store` (`export: None` opens one at the hub's current cut).
    pub async fn export_page(&self, store: &StoreRef, export: Option<u64>, after: Option<DocId>, limit: u32) -> Result<ExportPage, LinkError> {
        Ok(self.client.export_page(store, export, after, limit, HUB_TIMEOUT).await?)
    }

    /// Asks for the page of export `export` after the last one the hub sent, without waiting for
    /// it ([`Link::page`] does), so that the hub reads the next pages while this side works.
    pub fn request_next_page(&self, store: &StoreRef, export: u64, limit: u32) -> Result<PageRequest, LinkError> {
        Ok(self.client.request_export_page(store, Some(export), None, limit)?)
    }

    /// The page a [`Link::request_next_page`] asked for.
    pub async fn page(&self, request: PageRequest) -> Result<ExportPage, LinkError> {
        Ok(request.wait(HUB_TIMEOUT).await?)
    }

    /// The documents of `results`, fetched from the hub and loaded; a document the hub sends
    /// that does not load is an error naming it.
    pub async fn fetch(&self, store: &StoreRef, results: &[FieldResult]) -> Result<BTreeMap<DocId, Record>, LinkError> {
        let mut wanted = Vec::with_capacity(results.len());
        for r in results {
            wanted.push(DocRef { doc: r.doc, key: r.key.encode().map_err(|e| LinkError::Fetched { doc: r.doc, detail: e.to_string() })? });
        }
        let docs = self.client.fetch(store, wanted, HUB_TIMEOUT).await?;
        load(store, docs)
    }

    /// The documents of `results` as their tips where the hub keeps one, and loaded otherwise
    /// (as [`Link::fetch`] loads them).
    pub async fn fetch_tips(
        &self,
        store: &StoreRef,
        results: &[FieldResult],
    ) -> Result<(BTreeMap<DocId, TipRecord>, BTreeMap<DocId, Record>), LinkError> {
        let mut wanted = Vec::with_capacity(results.len());
        for r in results {
            wanted.push(DocRef { doc: r.doc, key: r.key.encode().map_err(|e| LinkError::Fetched { doc: r.doc, detail: e.to_string() })? });
        }
        let fetched = self.client.fetch_tips(store, wanted, HUB_TIMEOUT).await?;
        let tips = fetched.tips.into_iter().map(|t| (t.doc, t)).collect();
        Ok((tips, load(store, fetched.docs)?))
    }

    /// Sends changes without keeping their documents and waits until the hub acknowledged
    /// every one; returns how many were sent.
    pub async fn send(&self, changes: &[PlannedChange]) -> Result<usize, LinkError> {
        let sent = self.start_send(changes)?;
        self.finish_send(sent).await
    }

    /// Sends changes without keeping their documents or waiting for the hub: the caller does
    /// other work (the next batch) while the hub stores them, then [`Link::finish_send`].
    pub fn start_send(&self, changes: &[PlannedChange]) -> Result<Sending, LinkError> {
        let mut ids = Vec::with_capacity(changes.len());
        for c in changes {
            // Built by core's write-back: the hub checks them, the bridge does not parse them again.
            ids.push((self.client.send_built_change(&c.store, c.doc, &c.key, c.bytes.clone()), c.store.clone()));
        }
        Ok(Sending { ids })
    }

    /// Waits until the hub acknowledged every change of `sent`; returns how many there were.
    pub async fn finish_send(&self, sent: Sending) -> Result<usize, LinkError> {
        for (id, store) in &sent.ids {
            self.acked(*id, store).await?;
        }
        Ok(sent.ids.len())
    }

    /// Follows where `store`'s change log stands, without its records: the hub sends the
    /// position at once and after every change, also after a reconnection.
    pub fn watch(&self, store: &StoreRef) -> broadcast::Receiver<StoreMoved> {
        let moves = self.client.moves();
        self.client.watch(store.clone());
        moves
    }

    pub async fn close(self) {
        self.client.close().await;
    }
}

/// Fetched documents, loaded; one that does not load is an error naming it.
fn load(store: &StoreRef, docs: Vec<DocData>) -> Result<BTreeMap<DocId, Record>, LinkError> {
    // The bridge never edits: write-back changes carry the run's own derived actor.
    let actor = ActorId::from([0u8; 16]);
    let mut out = BTreeMap::new();
    for d in docs {
        let record = Record::load(store, d.key, &d.payload, &actor).map_err(|e| LinkError::Fetched { doc: d.doc, detail: e.to_string() })?;
        out.insert(d.doc, record);
    }
    Ok(out)
}
