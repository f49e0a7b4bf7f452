//! Reading what a Tez DAG wrote: the part files' JSON Lines, a line at a time.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use thiserror::Error;
use tidepool_core::{DocId, Key, Value};
use tidepool_json::{key_from_json, value_from_json};

#[derive(Debug, Error, PartialEq)]
pub enum OutputError {
    #[error("the Tez output has no _SUCCESS marker: the job did not finish")]
    NoSuccess,
    #[error("{file}:{line}: {detail}")]
    Parse { file: String, line: usize, detail: String },
}

/// A per-record result (enrich and user DAGs): new fields for one record.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldResult {
    pub doc: DocId,
    pub key: Key,
    pub fields: BTreeMap<String, Value>,
}

/// A per-group result (aggregate DAGs): one record of the results store.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupResult {
    pub key: Key,
    pub value: BTreeMap<String, Value>,
}

fn object(json: &Json, what: &str) -> Result<BTreeMap<String, Value>, String> {
    match value_from_json(json).map_err(|e| format!("{what}: {e}"))? {
        Value::Object(fields) => Ok(fields),
        _ => Err(format!("{what} is not an object")),
    }
}

/// One output line as JSON; `None` for a blank line.
fn json_line(file: &str, line: usize, bytes: &[u8]) -> Result<Option<Json>, OutputError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| OutputError::Parse { file: file.to_owned(), line, detail: e.to_string() })
}

/// Parses one per-record result line, `{"key": k, "doc": "<hex>", "fields": {...}}` (`None`
/// for a blank line).
pub fn field_line(file: &str, line: usize, bytes: &[u8]) -> Result<Option<FieldResult>, OutputError> {
    let Some(json) = json_line(file, line, bytes)? else { return Ok(None) };
    let err = |detail: String| OutputError::Parse { file: file.to_owned(), line, detail };
    let key = key_from_json(&json["key"]).map_err(|e| err(format!("key: {e}")))?;
    let doc = json["doc"].as_str().and_then(DocId::from_hex).ok_or_else(|| err("doc is not a document id".into()))?;
    let fields = object(&json["fields"], "fields").map_err(err)?;
    Ok(Some(FieldResult { doc, key, fields }))
}

/// Parses one per-group result line, `{"key": [g1, ...], "value": {...}}` (`None` for a blank
/// line).
pub fn group_line(file: &str, line: usize, bytes: &[u8]) -> Result<Option<GroupResult>, OutputError> {
    let Some(json) = json_line(file, line, bytes)? else { return Ok(None) };
    let err = |detail: String| OutputError::Parse { file: file.to_owned(), line, detail };
    let key = group_key(&json["key"]).map_err(err)?;
    let value = object(&json["value"], "value").map_err(err)?;
    Ok(Some(GroupResult { key, value }))
}

/// Parses a whole text of per-record results.
pub fn parse_fields(file: &str, text: &str) -> Result<Vec<FieldResult>, OutputError> {
    text.lines().enumerate().filter_map(|(i, l)| field_line(file, i + 1, l.as_bytes()).transpose()).collect()
}

/// Parses a whole text of per-group results.
pub fn parse_groups(file: &str, text: &str) -> Result<Vec<GroupResult>, OutputError> {
    text.lines().enumerate().filter_map(|(i, l)| group_line(file, i + 1, l.as_bytes()).transpose()).collect()
}

/// The results-store key of a group: a single string or number group value is the key itself;
/// otherwise an array key, where null, true and false (not valid IndexedDB keys) become the
/// strings "null", "true" and "false".
pub fn group_key(json: &Json) -> Result<Key, String> {
    let Json::Array(items) = json else { return Err("group key is not an array".into()) };
    let scalar = |j: &Json| -> Result<Key, String> {
        Ok(match j {
            Json::Number(n) => Key::Number(n.as_f64().ok_or("group value is not a finite number")?),
            Json::String(s) => Key::String(s.clone()),
            Json::Null => Key::String("null".into()),
            Json::Bool(b) => Key::String(b.to_string()),
            _ => return Err("a group value is an array or object".into()),
        })
    };
    match items.as_slice() {
        [one @ (Json::Number(_) | Json::String(_))] => scalar(one),
        many => many.iter().map(scalar).collect::<Result<Vec<_>, _>>().map(Key::Array),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_groups() {
        let doc = DocId([7; 16]);
        let text = format!("{{\"key\":\"a\",\"doc\":\"{}\",\"fields\":{{\"score\":2.5}}}}\n\n", doc.to_hex());
        let r = parse_fields("part-0", &text).unwrap();
        assert_eq!(r, vec![FieldResult { doc, key: Key::from("a"), fields: [("score".into(), Value::Float(2.5))].into() }]);

        let g = parse_groups("part-0", "{\"key\":[\"x\"],\"value\":{\"count\":3}}\n{\"key\":[\"x\",null],\"value\":{}}").unwrap();
        assert_eq!(g[0].key, Key::from("x"));
        assert_eq!(g[0].value["count"], Value::Int(3));
        assert_eq!(g[1].key, Key::Array(vec![Key::from("x"), Key::from("null")]));
    }

    #[test]
    fn bad_lines_are_errors_with_positions() {
        let e = parse_fields("part-3", "{\"key\":1,\"doc\":\"zz\",\"fields\":{}}").unwrap_err();
        assert!(matches!(e, OutputError::Parse { line: 1, .. }), "{e}");
        let e = parse_groups("part-3", "{\"key\":[1]}\nnot json").unwrap_err();
        assert!(matches!(e, OutputError::Parse { line: 1, .. }), "{e}");
        assert!(parse_groups("p", "{\"key\":[[1]],\"value\":{}}").is_err());
    }
}
