//! The JSON mapping of record keys and values, as `dump` prints them.
//!
//! JSON has no dates, binary or non-finite numbers, so those become one-key objects:
//!
//! | Tidepool                 | JSON                                   |
//! |--------------------------|----------------------------------------|
//! | `Date(ms)`               | `{"$date": ms}`                        |
//! | `Bytes(b)`               | `{"$bytes": "<standard base64>"}`      |
//! | `Float(NaN / ±inf)`      | `{"$float": "NaN" / "Infinity" / "-Infinity"}` |
//! | object whose only key starts with `$` | `{"$object": {...}}`      |
//!
//! Integers print as JSON integers and floats always with a fraction or exponent (`1.0`), so
//! reading the JSON back gives the same variants. Text and counters print as their plain value.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Number, Value as Json, json};
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

fn tagged(tag: &str, value: Json) -> Json {
    let mut map = Map::new();
    map.insert(tag.to_owned(), value);
    Json::Object(map)
}

fn float(f: f64) -> Json {
    match Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None if f.is_nan() => json!({ "$float": "NaN" }),
        None if f > 0.0 => json!({ "$float": "Infinity" }),
        None => json!({ "$float": "-Infinity" }),
    }
}

/// A value as JSON.
pub fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(n) | Value::Counter(n) => Json::Number((*n).into()),
        Value::Float(f) => float(*f),
        Value::String(s) | Value::Text(s) => Json::String(s.clone()),
        Value::Date(ms) => tagged("$date", Json::Number((*ms).into())),
        Value::Bytes(b) => tagged("$bytes", Json::String(STANDARD.encode(b))),
        Value::Array(items) => Json::Array(items.iter().map(value_to_json).collect()),
        Value::Object(fields) => {
            let map: Map<String, Json> = fields.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect();
            let ambiguous = fields.len() == 1 && fields.keys().all(|k| k.starts_with('$'));
            if ambiguous { tagged("$object", Json::Object(map)) } else { Json::Object(map) }
        }
    }
}

fn json_float(tag: &Json) -> Result<f64, JsonError> {
    match tag.as_str() {
        Some("NaN") => Ok(f64::NAN),
        Some("Infinity") => Ok(f64::INFINITY),
        Some("-Infinity") => Ok(f64::NEG_INFINITY),
        _ => Err(JsonError::Number(tag.to_string())),
    }
}

/// JSON as a value (the inverse of [`value_to_json`]).
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

/// A key as JSON: numbers as numbers, strings as strings, dates and binary keys tagged.
pub fn key_to_json(key: &Key) -> Json {
    match key {
        Key::Number(n) => float_key(*n),
        Key::Date(ms) => tagged("$date", float_key(*ms)),
        Key::String(s) => Json::String(s.clone()),
        Key::Binary(b) => tagged("$bytes", Json::String(STANDARD.encode(b))),
        Key::Array(items) => Json::Array(items.iter().map(key_to_json).collect()),
    }
}

/// Whole numbers print without a fraction: keys are usually ids, and `7` reads better than `7.0`.
fn float_key(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Json::Number((n as i64).into())
    } else {
        float(n)
    }
}

/// JSON as a key (the inverse of [`key_to_json`]).
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tidepool_core::object;

    use super::*;

    #[test]
    fn tagged_values_print_as_documented() {
        let v = object! { "when" => Value::Date(5), "raw" => Value::Bytes(vec![0, 255]), "n" => 1.0, "i" => 1i64 };
        assert_eq!(
            serde_json::to_string(&value_to_json(&v)).expect("json"),
            r#"{"i":1,"n":1.0,"raw":{"$bytes":"AP8="},"when":{"$date":5}}"#
        );
        let lookalike = object! { "$date" => 3i64 };
        assert_eq!(value_to_json(&lookalike), json!({ "$object": { "$date": 3 } }));
        assert_eq!(value_from_json(&value_to_json(&lookalike)), Ok(lookalike));
        assert_eq!(key_to_json(&Key::Array(vec![Key::Number(7.0), Key::String("a".into())])), json!([7, "a"]));
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            ".*".prop_map(Value::String),
            any::<i64>().prop_map(Value::Date),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("\\$?[a-z]{0,3}", inner, 0..4).prop_map(Value::Object),
            ]
        })
    }

    fn key() -> impl Strategy<Value = Key> {
        let leaf = prop_oneof![
            any::<f64>().prop_filter("NaN is not a key", |f| !f.is_nan()).prop_map(Key::Number),
            (-1e13f64..1e13).prop_map(|f| Key::Date(f.trunc())),
            ".*".prop_map(Key::String),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Key::Binary),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| proptest::collection::vec(inner, 0..3).prop_map(Key::Array))
    }

    proptest! {
        #[test]
        fn values_round_trip(v in value()) {
            let text = serde_json::to_string(&value_to_json(&v)).expect("json");
            let back: Json = serde_json::from_str(&text).expect("parse");
            prop_assert_eq!(value_from_json(&back), Ok(v));
        }

        #[test]
        fn keys_round_trip(k in key()) {
            let text = serde_json::to_string(&key_to_json(&k)).expect("json");
            let back: Json = serde_json::from_str(&text).expect("parse");
            let decoded = key_from_json(&back).expect("key");
            prop_assert_eq!(decoded.encode().ok(), k.encode().ok());
        }
    }
}
