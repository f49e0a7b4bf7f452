//! Turning results into write-back changes: deterministic, on the snapshot's heads, validated
//! against the snapshot before anything is sent.

use std::collections::BTreeMap;

use thiserror::Error;
use tidepool_core::automerge::ChangeHash;
use tidepool_core::writeback::Held;
use tidepool_core::wire::TipRecord;
use tidepool_core::{DocId, Record, StoreRef, Tip, Value, WriteBack, WriteBackError, WriteMode};

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

/// Field results built on the records' tips ([`WriteBack::change_on_tip`]), with no document
/// fetched: the changes, and the results that need their documents after all (the hub keeps no
/// tip of the snapshot heads for them, or the write is one a tip cannot build). The bytes are
/// those [`field_changes`] would give (a core property test compares them).
pub fn tip_changes(
    wb: &WriteBack,
    store: &StoreRef,
    results: Vec<FieldResult>,
    heads: &DocHeads,
    tips: &BTreeMap<DocId, TipRecord>,
) -> Result<(Vec<PlannedChange>, Vec<FieldResult>), PlanError> {
    let mut out = Vec::with_capacity(results.len());
    let mut rest = Vec::new();
    for r in results {
        let Some(h) = heads.get(&r.doc) else { return Err(PlanError::UnknownDoc(r.doc)) };
        let Some(record) = tips.get(&r.doc) else {
            rest.push(r);
            continue;
        };
        if record.key != r.key.encode()? {
            return Err(PlanError::KeyMismatch { doc: r.doc, key: format!("{:?}", r.key) });
        }
        let mut at = h.to_vec();
        at.sort();
        let tip = Tip::decode(&record.tip).ok().filter(|t| t.heads() == at.as_slice());
        let plain = record.value.as_deref().and_then(plain_fields);
        let (Some(tip), Some(plain)) = (tip, plain) else {
            rest.push(r);
            continue;
        };
        match wb.change_on_tip(&r.doc, &tip, &r.fields, |f| Held::on_tip(&tip, &plain, f)) {
            None => rest.push(r),
            Some(built) => {
                if let Some(c) = built.map_err(|source| PlanError::WriteBack { doc: r.doc, source })? {
                    out.push(PlannedChange { store: store.clone(), doc: r.doc, key: record.key.clone(), hash: c.hash, bytes: c.bytes, known: false });
                }
            }
        }
    }
    Ok((out, rest))
}

/// A record's plain value as the hub exports it (Tidepool's JSON mapping), if it is an object.
fn plain_fields(json: &[u8]) -> Option<BTreeMap<String, Value>> {
    let tree: serde_json::Value = serde_json::from_slice(json).ok()?;
    match tidepool_json::value_from_json(&tree).ok()? {
        Value::Object(fields) => Some(fields),
        _ => None,
    }
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

    /// A record as the hub answers a fetch for tips.
    fn tip_record(r: &mut Record) -> TipRecord {
        let value = r.get_plain().unwrap().map(|v| serde_json::to_vec(&tidepool_json::JsonValue(&v)).unwrap());
        let tip = Tip::of(r).expect("a tip").encode();
        TipRecord { doc: r.id(), key: r.encoded_key().to_vec(), heads: r.heads().iter().map(|h| h.0).collect(), value, tip }
    }

    #[test]
    fn results_on_tips_are_the_changes_the_documents_give() {
        let store = StoreRef::new("app", "todos");
        let mut a = Record::new(&store, &Key::from("a"), &ActorId::from([1u8; 16])).unwrap();
        a.put(&object! { "title" => "x", "hours" => 2i64 }, 0).unwrap();
        let mut b = Record::new(&store, &Key::from("b"), &ActorId::from([1u8; 16])).unwrap();
        b.put(&object! { "title" => "y" }, 0).unwrap();
        let heads: DocHeads = [(a.id(), a.heads()), (b.id(), b.heads())].into_iter().collect();
        let score = |r: &Record, key: &str, v: Value| FieldResult { doc: r.id(), key: Key::from(key), fields: [("score".into(), v)].into() };
        // `a` gets a plain score; `b` one that is an object, which needs the document.
        let results = vec![score(&a, "a", Value::Int(4)), score(&b, "b", object! { "n" => 1i64 })];
        let wb = WriteBack::new("score", "run-1");
        let tips: BTreeMap<_, _> = [(a.id(), tip_record(&mut a)), (b.id(), tip_record(&mut b))].into();
        let (planned, rest) = tip_changes(&wb, &store, results.clone(), &heads, &tips).unwrap();
        assert_eq!(rest, vec![results[1].clone()]);
        let expected = field_changes(&wb, &store, &results[..1], &heads, [(a.id(), a.clone())].into()).unwrap();
        assert_eq!(planned, expected, "the same change as on the document");

        // A tip of other heads than the snapshot's (the record was edited since) is not used.
        a.put(&object! { "title" => "z", "hours" => 2i64 }, 1).unwrap();
        let tips: BTreeMap<_, _> = [(a.id(), tip_record(&mut a))].into();
        let (planned, rest) = tip_changes(&wb, &store, results[..1].to_vec(), &heads, &tips).unwrap();
        assert!(planned.is_empty() && rest == results[..1]);
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
