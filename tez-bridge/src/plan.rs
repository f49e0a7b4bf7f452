//! Turning results into write-back changes: deterministic, on the snapshot's heads, validated
//! against the snapshot before anything is sent.

use std::collections::BTreeMap;

use thiserror::Error;
use tidepool_core::automerge::ChangeHash;
use tidepool_core::writeback::Held;
use tidepool_core::{DocId, Record, StoreRef, Tip, WriteBack, WriteBackError, WriteMode};

use crate::heads::DocHeads;
use crate::output::{FieldResult, GroupResult};

/// A change ready to send to the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChange {
    pub store: StoreRef,
    pub doc: DocId,
    pub key: Vec<u8>,
    /// The change's hash: once applied on the snapshot heads, the document's only head.
    pub hash: ChangeHash,
    pub bytes: Vec<u8>,
    /// The hub already has it (the run was written back before): nothing to send.
    pub known: bool,
}

#[derive(Debug, Error)]
pub enum PlanError {
    #[error("result for document {0}, which the snapshot does not hold")]
    UnknownDoc(DocId),
    #[error("result for document {doc} carries key {key:?}, not the record's key")]
    KeyMismatch { doc: DocId, key: String },
    #[error("document {doc}: {source}")]
    WriteBack { doc: DocId, source: WriteBackError },
    #[error("key: {0}")]
    Key(#[from] tidepool_core::KeyError),
    #[error("record: {0}")]
    Record(#[from] tidepool_core::RecordError),
}

/// Field results onto the snapshotted records. `records` are the documents as the hub has them
/// now (they may be newer than the snapshot), consumed: a record nobody changed since the
/// snapshot gets its change built on the document itself, without a fork. `heads` are the
/// snapshot's.
pub fn field_changes(
    wb: &WriteBack,
    store: &StoreRef,
    results: &[FieldResult],
    heads: &DocHeads,
    mut records: BTreeMap<DocId, Record>,
) -> Result<Vec<PlannedChange>, PlanError> {
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        let (Some(h), Some(mut record)) = (heads.get(&r.doc), records.remove(&r.doc)) else {
            return Err(PlanError::UnknownDoc(r.doc));
        };
        if record.key().ok().as_ref() != Some(&r.key) {
            return Err(PlanError::KeyMismatch { doc: r.doc, key: format!("{:?}", r.key) });
        }
        let key = record.encoded_key().to_vec();
        let mut now = record.heads();
        now.sort();
        let mut at = h.to_vec();
        at.sort();
        let err = |source| PlanError::WriteBack { doc: r.doc, source };
        let planned = if now == at {
            // Unchanged since the snapshot, so the hub cannot have this run's change yet. Plain
            // scalars are built on the record's tip, without an Automerge transaction.
            let on_tip = Tip::of(&mut record).and_then(|tip| wb.change_on_tip(&r.doc, &tip, &r.fields, |f| Held::at(&record, f)));
            let change = match on_tip {
                Some(built) => built.map_err(err)?,
                None => wb.change_consuming(record, h, &r.fields, WriteMode::Fields).map_err(err)?,
            };
            change.map(|c| (c, false))
        } else {
            let change = wb.change(&mut record, h, &r.fields, WriteMode::Fields).map_err(err)?;
            change.map(|c| {
                let known = record.has_change(&c.hash);
                (c, known)
            })
        };
        if let Some((c, known)) = planned {
            out.push(PlannedChange { store: store.clone(), doc: r.doc, key, hash: c.hash, bytes: c.bytes, known });
        }
    }
    Ok(out)
}

/// Group results as whole records of the results store, each on the heads the bridge has for it
/// (`existing`), or on a new record's genesis. The job owns the results store: a record of it
/// that the results no longer name (a group whose records were all deleted or moved) is deleted,
/// so the store holds exactly what a run over the whole source computes.
pub fn group_changes(
    wb: &WriteBack,
    results_store: &StoreRef,
    results: &[GroupResult],
    existing: &mut BTreeMap<DocId, Record>,
    actor: &tidepool_core::automerge::ActorId,
) -> Result<Vec<PlannedChange>, PlanError> {
    let mut out = Vec::with_capacity(results.len());
    let mut named = std::collections::BTreeSet::new();
    for g in results {
        let doc = DocId::derive(results_store, &g.key)?;
        named.insert(doc);
        let record = match existing.get_mut(&doc) {
            Some(r) => r,
            None => existing.entry(doc).or_insert(Record::new(results_store, &g.key, actor)?),
        };
        let heads = record.heads();
        let change = wb
            .change(record, &heads, &g.value, WriteMode::WholeRecord)
            .map_err(|source| PlanError::WriteBack { doc, source })?;
        if let Some(c) = change {
            out.push(PlannedChange { store: results_store.clone(), doc, key: record.encoded_key().to_vec(), hash: c.hash, bytes: c.bytes, known: false });
        }
    }
    for (doc, record) in existing.iter_mut().filter(|(doc, _)| !named.contains(*doc)) {
        let heads = record.heads();
        let change = wb.delete(record, &heads).map_err(|source| PlanError::WriteBack { doc: *doc, source })?;
        if let Some(c) = change {
            out.push(PlannedChange { store: results_store.clone(), doc: *doc, key: record.encoded_key().to_vec(), hash: c.hash, bytes: c.bytes, known: false });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidepool_core::automerge::ActorId;
    use tidepool_core::wire::Payload;
    use tidepool_core::{Key, Value, object};

    #[test]
    fn field_results_merge_with_later_edits_and_are_deterministic() {
        let store = StoreRef::new("app", "todos");
        let mut user = Record::new(&store, &Key::from("a"), &ActorId::from([1u8; 16])).unwrap();
        user.put(&object! { "title" => "x", "hours" => 2i64 }, 0).unwrap();
        let heads: DocHeads = [(user.id(), user.heads())].into_iter().collect();
        let unchanged = user.clone();
        user.put(&object! { "title" => "edited", "hours" => 2i64 }, 1).unwrap();
        let records = |r: &Record| -> BTreeMap<_, _> { [(r.id(), r.clone())].into() };
        let results = vec![FieldResult { doc: user.id(), key: Key::from("a"), fields: [("score".into(), Value::Int(4))].into() }];
        let wb = WriteBack::new("score", "run-1");
        let planned = field_changes(&wb, &store, &results, &heads, records(&user)).unwrap();
        assert_eq!(planned, field_changes(&wb, &store, &results, &heads, records(&user)).unwrap());
        assert!(!planned[0].known);
        // Built without a fork on a record nobody edited since: the same change.
        let fast = field_changes(&wb, &store, &results, &heads, [(user.id(), unchanged)].into()).unwrap();
        assert_eq!(planned, fast);
        user.apply(&Payload::Changes(vec![planned[0].bytes.clone()])).unwrap();
        // A retried run finds the change at the hub already.
        let again = field_changes(&wb, &store, &results, &heads, records(&user)).unwrap();
        assert!(again[0].known && again[0].hash == planned[0].hash);
        assert_eq!(user.get_plain().unwrap(), Some(object! { "title" => "edited", "hours" => 2i64, "score" => 4i64 }));
        assert_eq!(user.provenance("score").map(|p| p.run), Some("run-1".to_owned()));

        let stranger = vec![FieldResult { doc: DocId([0; 16]), key: Key::from("zz"), fields: BTreeMap::new() }];
        assert!(matches!(field_changes(&wb, &store, &stranger, &heads, records(&user)), Err(PlanError::UnknownDoc(_))));
        let wrong_key = vec![FieldResult { doc: user.id(), key: Key::from("b"), fields: BTreeMap::new() }];
        assert!(matches!(field_changes(&wb, &store, &wrong_key, &heads, records(&user)), Err(PlanError::KeyMismatch { .. })));
    }

    #[test]
    fn group_results_become_records() {
        let results_store = StoreRef::new("app", "stats");
        let groups = vec![GroupResult { key: Key::from("p1"), value: [("count".into(), Value::Int(3))].into() }];
        let wb = WriteBack::new("stats", "run-1");
        let actor = ActorId::from([2u8; 16]);
        let planned = group_changes(&wb, &results_store, &groups, &mut BTreeMap::new(), &actor).unwrap();
        assert_eq!(planned.len(), 1);
        let mut r = Record::new(&results_store, &Key::from("p1"), &ActorId::from([3u8; 16])).unwrap();
        r.apply(&Payload::Changes(vec![planned[0].bytes.clone()])).unwrap();
        assert_eq!(r.get_plain().unwrap(), Some(object! { "count" => 3i64 }));
        let again = group_changes(&wb, &results_store, &groups, &mut BTreeMap::new(), &actor).unwrap();
        assert_eq!(planned, again, "a retried run writes the same bytes");

        // The next run no longer produces group p1: its record is deleted, once.
        let mut existing: BTreeMap<_, _> = [(r.id(), r.clone())].into();
        let next = WriteBack::new("stats", "run-2");
        let planned = group_changes(&next, &results_store, &[], &mut existing, &actor).unwrap();
        assert_eq!(planned.len(), 1);
        r.apply(&Payload::Changes(vec![planned[0].bytes.clone()])).unwrap();
        assert_eq!(r.get().unwrap(), None);
        let mut existing: BTreeMap<_, _> = [(r.id(), r.clone())].into();
        assert!(group_changes(&next, &results_store, &[], &mut existing, &actor).unwrap().is_empty());
    }
}
