//! Watching a store through the hub engine: the watcher learns the store's log position at once
//! and after every change logged to it, never the changes themselves, and only with read access;
//! a watch outlives reconnection.

use std::collections::BTreeMap;

use automerge::ActorId;
use tidepool_core::sync::{Authorizer, ClientConfig, ClientEngine, ClientEvent, Grants, Hub, MemoryClientDocs, MemoryHubStore};
use tidepool_core::wire::{self, Cursor, DocData, ErrorCode, Message, Payload, PeerId};
use tidepool_core::{Key, Record, StoreRef, object};

/// Reads and writes `app/*`; nothing of `secret`.
struct AppOnly;

impl Authorizer for AppOnly {
    fn authorize(&self, _token: &str) -> Result<Grants, String> {
        let app = BTreeMap::from([("app".to_owned(), vec!["*".to_owned()])]);
        Ok(Grants { read: app.clone(), write: app })
    }
}

fn items() -> StoreRef {
    StoreRef::new("app", "items")
}

/// Passes frames both ways until neither side has anything to say; the watcher's events.
fn pump(hub: &mut Hub<MemoryHubStore, AppOnly>, conn: u64, client: &mut ClientEngine, docs: &mut MemoryClientDocs) -> Vec<ClientEvent> {
    let mut events = Vec::new();
    loop {
        let out = client.take_output();
        events.extend(out.events);
        if out.frames.is_empty() {
            return events;
        }
        for f in out.frames {
            for o in hub.receive(conn, &f).expect("hub").sends.into_iter().filter(|o| o.to == conn) {
                client.receive(&o.frame, docs).expect("client");
            }
        }
    }
}

/// A push from another connection; the frames the hub sends to each connection.
fn push(hub: &mut Hub<MemoryHubStore, AppOnly>, from: u64, batch: u64, key: u32) -> Vec<(u64, Message)> {
    let mut r = Record::new(&items(), &Key::Number(f64::from(key)), &ActorId::from([3u8; 16])).expect("key");
    let change = r.put(&object! { "n" => f64::from(key) }, 0).expect("put").expect("a change");
    let docs = vec![DocData { doc: r.id(), key: r.encoded_key().to_vec(), payload: Payload::Changes(vec![change.bytes]) }];
    let out = hub.receive(from, &wire::encode(&Message::Push { batch, store: items(), docs })).expect("push");
    out.sends.iter().map(|o| (o.to, wire::decode(&o.frame, &Default::default()).expect("frame"))).collect()
}

fn moved(events: &[ClientEvent]) -> Vec<(StoreRef, Cursor)> {
    events.iter().filter_map(|e| match e { ClientEvent::Moved { store, cursor } => Some((store.clone(), *cursor)), _ => None }).collect()
}

#[test]
fn a_watcher_learns_every_move_and_no_change() {
    let mut hub = Hub::new(MemoryHubStore::new([1; 16]), AppOnly);
    let writer = hub.connect();
    hub.receive(writer, &wire::encode(&Message::Hello { peer: PeerId([5; 16]), token: "t".into(), agent: "test".into() })).expect("hello");
    push(&mut hub, writer, 1, 1);

    let watcher = hub.connect();
    let mut client = ClientEngine::new(ClientConfig::new(PeerId([8; 16]), "t"));
    let mut docs = MemoryClientDocs::new(ActorId::from([8u8; 16]));
    client.watch(items());
    client.connected();
    let first = moved(&pump(&mut hub, watcher, &mut client, &mut docs));
    assert_eq!(first, vec![(items(), Cursor { epoch: [1; 16], seq: 1 })], "the position at once");

    // Every later push moves the watcher, with the log's new position, and sends it no change.
    for (batch, key) in [(2, 2), (3, 3)] {
        let sends = push(&mut hub, writer, batch, key);
        let to_watcher: Vec<_> = sends.iter().filter(|(to, _)| *to == watcher).map(|(_, m)| m.clone()).collect();
        assert_eq!(to_watcher, vec![Message::Moved { store: items(), cursor: Cursor { epoch: [1; 16], seq: batch } }]);
        for (_, m) in sends.into_iter().filter(|(to, _)| *to == watcher) {
            client.receive(&wire::encode(&m), &mut docs).expect("moved");
        }
        assert_eq!(moved(&client.take_output().events), vec![(items(), Cursor { epoch: [1; 16], seq: batch })]);
    }
    assert!(docs.values(&items()).is_empty(), "a watcher holds no documents");

    // A new connection watches again by itself.
    hub.disconnect(watcher);
    client.disconnected();
    let again = hub.connect();
    client.connected();
    assert_eq!(moved(&pump(&mut hub, again, &mut client, &mut docs)), vec![(items(), Cursor { epoch: [1; 16], seq: 3 })]);
}

#[test]
fn watching_needs_read_access() {
    let mut hub = Hub::new(MemoryHubStore::new([1; 16]), AppOnly);
    let conn = hub.connect();
    hub.receive(conn, &wire::encode(&Message::Hello { peer: PeerId([5; 16]), token: "t".into(), agent: "test".into() })).expect("hello");
    let secret = StoreRef::new("secret", "items");
    let out = hub.receive(conn, &wire::encode(&Message::Watch { stores: vec![secret] })).expect("watch");
    let replies: Vec<_> = out.sends.iter().map(|o| wire::decode(&o.frame, &Default::default()).expect("frame")).collect();
    assert!(matches!(replies.as_slice(), [Message::Error { code: ErrorCode::Forbidden, .. }]), "{replies:?}");
    // And a client may not send what only hubs send.
    let out = hub.receive(conn, &wire::encode(&Message::Moved { store: items(), cursor: Cursor { epoch: [1; 16], seq: 9 } })).expect("moved");
    let replies: Vec<_> = out.sends.iter().map(|o| wire::decode(&o.frame, &Default::default()).expect("frame")).collect();
    assert!(matches!(replies.as_slice(), [Message::Error { code: ErrorCode::ProtocolViolation, .. }]), "{replies:?}");
}
