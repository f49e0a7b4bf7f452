//! A hub that cannot be reached: waiting for the connection ends with the URL and the cause,
//! at once when retrying cannot help, at the timeout otherwise.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use tidepool_client::{Client, ClientError, ClientOptions, ConnectCause};

async fn connect_error(url: &str, timeout: Duration) -> (tidepool_client::ConnectError, Duration) {
    let client = Client::connect(ClientOptions::new(url, "dev"));
    let started = Instant::now();
    let err = client.wait_connected(timeout).await.expect_err("no hub there");
    let took = started.elapsed();
    match err {
        ClientError::Connect(e) => {
            assert_eq!(e.url, url);
            assert!(e.to_string().contains(url), "{e}");
            (e, took)
        }
        other => panic!("expected a connect error, got {other}"),
    }
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[tokio::test]
async fn refused_port_fails_at_the_timeout_naming_the_cause() {
    let url = format!("ws://127.0.0.1:{}/v1/sync", free_port());
    let (e, took) = connect_error(&url, Duration::from_secs(1)).await;
    assert_eq!(e.cause, ConnectCause::Refused);
    assert!(e.attempts >= 1);
    assert!(e.to_string().contains("connection refused"), "{e}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn http_answer_fails_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    let url = format!("ws://127.0.0.1:{port}/wrong/path");
    let (e, took) = connect_error(&url, Duration::from_secs(60)).await;
    assert!(matches!(e.cause, ConnectCause::HttpStatus { status: 404, .. }), "{e}");
    assert!(e.to_string().contains("HTTP 404"), "{e}");
    assert!(took < Duration::from_secs(10), "a permanent error must not wait for the timeout: {took:?}");
}

#[tokio::test]
async fn wrong_scheme_fails_at_once() {
    for (url, scheme) in [("http://127.0.0.1:1/v1/sync", "http"), ("wss://127.0.0.1:1/v1/sync", "wss")] {
        let (e, took) = connect_error(url, Duration::from_secs(60)).await;
        assert_eq!(e.cause, ConnectCause::BadScheme(scheme.into()), "{e}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
    let (e, _) = connect_error("not a url", Duration::from_secs(60)).await;
    assert!(matches!(e.cause, ConnectCause::BadUrl(_)), "{e}");
}

#[tokio::test]
async fn unknown_host_fails_at_once() {
    // `.invalid` never resolves (RFC 2606).
    let (e, took) = connect_error("ws://no-such-hub.invalid:8080/v1/sync", Duration::from_secs(60)).await;
    assert!(matches!(&e.cause, ConnectCause::Dns { host, .. } if host == "no-such-hub.invalid"), "{e}");
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[tokio::test]
async fn wait_idle_reports_the_connect_error_too() {
    let client = Client::connect(ClientOptions::new("http://127.0.0.1:1/v1/sync", "dev"));
    let err = client.wait_idle(Duration::from_secs(60)).await.expect_err("no hub");
    assert!(matches!(err, ClientError::Connect(_)), "{err}");
}
