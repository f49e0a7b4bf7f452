//! IndexedDB keys: the key types, IndexedDB's ordering, and an order-preserving canonical encoding.
//!
//! The canonical encoding is what identifies a record everywhere (document ids, wire frames, hub
//! storage). It is order-preserving: comparing two encodings byte by byte gives IndexedDB's order,
//! so a store sorted by encoded key is sorted the way `IDBKeyRange` expects.

use std::cmp::Ordering;

use thiserror::Error;

/// The deepest array nesting a key may have; bounds recursion on untrusted input.
pub const MAX_KEY_DEPTH: usize = 32;

/// A valid IndexedDB key.
///
/// Ordering follows the IndexedDB specification: every number sorts before every date, dates
/// before strings, strings before binary keys, binary keys before arrays. Strings compare by UTF-16
/// code units, binary keys byte by byte, arrays element by element and then by length.
#[derive(Debug, Clone)]
pub enum Key {
    Number(f64),
    /// Milliseconds since the Unix epoch, as in a JavaScript `Date`.
    Date(f64),
    String(String),
    Binary(Vec<u8>),
    Array(Vec<Key>),
}

/// Why a value is not a valid key, or why bytes are not a canonical key.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    #[error("a key number or date must not be NaN")]
    NaN,
    #[error("key arrays nest deeper than {MAX_KEY_DEPTH} levels")]
    TooDeep,
    #[error("encoded key is truncated")]
    Truncated,
    #[error("encoded key has an unknown type tag {0:#04x}")]
    UnknownTag(u8),
    #[error("encoded key has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("encoded key string is not valid UTF-16")]
    InvalidString,
    #[error("encoded key is not in canonical form")]
    NotCanonical,
}

const TAG_END: u8 = 0x00;
const TAG_NUMBER: u8 = 0x10;
const TAG_DATE: u8 = 0x20;
const TAG_STRING: u8 = 0x30;
const TAG_BINARY: u8 = 0x40;
const TAG_ARRAY: u8 = 0x50;
/// Inside strings and binary keys a zero byte is written as `00 FF`, so `00 00` can end them and
/// still sort before any continuation.
const ESCAPE: u8 = 0xFF;

impl Key {
    /// Checks the rules a JavaScript caller could break: NaN numbers and dates, runaway nesting.
    pub fn validate(&self) -> Result<(), KeyError> {
        self.validate_at(0)
    }

    fn validate_at(&self, depth: usize) -> Result<(), KeyError> {
        match self {
            Key::Number(n) | Key::Date(n) if n.is_nan() => Err(KeyError::NaN),
            Key::Array(items) => {
                if depth >= MAX_KEY_DEPTH {
                    return Err(KeyError::TooDeep);
                }
                items.iter().try_for_each(|k| k.validate_at(depth + 1))
            }
            _ => Ok(()),
        }
    }

    fn type_rank(&self) -> u8 {
        match self {
            Key::Number(_) => TAG_NUMBER,
            Key::Date(_) => TAG_DATE,
            Key::String(_) => TAG_STRING,
            Key::Binary(_) => TAG_BINARY,
            Key::Array(_) => TAG_ARRAY,
        }
    }

    /// The canonical, order-preserving byte encoding. Fails only for keys [`Key::validate`] rejects.
    pub fn encode(&self) -> Result<Vec<u8>, KeyError> {
        self.validate()?;
        let mut out = Vec::with_capacity(16);
        self.encode_into(&mut out);
        Ok(out)
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.type_rank());
        match self {
            Key::Number(n) | Key::Date(n) => out.extend_from_slice(&sortable_f64(*n)),
            Key::String(s) => {
                let bytes: Vec<u8> = s.encode_utf16().flat_map(u16::to_be_bytes).collect();
                push_escaped(out, &bytes);
            }
            Key::Binary(b) => push_escaped(out, b),
            Key::Array(items) => {
                for item in items {
                    item.encode_into(out);
                }
                out.push(TAG_END);
            }
        }
    }

    /// Decodes a canonical encoding from untrusted bytes; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Key, KeyError> {
        let mut pos = 0;
        let key = decode_at(bytes, &mut pos, 0)?;
        if pos != bytes.len() {
            return Err(KeyError::TrailingBytes(bytes.len() - pos));
        }
        Ok(key)
    }
}

fn sortable_f64(n: f64) -> [u8; 8] {
    // -0 and +0 are the same key in IndexedDB.
    let n = if n == 0.0 { 0.0 } else { n };
    let bits = n.to_bits();
    let flipped = if bits >> 63 == 1 { !bits } else { bits ^ (1 << 63) };
    flipped.to_be_bytes()
}

fn unsortable_f64(bytes: [u8; 8]) -> f64 {
    let flipped = u64::from_be_bytes(bytes);
    let bits = if flipped >> 63 == 1 { flipped ^ (1 << 63) } else { !flipped };
    f64::from_bits(bits)
}

fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(ESCAPE);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

fn take_escaped(bytes: &[u8], pos: &mut usize) -> Result<Vec<u8>, KeyError> {
    let mut out = Vec::new();
    loop {
        let b = *bytes.get(*pos).ok_or(KeyError::Truncated)?;
        *pos += 1;
        if b != 0 {
            out.push(b);
            continue;
        }
        match bytes.get(*pos).ok_or(KeyError::Truncated)? {
            0 => {
                *pos += 1;
                return Ok(out);
            }
            &ESCAPE => {
                *pos += 1;
                out.push(0);
            }
            _ => return Err(KeyError::NotCanonical),
        }
    }
}

fn decode_at(bytes: &[u8], pos: &mut usize, depth: usize) -> Result<Key, KeyError> {
    let tag = *bytes.get(*pos).ok_or(KeyError::Truncated)?;
    *pos += 1;
    match tag {
        TAG_NUMBER | TAG_DATE => {
            let raw: [u8; 8] = bytes
                .get(*pos..*pos + 8)
                .ok_or(KeyError::Truncated)?
                .try_into()
                .map_err(|_| KeyError::Truncated)?;
            *pos += 8;
            let n = unsortable_f64(raw);
            if n.is_nan() {
                return Err(KeyError::NaN);
            }
            if sortable_f64(n) != raw {
                return Err(KeyError::NotCanonical);
            }
            Ok(if tag == TAG_NUMBER { Key::Number(n) } else { Key::Date(n) })
        }
        TAG_STRING => {
            let raw = take_escaped(bytes, pos)?;
            if raw.len() % 2 != 0 {
                return Err(KeyError::InvalidString);
            }
            let units: Vec<u16> =
                raw.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).map(Key::String).map_err(|_| KeyError::InvalidString)
        }
        TAG_BINARY => take_escaped(bytes, pos).map(Key::Binary),
        TAG_ARRAY => {
            if depth >= MAX_KEY_DEPTH {
                return Err(KeyError::TooDeep);
            }
            let mut items = Vec::new();
            loop {
                match bytes.get(*pos) {
                    None => return Err(KeyError::Truncated),
                    Some(&TAG_END) => {
                        *pos += 1;
                        return Ok(Key::Array(items));
                    }
                    Some(_) => items.push(decode_at(bytes, pos, depth + 1)?),
                }
            }
        }
        other => Err(KeyError::UnknownTag(other)),
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    /// IndexedDB's key order. NaN never appears in a valid key; should one slip in, it sorts as
    /// `f64::total_cmp` says rather than breaking the order's laws.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Key::Number(a), Key::Number(b)) | (Key::Date(a), Key::Date(b)) => {
                let (a, b) = (if *a == 0.0 { 0.0 } else { *a }, if *b == 0.0 { 0.0 } else { *b });
                a.total_cmp(&b)
            }
            (Key::String(a), Key::String(b)) => a.encode_utf16().cmp(b.encode_utf16()),
            (Key::Binary(a), Key::Binary(b)) => a.cmp(b),
            (Key::Array(a), Key::Array(b)) => a.cmp(b),
            _ => self.type_rank().cmp(&other.type_rank()),
        }
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key::String(s.to_owned())
    }
}

impl From<String> for Key {
    fn from(s: String) -> Self {
        Key::String(s)
    }
}

impl From<f64> for Key {
    fn from(n: f64) -> Self {
        Key::Number(n)
    }
}

impl From<i64> for Key {
    fn from(n: i64) -> Self {
        Key::Number(n as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_key() -> impl Strategy<Value = Key> {
        let leaf = prop_oneof![
            any::<f64>().prop_filter("not NaN", |n| !n.is_nan()).prop_map(Key::Number),
            (-1e13f64..1e13).prop_map(|n| Key::Date(n.trunc())),
            ".{0,8}".prop_map(Key::String),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Key::Binary),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            proptest::collection::vec(inner, 0..4).prop_map(Key::Array)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn encoding_preserves_order(a in arb_key(), b in arb_key()) {
            let (ea, eb) = (a.encode().unwrap(), b.encode().unwrap());
            prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
        }

        #[test]
        fn encoding_round_trips(k in arb_key()) {
            let e = k.encode().unwrap();
            let back = Key::decode(&e).unwrap();
            prop_assert_eq!(back.encode().unwrap(), e);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(k) = Key::decode(&bytes) {
                prop_assert_eq!(k.encode().unwrap(), bytes);
            }
        }
    }

    #[test]
    fn type_order_matches_indexeddb() {
        let keys = [
            Key::Number(f64::NEG_INFINITY),
            Key::Number(-1.0),
            Key::Number(0.0),
            Key::Number(f64::INFINITY),
            Key::Date(-5.0),
            Key::Date(5.0),
            Key::String(String::new()),
            Key::String("a".into()),
            Key::String("a\u{0}".into()),
            Key::String("b".into()),
            Key::String("\u{FFFF}".into()),
            Key::String("\u{10000}".into()).clone(),
            Key::Binary(vec![]),
            Key::Binary(vec![0]),
            Key::Binary(vec![0, 0]),
            Key::Binary(vec![1]),
            Key::Array(vec![]),
            Key::Array(vec![Key::Number(1.0)]),
            Key::Array(vec![Key::Number(1.0), Key::Number(0.0)]),
            Key::Array(vec![Key::String("a".into())]),
        ];
        // UTF-16 order puts U+10000 (a surrogate pair, 0xD800...) before U+FFFF.
        let mut expected = keys.to_vec();
        expected.swap(10, 11);
        let mut sorted = keys.to_vec();
        sorted.sort();
        assert_eq!(sorted, expected);
        for pair in expected.windows(2) {
            assert!(pair[0].encode().unwrap() < pair[1].encode().unwrap(), "{pair:?}");
        }
    }

    #[test]
    fn negative_zero_is_zero() {
        assert_eq!(Key::Number(-0.0).encode(), Key::Number(0.0).encode());
        assert_eq!(Key::Number(-0.0), Key::Number(0.0));
    }

    #[test]
    fn invalid_keys_are_refused() {
        assert_eq!(Key::Number(f64::NAN).encode(), Err(KeyError::NaN));
        let mut deep = Key::Number(1.0);
        for _ in 0..=MAX_KEY_DEPTH {
            deep = Key::Array(vec![deep]);
        }
        assert_eq!(deep.encode(), Err(KeyError::TooDeep));
        assert_eq!(Key::decode(&[0x30, 0x00]), Err(KeyError::Truncated));
        assert_eq!(Key::decode(&[0x99]), Err(KeyError::UnknownTag(0x99)));
    }
}
