//! One WebSocket connection: a reader that forwards binary frames to the storage actor and a
//! writer that sends what the actor delivers. Written over `Stream + Sink` of axum messages, so
//! it does not care where the socket comes from.
//!
//! Every close goes through the actor (as a `Disconnect` input), so a client always receives the
//! replies to frames it sent before the close, then the reason, then the close frame.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::Message;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tidepool_core::sync::ConnId;
use tidepool_core::wire::{self, ErrorCode, Message as WireMessage};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::actor::{Command, Out, Outbound};
use crate::engine::Input;
use crate::metrics::Metrics;

/// Per-connection limits.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// A connection that sends nothing (not even a pong) for this long is closed; so is one
    /// whose first frame does not arrive within it.
    pub idle_timeout: Duration,
    /// The reader stops reading while more than this many bytes wait to be written to it.
    pub max_queue_bytes: usize,
    /// Frames of one connection waiting in the actor's queue at once.
    pub max_inflight: usize,
}

/// What a connection task needs from the server.
#[derive(Debug, Clone)]
pub struct ConnContext {
    pub actor: mpsc::Sender<Command>,
    pub metrics: Arc<Metrics>,
    pub limits: ConnLimits,
    pub shutdown: CancellationToken,
}

/// An error frame the shell sends on its own behalf.
pub fn error_message(code: ErrorCode) -> Message {
    let detail = match code {
        ErrorCode::IdleTimeout => "no frame within the idle timeout",
        ErrorCode::ShuttingDown => "the hub is shutting down; reconnect later",
        ErrorCode::Overloaded => "the hub is overloaded or the connection is too slow",
        ErrorCode::TooLarge => "frame exceeds the size limit",
        ErrorCode::Malformed => "frames must be binary WebSocket messages",
        _ => "connection closed",
    };
    let frame = wire::encode(&WireMessage::Error { code, detail: detail.to_owned(), batch: None });
    Message::Binary(Bytes::from(frame))
}

/// Shares one encoded fan-out frame among every receiving socket without copying it.
struct SharedFrame(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedFrame {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// Sends `code` and a close frame, for connections refused before they reach the actor.
pub async fn refuse<S>(socket: &mut S, code: ErrorCode)
where
    S: Sink<Message> + Unpin,
{
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = socket.send(error_message(code)).await;
        let _ = socket.send(Message::Close(None)).await;
    })
    .await;
}

/// Serves one connection until it closes.
pub async fn serve<S>(mut socket: S, ctx: ConnContext)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let (reply, conn) = oneshot::channel();
    let out = Outbound { tx, queued: queued.clone() };
    let registered = ctx.actor.send(Command::Connect { out, reply }).await.is_ok();
    let Some(conn) = (if registered { conn.await.ok() } else { None }) else {
        refuse(&mut socket, ErrorCode::ShuttingDown).await;
        return;
    };
    tracing::debug!(conn, "connected");
    let (sink, stream) = socket.split();
    let drained = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let reading = read(stream, conn, &ctx, &queued, &drained, &stop);
    let writing = write(sink, rx, &ctx, &queued, &drained, &stop);
    let (reason, ()) = tokio::join!(
        async {
            let reason = reading.await;
            let disconnect = Command::Input { input: Input::Disconnect { conn, reason }, permit: None };
            if ctx.actor.send(disconnect).await.is_err() {
                // The actor is gone, so nobody will tell the writer to close.
                stop.cancel();
            }
            reason
        },
        writing
    );
    tracing::debug!(conn, ?reason, "disconnected");
}

async fn read<S>(
    mut stream: S,
    conn: ConnId,
    ctx: &ConnContext,
    queued: &AtomicUsize,
    drained: &Notify,
    stop: &CancellationToken,
) -> Option<ErrorCode>
where
    S: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let limits = &ctx.limits;
    let inflight = Arc::new(Semaphore::new(limits.max_inflight.max(1)));
    let hello_deadline = Instant::now() + limits.idle_timeout;
    let mut heard = false;
    loop {
        let permit = tokio::select! {
            permit = inflight.clone().acquire_owned() => permit.ok()?,
            () = stop.cancelled() => return None,
            () = ctx.shutdown.cancelled() => return Some(ErrorCode::ShuttingDown),
        };
        // Backpressure: a client that does not read its replies stops being read.
        while queued.load(Relaxed) > limits.max_queue_bytes {
            tokio::select! {
                () = drained.notified() => {}
                () = stop.cancelled() => return None,
                () = ctx.shutdown.cancelled() => return Some(ErrorCode::ShuttingDown),
            }
        }
        // Until the first frame arrives, pongs do not count: a connection must say hello.
        let deadline = if heard { Instant::now() + limits.idle_timeout } else { hello_deadline };
        let message = tokio::select! {
            m = tokio::time::timeout_at(deadline, stream.next()) => m,
            () = stop.cancelled() => return None,
            () = ctx.shutdown.cancelled() => return Some(ErrorCode::ShuttingDown),
        };
        match message {
            Err(_) => return Some(ErrorCode::IdleTimeout),
            Ok(None | Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Err(e))) => return read_error(conn, e),
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                heard = true;
                ctx.metrics.frames_in.fetch_add(1, Relaxed);
                ctx.metrics.bytes_in.fetch_add(bytes.len() as u64, Relaxed);
                let input = Input::Frame { conn, bytes: Vec::from(bytes) };
                if ctx.actor.send(Command::Input { input, permit: Some(permit) }).await.is_err() {
                    return Some(ErrorCode::ShuttingDown);
                }
            }
            Ok(Some(Ok(Message::Text(_)))) => return Some(ErrorCode::Malformed),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
        }
    }
}

/// A message over the WebSocket size limit surfaces as a read error; say so before closing.
fn read_error(conn: ConnId, error: axum::Error) -> Option<ErrorCode> {
    let inner = error.into_inner();
    match inner.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
        Some(tokio_tungstenite::tungstenite::Error::Capacity(e)) => {
            tracing::info!(conn, error = %e, "oversize message");
            Some(ErrorCode::TooLarge)
        }
        _ => {
            tracing::debug!(conn, error = %inner, "read failed");
            None
        }
    }
}

async fn write<S>(
    mut sink: S,
    mut rx: mpsc::UnboundedReceiver<Out>,
    ctx: &ConnContext,
    queued: &AtomicUsize,
    drained: &Notify,
    stop: &CancellationToken,
) where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    let timeout = ctx.limits.idle_timeout;
    // Three pings per idle period: a peer that answers any of them stays connected.
    let mut ping = tokio::time::interval((timeout / 3).max(std::time::Duration::from_millis(10)));
    ping.reset();
    'outer: loop {
        let next = tokio::select! {
            out = rx.recv() => out,
            _ = ping.tick() => {
                match tokio::time::timeout(timeout, sink.send(Message::Ping(Bytes::new()))).await {
                    Ok(Ok(())) => continue,
                    _ => break,
                }
            }
            () = stop.cancelled() => break,
        };
        let mut next = next;
        // Feed everything already waiting, then flush once: fan-out bursts cost one write.
        loop {
            match next {
                None => break 'outer,
                Some(Out::Frame(frame)) => {
                    let len = frame.len();
                    let fed = tokio::time::timeout(timeout, sink.feed(Message::Binary(Bytes::from_owner(SharedFrame(frame))))).await;
                    queued.fetch_sub(len, Relaxed);
                    drained.notify_one();
                    if !matches!(fed, Ok(Ok(()))) {
                        break 'outer;
                    }
                    ctx.metrics.frames_out.fetch_add(1, Relaxed);
                    ctx.metrics.bytes_out.fetch_add(len as u64, Relaxed);
                }
                Some(Out::Close { reason, told }) => {
                    let _ = tokio::time::timeout(timeout, async {
                        if let (Some(code), false) = (reason, told) {
                            let _ = sink.feed(error_message(code)).await;
                        }
                        let _ = sink.send(Message::Close(None)).await;
                    })
                    .await;
                    break 'outer;
                }
            }
            next = match rx.try_recv() {
                Ok(out) => Some(out),
                Err(_) => break,
            };
        }
        if !matches!(tokio::time::timeout(timeout, sink.flush()).await, Ok(Ok(()))) {
            break;
        }
    }
    stop.cancel();
}
