//! Records: one IndexedDB record as one Automerge document, with put, get, delete, increment and
//! text splices.
//!
//! The document layout (root keys, genesis change) lives in [`crate::layout`]; foreign bytes are
//! checked by [`crate::foreign`] before any of them is applied.

use automerge::sync::{self, SyncDoc};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, Change, ChangeHash, ObjId, ObjType, Prop, ROOT, ReadDoc, ScalarValue};
use thiserror::Error;

use crate::doc_id::{DocId, StoreRef};
use crate::foreign::{self, Verified, VerifiedSync};
use crate::key::{Key, KeyError};
use crate::layout::{LIVE, Provenance, VALUE, genesis, mark_live};
use crate::reconcile::{ReconcileError, reconcile_map, reconcile_prop};
use crate::value::{PathSegment, Value, ValueError};
use crate::wire::Payload;

mod put_cache;
mod update;
use put_cache::PutCache;
pub use update::{FieldUpdate, Patch};

/// What went wrong with a record operation.
#[derive(Debug, Error)]
pub enum RecordError {
    #[error("invalid key: {0}")]
    Key(#[from] KeyError),
    #[error("value cannot be stored: {0}")]
    Value(#[from] ValueError),
    #[error("the record does not exist")]
    NotFound,
    #[error("nothing at path {0:?}")]
    NoSuchPath(Vec<PathSegment>),
    #[error("path {path:?} holds {found}, not {expected}")]
    WrongType { path: Vec<PathSegment>, expected: &'static str, found: String },
    #[error("text splice out of range: index {index} + delete {delete} > length {len}")]
    SpliceOutOfRange { index: usize, delete: usize, len: usize },
    #[error("document bytes are corrupt: {0}")]
    Corrupt(automerge::AutomergeError),
    #[error("a change does not parse: {0}")]
    CorruptChange(String),
    #[error("a sync message does not decode: {0}")]
    SyncMessage(String),
    #[error(
        "not a Tidepool document: change {0} has no dependencies and is not Tidepool's genesis change (a document created outside Tidepool; start from a Tidepool document instead)"
    )]
    Foreign(ChangeHash),
    #[error("automerge rejected an edit: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

impl From<ReconcileError> for RecordError {
    fn from(e: ReconcileError) -> Self {
        match e {
            ReconcileError::Value(v) => RecordError::Value(v),
            ReconcileError::Automerge(a) => RecordError::Automerge(a),
        }
    }
}

/// A change made locally, ready for the outbox: its hash and its encoded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalChange {
    pub hash: ChangeHash,
    pub bytes: Vec<u8>,
}

/// One record: its identity and its Automerge document.
#[derive(Debug, Clone)]
pub struct Record {
    id: DocId,
    key: Vec<u8>,
    doc: AutoCommit,
    /// The value's fields as of given heads, kept by `put` so the next put reads only the fields
    /// that differ; never consulted once the heads have moved.
    put_cache: Option<PutCache>,
}

impl Record {
    /// A new, empty record (it does not exist until the first put) written by `actor`.
    pub fn new(store: &StoreRef, key: &Key, actor: &ActorId) -> Result<Record, RecordError> {
        let encoded = key.encode()?;
        Ok(Self::with_encoded_key(store, encoded, actor))
    }

    /// As [`Record::new`], from a canonical key encoding (as it travels on the wire).
    pub fn with_encoded_key(store: &StoreRef, key: Vec<u8>, actor: &ActorId) -> Record {
        let id = DocId::from_encoded_key(store, &key);
        let mut doc = genesis();
        doc.set_actor(actor.clone());
        Record { id, key, doc, put_cache: None }
    }

    /// A record without identity, for computing changes whose bytes do not depend on the key.
    pub(crate) fn blank(actor: &ActorId) -> Record {
        let mut doc = genesis();
        doc.set_actor(actor.clone());
        Record { id: DocId::from_encoded_key(&StoreRef::new("", ""), &[]), key: Vec::new(), doc, put_cache: None }
    }

    /// Builds a record from Automerge bytes from a peer (untrusted).
    pub fn load(
        store: &StoreRef,
        key: Vec<u8>,
        payload: &Payload,
        actor: &ActorId,
    ) -> Result<Record, RecordError> {
        match payload {
            Payload::Document(bytes) => {
                let id = DocId::from_encoded_key(store, &key);
                let doc = foreign::load_document(bytes)?.with_actor(actor.clone());
                Ok(Record { id, key, doc, put_cache: None })
            }
            Payload::Changes(_) => {
                let mut record = Self::with_encoded_key(store, key, actor);
                record.apply(payload)?;
                Ok(record)
            }
        }
    }

    /// Builds a record from bytes [`Record::save`] gave this process earlier (a store's own
    /// snapshots, never a peer's bytes): they must parse, but their lineage was checked when
    /// their changes arrived and is not walked again.
    pub fn load_saved(store: &StoreRef, key: Vec<u8>, bytes: &[u8], actor: &ActorId) -> Result<Record, RecordError> {
        let id = DocId::from_encoded_key(store, &key);
        let doc = foreign::load_own_document(bytes)?.with_actor(actor.clone());
        Ok(Record { id, key, doc, put_cache: None })
    }

    pub fn id(&self) -> DocId {
        self.id
    }

    /// The canonical encoding of the record's key.
    pub fn encoded_key(&self) -> &[u8] {
        &self.key
    }

    pub fn key(&self) -> Result<Key, KeyError> {
        Key::decode(&self.key)
    }

    /// Whether the record currently exists (has been put and not deleted since).
    pub fn exists(&self) -> bool {
        matches!(self.doc.get(ROOT, LIVE), Ok(Some(_)))
    }

    /// The current value, with collaborative text and counters as their own variants; `None` if
    /// the record does not exist.
    pub fn get(&self) -> Result<Option<Value>, RecordError> {
        if !self.exists() {
            return Ok(None);
        }
        Ok(Some(self.read_value()?))
    }

    fn read_value(&self) -> Result<Value, RecordError> {
        match self.doc.get(ROOT, VALUE)? {
            Some((automerge::Value::Object(_), id)) => Ok(Value::read_object(&self.doc, &id)?),
            Some((automerge::Value::Scalar(s), _)) => Ok(Value::from_scalar(&s)?),
            None => Ok(Value::Null),
        }
    }

    /// The current value as plain data (text as a string, counters as numbers).
    pub fn get_plain(&self) -> Result<Option<Value>, RecordError> {
        Ok(self.get()?.map(|v| v.to_plain()))
    }

    /// Makes the record hold `value` with the fewest operations. Returns `None` when the value is
    /// already there (no change is made, so nothing needs syncing).
    ///
    /// The operations are those of reconciling the whole value against the document; a record
    /// put before keeps that put's fields and, while its heads have not moved, reads from the
    /// document only the fields whose values differ (the operations and bytes are the same).
    pub fn put(&mut self, value: &Value, time: i64) -> Result<Option<LocalChange>, RecordError> {
        value.validate()?;
        let Value::Object(fields) = value else {
            self.put_cache = None;
            return self.put_reconciled(value, time);
        };
        let heads = self.doc.get_heads();
        // A cache valid at these heads was kept by a put onto an existing record, and nothing
        // has happened since; otherwise only an existing record gets one (a put onto a deleted
        // or new record also writes `live`, which the cached path does not decide).
        let cache = match self.put_cache.take().filter(|c| c.valid_at(&heads)) {
            Some(cache) => Some(cache),
            None if self.exists() => PutCache::read(&self.doc, heads),
            None => None,
        };
        let Some(mut cache) = cache else { return self.put_reconciled(value, time) };
        let result = cache.reconcile(&mut self.doc, fields).map_err(RecordError::from).and_then(|touched| {
            if self.doc.pending_ops() > 0 {
                cache.mark_live(&mut self.doc)?;
            }
            Ok(touched)
        });
        let touched = match result {
            Ok(touched) => touched,
            Err(e) => return self.finish(Err(e), time),
        };
        let change = self.finish(Ok(()), time)?;
        let heads = self.doc.get_heads();
        self.put_cache = cache.after_put(&self.doc, &touched, heads);
        Ok(change)
    }

    /// A put that reconciles the whole value against the document (the reference behaviour).
    #[cfg(test)]
    pub(crate) fn put_uncached(&mut self, value: &Value, time: i64) -> Result<Option<LocalChange>, RecordError> {
        value.validate()?;
        self.put_reconciled(value, time)
    }

    /// Reconciles the whole, already validated value against the document.
    fn put_reconciled(&mut self, value: &Value, time: i64) -> Result<Option<LocalChange>, RecordError> {
        let result = self.reconcile_root(value).and_then(|()| {
            if self.doc.pending_ops() > 0 || !self.exists() {
                mark_live(&mut self.doc)?;
            }
            Ok(())
        });
        self.finish(result, time)
    }

    fn reconcile_root(&mut self, value: &Value) -> Result<(), RecordError> {
        match (self.doc.get(ROOT, VALUE)?, value) {
            (Some((automerge::Value::Object(ObjType::Map), obj)), Value::Object(fields)) => {
                reconcile_map(&mut self.doc, &obj, fields)?
            }
            _ => reconcile_prop(&mut self.doc, &ROOT, Prop::Map(VALUE.into()), value)?,
        }
        Ok(())
    }

    /// Deletes the record: a tombstone that removes `live` and leaves the fields in place, so an
    /// edit made concurrently by a peer that had not seen the delete brings back the whole record
    /// as that peer saw it. Returns `None` if the record did not exist.
    pub fn delete(&mut self, time: i64) -> Result<Option<LocalChange>, RecordError> {
        if !self.exists() {
            return Ok(None);
        }
        let result = self.doc.delete(ROOT, LIVE).map_err(RecordError::from);
        self.finish(result, time)
    }

    /// Adds `delta` to the counter at `path`; a missing field or a plain integer becomes a
    /// counter starting from that integer.
    pub fn increment(
        &mut self,
        path: &[PathSegment],
        delta: i64,
        time: i64,
    ) -> Result<LocalChange, RecordError> {
        let result = self.increment_inner(path, delta);
        self.finish(result, time)?.ok_or(RecordError::NoSuchPath(path.to_vec()))
    }

    fn increment_inner(&mut self, path: &[PathSegment], delta: i64) -> Result<(), RecordError> {
        let (parent, prop) = self.resolve_parent(path)?;
        match self.doc.get(&parent, prop.clone())? {
            Some((automerge::Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Counter(_) => self.doc.increment(&parent, prop, delta)?,
                ScalarValue::Int(n) => {
                    let start = n.wrapping_add(delta);
                    self.doc.put(&parent, prop, ScalarValue::counter(start))?
                }
                other => return Err(wrong_type(path, "a counter", &format!("{other:?}"))),
            },
            None => self.doc.put(&parent, prop, ScalarValue::counter(delta))?,
            Some((automerge::Value::Object(t), _)) => {
                return Err(wrong_type(path, "a counter", &format!("{t:?}")));
            }
        }
        mark_live(&mut self.doc)?;
        Ok(())
    }

    /// Splices collaborative text at `path` (indexes in UTF-16 code units). A missing field or a
    /// plain string becomes collaborative text first.
    pub fn splice_text(
        &mut self,
        path: &[PathSegment],
        index: usize,
        delete: usize,
        insert: &str,
        time: i64,
    ) -> Result<Option<LocalChange>, RecordError> {
        let result = self.splice_inner(path, index, delete, insert);
        self.finish(result, time)
    }

    fn splice_inner(
        &mut self,
        path: &[PathSegment],
        index: usize,
        delete: usize,
        insert: &str,
    ) -> Result<(), RecordError> {
        let (parent, prop) = self.resolve_parent(path)?;
        let text = match self.doc.get(&parent, prop.clone())? {
            Some((automerge::Value::Object(ObjType::Text), id)) => id,
            Some((automerge::Value::Scalar(s), _)) if matches!(s.as_ref(), ScalarValue::Str(_)) => {
                let ScalarValue::Str(current) = s.as_ref() else { unreachable!() };
                let current = current.to_string();
                let id = self.doc.put_object(&parent, prop, ObjType::Text)?;
                self.doc.splice_text(&id, 0, 0, &current)?;
                id
            }
            None => self.doc.put_object(&parent, prop, ObjType::Text)?,
            Some((other, _)) => return Err(wrong_type(path, "text", &format!("{other:?}"))),
        };
        let len = self.doc.length(&text);
        if index.checked_add(delete).is_none_or(|end| end > len) {
            return Err(RecordError::SpliceOutOfRange { index, delete, len });
        }
        if delete == 0 && insert.is_empty() {
            return Ok(());
        }
        let delete = isize::try_from(delete).map_err(|_| RecordError::SpliceOutOfRange {
            index,
            delete,
            len,
        })?;
        self.doc.splice_text(&text, index, delete, insert)?;
        mark_live(&mut self.doc)?;
        Ok(())
    }

    /// The object holding the last path segment, and that segment as a property. The record must
    /// exist and every segment but the last must name an existing object.
    fn resolve_parent(&self, path: &[PathSegment]) -> Result<(ObjId, Prop), RecordError> {
        if !self.exists() {
            return Err(RecordError::NotFound);
        }
        let Some((last, parents)) = path.split_last() else {
            return Err(RecordError::NoSuchPath(vec![]));
        };
        let mut obj = match self.doc.get(ROOT, VALUE)? {
            Some((automerge::Value::Object(_), id)) => id,
            _ => return Err(RecordError::NoSuchPath(path.to_vec())),
        };
        for (depth, seg) in parents.iter().enumerate() {
            obj = match self.doc.get(&obj, to_prop(seg))? {
                Some((automerge::Value::Object(ObjType::Map | ObjType::List), id)) => id,
                _ => return Err(RecordError::NoSuchPath(path[..=depth].to_vec())),
            };
        }
        Ok((obj, to_prop(last)))
    }

    /// Commits pending operations as one change, or rolls them all back on error so a failed edit
    /// leaves the document as it was.
    fn finish(
        &mut self,
        result: Result<(), RecordError>,
        time: i64,
    ) -> Result<Option<LocalChange>, RecordError> {
        if let Err(e) = result {
            self.doc.rollback();
            return Err(e);
        }
        if self.doc.pending_ops() == 0 {
            return Ok(None);
        }
        let hash = self.doc.commit_with(CommitOptions::default().with_time(time));
        let change = self.doc.get_last_local_change();
        Ok(hash.zip(change).map(|(hash, c)| LocalChange { hash, bytes: c.raw_bytes().to_vec() }))
    }

    /// Merges Automerge bytes from a peer (untrusted). Everything is parsed and checked before
    /// anything is applied, so corrupt or foreign bytes give an error and leave the document as
    /// it was. Returns whether the document changed. Changes whose dependencies are missing wait
    /// inside Automerge until the dependencies arrive; [`Record::missing_deps`] tells.
    pub fn apply(&mut self, payload: &Payload) -> Result<bool, RecordError> {
        match payload {
            Payload::Changes(_) => self.apply_verified(Verified::parse(payload)?),
            Payload::Document(bytes) => {
                let before = self.doc.get_heads();
                let mut other = foreign::load_document(bytes)?;
                self.doc.merge(&mut other).map_err(RecordError::Corrupt)?;
                Ok(self.doc.get_heads() != before)
            }
        }
    }

    /// Applies changes parsed and checked by [`Verified::parse`]; returns whether the document
    /// changed.
    pub fn apply_verified(&mut self, changes: Verified) -> Result<bool, RecordError> {
        let before = self.doc.get_heads();
        self.doc.apply_changes(changes.into_changes()).map_err(RecordError::Corrupt)?;
        Ok(self.doc.get_heads() != before)
    }

    /// Takes one message of Automerge's sync protocol from a peer, checked by
    /// [`VerifiedSync::parse`]. Returns whether the document changed.
    pub fn receive_sync(&mut self, state: &mut sync::State, message: VerifiedSync) -> Result<bool, RecordError> {
        let before = self.doc.get_heads();
        self.doc.sync().receive_sync_message(state, message.into_message()).map_err(RecordError::Corrupt)?;
        Ok(self.doc.get_heads() != before)
    }

    /// The next message of Automerge's sync protocol for this peer, encoded; `None` when there
    /// is nothing more to say.
    pub fn sync_message(&mut self, state: &mut sync::State) -> Option<Vec<u8>> {
        self.doc.sync().generate_sync_message(state).map(sync::Message::encode)
    }

    /// Changes this document has been told about but cannot apply yet.
    pub fn missing_deps(&mut self) -> Vec<ChangeHash> {
        self.doc.get_missing_deps(&[])
    }

    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// The whole document, compressed.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// Every change after `heads`, encoded.
    pub fn changes_since(&mut self, heads: &[ChangeHash]) -> Vec<Vec<u8>> {
        self.doc.get_changes(heads).iter().map(|c| c.raw_bytes().to_vec()).collect()
    }

    /// Every change after `heads`.
    pub fn changes_after(&mut self, heads: &[ChangeHash]) -> Vec<Change> {
        self.doc.get_changes(heads)
    }

    /// Whether the document holds the change.
    pub fn has_change(&mut self, hash: &ChangeHash) -> bool {
        self.doc.get_change_by_hash(hash).is_some()
    }

    /// The Automerge document, for read-only inspection. Edits go through the record's methods
    /// and peers' bytes through [`Record::apply`], which checks them first.
    pub fn doc(&self) -> &AutoCommit {
        &self.doc
    }

    /// The Automerge document, for readers in core that need `&mut` (change metadata).
    pub(crate) fn doc_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    /// A copy of the document as it was at `heads` (write-back builds its change there).
    pub(crate) fn fork_at(&mut self, heads: &[ChangeHash]) -> Result<AutoCommit, automerge::AutomergeError> {
        self.doc.fork_at(heads)
    }

    /// The document itself, for a caller that is done with the record (write-back on a record
    /// whose heads are already the ones it builds on).
    pub(crate) fn into_doc(self) -> AutoCommit {
        self.doc
    }

    /// Which analytics run last wrote `field`, if any.
    pub fn provenance(&self, field: &str) -> Option<Provenance> {
        Provenance::read(&self.doc, field)
    }
}

/// Every existing record among `records` as (encoded key, plain value), in key order: how a
/// store's contents are compared across replicas and printed.
pub fn plain_values<'a>(records: impl IntoIterator<Item = &'a Record>) -> Vec<(Vec<u8>, Value)> {
    let mut out: Vec<(Vec<u8>, Value)> = records
        .into_iter()
        .filter_map(|r| Some((r.encoded_key().to_vec(), r.get_plain().ok()??)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn to_prop(seg: &PathSegment) -> Prop {
    match seg {
        PathSegment::Field(f) => Prop::Map(f.clone()),
        PathSegment::Index(i) => Prop::Seq(*i),
    }
}

fn wrong_type(path: &[PathSegment], expected: &'static str, found: &str) -> RecordError {
    RecordError::WrongType { path: path.to_vec(), expected, found: found.to_owned() }
}
