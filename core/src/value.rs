//! App values: what an IndexedDB record holds, as Tidepool stores it in Automerge.
//!
//! Plain values (null, booleans, numbers, strings, dates, binary, arrays, objects) map onto
//! Automerge scalars, lists and maps. Two collaborative types exist only through explicit
//! operations and read back as their own variants: [`Value::Text`] (an Automerge text object,
//! edited by splices) and [`Value::Counter`] (an Automerge counter, edited by increments).

use std::collections::BTreeMap;

use automerge::{ObjId, ObjType, ReadDoc, ScalarValue};
use thiserror::Error;

/// The deepest nesting of arrays and objects a value may have; bounds recursion on untrusted input.
pub const MAX_VALUE_DEPTH: usize = 64;

/// A record value or a part of one.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    /// Milliseconds since the Unix epoch (a JavaScript `Date`, which is always whole milliseconds).
    Date(i64),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Object(BTreeMap<String, Value>),
    /// Collaborative text: concurrent splices interleave instead of one string replacing another.
    Text(String),
    /// A counter: concurrent increments add up.
    Counter(i64),
}

/// Why a value cannot be stored or read back.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ValueError {
    #[error("value nests deeper than {MAX_VALUE_DEPTH} levels")]
    TooDeep,
    #[error("the document holds a value of a type this version does not know (type code {0})")]
    UnknownScalar(u8),
    #[error("unsigned integer {0} does not fit a signed 64-bit integer")]
    UintOverflow(u64),
}

impl PartialEq for Value {
    /// Structural equality in which a float equals itself bit for bit (so NaN == NaN and an
    /// unchanged NaN field is not rewritten) and `-0.0 != 0.0` (JavaScript can tell them apart).
    fn eq(&self, other: &Self) -> bool {
        use Value::*;
        match (self, other) {
            (Null, Null) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) | (Date(a), Date(b)) | (Counter(a), Counter(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (String(a), String(b)) | (Text(a), Text(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (Array(a), Array(b)) => a == b,
            (Object(a), Object(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl std::hash::Hash for Value {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Value::Null => {}
            Value::Bool(b) => b.hash(state),
            Value::Int(n) | Value::Date(n) | Value::Counter(n) => n.hash(state),
            Value::Float(f) => f.to_bits().hash(state),
            Value::String(s) | Value::Text(s) => s.hash(state),
            Value::Bytes(b) => b.hash(state),
            Value::Array(a) => a.hash(state),
            Value::Object(o) => o.hash(state),
        }
    }
}

impl Value {
    /// Checks that the value can be stored: today only its depth can be wrong.
    pub fn validate(&self) -> Result<(), ValueError> {
        self.validate_at(0)
    }

    fn validate_at(&self, depth: usize) -> Result<(), ValueError> {
        let children: Box<dyn Iterator<Item = &Value>> = match self {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(fields) => Box::new(fields.values()),
            _ => return Ok(()),
        };
        if depth >= MAX_VALUE_DEPTH {
            return Err(ValueError::TooDeep);
        }
        children.into_iter().try_for_each(|v| v.validate_at(depth + 1))
    }

    /// The value as plain data, the way it appears in the plain IndexedDB store and to analytics:
    /// text becomes a string and a counter a number.
    pub fn to_plain(&self) -> Value {
        match self {
            Value::Text(s) => Value::String(s.clone()),
            Value::Counter(n) => Value::Int(*n),
            Value::Array(items) => Value::Array(items.iter().map(Value::to_plain).collect()),
            Value::Object(fields) => {
                Value::Object(fields.iter().map(|(k, v)| (k.clone(), v.to_plain())).collect())
            }
            other => other.clone(),
        }
    }

    /// The scalar Automerge stores for this value, or `None` for arrays, objects and text.
    pub(crate) fn to_scalar(&self) -> Option<ScalarValue> {
        Some(match self {
            Value::Null => ScalarValue::Null,
            Value::Bool(b) => ScalarValue::Boolean(*b),
            Value::Int(n) => ScalarValue::Int(*n),
            Value::Float(f) => ScalarValue::F64(*f),
            Value::String(s) => ScalarValue::Str(s.as_str().into()),
            Value::Date(ms) => ScalarValue::Timestamp(*ms),
            Value::Bytes(b) => ScalarValue::Bytes(b.clone()),
            Value::Counter(n) => ScalarValue::counter(*n),
            Value::Array(_) | Value::Object(_) | Value::Text(_) => return None,
        })
    }

    pub(crate) fn from_scalar(s: &ScalarValue) -> Result<Value, ValueError> {
        Ok(match s {
            ScalarValue::Null => Value::Null,
            ScalarValue::Boolean(b) => Value::Bool(*b),
            ScalarValue::Int(n) => Value::Int(*n),
            ScalarValue::Uint(n) => {
                Value::Int(i64::try_from(*n).map_err(|_| ValueError::UintOverflow(*n))?)
            }
            ScalarValue::F64(f) => Value::Float(*f),
            ScalarValue::Str(s) => Value::String(s.to_string()),
            ScalarValue::Timestamp(ms) => Value::Date(*ms),
            ScalarValue::Bytes(b) => Value::Bytes(b.clone()),
            ScalarValue::Counter(c) => Value::Counter(i64::from(c)),
            ScalarValue::Unknown { type_code, .. } => return Err(ValueError::UnknownScalar(*type_code)),
        })
    }

    /// Reads the whole object `obj` of a document as a value.
    pub(crate) fn read_object<D: ReadDoc>(doc: &D, obj: &ObjId) -> Result<Value, ValueError> {
        Ok(Self::read_object_at(doc, obj, 0, false)?.unwrap_or(Value::Null))
    }

    /// As [`Value::read_object`], or `None` when the object holds a table somewhere: a table
    /// reads as an object, but a put does not edit it in place as it does a map.
    pub(crate) fn read_object_exact<D: ReadDoc>(doc: &D, obj: &ObjId) -> Result<Option<Value>, ValueError> {
        Self::read_object_at(doc, obj, 0, true)
    }

    /// The value at `obj[prop]` as [`Value::read_object_exact`] reads objects; `None` also when
    /// nothing is there.
    pub(crate) fn read_prop_exact<D: ReadDoc>(doc: &D, obj: &ObjId, prop: &str) -> Result<Option<Value>, ValueError> {
        match doc.get(obj, prop) {
            Ok(Some((automerge::Value::Scalar(s), _))) => Value::from_scalar(&s).map(Some),
            Ok(Some((automerge::Value::Object(_), id))) => Self::read_object_at(doc, &id, 1, true),
            _ => Ok(None),
        }
    }

    fn read_object_at<D: ReadDoc>(
        doc: &D,
        obj: &ObjId,
        depth: usize,
        exact: bool,
    ) -> Result<Option<Value>, ValueError> {
        if depth > MAX_VALUE_DEPTH {
            return Err(ValueError::TooDeep);
        }
        let child = |v: automerge::Value<'_>, id: ObjId| -> Result<Option<Value>, ValueError> {
            match v {
                automerge::Value::Scalar(s) => Value::from_scalar(&s).map(Some),
                automerge::Value::Object(_) => Self::read_object_at(doc, &id, depth + 1, exact),
            }
        };
        match doc.object_type(obj) {
            Ok(ObjType::Table) if exact => Ok(None),
            // One pass over the object (each key's or index's winning value, as `get` gives it),
            // not a lookup per key or index.
            Ok(ObjType::Map) | Ok(ObjType::Table) => {
                let mut fields = BTreeMap::new();
                for item in doc.map_range(obj, ..) {
                    let id = if matches!(item.value, automerge::ValueRef::Object(_)) { item.id() } else { ObjId::Root };
                    let Some(value) = child(item.value.into_value(), id)? else { return Ok(None) };
                    fields.insert(item.key.into_owned(), value);
                }
                Ok(Some(Value::Object(fields)))
            }
            Ok(ObjType::List) => {
                let mut items = Vec::with_capacity(doc.length(obj));
                for item in doc.list_range(obj, ..) {
                    let id = if matches!(item.value, automerge::ValueRef::Object(_)) { item.id() } else { ObjId::Root };
                    let Some(value) = child(item.value.into_value(), id)? else { return Ok(None) };
                    items.push(value);
                }
                Ok(Some(Value::Array(items)))
            }
            Ok(ObjType::Text) => Ok(Some(Value::Text(doc.text(obj).unwrap_or_default()))),
            Err(_) => Ok(Some(Value::Null)),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Float(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Value {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Value::Object(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

/// Builds a [`Value::Object`] from `key => value` pairs.
#[macro_export]
macro_rules! object {
    ($($k:expr => $v:expr),* $(,)?) => {
        $crate::Value::Object([$(($k.to_string(), $crate::Value::from($v))),*].into_iter().collect())
    };
}

/// A path into a record value: object fields and array indexes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    Field(String),
    Index(usize),
}

impl From<&str> for PathSegment {
    fn from(s: &str) -> Self {
        PathSegment::Field(s.to_owned())
    }
}

impl From<usize> for PathSegment {
    fn from(i: usize) -> Self {
        PathSegment::Index(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_bounded() {
        let mut v = Value::Null;
        for _ in 0..=MAX_VALUE_DEPTH {
            v = Value::Array(vec![v]);
        }
        assert_eq!(v.validate(), Err(ValueError::TooDeep));
    }

    #[test]
    fn nan_equals_itself_but_zero_signs_differ() {
        assert_eq!(Value::Float(f64::NAN), Value::Float(f64::NAN));
        assert_ne!(Value::Float(0.0), Value::Float(-0.0));
        assert_ne!(Value::Int(1), Value::Float(1.0));
    }
}
