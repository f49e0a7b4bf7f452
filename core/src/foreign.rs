//! Automerge bytes from a peer (untrusted): split into chunks, parsed completely and checked to
//! belong to a Tidepool document before anything is applied.
//!
//! A byte string may hold anything Automerge writes: one change, several changes concatenated
//! (Automerge's `saveIncremental`), or a whole saved document. Automerge's own incremental load
//! silently keeps the good prefix of a corrupt input, so everything is parsed here first and a
//! bad chunk anywhere refuses all of it.
//!
//! Lineage: every Tidepool document starts with the same genesis change, the only change without
//! dependencies (see [`crate::layout`]). A change without dependencies that is not the genesis
//! change comes from a document created elsewhere; merged in, its root `v` map would compete with
//! the genesis map and one side's fields would vanish. Such bytes are refused as
//! [`RecordError::Foreign`].

use automerge::sync;
use automerge::{AutoCommit, Change, ChangeHash, LoadOptions, OnPartialLoad};

use crate::layout::{TEXT_ENCODING, genesis_hash};
use crate::record::RecordError;
use crate::wire::Payload;

/// The first bytes of every Automerge chunk.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Magic, checksum, chunk type.
const FIXED_HEADER: usize = 4 + 4 + 1;

const DOCUMENT_CHUNK: u8 = 0;
const CHANGE_CHUNK: u8 = 1;
const COMPRESSED_CHANGE_CHUNK: u8 = 2;

/// Changes that parsed completely and descend from the genesis change: the only thing a record
/// applies from a peer.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    changes: Vec<Change>,
}

impl Verified {
    /// Parses a payload of any shape: change chunks (each one change, several concatenated, or a
    /// whole saved document) or a saved document.
    pub fn parse(payload: &Payload) -> Result<Verified, RecordError> {
        let mut changes = Vec::new();
        match payload {
            Payload::Changes(blobs) => {
                for blob in blobs {
                    parse_blob(blob, &mut changes)?;
                }
            }
            Payload::Document(bytes) => parse_blob(bytes, &mut changes)?,
        }
        check_lineage(changes.iter().map(|c| (c.hash(), c.deps().is_empty())))?;
        Ok(Verified { changes })
    }

    /// The changes, in the order they came.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    pub fn hashes(&self) -> impl Iterator<Item = ChangeHash> + '_ {
        self.changes.iter().map(Change::hash)
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub(crate) fn into_changes(self) -> Vec<Change> {
        self.changes
    }
}

/// A message of Automerge's sync protocol from a peer, decoded, its changes checked.
#[derive(Debug)]
pub struct VerifiedSync {
    message: sync::Message,
}

impl VerifiedSync {
    pub fn parse(bytes: &[u8]) -> Result<VerifiedSync, RecordError> {
        let message = sync::Message::decode(bytes).map_err(|e| RecordError::SyncMessage(e.to_string()))?;
        // Automerge loads these incrementally, keeping the good prefix of a corrupt input, so
        // they are parsed and checked here first.
        let mut changes = Vec::new();
        for chunk in message.changes.iter() {
            parse_blob(chunk, &mut changes)?;
        }
        check_lineage(changes.iter().map(|c| (c.hash(), c.deps().is_empty())))?;
        Ok(VerifiedSync { message })
    }

    /// Whether it writes (a peer that may only read can still ask for changes).
    pub fn carries_changes(&self) -> bool {
        !self.message.changes.is_empty()
    }

    pub(crate) fn into_message(self) -> sync::Message {
        self.message
    }
}

/// Loads a saved document from a peer: every chunk must parse, and the document must descend
/// from the genesis change.
pub(crate) fn load_document(bytes: &[u8]) -> Result<AutoCommit, RecordError> {
    let options = LoadOptions::new().on_partial_load(OnPartialLoad::Error).text_encoding(TEXT_ENCODING);
    let mut doc = AutoCommit::load_with_options(bytes, options).map_err(RecordError::Corrupt)?;
    check_lineage(doc.get_changes_meta(&[]).iter().map(|m| (m.hash, m.deps.is_empty())))?;
    Ok(doc)
}

/// Loads a document this process saved itself from a record (the hub's stored snapshots): every
/// chunk must still parse, but the lineage is not walked again, since every change in it was
/// checked when it arrived.
pub(crate) fn load_own_document(bytes: &[u8]) -> Result<AutoCommit, RecordError> {
    let options = LoadOptions::new().on_partial_load(OnPartialLoad::Error).text_encoding(TEXT_ENCODING);
    AutoCommit::load_with_options(bytes, options).map_err(RecordError::Corrupt)
}

/// Refuses changes without dependencies other than the genesis change.
fn check_lineage(changes: impl Iterator<Item = (ChangeHash, bool)>) -> Result<(), RecordError> {
    let genesis = genesis_hash();
    for (hash, is_root) in changes {
        if is_root && hash != genesis {
            return Err(RecordError::Foreign(hash));
        }
    }
    Ok(())
}

/// Parses every chunk of one byte string into `out`.
fn parse_blob(mut bytes: &[u8], out: &mut Vec<Change>) -> Result<(), RecordError> {
    if bytes.is_empty() {
        return Err(RecordError::CorruptChange("empty byte string".into()));
    }
    while !bytes.is_empty() {
        let (chunk_type, len) = split_chunk(bytes)?;
        let (chunk, rest) = bytes.split_at(len);
        match chunk_type {
            CHANGE_CHUNK | COMPRESSED_CHANGE_CHUNK => {
                let change = Change::try_from(chunk).map_err(|e| RecordError::CorruptChange(e.to_string()))?;
                out.push(change);
            }
            DOCUMENT_CHUNK => {
                let mut doc = load_document(chunk)?;
                out.extend(doc.get_changes(&[]));
            }
            other => {
                let detail = format!("chunk type {other} is not accepted (changes or saved documents only)");
                return Err(RecordError::CorruptChange(detail));
            }
        }
        bytes = rest;
    }
    Ok(())
}

/// Reads a chunk header: the chunk's type and its whole length, header included.
fn split_chunk(bytes: &[u8]) -> Result<(u8, usize), RecordError> {
    let corrupt = |what: &str| RecordError::CorruptChange(what.to_owned());
    if !MAGIC.starts_with(&bytes[..bytes.len().min(MAGIC.len())]) {
        return Err(corrupt("not an Automerge chunk (bad magic bytes)"));
    }
    if bytes.len() < FIXED_HEADER {
        return Err(corrupt("truncated chunk header"));
    }
    let chunk_type = bytes[8];
    let (data_len, leb_len) = read_uleb(&bytes[FIXED_HEADER..]).ok_or_else(|| corrupt("bad chunk length"))?;
    let total = usize::try_from(data_len)
        .ok()
        .and_then(|d| d.checked_add(FIXED_HEADER + leb_len))
        .filter(|&t| t <= bytes.len())
        .ok_or_else(|| corrupt("chunk length exceeds the bytes given"))?;
    Ok((chunk_type, total))
}

/// An unsigned LEB128 number and how many bytes it took; `None` if truncated or over 64 bits.
fn read_uleb(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().take(10).enumerate() {
        let part = u64::from(byte & 0x7f);
        let shift = 7 * u32::try_from(i).ok()?;
        if shift == 63 && part > 1 {
            return None;
        }
        value |= part << shift;
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_reads_and_rejects_overflow() {
        assert_eq!(read_uleb(&[0x05]), Some((5, 1)));
        assert_eq!(read_uleb(&[0xe5, 0x8e, 0x26]), Some((624_485, 3)));
        assert_eq!(read_uleb(&[0x80]), None);
        assert_eq!(read_uleb(&[0xff; 10]), None);
    }

    #[test]
    fn garbage_and_truncated_chunks_are_refused() {
        let mut changes = Vec::new();
        assert!(parse_blob(b"not automerge at all", &mut changes).is_err());
        let mut header = MAGIC.to_vec();
        header.extend([0, 0, 0, 0, CHANGE_CHUNK, 0x7f]);
        assert!(parse_blob(&header, &mut changes).is_err());
        assert!(changes.is_empty());
    }
}
