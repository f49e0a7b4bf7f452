//! Every tab of a database reads and writes; one of them, the leader, talks to the hub.
//!
//! - Storage is the truth, and every tab writes it itself. A write holds the database's
//!   cross-tab write lock (a Web Lock) and commits to IndexedDB before it is reported; under that
//!   lock a tab first rereads its in-memory indexes if another tab wrote since
//!   (`client::refresh`, driven by the generation every readwrite transaction bumps). So tabs
//!   take turns and never act on stale indexes, whatever happens to messages.
//! - The leader holds the leader lock (a Web Lock the browser releases when its tab closes or
//!   crashes), the WebSocket to the hub and compaction. It picks up the outbox rows other tabs
//!   wrote from IndexedDB (told by a message, and every second anyway), pushes them, and writes
//!   acknowledgements and what the hub sends. The other tabs wait for the leader lock; the first
//!   to get it rereads everything from storage and leads.
//! - A BroadcastChannel carries what is not durable: change events (so `subscribe` fires in
//!   every tab), the leader's status (so `status()` is the same in every tab), and `setOnline`.
//!   A lost message delays an event or a status, never loses a write.

pub mod leader;
pub mod message;

use std::cell::{Cell, RefCell};

use crate::js::channel::Channel;
use crate::js::lock::Lock;
use crate::status::{Connection, Status};
use message::Message;

/// The Web Lock taken by each operation that writes the database `local_name`.
pub fn write_lock_name(local_name: &str) -> String {
    format!("{local_name}#write")
}

/// The Web Lock the leading tab of `local_name` holds.
pub fn leader_lock_name(local_name: &str) -> String {
    format!("{local_name}#leader")
}

fn channel_name(local_name: &str) -> String {
    format!("tidepool:{local_name}")
}

/// This tab's part in the database's group of tabs.
#[derive(Debug, Default)]
pub struct Tabs {
    pub local_name: String,
    /// The hub URL, if the database syncs.
    pub hub: Option<String>,
    leader: Cell<bool>,
    pub leader_lock: RefCell<Option<Lock>>,
    /// Ends this tab's wait for the leader lock (at `close`).
    pub abort_wait: RefCell<Option<web_sys::AbortController>>,
    pub channel: RefCell<Option<Channel>>,
    /// The leader's last status and the generation it had then.
    heard: RefCell<Option<(Status, u64)>>,
    /// The generation of this tab's last write: the leader's status covers it once the leader has
    /// seen that generation.
    written: Cell<u64>,
    /// This tab's generation and pending count as of its last operation.
    generation: Cell<u64>,
    own_pending: Cell<usize>,
    /// What the leader last told the others.
    announced: RefCell<Option<(Status, u64)>>,
    /// A pickup of other tabs' writes is waiting to run.
    pub pickup_scheduled: Cell<bool>,
    /// Another tab of the database was heard from (or leads): change events are worth posting.
    peers: Cell<bool>,
}

impl Tabs {
    pub fn new(local_name: String, hub: Option<String>) -> Self {
        Tabs { local_name, hub, ..Default::default() }
    }

    pub fn has_peers(&self) -> bool {
        self.peers.get()
    }

    pub fn met_peer(&self) {
        self.peers.set(true);
    }

    pub fn is_leader(&self) -> bool {
        self.leader.get()
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(leader);
    }

    /// Notes this tab's state after an operation.
    pub fn observe(&self, generation: u64, pending: usize) {
        self.generation.set(generation);
        self.own_pending.set(pending);
    }

    /// Notes that this tab wrote, reaching `generation`.
    pub fn wrote(&self, generation: u64) {
        self.written.set(generation);
    }

    pub fn hear(&self, status: Status, generation: u64) {
        let newer = self.heard.borrow().as_ref().is_none_or(|(_, g)| *g <= generation);
        if newer {
            *self.heard.borrow_mut() = Some((status, generation));
        }
    }

    /// A follower's status: the leader's, except that a write of this tab the leader has not
    /// seen yet keeps it from being synced and counts as pending.
    pub fn follower_status(&self) -> Status {
        let (heard, generation) = self.heard.borrow().clone().unwrap_or_else(|| {
            let connection = if self.hub.is_some() { Connection::Connecting } else { Connection::Offline };
            (Status { connection, ..Status::default() }, 0)
        });
        let caught_up = generation >= self.written.get();
        let pending = if caught_up { heard.pending } else { heard.pending.max(self.own_pending.get()) };
        Status { connection: heard.connection, pending, synced: heard.synced && caught_up, error: heard.error, leader: false }
    }

    /// The leader tells the others its status when it or the generation changed (or always,
    /// with `force`).
    pub fn announce(&self, status: &Status, force: bool) {
        let now = (status.clone(), self.generation.get());
        if !force && self.announced.borrow().as_ref() == Some(&now) {
            return;
        }
        self.post(&Message::Status(now.0.clone(), now.1));
        *self.announced.borrow_mut() = Some(now);
    }

    pub fn post(&self, message: &Message) {
        if let Some(channel) = self.channel.borrow().as_ref() {
            channel.post(&message.to_js());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn online(pending: usize, synced: bool) -> Status {
        Status { connection: Connection::Online, pending, synced, error: None, leader: true }
    }

    #[test]
    fn a_follower_is_not_synced_until_the_leader_saw_its_write() {
        let tabs = Tabs::new("db".into(), Some("ws://hub".into()));
        assert_eq!(tabs.follower_status().connection, Connection::Connecting, "no leader heard yet");
        tabs.hear(online(0, true), 10);
        assert!(tabs.follower_status().synced);
        tabs.observe(12, 3);
        tabs.wrote(12);
        let status = tabs.follower_status();
        assert!(!status.synced && !status.leader);
        assert_eq!(status.pending, 3, "its own unsynced writes count until the leader has them");
        tabs.hear(online(3, false), 12);
        assert_eq!(tabs.follower_status().pending, 3);
        tabs.hear(online(0, true), 13);
        assert!(tabs.follower_status().synced);
    }

    #[test]
    fn an_older_status_does_not_replace_a_newer_one() {
        let tabs = Tabs::new("db".into(), None);
        assert_eq!(tabs.follower_status().connection, Connection::Offline);
        tabs.hear(online(0, true), 20);
        tabs.hear(online(5, false), 19);
        assert!(tabs.follower_status().synced);
    }
}
