//! What the JavaScript object, the sync loop and in-flight operations share.

use std::cell::RefCell;

use futures_channel::oneshot;
use futures_util::lock::{Mutex, MutexGuard};

use crate::client::State;
use crate::error::Error;
use crate::events::{self, Listeners, Origin, Written};
use crate::status::{Connection, Status};
use crate::sync::link::Link;

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

    /// Sends whatever the engine has queued (pushes after a local write, subscriptions after a
    /// quarantine) and refreshes the status.
    pub fn flush(&self, state: &mut State) {
        let output = state.engine.take_output();
        debug_assert!(output.events.is_empty(), "engine events are handled where frames are received");
        self.link.borrow().send(&output.frames);
        self.refresh_status(Some(state));
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
