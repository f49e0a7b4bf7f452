//! Property tests of core's merge semantics, write-back and wire decoder.

use std::collections::BTreeMap;

use automerge::ActorId;
use proptest::prelude::*;
use tidepool_core::wire::{
    self, Cursor, DocData, DocHeads, ErrorCode, Limits, Message, Payload, PeerId, Subscription, SyncEntry,
};
use tidepool_core::first_put::first_put;
use tidepool_core::{DocId, Key, Record, StoreRef, Value, WriteBack, WriteMode};

fn store() -> StoreRef {
    StoreRef::new("db", "items")
}

fn record(actor: u8) -> Record {
    Record::new(&store(), &Key::from("k"), &ActorId::from([actor; 16])).expect("valid key")
}

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        ".{0,6}".prop_map(Value::String),
        any::<i64>().prop_map(Value::Date),
        proptest::collection::vec(any::<u8>(), 0..6).prop_map(Value::Bytes),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    arb_scalar().prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,4}", inner, 0..5).prop_map(Value::Object),
        ]
    })
}

fn arb_fields() -> impl Strategy<Value = BTreeMap<String, Value>> {
    proptest::collection::btree_map("[a-e]", arb_value(), 0..5)
}

/// Values with every variant, collaborative text and counters included.
fn arb_any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        4 => arb_scalar(),
        1 => ".{0,6}".prop_map(Value::Text),
        1 => any::<i64>().prop_map(Value::Counter),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,4}", inner, 0..5).prop_map(Value::Object),
        ]
    })
}

fn exchange(a: &mut Record, b: &mut Record) {
    let (from_a, from_b) = (a.changes_since(&[]), b.changes_since(&[]));
    a.apply(&Payload::Changes(from_b)).expect("valid changes");
    b.apply(&Payload::Changes(from_a)).expect("valid changes");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The first put of a new record built straight from the value is the very change
    /// `Record::put` makes, byte for byte, and it reads back as the value.
    #[test]
    fn first_put_is_the_change_put_makes(value in arb_any_value(), time in any::<i64>()) {
        let actor = ActorId::from([3u8; 16]);
        let fast = first_put(&actor, &value, time).unwrap();
        let slow = record(3).put(&value, time).unwrap().expect("a first put always changes the record");
        prop_assert_eq!(&fast, &slow);
        let mut r = record(4);
        prop_assert!(r.apply(&Payload::Changes(vec![fast.bytes])).unwrap());
        prop_assert_eq!(r.get().unwrap(), Some(value));
    }

    /// Property 2: put then get returns the value put; putting it again changes nothing.
    #[test]
    fn put_then_get(first in arb_value(), second in arb_value()) {
        let mut r = record(1);
        r.put(&first, 1).unwrap();
        prop_assert_eq!(r.get().unwrap(), Some(first.clone()));
        r.put(&second, 2).unwrap();
        prop_assert_eq!(r.get().unwrap(), Some(second.clone()));
        let heads = r.heads();
        prop_assert!(r.put(&second, 3).unwrap().is_none());
        prop_assert_eq!(r.heads(), heads);
        // A record loaded elsewhere reads the same.
        let saved = r.save();
        let loaded = Record::load(&store(), Key::from("k").encode().unwrap(), &Payload::Document(saved), &ActorId::from([9u8; 16])).unwrap();
        prop_assert_eq!(loaded.get().unwrap(), Some(second));
    }

    /// Property 3: concurrent edits to different fields of one record both survive.
    #[test]
    fn concurrent_different_fields_survive(base in arb_fields(), x in arb_value(), y in arb_value()) {
        let mut a = record(1);
        let mut b = record(2);
        a.put(&Value::Object(base.clone()), 1).unwrap();
        exchange(&mut a, &mut b);
        let mut va = base.clone();
        va.insert("x".into(), x.clone());
        let mut vb = base.clone();
        vb.insert("y".into(), y.clone());
        a.put(&Value::Object(va), 2).unwrap();
        b.put(&Value::Object(vb), 2).unwrap();
        exchange(&mut a, &mut b);
        let mut expect = base;
        expect.insert("x".into(), x);
        expect.insert("y".into(), y);
        prop_assert_eq!(a.get().unwrap(), Some(Value::Object(expect.clone())));
        prop_assert_eq!(b.get().unwrap(), Some(Value::Object(expect)));
    }

    /// Property 4: write-back is deterministic and commutes with user edits made after the
    /// snapshot.
    #[test]
    fn write_back_is_deterministic_and_commutes(
        base in arb_fields(),
        user_value in arb_value(),
        result in arb_value(),
        run in "[a-z0-9]{1,8}",
    ) {
        let mut user = record(1);
        user.put(&Value::Object(base.clone()), 1).unwrap();
        let snapshot_heads = user.heads();
        let mut bridge_copy = user.clone();

        // The user edits a field after the snapshot.
        let mut edited = base.clone();
        edited.insert("title".into(), user_value.clone());
        user.put(&Value::Object(edited.clone()), 2).unwrap();

        let wb = WriteBack::new("score-job", run);
        let results: BTreeMap<String, Value> = [("score".to_owned(), result.clone())].into();
        let first = wb.change(&mut bridge_copy, &snapshot_heads, &results, WriteMode::Fields).unwrap();
        let again = wb.change(&mut bridge_copy, &snapshot_heads, &results, WriteMode::Fields).unwrap();
        prop_assert_eq!(&first, &again);
        // Also from a replica that already has the user's later edit.
        let from_later = wb.change(&mut user, &snapshot_heads, &results, WriteMode::Fields).unwrap();
        prop_assert_eq!(&first, &from_later);
        // Without a fork (heads unchanged since the snapshot), also from the saved bytes a
        // peer sends, and with a fork when they changed: the same bytes every way.
        let fast = wb.change_consuming(bridge_copy.clone(), &snapshot_heads, &results, WriteMode::Fields).unwrap();
        prop_assert_eq!(&first, &fast);
        let saved = Payload::Document(bridge_copy.save());
        let loaded = Record::load(&store(), bridge_copy.encoded_key().to_vec(), &saved, &ActorId::from([9u8; 16])).unwrap();
        let fast_loaded = wb.change_consuming(loaded, &snapshot_heads, &results, WriteMode::Fields).unwrap();
        prop_assert_eq!(&first, &fast_loaded);
        let forked = wb.change_consuming(user.clone(), &snapshot_heads, &results, WriteMode::Fields).unwrap();
        prop_assert_eq!(&first, &forked);

        if let Some(change) = first {
            user.apply(&Payload::Changes(vec![change.bytes.clone()])).unwrap();
            let heads = user.heads();
            user.apply(&Payload::Changes(vec![change.bytes])).unwrap();
            prop_assert_eq!(user.heads(), heads, "a retried run is a no-op");
        }
        let mut expect = edited;
        expect.insert("score".into(), result);
        prop_assert_eq!(user.get().unwrap(), Some(Value::Object(expect)));
    }

    /// Property 5a: the decoder returns Ok or Err on arbitrary bytes and never panics.
    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = wire::decode(&bytes, &Limits::default());
        let mut framed = wire::MAGIC.to_vec();
        framed.extend_from_slice(&wire::PROTOCOL_VERSION.to_be_bytes());
        framed.extend_from_slice(&bytes);
        let _ = wire::decode(&framed, &Limits::default());
    }

    /// Property 5b: every valid frame round-trips.
    #[test]
    fn frames_round_trip(message in arb_message()) {
        let bytes = wire::encode(&message);
        prop_assert_eq!(wire::decode(&bytes, &Limits::default()), Ok(message));
    }
}

fn arb_doc() -> impl Strategy<Value = (DocId, Vec<u8>)> {
    "[a-z]{0,5}".prop_map(|k| {
        let key = Key::from(k.as_str()).encode().expect("valid key");
        (DocId::from_encoded_key(&store(), &key), key)
    })
}

fn arb_cursor() -> impl Strategy<Value = Cursor> {
    (any::<[u8; 16]>(), any::<u64>()).prop_map(|(epoch, seq)| Cursor { epoch, seq })
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 0..3).prop_map(Payload::Changes),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(Payload::Document),
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    let docs = || {
        proptest::collection::vec(
            (arb_doc(), arb_payload()).prop_map(|((doc, key), payload)| DocData { doc, key, payload }),
            0..4,
        )
    };
    prop_oneof![
        (any::<[u8; 16]>(), ".{0,20}", ".{0,10}")
            .prop_map(|(p, token, agent)| Message::Hello { peer: PeerId(p), token, agent }),
        (any::<[u8; 16]>(), any::<u32>(), any::<u32>()).prop_map(|(epoch, max_frame, max_docs_per_batch)| {
            Message::Welcome { epoch, max_frame, max_docs_per_batch }
        }),
        proptest::option::of(arb_cursor()).prop_map(|since| Message::Subscribe {
            subscriptions: vec![Subscription { store: store(), since }]
        }),
        (any::<u64>(), docs()).prop_map(|(batch, docs)| Message::Push { batch, store: store(), docs }),
        (any::<u64>(), proptest::collection::vec(arb_doc(), 0..3))
            .prop_map(|(batch, d)| Message::Ack { batch, incomplete: d.into_iter().map(|(id, _)| id).collect() }),
        (docs(), proptest::option::of(arb_cursor()))
            .prop_map(|(docs, cursor)| Message::Changes { store: store(), docs, cursor }),
        arb_cursor().prop_map(|cursor| Message::CaughtUp { store: store(), cursor }),
        (proptest::collection::vec((arb_doc(), any::<[u8; 32]>()), 0..3), arb_cursor(), any::<bool>()).prop_map(
            |(d, cursor, last)| Message::Heads {
                store: store(),
                docs: d.into_iter().map(|((doc, key), h)| DocHeads { doc, key, heads: vec![h] }).collect(),
                cursor,
                last,
            }
        ),
        proptest::collection::vec((arb_doc(), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8))), 0..3)
            .prop_map(|e| Message::Sync {
                store: store(),
                entries: e.into_iter().map(|((doc, key), message)| SyncEntry { doc, key, message }).collect(),
            }),
        (".{0,20}", proptest::option::of(any::<u64>()))
            .prop_map(|(detail, batch)| Message::Error { code: ErrorCode::Forbidden, detail, batch }),
    ]
}
