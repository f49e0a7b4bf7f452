//! The background task: connects, runs a session (the only sender on the socket), backs off with
//! jitter, and connects again, for as long as the client is online.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tidepool_core::sync::ClientEvent;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::change::RemoteChange;
use crate::error::ClientError;
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
        let connecting = tokio_tungstenite::connect_async_with_config(options.url.as_str(), Some(config), true);
        let started = Instant::now();
        match tokio::time::timeout(options.connect_timeout, connecting).await {
            Ok(Ok((ws, _))) => {
                // Only a session that lasted resets the backoff: one the hub ends at once (e.g.
                // refusing the same frame again and again) must not turn into a reconnect storm.
                if session(&shared, ws, &mut online).await && started.elapsed() >= STABLE_SESSION {
                    backoff = options.min_backoff;
                }
            }
            Ok(Err(e)) => tracing::debug!(url = %options.url, error = %e, "connect failed"),
            Err(_) => tracing::debug!(url = %options.url, "connect timed out"),
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
        ClientEvent::Fetched { request, docs, last, .. } => {
            st.replies.fetched(*request, std::mem::take(docs), *last);
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
                let refused = matches!(events.peek(), Some(ClientEvent::HubError { .. }));
                for id in ids {
                    st.pending.remove(id);
                    if refused {
                        st.refused.insert(*id);
                    }
                }
            }
            ClientEvent::HubError { code, detail } => {
                tracing::debug!(?code, %detail, "the hub reported an error");
                st.last_error = Some((*code, detail.clone()));
            }
            ClientEvent::RemoteChanged { store, doc, key } if listening => {
                let value = st.docs.get(store, doc).and_then(|r| r.get_plain().ok().flatten());
                let _ = shared.events.send(RemoteChange { store: store.clone(), key: key.clone(), value, at });
            }
            _ => {}
        }
    }
    Some(frames)
}
