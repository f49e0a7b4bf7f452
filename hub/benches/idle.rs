//! Memory of idle connections: starts the real `tidepool-hub` binary, opens `IDLE_CONNS`
//! WebSocket connections that never say hello and reads the hub's RSS before and after; then
//! the same on a fresh hub for connections that said hello and got a welcome. Prints KiB per
//! connection for both, and one JSON line on stdout.
//!
//! `make bench-hub-idle` (through `hub/bench/idle.sh`, which raises `ulimit -n`). Knobs
//! (environment): `IDLE_CONNS` (default 2,000), `HUB_BIN` (another `tidepool-hub` binary, e.g.
//! an older build, to compare; flags it does not know are not passed).
//!
//! RSS is the kernel's count of resident pages, so the figure includes everything a connection
//! makes the hub touch: socket buffers in user space, tasks, channels, per-connection state.
//! A warm-up before the baseline takes one-off costs (lazy statics, allocator arenas) out of it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use tidepool_core::wire::{self, Limits, Message, PeerId};
use tidepool_hub::auth::{self, Claims};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const SECRET: &str = "idle-bench-secret-0123456789abcdef0123456789";
/// Connections opened at once: enough to be quick, few enough that the hub's transient
/// per-handshake buffers do not pile up and count as if they were kept.
const WAVE: usize = 50;
/// Long enough that no deadline or ping fires while measuring.
const QUIET: &str = "3600s";

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

fn status_kib(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

struct Hub {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hub {
    fn start(bin: &Path, conns: usize) -> Result<Hub> {
        let help = Command::new(bin).args(["serve", "--help"]).output().context("running the hub")?;
        let help = String::from_utf8_lossy(&help.stdout);
        let dir = tempfile::tempdir()?;
        let secret = dir.path().join("secret");
        std::fs::write(&secret, SECRET)?;
        let mut args: Vec<String> = ["serve", "--listen", "127.0.0.1:0", "--idle-timeout", QUIET]
            .into_iter()
            .map(String::from)
            .collect();
        args.extend(["--data".into(), dir.path().join("data").display().to_string()]);
        args.extend(["--secret-file".into(), secret.display().to_string()]);
        args.extend(["--max-connections".into(), (conns + 100).to_string()]);
        // Newer hubs have their own limits for connections that have not said hello.
        if help.contains("--max-unauthenticated") {
            args.extend(["--max-unauthenticated".into(), (conns + 100).to_string()]);
        }
        if help.contains("--hello-timeout") {
            args.extend(["--hello-timeout".into(), QUIET.into()]);
        }
        let mut child = Command::new(bin)
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("hub stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(line) => {
                    if let Some(addr) = line?.strip_prefix("listening on ") {
                        break addr.trim().parse()?;
                    }
                }
                None => bail!("the hub exited before listening"),
            }
        };
        Ok(Hub { child, addr, _dir: dir })
    }

    fn url(&self) -> String {
        format!("ws://{}/v1/sync", self.addr)
    }

    fn rss_kib(&self) -> Result<f64> {
        status_kib(self.child.id(), "VmRSS:")
    }

    /// The hub's own count of open connections.
    async fn connections(&self) -> Result<usize> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr);
        tcp.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        tcp.read_to_string(&mut response).await?;
        response
            .lines()
            .find_map(|l| l.strip_prefix("tidepool_connections ")?.trim().parse().ok())
            .context("no tidepool_connections in /metrics")
    }

    async fn wait_for_connections(&self, n: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.connections().await? != n {
            if Instant::now() > deadline {
                bail!("the hub did not reach {n} connections");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

fn token() -> Result<String> {
    let claims = Claims::new("bench", "bench", &["*".into()], &["*".into()], auth::now_secs(), Duration::from_secs(86_400));
    Ok(auth::mint(SECRET.as_bytes(), &claims)?)
}

async fn open(url: &str, token: Option<&str>) -> Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    if let Some(token) = token {
        let hello = Message::Hello { peer: PeerId(rand::random()), token: token.into(), agent: "idle-bench".into() };
        ws.send(WsMessage::Binary(wire::encode(&hello).into())).await?;
        let limits = Limits { max_frame: usize::MAX, max_docs: usize::MAX };
        match ws.next().await {
            Some(Ok(WsMessage::Binary(b))) if matches!(wire::decode(&b, &limits), Ok(Message::Welcome { .. })) => {}
            other => bail!("expected a welcome, got {other:?}"),
        }
    }
    Ok(ws)
}

async fn open_many(url: &str, n: usize, token: Option<&str>) -> Result<Vec<Ws>> {
    let mut all = Vec::with_capacity(n);
    while all.len() < n {
        let wave = WAVE.min(n - all.len());
        let opened = futures_util::future::join_all((0..wave).map(|_| open(url, token))).await;
        for ws in opened {
            all.push(ws?);
        }
    }
    Ok(all)
}

/// RSS growth per connection for `n` connections of one kind, on a fresh hub.
async fn measure(bin: &Path, n: usize, token: Option<&str>) -> Result<(f64, f64, f64)> {
    let hub = Hub::start(bin, n)?;
    let url = hub.url();
    // Warm-up: the first connections of either kind pay for one-off allocations.
    for _ in 0..3 {
        let warm = open_many(&url, WAVE, token).await?;
        drop(warm);
        hub.wait_for_connections(0).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = hub.rss_kib()?;
    let conns = open_many(&url, n, token).await?;
    hub.wait_for_connections(n).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = hub.rss_kib()?;
    drop(conns);
    Ok((before, after, (after - before) / n as f64))
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; this harness takes no arguments.
    let n = env("IDLE_CONNS", 2000).max(1);
    let bin = std::env::var_os("HUB_BIN").map_or_else(|| env!("CARGO_BIN_EXE_tidepool-hub").into(), std::path::PathBuf::from);
    if let Some(limit) = open_files_limit()
        && limit < n + 200
    {
        bail!("`ulimit -n` is {limit}; {n} connections need more (hub/bench/idle.sh raises it)");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let token = token()?;
    let (hello_before, hello_after, hello_per) = runtime.block_on(measure(&bin, n, None))?;
    eprintln!(
        "{n} connections without hello: VmRSS {hello_before:.0} -> {hello_after:.0} KiB, {hello_per:.1} KiB per connection"
    );
    let (auth_before, auth_after, auth_per) = runtime.block_on(measure(&bin, n, Some(&token)))?;
    eprintln!(
        "{n} authenticated idle connections: VmRSS {auth_before:.0} -> {auth_after:.0} KiB, {auth_per:.1} KiB per connection"
    );
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let report = serde_json::json!({
        "hub": bin.display().to_string(),
        "connections": n,
        "unauthenticated_kib_per_conn": round(hello_per),
        "authenticated_kib_per_conn": round(auth_per),
        "unauthenticated_rss_kib": [hello_before, hello_after],
        "authenticated_rss_kib": [auth_before, auth_after],
    });
    println!("{report}");
    Ok(())
}
