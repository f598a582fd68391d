//! A local EventStreams stand-in: real HTTP/1.1 and real server-sent events on
//! 127.0.0.1, serving a fixed list of events the way stream.wikimedia.org does (`event:
//! message`, `id:` a JSON array of Kafka positions, `data:` the event), honouring
//! `Last-Event-ID`, with keep-alive comments. Each connection can be told to fail:
//! answer 503, or drop the connection in the middle of an event after N events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the n-th connection (0-based) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Serve every event after the requested one, then keep the stream open.
    Serve,
    /// Answer `503 Service Unavailable`.
    Unavailable,
    /// Serve this many events, then half of the next one, then cut the connection.
    DropAfter(usize),
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    pub last_event_id: Option<String>,
    pub user_agent: Option<String>,
    pub path: String,
}

pub struct SseServer {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
    events: Arc<Mutex<Arc<Vec<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SseServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `id:` EventStreams gives event `offset`.
pub fn event_id(offset: usize) -> String {
    format!(r#"[{{"topic":"eqiad.mediawiki.recentchange","partition":0,"offset":{offset}}}]"#)
}

impl SseServer {
    /// Serves `events` (JSON lines); connection `n` behaves as `behaviours[n]`, and as
    /// `Serve` past the end of the list.
    pub async fn start(events: Vec<String>, behaviours: Vec<Behaviour>) -> SseServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v2/stream/recentchange", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let events = Arc::new(Mutex::new(Arc::new(events)));
        let served = events.clone();
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            let mut connection = 0usize;
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let behaviour = behaviours.get(connection).copied().unwrap_or(Behaviour::Serve);
                connection += 1;
                let snapshot = served.lock().unwrap().clone();
                tokio::spawn(serve(stream, snapshot, behaviour, recorded.clone()));
            }
        });
        SseServer { url, requests, events, task }
    }

    /// What later connections serve (the stream "grows" while a client is away).
    pub fn set_events(&self, events: Vec<String>) {
        *self.events.lock().unwrap() = Arc::new(events);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(mut stream: TcpStream, events: Arc<Vec<String>>, behaviour: Behaviour, log: Arc<Mutex<Vec<Request>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string())
        })
    };
    let path = head.split(' ').nth(1).unwrap_or("").to_string();
    let last_event_id = header("last-event-id");
    log.lock().unwrap().push(Request { last_event_id: last_event_id.clone(), user_agent: header("user-agent"), path });
    if behaviour == Behaviour::Unavailable {
        let _ = stream
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    }
    let start = match &last_event_id {
        Some(id) => (0..events.len()).find(|&i| event_id(i) == *id).map_or(0, |i| i + 1),
        None => 0,
    };
    let _ = stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n:ok\n\n")
        .await;
    for (sent, offset) in (start..events.len()).enumerate() {
        let frame = format!("event: message\nid: {}\ndata: {}\n\n", event_id(offset), events[offset]);
        if behaviour == Behaviour::DropAfter(sent) {
            let _ = stream.write_all(&frame.as_bytes()[..frame.len() / 2]).await;
            let _ = stream.flush().await;
            return; // Dropped mid-event.
        }
        if stream.write_all(frame.as_bytes()).await.is_err() {
            return;
        }
        if offset % 16 == 0 {
            let _ = stream.write_all(b":keep-alive\n").await;
        }
    }
    // Like the live stream: stay open, sending keep-alives, until the client leaves.
    loop {
        if stream.write_all(b":\n").await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
