//! A field write-back built from the record's tip instead of a fork of its document: the same
//! ops Automerge would record, encoded directly, for the common case of plain scalars written
//! on a record nobody edited since the snapshot.

use std::collections::BTreeMap;

use automerge::legacy::{Key as OpKey, ObjectId, Op, OpId, OpType};
use automerge::{Change, ExpandedChange, ObjType, ROOT, ReadDoc, ScalarValue};

use super::{WRITE_BACK_TIME, WriteBack, WriteBackError};
use crate::doc_id::DocId;
use crate::layout::{VALUE, genesis_actor};
use crate::record::{LocalChange, Record};
use crate::tip::{OpRef, Tip};
use crate::value::Value;

/// What a record holds at a field of `v`, as the builder needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub enum Held {
    Absent,
    /// A scalar that a put replaces (not a counter).
    Scalar(Value),
    /// An object, text or counter: reconciling onto it edits it in place, which needs the
    /// document.
    Other,
}

impl Held {
    /// What `record` holds at field `field` of its value.
    pub fn at(record: &Record, field: &str) -> Held {
        let doc = record.doc();
        let Ok(Some((automerge::Value::Object(ObjType::Map), value))) = doc.get(ROOT, VALUE) else { return Held::Other };
        match doc.get(&value, field) {
            Ok(None) => Held::Absent,
            Ok(Some((automerge::Value::Scalar(s), _))) if !matches!(s.as_ref(), ScalarValue::Counter(_)) => {
                Value::from_scalar(&s).map_or(Held::Other, Held::Scalar)
            }
            _ => Held::Other,
        }
    }
}

impl Held {
    /// What a record holds at field `field`, from its tip and its plain value (as the hub
    /// exports it) at the tip's heads.
    pub fn on_tip(tip: &Tip, plain: &BTreeMap<String, Value>, field: &str) -> Held {
        if tip.holds_other(field) {
            return Held::Other;
        }
        match plain.get(field) {
            None if tip.field_ops(field).is_empty() => Held::Absent,
            Some(v) if v.to_scalar().is_some() && !matches!(v, Value::Counter(_)) => Held::Scalar(v.clone()),
            _ => Held::Other,
        }
    }
}

fn op(action: OpType, obj: ObjectId, key: &str, pred: &[OpRef]) -> Op {
    Op {
        action,
        obj,
        key: OpKey::Map(key.into()),
        pred: pred.iter().map(|(c, a)| OpId(*c, a.clone())).collect::<Vec<_>>().into(),
        insert: false,
    }
}

impl WriteBack {
    /// [`WriteBack::change`] in [`super::WriteMode::Fields`] for the record `doc` whose tip is
    /// `tip`, at the tip's heads, with `held` telling what each field holds there. `None` when the
    /// write needs the document (a value or a held field that is not a plain scalar, or this
    /// run's actor already in the document); otherwise the very change the document would give
    /// (a core property test compares the bytes), or `Some(None)` when nothing changes.
    pub fn change_on_tip(
        &self,
        doc: &DocId,
        tip: &Tip,
        fields: &BTreeMap<String, Value>,
        held: impl Fn(&str) -> Held,
    ) -> Option<Result<Option<LocalChange>, WriteBackError>> {
        let actor = self.actor(doc);
        if tip.has_actor(&actor) {
            return None;
        }
        let value_obj = ObjectId::Id(OpId(1, genesis_actor()));
        let prov_obj = ObjectId::Id(OpId(2, genesis_actor()));
        let mut ops = Vec::new();
        for (field, value) in fields {
            if let Err(e) = value.validate() {
                return Some(Err(e.into()));
            }
            let scalar = match value {
                Value::Counter(_) => return None,
                v => v.to_scalar()?,
            };
            let pred = tip.field_ops(field);
            match held(field) {
                Held::Other => return None,
                Held::Scalar(cur) if cur == *value => {}
                Held::Scalar(Value::Float(old)) if flips_zero(old, &scalar) => {
                    // As `put_scalar`: Automerge would drop the put, since 0.0 == -0.0.
                    ops.push(op(OpType::Delete, value_obj.clone(), field, pred));
                    ops.push(op(OpType::Put(scalar), value_obj.clone(), field, &[]));
                }
                Held::Scalar(_) | Held::Absent => ops.push(op(OpType::Put(scalar), value_obj.clone(), field, pred)),
            }
        }
        if ops.is_empty() {
            return Some(Ok(None));
        }
        let start_op = tip.max_op() + 1;
        for field in fields.keys() {
            let entry = start_op + ops.len() as u64;
            ops.push(op(OpType::Make(ObjType::Map), prov_obj.clone(), field, tip.prov_ops(field)));
            let entry = ObjectId::Id(OpId(entry, actor.clone()));
            ops.push(op(OpType::Put(ScalarValue::Str(self.job.as_str().into())), entry.clone(), "job", &[]));
            ops.push(op(OpType::Put(ScalarValue::Str(self.run.as_str().into())), entry, "run", &[]));
        }
        let expanded = ExpandedChange {
            operations: ops,
            actor_id: actor,
            hash: None,
            seq: 1,
            start_op: std::num::NonZeroU64::new(start_op)?,
            time: WRITE_BACK_TIME,
            message: None,
            deps: tip.heads().to_vec(),
            extra_bytes: Vec::new(),
            author: None,
        };
        let change = Change::from(expanded);
        Some(Ok(Some(LocalChange { hash: change.hash(), bytes: change.raw_bytes().to_vec() })))
    }
}

/// Whether putting `new` where the float `old` is flips the sign of a zero.
fn flips_zero(old: f64, new: &ScalarValue) -> bool {
    matches!(new, ScalarValue::F64(n) if old == 0.0 && *n == 0.0 && old.to_bits() != n.to_bits())
}
