//! The control protocol over real TCP: a whole session with every command, each error
//! line, and clients that send garbage, binary, a 10 MB line, half a document, or ten
//! thousand connections, while the server keeps serving everyone else.

use std::net::SocketAddr;
use std::time::Duration;

use flotilla_wikimedia_dispatcher::ControlLimits;
use flotilla_wikimedia_dispatcher::control::TOO_MANY_CONNECTIONS;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{Client, Harness};

#[tokio::test]
async fn a_whole_session_with_every_command_and_its_errors() {
    let harness = Harness::start(None, ControlLimits::default()).await;
    let mut c = harness.client().await;
    let check = |reply: String, expect: &str| assert_eq!(reply, expect);

    check(c.ask("insert xml <items><item>enwiki</item></items>").await, "E020: Authentication was not completed");
    check(c.ask("subscribe bad/name").await, "E001: Invalid name");
    let token = c.ask("SUBSCRIBE alpha").await;
    let token = token.strip_prefix("TOKEN: ").expect("a token").to_string();
    assert!(token.len() == 40 && token.bytes().all(|b| b.is_ascii_uppercase()), "{token}");
    check(c.ask("subscribe alpha").await, "E002: This subscription exist");
    check(c.ask("auth alpha AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await, "E005: Invalid token or name");
    check(c.ask("auth nobody AAAA").await, "E005: Invalid token or name");
    check(c.ask(&format!("auth alpha {token}\r")).await, "OK");
    check(c.ask("insert").await, "E008: Missing parameter for insert");
    check(c.ask("remove").await, "E008: Missing parameter for delete");
    check(c.ask("insert yaml").await, "E010: Unknown format of data");

    // Multi-line XML, then single-line JSON; wikis in all three spellings.
    c.write(b"insert xml\n<items>\n  <item page=\"Main Page\">en_wikipedia</item>\n").await;
    c.write(b"  <item user_rx=\"^Bot\" flags=\"bot\">de.wikipedia.org</item>\n</items>\n").await;
    check(c.line().await.unwrap(), "2");
    check(
        c.ask(r#"insert json [{"wiki": "enwiki", "page": "Main Page"}, {"wiki": "kowiki", "user": "廢后"}]"#).await,
        "1",
    );
    check(c.ask("insert json\n[\n{\"wiki\": \"commonswiki\", \"flags\": [\"new\"]}\n]").await, "1");
    check(
        c.ask("list").await,
        r#"[{"wiki":"commonswiki","flags":["new"]},{"wiki":"dewiki","user_rx":"^Bot","flags":["bot"]},{"wiki":"enwiki","page":"Main Page"},{"wiki":"kowiki","user":"廢后"}]"#,
    );
    check(
        c.ask("list xml").await,
        r#"<items><item flags="new">commonswiki</item><item user_rx="^Bot" flags="bot">dewiki</item><item page="Main Page">enwiki</item><item user="廢后">kowiki</item></items>"#,
    );
    check(
        c.ask(r#"insert json [{"wiki": "enwiki", "page_rx": "(unclosed"}]"#).await,
        "E011: Invalid regex: \"(unclosed\": unclosed group",
    );
    check(c.ask(r#"insert xml <items><item>nosuchwiki</item></items>"#).await, "E014: Unknown wiki: nosuchwiki");
    check(c.ask(r#"insert json [{"wiki": "enwiki", "flags": ["often"]}]"#).await, "E017: Unknown flag: often");
    check(c.ask(r#"insert json [{"page": "X"}]"#).await, "E018: Missing wiki");
    check(c.ask(r#"insert json {"wiki": "enwiki"}"#).await, "E062: Invalid json");
    check(c.ask("insert xml <list><item>enwiki</item></items>").await, "E060: Invalid xml");
    check(c.ask(r#"remove json [{"wiki": "commonswiki", "flags": ["new"]}, {"wiki": "enwiki"}]"#).await, "1");
    check(c.ask("format yaml").await, "E012: Invalid format");
    check(c.ask("format json").await, "OK");
    check(c.ask("info").await, "I have 1 connections and 1 subscriptions, I am now watching 3 wikis");
    check(c.ask("hello there").await, "E006: Command not understood");

    // A second connection: unsubscribe by name and token, then the first is lost.
    let mut other = harness.client().await;
    check(other.ask("unsubscribe alpha WRONGTOKENWRONGTOKENWRONGTOKENWRONGTOKEN").await, "E005: Invalid token or name");
    check(other.ask(&format!("unsubscribe nobody {token}")).await, "E007: No such feed");
    check(other.ask(&format!("unsubscribe alpha {token}")).await, "OK");
    check(c.ask("list").await, "E007: No such feed");
    check(other.ask("quit").await, "Good bye :o");
    assert_eq!(other.line().await, None, "the server closes after quit");
    check(c.ask("info").await, "I have 1 connections and 0 subscriptions, I am now watching 0 wikis");
    harness.stop().await;
}

/// Checks that a new client is served.
async fn alive(addr: SocketAddr) {
    let mut c = Client::connect(addr).await;
    assert!(c.ask("info").await.starts_with("I have "), "the server still answers");
}

#[tokio::test]
async fn garbage_binary_huge_lines_and_half_documents_leave_the_server_serving() {
    let harness = Harness::start(None, ControlLimits::default()).await;
    let mut owner = harness.client().await;
    let token = owner.subscribe_and_auth("victim").await;

    // Binary with line ends: one E006 per line, the connection stays usable.
    let mut binary = harness.client().await;
    binary.write(&[0xff, 0xfe, 0x00, 0x01, b'\n', 0xc3, 0x28, b'\r', b'\n']).await;
    assert_eq!(binary.line().await.unwrap(), "E006: Command not understood");
    assert_eq!(binary.line().await.unwrap(), "E006: Command not understood");
    assert!(binary.ask("info").await.starts_with("I have "));

    // A 10 MB line: E013 after at most the limit, then the server closes.
    let huge = TcpStream::connect(harness.control()).await.unwrap();
    let writer = tokio::spawn({
        let (mut read, mut write) = huge.into_split();
        async move {
            use tokio::io::AsyncWriteExt;
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..10 {
                if write.write_all(&chunk).await.is_err() {
                    break; // The server closed: expected.
                }
            }
            let mut reply = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut reply)).await;
            reply
        }
    });
    let reply = writer.await.unwrap();
    assert_eq!(String::from_utf8_lossy(&reply), "E013: Line too long\n");

    // Half a document, then gone: nothing is applied.
    let mut half = harness.client().await;
    assert_eq!(half.ask(&format!("auth victim {token}")).await, "OK");
    half.write(b"insert xml\n<items>\n<item>enwiki</item>\n").await;
    drop(half);
    // Garbage without any line end, then gone.
    let mut garbage = TcpStream::connect(harness.control()).await.unwrap();
    {
        use tokio::io::AsyncWriteExt;
        garbage.write_all(&[7u8; 5000]).await.unwrap();
    }
    drop(garbage);

    assert_eq!(owner.ask("list").await, "[]", "the half document added nothing");
    alive(harness.control()).await;
    harness.stop().await;
}

async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test]
async fn ten_thousand_connections_from_one_host_do_not_lock_out_others() {
    let limits = ControlLimits { max_connections: 200, max_connections_per_ip: 50, ..ControlLimits::default() };
    let harness = Harness::start(None, limits).await;
    let addr = harness.control();

    // One host takes its 50 slots and keeps them…
    let mut held = Vec::new();
    for _ in 0..50 {
        let mut c = Client::from_stream(connect_from("127.0.0.1", addr).await);
        assert!(c.ask("info").await.starts_with("I have "));
        held.push(c);
    }
    // …then opens ten thousand more, in waves of 200: each is refused at once.
    let mut refused = 0;
    for _ in 0..50 {
        let mut wave = Vec::new();
        for _ in 0..200 {
            wave.push(tokio::spawn(async move {
                let mut stream = connect_from("127.0.0.1", addr).await;
                let mut reply = String::new();
                let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut reply)).await;
                reply
            }));
        }
        for task in wave {
            let reply = task.await.unwrap();
            assert_eq!(reply, format!("{TOO_MANY_CONNECTIONS}\n"));
            refused += 1;
        }
    }
    assert_eq!(refused, 10_000);

    // Another host is served normally meanwhile, and sees the connection count.
    let mut other = Client::from_stream(connect_from("127.0.0.2", addr).await);
    assert_eq!(other.ask("info").await, "I have 51 connections and 0 subscriptions, I am now watching 0 wikis");
    // The first host gets a slot back as soon as it lets one go.
    held.pop();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Client::from_stream(connect_from("127.0.0.1", addr).await);
        match c.line_or_ask("info").await.as_str() {
            reply if reply.starts_with("I have ") => break,
            reply => assert_eq!(reply, TOO_MANY_CONNECTIONS),
        }
        assert!(std::time::Instant::now() < deadline, "the slot did not come back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);
    harness.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let limits = ControlLimits { idle_timeout: Duration::from_millis(300), ..ControlLimits::default() };
    let harness = Harness::start(None, limits).await;
    let mut c = harness.client().await;
    assert!(c.ask("info").await.starts_with("I have "));
    // On tokio's paused clock the idle timeout passes without real waiting, and the
    // client's own 10 s reply timeout comes later.
    tokio::time::pause();
    let idle_since = tokio::time::Instant::now();
    assert_eq!(c.line().await, None, "closed after the idle timeout");
    assert!(idle_since.elapsed() >= Duration::from_millis(250), "closed too early: {:?}", idle_since.elapsed());
    tokio::time::resume();
    harness.stop().await;
}

/// The idle timeout counts from the last complete line: a client that sends a byte now
/// and then and never ends its line does not keep its slot.
#[tokio::test]
async fn a_line_trickled_byte_by_byte_does_not_keep_the_connection() {
    use tokio::io::AsyncWriteExt;
    let limits = ControlLimits { idle_timeout: Duration::from_millis(300), ..ControlLimits::default() };
    let harness = Harness::start(None, limits).await;
    let mut stream = TcpStream::connect(harness.control()).await.unwrap();
    stream.write_all(b"info\n").await.unwrap();
    let mut reply = [0u8; 128];
    assert!(stream.read(&mut reply).await.unwrap() > 0, "a reply to info");
    // A byte every 100 ms (the attack's pace, on the real clock: each byte arrives well
    // within the idle timeout of the one before).
    for _ in 0..10 {
        if stream.write_all(b"x").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A second after the last complete line: closed.
    let read = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut reply)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "still open after a trickled second: {read:?}");
    harness.stop().await;
}

#[tokio::test]
async fn subscriptions_are_capped_in_all_and_per_client_address() {
    let mut harness = Harness::start(None, ControlLimits::default()).await;
    harness.settings.limits.max_subscriptions = 3;
    harness.settings.limits.max_subscriptions_per_address = 2;
    harness.restart().await;
    let addr = harness.control();
    let mut one = Client::from_stream(connect_from("127.0.0.1", addr).await);
    assert!(one.ask("subscribe a1").await.starts_with("TOKEN: "));
    assert!(one.ask("subscribe a2").await.starts_with("TOKEN: "));
    assert_eq!(one.ask("subscribe a3").await, "E024: Too many subscriptions from this address (at most 2)");
    // A new connection from the same address is the same client address.
    let mut again = Client::from_stream(connect_from("127.0.0.1", addr).await);
    assert_eq!(again.ask("subscribe a3").await, "E024: Too many subscriptions from this address (at most 2)");
    let mut other = Client::from_stream(connect_from("127.0.0.2", addr).await);
    assert!(other.ask("subscribe b1").await.starts_with("TOKEN: "));
    assert_eq!(other.ask("subscribe b2").await, "E024: Too many subscriptions (at most 3)");
    assert_eq!(other.ask("info").await, "I have 3 connections and 3 subscriptions, I am now watching 0 wikis");
    harness.stop().await;
}

#[tokio::test]
async fn a_pattern_past_the_memory_budget_is_refused_by_name() {
    let mut harness = Harness::start(None, ControlLimits::default()).await;
    harness.settings.limits.max_pattern_memory_per_subscription = 100 << 10;
    harness.restart().await;
    let mut c = harness.client().await;
    c.subscribe_and_auth("greedy").await;
    // A Unicode class repeated compiles to hundreds of kilobytes.
    assert_eq!(
        c.ask(r#"insert json [{"wiki":"enwiki","page_rx":"^Talk:"},{"wiki":"enwiki","page_rx":"\\w{7}x"}]"#).await,
        r#"E025: Patterns too large: "\\w{7}x" would take this subscription's compiled patterns over 102400 bytes"#
    );
    assert_eq!(c.ask("list").await, "[]", "nothing of the document was added");
    assert_eq!(c.ask(r#"insert json [{"wiki":"enwiki","page_rx":"^Talk:"}]"#).await, "1");
    let status = harness.dispatcher().shared().status();
    assert!(status["pattern_memory"].as_u64().is_some_and(|bytes| bytes > 0 && bytes < 100 << 10), "{status}");
    harness.stop().await;
}

impl Client {
    /// Sends `line`; a refused connection answers E021 before any command.
    async fn line_or_ask(&mut self, line: &str) -> String {
        let _ = self.0.write(format!("{line}\n").as_bytes()).await;
        self.line().await.unwrap_or_default()
    }
}
