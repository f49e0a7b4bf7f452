//! A stored plain value with a tip's field edits applied, byte for byte what the hub would write
//! after loading the document (Tidepool's JSON mapping of the whole value).

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use tidepool_core::Value;
use tidepool_json::JsonValue;

/// `stored` (a JSON object as the hub wrote it) with `edits` applied, in order (`None` removes
/// the field), or `None` if `stored` is not such an object. Fields keep their stored text; the
/// map orders them as the mapping does (by name), so the result equals a fresh encoding.
pub(crate) fn patch_value(stored: &[u8], edits: &[(String, Option<Value>)]) -> Option<Vec<u8>> {
    let mut fields: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(stored).ok()?;
    for (field, value) in edits {
        match value {
            Some(v) => {
                let text = serde_json::to_string(&JsonValue(v)).ok()?;
                fields.insert(field.clone(), RawValue::from_string(text).ok()?);
            }
            None => {
                fields.remove(field);
            }
        }
    }
    serde_json::to_vec(&fields).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidepool_core::object;

    fn encode(v: &Value) -> Vec<u8> {
        serde_json::to_vec(&JsonValue(v)).expect("encodes")
    }

    #[test]
    fn a_patched_value_is_the_fresh_encoding_of_the_new_value() {
        let before = object! { "b" => "x\"y", "a" => 1.5, "n" => Value::Float(f64::NAN), "z" => object! { "q" => 1i64 } };
        let after = object! { "b" => "x\"y", "a" => 2i64, "n" => Value::Float(f64::NAN), "z" => object! { "q" => 1i64 }, "é" => Value::Bytes(vec![1, 2]) };
        let edits = vec![
            ("a".to_owned(), Some(Value::Int(2))),
            ("gone".to_owned(), Some(Value::Null)),
            ("é".to_owned(), Some(Value::Bytes(vec![1, 2]))),
            ("gone".to_owned(), None),
        ];
        assert_eq!(patch_value(&encode(&before), &edits), Some(encode(&after)));
        assert_eq!(patch_value(b"[1]", &edits), None, "not an object");
        assert_eq!(patch_value(b"{\"a\":", &edits), None, "not JSON");
    }
}
