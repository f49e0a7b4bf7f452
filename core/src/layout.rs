//! The document layout every record shares (schema v1): the root keys, the genesis change that
//! creates them, the `live` edit count and the provenance map.
//!
//! | root key | holds |
//! |----------|-------|
//! | `v`      | the record value; a map created by the genesis change |
//! | `live`   | present while the record exists: an edit count that every user edit raises (a fresh op, which a concurrent delete did not see), delete removes it |
//! | `prov`   | analytics provenance: field name -> `{job, run}`; a map created by the genesis change |
//!
//! The genesis change is deterministic (a constant actor, time 0), so every peer that creates the
//! record produces the byte-identical change and they all share one `v` map: fields put by peers
//! that created the same key offline merge field by field. It is also the only change of a
//! Tidepool document without dependencies, which is how foreign documents are told apart
//! (see [`crate::foreign`]).

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ChangeHash, ObjType, ROOT, ReadDoc, TextEncoding};
use sha2::{Digest, Sha256};

pub(crate) const VALUE: &str = "v";
pub(crate) const LIVE: &str = "live";
pub(crate) const PROVENANCE: &str = "prov";

/// Indexes into collaborative text count UTF-16 code units, as JavaScript strings do.
pub const TEXT_ENCODING: TextEncoding = TextEncoding::Utf16CodeUnit;

/// The actor of every genesis change. Constant, so the genesis change is the same bytes in every
/// document and on every peer, and a document can start as a copy of one prebuilt template.
pub(crate) fn genesis_actor() -> ActorId {
    let digest = Sha256::new().chain_update(b"tidepool/genesis/v1\0").finalize();
    ActorId::from(&digest[..16])
}

fn build_genesis() -> AutoCommit {
    let mut doc = AutoCommit::new_with_encoding(TEXT_ENCODING).with_actor(genesis_actor());
    let built = doc
        .put_object(ROOT, VALUE, ObjType::Map)
        .and_then(|_| doc.put_object(ROOT, PROVENANCE, ObjType::Map));
    debug_assert!(built.is_ok(), "putting into an empty root cannot fail");
    doc.commit_with(CommitOptions::default().with_time(0));
    doc
}

thread_local! {
    /// Copying a prebuilt genesis document is several times cheaper than building one (no
    /// random actor for the throwaway constructor, no change hashing), which matters when a
    /// browser creates ten thousand records in one `bulkPut`.
    /// The template and the hash of its one change.
    static GENESIS: (AutoCommit, ChangeHash) = {
        let mut doc = build_genesis();
        let heads = doc.get_heads();
        debug_assert_eq!(heads.len(), 1, "the genesis document is one change");
        (doc, heads[0])
    };
}

/// A fresh document holding only the genesis change.
pub(crate) fn genesis() -> AutoCommit {
    GENESIS.with(|(doc, _)| doc.clone())
}

/// The hash of the genesis change, which every record's first local change depends on.
pub fn genesis_hash() -> ChangeHash {
    GENESIS.with(|(_, hash)| *hash)
}

/// Writes a fresh `live` op. Automerge drops a put of the value a key already holds, so the
/// value must change each time: it counts edits.
pub(crate) fn mark_live<T: Transactable>(doc: &mut T) -> Result<(), automerge::AutomergeError> {
    let edits = edit_count(doc)?;
    put_edit_count(doc, edits.wrapping_add(1))
}

/// The edit count `live` holds (0 when it is absent or not an integer).
pub(crate) fn edit_count<T: ReadDoc>(doc: &T) -> Result<i64, automerge::AutomergeError> {
    Ok(match doc.get(ROOT, LIVE)? {
        Some((automerge::Value::Scalar(s), _)) => s.as_i64().unwrap_or(0),
        _ => 0,
    })
}

/// Writes `edits` as the edit count: [`mark_live`] for a caller that already knows the count.
pub(crate) fn put_edit_count<T: Transactable>(doc: &mut T, edits: i64) -> Result<(), automerge::AutomergeError> {
    doc.put(ROOT, LIVE, edits)
}

/// Which analytics run wrote a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub job: String,
    pub run: String,
}

impl Provenance {
    pub(crate) fn read(doc: &AutoCommit, field: &str) -> Option<Provenance> {
        let (_, prov) = doc.get(ROOT, PROVENANCE).ok()??;
        let (_, entry) = doc.get(&prov, field).ok()??;
        let text = |k: &str| match doc.get(&entry, k).ok()?? {
            (automerge::Value::Scalar(s), _) => s.as_str().map(str::to_owned),
            _ => None,
        };
        Some(Provenance { job: text("job")?, run: text("run")? })
    }
}
