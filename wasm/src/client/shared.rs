//! What the JavaScript object, the sync loop and in-flight operations share.

use std::cell::RefCell;

use futures_channel::oneshot;
use futures_util::lock::{Mutex, MutexGuard};

use std::collections::HashMap;

use std::ops::{Deref, DerefMut};

use tidepool_core::wire::ErrorCode;

use crate::client::remote::{self, Received};
use crate::client::{State, maintain, refresh};
use crate::error::Error;
use crate::js::lock::{self, Lock};
use crate::sync::driver::{COMPACT_ABOVE, COMPACT_STEP};
use crate::tabs::message::Message;
use crate::tabs::{self, Tabs};
use crate::events::{self, Listeners, Origin, Written};
use crate::status::{Connection, Status};
use crate::sync::link::Link;

/// What a delivered batch of engine output means for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Healthy,
    HubComplained,
    Disconnect,
}

/// The `status().error.code` for a hub error: `hub_` and the code in snake case
/// (`hub_shutting_down`), so apps can match it and people can read it.
fn error_name(code: ErrorCode) -> String {
    match code {
        ErrorCode::Unauthorized => "auth_rejected".into(),
        ErrorCode::Forbidden => "forbidden".into(),
        other => {
            let mut name = String::from("hub");
            for c in format!("{other:?}").chars() {
                if c.is_ascii_uppercase() {
                    name.push('_');
                }
                name.push(c.to_ascii_lowercase());
            }
            name
        }
    }
}

#[derive(Debug, Default)]
pub struct Shared {
    /// `None` once closed.
    pub state: Mutex<Option<State>>,
    pub listeners: RefCell<Listeners>,
    pub link: RefCell<Link>,
    status: RefCell<Status>,
    waiters: RefCell<Vec<oneshot::Sender<Result<(), Error>>>>,
    pub tabs: Tabs,
}

/// Exclusive access to the state for an operation that writes: this tab's mutex and the
/// database's cross-tab write lock, with the indexes caught up with what other tabs wrote.
#[derive(Debug)]
pub struct Exclusive<'a> {
    guard: MutexGuard<'a, Option<State>>,
    _write: Option<Lock>,
}

impl Deref for Exclusive<'_> {
    type Target = Option<State>;
    fn deref(&self) -> &Option<State> {
        &self.guard
    }
}

impl DerefMut for Exclusive<'_> {
    fn deref_mut(&mut self) -> &mut Option<State> {
        &mut self.guard
    }
}

impl Shared {
    pub fn new(state: State, tabs: Tabs) -> Self {
        Shared { state: Mutex::new(Some(state)), tabs, ..Default::default() }
    }

    /// This tab's mutex only: for reads, which go to the plain stores, and for what touches
    /// nothing stored.
    pub async fn lock(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().await
    }

    /// The mutex and the cross-tab write lock, caught up with other tabs (see `client::refresh`).
    /// The mutex is always taken first, so no tab holds the write lock while it waits for its own
    /// mutex.
    pub async fn exclusive(&self) -> Result<Exclusive<'_>, Error> {
        let mut guard = self.state.lock().await;
        let Some(state) = guard.as_mut() else { return Ok(Exclusive { guard, _write: None }) };
        let write = lock::acquire(&tabs::write_lock_name(&self.tabs.local_name), true, None).await?;
        refresh::refresh(state, self.tabs.is_leader(), false).await?;
        Ok(Exclusive { guard, _write: write })
    }

    /// Compacts a little if segments piled up; only the leader does (other tabs' segments are
    /// compacted when the leader picks them up).
    pub async fn compact_a_little(&self, state: &mut State) {
        if self.tabs.is_leader() && state.known.segment_count() > COMPACT_ABOVE {
            if let Err(e) = maintain::compact(state, COMPACT_STEP).await {
                web_sys::console::warn_1(&format!("tidepool: compaction failed: {e}").into());
            }
            self.flush(state).await;
        }
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Settles whatever the engine has queued since the last frame (pushes after a local write,
    /// subscriptions after a quarantine, entries it refused), then sends and reports it.
    pub async fn flush(&self, state: &mut State) {
        match remote::settle(state, &HashMap::new()).await {
            Ok(received) => {
                self.deliver(state, &received);
            }
            Err(e) => {
                web_sys::console::error_1(&format!("tidepool: could not store what the sync engine reported: {e}").into());
                self.refresh_status(Some(state));
            }
        }
    }

    /// Sends the frames, records what the hub complained about, refreshes the status and tells
    /// change listeners. Returns whether the connection should be kept.
    pub fn deliver(&self, state: &State, received: &Received) -> Delivery {
        self.link.borrow().send(&received.frames);
        let mut outcome = Delivery::Healthy;
        for (code, detail) in &received.hub_errors {
            let mut link = self.link.borrow_mut();
            link.error = Some((error_name(*code), detail.clone()));
            outcome = Delivery::HubComplained;
            if *code == ErrorCode::Unauthorized {
                // Reconnecting would only be refused again.
                link.auth_rejected = true;
                outcome = Delivery::Disconnect;
            }
        }
        self.refresh_status(Some(state));
        for (store, origin, written) in &received.changes {
            self.emit(store, *origin, written);
        }
        outcome
    }

    /// Recomputes the status; tells status listeners and settles `whenSynced` waiters if it
    /// changed. The leader's comes from its connection and engine (and goes to the other tabs);
    /// another tab's is the leader's as last heard (see `Tabs::follower_status`).
    pub fn refresh_status(&self, state: Option<&State>) {
        if let Some(state) = state {
            self.tabs.observe(state.generation, state.outbox.waiting());
        }
        let leader = self.tabs.is_leader();
        let link = self.link.borrow();
        let status = if leader {
            let connection = match (&link.socket, link.open) {
                (Some(_), true) => Connection::Online,
                (Some(_), false) => Connection::Connecting,
                (None, _) => Connection::Offline,
            };
            let pending = state.map_or(self.status.borrow().pending, |s| s.engine.pending());
            let synced = connection == Connection::Online && state.is_some_and(|s| s.engine.is_idle());
            Status { connection, pending, synced, error: link.error.clone(), leader: true }
        } else {
            self.tabs.follower_status()
        };
        let synced = status.synced;
        let auth_rejected = link.auth_rejected || status.error.as_ref().is_some_and(|(code, _)| code == "auth_rejected");
        let refused = auth_rejected || link.closed;
        drop(link);
        if synced || refused {
            let outcome = || if synced { Ok(()) } else if self.link.borrow().closed { Err(Error::Closed) } else { Err(Error::AuthRejected) };
            for waiter in self.waiters.borrow_mut().drain(..) {
                let _ = waiter.send(outcome());
            }
        }
        if leader && !self.link.borrow().closed {
            self.tabs.announce(&status, false);
        }
        if *self.status.borrow() == status {
            return;
        }
        *self.status.borrow_mut() = status.clone();
        let targets = self.listeners.borrow().status_targets();
        events::call_all(&targets, &status.to_js());
    }

    /// A receiver settled once the client is synced (or can never be).
    pub fn when_synced(&self) -> oneshot::Receiver<Result<(), Error>> {
        let (tx, rx) = oneshot::channel();
        let status = self.status.borrow().clone();
        let link = self.link.borrow();
        if status.synced {
            let _ = tx.send(Ok(()));
        } else if link.closed {
            let _ = tx.send(Err(Error::Closed));
        } else if link.auth_rejected || status.error.as_ref().is_some_and(|(code, _)| code == "auth_rejected") {
            let _ = tx.send(Err(Error::AuthRejected));
        } else if self.tabs.hub.is_none() {
            let _ = tx.send(Err(Error::NoHub));
        } else {
            self.waiters.borrow_mut().push(tx);
        }
        rx
    }

    /// Tells this tab's listeners and the other tabs about a stored write.
    pub fn emit(&self, store: &str, origin: Origin, written: &[Written]) {
        if written.is_empty() {
            return;
        }
        let targets = self.listeners.borrow().change_targets(store);
        // Built only for someone to hear it: a bulk write's event is one object per record.
        if targets.is_empty() && !self.tabs.has_peers() {
            return;
        }
        let event = events::change_event(store, origin, written);
        if self.tabs.has_peers() {
            self.tabs.post(&Message::Changes(event.clone()));
        }
        events::call_all(&targets, &event);
    }

    /// Tells this tab's listeners of `store` about a change event.
    pub fn emit_event(&self, store: &str, event: &wasm_bindgen::JsValue) {
        let targets = self.listeners.borrow().change_targets(store);
        events::call_all(&targets, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_error_codes_are_snake_case() {
        assert_eq!(error_name(ErrorCode::ShuttingDown), "hub_shutting_down");
        assert_eq!(error_name(ErrorCode::Overloaded), "hub_overloaded");
        assert_eq!(error_name(ErrorCode::UnsupportedVersion), "hub_unsupported_version");
        assert_eq!(error_name(ErrorCode::Unauthorized), "auth_rejected");
    }
}
