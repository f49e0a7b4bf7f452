//! Exports and fetches through the hub engine: pages in document id order at one cut, bounded
//! by count and bytes, read access required, freed with their connection.

use automerge::ActorId;
use tidepool_core::sync::{AllowAll, Effect, Hub, HubConfig, MemoryHubStore};
use tidepool_core::wire::{self, DocData, DocRef, ErrorCode, ExportRecord, Message, Payload, PeerId};
use tidepool_core::{DocId, Key, Record, StoreRef, object};

fn store() -> StoreRef {
    StoreRef::new("app", "items")
}

fn hub(config: HubConfig) -> (Hub<MemoryHubStore, AllowAll>, u64) {
    let mut hub = Hub::with_config(MemoryHubStore::new([1; 16]), AllowAll, config);
    let conn = hub.connect();
    let hello = Message::Hello { peer: PeerId([5; 16]), token: "t".into(), agent: "test".into() };
    hub.receive(conn, &wire::encode(&hello)).expect("hello");
    (hub, conn)
}

fn put(hub: &mut Hub<MemoryHubStore, AllowAll>, conn: u64, batch: u64, key: u32, text: &str) {
    let mut r = Record::new(&store(), &Key::Number(f64::from(key)), &ActorId::from([2u8; 16])).expect("key");
    let change = r.put(&object! { "text" => text }, 0).expect("put").expect("a change");
    let docs = vec![DocData { doc: r.id(), key: r.encoded_key().to_vec(), payload: Payload::Changes(vec![change.bytes]) }];
    let out = hub.receive(conn, &wire::encode(&Message::Push { batch, store: store(), docs })).expect("push");
    assert!(out.effects.iter().any(|e| matches!(e, Effect::Acknowledged { .. })));
}

/// Sends an export request; the page, or the error code.
fn page(hub: &mut Hub<MemoryHubStore, AllowAll>, conn: u64, export: Option<u64>, after: Option<DocId>, limit: u32) -> Result<(u64, u64, Vec<ExportRecord>, bool), ErrorCode> {
    let out = hub.receive(conn, &wire::encode(&Message::Export { store: store(), export, after, limit })).expect("export");
    for s in &out.sends {
        match wire::decode(&s.frame, &Default::default()).expect("frame") {
            Message::ExportPage { export, cut, records, last, .. } => return Ok((export, cut.seq, records, last)),
            Message::Error { code, .. } => return Err(code),
            _ => {}
        }
    }
    panic!("no answer");
}

#[test]
fn an_export_pages_through_one_cut() {
    let (mut hub, conn) = hub(HubConfig::default());
    for i in 0..10 {
        put(&mut hub, conn, u64::from(i), i, &format!("v{i}"));
    }
    let (id, cut, first, last) = page(&mut hub, conn, None, None, 4).expect("page");
    assert_eq!((first.len(), last, cut), (4, false, 10));
    // Written after the cut: not in this export.
    put(&mut hub, conn, 100, 100, "late");
    let mut all = first;
    loop {
        let (next_id, next_cut, records, last) = page(&mut hub, conn, Some(id), all.last().map(|r| r.doc), 4).expect("page");
        assert_eq!((next_id, next_cut), (id, cut));
        all.extend(records);
        if last {
            break;
        }
    }
    assert_eq!(all.len(), 10);
    assert!(all.windows(2).all(|w| w[0].doc < w[1].doc), "document id order");
    assert!(all.iter().all(|r| r.value.is_some() && !r.heads.is_empty()));
    assert_eq!(hub.store().open_exports(), 0, "a finished export is freed");
    // A request that was on its way when the last page went out: an empty last page.
    assert_eq!(page(&mut hub, conn, Some(id), None, 4), Ok((id, cut, vec![], true)));
    assert_eq!(page(&mut hub, conn, Some(id + 100), None, 4), Err(ErrorCode::UnknownExport), "never opened");
    let (_, cut, records, _) = page(&mut hub, conn, None, None, 100).expect("page");
    assert_eq!((cut, records.len()), (11, 11), "a new export sees the late write");
}

#[test]
fn requests_that_name_no_document_continue_after_the_last_page_sent() {
    let (mut hub, conn) = hub(HubConfig::default());
    for i in 0..10 {
        put(&mut hub, conn, u64::from(i), i, &format!("v{i}"));
    }
    let (_, _, named, _) = page(&mut hub, conn, None, None, 100).expect("page");
    let (id, cut, mut all, last) = page(&mut hub, conn, None, None, 3).expect("page");
    assert!(!last);
    // Five requests at once, as a reader that keeps several on their way sends them: the pages
    // continue one another, and those past the end are empty last pages.
    let pages: Vec<_> = (0..5).map(|_| page(&mut hub, conn, Some(id), None, 3).expect("page")).collect();
    let lasts: Vec<bool> = pages.iter().map(|p| p.3).collect();
    assert_eq!(lasts, [false, false, true, true, true]);
    for (export, page_cut, records, _) in pages {
        assert_eq!((export, page_cut), (id, cut));
        all.extend(records);
    }
    assert_eq!(all, named, "the same records, once each, as one page of them all");
    assert_eq!(hub.store().open_exports(), 0, "the finished export is freed");
}

#[test]
fn pages_are_bounded_by_bytes_and_always_move_on() {
    let config = HubConfig { page_bytes: 1_000, ..HubConfig::default() };
    let (mut hub, conn) = hub(config);
    for i in 0..6 {
        put(&mut hub, conn, u64::from(i), i, &"x".repeat(700));
    }
    let (id, _, records, last) = page(&mut hub, conn, None, None, 100).expect("page");
    assert_eq!((records.len(), last), (1, false), "one large record per page, and not the last page");
    let mut seen = records.len();
    let mut after = records.last().map(|r| r.doc);
    loop {
        let (_, _, records, last) = page(&mut hub, conn, Some(id), after, 100).expect("page");
        seen += records.len();
        after = records.last().map(|r| r.doc).or(after);
        if last {
            break;
        }
    }
    assert_eq!(seen, 6);
}

#[test]
fn exports_end_with_their_connection_and_fetch_returns_documents() {
    let (mut hub, conn) = hub(HubConfig::default());
    put(&mut hub, conn, 1, 1, "one");
    let (_, _, records, _) = page(&mut hub, conn, None, None, 1).expect("page");
    assert_eq!(hub.store().open_exports(), 1);
    hub.disconnect(conn);
    assert_eq!(hub.store().open_exports(), 0, "the connection's exports are freed");

    let (mut hub2, conn2) = hub_with(hub);
    let wanted = vec![DocRef { doc: records[0].doc, key: records[0].key.clone() }];
    let out = hub2.receive(conn2, &wire::encode(&Message::Fetch { request: 9, store: store(), docs: wanted, tips: false })).expect("fetch");
    let fetched = out.sends.iter().find_map(|s| match wire::decode(&s.frame, &Default::default()) {
        Ok(Message::Fetched { request: 9, docs, last: true, .. }) => Some(docs),
        _ => None,
    });
    let docs = fetched.expect("fetched");
    let record = Record::load(&store(), docs[0].key.clone(), &docs[0].payload, &ActorId::from([3u8; 16])).expect("loads");
    assert_eq!(record.get_plain().expect("value"), Some(object! { "text" => "one" }));
}

fn hub_with(mut hub: Hub<MemoryHubStore, AllowAll>) -> (Hub<MemoryHubStore, AllowAll>, u64) {
    let conn = hub.connect();
    let hello = Message::Hello { peer: PeerId([6; 16]), token: "t".into(), agent: "test".into() };
    hub.receive(conn, &wire::encode(&hello)).expect("hello");
    (hub, conn)
}

#[test]
fn a_page_holds_at_most_the_hubs_export_limit_and_never_more_than_a_peer_decodes() {
    let (mut hub, conn) = hub(HubConfig { export_docs: 3, ..HubConfig::default() });
    for i in 0..5 {
        put(&mut hub, conn, u64::from(i), i, "v");
    }
    let (_, _, records, last) = page(&mut hub, conn, None, None, u32::MAX).expect("page");
    assert_eq!((records.len(), last), (3, false), "the hub's limit, not the one asked for");

    // A limit above what a peer's decoder takes is cut to it.
    let (mut hub, conn) = hub_with_limit(usize::MAX);
    for i in 0..5 {
        put(&mut hub, conn, u64::from(i), i, "v");
    }
    let max_docs = hub.config().limits.max_docs;
    let (_, _, records, last) = page(&mut hub, conn, None, None, u32::MAX).expect("page");
    assert_eq!((max_docs, records.len(), last), (4, 4, false), "the decoder's limit of 4");
    assert!(HubConfig::default().export_docs <= HubConfig::default().limits.max_docs);
}

fn hub_with_limit(export_docs: usize) -> (Hub<MemoryHubStore, AllowAll>, u64) {
    let limits = wire::Limits { max_docs: 4, ..wire::Limits::default() };
    let (hub, conn) = hub(HubConfig { export_docs, limits, ..HubConfig::default() });
    (hub, conn)
}
