//! How the hub ends connections, as a tokio-tungstenite client sees it: the close code and
//! reason of each kind of close, the deadline and the limit of connections that have not said
//! hello, and what a peer that has not authenticated may learn from an error.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tidepool_core::wire::{self, DocData, ErrorCode, Message, Payload, Subscription};
use tidepool_core::{StoreRef, object};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const WAIT: Duration = Duration::from_secs(30);
const MAX_FRAME: usize = 64 * 1024;

const NORMAL: u16 = 1000;
const GOING_AWAY: u16 = 1001;
const POLICY: u16 = 1008;
const TOO_BIG: u16 = 1009;
const TRY_AGAIN_LATER: u16 = 1013;

fn todos() -> StoreRef {
    StoreRef::new("app", "todos")
}

fn push(batch: u64, docs: Vec<DocData>) -> Vec<u8> {
    wire::encode(&Message::Push { batch, store: todos(), docs })
}

fn doc(key: &str) -> DocData {
    let (doc, key, change) = change(&todos(), key, &object! { "ok" => true });
    DocData { doc, key, payload: Payload::Changes(vec![change]) }
}

fn subscribe() -> Vec<u8> {
    wire::encode(&Message::Subscribe { subscriptions: vec![Subscription { store: todos(), since: None }] })
}

/// The connection is still served: a subscription gets its catch-up.
async fn still_served(ws: &mut Ws) {
    send(ws, subscribe()).await;
    loop {
        match next(ws).await {
            Some(Message::CaughtUp { .. }) => return,
            Some(Message::Changes { .. }) => {}
            other => panic!("expected catch-up, got {other:?}"),
        }
    }
}

/// The hub told `code` in an error frame, then closed with `close` and a short reason.
fn assert_ended(ending: &Ending, code: ErrorCode, close: u16) {
    assert_eq!(ending.error().map(|(c, _)| c), Some(code), "{ending:?}");
    assert_eq!(ending.close_code(), Some(close), "{ending:?}");
    let reason = ending.close.as_ref().map(|(_, r)| r.as_str()).unwrap_or_default();
    assert!(!reason.is_empty() && reason.len() <= 60, "a short reason: {ending:?}");
}

async fn wait_for_metric(hub: &HubProcess, name: &str, value: f64) {
    let deadline = std::time::Instant::now() + WAIT;
    while hub.metric(name) != value {
        assert!(std::time::Instant::now() < deadline, "{name} never reached {value}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_close_carries_a_status_code_and_a_short_reason() {
    let dir = TestDir::new();
    let hub = dir.start(&["--max-frame", &MAX_FRAME.to_string()]);
    let url = hub.url();
    let token = full_token("app");

    // Refused tokens, anything before hello, garbage and text are policy violations.
    let mut ws = raw(&url).await;
    send(&mut ws, hello("not a token")).await;
    assert_ended(&ending(&mut ws, WAIT).await, ErrorCode::Unauthorized, POLICY);

    let mut ws = raw(&url).await;
    send(&mut ws, push(1, vec![doc("early")])).await;
    assert_ended(&ending(&mut ws, WAIT).await, ErrorCode::ProtocolViolation, POLICY);

    let mut ws = authed(&url, &token).await;
    let mut garbage = b"TDPL".to_vec();
    garbage.extend_from_slice(&wire::PROTOCOL_VERSION.to_be_bytes());
    garbage.extend_from_slice(b" not a message");
    send(&mut ws, garbage).await;
    assert_ended(&ending(&mut ws, WAIT).await, ErrorCode::Malformed, POLICY);

    let mut ws = authed(&url, &token).await;
    ws.send(WsMessage::Text("hello?".into())).await.expect("send");
    assert_ended(&ending(&mut ws, WAIT).await, ErrorCode::Malformed, POLICY);

    // Breaking the WebSocket protocol itself (an unmasked frame from a client).
    let mut ws = authed(&url, &token).await;
    match ws.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.write_all(&[0x82, 0x03, 1, 2, 3]).await.expect("write"),
        _ => unreachable!("the test hub speaks plain TCP"),
    }
    assert_ended(&ending(&mut ws, WAIT).await, ErrorCode::ProtocolViolation, POLICY);

    // Too big, whether core's decoder or the WebSocket layer notices.
    let mut ws = authed(&url, &token).await;
    let big = DocData { payload: Payload::Changes(vec![vec![7; MAX_FRAME]]), ..doc("big") };
    send(&mut ws, push(2, vec![big])).await;
    assert_ended(&ending(&mut ws, WAIT).await, ErrorCode::TooLarge, TOO_BIG);

    let mut ws = authed(&url, &token).await;
    send(&mut ws, vec![0; 4 * MAX_FRAME]).await;
    assert_ended(&ending(&mut ws, WAIT).await, ErrorCode::TooLarge, TOO_BIG);

    // A refused push does not close at all.
    let mut reader = authed(&url, &common::token("app", &["todos"], &[])).await;
    send(&mut reader, push(3, vec![doc("sneaky")])).await;
    assert_eq!(expect_error(&mut reader, ErrorCode::Forbidden).await, Some(3));
    still_served(&mut reader).await;

    // A client that says goodbye gets its close answered.
    let mut ws = authed(&url, &token).await;
    ws.send(WsMessage::Close(None)).await.expect("send close");
    let ended = ending(&mut ws, WAIT).await;
    assert!(ended.error().is_none(), "{ended:?}");
    assert!(matches!(ended.close_code(), None | Some(NORMAL | 1005)), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_with_going_away_whether_or_not_the_peer_said_hello() {
    let dir = TestDir::new();
    let mut hub = dir.start(&[]);
    let mut authenticated = authed(&hub.url(), &full_token("app")).await;
    let mut silent = raw(&hub.url()).await;
    wait_for_metric(&hub, "tidepool_connections", 2.0).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = hub.terminate(WAIT);
        (hub, status)
    });
    assert_ended(&ending(&mut authenticated, WAIT).await, ErrorCode::ShuttingDown, GOING_AWAY);
    assert_ended(&ending(&mut silent, WAIT).await, ErrorCode::ShuttingDown, GOING_AWAY);
    let (hub, status) = status.await.expect("join");
    assert!(status.success(), "exit status {status:?}: {}", hub.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_says_hello_is_closed_at_the_hello_deadline() {
    let dir = TestDir::new();
    let hub = dir.start(&["--hello-timeout", "1s", "--idle-timeout", "60s"]);
    let token = full_token("app");
    let mut authenticated = authed(&hub.url(), &token).await;
    let started = std::time::Instant::now();
    let mut silent = raw(&hub.url()).await;
    // Answering pings (the client reads) does not count as saying hello.
    let ended = ending(&mut silent, WAIT).await;
    assert_ended(&ended, ErrorCode::IdleTimeout, GOING_AWAY);
    assert!(started.elapsed() >= Duration::from_millis(900), "closed before the deadline");
    let reason = &ended.close.as_ref().expect("close").1;
    assert!(reason.contains("hello"), "the reason names the missing hello: {reason}");
    // The hello deadline does not apply once a connection is authenticated.
    still_served(&mut authenticated).await;
    assert!(hub.metric("tidepool_errors_total{code=\"idle_timeout\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unauthenticated_limit_refuses_with_try_again_later_and_spares_authenticated_clients() {
    let dir = TestDir::new();
    let hub = dir.start(&["--max-unauthenticated", "2"]);
    let url = hub.url();
    let token = full_token("app");
    let mut earlier = authed(&url, &token).await;
    wait_for_metric(&hub, "tidepool_connections_unauthenticated", 0.0).await;

    let first = raw(&url).await;
    let _second = raw(&url).await;
    wait_for_metric(&hub, "tidepool_connections_unauthenticated", 2.0).await;
    let mut refused = raw(&url).await;
    assert_ended(&ending(&mut refused, WAIT).await, ErrorCode::Overloaded, TRY_AGAIN_LATER);
    // Clients that already said hello are not affected.
    still_served(&mut earlier).await;

    // A free place lets a client in; once authenticated it no longer takes one.
    drop(first);
    wait_for_metric(&hub, "tidepool_connections_unauthenticated", 1.0).await;
    let mut late = Vec::new();
    for _ in 0..3 {
        late.push(authed(&url, &token).await);
        wait_for_metric(&hub, "tidepool_connections_unauthenticated", 1.0).await;
    }
    for ws in &mut late {
        still_served(ws).await;
    }
    assert_eq!(hub.metric("tidepool_connections"), 5.0);
    assert!(hub.metric("tidepool_errors_total{code=\"overloaded\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_refuses_with_try_again_later() {
    let dir = TestDir::new();
    let hub = dir.start(&["--max-connections", "1"]);
    let _only = authed(&hub.url(), &full_token("app")).await;
    let mut over = raw(&hub.url()).await;
    assert_ended(&ending(&mut over, WAIT).await, ErrorCode::Overloaded, TRY_AGAIN_LATER);
}

/// A frame whose body names a message variant that does not exist: the kind of input that once
/// made the hub describe its decoder to whoever sent it.
fn unknown_variant() -> Vec<u8> {
    let mut frame = b"TDPL".to_vec();
    frame.extend_from_slice(&wire::PROTOCOL_VERSION.to_be_bytes());
    frame.push(248);
    frame
}

fn assert_no_internals(text: &str) {
    for internal in ["Variant", "type_name", "allowed", "Range", "{", "::"] {
        assert!(!text.contains(internal), "internal detail {internal:?} told to a peer: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_reasons_never_carry_internal_detail() {
    let dir = TestDir::new();
    let hub = dir.start(&[]);
    let mut ws = raw(&hub.url()).await;
    send(&mut ws, unknown_variant()).await;
    let ended = ending(&mut ws, WAIT).await;
    assert_ended(&ended, ErrorCode::Malformed, POLICY);
    assert_no_internals(&ended.close.as_ref().expect("close").1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_peer_learns_nothing_about_the_decoder() {
    let dir = TestDir::new();
    let hub = dir.start(&[]);
    let mut ws = raw(&hub.url()).await;
    send(&mut ws, unknown_variant()).await;
    let ended = ending(&mut ws, WAIT).await;
    let (code, detail) = ended.error().expect("an error frame");
    assert_eq!(code, ErrorCode::Malformed);
    assert_no_internals(detail);
}
