//! The HTTP listener against clients that hold connections: a head that never ends and
//! a body that stalls are cut off by their timeouts, and at the cap a new connection
//! closes an idle one, never one in the middle of a response, and is answered 503 when
//! every connection is busy.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use flotilla_node::http_server::{HttpLimits, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A listener on a free loopback port serving `/healthz`, `/upload` (reads its body) and
/// `/forever` (a response that never ends), until the token is cancelled.
async fn listen(limits: HttpLimits) -> (SocketAddr, CancellationToken) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/upload", post(|body: Bytes| async move { body.len().to_string() }))
        .route(
            "/forever",
            get(|| async {
                let never = futures_util::stream::pending::<Result<Bytes, std::convert::Infallible>>();
                axum::body::Body::from_stream(futures_util::StreamExt::chain(
                    futures_util::stream::iter([Ok(Bytes::from_static(b"started\n"))]),
                    never,
                ))
            }),
        );
    let listener = flotilla_node::http_server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, app, limits, stop.clone()));
    (addr, stop)
}

/// Reads until the server closes (or `within` passes): what it sent, and whether it
/// closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&received).into_owned(), true),
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
            Err(_) => return (String::from_utf8_lossy(&received).into_owned(), false),
        }
    }
}

async fn get_healthz(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    read_until_closed(&mut stream, Duration::from_secs(5)).await.0
}

#[tokio::test]
async fn a_request_head_that_never_ends_is_cut_off_at_the_header_timeout() {
    let limits = HttpLimits { header_timeout: Duration::from_millis(500), ..HttpLimits::default() };
    let (addr, stop) = listen(limits).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    // A byte of head every 100 ms, on the real clock: never idle, never done.
    let mut open = true;
    for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if stream.write_all(&[*byte]).await.is_err() {
            open = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let closed = !open || read_until_closed(&mut stream, Duration::from_millis(100)).await.1;
    assert!(closed, "the head was still being read after {:?}", started.elapsed());
    stop.cancel();
}

#[tokio::test]
async fn a_body_that_stalls_is_cut_off_at_the_idle_timeout() {
    let limits = HttpLimits { idle_timeout: Duration::from_millis(300), ..HttpLimits::default() };
    let (addr, stop) = listen(limits).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789").await.unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(closed, "a stalled body kept its connection");
    assert!(started.elapsed() >= Duration::from_millis(250), "closed too early: {:?}", started.elapsed());
    // A request that keeps moving is served.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc")
        .await
        .unwrap();
    let (response, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 200") && response.ends_with("\r\n\r\n3"), "{response:?}");
    stop.cancel();
}

#[tokio::test]
async fn at_the_cap_a_new_connection_closes_an_idle_one_never_a_busy_one() {
    let limits = HttpLimits { max_connections: 2, ..HttpLimits::default() };
    let (addr, stop) = listen(limits).await;
    // One connection in the middle of a response that never ends…
    let mut busy = TcpStream::connect(addr).await.unwrap();
    busy.write_all(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut started = [0u8; 512];
    let n = busy.read(&mut started).await.unwrap();
    assert!(String::from_utf8_lossy(&started[..n]).starts_with("HTTP/1.1 200"));
    // …one idle: a request comes in anyway, and the idle one is closed for it.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let health = get_healthz(addr).await;
    assert!(health.starts_with("HTTP/1.1 200") && health.ends_with("ok"), "{health:?}");
    assert!(read_until_closed(&mut idle, Duration::from_secs(5)).await.1, "the idle connection was closed");
    // With both slots busy, a new connection gets 503 and a JSON error.
    let mut second = TcpStream::connect(addr).await.unwrap();
    second.write_all(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let n = second.read(&mut started).await.unwrap();
    assert!(String::from_utf8_lossy(&started[..n]).starts_with("HTTP/1.1 200"));
    let refused = get_healthz(addr).await;
    assert!(
        refused.starts_with("HTTP/1.1 503") && refused.contains("{\"error\":\"too many connections"),
        "{refused:?}"
    );
    // The busy ones were never touched.
    let (_, closed) = read_until_closed(&mut busy, Duration::from_millis(100)).await;
    assert!(!closed, "a connection in the middle of a response was closed");
    stop.cancel();
}
