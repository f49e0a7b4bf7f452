//! Automerge bytes as other Automerge peers write them: several changes in one byte string, whole
//! saved documents, documents created outside Tidepool, and corrupt tails. Everything is all or
//! nothing, at the record and through the hub engine.

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ROOT};
use proptest::prelude::*;
use tidepool_core::sync::{Effect, Hub, MemoryHubStore, AllowAll, HubStore};
use tidepool_core::wire::{self, DocData, ErrorCode, Message, Payload, PeerId};
use tidepool_core::{Key, Record, RecordError, StoreRef, Value, Verified, object};

fn store() -> StoreRef {
    StoreRef::new("app", "todos")
}

fn record(actor: u8) -> Record {
    Record::new(&store(), &Key::from("k"), &ActorId::from([actor; 16])).unwrap()
}

/// A record with three changes made by `actor`, and those changes concatenated the way
/// Automerge's `saveIncremental` writes them.
fn edited(actor: u8) -> (Record, Vec<u8>) {
    let mut r = record(actor);
    let mut blob = Vec::new();
    for (i, title) in ["a", "b", "c"].into_iter().enumerate() {
        let change = r.put(&object! { "title" => title, "n" => i as i64 }, i as i64).unwrap().unwrap();
        blob.extend(change.bytes);
    }
    (r, blob)
}

/// A document made from scratch, not from Tidepool's genesis change: its own root `v` map.
fn from_scratch() -> AutoCommit {
    let mut doc = AutoCommit::new().with_actor(ActorId::from([9u8; 16]));
    let v = doc.put_object(ROOT, "v", automerge::ObjType::Map).unwrap();
    doc.put(&v, "title", "intruder").unwrap();
    doc.put(ROOT, "live", 1i64).unwrap();
    doc.commit();
    doc
}

#[test]
fn concatenated_changes_apply_as_one_chunk() {
    let (mut source, blob) = edited(1);
    let mut copy = record(2);
    assert!(copy.apply(&Payload::Changes(vec![blob])).unwrap());
    assert_eq!(copy.get().unwrap(), source.get().unwrap());
    assert_eq!(copy.heads(), source.heads());
}

#[test]
fn a_saved_document_applies_as_a_change_chunk() {
    let (mut source, _) = edited(1);
    let mut copy = record(2);
    copy.put(&object! { "other" => true }, 9).unwrap();
    assert!(copy.apply(&Payload::Changes(vec![source.save()])).unwrap());
    let value = copy.get().unwrap().unwrap();
    let Value::Object(fields) = value else { panic!("an object") };
    assert_eq!(fields.get("title"), Some(&Value::from("c")));
    assert_eq!(fields.get("other"), Some(&Value::Bool(true)));
}

#[test]
fn a_corrupt_tail_refuses_the_whole_blob() {
    let (_, mut blob) = edited(1);
    let before = record(2).heads();
    for cut in [1, 7, blob.len() / 2] {
        let mut r = record(2);
        let truncated = &blob[..blob.len() - cut];
        assert!(r.apply(&Payload::Changes(vec![truncated.to_vec()])).is_err(), "cut {cut}");
        assert_eq!(r.heads(), before, "nothing of a refused blob is applied (cut {cut})");
    }
    blob.extend(b"junk after the last change");
    let mut r = record(2);
    assert!(r.apply(&Payload::Changes(vec![blob])).is_err());
    assert_eq!(r.heads(), before);
}

#[test]
fn documents_created_outside_tidepool_are_refused() {
    let mut scratch = from_scratch();
    let mut r = record(2);
    r.put(&object! { "title" => "mine" }, 1).unwrap();
    let heads = r.heads();
    let as_changes: Vec<Vec<u8>> = scratch.get_changes(&[]).iter().map(|c| c.raw_bytes().to_vec()).collect();
    for payload in [Payload::Changes(as_changes), Payload::Changes(vec![scratch.save()]), Payload::Document(scratch.save())] {
        let err = r.apply(&payload).unwrap_err();
        assert!(matches!(err, RecordError::Foreign(_)), "{err}");
        assert!(err.to_string().contains("not a Tidepool document"), "{err}");
        assert_eq!(r.heads(), heads);
    }
    assert_eq!(r.get().unwrap(), Some(object! { "title" => "mine" }));
    let load = Record::load(&store(), Key::from("k").encode().unwrap(), &Payload::Document(scratch.save()), &ActorId::from([3u8; 16]));
    assert!(matches!(load, Err(RecordError::Foreign(_))));
}

#[test]
fn bytes_that_are_not_automerge_are_refused_with_a_reason() {
    let err = Verified::parse(&Payload::Changes(vec![b"hello".to_vec()])).unwrap_err();
    assert!(err.to_string().contains("magic"), "{err}");
    let err = Verified::parse(&Payload::Changes(vec![vec![]])).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

fn push(batch: u64, key: &str, chunks: Vec<Vec<u8>>) -> Vec<u8> {
    let key = Key::from(key).encode().unwrap();
    let doc = tidepool_core::DocId::from_encoded_key(&store(), &key);
    wire::encode(&Message::Push { batch, store: store().clone(), docs: vec![DocData { doc, key, payload: Payload::Changes(chunks) }] })
}

#[test]
fn the_hub_takes_concatenated_changes_and_refuses_foreign_ones() {
    let mut hub = Hub::new(MemoryHubStore::new([1; 16]), AllowAll);
    let conn = hub.connect();
    let hello = Message::Hello { peer: PeerId([5; 16]), token: "t".into(), agent: "test".into() };
    let out = hub.receive(conn, &wire::encode(&hello)).unwrap();
    assert!(out.effects.iter().any(|e| matches!(e, Effect::Welcomed { .. })));

    let (_, blob) = edited(1);
    let out = hub.receive(conn, &push(1, "k", vec![blob])).unwrap();
    assert!(out.durable);
    assert!(out.effects.iter().any(|e| matches!(e, Effect::Acknowledged { batch: 1, incomplete: 0, .. })), "{:?}", out.effects);
    assert_eq!(hub.store_mut().head_seq(&store()).unwrap(), 1);

    let scratch: Vec<Vec<u8>> = from_scratch().get_changes(&[]).iter().map(|c| c.raw_bytes().to_vec()).collect();
    let out = hub.receive(conn, &push(2, "other", scratch)).unwrap();
    assert!(!out.durable, "nothing of a foreign push is written");
    assert!(out.refuses_push(conn));
    let refused = out.effects.iter().find_map(|e| match e {
        Effect::Refused { code, batch, .. } => Some((*code, *batch)),
        _ => None,
    });
    assert_eq!(refused, Some((ErrorCode::Foreign, Some(2))));
    assert_eq!(hub.store_mut().head_seq(&store()).unwrap(), 1);
    let listed = hub.store_mut().docs(&store(), None, 10).unwrap();
    assert_eq!(listed.len(), 1, "the foreign document was not created");
}

#[test]
fn undecodable_frames_tell_the_peer_no_decoder_internals() {
    let mut hub = Hub::new(MemoryHubStore::new([1; 16]), AllowAll);
    let conn = hub.connect();
    let mut frame = wire::MAGIC.to_vec();
    frame.extend(wire::PROTOCOL_VERSION.to_be_bytes());
    frame.push(248);
    let out = hub.receive(conn, &frame).unwrap();
    let told = out.sends.iter().find_map(|s| match wire::decode(&s.frame, &Default::default()) {
        Ok(Message::Error { detail, code, .. }) => Some((code, detail)),
        _ => None,
    });
    let (code, detail) = told.expect("an error frame");
    assert_eq!(code, ErrorCode::Malformed);
    assert!(!detail.contains("UnexpectedVariant") && !detail.contains("Range"), "{detail}");
    let logged = out.effects.iter().find_map(|e| match e {
        Effect::Refused { log, .. } => Some(log.clone()),
        _ => None,
    });
    assert!(logged.is_some_and(|l| l.len() > detail.len()), "the log keeps the detail");
    assert_eq!(out.close.first().map(|c| c.reason), Some(ErrorCode::Malformed));
}

proptest! {
    /// Applying a run of changes as one concatenated blob gives the same document as applying
    /// them one by one.
    #[test]
    fn concatenation_is_the_same_as_one_by_one(titles in proptest::collection::vec("[a-z]{0,6}", 1..8), split in 0usize..8) {
        let mut source = record(1);
        let mut changes = Vec::new();
        for (i, t) in titles.iter().enumerate() {
            if let Some(c) = source.put(&object! { "t" => t.as_str(), "i" => i as i64 }, 0).unwrap() {
                changes.push(c.bytes);
            }
        }
        let split = split.min(changes.len());
        let mut one_by_one = record(2);
        one_by_one.apply(&Payload::Changes(changes.clone())).unwrap();
        let mut blobs = record(2);
        let (head, tail) = changes.split_at(split);
        let joined = |cs: &[Vec<u8>]| cs.concat();
        let payload: Vec<Vec<u8>> = [joined(head), joined(tail)].into_iter().filter(|b| !b.is_empty()).collect();
        blobs.apply(&Payload::Changes(payload)).unwrap();
        prop_assert_eq!(blobs.heads(), one_by_one.heads());
        prop_assert_eq!(blobs.get().unwrap(), source.get().unwrap());
    }
}
