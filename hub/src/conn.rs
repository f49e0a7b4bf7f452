//! One WebSocket connection: a reader that forwards binary frames to the storage actor and a
//! writer that sends what the actor delivers. Written over `Stream + Sink` of axum messages, so
//! it does not care where the socket comes from.
//!
//! Every close goes through the actor (as a `Disconnect` input), so a client always receives the
//! replies to frames it sent before the close, then the reason, then the close frame, whose
//! status code says what kind of reason it was ([`close_status`]).
//!
//! A connection starts unauthenticated: it holds one of the server's few [`HelloPlace`]s, must
//! say hello within the hello timeout, has one frame at a time in the actor and is not pinged.
//! The actor's [`Out::Authenticated`], sent right after the welcome, gives the place back and
//! switches the connection to the idle timeout, the full in-flight allowance and pings.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, close_code};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tidepool_core::sync::{ConnId, Received};
use tidepool_core::wire::{self, ErrorCode, Limits, Message as WireMessage};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::time::{Instant, Interval};
use tokio_util::sync::CancellationToken;

use crate::actor::{Command, Out, Outbound};
use crate::engine::Input;
use crate::metrics::Metrics;

/// Per-connection limits.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// A connection must be authenticated (hello sent, welcome received) within this long.
    pub hello_timeout: Duration,
    /// An authenticated connection that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout: Duration,
    /// The reader stops reading while more than this many bytes wait to be written to it.
    pub max_queue_bytes: usize,
    /// Frames of one authenticated connection waiting in the actor's queue at once.
    pub max_inflight: usize,
}

/// What a connection task needs from the server.
#[derive(Debug, Clone)]
pub struct ConnContext {
    pub actor: mpsc::Sender<Command>,
    pub metrics: Arc<Metrics>,
    pub limits: ConnLimits,
    /// Core's frame limits (`HubConfig::limits`), for frames decoded here.
    pub wire: Limits,
    pub shutdown: CancellationToken,
}

/// One of the places for connections that have not said hello yet, counted by the
/// `connections_unauthenticated` gauge; given back when the connection is authenticated or ends.
#[derive(Debug)]
pub struct HelloPlace(Arc<Metrics>);

impl HelloPlace {
    /// A place, unless `limit` are taken.
    pub fn take(metrics: &Arc<Metrics>, limit: usize) -> Option<HelloPlace> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let gauge = &metrics.connections_unauthenticated;
        gauge.fetch_update(Relaxed, Relaxed, |n| (n < limit).then_some(n + 1)).ok()?;
        Some(HelloPlace(metrics.clone()))
    }
}

impl Drop for HelloPlace {
    fn drop(&mut self) {
        self.0.connections_unauthenticated.fetch_sub(1, Relaxed);
    }
}

/// The WebSocket close status for a connection ended for `reason` (`None`: nothing went wrong).
///
/// `IdleTimeout` is "going away", like `ShuttingDown`, not a policy violation: nothing the
/// client sent was wrong and reconnecting is the remedy, while 1008 says the client must change
/// something before it tries again.
pub fn close_status(reason: Option<ErrorCode>) -> u16 {
    let Some(code) = reason else { return close_code::NORMAL };
    match code {
        ErrorCode::TooLarge | ErrorCode::TooManyDocs => close_code::SIZE,
        ErrorCode::Overloaded => close_code::AGAIN,
        ErrorCode::IdleTimeout | ErrorCode::ShuttingDown => close_code::AWAY,
        ErrorCode::Internal => close_code::ERROR,
        ErrorCode::Malformed
        | ErrorCode::UnsupportedVersion
        | ErrorCode::Unauthorized
        | ErrorCode::Forbidden
        | ErrorCode::CorruptData
        | ErrorCode::Foreign
        | ErrorCode::ProtocolViolation => close_code::POLICY,
        // Never a reason to close (the peer opens a new export), but a close must have a status.
        ErrorCode::UnknownExport => close_code::NORMAL,
    }
}

/// The close frame's text: fixed per code, so it never carries detail meant for the log.
fn close_reason(reason: Option<ErrorCode>, authenticated: bool) -> &'static str {
    let Some(code) = reason else { return "closed" };
    match code {
        ErrorCode::Malformed => "malformed frame",
        ErrorCode::UnsupportedVersion => "unsupported protocol version",
        ErrorCode::TooLarge => "frame too large",
        ErrorCode::Unauthorized => "unauthorized",
        ErrorCode::Forbidden => "forbidden",
        ErrorCode::CorruptData => "corrupt data",
        ErrorCode::Foreign => "not a Tidepool document",
        ErrorCode::UnknownExport => "unknown export",
        ErrorCode::TooManyDocs => "too many documents",
        ErrorCode::Overloaded => "overloaded; retry later",
        ErrorCode::ProtocolViolation => "protocol violation",
        ErrorCode::IdleTimeout if !authenticated => "no hello in time",
        ErrorCode::IdleTimeout => "idle timeout",
        ErrorCode::ShuttingDown => "shutting down; reconnect later",
        ErrorCode::Internal => "internal error; retry",
    }
}

/// An error frame the shell sends on its own behalf.
pub fn error_message(code: ErrorCode, authenticated: bool) -> Message {
    let detail = match code {
        ErrorCode::IdleTimeout if !authenticated => "no hello within the hello timeout",
        ErrorCode::IdleTimeout => "no frame within the idle timeout",
        ErrorCode::ShuttingDown => "the hub is shutting down; reconnect later",
        ErrorCode::Overloaded => "the hub is overloaded or the connection is too slow",
        ErrorCode::TooLarge => "frame exceeds the size limit",
        ErrorCode::Malformed => "frames must be binary WebSocket messages",
        ErrorCode::ProtocolViolation => "the WebSocket protocol was not followed",
        _ => "connection closed",
    };
    let frame = wire::encode(&WireMessage::Error { code, detail: detail.to_owned(), batch: None });
    Message::Binary(Bytes::from(frame))
}

fn close_message(reason: Option<ErrorCode>, authenticated: bool) -> Message {
    let reason_text = close_reason(reason, authenticated);
    Message::Close(Some(CloseFrame { code: close_status(reason), reason: reason_text.into() }))
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
        let _ = socket.send(error_message(code, false)).await;
        let _ = socket.send(close_message(Some(code), false)).await;
    })
    .await;
}

/// What the reader and the writer of one connection share.
struct Shared {
    /// Bytes waiting to be written (the actor adds, the writer subtracts).
    queued: Arc<AtomicUsize>,
    /// The writer wrote some of them.
    drained: Notify,
    /// Set by the writer on `Out::Authenticated`.
    authenticated: AtomicBool,
    /// Wakes the reader when `authenticated` is set.
    welcomed: Notify,
    /// Either side ended.
    stop: CancellationToken,
}

/// Serves one connection until it closes. `place` is given back when it is authenticated.
/// `first` is a frame already read from the socket (to route the connection), handled first.
pub async fn serve<S>(mut socket: S, ctx: ConnContext, place: HelloPlace, first: Option<Vec<u8>>)
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
    let shared = Shared {
        queued,
        drained: Notify::new(),
        authenticated: AtomicBool::new(false),
        welcomed: Notify::new(),
        stop: CancellationToken::new(),
    };
    let reading = read(stream, conn, &ctx, &shared, first);
    let writing = write(sink, rx, &ctx, &shared, place);
    let (reason, ()) = tokio::join!(
        async {
            let reason = reading.await;
            let disconnect = Command::Input { input: Input::Disconnect { conn, reason }, permit: None };
            if ctx.actor.send(disconnect).await.is_err() {
                // The actor is gone, so nobody will tell the writer to close.
                shared.stop.cancel();
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
    shared: &Shared,
    first: Option<Vec<u8>>,
) -> Option<ErrorCode>
where
    S: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let limits = &ctx.limits;
    // Until the welcome, one frame at a time: a peer nobody knows gets no more of the actor.
    let inflight = Arc::new(Semaphore::new(1));
    if let Some(bytes) = first {
        let permit = inflight.clone().acquire_owned().await.ok()?;
        ctx.metrics.frames_in.fetch_add(1, Relaxed);
        ctx.metrics.bytes_in.fetch_add(bytes.len() as u64, Relaxed);
        let input = Input::Frame { conn, bytes };
        if ctx.actor.send(Command::Input { input, permit: Some(permit) }).await.is_err() {
            return Some(ErrorCode::ShuttingDown);
        }
    }
    let hello_deadline = Instant::now() + limits.hello_timeout;
    let mut authenticated = false;
    loop {
        if !authenticated && shared.authenticated.load(Acquire) {
            authenticated = true;
            inflight.add_permits(limits.max_inflight.saturating_sub(1));
        }
        let permit = tokio::select! {
            permit = inflight.clone().acquire_owned() => permit.ok()?,
            () = shared.welcomed.notified(), if !authenticated => continue,
            () = shared.stop.cancelled() => return None,
            () = ctx.shutdown.cancelled() => return Some(ErrorCode::ShuttingDown),
        };
        // Backpressure: a client that does not read its replies stops being read.
        while shared.queued.load(Relaxed) > limits.max_queue_bytes {
            tokio::select! {
                () = shared.drained.notified() => {}
                () = shared.stop.cancelled() => return None,
                () = ctx.shutdown.cancelled() => return Some(ErrorCode::ShuttingDown),
            }
        }
        // Before the welcome only the hello deadline counts (pongs do not): a connection must
        // say hello. After it, any message restarts the idle deadline.
        let deadline = if authenticated { Instant::now() + limits.idle_timeout } else { hello_deadline };
        let message = tokio::select! {
            m = tokio::time::timeout_at(deadline, stream.next()) => m,
            () = shared.welcomed.notified(), if !authenticated => continue,
            () = shared.stop.cancelled() => return None,
            () = ctx.shutdown.cancelled() => return Some(ErrorCode::ShuttingDown),
        };
        match message {
            Err(_) => return Some(ErrorCode::IdleTimeout),
            Ok(None | Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Err(e))) => return read_error(conn, e),
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                ctx.metrics.frames_in.fetch_add(1, Relaxed);
                ctx.metrics.bytes_in.fetch_add(bytes.len() as u64, Relaxed);
                let input = if authenticated { decoded(conn, &bytes, &ctx.wire) } else { Input::Frame { conn, bytes: Vec::from(bytes) } };
                if ctx.actor.send(Command::Input { input, permit: Some(permit) }).await.is_err() {
                    return Some(ErrorCode::ShuttingDown);
                }
            }
            Ok(Some(Ok(Message::Text(_)))) => return Some(ErrorCode::Malformed),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
        }
    }
}

/// A known peer's frame, decoded and its pushed payloads parsed here, on the connection's task,
/// rather than on the storage thread every connection waits for. Before the welcome the actor
/// decodes (one frame at a time, and a push is refused unread). Should a parser panic, the frame
/// goes to the actor as it came, where a panic costs the batch and not the connection's task.
fn decoded(conn: ConnId, bytes: &Bytes, limits: &Limits) -> Input {
    let decode = || {
        let mut frame = Received::decode(bytes, limits);
        frame.check_payloads();
        frame
    };
    match std::panic::catch_unwind(decode) {
        Ok(frame) => Input::Decoded { conn, frame: Box::new(frame) },
        Err(_) => Input::Frame { conn, bytes: Vec::from(bytes.clone()) },
    }
}

/// A message over the WebSocket size limit, or one that breaks the WebSocket protocol, surfaces
/// as a read error; say which before closing (the particulars go to the log only).
fn read_error(conn: ConnId, error: axum::Error) -> Option<ErrorCode> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let inner = error.into_inner();
    match inner.downcast_ref::<WsError>() {
        Some(WsError::Capacity(e)) => {
            tracing::info!(conn, error = %e, "oversize message");
            Some(ErrorCode::TooLarge)
        }
        Some(WsError::Protocol(e)) => {
            tracing::info!(conn, error = %e, "WebSocket protocol violation");
            Some(ErrorCode::ProtocolViolation)
        }
        Some(WsError::Utf8(e)) => {
            tracing::info!(conn, error = %e, "text that is not UTF-8");
            Some(ErrorCode::Malformed)
        }
        _ => {
            tracing::debug!(conn, error = %inner, "read failed");
            None
        }
    }
}

/// Waits for the next ping, forever while there is no interval.
async fn ping_due(ping: &mut Option<Interval>) {
    match ping {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn write<S>(
    mut sink: S,
    mut rx: mpsc::UnboundedReceiver<Out>,
    ctx: &ConnContext,
    shared: &Shared,
    place: HelloPlace,
) where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    let limits = &ctx.limits;
    let mut place = Some(place);
    // A peer that does not take what is written within its deadline is gone.
    let mut timeout = limits.hello_timeout;
    // Only authenticated connections are pinged: before the welcome, pongs do not count anyway.
    let mut ping = None;
    'outer: loop {
        let next = tokio::select! {
            out = rx.recv() => out,
            () = ping_due(&mut ping) => {
                match tokio::time::timeout(timeout, sink.send(Message::Ping(Bytes::new()))).await {
                    Ok(Ok(())) => continue,
                    _ => break,
                }
            }
            () = shared.stop.cancelled() => break,
        };
        let mut next = next;
        // Feed everything already waiting, then flush once: fan-out bursts cost one write.
        loop {
            match next {
                None => break 'outer,
                Some(Out::Frame(frame)) => {
                    let len = frame.len();
                    let fed = tokio::time::timeout(timeout, sink.feed(Message::Binary(Bytes::from_owner(SharedFrame(frame))))).await;
                    shared.queued.fetch_sub(len, Relaxed);
                    shared.drained.notify_one();
                    if !matches!(fed, Ok(Ok(()))) {
                        break 'outer;
                    }
                    ctx.metrics.frames_out.fetch_add(1, Relaxed);
                    ctx.metrics.bytes_out.fetch_add(len as u64, Relaxed);
                }
                Some(Out::Authenticated) => {
                    place = None;
                    timeout = limits.idle_timeout;
                    shared.authenticated.store(true, Release);
                    shared.welcomed.notify_one();
                    // Three pings per idle period: a peer that answers any of them stays connected.
                    let period = (limits.idle_timeout / 3).max(Duration::from_millis(10));
                    ping = Some(tokio::time::interval_at(Instant::now() + period, period));
                }
                Some(Out::Close { reason, told }) => {
                    let authenticated = place.is_none();
                    let _ = tokio::time::timeout(timeout, async {
                        if let Some(code) = reason.filter(|_| !told) {
                            let _ = sink.feed(error_message(code, authenticated)).await;
                        }
                        let _ = sink.send(close_message(reason, authenticated)).await;
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
    shared.stop.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ERROR_CODES;

    #[test]
    fn every_reason_has_its_close_status_and_a_short_fixed_text() {
        let status = |code| close_status(Some(code));
        assert_eq!(close_status(None), 1000);
        for code in [ErrorCode::Unauthorized, ErrorCode::Forbidden, ErrorCode::ProtocolViolation, ErrorCode::Malformed] {
            assert_eq!(status(code), 1008, "{code:?}");
        }
        assert_eq!(status(ErrorCode::TooLarge), 1009);
        assert_eq!(status(ErrorCode::Overloaded), 1013);
        assert_eq!(status(ErrorCode::ShuttingDown), 1001);
        assert_eq!(status(ErrorCode::IdleTimeout), 1001);
        for code in ERROR_CODES {
            for authenticated in [false, true] {
                // A close frame's reason must fit its 125-byte control frame with the code.
                let text = close_reason(Some(code), authenticated);
                assert!(!text.is_empty() && text.len() <= 123, "{code:?}: {text}");
            }
        }
    }

    #[test]
    fn unauthenticated_places_are_limited_and_given_back() {
        let metrics = Arc::new(Metrics::default());
        let first = HelloPlace::take(&metrics, 2).expect("a place");
        let second = HelloPlace::take(&metrics, 2).expect("a place");
        assert!(HelloPlace::take(&metrics, 2).is_none());
        drop(first);
        let third = HelloPlace::take(&metrics, 2).expect("a place given back");
        assert_eq!(metrics.connections_unauthenticated.load(Relaxed), 2);
        drop((second, third));
        assert_eq!(metrics.connections_unauthenticated.load(Relaxed), 0);
    }
}
