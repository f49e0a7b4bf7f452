//! Deterministic write-back: analytics results as Automerge changes on a snapshot's heads.
//!
//! A result becomes a change whose dependencies are the heads the snapshot saw, written by an
//! actor derived from (job, run, document) with a fixed timestamp. The same inputs therefore give
//! a byte-identical change with the same hash, and since Automerge ignores a change it already
//! has, retrying a run is a no-op: exactly once by construction. Because the change depends only
//! on the snapshot heads, it merges with whatever users did after the snapshot like any
//! concurrent edit.

mod on_tip;

use std::collections::BTreeMap;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ChangeHash, ObjId, ObjType, Prop, ROOT, ReadDoc};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::doc_id::DocId;
use crate::reconcile::{ReconcileError, reconcile_map, reconcile_prop};
use crate::layout::{LIVE, PROVENANCE, VALUE, mark_live};
use crate::record::{LocalChange, Record};
use crate::value::{Value, ValueError};

pub use on_tip::Held;

/// The timestamp of every write-back change, so retries are byte-identical.
pub const WRITE_BACK_TIME: i64 = 0;

/// Why a write-back could not be built.
#[derive(Debug, Error)]
pub enum WriteBackError {
    #[error("the snapshot heads are not all in this document")]
    UnknownHeads,
    #[error("the record held no object at the snapshot, so it has no fields to write")]
    NotAnObject,
    #[error("result value cannot be stored: {0}")]
    Value(#[from] ValueError),
    #[error("automerge rejected the write-back: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

impl From<ReconcileError> for WriteBackError {
    fn from(e: ReconcileError) -> Self {
        match e {
            ReconcileError::Value(v) => WriteBackError::Value(v),
            ReconcileError::Automerge(a) => WriteBackError::Automerge(a),
        }
    }
}

/// What a write-back does to the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Set the given fields on the record as it was at the snapshot; leave other fields and the
    /// record's existence alone, so a record deleted after the snapshot stays deleted.
    Fields,
    /// Make the record hold exactly the given fields and exist (for results stores whose records
    /// the job owns, such as aggregates keyed by group).
    WholeRecord,
}

/// One run of one job: the identity that makes its changes deterministic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteBack {
    pub job: String,
    pub run: String,
}

impl WriteBack {
    pub fn new(job: impl Into<String>, run: impl Into<String>) -> Self {
        WriteBack { job: job.into(), run: run.into() }
    }

    /// The actor for this run's changes to document `doc`.
    pub fn actor(&self, doc: &DocId) -> ActorId {
        let mut h = Sha256::new();
        h.update(b"tidepool/writeback/v1\0");
        for part in [self.job.as_bytes(), self.run.as_bytes(), &doc.0] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        ActorId::from(&h.finalize()[..16])
    }

    /// The change that writes `fields` onto `record` as it was at `heads`, or `None` if the
    /// record already held those values at the snapshot. The record's content is not modified;
    /// apply the change (locally or at the hub) to merge it.
    pub fn change(
        &self,
        record: &mut Record,
        heads: &[ChangeHash],
        fields: &BTreeMap<String, Value>,
        mode: WriteMode,
    ) -> Result<Option<LocalChange>, WriteBackError> {
        for v in fields.values() {
            v.validate()?;
        }
        if !ReadDoc::get_missing_deps(record.doc(), heads).is_empty() {
            return Err(WriteBackError::UnknownHeads);
        }
        let fork = record.fork_at(heads)?;
        self.build(&record.id(), fork, fields, mode)
    }

    /// [`WriteBack::change`] for a record the caller no longer needs (write-back fetches each
    /// record for this alone). When the record's heads are the snapshot heads, which is the
    /// common case (nobody edited it since), the change is built on the document itself instead
    /// of a fork rebuilt from its history; the bytes are the same either way.
    pub fn change_consuming(
        &self,
        mut record: Record,
        heads: &[ChangeHash],
        fields: &BTreeMap<String, Value>,
        mode: WriteMode,
    ) -> Result<Option<LocalChange>, WriteBackError> {
        let mut current = record.heads();
        current.sort();
        let mut wanted = heads.to_vec();
        wanted.sort();
        if current != wanted {
            return self.change(&mut record, heads, fields, mode);
        }
        for v in fields.values() {
            v.validate()?;
        }
        let doc = record.id();
        self.build(&doc, record.into_doc(), fields, mode)
    }

    /// Writes `fields` into `fork` (a document at the snapshot heads) as this run's actor and
    /// returns the change, if it changes anything.
    fn build(
        &self,
        doc: &DocId,
        mut fork: AutoCommit,
        fields: &BTreeMap<String, Value>,
        mode: WriteMode,
    ) -> Result<Option<LocalChange>, WriteBackError> {
        fork.set_actor(self.actor(doc));
        let target = match (fork.get(ROOT, VALUE)?, mode) {
            (Some((automerge::Value::Object(ObjType::Map), obj)), _) => obj,
            (_, WriteMode::WholeRecord) => fork.put_object(ROOT, VALUE, ObjType::Map)?,
            (_, WriteMode::Fields) => return Err(WriteBackError::NotAnObject),
        };
        match mode {
            WriteMode::Fields => {
                for (field, value) in fields {
                    reconcile_prop(&mut fork, &target, Prop::Map(field.clone()), value)?;
                }
            }
            WriteMode::WholeRecord => {
                reconcile_map(&mut fork, &target, fields)?;
                if fork.pending_ops() > 0 || fork.get(ROOT, LIVE)?.is_none() {
                    mark_live(&mut fork)?;
                }
            }
        }
        if fork.pending_ops() == 0 {
            return Ok(None);
        }
        self.stamp(&mut fork, fields.keys())?;
        let Some(hash) = fork.commit_with(CommitOptions::default().with_time(WRITE_BACK_TIME))
        else {
            return Ok(None);
        };
        Ok(fork
            .get_last_local_change()
            .map(|c| LocalChange { hash, bytes: c.raw_bytes().to_vec() }))
    }

    /// The change that deletes `record` as it was at `heads` (a result the job no longer
    /// produces, such as a group without records), or `None` if it did not exist there. Like
    /// [`WriteBack::change`], deterministic and not applied to the record.
    pub fn delete(&self, record: &mut Record, heads: &[ChangeHash]) -> Result<Option<LocalChange>, WriteBackError> {
        if !ReadDoc::get_missing_deps(record.doc(), heads).is_empty() {
            return Err(WriteBackError::UnknownHeads);
        }
        let mut fork = record.fork_at(heads)?;
        if fork.get(ROOT, LIVE)?.is_none() {
            return Ok(None);
        }
        fork.set_actor(self.actor(&record.id()));
        fork.delete(ROOT, LIVE)?;
        let Some(hash) = fork.commit_with(CommitOptions::default().with_time(WRITE_BACK_TIME)) else {
            return Ok(None);
        };
        Ok(fork.get_last_local_change().map(|c| LocalChange { hash, bytes: c.raw_bytes().to_vec() }))
    }

    /// Records this run as the provenance of every written field.
    fn stamp<'a>(
        &self,
        fork: &mut AutoCommit,
        fields: impl Iterator<Item = &'a String>,
    ) -> Result<(), WriteBackError> {
        let prov: ObjId = match fork.get(ROOT, PROVENANCE)? {
            Some((automerge::Value::Object(ObjType::Map), id)) => id,
            _ => fork.put_object(ROOT, PROVENANCE, ObjType::Map)?,
        };
        for field in fields {
            let entry = fork.put_object(&prov, field.as_str(), ObjType::Map)?;
            fork.put(&entry, "job", self.job.as_str())?;
            fork.put(&entry, "run", self.run.as_str())?;
        }
        Ok(())
    }
}
