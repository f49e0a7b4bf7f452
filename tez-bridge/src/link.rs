//! The bridge's connection to the hub: an ordinary sync peer (the native client) with the
//! job's own scoped token.

use std::collections::BTreeMap;
use std::time::Duration;

use thiserror::Error;
use tidepool_core::wire::Cursor;
use tidepool_core::{DocId, Record, StoreRef};
use tidepool_client::{ChangeState, Client, ClientError, ClientOptions};

use crate::plan::PlannedChange;

#[derive(Debug, Error)]
pub enum LinkError {
    #[error("hub: {0}")]
    Client(#[from] ClientError),
    #[error("the hub refused write-back change {0} ({1:?})")]
    Refused(u64, ChangeState),
}

/// How long to wait for the hub before giving up on a phase.
pub const HUB_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Link {
    client: Client,
}

impl Link {
    /// Connects and follows `stores`, waiting until they are synced.
    pub async fn open(url: &str, token: &str, stores: &[StoreRef]) -> Result<Link, LinkError> {
        let client = Client::connect(ClientOptions::new(url, token));
        for s in stores {
            client.subscribe(s.clone());
        }
        client.wait_connected(HUB_TIMEOUT).await?;
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
    pub async fn push(&self, changes: &[PlannedChange]) -> Result<usize, LinkError> {
        let mut ids = Vec::with_capacity(changes.len());
        for c in changes {
            if let Some(id) = self.client.push_change(&c.store, c.doc, &c.key, &c.bytes)? {
                ids.push(id);
            }
        }
        for id in &ids {
            match self.client.wait_acked(*id, HUB_TIMEOUT).await? {
                ChangeState::Acked => {}
                other => return Err(LinkError::Refused(*id, other)),
            }
        }
        Ok(ids.len())
    }

    pub async fn close(self) {
        self.client.close().await;
    }
}
