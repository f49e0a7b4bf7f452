//! Tidepool's one JSON mapping of record keys and values: what `dump` prints, what the bridge
//! writes to snapshot lines and reads back from Tez output.
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
//! Keys print numbers as numbers (whole ones without a fraction), strings as strings, and dates and
//! binary keys tagged as above.
//!
//! Code map:
//! * `stream`: [`JsonValue`] and [`JsonKey`], the mapping itself as `serde::Serialize`, written
//!   straight into the output without building a JSON tree (snapshots hold millions of lines).
//! * `tree`: [`value_to_json`] and [`key_to_json`], the same mapping as a `serde_json::Value`,
//!   built through the same `Serialize` implementations.
//! * `parse`: [`value_from_json`] and [`key_from_json`], the inverse, from a `serde_json::Value`.

mod parse;
mod stream;
mod tree;

pub use parse::{JsonError, key_from_json, value_from_json};
pub use stream::{JsonKey, JsonValue};
pub use tree::{key_to_json, value_to_json};
