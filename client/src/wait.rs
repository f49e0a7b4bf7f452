//! Waiting for the hub: connected, idle, a change acknowledged, an error reported, the
//! connection closed, and many clients converged on the same records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidepool_core::StoreRef;
use tidepool_core::sync::OutboxId;
use tidepool_core::wire::ErrorCode;

use crate::change::ChangeState;
use crate::client::Client;
use crate::error::ClientError;
use crate::state::State;

impl Client {
    async fn wait_for(
        &self,
        timeout: Duration,
        what: &'static str,
        done: impl Fn(&State) -> bool,
    ) -> Result<(), ClientError> {
        let mut version = self.shared.version.subscribe();
        let wait = async {
            loop {
                {
                    let st = self.shared.lock();
                    if done(&st) {
                        return Ok(());
                    }
                    if st.closed {
                        return Err(ClientError::Closed);
                    }
                }
                if version.changed().await.is_err() {
                    return Err(ClientError::Closed);
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| ClientError::Timeout(timeout, what))?
    }

    /// Until connected. Fails at once with [`ClientError::Connect`] if the last attempt failed
    /// in a way retrying cannot fix (a bad scheme, an unknown host, an HTTP answer instead of a
    /// WebSocket), and at the timeout with the last attempt's error if there was one: the caller
    /// learns the URL and the cause, not only that time ran out.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        let waited = self.wait_for(timeout, "a connection", |st| st.connected || permanent_failure(st)).await;
        self.unless_unreachable(waited)
    }

    /// Until connected, every subscription is live and every local change is acknowledged.
    /// Fails at once with [`ClientError::Refused`] if the hub refused a subscription, which
    /// would otherwise keep the client from ever being idle, and like
    /// [`wait_connected`](Client::wait_connected) if the hub cannot be reached.
    pub async fn wait_idle(&self, timeout: Duration) -> Result<(), ClientError> {
        let idle = |st: &State| st.connected && st.engine.is_idle();
        let waited = self
            .wait_for(timeout, "the client to be idle", |st| {
                idle(st) || st.engine.refusal().is_some() || permanent_failure(st)
            })
            .await;
        self.unless_unreachable(waited)?;
        let st = self.shared.lock();
        match st.engine.refusal() {
            Some(detail) if !idle(&st) => Err(ClientError::Refused(detail.to_owned())),
            _ => Ok(()),
        }
    }

    /// A wait's result, unless the client is not connected and knows why: then that reason.
    fn unless_unreachable(&self, waited: Result<(), ClientError>) -> Result<(), ClientError> {
        let st = self.shared.lock();
        match &st.last_connect_error {
            Some(e) if !st.connected && (waited.is_err() || e.cause.is_permanent()) => Err(ClientError::Connect(e.clone())),
            _ => waited,
        }
    }

    pub async fn wait_acked(&self, id: OutboxId, timeout: Duration) -> Result<ChangeState, ClientError> {
        self.wait_for(timeout, "an acknowledgement", |st| !st.pending.contains(&id)).await?;
        Ok(self.state_of(id))
    }

    /// Until the hub reports an error (returns it).
    pub async fn wait_error(&self, timeout: Duration) -> Result<(ErrorCode, String), ClientError> {
        self.wait_for(timeout, "an error from the hub", |st| st.last_error.is_some()).await?;
        self.last_error().ok_or(ClientError::Closed)
    }

    /// Closes the connection and stops the client.
    pub async fn close(self) {
        self.set_online(false);
        let mut version = self.shared.version.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while self.is_connected() {
                if version.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        self.shared.lock().closed = true;
        self.shared.bump();
    }
}

fn permanent_failure(st: &State) -> bool {
    !st.connected && st.last_connect_error.as_ref().is_some_and(|e| e.cause.is_permanent())
}

/// Waits until every client is idle and all hold the same records.
pub async fn converge(clients: &[Arc<Client>], store: &StoreRef, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let mut idle = true;
        for c in clients {
            let left = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
            idle &= c.wait_idle(left).await.is_ok();
        }
        if idle {
            let first = clients[0].values(store);
            if clients[1..].iter().all(|c| c.values(store) == first) {
                return true;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        // Comparing every replica is not free; do not let the check compete with the sync.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
