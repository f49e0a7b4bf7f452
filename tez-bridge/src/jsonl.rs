//! Streaming JSON for snapshot lines: the same mapping as `tidepool_hub::json` (tagged dates,
//! bytes, non-finite floats and `$`-keyed objects), serialized straight into the output buffer
//! without building a JSON tree first, because snapshots are written at HDFS speed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use tidepool_core::{Key, Value};

/// A value, serialized as `tidepool_hub::json::value_to_json` maps it.
#[derive(Debug)]
pub struct JsonValue<'a>(pub &'a Value);

/// A key, serialized as `tidepool_hub::json::key_to_json` maps it.
#[derive(Debug)]
pub struct JsonKey<'a>(pub &'a Key);

fn tagged<S: Serializer, T: Serialize + ?Sized>(s: S, tag: &str, inner: &T) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(1))?;
    m.serialize_entry(tag, inner)?;
    m.end()
}

fn float<S: Serializer>(s: S, f: f64) -> Result<S::Ok, S::Error> {
    if f.is_finite() {
        s.serialize_f64(f)
    } else if f.is_nan() {
        tagged(s, "$float", "NaN")
    } else if f > 0.0 {
        tagged(s, "$float", "Infinity")
    } else {
        tagged(s, "$float", "-Infinity")
    }
}

/// Whole-number keys print as integers, as the hub's mapping does.
fn float_key<S: Serializer>(s: S, n: f64) -> Result<S::Ok, S::Error> {
    if n.fract() == 0.0 && n.abs() < 9.0e15 { s.serialize_i64(n as i64) } else { float(s, n) }
}

struct FloatKey(f64);

impl Serialize for FloatKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        float_key(s, self.0)
    }
}

struct Fields<'a>(&'a std::collections::BTreeMap<String, Value>);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, &JsonValue(v))?;
        }
        m.end()
    }
}

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(n) | Value::Counter(n) => s.serialize_i64(*n),
            Value::Float(f) => float(s, *f),
            Value::String(t) | Value::Text(t) => s.serialize_str(t),
            Value::Date(ms) => tagged(s, "$date", ms),
            Value::Bytes(b) => tagged(s, "$bytes", &STANDARD.encode(b)),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&JsonValue(v))?;
                }
                seq.end()
            }
            Value::Object(fields) => {
                if fields.len() == 1 && fields.keys().all(|k| k.starts_with('$')) {
                    tagged(s, "$object", &Fields(fields))
                } else {
                    Fields(fields).serialize(s)
                }
            }
        }
    }
}

impl Serialize for JsonKey<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Key::Number(n) => float_key(s, *n),
            Key::Date(ms) => tagged(s, "$date", &FloatKey(*ms)),
            Key::String(t) => s.serialize_str(t),
            Key::Binary(b) => tagged(s, "$bytes", &STANDARD.encode(b)),
            Key::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for k in items {
                    seq.serialize_element(&JsonKey(k))?;
                }
                seq.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidepool_core::object;
    use tidepool_hub::json::{key_to_json, value_to_json};

    #[test]
    fn matches_the_hub_mapping() {
        let values = [
            object! { "a" => 1i64, "f" => 1.0f64, "s" => "x\"y\n", "n" => Value::Null },
            object! { "$date" => 5i64 },
            Value::Array(vec![Value::Date(7), Value::Bytes(vec![0, 255]), Value::Float(f64::NAN), Value::Float(f64::NEG_INFINITY)]),
            Value::Text("t".into()),
            Value::Counter(-3),
            Value::Float(0.1),
        ];
        for v in &values {
            let fast: serde_json::Value = serde_json::from_str(&serde_json::to_string(&JsonValue(v)).unwrap()).unwrap();
            assert_eq!(fast, value_to_json(v), "{v:?}");
        }
        let keys = [
            Key::Number(3.0),
            Key::Number(2.5),
            Key::Date(1e12),
            Key::from("k"),
            Key::Binary(vec![1, 2]),
            Key::Array(vec![Key::Number(1.0), Key::from("a"), Key::Number(f64::INFINITY)]),
        ];
        for k in &keys {
            let fast: serde_json::Value = serde_json::from_str(&serde_json::to_string(&JsonKey(k)).unwrap()).unwrap();
            assert_eq!(fast, key_to_json(k), "{k:?}");
        }
    }
}
