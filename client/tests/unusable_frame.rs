//! A hub that answers a request with a frame the client cannot use: the waiting request fails at
//! once with the cause, not after its timeout and not as a bare "connection lost".

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tidepool_client::{Client, ClientError, ClientOptions};
use tidepool_core::StoreRef;
use tidepool_core::wire::{self, Message};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Welcomes the client, then answers its first export request with `answer`.
async fn hub_answering_with(answer: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(socket).await.expect("handshake");
        while let Some(Ok(msg)) = ws.next().await {
            let WsMessage::Binary(frame) = msg else { continue };
            match wire::decode(&frame, &Default::default()).expect("the client's frames decode") {
                Message::Hello { .. } => {
                    let welcome = Message::Welcome { epoch: [3; 16], max_frame: 1 << 20, max_docs_per_batch: 100 };
                    ws.send(WsMessage::Binary(wire::encode(&welcome).into())).await.expect("welcome");
                }
                Message::Export { .. } => {
                    ws.send(WsMessage::Binary(answer.clone().into())).await.expect("answer");
                }
                _ => {}
            }
        }
    });
    format!("ws://{addr}/v1/sync")
}

#[tokio::test]
async fn a_request_answered_with_an_undecodable_frame_fails_at_once_naming_why() {
    let url = hub_answering_with(vec![0xff; 40]).await;
    let client = Client::connect(ClientOptions::new(&url, "dev"));
    client.wait_connected(Duration::from_secs(10)).await.expect("connected");
    let started = Instant::now();
    let err = client
        .export_page(&StoreRef::new("app", "items"), None, None, 10, Duration::from_secs(60))
        .await
        .expect_err("the answer does not decode");
    assert!(started.elapsed() < Duration::from_secs(30), "failed at once, not at the timeout");
    match &err {
        ClientError::Unusable(why) => assert!(why.contains("does not decode"), "{why}"),
        other => panic!("expected the cause, got {other}"),
    }
    assert!(err.to_string().contains("cannot use"), "{err}");
    client.close().await;
}
