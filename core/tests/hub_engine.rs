//! The hub engine against bad and unusual input: refused writes, corrupt changes, frames before
//! hello, and a push whose dependencies the hub lacks (repaired by the sync protocol).

use std::collections::BTreeMap;

use automerge::ActorId;
use tidepool_core::sync::{
    Authorizer, ClientConfig, ClientEngine, ClientEvent, ConnId, Effect, Grants, Hub, MemoryClientDocs, MemoryHubStore,
    Received,
};
use tidepool_core::wire::{self, DocData, ErrorCode, Limits, Message, Payload, PeerId};
use tidepool_core::{Key, StoreRef, object};

/// Grants reading everything and writing only `app/todos`.
struct ReadAllWriteTodos;

impl Authorizer for ReadAllWriteTodos {
    fn authorize(&self, token: &str) -> Result<Grants, String> {
        if token != "good" {
            return Err("bad token".into());
        }
        Ok(Grants {
            read: BTreeMap::from([("app".to_owned(), vec!["*".to_owned()])]),
            write: BTreeMap::from([("app".to_owned(), vec!["todos".to_owned()])]),
        })
    }
}

fn hub() -> Hub<MemoryHubStore, ReadAllWriteTodos> {
    Hub::new(MemoryHubStore::new([1; 16]), ReadAllWriteTodos)
}

fn first_error(hub: &mut Hub<MemoryHubStore, ReadAllWriteTodos>, conn: ConnId, frame: &[u8]) -> (Option<ErrorCode>, bool) {
    let out = hub.receive(conn, frame).unwrap();
    let code = out.sends.iter().find_map(|o| match wire::decode(&o.frame, &Limits::default()) {
        Ok(Message::Error { code, .. }) => Some(code),
        _ => None,
    });
    // The typed effect says the same as the frame the peer gets.
    let effect = out.effects.iter().find_map(|e| match e {
        Effect::Refused { conn: c, code, .. } if *c == conn => Some(*code),
        _ => None,
    });
    assert_eq!(code, effect, "error frame and effect disagree");
    (code, out.close.iter().any(|c| c.conn == conn))
}

fn hello(token: &str) -> Vec<u8> {
    wire::encode(&Message::Hello { peer: PeerId([5; 16]), token: token.into(), agent: "test".into() })
}

fn push(store: &StoreRef, key: &str, chunks: Vec<Vec<u8>>) -> Vec<u8> {
    let key = Key::from(key).encode().unwrap();
    let doc = tidepool_core::DocId::from_encoded_key(store, &key);
    wire::encode(&Message::Push { batch: 7, store: store.clone(), docs: vec![DocData { doc, key, payload: Payload::Changes(chunks) }] })
}

fn a_change(store: &StoreRef, key: &str) -> Vec<u8> {
    let mut r = tidepool_core::Record::new(store, &Key::from(key), &ActorId::from([3u8; 16])).unwrap();
    r.put(&object! { "x" => 1i64 }, 0).unwrap().unwrap().bytes
}

#[test]
fn frames_before_hello_and_bad_tokens_are_refused() {
    let mut hub = hub();
    let c = hub.connect();
    let todos = StoreRef::new("app", "todos");
    assert_eq!(first_error(&mut hub, c, &push(&todos, "a", vec![])), (Some(ErrorCode::ProtocolViolation), true));
    let c = hub.connect();
    assert_eq!(first_error(&mut hub, c, &hello("forged")), (Some(ErrorCode::Unauthorized), true));
    let c = hub.connect();
    assert_eq!(first_error(&mut hub, c, b"garbage"), (Some(ErrorCode::Malformed), true));
}

#[test]
fn writes_outside_the_grant_store_nothing() {
    let mut hub = hub();
    let c = hub.connect();
    assert_eq!(first_error(&mut hub, c, &hello("good")), (None, false));
    let notes = StoreRef::new("app", "notes");
    let (code, closed) = first_error(&mut hub, c, &push(&notes, "a", vec![a_change(&notes, "a")]));
    assert_eq!((code, closed), (Some(ErrorCode::Forbidden), false));
    assert!(hub.store().values(&notes).is_empty());
    // A database the token does not mention is refused the same way, existing or not.
    let other = StoreRef::new("secret", "x");
    let sub = wire::encode(&Message::Subscribe { subscriptions: vec![tidepool_core::wire::Subscription { store: other, since: None }] });
    assert_eq!(first_error(&mut hub, c, &sub).0, Some(ErrorCode::Forbidden));
}

#[test]
fn a_corrupt_change_refuses_the_whole_batch() {
    let mut hub = hub();
    let c = hub.connect();
    hub.receive(c, &hello("good")).unwrap();
    let todos = StoreRef::new("app", "todos");
    let good = a_change(&todos, "a");
    let mut bad = a_change(&todos, "a");
    let n = bad.len();
    bad[n - 2] ^= 0x55;
    let (code, closed) = first_error(&mut hub, c, &push(&todos, "a", vec![good.clone(), bad]));
    assert_eq!((code, closed), (Some(ErrorCode::CorruptData), false));
    assert!(hub.store().values(&todos).is_empty(), "nothing from the bad frame is stored");
    let out = hub.receive(c, &push(&todos, "a", vec![good])).unwrap();
    assert!(out.durable);
    assert_eq!(hub.store().values(&todos).len(), 1, "the connection keeps working");
}

/// A frame the shell decoded, its pushed payloads parsed (as the hub's connection tasks do), is
/// handled exactly as the same bytes: the same frames, effects and closes, the same records.
#[test]
fn frames_decoded_by_the_shell_are_handled_as_their_bytes() {
    let todos = StoreRef::new("app", "todos");
    let notes = StoreRef::new("app", "notes");
    let good = a_change(&todos, "a");
    let mut bad = a_change(&todos, "b");
    let n = bad.len();
    bad[n - 2] ^= 0x55;
    let mut truncated = push(&todos, "c", vec![a_change(&todos, "c")]);
    truncated.truncate(truncated.len() - 3);
    let frames: Vec<Vec<u8>> = vec![
        push(&todos, "a", vec![good.clone()]),
        hello("good"),
        push(&todos, "a", vec![good.clone()]),
        push(&todos, "b", vec![good.clone(), bad]),
        push(&notes, "a", vec![a_change(&notes, "a")]),
        push(&todos, "d", vec![b"not automerge".to_vec()]),
        push(&todos, "e", vec![a_change(&todos, "e")]),
        truncated,
    ];
    let (mut by_bytes, mut by_shell) = (hub(), hub());
    let (a, b) = (by_bytes.connect(), by_shell.connect());
    assert_eq!(a, b);
    let mut refused = 0;
    for (i, frame) in frames.iter().enumerate() {
        let want = by_bytes.receive(a, frame).unwrap();
        let mut decoded = Received::decode(frame, &by_shell.config().limits);
        decoded.check_payloads();
        let got = by_shell.receive_decoded(b, decoded).unwrap();
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "frame {i}");
        refused += want.effects.iter().filter(|e| matches!(e, Effect::Refused { .. })).count();
    }
    assert!(refused >= 4, "the frames include refusals: {refused}");
    assert_eq!(by_shell.store().values(&todos), by_bytes.store().values(&todos));
    assert_eq!(by_shell.store().values(&todos).len(), 2, "the good pushes are stored");
}

#[test]
fn push_with_missing_dependencies_is_repaired_by_sync() {
    let store = StoreRef::new("app", "todos");
    let mut docs = MemoryClientDocs::new(ActorId::from([8u8; 16]));
    let record = docs.record_for(&store, &Key::from("t")).unwrap();
    // The first change never reaches the outbox (say, it was refused once); the second depends on it.
    record.put(&object! { "a" => 1i64 }, 0).unwrap().unwrap();
    let second = record.put(&object! { "a" => 1i64, "b" => 2i64 }, 1).unwrap().unwrap();
    let (doc, key) = (record.id(), record.encoded_key().to_vec());

    let mut hub = hub();
    let conn = hub.connect();
    let mut client = ClientEngine::new(ClientConfig::new(PeerId([8; 16]), "good"));
    client.subscribe(store.clone(), None);
    client.enqueue(1, store.clone(), doc, key, second.bytes);
    client.connected();
    let mut acked = Vec::new();
    for _ in 0..20 {
        let out = client.take_output();
        for e in out.events {
            if let ClientEvent::Acked { ids } = e {
                acked.extend(ids);
            }
        }
        if out.frames.is_empty() {
            break;
        }
        for f in out.frames {
            for o in hub.receive(conn, &f).unwrap().sends {
                client.receive(&o.frame, &mut docs).unwrap();
            }
        }
    }
    assert_eq!(acked, vec![1]);
    assert!(client.is_idle());
    assert_eq!(hub.store().values(&store), docs.values(&store));
    assert_eq!(hub.store().values(&store).len(), 1);
}

#[test]
fn a_change_larger_than_the_hub_allows_is_refused_locally_not_pushed_forever() {
    let store = StoreRef::new("app", "todos");
    let mut docs = MemoryClientDocs::new(ActorId::from([8u8; 16]));
    let record = docs.record_for(&store, &Key::from("big")).unwrap();
    let big = record.put(&object! { "blob" => tidepool_core::Value::Bytes(vec![7; 200_000]) }, 0).unwrap().unwrap();
    let (doc, key) = (record.id(), record.encoded_key().to_vec());
    let config = tidepool_core::sync::HubConfig {
        limits: Limits { max_frame: 64 * 1024, ..Limits::default() },
        ..Default::default()
    };
    let mut hub = Hub::with_config(MemoryHubStore::new([2; 16]), ReadAllWriteTodos, config);
    let mut client = ClientEngine::new(ClientConfig::new(PeerId([8; 16]), "good"));
    // Queued before the engine knows the hub's limit: pushed once, refused, connection closed.
    client.enqueue(1, store.clone(), doc, key.clone(), big.bytes.clone());
    let mut events = Vec::new();
    let mut exchange = |client: &mut ClientEngine, hub: &mut Hub<MemoryHubStore, ReadAllWriteTodos>, docs: &mut MemoryClientDocs| {
        let conn = hub.connect();
        client.connected();
        let mut closed = false;
        for _ in 0..5 {
            let out = client.take_output();
            events.extend(out.events);
            assert!(out.frames.iter().all(|f| f.len() <= 64 * 1024 || !closed));
            for f in out.frames {
                let reply = hub.receive(conn, &f).unwrap();
                closed |= reply.close.iter().any(|c| c.conn == conn);
                for o in reply.sends {
                    let _ = client.receive(&o.frame, docs);
                }
            }
        }
        events.extend(client.take_output().events);
        hub.disconnect(conn);
        client.disconnected();
        closed
    };
    assert!(exchange(&mut client, &mut hub, &mut docs), "the hub refuses the oversized frame and closes");
    // On the next connection the welcome tells the limit: the change is refused locally instead of
    // being pushed again, and the connection stays open.
    assert!(!exchange(&mut client, &mut hub, &mut docs));
    assert_eq!(client.pending(), 0);
    client.connected();
    client.enqueue(2, store.clone(), doc, key, big.bytes);
    assert!(client.take_output().frames.iter().all(|f| f.len() < 64 * 1024));
    assert_eq!(client.pending(), 0);
    let too_large = events.iter().filter(|e| matches!(e, ClientEvent::HubError { code: ErrorCode::TooLarge, .. })).count();
    assert!(too_large >= 2, "{events:?}");
}

/// Pumps frames between one client engine and the hub until the client has nothing to send.
fn pump(client: &mut ClientEngine, hub: &mut Hub<MemoryHubStore, ReadAllWriteTodos>, conn: ConnId, docs: &mut MemoryClientDocs) {
    for _ in 0..20 {
        let out = client.take_output();
        if out.frames.is_empty() {
            return;
        }
        for f in out.frames {
            for o in hub.receive(conn, &f).unwrap().sends {
                client.receive(&o.frame, docs).unwrap();
            }
        }
    }
}

#[test]
fn a_refused_subscription_is_told_apart_from_a_refused_push() {
    let notes = StoreRef::new("app", "notes");
    let mut docs = MemoryClientDocs::new(ActorId::from([8u8; 16]));
    let record = docs.record_for(&notes, &Key::from("n")).unwrap();
    let change = record.put(&object! { "a" => 1i64 }, 0).unwrap().unwrap();
    let (doc, key) = (record.id(), record.encoded_key().to_vec());
    let mut hub = hub();
    let conn = hub.connect();
    let mut client = ClientEngine::new(ClientConfig::new(PeerId([8; 16]), "good"));
    // Readable but not writable: the push is refused, the subscription is not.
    client.subscribe(notes.clone(), None);
    client.enqueue(1, notes, doc, key, change.bytes);
    client.connected();
    pump(&mut client, &mut hub, conn, &mut docs);
    assert_eq!(client.refusal(), None);
    assert!(client.is_idle());
    // A database the token cannot read: that subscription never goes live, and the engine says why.
    client.subscribe(StoreRef::new("private", "plans"), None);
    pump(&mut client, &mut hub, conn, &mut docs);
    assert!(client.refusal().is_some_and(|r| r.contains("private/plans")), "{:?}", client.refusal());
    assert!(!client.is_idle());
    // A new connection asks again and forgets the old answer until the hub repeats it.
    client.disconnected();
    client.connected();
    assert_eq!(client.refusal(), None);
}
