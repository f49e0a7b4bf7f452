//! The state the API calls and the background task share: the engine, the documents, the fate
//! of local changes, and the signals between them.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use tidepool_core::sync::{ClientEngine, OutboxId};
use tidepool_core::wire::ErrorCode;
use tokio::sync::{Notify, broadcast, watch};

use crate::change::{RemoteChange, StoreMoved};
use crate::docs::Docs;
use crate::export::Replies;
use crate::error::ConnectError;
use crate::options::ClientOptions;

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) engine: ClientEngine,
    pub(crate) docs: Docs,
    pub(crate) next_id: OutboxId,
    pub(crate) pending: HashSet<OutboxId>,
    /// Refused changes, with the hub's error for each, for the caller to show.
    pub(crate) refused: HashMap<OutboxId, (ErrorCode, String)>,
    pub(crate) connected: bool,
    pub(crate) connections: u64,
    pub(crate) last_error: Option<(ErrorCode, String)>,
    /// The last failed connection attempt; cleared by a successful one.
    pub(crate) last_connect_error: Option<ConnectError>,
    pub(crate) closed: bool,
    /// Export and fetch requests waiting for the hub.
    pub(crate) replies: Replies,
}

impl State {
    pub(crate) fn new(engine: ClientEngine, docs: Docs) -> State {
        State {
            engine,
            docs,
            next_id: 1,
            pending: HashSet::new(),
            refused: HashMap::new(),
            connected: false,
            connections: 0,
            last_error: None,
            last_connect_error: None,
            closed: false,
            replies: Replies::default(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) options: ClientOptions,
    pub(crate) state: Mutex<State>,
    /// Wakes the background task: the engine has frames to send.
    pub(crate) kick: Notify,
    /// Raised on every change of the state, for the waiting API.
    pub(crate) version: watch::Sender<u64>,
    pub(crate) online: watch::Sender<bool>,
    pub(crate) events: broadcast::Sender<RemoteChange>,
    pub(crate) moves: broadcast::Sender<StoreMoved>,
}

impl Shared {
    pub(crate) fn new(options: ClientOptions, state: State) -> Shared {
        Shared {
            options,
            state: Mutex::new(state),
            kick: Notify::new(),
            version: watch::Sender::new(0),
            online: watch::Sender::new(true),
            events: broadcast::Sender::new(65_536),
            moves: broadcast::Sender::new(4_096),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind, still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}
