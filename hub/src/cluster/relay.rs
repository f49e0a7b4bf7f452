//! Relaying a client's WebSocket to the hub that owns its database: the client's first frame
//! (its `Hello`, token included) and everything after it go to the owner byte for byte, and the
//! owner's frames come back the same way, close codes and reasons included. The client sees one
//! connection and needs no change; the owner checks the token and does the work.

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame as AxumClose, Message as AxumMessage};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tidepool_core::wire::ErrorCode;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message as TMessage;

use crate::conn;

/// The request header marking a relayed connection: its hub never relays it again, so two hubs
/// with different views of the owners cannot bounce a client between them.
pub const RELAYED_HEADER: &str = "x-tidepool-relayed";

/// Which side ended a relayed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// The client closed or went away.
    Client,
    /// The owner could not be reached, or it closed: it may be stopping or have handed the
    /// database over, so this hub's view of the owners may be out of date.
    Owner,
}

/// Relays `socket` (whose first binary frame, `first`, was already read) to the hub at `addr`
/// until either side closes. When the owner cannot be reached the client is told to retry
/// later (`Overloaded`, close 1013).
pub async fn relay<S>(mut socket: S, addr: &str, first: Vec<u8>, max_frame: usize) -> RelayEnd
where
    S: Stream<Item = Result<AxumMessage, axum::Error>> + Sink<AxumMessage, Error = axum::Error> + Unpin,
{
    let upstream = async {
        let mut request = format!("ws://{addr}/v1/sync").into_client_request()?;
        request.headers_mut().insert(RELAYED_HEADER, http_value("1"));
        let config = WebSocketConfig::default().max_message_size(Some(max_frame)).max_frame_size(Some(max_frame));
        let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
        Ok::<_, tokio_tungstenite::tungstenite::Error>(ws)
    };
    let mut upstream = match tokio::time::timeout(std::time::Duration::from_secs(10), upstream).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::warn!(%addr, error = %e, "cannot reach the owning hub");
            conn::refuse(&mut socket, ErrorCode::Overloaded).await;
            return RelayEnd::Owner;
        }
        Err(_) => {
            tracing::warn!(%addr, "the owning hub did not answer in time");
            conn::refuse(&mut socket, ErrorCode::Overloaded).await;
            return RelayEnd::Owner;
        }
    };
    if upstream.send(TMessage::Binary(Bytes::from(first))).await.is_err() {
        conn::refuse(&mut socket, ErrorCode::Overloaded).await;
        return RelayEnd::Owner;
    }
    loop {
        tokio::select! {
            from_client = socket.next() => {
                let Some(Ok(message)) = from_client else {
                    let _ = upstream.close(None).await;
                    return RelayEnd::Client;
                };
                let closing = matches!(message, AxumMessage::Close(_));
                if upstream.send(to_upstream(message)).await.is_err() {
                    return RelayEnd::Owner;
                }
                if closing {
                    return RelayEnd::Client;
                }
            }
            from_owner = upstream.next() => {
                let Some(Ok(message)) = from_owner else {
                    let _ = socket.send(AxumMessage::Close(Some(AxumClose {
                        code: conn::close_status(Some(ErrorCode::ShuttingDown)),
                        reason: "owning hub went away".into(),
                    }))).await;
                    return RelayEnd::Owner;
                };
                let closing = matches!(message, TMessage::Close(_));
                let Some(message) = to_client(message) else { continue };
                if socket.send(message).await.is_err() {
                    return RelayEnd::Client;
                }
                if closing {
                    return RelayEnd::Owner;
                }
            }
        }
    }
}

fn http_value(v: &'static str) -> tokio_tungstenite::tungstenite::http::HeaderValue {
    tokio_tungstenite::tungstenite::http::HeaderValue::from_static(v)
}

fn to_upstream(message: AxumMessage) -> TMessage {
    match message {
        AxumMessage::Binary(b) => TMessage::Binary(b),
        AxumMessage::Text(t) => TMessage::Text(t.as_str().into()),
        AxumMessage::Ping(b) => TMessage::Ping(b),
        AxumMessage::Pong(b) => TMessage::Pong(b),
        AxumMessage::Close(frame) => TMessage::Close(
            frame.map(|f| CloseFrame { code: CloseCode::from(f.code), reason: f.reason.as_str().into() }),
        ),
    }
}

fn to_client(message: TMessage) -> Option<AxumMessage> {
    Some(match message {
        TMessage::Binary(b) => AxumMessage::Binary(b),
        TMessage::Text(t) => AxumMessage::Text(t.as_str().into()),
        TMessage::Ping(b) => AxumMessage::Ping(b),
        TMessage::Pong(b) => AxumMessage::Pong(b),
        TMessage::Close(frame) => {
            AxumMessage::Close(frame.map(|f| AxumClose { code: f.code.into(), reason: f.reason.as_str().into() }))
        }
        TMessage::Frame(_) => return None,
    })
}
