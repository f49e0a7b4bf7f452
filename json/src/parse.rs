//! JSON back to values and keys: the inverse of the mapping, from a `serde_json::Value` (the
//! bridge reads Tez output lines this way).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value as Json};
use thiserror::Error;
use tidepool_core::{Key, Value};

/// Why JSON does not map to a value or key.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum JsonError {
    #[error("{0}: not valid base64")]
    Base64(String),
    #[error("{0} is not a number Tidepool can store")]
    Number(String),
    #[error("{0} is not a valid key")]
    Key(String),
    #[error("unknown tagged value {0}")]
    Tag(String),
}

fn json_float(tag: &Json) -> Result<f64, JsonError> {
    match tag.as_str() {
        Some("NaN") => Ok(f64::NAN),
        Some("Infinity") => Ok(f64::INFINITY),
        Some("-Infinity") => Ok(f64::NEG_INFINITY),
        _ => Err(JsonError::Number(tag.to_string())),
    }
}

/// JSON as a value (the inverse of [`value_to_json`](crate::value_to_json)).
pub fn value_from_json(json: &Json) -> Result<Value, JsonError> {
    Ok(match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) if !n.is_f64() => Value::Int(i),
            (_, Some(f)) if n.is_f64() => Value::Float(f),
            _ => return Err(JsonError::Number(n.to_string())),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Array(items.iter().map(value_from_json).collect::<Result<_, _>>()?),
        Json::Object(map) => {
            if let Some((tag, inner)) = single_tag(map) {
                return match tag {
                    "$date" => inner.as_i64().map(Value::Date).ok_or_else(|| JsonError::Number(inner.to_string())),
                    "$bytes" => bytes(inner).map(Value::Bytes),
                    "$float" => json_float(inner).map(Value::Float),
                    "$object" => match inner {
                        Json::Object(fields) => Ok(Value::Object(
                            fields.iter().map(|(k, v)| Ok((k.clone(), value_from_json(v)?))).collect::<Result<_, _>>()?,
                        )),
                        other => Err(JsonError::Tag(other.to_string())),
                    },
                    other => Err(JsonError::Tag(other.to_owned())),
                };
            }
            Value::Object(map.iter().map(|(k, v)| Ok((k.clone(), value_from_json(v)?))).collect::<Result<_, _>>()?)
        }
    })
}

fn single_tag(map: &Map<String, Json>) -> Option<(&str, &Json)> {
    let mut iter = map.iter();
    match (iter.next(), iter.next()) {
        (Some((k, v)), None) if k.starts_with('$') => Some((k.as_str(), v)),
        _ => None,
    }
}

fn bytes(json: &Json) -> Result<Vec<u8>, JsonError> {
    let text = json.as_str().ok_or_else(|| JsonError::Base64(json.to_string()))?;
    STANDARD.decode(text).map_err(|_| JsonError::Base64(text.to_owned()))
}

/// JSON as a key (the inverse of [`key_to_json`](crate::key_to_json)).
pub fn key_from_json(json: &Json) -> Result<Key, JsonError> {
    let number = |j: &Json| match j {
        Json::Number(n) => n.as_f64().ok_or_else(|| JsonError::Key(j.to_string())),
        Json::Object(m) => match single_tag(m) {
            Some(("$float", v)) => json_float(v),
            _ => Err(JsonError::Key(j.to_string())),
        },
        _ => Err(JsonError::Key(j.to_string())),
    };
    let key = match json {
        Json::Number(_) => Key::Number(number(json)?),
        Json::String(s) => Key::String(s.clone()),
        Json::Array(items) => Key::Array(items.iter().map(key_from_json).collect::<Result<_, _>>()?),
        Json::Object(map) => match single_tag(map) {
            Some(("$date", v)) => Key::Date(number(v)?),
            Some(("$bytes", v)) => Key::Binary(bytes(v)?),
            Some(("$float", _)) => Key::Number(number(json)?),
            _ => return Err(JsonError::Key(json.to_string())),
        },
        Json::Null | Json::Bool(_) => return Err(JsonError::Key(json.to_string())),
    };
    key.validate().map_err(|e| JsonError::Key(e.to_string()))?;
    Ok(key)
}
