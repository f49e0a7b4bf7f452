//! Compact binary rows for the internal IndexedDB stores.
//!
//! A bulk write of thousands of records stores its document chunks, its registry entries and its
//! outbox entries as one packed byte array each instead of thousands of small JavaScript objects:
//! the browser clones a byte array with one copy, and a transaction costs per request, so one row
//! per write (not one per record) is what keeps Tidepool close to raw IndexedDB speed.
//!
//! Every row starts with a format byte; lengths are little-endian `u32`. Decoding treats the bytes
//! as untrusted (storage can be corrupted) and returns an error instead of panicking.

use thiserror::Error;
use tidepool_core::DocId;

const FORMAT: u8 = 1;

/// Why a stored row does not decode.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PackError {
    #[error("stored row is empty")]
    Empty,
    #[error("stored row has format {0}, this version reads {FORMAT}")]
    Format(u8),
    #[error("stored row is truncated")]
    Truncated,
    #[error("stored row has an unknown chunk kind {0}")]
    Kind(u8),
}

/// How a chunk of Automerge bytes is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// One encoded change.
    Change = 0,
    /// A whole saved document.
    Document = 1,
}

/// One document's chunk inside a segment row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub doc: DocId,
    pub key: &'a [u8],
    pub kind: ChunkKind,
    pub bytes: &'a [u8],
}

/// One local change inside an outbox row; `idx` stays fixed for the row's lifetime so
/// acknowledgements can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending<'a> {
    pub idx: u32,
    pub doc: DocId,
    pub key: &'a [u8],
    pub change: &'a [u8],
}

struct Writer(Vec<u8>);

impl Writer {
    fn new(capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity + 1);
        out.push(FORMAT);
        Writer(out)
    }

    fn u32(&mut self, n: u32) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        // Rows hold browser-sized data; a chunk above 4 GiB cannot reach this point.
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(b);
    }

    fn doc(&mut self, doc: &DocId) {
        self.0.extend_from_slice(&doc.0);
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Result<Self, PackError> {
        match data.first() {
            None => Err(PackError::Empty),
            Some(&FORMAT) => Ok(Reader { data, pos: 1 }),
            Some(&other) => Err(PackError::Format(other)),
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PackError> {
        let end = self.pos.checked_add(n).ok_or(PackError::Truncated)?;
        let slice = self.data.get(self.pos..end).ok_or(PackError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, PackError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, PackError> {
        let raw = self.take(4)?;
        Ok(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
    }

    fn bytes(&mut self) -> Result<&'a [u8], PackError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn doc(&mut self) -> Result<DocId, PackError> {
        let mut id = [0u8; 16];
        id.copy_from_slice(self.take(16)?);
        Ok(DocId(id))
    }
}

/// Encodes the chunks of one segment row.
pub fn encode_chunks<'a>(chunks: impl IntoIterator<Item = Chunk<'a>>) -> Vec<u8> {
    let mut w = Writer::new(256);
    for c in chunks {
        w.doc(&c.doc);
        w.0.push(c.kind as u8);
        w.bytes(c.key);
        w.bytes(c.bytes);
    }
    w.0
}

pub fn decode_chunks(data: &[u8]) -> Result<Vec<Chunk<'_>>, PackError> {
    let mut r = Reader::new(data)?;
    let mut out = Vec::new();
    while !r.done() {
        let doc = r.doc()?;
        let kind = match r.u8()? {
            0 => ChunkKind::Change,
            1 => ChunkKind::Document,
            other => return Err(PackError::Kind(other)),
        };
        let key = r.bytes()?;
        let bytes = r.bytes()?;
        out.push(Chunk { doc, key, kind, bytes });
    }
    Ok(out)
}

/// Encodes a registry row: which documents (and keys) a segment touches, without their bytes, so
/// opening a database learns every stored document without reading any Automerge data.
pub fn encode_registry<'a>(docs: impl IntoIterator<Item = (DocId, &'a [u8])>) -> Vec<u8> {
    let mut w = Writer::new(64);
    for (doc, key) in docs {
        w.doc(&doc);
        w.bytes(key);
    }
    w.0
}

pub fn decode_registry(data: &[u8]) -> Result<Vec<(DocId, &[u8])>, PackError> {
    let mut r = Reader::new(data)?;
    let mut out = Vec::new();
    while !r.done() {
        let doc = r.doc()?;
        out.push((doc, r.bytes()?));
    }
    Ok(out)
}

/// Encodes an outbox row.
pub fn encode_pending<'a>(entries: impl IntoIterator<Item = Pending<'a>>) -> Vec<u8> {
    let mut w = Writer::new(256);
    for e in entries {
        w.u32(e.idx);
        w.doc(&e.doc);
        w.bytes(e.key);
        w.bytes(e.change);
    }
    w.0
}

pub fn decode_pending(data: &[u8]) -> Result<Vec<Pending<'_>>, PackError> {
    let mut r = Reader::new(data)?;
    let mut out = Vec::new();
    while !r.done() {
        let idx = r.u32()?;
        let doc = r.doc()?;
        let key = r.bytes()?;
        out.push(Pending { idx, doc, key, change: r.bytes()? });
    }
    Ok(out)
}

/// Encodes the acknowledged entry numbers of one outbox row.
pub fn encode_acks(acked: impl IntoIterator<Item = u32>) -> Vec<u8> {
    let mut w = Writer::new(64);
    for idx in acked {
        w.u32(idx);
    }
    w.0
}

pub fn decode_acks(data: &[u8]) -> Result<Vec<u32>, PackError> {
    let mut r = Reader::new(data)?;
    let mut out = Vec::new();
    while !r.done() {
        out.push(r.u32()?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(n: u8) -> DocId {
        DocId([n; 16])
    }

    #[test]
    fn chunks_round_trip() {
        let chunks = vec![
            Chunk { doc: doc(1), key: b"k1", kind: ChunkKind::Change, bytes: b"abc" },
            Chunk { doc: doc(2), key: b"", kind: ChunkKind::Document, bytes: b"" },
        ];
        let data = encode_chunks(chunks.clone());
        assert_eq!(decode_chunks(&data).unwrap(), chunks);
    }

    #[test]
    fn registry_pending_and_acks_round_trip() {
        let reg = vec![(doc(3), &b"key"[..]), (doc(4), &b"k"[..])];
        assert_eq!(decode_registry(&encode_registry(reg.clone())).unwrap(), reg);
        let pending = vec![Pending { idx: 7, doc: doc(5), key: b"x", change: b"chg" }];
        assert_eq!(decode_pending(&encode_pending(pending.clone())).unwrap(), pending);
        assert_eq!(decode_acks(&encode_acks([1, 5, 9])).unwrap(), vec![1, 5, 9]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let data = encode_chunks([Chunk { doc: doc(1), key: b"k", kind: ChunkKind::Change, bytes: b"xyz" }]);
        assert_eq!(decode_chunks(&data[..1]), Ok(vec![]), "the format byte alone is an empty row");
        for cut in 2..data.len() {
            assert_eq!(decode_chunks(&data[..cut]), Err(PackError::Truncated), "cut at {cut}");
        }
        assert_eq!(decode_chunks(&[]), Err(PackError::Empty));
        assert_eq!(decode_chunks(&[9]), Err(PackError::Format(9)));
        let mut bad_kind = data.clone();
        bad_kind[17] = 7;
        assert_eq!(decode_chunks(&bad_kind), Err(PackError::Kind(7)));
    }

    #[test]
    fn huge_length_prefix_is_truncation() {
        let mut data = vec![FORMAT];
        data.extend_from_slice(&[0; 16]);
        data.push(0);
        data.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_chunks(&data), Err(PackError::Truncated));
    }
}
