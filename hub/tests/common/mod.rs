//! Shared helpers for the hub's integration tests: the real `tidepool-hub` binary on
//! 127.0.0.1:0, tokens, `dump`, raw WebSocket connections and plain HTTP GETs.
#![allow(dead_code)]

pub mod pg;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tidepool_core::automerge::ActorId;
use tidepool_core::wire::{self, ErrorCode, Limits, Message};
use tidepool_core::{DocId, Key, Record, StoreRef, Value};
use tidepool_hub::auth::{self, Claims};
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub const BIN: &str = env!("CARGO_BIN_EXE_tidepool-hub");
pub const SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";

/// A running hub process, killed when dropped.
#[derive(Debug)]
pub struct HubProcess {
    child: Child,
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub log: PathBuf,
}

/// A data directory with a secret file, removed when dropped.
#[derive(Debug)]
pub struct TestDir {
    pub dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("test-secret"), SECRET).expect("secret");
        TestDir { dir }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn secret(&self) -> PathBuf {
        self.dir.path().join("test-secret")
    }

    /// Starts a hub on this directory, authenticating with the test secret.
    pub fn start(&self, extra: &[&str]) -> HubProcess {
        let secret = self.secret();
        let mut args = vec!["--secret-file", secret.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        HubProcess::start(&self.data(), &args)
    }
}

impl HubProcess {
    /// Starts `tidepool-hub serve` and waits for its "listening on" line.
    pub fn start(data: &Path, extra: &[&str]) -> HubProcess {
        let log = data.with_extension(format!("log-{}", rand_suffix()));
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut args = vec!["serve", "--data", data.to_str().expect("utf-8 path")];
        if !extra.contains(&"--listen") {
            args.extend_from_slice(&["--listen", "127.0.0.1:0"]);
        }
        args.extend_from_slice(extra);
        let mut child = Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn tidepool-hub");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().expect("address"),
            Err(_) => {
                let _ = child.kill();
                panic!("hub did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
        };
        HubProcess { child, addr, data: data.to_owned(), log }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/v1/sync", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "hub did not exit after SIGTERM: {}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A plain HTTP GET: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path)
    }

    /// A counter or gauge from `/metrics` (0 if absent).
    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> String {
    format!("{:x}", rand::random::<u64>())
}

pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// A token signed with the test secret granting `read` and `write` on `db`.
pub fn token(db: &str, read: &[&str], write: &[&str]) -> String {
    token_with(db, read, write, auth::now_secs(), Duration::from_secs(3600))
}

pub fn token_with(db: &str, read: &[&str], write: &[&str], iat: u64, ttl: Duration) -> String {
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let claims = Claims::new("tester", db, &own(read), &own(write), iat, ttl);
    auth::mint(SECRET.as_bytes(), &claims).expect("mint")
}

pub fn full_token(db: &str) -> String {
    token(db, &["*"], &["*"])
}

/// Runs `tidepool-hub dump` and parses its JSON Lines.
pub fn dump(data: &Path, db: &str, store: &str) -> Vec<serde_json::Value> {
    let out = Command::new(BIN)
        .args(["dump", "--data", data.to_str().expect("utf-8"), "--db", db, "--store", store])
        .output()
        .expect("run dump");
    assert!(out.status.success(), "dump failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw WebSocket to the hub, for sending what no well-behaved client would.
pub async fn raw(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.expect("connect").0
}

pub async fn send(ws: &mut Ws, frame: Vec<u8>) {
    ws.send(WsMessage::Binary(frame.into())).await.expect("send");
}

pub fn hello(token: &str) -> Vec<u8> {
    wire::encode(&Message::Hello { peer: wire::PeerId(rand::random()), token: token.into(), agent: "test".into() })
}

/// What the hub said next: a decoded frame, or `None` once the connection is closed.
pub async fn next(ws: &mut Ws) -> Option<Message> {
    let deadline = Duration::from_secs(10);
    loop {
        match tokio::time::timeout(deadline, ws.next()).await.expect("the hub answers within 10s") {
            Some(Ok(WsMessage::Binary(b))) => {
                return Some(wire::decode(&b, &Limits { max_frame: usize::MAX, max_docs: usize::MAX }).expect("hub frames decode"));
            }
            Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Says hello and expects a welcome.
pub async fn authed(url: &str, token: &str) -> Ws {
    let mut ws = raw(url).await;
    send(&mut ws, hello(token)).await;
    assert!(matches!(next(&mut ws).await, Some(Message::Welcome { .. })));
    ws
}

/// Expects an error frame with `code`; returns its batch.
pub async fn expect_error(ws: &mut Ws, code: ErrorCode) -> Option<u64> {
    match next(ws).await {
        Some(Message::Error { code: got, batch, detail }) => {
            assert_eq!(got, code, "detail: {detail}");
            batch
        }
        other => panic!("expected error {code:?}, got {other:?}"),
    }
}

pub async fn expect_closed(ws: &mut Ws) {
    let got = next(ws).await;
    assert!(got.is_none(), "expected the hub to close, got {got:?}");
}

/// A valid change creating `key` with `value`, as a client would push it.
pub fn change(store: &StoreRef, key: &str, value: &Value) -> (DocId, Vec<u8>, Vec<u8>) {
    let mut record = Record::new(store, &Key::from(key), &ActorId::from(rand::random::<[u8; 16]>())).expect("record");
    let change = record.put(value, 0).expect("put").expect("a change");
    (record.id(), record.encoded_key().to_vec(), change.bytes)
}

/// How a connection ended, as the client saw it.
#[derive(Debug)]
pub struct Ending {
    /// Frames received on the way (error frames among them).
    pub messages: Vec<Message>,
    /// The close frame's status code and reason; `None` if the connection ended without one.
    pub close: Option<(u16, String)>,
}

impl Ending {
    /// The code and detail of the last error frame.
    pub fn error(&self) -> Option<(ErrorCode, &str)> {
        self.messages.iter().rev().find_map(|m| match m {
            Message::Error { code, detail, .. } => Some((*code, detail.as_str())),
            _ => None,
        })
    }

    pub fn close_code(&self) -> Option<u16> {
        self.close.as_ref().map(|(code, _)| *code)
    }
}

/// Reads until the hub closes the connection (at most `wait`), keeping what it said.
pub async fn ending(ws: &mut Ws, wait: Duration) -> Ending {
    let limits = Limits { max_frame: usize::MAX, max_docs: usize::MAX };
    let mut messages = Vec::new();
    loop {
        match tokio::time::timeout(wait, ws.next()).await.expect("the hub closes in time") {
            Some(Ok(WsMessage::Binary(b))) => messages.push(wire::decode(&b, &limits).expect("hub frames decode")),
            Some(Ok(WsMessage::Close(frame))) => {
                let close = frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
                return Ending { messages, close };
            }
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return Ending { messages, close: None },
        }
    }
}
