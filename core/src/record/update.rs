//! Field updates: change only the named fields of a record, on top of whatever the document holds
//! now, so edits made elsewhere to the other fields survive.
//!
//! A [`Patch`] names fields by nesting: a field is set to a value, removed, or (for a nested
//! object) patched in turn. `put` says "the record is now exactly this" and so writes what the
//! caller last read; an app that reads, awaits anything and puts its modified copy reverts the
//! remote edits that arrived meanwhile. An update computes its operations from the document at
//! the moment it runs and touches nothing it does not name.

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, Prop, ROOT, ReadDoc};

use super::{Record, RecordError};
use crate::LocalChange;
use crate::layout::{VALUE, mark_live};
use crate::reconcile::reconcile_prop;
use crate::value::{Value, ValueError};

/// What an update does to one field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldUpdate {
    /// The field now holds this value (reconciled like a put: text stays text, counters count).
    Set(Value),
    /// The field is removed (nothing happens if it is absent).
    Remove,
    /// The field's object gets these changes; a field that holds no object yet becomes an object
    /// of the patch's set fields.
    Patch(Patch),
}

/// Changes to named fields of a record, nested for nested objects.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Patch {
    fields: BTreeMap<String, FieldUpdate>,
}

impl Patch {
    pub fn new() -> Patch {
        Patch::default()
    }

    /// Sets `field` to `value`.
    pub fn set(mut self, field: impl Into<String>, value: Value) -> Patch {
        self.fields.insert(field.into(), FieldUpdate::Set(value));
        self
    }

    /// Removes `field`.
    pub fn remove(mut self, field: impl Into<String>) -> Patch {
        self.fields.insert(field.into(), FieldUpdate::Remove);
        self
    }

    /// Applies `patch` to the object in `field`.
    pub fn patch(mut self, field: impl Into<String>, patch: Patch) -> Patch {
        self.fields.insert(field.into(), FieldUpdate::Patch(patch));
        self
    }

    /// Adds one field's change (the last one named for a field wins).
    pub fn insert(&mut self, field: impl Into<String>, update: FieldUpdate) {
        self.fields.insert(field.into(), update);
    }

    /// The patch of a plain object: nested objects become nested patches, everything else is
    /// set. (There is no removal in a value; use [`Patch::remove`].)
    pub fn from_fields(fields: BTreeMap<String, Value>) -> Patch {
        let fields = fields
            .into_iter()
            .map(|(k, v)| match v {
                Value::Object(inner) => (k, FieldUpdate::Patch(Patch::from_fields(inner))),
                other => (k, FieldUpdate::Set(other)),
            })
            .collect();
        Patch { fields }
    }

    pub fn fields(&self) -> &BTreeMap<String, FieldUpdate> {
        &self.fields
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The object the patch makes out of nothing: its set fields, removals left out. This is what
    /// a record that does not exist (or a field holding no object) becomes.
    pub fn to_value(&self) -> Value {
        Value::Object(
            self.fields
                .iter()
                .filter_map(|(k, u)| match u {
                    FieldUpdate::Set(v) => Some((k.clone(), v.clone())),
                    FieldUpdate::Patch(p) => Some((k.clone(), p.to_value())),
                    FieldUpdate::Remove => None,
                })
                .collect(),
        )
    }

    /// Checks every value and the nesting depth before anything is written: the same limits as a
    /// put of [`Patch::to_value`] (a removal adds no depth).
    pub fn validate(&self) -> Result<(), ValueError> {
        self.to_value().validate()
    }
}

impl Record {
    /// Changes only the fields `patch` names, on top of the document's current state, as one
    /// change. A record that does not exist (never written, or deleted) becomes the patch's
    /// object, as a put of it would make it. Returns `None` when nothing changed.
    pub fn update(&mut self, patch: &Patch, time: i64) -> Result<Option<LocalChange>, RecordError> {
        if !self.exists() {
            return self.put(&patch.to_value(), time);
        }
        patch.validate()?;
        let result = self.update_inner(patch);
        self.finish(result, time)
    }

    fn update_inner(&mut self, patch: &Patch) -> Result<(), RecordError> {
        match self.doc.get(ROOT, VALUE)? {
            Some((automerge::Value::Object(ObjType::Map), obj)) => apply(&mut self.doc, &obj, patch)?,
            // The record holds no object (a scalar or list was put): the patch's object replaces it.
            _ => reconcile_prop(&mut self.doc, &ROOT, Prop::Map(VALUE.into()), &patch.to_value())?,
        }
        if self.doc.pending_ops() > 0 {
            mark_live(&mut self.doc)?;
        }
        Ok(())
    }
}

fn apply<T: Transactable>(doc: &mut T, obj: &ObjId, patch: &Patch) -> Result<(), RecordError> {
    for (field, update) in &patch.fields {
        let prop = Prop::Map(field.clone());
        match update {
            FieldUpdate::Set(value) => reconcile_prop(doc, obj, prop, value)?,
            FieldUpdate::Remove => {
                if doc.get(obj, prop.clone())?.is_some() {
                    doc.delete(obj, prop)?;
                }
            }
            FieldUpdate::Patch(inner) => match doc.get(obj, prop.clone())? {
                Some((automerge::Value::Object(ObjType::Map), id)) => apply(doc, &id, inner)?,
                _ => reconcile_prop(doc, obj, prop, &inner.to_value())?,
            },
        }
    }
    Ok(())
}
