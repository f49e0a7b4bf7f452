//! Reconciliation: turning "the record should now be this value" into the fewest Automerge
//! operations against what the document holds.
//!
//! Only changed fields are written; nested objects are edited in place; lists are diffed (Myers)
//! so an insertion is one insert, not a rewrite; a string put onto collaborative text becomes a
//! text diff, and an integer put onto a counter becomes an increment, so concurrent splices and
//! increments by other peers survive a plain `put`.

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, Prop, ScalarValue};
use similar::{Algorithm, DiffOp, capture_diff_slices};

use crate::value::{Value, ValueError};

/// Errors while reconciling; Automerge errors here mean a bug or a corrupt document.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error("automerge rejected an edit: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

/// Makes the map `obj` hold exactly `fields`.
pub(crate) fn reconcile_map<T: Transactable>(
    doc: &mut T,
    obj: &ObjId,
    fields: &BTreeMap<String, Value>,
) -> Result<(), ReconcileError> {
    let stale: Vec<String> = doc.keys(obj).filter(|k| !fields.contains_key(k)).collect();
    for key in stale {
        doc.delete(obj, key.as_str())?;
    }
    for (key, value) in fields {
        reconcile_prop(doc, obj, Prop::Map(key.clone()), value)?;
    }
    Ok(())
}

/// Makes `obj[prop]` hold `new`, editing in place where the kinds match.
pub(crate) fn reconcile_prop<T: Transactable>(
    doc: &mut T,
    obj: &ObjId,
    prop: Prop,
    new: &Value,
) -> Result<(), ReconcileError> {
    let current = doc.get(obj, prop.clone())?.map(|(v, id)| (v.into_owned(), id));
    match (current, new) {
        (Some((automerge::Value::Object(ObjType::Map), id)), Value::Object(fields)) => {
            reconcile_map(doc, &id, fields)
        }
        (Some((automerge::Value::Object(ObjType::List), id)), Value::Array(items)) => {
            reconcile_list(doc, &id, items)
        }
        (Some((automerge::Value::Object(ObjType::Text), id)), Value::Text(s) | Value::String(s)) => {
            if doc.text(&id)? != *s {
                doc.update_text(&id, s)?;
            }
            Ok(())
        }
        (
            Some((automerge::Value::Scalar(cur), _)),
            Value::Counter(n) | Value::Int(n),
        ) if matches!(cur.as_ref(), ScalarValue::Counter(_)) => {
            let ScalarValue::Counter(c) = cur.as_ref() else { unreachable!() };
            let delta = n.wrapping_sub(i64::from(c));
            if delta != 0 {
                doc.increment(obj, prop, delta)?;
            }
            Ok(())
        }
        (Some((automerge::Value::Scalar(cur), _)), new)
            if new.to_scalar().is_some() && Value::from_scalar(&cur).as_ref() == Ok(new) =>
        {
            Ok(())
        }
        (current, new) => {
            let held = match current {
                Some((automerge::Value::Scalar(cur), _)) => match cur.as_ref() {
                    ScalarValue::F64(f) => Some(*f),
                    _ => None,
                },
                _ => None,
            };
            put_new(doc, obj, prop, new, held)
        }
    }
}

/// Writes `value` fresh at `obj[prop]`, replacing whatever was there (`held`: the float there,
/// if it holds one).
fn put_new<T: Transactable>(
    doc: &mut T,
    obj: &ObjId,
    prop: Prop,
    value: &Value,
    held: Option<f64>,
) -> Result<(), ReconcileError> {
    if let Some(scalar) = value.to_scalar() {
        put_scalar(doc, obj, prop, scalar, held)?;
        return Ok(());
    }
    let child = doc.put_object(obj, prop, obj_type(value))?;
    fill(doc, &child, value)
}

/// Puts a scalar at `obj[prop]`, where the caller knows the float the document holds there
/// (`held`; `None` for anything else). Automerge drops a put of a value equal (`==`) to the one
/// there, and `0.0 == -0.0`: a zero whose sign flips replaces the old one by a delete and a fresh
/// write.
pub(crate) fn put_scalar<T: Transactable>(
    doc: &mut T,
    obj: &ObjId,
    prop: Prop,
    scalar: ScalarValue,
    held: Option<f64>,
) -> Result<(), automerge::AutomergeError> {
    let flips_zero = matches!((&scalar, held), (ScalarValue::F64(new), Some(old))
        if old == 0.0 && *new == 0.0 && old.to_bits() != new.to_bits());
    match prop {
        Prop::Map(key) if flips_zero => {
            doc.delete(obj, key.as_str())?;
            doc.put(obj, key, scalar)
        }
        Prop::Seq(index) if flips_zero => {
            doc.delete(obj, index)?;
            doc.insert(obj, index, scalar)
        }
        prop => doc.put(obj, prop, scalar),
    }
}

fn insert_new<T: Transactable>(
    doc: &mut T,
    list: &ObjId,
    index: usize,
    value: &Value,
) -> Result<(), ReconcileError> {
    if let Some(scalar) = value.to_scalar() {
        doc.insert(list, index, scalar)?;
        return Ok(());
    }
    let child = doc.insert_object(list, index, obj_type(value))?;
    fill(doc, &child, value)
}

fn obj_type(value: &Value) -> ObjType {
    match value {
        Value::Array(_) => ObjType::List,
        Value::Text(_) => ObjType::Text,
        _ => ObjType::Map,
    }
}

/// Fills a freshly created, empty object.
fn fill<T: Transactable>(doc: &mut T, obj: &ObjId, value: &Value) -> Result<(), ReconcileError> {
    match value {
        Value::Object(fields) => {
            for (k, v) in fields {
                put_new(doc, obj, Prop::Map(k.clone()), v, None)?;
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                insert_new(doc, obj, i, v)?;
            }
        }
        Value::Text(s) => doc.splice_text(obj, 0, 0, s)?,
        _ => {}
    }
    Ok(())
}

/// Makes the list `list` hold `new` with a Myers diff over plain element values: equal runs are
/// left alone, replaced runs are reconciled element by element (so an edited object inside a
/// list keeps its identity and concurrent edits to it merge), and the rest is inserted or deleted.
fn reconcile_list<T: Transactable>(
    doc: &mut T,
    list: &ObjId,
    new: &[Value],
) -> Result<(), ReconcileError> {
    let Value::Array(old) = Value::read_object(doc, list)? else {
        return Ok(());
    };
    let old_plain: Vec<Value> = old.iter().map(Value::to_plain).collect();
    let new_plain: Vec<Value> = new.iter().map(Value::to_plain).collect();
    // Ops come in order, and once an op is applied the list's prefix equals `new`'s prefix, so
    // `new_index` is also the op's position in the list being edited.
    for op in capture_diff_slices(Algorithm::Myers, &old_plain, &new_plain) {
        match op {
            DiffOp::Equal { .. } => {}
            DiffOp::Delete { old_len, new_index, .. } => {
                for _ in 0..old_len {
                    doc.delete(list, new_index)?;
                }
            }
            DiffOp::Insert { new_index, new_len, .. } => {
                for (i, value) in new.iter().enumerate().skip(new_index).take(new_len) {
                    insert_new(doc, list, i, value)?;
                }
            }
            DiffOp::Replace { old_len, new_index, new_len, .. } => {
                let shared = old_len.min(new_len);
                for (i, value) in new.iter().enumerate().skip(new_index).take(shared) {
                    reconcile_prop(doc, list, Prop::Seq(i), value)?;
                }
                for _ in shared..old_len {
                    doc.delete(list, new_index + shared)?;
                }
                let rest = new.iter().enumerate().skip(new_index + shared).take(new_len - shared);
                for (i, value) in rest {
                    insert_new(doc, list, i, value)?;
                }
            }
        }
    }
    Ok(())
}
