//! The mapping's format, and proof that its two forms agree: the streaming serializer and the
//! `serde_json::Value` tree print the same bytes, the same bytes as the tree builder the hub had
//! before the mapping moved here (which the JVM side and the tests parse), and parse back.

use proptest::prelude::*;
use serde_json::{Value as Json, json};
use tidepool_core::{Key, Value, object};
use tidepool_json::{JsonKey, JsonValue, key_from_json, key_to_json, value_from_json, value_to_json};

/// The hub's tree builder as it was, kept as the reference for the output format.
mod former {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::{Map, Number, Value as Json, json};
    use tidepool_core::{Key, Value};

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

    pub fn key_to_json(key: &Key) -> Json {
        match key {
            Key::Number(n) => float_key(*n),
            Key::Date(ms) => tagged("$date", float_key(*ms)),
            Key::String(s) => Json::String(s.clone()),
            Key::Binary(b) => tagged("$bytes", Json::String(STANDARD.encode(b))),
            Key::Array(items) => Json::Array(items.iter().map(key_to_json).collect()),
        }
    }

    fn float_key(n: f64) -> Json {
        if n.fract() == 0.0 && n.abs() < 9.0e15 { Json::Number((n as i64).into()) } else { float(n) }
    }
}

fn text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("json")
}

#[test]
fn tagged_values_print_as_documented() {
    let v = object! { "when" => Value::Date(5), "raw" => Value::Bytes(vec![0, 255]), "n" => 1.0, "i" => 1i64 };
    let expected = r#"{"i":1,"n":1.0,"raw":{"$bytes":"AP8="},"when":{"$date":5}}"#;
    assert_eq!(text(&value_to_json(&v)), expected);
    assert_eq!(text(&JsonValue(&v)), expected);
    let lookalike = object! { "$date" => 3i64 };
    assert_eq!(value_to_json(&lookalike), json!({ "$object": { "$date": 3 } }));
    assert_eq!(value_from_json(&value_to_json(&lookalike)), Ok(lookalike));
    assert_eq!(key_to_json(&Key::Array(vec![Key::Number(7.0), Key::String("a".into())])), json!([7, "a"]));
    let specials = Value::Array(vec![
        Value::Float(f64::NAN),
        Value::Float(f64::INFINITY),
        Value::Float(f64::NEG_INFINITY),
        Value::Text("t".into()),
        Value::Counter(-3),
    ]);
    assert_eq!(
        text(&JsonValue(&specials)),
        r#"[{"$float":"NaN"},{"$float":"Infinity"},{"$float":"-Infinity"},"t",-3]"#
    );
    assert_eq!(text(&JsonKey(&Key::Date(1e12))), r#"{"$date":1000000000000}"#);
    assert_eq!(text(&JsonKey(&Key::Number(2.5))), "2.5");
}

#[test]
fn bad_json_is_an_error() {
    assert!(value_from_json(&json!({ "$date": "soon" })).is_err());
    assert!(value_from_json(&json!({ "$bytes": "not base64!" })).is_err());
    assert!(value_from_json(&json!({ "$what": 1 })).is_err());
    assert!(value_from_json(&json!({ "$float": "big" })).is_err());
    assert!(key_from_json(&json!(null)).is_err());
    assert!(key_from_json(&json!(true)).is_err());
    assert!(key_from_json(&json!({ "$float": "NaN" })).is_err(), "NaN is not a key");
}

/// Every value, collaborative text and counters included (they print as their plain value, so
/// they do not round-trip as themselves).
fn value(crdts: bool) -> impl Strategy<Value = Value> {
    let plain = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        ".*".prop_map(Value::String),
        any::<i64>().prop_map(Value::Date),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
    ];
    let leaf = if crdts {
        prop_oneof![8 => plain, 1 => ".*".prop_map(Value::Text), 1 => any::<i64>().prop_map(Value::Counter)].boxed()
    } else {
        plain.boxed()
    };
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("\\$?[a-z]{0,3}", inner, 0..4).prop_map(Value::Object),
        ]
    })
}

/// Key numbers: any but NaN, and whole numbers on both sides of where they stop printing as
/// integers (9e15).
fn key_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("NaN is not a key", |f| !f.is_nan()),
        any::<i32>().prop_map(f64::from),
        (-2e16f64..2e16).prop_map(f64::trunc),
    ]
}

fn key() -> impl Strategy<Value = Key> {
    let leaf = prop_oneof![
        key_number().prop_map(Key::Number),
        key_number().prop_map(Key::Date),
        ".*".prop_map(Key::String),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Key::Binary),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| proptest::collection::vec(inner, 0..3).prop_map(Key::Array))
}

proptest! {
    #[test]
    fn streaming_and_tree_print_the_same_bytes(v in value(true)) {
        let streamed = text(&JsonValue(&v));
        prop_assert_eq!(&streamed, &text(&value_to_json(&v)));
        prop_assert_eq!(&streamed, &text(&former::value_to_json(&v)));
    }

    #[test]
    fn streaming_and_tree_print_the_same_keys(k in key()) {
        let streamed = text(&JsonKey(&k));
        prop_assert_eq!(&streamed, &text(&key_to_json(&k)));
        prop_assert_eq!(&streamed, &text(&former::key_to_json(&k)));
    }

    #[test]
    fn values_round_trip(v in value(false)) {
        let back: Json = serde_json::from_str(&text(&JsonValue(&v))).expect("parse");
        prop_assert_eq!(value_from_json(&back), Ok(v));
    }

    #[test]
    fn keys_round_trip(k in key()) {
        let back: Json = serde_json::from_str(&text(&JsonKey(&k))).expect("parse");
        let decoded = key_from_json(&back).expect("key");
        prop_assert_eq!(decoded.encode().ok(), k.encode().ok());
    }
}
