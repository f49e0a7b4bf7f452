//! What the JavaScript object, the sync loop and in-flight operations share.

use std::cell::RefCell;

use futures_channel::oneshot;
use futures_util::lock::{Mutex, MutexGuard};

use std::collections::HashMap;

use tidepool_core::wire::ErrorCode;

use crate::client::State;
use crate::client::remote::{self, Received};
use crate::error::Error;
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
}

impl Shared {
    pub fn new(state: State) -> Self {
        Shared { state: Mutex::new(Some(state)), ..Default::default() }
    }

    pub async fn lock(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().await
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

    /// Recomputes the status; tells status listeners and settles `whenSynced` waiters if it changed.
    pub fn refresh_status(&self, state: Option<&State>) {
        let link = self.link.borrow();
        let connection = match (&link.socket, link.open) {
            (Some(_), true) => Connection::Online,
            (Some(_), false) => Connection::Connecting,
            (None, _) => Connection::Offline,
        };
        let pending = state.map_or(self.status.borrow().pending, |s| s.engine.pending());
        let synced = connection == Connection::Online && state.is_some_and(|s| s.engine.is_idle());
        let status = Status { connection, pending, synced, error: link.error.clone() };
        let refused = link.auth_rejected || link.closed;
        drop(link);
        if synced || refused {
            let outcome = || if synced { Ok(()) } else if self.link.borrow().closed { Err(Error::Closed) } else { Err(Error::AuthRejected) };
            for waiter in self.waiters.borrow_mut().drain(..) {
                let _ = waiter.send(outcome());
            }
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
        } else if link.auth_rejected {
            let _ = tx.send(Err(Error::AuthRejected));
        } else if link.wake.is_none() {
            let _ = tx.send(Err(Error::NoHub));
        } else {
            self.waiters.borrow_mut().push(tx);
        }
        rx
    }

    pub fn emit(&self, store: &str, origin: Origin, written: &[Written]) {
        if written.is_empty() {
            return;
        }
        let targets = self.listeners.borrow().change_targets(store);
        if !targets.is_empty() {
            events::call_all(&targets, &events::change_event(store, origin, written));
        }
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
