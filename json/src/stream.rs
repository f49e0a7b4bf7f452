//! The mapping as `serde::Serialize` (tagged dates, bytes, non-finite floats and `$`-keyed
//! objects), serialized straight into the output buffer without building a JSON tree first,
//! because snapshots are written at HDFS speed. The tree form is built through it too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use tidepool_core::{Key, Value};

/// A value in the JSON mapping: `serde_json::to_writer(out, &JsonValue(&value))`.
#[derive(Debug)]
pub struct JsonValue<'a>(pub &'a Value);

/// A key in the JSON mapping: `serde_json::to_writer(out, &JsonKey(&key))`.
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

/// Whole numbers print without a fraction: keys are usually ids, and `7` reads better than `7.0`.
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
