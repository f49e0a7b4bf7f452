//! The put cache: a record's fields as its last put left them, so the next put compares the new
//! value with them in memory and reads from the document only the fields that differ.
//!
//! A put reconciles the whole value against the document, which reads every field. A field whose
//! value equals the one the document holds produces no operation, so skipping it changes nothing:
//! the cached put makes the same operations, in the same order, as the full reconciliation
//! (the tests below check the bytes). The cache is only trusted at the heads it was read at;
//! any other edit, merge or delete moves the heads and the next put reads the document again.

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ObjId, ObjType, Prop, ROOT, ReadDoc};

use crate::layout::{VALUE, edit_count, put_edit_count};
use crate::reconcile::{ReconcileError, put_scalar, reconcile_prop};
use crate::value::Value;

/// The fields of a record's value object, and its edit count, exactly as the document held them
/// at `heads`.
#[derive(Debug, Clone)]
pub(super) struct PutCache {
    heads: Vec<ChangeHash>,
    obj: ObjId,
    fields: BTreeMap<String, Value>,
    /// What `live` holds: a put raises it without reading it first.
    edits: i64,
}

impl PutCache {
    /// Reads the value object of `doc` at its current `heads`; `None` when the value is not an
    /// object or holds something a value cannot state exactly.
    pub(super) fn read(doc: &AutoCommit, heads: Vec<ChangeHash>) -> Option<PutCache> {
        let Ok(Some((automerge::Value::Object(ObjType::Map), obj))) = doc.get(ROOT, VALUE) else {
            return None;
        };
        let Ok(Some(Value::Object(fields))) = Value::read_object_exact(doc, &obj) else {
            return None;
        };
        let edits = edit_count(doc).ok()?;
        Some(PutCache { heads, obj, fields, edits })
    }

    /// Raises the edit count, as [`crate::layout::mark_live`] does, from the cached count.
    pub(super) fn mark_live(&mut self, doc: &mut AutoCommit) -> Result<(), automerge::AutomergeError> {
        self.edits = self.edits.wrapping_add(1);
        put_edit_count(doc, self.edits)
    }

    pub(super) fn valid_at(&self, heads: &[ChangeHash]) -> bool {
        self.heads == heads
    }

    /// Makes the value object hold exactly `new` as the full reconciliation would: fields that
    /// are gone are deleted in key order, then every field that differs from the cache is
    /// written, in key order: a scalar over a plain scalar by a put, anything else reconciled
    /// against the document. The cache follows what was written; returns the names of the
    /// reconciled fields, whose values [`PutCache::after_put`] reads back.
    pub(super) fn reconcile(
        &mut self,
        doc: &mut AutoCommit,
        new: &BTreeMap<String, Value>,
    ) -> Result<Vec<String>, ReconcileError> {
        for key in self.fields.keys().filter(|k| !new.contains_key(*k)) {
            doc.delete(&self.obj, key.as_str())?;
        }
        self.fields.retain(|k, _| new.contains_key(k));
        let mut touched = Vec::new();
        for (key, value) in new {
            let old = self.fields.get(key);
            if old == Some(value) {
                continue;
            }
            match (old.is_none_or(is_plain_scalar), value.to_scalar()) {
                // What the full reconciliation does here, without reading the document first:
                // a plain scalar (or nothing) that differs from a scalar is replaced by a put,
                // and the document then holds exactly `value`.
                (true, Some(scalar)) => {
                    let held = match old {
                        Some(Value::Float(f)) => Some(*f),
                        _ => None,
                    };
                    put_scalar(doc, &self.obj, Prop::Map(key.clone()), scalar, held)?;
                    self.fields.insert(key.clone(), value.clone());
                }
                _ => {
                    reconcile_prop(doc, &self.obj, Prop::Map(key.clone()), value)?;
                    touched.push(key.clone());
                }
            }
        }
        Ok(touched)
    }

    /// The cache once the put is committed and the document is at `heads`: the reconciled
    /// fields are read back, since the document may hold them differently from the value put
    /// (a string put onto text stays text).
    pub(super) fn after_put(mut self, doc: &AutoCommit, touched: &[String], heads: Vec<ChangeHash>) -> Option<PutCache> {
        for key in touched {
            let value = Value::read_prop_exact(doc, &self.obj, key).ok()??;
            self.fields.insert(key.clone(), value);
        }
        self.heads = heads;
        Some(self)
    }
}

/// A scalar the document holds as itself: a put replaces it (a counter is incremented instead).
fn is_plain_scalar(value: &Value) -> bool {
    value.to_scalar().is_some() && !matches!(value, Value::Counter(_))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use automerge::ActorId;
    use proptest::prelude::*;

    use crate::value::{PathSegment, Value};
    use crate::wire::Payload;
    use crate::{Key, Record, StoreRef};

    /// One step of a record's life between puts.
    #[derive(Debug, Clone)]
    enum Step {
        Put(Value),
        /// Another peer puts this value and its change is merged.
        Remote(Value),
        Delete,
        Increment(String, i64),
        Splice(String, String),
    }

    fn arb_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0i64..3).prop_map(Value::Int),
            (0i64..3).prop_map(Value::Counter),
            "[xy]{0,2}".prop_map(Value::String),
            "[xy]{0,2}".prop_map(Value::Text),
            Just(Value::Float(f64::NAN)),
            Just(Value::Float(0.0)),
            Just(Value::Float(-0.0)),
        ]
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let nested = arb_leaf().prop_recursive(2, 12, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map("[pq]", inner, 0..3).prop_map(Value::Object),
            ]
        });
        prop_oneof![
            8 => proptest::collection::btree_map("[a-d]", nested, 0..4).prop_map(Value::Object),
            1 => arb_leaf(),
        ]
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => arb_value().prop_map(Step::Put),
            2 => arb_value().prop_map(Step::Remote),
            1 => Just(Step::Delete),
            1 => ("[a-d]", -2i64..3).prop_map(|(f, d)| Step::Increment(f, d)),
            1 => ("[a-d]", "[xy]{0,2}").prop_map(|(f, s)| Step::Splice(f, s)),
        ]
    }

    fn record(actor: u8) -> Record {
        Record::new(&StoreRef::new("db", "items"), &Key::from("k"), &ActorId::from([actor; 16])).expect("key")
    }

    proptest! {
        /// A put with the cache makes the same change, byte for byte, as reconciling the whole
        /// value, whatever happened to the record before.
        #[test]
        fn cached_put_makes_the_change_a_full_reconcile_makes(steps in proptest::collection::vec(arb_step(), 1..12)) {
            let mut cached = record(1);
            let mut reference = record(1);
            let mut peer = record(2);
            for (time, step) in steps.into_iter().enumerate() {
                let time = time as i64;
                match step {
                    Step::Put(value) => {
                        let a = cached.put(&value, time).map(|c| c.map(|c| c.bytes));
                        let b = reference.put_uncached(&value, time).map(|c| c.map(|c| c.bytes));
                        prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
                    }
                    Step::Remote(value) => {
                        let ours = Payload::Changes(reference.changes_since(&[]));
                        peer.apply(&ours).expect("apply ours");
                        let _ = peer.put_uncached(&value, time);
                        let theirs = Payload::Changes(peer.changes_since(&[]));
                        cached.apply(&theirs).expect("apply theirs");
                        reference.apply(&theirs).expect("apply theirs");
                    }
                    Step::Delete => {
                        let a = cached.delete(time).expect("delete").map(|c| c.bytes);
                        let b = reference.delete(time).expect("delete").map(|c| c.bytes);
                        prop_assert_eq!(a, b);
                    }
                    Step::Increment(field, delta) => {
                        let path = [PathSegment::Field(field)];
                        let a = cached.increment(&path, delta, time).map(|c| c.bytes);
                        let b = reference.increment(&path, delta, time).map(|c| c.bytes);
                        prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
                    }
                    Step::Splice(field, text) => {
                        let path = [PathSegment::Field(field)];
                        let a = cached.splice_text(&path, 0, 0, &text, time).map(|c| c.map(|c| c.bytes));
                        let b = reference.splice_text(&path, 0, 0, &text, time).map(|c| c.map(|c| c.bytes));
                        prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
                    }
                }
                prop_assert_eq!(cached.heads(), reference.heads());
                prop_assert_eq!(cached.get().expect("get"), reference.get().expect("get"));
            }
        }
    }

    /// A zero whose sign flips is written, on the cached path (a top-level field), through a
    /// full reconciliation (a nested field) and in a list, though Automerge takes `0.0 == -0.0`.
    #[test]
    fn a_zero_whose_sign_flips_is_written() {
        fn field(v: f64) -> Value {
            Value::Object([("a".to_owned(), Value::Float(v))].into())
        }
        fn nested(v: f64) -> Value {
            Value::Object([("o".to_owned(), field(v))].into())
        }
        fn listed(v: f64) -> Value {
            Value::Object([("l".to_owned(), Value::Array(vec![Value::Float(v)]))].into())
        }
        for make in [field as fn(f64) -> Value, nested, listed] {
            let mut r = record(1);
            r.put(&make(-0.0), 0).expect("put");
            for (time, v) in [(1, 0.0), (2, -0.0), (3, 0.0)] {
                assert!(r.put(&make(v), time).expect("put").is_some(), "a change for {v:?}");
                assert_eq!(r.get().expect("get"), Some(make(v)), "holds {v:?}");
            }
        }
    }

    /// The cache is what makes repeated puts cheap: a put of an unchanged value reads nothing
    /// and makes nothing, and a changed field is all that is written.
    #[test]
    fn a_repeated_put_only_writes_the_changed_field() {
        let mut r = record(1);
        let mut fields: BTreeMap<String, Value> =
            [("a".to_owned(), Value::Int(1)), ("b".to_owned(), Value::from("x"))].into_iter().collect();
        r.put(&Value::Object(fields.clone()), 0).expect("put");
        r.put(&Value::Object(fields.clone()), 1).expect("put");
        assert!(r.put_cache.is_some(), "the second put keeps a cache");
        assert!(r.put(&Value::Object(fields.clone()), 2).expect("put").is_none());
        fields.insert("a".to_owned(), Value::Int(2));
        let change = r.put(&Value::Object(fields.clone()), 3).expect("put").expect("a change");
        let decoded = automerge::Change::try_from(change.bytes.as_slice()).expect("change parses");
        assert_eq!(decoded.len(), 2, "one op for the field, one for live");
        assert_eq!(r.get().expect("get"), Some(Value::Object(fields)));
    }
}
