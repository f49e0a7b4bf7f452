//! The background task: connects, runs a session (the only sender on the socket), backs off with
//! jitter, and connects again, for as long as the client is online. A failed attempt is kept,
//! classified, in the shared state, so a wait for the connection can say why it is not coming.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tidepool_core::sync::ClientEvent;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

use crate::change::{RemoteChange, StoreMoved};
use crate::error::{ClientError, ConnectCause, ConnectError};
use crate::export::{ExportPage, hub_error};
use crate::state::Shared;

/// How long a session must last to count as healthy for the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(2);

/// Connects, runs a session, backs off, and again, for as long as the client is online.
pub(crate) async fn run(shared: Arc<Shared>) {
    let options = shared.options.clone();
    let mut online = shared.online.subscribe();
    let mut backoff = options.min_backoff;
    loop {
        while !*online.borrow_and_update() {
            if online.changed().await.is_err() {
                return;
            }
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(options.max_frame + 1024))
            .max_frame_size(Some(options.max_frame + 1024));
        let started = Instant::now();
        let attempt = match tokio::time::timeout(options.connect_timeout, connect(&options.url, config)).await {
            Ok(attempt) => attempt,
            Err(_) => Err(ConnectCause::Timeout(options.connect_timeout)),
        };
        match attempt {
            Ok(ws) => {
                shared.lock().last_connect_error = None;
                // Only a session that lasted resets the backoff: one the hub ends at once (e.g.
                // refusing the same frame again and again) must not turn into a reconnect storm.
                if session(&shared, ws, &mut online).await && started.elapsed() >= STABLE_SESSION {
                    backoff = options.min_backoff;
                }
            }
            Err(cause) => {
                tracing::debug!(url = %options.url, error = %cause, "connect failed");
                {
                    let mut st = shared.lock();
                    let attempts = st.last_connect_error.as_ref().map_or(0, |e| e.attempts) + 1;
                    st.last_connect_error = Some(ConnectError { url: options.url.clone(), cause, attempts });
                }
                shared.bump();
            }
        }
        // Jitter keeps a crowd of clients from reconnecting to a restarted hub in lockstep.
        let pause = rand::rng().random_range(backoff / 2..=backoff);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = online.changed() => {}
        }
        backoff = (backoff * 2).min(options.max_backoff);
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One connection attempt, step by step (URL, name lookup, TCP, WebSocket handshake), so a
/// failure says which step failed.
async fn connect(url: &str, config: WebSocketConfig) -> Result<Socket, ConnectCause> {
    let request = url.into_client_request().map_err(|e| ConnectCause::BadUrl(e.to_string()))?;
    let uri = request.uri();
    let scheme = uri.scheme_str().unwrap_or_default().to_owned();
    if scheme != "ws" {
        // This build has no TLS: wss:// is as unusable as http:// (the handshake would say so
        // less clearly).
        return Err(ConnectCause::BadScheme(scheme));
    }
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| ConnectCause::BadUrl("no host".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| ConnectCause::Dns { host: host.clone(), detail: e.to_string() })?
        .collect();
    if addrs.is_empty() {
        return Err(ConnectCause::Dns { host, detail: "no addresses".into() });
    }
    let socket = tokio::net::TcpStream::connect(&addrs[..]).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => ConnectCause::Refused,
        _ => ConnectCause::Io(e.to_string()),
    })?;
    // Frames are small and latency matters more than packet count.
    let _ = socket.set_nodelay(true);
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(socket);
    match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(response)) => Err(ConnectCause::HttpStatus {
            status: response.status().as_u16(),
            reason: response.status().canonical_reason().unwrap_or_default().to_owned(),
        }),
        Err(WsError::Tls(e)) => Err(ConnectCause::Tls(e.to_string())),
        Err(WsError::Url(e)) => Err(ConnectCause::BadUrl(e.to_string())),
        Err(WsError::Io(e)) => Err(ConnectCause::Io(e.to_string())),
        Err(e) => Err(ConnectCause::NotWebSocket(e.to_string())),
    }
}

/// One connection's life. Returns whether the hub answered at all (then backoff starts over).
async fn session(shared: &Shared, ws: Socket, online: &mut watch::Receiver<bool>) -> bool {
    let (mut sink, mut stream) = ws.split();
    let frames = {
        let mut st = shared.lock();
        st.connected = true;
        st.connections += 1;
        st.engine.connected();
        st.engine.take_output().frames
    };
    shared.bump();
    let mut heard = false;
    let mut ping = tokio::time::interval(shared.options.ping_interval);
    ping.reset();
    let mut ok = send_all(&mut sink, frames).await;
    while ok {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(WsMessage::Binary(frame))) => {
                    heard = true;
                    match handle_frame(shared, &frame) {
                        Some(frames) => ok = send_all(&mut sink, frames).await,
                        None => ok = false,
                    }
                    shared.bump();
                }
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => ok = false,
                Some(Ok(_)) => {}
            },
            () = shared.kick.notified() => {
                let frames = shared.lock().engine.take_output().frames;
                ok = send_all(&mut sink, frames).await;
            }
            _ = ping.tick() => ok = sink.send(WsMessage::Ping(Default::default())).await.is_ok(),
            changed = online.changed() => {
                if changed.is_err() || !*online.borrow() {
                    let _ = sink.send(WsMessage::Close(None)).await;
                    ok = false;
                }
            }
        }
    }
    {
        let mut st = shared.lock();
        st.engine.disconnected();
        st.connected = false;
        st.replies.fail(|| ClientError::Disconnected);
    }
    shared.bump();
    heard
}

async fn send_all<S>(sink: &mut S, frames: Vec<Vec<u8>>) -> bool
where
    S: futures_util::Sink<WsMessage> + Unpin,
{
    for frame in frames {
        if sink.feed(WsMessage::Binary(frame.into())).await.is_err() {
            return false;
        }
    }
    sink.flush().await.is_ok()
}

/// Applies a frame from the hub; returns the frames to send back, or `None` if the frame was
/// unusable (the connection is then dropped and re-established).
fn handle_frame(shared: &Shared, frame: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut guard = shared.lock();
    let st = &mut *guard;
    if let Err(e) = st.engine.receive(frame, &mut st.docs) {
        tracing::warn!(error = %e, "unusable frame from the hub; reconnecting");
        // Requests waiting for an answer learn why it will not come, not just that it did not.
        let why = e.to_string();
        st.replies.fail(|| ClientError::Unusable(why.clone()));
        return None;
    }
    let output = st.engine.take_output();
    let mut events = output.events;
    let frames = output.frames;
    // Export pages and fetched documents go to the request waiting for them.
    events.retain_mut(|event| match event {
        ClientEvent::ExportPage { store, export, cut, records, last } => {
            let page = ExportPage { export: *export, cut: *cut, records: std::mem::take(records), last: *last };
            st.replies.page(store, page);
            false
        }
        ClientEvent::Fetched { request, docs, tips, last, .. } => {
            st.replies.fetched(*request, std::mem::take(docs), std::mem::take(tips), *last);
            false
        }
        ClientEvent::HubError { code, detail } if st.replies.is_waiting() => {
            let (code, detail) = (*code, detail.clone());
            st.replies.fail(|| hub_error(code, &detail));
            true
        }
        _ => true,
    });
    let listening = shared.events.receiver_count() > 0;
    let at = Instant::now();
    let mut events = events.iter().peekable();
    while let Some(event) = events.next() {
        match event {
            ClientEvent::Acked { ids } => {
                // The engine reports a refused push as "acked" followed by the hub's error.
                let refused = match events.peek() {
                    Some(ClientEvent::HubError { code, detail }) => Some((*code, detail.clone())),
                    _ => None,
                };
                for id in ids {
                    st.pending.remove(id);
                    if let Some(why) = &refused {
                        st.refused.insert(*id, why.clone());
                    }
                }
            }
            ClientEvent::HubError { code, detail } => {
                tracing::debug!(?code, %detail, "the hub reported an error");
                st.last_error = Some((*code, detail.clone()));
            }
            ClientEvent::Moved { store, cursor } => {
                let _ = shared.moves.send(StoreMoved { store: store.clone(), cursor: *cursor });
            }
            ClientEvent::RemoteChanged { store, doc, key } if listening => {
                let value = if st.docs.is_lazy() {
                    None
                } else {
                    st.docs.peek(store, doc).and_then(|r| r.get_plain().ok().flatten())
                };
                let changes = st.docs.take_arrived(doc);
                let _ = shared.events.send(RemoteChange { store: store.clone(), key: key.clone(), value, changes, at });
            }
            _ => {}
        }
    }
    st.docs.frame_done();
    Some(frames)
}
