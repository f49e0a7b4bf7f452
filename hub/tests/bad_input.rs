//! Hostile and broken input against the real hub binary: every case gets a typed error (and a
//! close where the connection cannot continue), nothing from the bad frame is stored, and a
//! well-behaved client on the same hub keeps being served throughout.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use futures_util::SinkExt;
use tidepool_core::wire::{self, DocData, ErrorCode, Message, Payload, Subscription};
use tidepool_core::automerge::ActorId;
use tidepool_core::{Key, Record, StoreRef, object};
use tidepool_client::{Client, ClientOptions, converge};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const WAIT: Duration = Duration::from_secs(30);
const MAX_FRAME: usize = 64 * 1024;

fn todos() -> StoreRef {
    StoreRef::new("app", "todos")
}

fn push(batch: u64, store: &StoreRef, docs: Vec<DocData>) -> Vec<u8> {
    wire::encode(&Message::Push { batch, store: store.clone(), docs })
}

fn valid_doc(store: &StoreRef, key: &str) -> DocData {
    let (doc, key, change) = change(store, key, &object! { "ok" => true });
    DocData { doc, key, payload: Payload::Changes(vec![change]) }
}

/// Two honest clients that keep editing and must keep converging between the attacks.
struct Bystanders {
    clients: Vec<Arc<Client>>,
    round: i64,
}

impl Bystanders {
    fn new(hub: &HubProcess) -> Self {
        let clients: Vec<Arc<Client>> = (0..2)
            .map(|_| {
                let c = Arc::new(Client::connect(ClientOptions::new(hub.url(), full_token("app"))));
                c.subscribe(todos());
                c
            })
            .collect();
        Bystanders { clients, round: 0 }
    }

    async fn still_served(&mut self) {
        self.round += 1;
        let key = Key::String(format!("bystander-{}", self.round % 3));
        self.clients[(self.round % 2) as usize]
            .put(&todos(), &key, &object! { "round" => self.round })
            .expect("put");
        assert!(converge(&self.clients, &todos(), WAIT).await, "bystanders converge after round {}", self.round);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_frames_get_typed_errors_and_nobody_else_notices() {
    let dir = TestDir::new();
    let max_frame = MAX_FRAME.to_string();
    let hub = dir.start(&["--max-frame", &max_frame, "--max-docs-per-batch", "5"]);
    let url = hub.url();
    let token = full_token("app");
    let mut others = Bystanders::new(&hub);
    others.still_served().await;

    // Random bytes instead of a frame.
    let mut ws = authed(&url, &token).await;
    send(&mut ws, (0..200).map(|_| rand::random::<u8>()).collect()).await;
    expect_error(&mut ws, ErrorCode::Malformed).await;
    expect_closed(&mut ws).await;

    // A valid push cut short.
    let mut ws = authed(&url, &token).await;
    let whole = push(1, &todos(), vec![valid_doc(&todos(), "truncated")]);
    send(&mut ws, whole[..whole.len() - 7].to_vec()).await;
    expect_error(&mut ws, ErrorCode::Malformed).await;
    expect_closed(&mut ws).await;
    others.still_served().await;

    // Another protocol version.
    let mut ws = raw(&url).await;
    let mut frame = hello(&token);
    frame[4..6].copy_from_slice(&(wire::PROTOCOL_VERSION + 1).to_be_bytes());
    send(&mut ws, frame).await;
    expect_error(&mut ws, ErrorCode::UnsupportedVersion).await;
    expect_closed(&mut ws).await;

    // Slightly over the frame limit: core's decoder refuses it.
    let mut ws = authed(&url, &token).await;
    let big = DocData { payload: Payload::Changes(vec![vec![7; MAX_FRAME]]), ..valid_doc(&todos(), "big") };
    send(&mut ws, push(2, &todos(), vec![big])).await;
    expect_error(&mut ws, ErrorCode::TooLarge).await;
    expect_closed(&mut ws).await;

    // Far over the limit: the WebSocket layer stops reading it, the hub still says why.
    let mut ws = authed(&url, &token).await;
    send(&mut ws, vec![0; 4 * MAX_FRAME]).await;
    expect_error(&mut ws, ErrorCode::TooLarge).await;
    expect_closed(&mut ws).await;
    others.still_served().await;

    // Text instead of binary.
    let mut ws = authed(&url, &token).await;
    ws.send(WsMessage::Text("hello?".into())).await.expect("send");
    expect_error(&mut ws, ErrorCode::Malformed).await;
    expect_closed(&mut ws).await;

    // Anything before hello.
    let mut ws = raw(&url).await;
    send(&mut ws, push(3, &todos(), vec![valid_doc(&todos(), "early")])).await;
    expect_error(&mut ws, ErrorCode::ProtocolViolation).await;
    expect_closed(&mut ws).await;

    // Corrupt Automerge bytes: the batch is refused, the connection stays usable.
    let mut ws = authed(&url, &token).await;
    let mut change_bytes = valid_doc(&todos(), "corrupt").payload;
    if let Payload::Changes(chunks) = &mut change_bytes {
        let last = chunks[0].len() - 1;
        chunks[0][last] ^= 0xff;
    }
    let corrupt = DocData { payload: change_bytes, ..valid_doc(&todos(), "corrupt") };
    send(&mut ws, push(4, &todos(), vec![valid_doc(&todos(), "in-corrupt-batch"), corrupt])).await;
    assert_eq!(expect_error(&mut ws, ErrorCode::CorruptData).await, Some(4));
    let garbage = DocData { payload: Payload::Changes(vec![b"not automerge at all".to_vec()]), ..valid_doc(&todos(), "garbage") };
    send(&mut ws, push(5, &todos(), vec![garbage])).await;
    assert_eq!(expect_error(&mut ws, ErrorCode::CorruptData).await, Some(5));
    // A whole document where changes are expected.
    let doc = DocData { payload: Payload::Document(vec![1, 2, 3]), ..valid_doc(&todos(), "as-document") };
    send(&mut ws, push(6, &todos(), vec![doc])).await;
    assert_eq!(expect_error(&mut ws, ErrorCode::CorruptData).await, Some(6));
    // Too many documents in one batch.
    let many = (0..6).map(|i| valid_doc(&todos(), &format!("many-{i}"))).collect();
    send(&mut ws, push(7, &todos(), many)).await;
    assert_eq!(expect_error(&mut ws, ErrorCode::TooManyDocs).await, Some(7));
    // A change that parses but cannot be applied (its actor reuses a sequence number) behind a
    // valid document: core has logged the first document when the second fails, and the hub
    // must still store nothing from the refused batch.
    let actor = ActorId::from([7u8; 16]);
    let mut original = Record::new(&todos(), &Key::from("dup"), &actor).expect("record");
    let first = original.put(&object! { "v" => 1i64 }, 0).expect("put").expect("change");
    let mut rival = Record::new(&todos(), &Key::from("dup"), &actor).expect("record");
    let reused = rival.put(&object! { "v" => 2i64 }, 0).expect("put").expect("change");
    let dup = |bytes: Vec<u8>| DocData { doc: original.id(), key: original.encoded_key().to_vec(), payload: Payload::Changes(vec![bytes]) };
    send(&mut ws, push(10, &todos(), vec![dup(first.bytes)])).await;
    assert!(matches!(next(&mut ws).await, Some(Message::Ack { batch: 10, .. })));
    send(&mut ws, push(11, &todos(), vec![valid_doc(&todos(), "partial"), dup(reused.bytes)])).await;
    assert_eq!(expect_error(&mut ws, ErrorCode::CorruptData).await, Some(11));
    send(&mut ws, push(8, &todos(), vec![valid_doc(&todos(), "after-errors")])).await;
    assert!(matches!(next(&mut ws).await, Some(Message::Ack { batch: 8, .. })));
    others.still_served().await;

    assert!(hub.alive_check());
    let stored: Vec<String> = dump(&hub.data, "app", "todos").iter().map(|l| l["key"].to_string()).collect();
    for key in ["truncated", "big", "early", "corrupt", "in-corrupt-batch", "garbage", "as-document", "many-0", "partial"] {
        assert!(!stored.contains(&format!("\"{key}\"")), "{key} was stored: {stored:?}");
    }
    assert!(stored.contains(&"\"after-errors\"".to_string()) && stored.contains(&"\"dup\"".to_string()));
    assert!(hub.metric("tidepool_errors_total{code=\"malformed\"}") >= 3.0);
    assert!(hub.metric("tidepool_errors_total{code=\"corrupt_data\"}") >= 3.0);
    assert!(hub.metric("tidepool_errors_total{code=\"too_large\"}") >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_and_grants_enforced_per_store() {
    let dir = TestDir::new();
    let hub = dir.start(&[]);
    let url = hub.url();
    let mut others = Bystanders::new(&hub);
    others.still_served().await;
    let secret_store = StoreRef::new("secret", "plans");
    let mut owner = authed(&url, &token("secret", &["plans"], &["plans"])).await;
    send(&mut owner, push(1, &secret_store, vec![valid_doc(&secret_store, "p1")])).await;
    assert!(matches!(next(&mut owner).await, Some(Message::Ack { batch: 1, .. })));

    let now = tidepool_hub::auth::now_secs();
    let expired = token_with("app", &["*"], &["*"], now - 7200, Duration::from_secs(3600));
    let forged = {
        let claims = tidepool_hub::auth::Claims::new("mallory", "app", &["*".into()], &["*".into()], now, Duration::from_secs(600));
        tidepool_hub::auth::mint(b"not the hub's secret, but long enough", &claims).expect("mint")
    };
    let unsigned = {
        let claims = tidepool_hub::auth::Claims::new("mallory", "*", &["*".into()], &["*".into()], now, Duration::from_secs(600));
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"));
        format!("{header}.{body}.")
    };
    let tampered = {
        // A valid token whose claims were widened after signing.
        let good = token("app", &["todos"], &[]);
        let parts: Vec<&str> = good.split('.').collect();
        let claims = tidepool_hub::auth::Claims::new("tester", "*", &["*".into()], &["*".into()], now, Duration::from_secs(600));
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"));
        format!("{}.{body}.{}", parts[0], parts[2])
    };
    for bad in [expired, forged, unsigned, tampered, String::new(), "garbage".into()] {
        let mut ws = raw(&url).await;
        send(&mut ws, hello(&bad)).await;
        expect_error(&mut ws, ErrorCode::Unauthorized).await;
        expect_closed(&mut ws).await;
    }
    others.still_served().await;

    // Read-only on todos: pushes are refused, nothing is stored, the connection stays.
    let mut reader = authed(&url, &token("app", &["todos"], &[])).await;
    send(&mut reader, push(9, &todos(), vec![valid_doc(&todos(), "sneaky")])).await;
    assert_eq!(expect_error(&mut reader, ErrorCode::Forbidden).await, Some(9));
    // A database the token cannot read: existing or not, the answer is the same.
    let mut answers = Vec::new();
    for store in [secret_store.clone(), StoreRef::new("nosuchdb", "plans")] {
        let subscribe = Message::Subscribe { subscriptions: vec![Subscription { store: store.clone(), since: None }] };
        send(&mut reader, wire::encode(&subscribe)).await;
        match next(&mut reader).await {
            Some(Message::Error { code, detail, .. }) => answers.push((code, detail.replace(&store.db, "DB"))),
            other => panic!("expected an error, got {other:?}"),
        }
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, ErrorCode::Forbidden);
    // What it may read, it gets.
    let subscribe = Message::Subscribe { subscriptions: vec![Subscription { store: todos(), since: None }] };
    send(&mut reader, wire::encode(&subscribe)).await;
    loop {
        match next(&mut reader).await {
            Some(Message::Changes { .. }) => {}
            Some(Message::CaughtUp { .. }) => break,
            other => panic!("expected catch-up, got {other:?}"),
        }
    }
    // The native client: a subscription the token does not grant fails `wait_idle` at once
    // with the hub's reason, instead of waiting out the timeout.
    let client = Client::connect(ClientOptions::new(url.clone(), token("app", &["todos"], &[])));
    client.subscribe(todos());
    client.subscribe(StoreRef::new("app", "stats"));
    match client.wait_idle(WAIT).await {
        Err(tidepool_client::ClientError::Refused(detail)) => assert!(detail.contains("app/stats"), "{detail}"),
        other => panic!("expected the subscription to be refused, got {other:?}"),
    }
    others.still_served().await;
    assert!(dump(&hub.data, "app", "todos").iter().all(|l| l["key"] != "sneaky"));
    assert_eq!(dump(&hub.data, "secret", "plans").len(), 1);
    assert!(hub.metric("tidepool_errors_total{code=\"unauthorized\"}") >= 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_and_idle_limits_close_with_typed_errors() {
    let dir = TestDir::new();
    let hub = dir.start(&["--max-connections", "3", "--idle-timeout", "1s", "--hello-timeout", "1s"]);
    let url = hub.url();
    let token = full_token("app");
    let client = Arc::new(Client::connect(ClientOptions::new(hub.url(), token.clone())));
    client.subscribe(todos());
    client.wait_idle(WAIT).await.expect("idle");

    // A connection that never says hello is closed after the hello timeout.
    let started = std::time::Instant::now();
    let mut silent = raw(&url).await;
    let mut second = authed(&url, &token).await;
    // A socket that keeps reading answers the hub's pings, so it outlives several idle timeouts.
    let reading = tokio::spawn(async move {
        let got = tokio::time::timeout(Duration::from_millis(3000), next(&mut second)).await;
        (got.is_err(), second)
    });
    let mut over = raw(&url).await;
    expect_error(&mut over, ErrorCode::Overloaded).await;
    expect_closed(&mut over).await;
    expect_error(&mut silent, ErrorCode::IdleTimeout).await;
    expect_closed(&mut silent).await;
    assert!(started.elapsed() >= Duration::from_millis(900));

    // So does the native client, which also pings.
    let mut opts = ClientOptions::new(hub.url(), token.clone());
    opts.ping_interval = Duration::from_millis(300);
    let pinging = Arc::new(Client::connect(opts));
    pinging.subscribe(todos());
    let (still_open, _second) = reading.await.expect("join");
    assert!(still_open, "a connection answering pings was closed");
    pinging.put(&todos(), &Key::from("late"), &object! { "v" => 1i64 }).expect("put");
    assert!(converge(std::slice::from_ref(&pinging), &todos(), WAIT).await);
    assert_eq!(pinging.connections(), 1, "the pinging client never had to reconnect");
    assert!(hub.metric("tidepool_errors_total{code=\"overloaded\"}") >= 1.0);
    assert!(hub.metric("tidepool_errors_total{code=\"idle_timeout\"}") >= 1.0);
}

trait AliveCheck {
    fn alive_check(&self) -> bool;
}

impl AliveCheck for HubProcess {
    fn alive_check(&self) -> bool {
        self.get("/healthz") == (200, "ok\n".to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_cut_off_and_nobody_waits_for_it() {
    let dir = TestDir::new();
    let hub = dir.start(&["--max-queue-bytes", "65536"]);
    let token = full_token("app");
    let mut stalled = authed(&hub.url(), &token).await;
    let subscribe = Message::Subscribe { subscriptions: vec![Subscription { store: todos(), since: None }] };
    send(&mut stalled, wire::encode(&subscribe)).await;
    assert!(matches!(next(&mut stalled).await, Some(Message::CaughtUp { .. })));

    // The stalled socket reads nothing while ~9 MB of changes fan out, more than loopback's socket
    // buffers (a few MB while the receiver does not read) plus the 64 KiB queue allowance.
    let writer = Arc::new(Client::connect(ClientOptions::new(hub.url(), token.clone())));
    let watcher = Arc::new(Client::connect(ClientOptions::new(hub.url(), token.clone())));
    watcher.subscribe(todos());
    let filler = "x".repeat(100_000);
    for i in 0..90 {
        let value = object! { "i" => i as i64, "filler" => format!("{i}{filler}") };
        writer.put(&todos(), &Key::Number(i as f64), &value).expect("put");
        if i % 10 == 9 {
            writer.wait_idle(WAIT).await.expect("the writer is never held up by the stalled reader");
        }
    }
    assert!(converge(&[writer.clone(), watcher.clone()], &todos(), WAIT).await);
    assert!(hub.metric("tidepool_errors_total{code=\"overloaded\"}") >= 1.0);

    // Reading now, the stalled client finds the backlog it had, then the reason, then the close.
    let mut reason = None;
    while let Some(message) = next(&mut stalled).await {
        if let Message::Error { code, .. } = message {
            reason = Some(code);
        }
    }
    assert_eq!(reason, Some(ErrorCode::Overloaded));
}
