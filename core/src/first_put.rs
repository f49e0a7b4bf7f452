//! The first put of a new record as one encoded change, built without materializing the document.
//!
//! A record that does not exist anywhere yet holds only the genesis change, so the change a put
//! makes is known in advance: every field is a fresh op with no predecessors, lists are inserted
//! front to back, and `live` is set to 1. Writing those ops straight into a change is several
//! times cheaper than splicing them into an Automerge op set and encoding them back out, which is
//! what a browser `bulkPut` of new records would otherwise spend most of its time on.
//!
//! The result is byte-identical to [`Record::put`] on a fresh [`Record`] (a property test checks
//! it), so peers cannot tell which path made a change. Collaborative text takes the ordinary
//! path: Automerge's own splitting of text into ops is not reproduced here.

use std::num::NonZeroU64;

use automerge::legacy::{ElementId, Key as OpKey, ObjectId, Op, OpId, OpType, SortedVec};
use automerge::{ActorId, Change, ExpandedChange, ObjType, ScalarValue};

use crate::layout::{LIVE, VALUE, genesis_actor, genesis_hash};
use crate::record::{LocalChange, Record, RecordError};
use crate::value::Value;

/// The genesis change's ops: `v` is op 1, `prov` op 2; the first local op is 3.
const GENESIS_VALUE_OP: u64 = 1;
const FIRST_OP: u64 = 3;

/// The change that `Record::put(value, time)` makes on a brand-new record written by `actor`.
///
/// Only for records this replica has never seen (no document, no stored changes): the change is
/// the actor's first in the document and depends on the genesis change alone.
pub fn first_put(actor: &ActorId, value: &Value, time: i64) -> Result<LocalChange, RecordError> {
    value.validate()?;
    let Some(ops) = plan(actor, value) else {
        return ordinary_first_put(actor, value, time);
    };
    let change = Change::from(ExpandedChange {
        operations: ops,
        actor_id: actor.clone(),
        hash: None,
        seq: 1,
        start_op: NonZeroU64::new(FIRST_OP).unwrap_or(NonZeroU64::MIN),
        time,
        message: None,
        deps: vec![genesis_hash()],
        extra_bytes: Vec::new(),
        author: None,
    });
    Ok(LocalChange { hash: change.hash(), bytes: change.raw_bytes().to_vec() })
}

/// The general path, for values this module does not plan (collaborative text).
fn ordinary_first_put(actor: &ActorId, value: &Value, time: i64) -> Result<LocalChange, RecordError> {
    let mut record = Record::blank(actor);
    record.put(value, time)?.ok_or(RecordError::NotFound)
}

/// The ops of the first put, in op-counter order; `None` if the value holds collaborative text.
fn plan(actor: &ActorId, value: &Value) -> Option<Vec<Op>> {
    let mut ops = Ops { actor, ops: Vec::with_capacity(count_ops(value) + 1) };
    match value {
        // The genesis change made `v` a map: the fields go straight into it.
        Value::Object(fields) => {
            let v = ObjectId::Id(OpId(GENESIS_VALUE_OP, genesis_actor()));
            for (name, field) in fields {
                ops.put(&v, OpKey::Map(name.as_str().into()), field, SortedVec::new(), false)?;
            }
        }
        // Anything else replaces the genesis map.
        other => {
            let pred = SortedVec::from(vec![OpId(GENESIS_VALUE_OP, genesis_actor())]);
            ops.put(&ObjectId::Root, OpKey::Map(VALUE.into()), other, pred, false)?;
        }
    }
    let live = Value::Int(1);
    ops.put(&ObjectId::Root, OpKey::Map(LIVE.into()), &live, SortedVec::new(), false)?;
    Some(ops.ops)
}

/// How many ops a value takes (to size the op list once).
fn count_ops(value: &Value) -> usize {
    match value {
        Value::Object(fields) => 1 + fields.values().map(count_ops).sum::<usize>(),
        Value::Array(items) => 1 + items.iter().map(count_ops).sum::<usize>(),
        _ => 1,
    }
}

struct Ops<'a> {
    actor: &'a ActorId,
    ops: Vec<Op>,
}

impl Ops<'_> {
    /// The id the next op gets.
    fn next_id(&self) -> OpId {
        OpId(FIRST_OP + self.ops.len() as u64, self.actor.clone())
    }

    /// Writes `value` fresh at `obj[key]`, as `reconcile::put_new` (or `insert_new`) does.
    fn put(&mut self, obj: &ObjectId, key: OpKey, value: &Value, pred: SortedVec<OpId>, insert: bool) -> Option<()> {
        let action = match value {
            Value::Text(_) => return None,
            Value::Object(_) => OpType::Make(ObjType::Map),
            Value::Array(_) => OpType::Make(ObjType::List),
            scalar => OpType::Put(scalar.to_scalar().unwrap_or(ScalarValue::Null)),
        };
        let id = self.next_id();
        self.ops.push(Op { action, obj: obj.clone(), key, pred, insert });
        let child = ObjectId::Id(id);
        match value {
            Value::Object(fields) => {
                for (name, field) in fields {
                    self.put(&child, OpKey::Map(name.as_str().into()), field, SortedVec::new(), false)?;
                }
            }
            Value::Array(items) => {
                let mut after = ElementId::Head;
                for item in items {
                    let id = self.next_id();
                    self.put(&child, OpKey::Seq(after), item, SortedVec::new(), true)?;
                    after = ElementId::Id(id);
                }
            }
            _ => {}
        }
        Some(())
    }
}
