//! Snapshots: records as JSON Lines for Tez, and the manifest that makes the snapshot consistent
//! (every document's heads, the hub cursor, counts, the run id).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tidepool_core::automerge::ChangeHash;
use tidepool_core::wire::Cursor;
use tidepool_core::{DocId, Key, Record, RecordError, Value};
use tidepool_json::{JsonKey, JsonValue, key_to_json};

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

    /// The record's JSON line (without the newline); `None` for deleted records.
    pub fn json_line(&self) -> Option<String> {
        let mut out = Vec::new();
        self.write_json_line(&mut out, &self.heads_hex()).then_some(())?;
        String::from_utf8(out).ok()
    }

    fn heads_hex(&self) -> Vec<String> {
        self.heads.iter().map(|h| h.to_string()).collect()
    }

    /// Appends the record's JSON line and a newline; false (and nothing written) for deleted
    /// records.
    fn write_json_line(&self, out: &mut Vec<u8>, heads: &[String]) -> bool {
        let Some(value) = &self.value else { return false };
        let line = Line { key: JsonKey(&self.key), doc: self.doc.to_hex(), heads, value: JsonValue(value) };
        // Serializing into a Vec cannot fail: no I/O, and every map key is a string.
        if serde_json::to_writer(&mut *out, &line).is_err() {
            return false;
        }
        out.push(b'\n');
        true
    }
}

/// A snapshot line: `{"key", "doc", "heads", "value"}`.
#[derive(Serialize)]
struct Line<'a> {
    key: JsonKey<'a>,
    doc: String,
    heads: &'a [String],
    value: JsonValue<'a>,
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

/// What a snapshot holds, written beside its input as `manifest.json`.
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
    pub docs: Vec<ManifestDoc>,
}

impl Manifest {
    /// Heads per document, parsed.
    pub fn heads(&self) -> BTreeMap<DocId, Vec<ChangeHash>> {
        self.docs
            .iter()
            .filter_map(|d| {
                let id = DocId::from_hex(&d.doc)?;
                let heads: Option<Vec<ChangeHash>> = d.heads.iter().map(|h| h.parse().ok()).collect();
                Some((id, heads?))
            })
            .collect()
    }
}

/// A snapshot ready to write: JSON Lines and manifest.
#[derive(Debug)]
pub struct Snapshot {
    pub lines: Vec<Bytes>,
    pub manifest: Manifest,
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

/// Builds a snapshot. With `previous` (an incremental snapshot), records whose heads equal the
/// previous manifest's are left out, and records deleted since are listed as deleted.
pub fn build(id: &SnapshotId<'_>, records: &[SnapshotRecord], previous: Option<&Manifest>) -> Snapshot {
    let mut lines = Vec::new();
    let manifest = build_streaming(id, records, previous, |chunk| lines.push(chunk));
    Snapshot { lines, manifest }
}

/// As [`build`], handing each ~1 MiB chunk of lines to `sink` as soon as it is full, so the
/// caller can write chunks while later ones are still being encoded.
pub fn build_streaming(
    id: &SnapshotId<'_>,
    records: &[SnapshotRecord],
    previous: Option<&Manifest>,
    mut sink: impl FnMut(Bytes),
) -> Manifest {
    let before = previous.map(Manifest::heads).unwrap_or_default();
    let mut docs = Vec::new();
    let (mut live, mut deleted) = (0, 0);
    // Lines are written in chunks of ~1 MiB so big snapshots stream to HDFS.
    let mut chunk: Vec<u8> = Vec::with_capacity(1 << 20);
    for r in records {
        let heads = r.heads_hex();
        let entry = |deleted, unchanged| ManifestDoc {
            doc: r.doc.to_hex(),
            key: key_to_json(&r.key),
            heads: heads.clone(),
            deleted,
            unchanged,
        };
        let is_deleted = r.value.is_none();
        if before.get(&r.doc) == Some(&r.heads) {
            docs.push(entry(is_deleted, true));
            continue;
        }
        if is_deleted && previous.is_some() && !before.contains_key(&r.doc) {
            // Deleted before the previous snapshot ever saw it: nothing to tell.
            continue;
        }
        if r.write_json_line(&mut chunk, &heads) {
            live += 1;
            if chunk.len() >= 1 << 20 {
                sink(Bytes::from(std::mem::replace(&mut chunk, Vec::with_capacity(1 << 20))));
            }
        } else {
            deleted += 1;
        }
        docs.push(entry(is_deleted, false));
    }
    if !chunk.is_empty() {
        sink(Bytes::from(chunk));
    }
    Manifest {
        version: 1,
        job: id.job.to_owned(),
        run: id.run.to_owned(),
        db: id.db.to_owned(),
        store: id.store.to_owned(),
        hub_epoch: id.cursor.map(|c| hex::encode(c.epoch)).unwrap_or_default(),
        hub_seq: id.cursor.map_or(0, |c| c.seq),
        records: live,
        deleted,
        since_run: previous.map(|p| p.run.clone()),
        docs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidepool_core::automerge::ActorId;
    use serde_json::json;
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
        let snap = build(&id(), &records, None);
        let text: String = snap.lines.iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect();
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["key"], json!("a"));
        assert_eq!(line["value"], json!({"n": 1}));
        assert_eq!(line["doc"], json!(records[0].doc.to_hex()));
        assert_eq!(text.lines().count(), 1);
        assert_eq!((snap.manifest.records, snap.manifest.deleted, snap.manifest.hub_seq), (1, 1, 7));
        assert_eq!(snap.manifest.heads()[&records[0].doc], records[0].heads);
    }

    #[test]
    fn incremental_keeps_only_changes_and_deletions() {
        let a = rec("a", Some(object! { "n" => 1i64 }));
        let b = rec("b", Some(object! { "n" => 2i64 }));
        let first = build(&id(), &[a.clone(), b.clone()], None);
        let a2 = rec("a", Some(object! { "n" => 5i64 }));
        let mut b_deleted = b.clone();
        b_deleted.value = None;
        b_deleted.heads = a2.heads.clone();
        let c_gone = rec("c", None);
        let second = build(&id(), &[a2, b_deleted, c_gone], Some(&first.manifest));
        assert_eq!((second.manifest.records, second.manifest.deleted), (1, 1));
        assert_eq!(second.manifest.since_run.as_deref(), Some("r1"));
        let unchanged = build(&id(), &[a, b], Some(&first.manifest));
        assert_eq!(unchanged.manifest.records, 0);
        assert!(unchanged.manifest.docs.iter().all(|d| d.unchanged));
    }
}
