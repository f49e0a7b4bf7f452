//! Decoder regressions: hand-made malformed frames and every saved fuzz input must give a typed
//! error (or decode and round-trip), never a panic.

use std::path::Path;

use tidepool_core::wire::{self, DecodeError, DocData, Limits, Message, Payload};
use tidepool_core::{DocId, Key, StoreRef};

fn push_for(store: &StoreRef, doc: DocId, key: Vec<u8>) -> Vec<u8> {
    wire::encode(&Message::Push {
        batch: 1,
        store: store.clone(),
        docs: vec![DocData { doc, key, payload: Payload::Changes(vec![]) }],
    })
}

/// Magic and this protocol version: what a frame starts with.
fn current_header() -> Vec<u8> {
    let mut header = wire::MAGIC.to_vec();
    header.extend_from_slice(&wire::PROTOCOL_VERSION.to_be_bytes());
    header
}

#[test]
fn malformed_frames_get_typed_errors() {
    let limits = Limits::default();
    assert_eq!(wire::decode(b"", &limits), Err(DecodeError::Truncated));
    assert_eq!(wire::decode(b"TDP", &limits), Err(DecodeError::Truncated));
    assert_eq!(wire::decode(b"XXXX\x00\x01\x00", &limits), Err(DecodeError::BadMagic));
    assert_eq!(wire::decode(b"TDPL\x00\x09\x00", &limits), Err(DecodeError::UnsupportedVersion(9)));
    let mut body = current_header();
    body.extend_from_slice(b"\xff\xff");
    assert!(matches!(wire::decode(&body, &limits), Err(DecodeError::Body(_))));

    let small = Limits { max_frame: 8, ..limits };
    assert!(matches!(wire::decode(&[0u8; 9], &small), Err(DecodeError::TooLarge { .. })));

    let mut hello = wire::encode(&Message::Error {
        code: wire::ErrorCode::Internal,
        detail: "x".into(),
        batch: None,
    });
    hello.push(0);
    assert_eq!(wire::decode(&hello, &limits), Err(DecodeError::TrailingBytes(1)));
}

#[test]
fn doc_ids_must_match_their_keys() {
    let store = StoreRef::new("db", "s");
    let key = Key::from("a").encode().unwrap();
    let wrong = DocId::from_encoded_key(&StoreRef::new("db", "other"), &key);
    assert!(matches!(
        wire::decode(&push_for(&store, wrong, key.clone()), &Limits::default()),
        Err(DecodeError::DocIdMismatch { .. })
    ));
    let right = DocId::from_encoded_key(&store, &key);
    assert!(wire::decode(&push_for(&store, right, key), &Limits::default()).is_ok());
    let bad_key = vec![0x99];
    let id = DocId::from_encoded_key(&store, &bad_key);
    assert!(matches!(wire::decode(&push_for(&store, id, bad_key), &Limits::default()), Err(DecodeError::Key(_))));
}

#[test]
fn huge_length_prefixes_do_not_allocate_or_panic() {
    // A Push whose document vector claims 2^60 entries.
    let mut frame = current_header();
    frame.push(3); // variant index of Push
    frame.extend_from_slice(&[1]); // batch
    frame.extend_from_slice(&[0, 0]); // db "", store ""
    frame.push(253); // u64 length marker in bincode's varint
    frame.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(wire::decode(&frame, &Limits::default()).is_err());
}

#[test]
fn too_many_docs_is_refused() {
    let store = StoreRef::new("db", "s");
    let docs: Vec<DocData> = (0..5)
        .map(|i| {
            let key = Key::Number(f64::from(i)).encode().unwrap();
            DocData { doc: DocId::from_encoded_key(&store, &key), key, payload: Payload::Changes(vec![]) }
        })
        .collect();
    let frame = wire::encode(&Message::Push { batch: 1, store, docs });
    let limits = Limits { max_docs: 4, ..Limits::default() };
    assert_eq!(wire::decode(&frame, &limits), Err(DecodeError::TooManyDocs { count: 5, limit: 4 }));
}

#[test]
fn saved_fuzz_inputs_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    for entry in entries.flatten() {
        let mut bytes = std::fs::read(entry.path()).unwrap();
        // Saved under an earlier protocol version: the body still goes through the decoder.
        if bytes.len() >= 6 && bytes[..4] == wire::MAGIC {
            bytes[4..6].copy_from_slice(&wire::PROTOCOL_VERSION.to_be_bytes());
        }
        if let Ok(message) = wire::decode(&bytes, &Limits::default()) {
            assert_eq!(wire::decode(&wire::encode(&message), &Limits::default()), Ok(message));
        }
    }
}
