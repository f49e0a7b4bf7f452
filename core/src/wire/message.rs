//! The protocol messages and the types they carry.

use std::fmt;

use crate::doc_id::{DocId, StoreRef};

/// A peer's stable identity for one storage lifetime: a peer that loses its storage takes a new
/// id (and a new Automerge actor).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, bincode::Encode, bincode::Decode)]
pub struct PeerId(pub [u8; 16]);

impl PeerId {
    /// The origin the hub logs for changes nobody pushed just now: changes that waited in a
    /// document for a missing dependency and were completed by someone else's push.
    pub const HUB: PeerId = PeerId([0; 16]);
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", hex::encode(self.0))
    }
}

/// A position in a hub's per-store change log. `epoch` names one lifetime of the hub's storage:
/// a cursor from another epoch says nothing about this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub struct Cursor {
    pub epoch: [u8; 16],
    pub seq: u64,
}

impl Cursor {
    /// "I hold documents of this store but no position in any log": what a subscriber whose
    /// first download was cut off resumes from. No hub has this epoch, so the hub answers with
    /// repair (heads of every document), which also finds what the subscriber has and the hub
    /// lacks; resuming from no cursor would be taken as "I hold nothing".
    pub const UNPLACED: Cursor = Cursor { epoch: [0; 16], seq: 0 };
}

/// A store to follow, and how far the subscriber already got.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Subscription {
    pub store: StoreRef,
    pub since: Option<Cursor>,
}

/// Automerge bytes for one document. `key` is the record's canonical key encoding.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct DocData {
    pub doc: DocId,
    pub key: Vec<u8>,
    pub payload: Payload,
}

/// The two shapes Automerge bytes travel in. Each is parsed completely before anything is
/// applied, so a corrupt chunk leaves the document untouched.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum Payload {
    /// Individual encoded changes.
    Changes(Vec<Vec<u8>>),
    /// A whole saved document (compressed columnar form): how a full download travels.
    Document(Vec<u8>),
}

impl Payload {
    /// Bytes of Automerge data carried.
    pub fn len(&self) -> usize {
        match self {
            Payload::Changes(c) => c.iter().map(Vec::len).sum(),
            Payload::Document(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One document's heads, as a hub lists them for repair.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct DocHeads {
    pub doc: DocId,
    pub key: Vec<u8>,
    pub heads: Vec<[u8; 32]>,
}

/// One document's turn in Automerge's sync protocol. `message: None` means "nothing more to
/// say", which ends the exchange for that document once the other side agrees.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct SyncEntry {
    pub doc: DocId,
    pub key: Vec<u8>,
    pub message: Option<Vec<u8>>,
}

/// One record of an export: the document's heads and its plain value as JSON (Tidepool's JSON
/// mapping, written by the hub's storage when the document last changed); `value` is `None` for
/// a deleted record.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct ExportRecord {
    pub doc: DocId,
    pub key: Vec<u8>,
    pub heads: Vec<[u8; 32]>,
    pub value: Option<Vec<u8>>,
}

/// A document answered by its tip instead of the whole document: its export columns (heads,
/// plain value) and its tip (core's [`crate::Tip`], encoded) at those heads, for a peer that
/// builds a change on known heads without the document.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct TipRecord {
    pub doc: DocId,
    pub key: Vec<u8>,
    pub heads: Vec<[u8; 32]>,
    pub value: Option<Vec<u8>>,
    pub tip: Vec<u8>,
}

/// A document asked for by id.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct DocRef {
    pub doc: DocId,
    pub key: Vec<u8>,
}

/// What went wrong, as the other side may know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub enum ErrorCode {
    /// The frame could not be decoded.
    Malformed,
    /// The frame's protocol version is not spoken here.
    UnsupportedVersion,
    /// The frame exceeds the size limit.
    TooLarge,
    /// No valid token: missing, forged, expired, or for another audience.
    Unauthorized,
    /// The token does not grant this access (also used for stores that may not exist).
    Forbidden,
    /// Automerge bytes that do not parse.
    CorruptData,
    /// More documents in one batch than allowed.
    TooManyDocs,
    /// Too many connections, or the peer is sending faster than the hub can keep up.
    Overloaded,
    /// A message that is valid but not expected now (e.g. a push before hello).
    ProtocolViolation,
    /// The connection was idle too long.
    IdleTimeout,
    /// The hub is shutting down; reconnect later.
    ShuttingDown,
    /// A failure on the hub's side; the detail is in the hub's log.
    Internal,
    /// Automerge bytes of a document not created by Tidepool (not descended from its genesis
    /// change); nothing of them was stored.
    Foreign,
    /// An export the hub no longer holds (it ended, or the connection that opened it closed).
    UnknownExport,
}

/// A protocol message. Client-to-hub: `Hello`, `Subscribe`, `Push`, `Sync`, `Export`, `Fetch`,
/// `Watch`. Hub-to-client: `Welcome`, `Ack`, `Changes`, `CaughtUp`, `Heads`, `Sync`, `Error`,
/// `ExportPage`, `Fetched`, `Moved`.
#[derive(Debug, Clone, PartialEq, bincode::Encode, bincode::Decode)]
pub enum Message {
    /// First frame of a connection. The token travels here because browsers cannot set
    /// WebSocket headers.
    Hello { peer: PeerId, token: String, agent: String },
    /// The hub accepted the hello.
    Welcome { epoch: [u8; 16], max_frame: u32, max_docs_per_batch: u32 },
    /// Follow these stores from the given cursors.
    Subscribe { subscriptions: Vec<Subscription> },
    /// Local changes for the hub; acknowledged by `Ack` with the same batch number once durable.
    Push { batch: u64, store: StoreRef, docs: Vec<DocData> },
    /// The batch is durable, except for `incomplete` documents whose changes depend on changes the
    /// hub does not have; the hub starts Automerge's sync protocol for those.
    Ack { batch: u64, incomplete: Vec<DocId> },
    /// Changes for a subscribed store. With a cursor, the receiver may persist it once the frame is
    /// applied; without one (pages of a full download), only the closing `CaughtUp` cursor counts.
    Changes { store: StoreRef, docs: Vec<DocData>, cursor: Option<Cursor> },
    /// The subscriber now has everything up to `cursor`; live changes follow.
    CaughtUp { store: StoreRef, cursor: Cursor },
    /// The hub cannot tell what the subscriber lacks (unknown epoch, or a cursor the log no longer
    /// reaches): here is every document's heads; run the sync protocol for those that differ. After
    /// that the subscriber has everything up to `cursor`. `last` marks the final page.
    Heads { store: StoreRef, docs: Vec<DocHeads>, cursor: Cursor, last: bool },
    /// A round of Automerge's sync protocol for several documents at once.
    Sync { store: StoreRef, entries: Vec<SyncEntry> },
    /// Something went wrong; `batch` names the push it concerns, if any.
    Error { code: ErrorCode, detail: String, batch: Option<u64> },
    /// The next page of a consistent export of a store (needs read access). Without `export`, the
    /// hub opens one at its current cut; later pages name it, and continue after `after` or,
    /// without it, after the last page the hub sent (so several requests may be on their way at
    /// once). A request that arrives after the last page gets an empty last page.
    Export { store: StoreRef, export: Option<u64>, after: Option<DocId>, limit: u32 },
    /// A page of an export, every page as of the same `cut`, each document once over the whole
    /// export (in the hub's storage order, not necessarily by id); `last` ends the export (the
    /// hub then forgets it).
    ExportPage { store: StoreRef, export: u64, cut: Cursor, records: Vec<ExportRecord>, last: bool },
    /// Asks for whole documents (needs read access): how a peer without a replica builds
    /// changes on known heads. With `tips`, a document the hub keeps a tip for is answered by
    /// that instead (a [`TipRecord`]), which the hub reads without loading the document.
    Fetch { request: u64, store: StoreRef, docs: Vec<DocRef>, tips: bool },
    /// Documents of a `Fetch`, saved or as tips, in frames of bounded size; `last` marks the
    /// final frame.
    Fetched { request: u64, store: StoreRef, docs: Vec<DocData>, tips: Vec<TipRecord>, last: bool },
    /// Tell me where these stores' logs stand, now and whenever they move, without sending
    /// changes (needs read access): how a peer without a replica learns that a store changed.
    Watch { stores: Vec<StoreRef> },
    /// A watched store's log now reaches `cursor` (sent once on `Watch`, then after every
    /// change logged to the store).
    Moved { store: StoreRef, cursor: Cursor },
}

impl Message {
    /// The store this message concerns, if it concerns one.
    pub fn store(&self) -> Option<&StoreRef> {
        match self {
            Message::Push { store, .. }
            | Message::Changes { store, .. }
            | Message::CaughtUp { store, .. }
            | Message::Heads { store, .. }
            | Message::Sync { store, .. }
            | Message::Export { store, .. }
            | Message::ExportPage { store, .. }
            | Message::Fetch { store, .. }
            | Message::Fetched { store, .. }
            | Message::Moved { store, .. } => Some(store),
            _ => None,
        }
    }

    /// Documents this message touches (for shells that load documents on demand).
    pub fn doc_ids(&self) -> Vec<DocId> {
        match self {
            Message::Push { docs, .. } | Message::Changes { docs, .. } => docs.iter().map(|d| d.doc).collect(),
            Message::ExportPage { records, .. } => records.iter().map(|r| r.doc).collect(),
            Message::Fetch { docs, .. } => docs.iter().map(|d| d.doc).collect(),
            Message::Fetched { docs, tips, .. } => docs.iter().map(|d| d.doc).chain(tips.iter().map(|t| t.doc)).collect(),
            Message::Heads { docs, .. } => docs.iter().map(|d| d.doc).collect(),
            Message::Sync { entries, .. } => entries.iter().map(|e| e.doc).collect(),
            _ => vec![],
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Welcome { .. } => "welcome",
            Message::Subscribe { .. } => "subscribe",
            Message::Push { .. } => "push",
            Message::Ack { .. } => "ack",
            Message::Changes { .. } => "changes",
            Message::CaughtUp { .. } => "caught_up",
            Message::Heads { .. } => "heads",
            Message::Sync { .. } => "sync",
            Message::Error { .. } => "error",
            Message::Export { .. } => "export",
            Message::ExportPage { .. } => "export_page",
            Message::Fetch { .. } => "fetch",
            Message::Fetched { .. } => "fetched",
            Message::Watch { .. } => "watch",
            Message::Moved { .. } => "moved",
        }
    }
}
