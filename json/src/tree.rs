//! The mapping as a `serde_json::Value` (for `dump`, manifests and tests), built through the
//! streaming serializer so that there is one mapping, not two that could drift apart.

use serde_json::Value as Json;
use tidepool_core::{Key, Value};

use crate::stream::{JsonKey, JsonValue};

/// A value as JSON.
pub fn value_to_json(value: &Value) -> Json {
    // The tree serializer fails only on a map key that is not a string, and every key is one.
    serde_json::to_value(JsonValue(value)).expect("every map key is a string")
}

/// A key as JSON: numbers as numbers, strings as strings, dates and binary keys tagged.
pub fn key_to_json(key: &Key) -> Json {
    serde_json::to_value(JsonKey(key)).expect("every map key is a string")
}
