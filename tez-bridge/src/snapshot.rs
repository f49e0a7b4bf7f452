//! Snapshots: records as JSON Lines for Tez, and the manifest that makes the snapshot consistent
//! (every document's heads, the hub cursor, counts, the run id).
//!
//! A snapshot is built from the pages of a hub export as they arrive ([`SnapshotWriter`]): the
//! value of each record comes as JSON from the hub, so a line is assembled, not re-encoded, and
//! neither the records nor the manifest's document list are ever held whole (the list streams to
//! `_manifest_docs.jsonl`).

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tidepool_core::automerge::ChangeHash;
use tidepool_core::wire::{Cursor, ExportRecord};
use tidepool_core::{DocId, Key, KeyError, Record, RecordError, Value};
use tidepool_json::{JsonKey, JsonValue};

pub use crate::heads::DocHeads;

/// An export record that cannot become a snapshot line.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("document {doc}: key does not decode: {source}")]
    Key { doc: DocId, source: KeyError },
    #[error("document {doc}: the hub's value is not JSON: {detail}")]
    Value { doc: DocId, detail: String },
    #[error("the hub's export: {0}")]
    Export(String),
}

/// One record as the snapshot saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRecord {
    pub key: Key,
    pub doc: DocId,
    pub heads: Vec<ChangeHash>,
    /// `None` for a record deleted at the snapshot.
    pub value: Option<Value>,
}

impl SnapshotRecord {
    /// Reads a record's state now.
    pub fn of(record: &mut Record) -> Result<SnapshotRecord, RecordError> {
        Ok(SnapshotRecord {
            key: record.key()?,
            doc: record.id(),
            heads: record.heads(),
            value: record.get_plain()?,
        })
    }

    /// The record as a hub export carries it (value in Tidepool's JSON mapping).
    pub fn export_record(&self) -> Result<ExportRecord, KeyError> {
        Ok(ExportRecord {
            doc: self.doc,
            key: self.key.encode()?,
            heads: self.heads.iter().map(|h| h.0).collect(),
            value: self.value.as_ref().and_then(|v| serde_json::to_vec(&JsonValue(v)).ok()),
        })
    }
}

/// One document's entry in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestDoc {
    pub doc: String,
    pub key: serde_json::Value,
    pub heads: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Left out of an incremental snapshot's input: unchanged since the previous run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

/// What a snapshot holds, written beside its input as `_manifest.json`. Version 2 lists its
/// documents in `_manifest_docs.jsonl` (one [`ManifestDoc`] per line) instead of `docs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub job: String,
    pub run: String,
    pub db: String,
    pub store: String,
    /// The hub cursor the snapshot is consistent with: hub epoch (hex) and log sequence.
    pub hub_epoch: String,
    pub hub_seq: u64,
    pub records: usize,
    pub deleted: usize,
    /// For an incremental snapshot, the run it continues from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_run: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docs: Vec<ManifestDoc>,
}

/// The manifest version [`SnapshotWriter`] writes.
pub const MANIFEST_VERSION: u32 = 2;

/// Parses one manifest entry's document id and heads.
pub fn entry_heads(d: &ManifestDoc) -> Option<(DocId, Vec<ChangeHash>)> {
    let id = DocId::from_hex(&d.doc)?;
    let heads: Option<Vec<ChangeHash>> = d.heads.iter().map(|h| h.parse().ok()).collect();
    Some((id, heads?))
}

/// Builds a snapshot from export records, in the order they come: a JSON line per record that
/// exists (and changed since `previous`, for an incremental snapshot), a manifest line per
/// document.
///
/// Both lines are written straight into the output buffers, hex digits and all: this runs once
/// per record of the store, and building a [`ManifestDoc`] of `String`s for each one cost more
/// than everything else the bridge does to a record. A test checks the lines against serde's.
#[derive(Debug)]
pub struct SnapshotWriter {
    previous: Option<DocHeads>,
    pub records: usize,
    pub deleted: usize,
    pub seen: usize,
    /// The current record's key as JSON (reused: one allocation for the whole export).
    key: Vec<u8>,
}

impl SnapshotWriter {
    pub fn new(previous: Option<DocHeads>) -> Self {
        SnapshotWriter { previous, records: 0, deleted: 0, seen: 0, key: Vec::new() }
    }

    /// Appends the record's line to `lines` (if it exists and changed) and its manifest entry
    /// to `docs`.
    pub fn add(&mut self, r: &ExportRecord, lines: &mut Vec<u8>, docs: &mut Vec<u8>) -> Result<(), SnapshotError> {
        self.seen += 1;
        let key = Key::decode(&r.key).map_err(|source| SnapshotError::Key { doc: r.doc, source })?;
        self.key.clear();
        // Serializing into a Vec cannot fail: no I/O, and every map key is a string.
        let _ = serde_json::to_writer(&mut self.key, &JsonKey(&key));
        let before = self.previous.as_ref().and_then(|p| p.get(&r.doc));
        let deleted = r.value.is_none();
        if before.is_some_and(|b| b.iter().map(|h| &h.0).eq(&r.heads)) {
            manifest_line(docs, r, &self.key, deleted, true);
            return Ok(());
        }
        match &r.value {
            None if self.previous.is_some() && before.is_none() => {
                // Deleted before the previous snapshot ever saw it: nothing to tell.
                return Ok(());
            }
            None => self.deleted += 1,
            Some(value) => {
                serde_json::from_slice::<serde::de::IgnoredAny>(value)
                    .map_err(|e| SnapshotError::Value { doc: r.doc, detail: e.to_string() })?;
                lines.extend_from_slice(b"{\"key\":");
                lines.extend_from_slice(&self.key);
                lines.extend_from_slice(b",\"doc\":");
                hex_string(lines, &r.doc.0);
                lines.extend_from_slice(b",\"heads\":");
                hex_strings(lines, &r.heads);
                lines.extend_from_slice(b",\"value\":");
                lines.extend_from_slice(value);
                lines.extend_from_slice(b"}\n");
                self.records += 1;
            }
        }
        manifest_line(docs, r, &self.key, deleted, false);
        Ok(())
    }

    /// The manifest's header, once every record was added.
    pub fn manifest(&self, id: &SnapshotId<'_>, since_run: Option<String>) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            job: id.job.to_owned(),
            run: id.run.to_owned(),
            db: id.db.to_owned(),
            store: id.store.to_owned(),
            hub_epoch: id.cursor.map(|c| hex::encode(c.epoch)).unwrap_or_default(),
            hub_seq: id.cursor.map_or(0, |c| c.seq),
            records: self.records,
            deleted: self.deleted,
            since_run,
            docs: Vec::new(),
        }
    }
}

/// A [`ManifestDoc`] line, as serde writes it, from the record and its key's JSON.
fn manifest_line(out: &mut Vec<u8>, r: &ExportRecord, key: &[u8], deleted: bool, unchanged: bool) {
    out.extend_from_slice(b"{\"doc\":");
    hex_string(out, &r.doc.0);
    out.extend_from_slice(b",\"key\":");
    out.extend_from_slice(key);
    out.extend_from_slice(b",\"heads\":");
    hex_strings(out, &r.heads);
    if deleted {
        out.extend_from_slice(b",\"deleted\":true");
    }
    if unchanged {
        out.extend_from_slice(b",\"unchanged\":true");
    }
    out.extend_from_slice(b"}\n");
}

/// `bytes` (an id or a hash: at most 32) as a quoted JSON string of lowercase hex digits.
fn hex_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut quoted = [b'"'; 66];
    let len = bytes.len().min(32) * 2;
    // Cannot fail: the slice is exactly twice the input's length.
    let _ = hex::encode_to_slice(&bytes[..len / 2], &mut quoted[1..=len]);
    out.extend_from_slice(&quoted[..len + 2]);
}

/// Change hashes as a JSON array of hex strings.
fn hex_strings(out: &mut Vec<u8>, hashes: &[[u8; 32]]) {
    out.push(b'[');
    for (i, h) in hashes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        hex_string(out, h);
    }
    out.push(b']');
}

/// A snapshot built in memory (tests and benchmarks): JSON Lines, manifest entries, header.
#[derive(Debug)]
pub struct Snapshot {
    pub lines: Vec<u8>,
    pub docs: Vec<ManifestDoc>,
    pub manifest: Manifest,
}

impl Snapshot {
    /// Heads per document, as the next incremental snapshot takes them.
    pub fn heads(&self) -> DocHeads {
        self.docs.iter().filter_map(entry_heads).collect()
    }
}

/// Identifies the snapshot being built.
#[derive(Debug, Clone)]
pub struct SnapshotId<'a> {
    pub job: &'a str,
    pub run: &'a str,
    pub db: &'a str,
    pub store: &'a str,
    pub cursor: Option<Cursor>,
}

/// Builds a snapshot of in-memory records through [`SnapshotWriter`].
pub fn build(id: &SnapshotId<'_>, records: &[SnapshotRecord], previous: Option<DocHeads>) -> Result<Snapshot, SnapshotError> {
    let since = previous.is_some().then(|| "previous".to_owned());
    let mut writer = SnapshotWriter::new(previous);
    let (mut lines, mut docs) = (Vec::new(), Vec::new());
    for r in records {
        let export = r.export_record().map_err(|source| SnapshotError::Key { doc: r.doc, source })?;
        writer.add(&export, &mut lines, &mut docs)?;
    }
    let docs = docs
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    Ok(Snapshot { lines, docs, manifest: writer.manifest(id, since) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidepool_core::automerge::ActorId;
    use serde_json::json;
    use tidepool_json::key_to_json;
    use tidepool_core::{StoreRef, object};

    fn rec(key: &str, value: Option<Value>) -> SnapshotRecord {
        let store = StoreRef::new("app", "todos");
        let mut r = Record::new(&store, &Key::from(key), &ActorId::from([1u8; 16])).unwrap();
        if let Some(v) = &value {
            r.put(v, 0).unwrap();
        }
        SnapshotRecord::of(&mut r).unwrap()
    }

    fn id() -> SnapshotId<'static> {
        SnapshotId { job: "j", run: "r1", db: "app", store: "todos", cursor: Some(Cursor { epoch: [1; 16], seq: 7 }) }
    }

    #[test]
    fn records_become_json_lines_and_manifest() {
        let records = vec![rec("a", Some(object! { "n" => 1i64 })), rec("b", None)];
        let snap = build(&id(), &records, None).unwrap();
        let text = String::from_utf8(snap.lines.clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["key"], json!("a"));
        assert_eq!(line["value"], json!({"n": 1}));
        assert_eq!(line["doc"], json!(records[0].doc.to_hex()));
        assert_eq!(line["heads"], json!(records[0].heads.iter().map(ToString::to_string).collect::<Vec<_>>()));
        assert_eq!(text.lines().count(), 1);
        assert_eq!((snap.manifest.records, snap.manifest.deleted, snap.manifest.hub_seq), (1, 1, 7));
        assert_eq!(snap.heads().get(&records[0].doc), Some(records[0].heads.as_slice()));
        assert_eq!(snap.docs.len(), 2);
    }

    #[test]
    fn incremental_keeps_only_changes_and_deletions() {
        let a = rec("a", Some(object! { "n" => 1i64 }));
        let b = rec("b", Some(object! { "n" => 2i64 }));
        let first = build(&id(), &[a.clone(), b.clone()], None).unwrap();
        let a2 = rec("a", Some(object! { "n" => 5i64 }));
        let mut b_deleted = b.clone();
        b_deleted.value = None;
        b_deleted.heads = a2.heads.clone();
        let c_gone = rec("c", None);
        let second = build(&id(), &[a2, b_deleted, c_gone], Some(first.heads())).unwrap();
        assert_eq!((second.manifest.records, second.manifest.deleted), (1, 1));
        assert!(second.manifest.since_run.is_some());
        let unchanged = build(&id(), &[a, b], Some(first.heads())).unwrap();
        assert_eq!(unchanged.manifest.records, 0);
        assert!(unchanged.docs.iter().all(|d| d.unchanged));
    }

    #[test]
    fn a_value_that_is_not_json_is_refused() {
        let mut export = rec("a", Some(object! { "n" => 1i64 })).export_record().unwrap();
        export.value = Some(b"{not json".to_vec());
        let mut writer = SnapshotWriter::new(None);
        let err = writer.add(&export, &mut Vec::new(), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
    }

    /// The lines written by hand are the ones serde would write: the manifest's entries parse
    /// back to the same [`ManifestDoc`] and print byte for byte as serde prints them, and a
    /// record's line holds its key, id, heads and value as JSON.
    #[test]
    fn lines_match_what_serde_writes() {
        let keys = [
            Key::from("plain"),
            Key::from("quote \" backslash \\ newline \n tab \t bell \u{7} snow \u{2603}"),
            Key::Number(7.0),
            Key::Number(-2.5),
            Key::Number(f64::INFINITY),
            Key::Date(1_700_000_000_123.0),
            Key::Binary(vec![0, 1, 254, 255]),
            Key::Array(vec![Key::from("a"), Key::Number(1e300), Key::Array(vec![])]),
        ];
        let store = StoreRef::new("app", "todos");
        for (i, key) in keys.iter().enumerate() {
            let mut r = Record::new(&store, key, &ActorId::from([1u8; 16])).unwrap();
            r.put(&object! { "n" => i as i64 }, 0).unwrap();
            let mut other = Record::new(&store, key, &ActorId::from([2u8; 16])).unwrap();
            other.put(&object! { "m" => 1i64 }, 0).unwrap();
            r.apply(&tidepool_core::wire::Payload::Changes(other.changes_since(&[]))).unwrap();
            let export = SnapshotRecord::of(&mut r).unwrap().export_record().unwrap();
            assert_eq!(export.heads.len(), 2, "two concurrent puts leave two heads");
            for (deleted, unchanged) in [(false, false), (true, false), (false, true), (true, true)] {
                let mut docs = Vec::new();
                manifest_line(&mut docs, &export, &serde_json::to_vec(&JsonKey(key)).unwrap(), deleted, unchanged);
                let expected = ManifestDoc {
                    doc: export.doc.to_hex(),
                    key: key_to_json(key),
                    heads: export.heads.iter().map(|h| ChangeHash(*h).to_string()).collect(),
                    deleted,
                    unchanged,
                };
                let mut serde_line = serde_json::to_vec(&expected).unwrap();
                serde_line.push(b'\n');
                assert_eq!(String::from_utf8(docs.clone()).unwrap(), String::from_utf8(serde_line).unwrap());
                let parsed: ManifestDoc = serde_json::from_slice(&docs).unwrap();
                assert_eq!(parsed, expected);
            }
            let (mut lines, mut docs) = (Vec::new(), Vec::new());
            let mut writer = SnapshotWriter::new(None);
            writer.add(&export, &mut lines, &mut docs).unwrap();
            let line: serde_json::Value = serde_json::from_slice(&lines).unwrap();
            assert_eq!(line["key"], key_to_json(key));
            assert_eq!(line["doc"], json!(export.doc.to_hex()));
            let heads: Vec<String> = export.heads.iter().map(|h| ChangeHash(*h).to_string()).collect();
            assert_eq!(line["heads"], json!(heads));
            assert_eq!(line["value"], serde_json::from_slice::<serde_json::Value>(export.value.as_ref().unwrap()).unwrap());
            assert_eq!(lines.last(), Some(&b'\n'));
        }
    }
}
