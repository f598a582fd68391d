//! The monitors that fetch over HTTP (rss, webfetch, webmatches), against a tiny HTTP
//! server on 127.0.0.1 serving fixture files that the tests change between checks.
//! Nothing here leaves the loopback interface, and every wait is bounded.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use common::{Harness, QUEUE, errors, yaml};
use flotilla_connector::ConnectorSection;
use flotilla_core::Message;
use flotilla_monitors::{Fetcher, Monitor, Rss, WebMatches};
use serde_json::{Map, Value, json};

#[derive(Clone)]
struct Page {
    status: u16,
    content_type: String,
    body: Vec<u8>,
    /// Wait this long before answering.
    delay: Duration,
}

#[derive(Clone, Default)]
struct Site {
    pages: Arc<Mutex<HashMap<String, Page>>>,
    /// The headers of every request, in order.
    requests: Arc<Mutex<Vec<HeaderMap>>>,
}

struct Server {
    site: Site,
    base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(site): State<Site>, uri: Uri, headers: HeaderMap) -> Response {
    site.requests.lock().unwrap().push(headers);
    let page = site.pages.lock().unwrap().get(uri.path()).cloned();
    match page {
        None => (StatusCode::NOT_FOUND, "no such page").into_response(),
        Some(page) => {
            tokio::time::sleep(page.delay).await;
            let status = StatusCode::from_u16(page.status).unwrap();
            (status, [(header::CONTENT_TYPE, page.content_type)], page.body).into_response()
        }
    }
}

impl Server {
    async fn start() -> Server {
        let site = Site::default();
        let app = axum::Router::new().fallback(serve).with_state(site.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server { site, base, task }
    }

    fn put(&self, path: &str, content_type: &str, body: impl Into<Vec<u8>>) {
        let page = Page { status: 200, content_type: content_type.into(), body: body.into(), delay: Duration::ZERO };
        self.site.pages.lock().unwrap().insert(path.into(), page);
    }

    fn put_fixture(&self, path: &str, fixture: &str) {
        let body = std::fs::read(format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let content_type = if fixture.ends_with(".json") { "application/feed+json" } else { "application/rss+xml" };
        self.put(path, content_type, body);
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn last_request(&self) -> HeaderMap {
        self.site.requests.lock().unwrap().last().cloned().unwrap()
    }
}

/// A fetcher for `url` with extra section keys, as a section would configure it.
fn fetcher(url: &str, extra: &str, timeout: Duration) -> Fetcher {
    let node = yaml("web.yaml", &format!("url: {url}\n{extra}"));
    let section = ConnectorSection { name: "test", node: &node, path: "connectors.test".into() };
    let (fetcher, ()) = Fetcher::from_section(&section, "rss", |_| Ok(())).unwrap();
    fetcher.with_timeout(timeout)
}

fn rss(url: &str) -> Rss {
    Rss { fetcher: fetcher(url, "", Duration::from_secs(10)), key: "RSS-harbour".into() }
}

async fn check(monitor: &dyn Monitor, cache: &mut Map<String, Value>) -> anyhow::Result<Vec<Message>> {
    monitor.check(cache, SystemTime::now()).await.map(|outcome| outcome.messages)
}

fn field<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message.get_str(name)
}

#[tokio::test]
async fn rss2_items_once_each_oldest_first_with_wubots_fields() {
    let server = Server::start().await;
    server.put_fixture("/feed.xml", "rss2.xml");
    let monitor = rss(&server.url("/feed.xml"));
    let mut cache = Map::new();

    let first = check(&monitor, &mut cache).await.unwrap();
    let titles: Vec<_> = first.iter().map(|m| field(m, "title").unwrap()).collect();
    assert_eq!(titles, ["First boat arrives", "Second boat arrives"], "oldest first");
    let second = &first[1];
    assert_eq!(field(second, "subject"), Some("Second boat arrives"));
    assert_eq!(field(second, "link"), Some("http://harbour.example/2"));
    assert_eq!(field(second, "body"), Some("<p>The <b>second</b> boat is in.</p>"), "content before summary");
    assert_eq!(field(&first[0], "body"), Some("The first boat is in."), "the summary when there is no content");
    assert_eq!(field(second, "username"), Some("The Harbourmaster"));
    assert_eq!(field(second, "feed_title"), Some("Harbour news"));
    assert_eq!(second.get("published"), Some(&json!(1_704_189_600)));
    assert_eq!(field(second, "coalesce"), Some("RSS-harbour"));

    assert!(check(&monitor, &mut cache).await.unwrap().is_empty(), "nothing new");

    server.put_fixture("/feed.xml", "rss2-later.xml");
    let later = check(&monitor, &mut cache).await.unwrap();
    let titles: Vec<_> = later.iter().map(|m| field(m, "title").unwrap()).collect();
    assert_eq!(titles, ["Third boat arrives"]);
    // The cache keys items by title with the time last seen, as wubot's did.
    let seen = cache["seen"].as_object().unwrap();
    assert!(seen.contains_key("Third boat arrives") && seen.contains_key("First boat arrives"));

    let agent = server.last_request()[header::USER_AGENT].to_str().unwrap().to_string();
    assert!(agent.starts_with("Flotilla/") && agent.contains("rss monitor"), "{agent}");
}

#[tokio::test]
async fn atom_and_json_feed() {
    let server = Server::start().await;
    server.put(
        "/atom",
        "application/atom+xml",
        std::fs::read(format!("{}/tests/fixtures/atom.xml", env!("CARGO_MANIFEST_DIR"))).unwrap(),
    );
    server.put_fixture("/feed.json", "feed.json");

    let atom = check(&rss(&server.url("/atom")), &mut Map::new()).await.unwrap();
    assert_eq!(atom.len(), 1);
    assert_eq!(field(&atom[0], "title"), Some("Lamp replaced"));
    assert_eq!(field(&atom[0], "link"), Some(&*server.url("/log/lamp")), "relative links resolve against the feed URL");
    assert_eq!(field(&atom[0], "username"), Some("Keeper Jo"));
    assert_eq!(field(&atom[0], "body"), Some("The old lamp failed overnight."));
    assert_eq!(field(&atom[0], "feed_title"), Some("Lighthouse log"));

    let mut cache = Map::new();
    let json_feed = check(&rss(&server.url("/feed.json")), &mut cache).await.unwrap();
    assert_eq!(json_feed.len(), 2);
    assert_eq!(field(&json_feed[0], "title"), Some("High tide at 06:12"));
    assert_eq!(field(&json_feed[0], "body"), Some("<p>Spring tide.</p>"));
    assert_eq!(field(&json_feed[0], "username"), Some("Tide Bot"));
    assert_eq!(json_feed[0].get("published"), Some(&json!(1_711_951_920)));
    assert_eq!(field(&json_feed[1], "subject"), Some("http://tides.example/2"), "no title: known by its link");
    assert!(check(&rss(&server.url("/feed.json")), &mut cache).await.unwrap().is_empty());
}

#[tokio::test]
async fn escapes_and_non_latin_text_arrive_intact() {
    let server = Server::start().await;
    server.put_fixture("/tricky", "tricky.xml");
    let messages = check(&rss(&server.url("/tricky")), &mut Map::new()).await.unwrap();
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(field(message, "title"), Some("Fish & chips < 5€ — Рыба и картошка — 魚とポテト"));
    assert_eq!(field(message, "link"), Some("http://tricky.example/a?x=1&y=2"));
    assert_eq!(field(message, "body"), Some(r#"1 < 2 && "quoted" <i>html</i>"#));
    assert_eq!(field(message, "feed_title"), Some("Q&A <weekly>"));
}

#[tokio::test]
async fn failures_say_what_went_wrong() {
    let server = Server::start().await;
    server.put_fixture("/broken", "broken.xml");
    server.put("/empty", "application/rss+xml", "<rss version=\"2.0\"><channel><title>t</title></channel></rss>");
    server.put("/html", "text/html", "<html><body>not a feed</body></html>");

    let broken = check(&rss(&server.url("/broken")), &mut Map::new()).await.unwrap_err().to_string();
    assert!(broken.starts_with("Failure parsing feed: "), "{broken}");
    let html = check(&rss(&server.url("/html")), &mut Map::new()).await.unwrap_err().to_string();
    assert!(html.starts_with("Failure parsing feed: "), "{html}");
    let empty = check(&rss(&server.url("/empty")), &mut Map::new()).await.unwrap_err().to_string();
    assert_eq!(empty, "No items found in feed");
    let missing = check(&rss(&server.url("/missing")), &mut Map::new()).await.unwrap_err().to_string();
    assert_eq!(missing, "Request failure: 404 Not Found");

    // Nothing listens on this port once the listener is dropped.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_url = format!("http://{}/feed", closed.local_addr().unwrap());
    drop(closed);
    let refused = check(&rss(&closed_url), &mut Map::new()).await.unwrap_err().to_string();
    assert!(refused.starts_with("Request failure: ") && refused.to_lowercase().contains("connect"), "{refused}");
}

#[tokio::test]
async fn slow_and_oversized_answers_are_cut_off() {
    let server = Server::start().await;
    server.put_fixture("/slow", "rss2.xml");
    server.site.pages.lock().unwrap().get_mut("/slow").unwrap().delay = Duration::from_secs(30);
    let slow = Rss { fetcher: fetcher(&server.url("/slow"), "", Duration::from_millis(300)), key: "k".into() };
    let started = Instant::now();
    let error = check(&slow, &mut Map::new()).await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(error.starts_with("Request failure: ") && error.contains("timed out"), "{error}");

    server.put("/big", "application/rss+xml", vec![b' '; 5000]);
    let big =
        Rss { fetcher: fetcher(&server.url("/big"), "max_size: 4KB\n", Duration::from_secs(10)), key: "k".into() };
    let error = check(&big, &mut Map::new()).await.unwrap_err().to_string();
    assert!(error.contains("larger than 4") && error.contains("max_size"), "{error}");
}

#[tokio::test]
async fn basic_auth_and_a_chosen_agent() {
    let server = Server::start().await;
    server.put_fixture("/private", "rss2.xml");
    let monitor = Rss {
        fetcher: fetcher(
            &server.url("/private"),
            "user: dude\npass: lebowski\nagent: my-bot/1.0\n",
            Duration::from_secs(10),
        ),
        key: "k".into(),
    };
    check(&monitor, &mut Map::new()).await.unwrap();
    let request = server.last_request();
    assert_eq!(request[header::AUTHORIZATION], "Basic ZHVkZTpsZWJvd3NraQ==");
    assert_eq!(request[header::USER_AGENT], "my-bot/1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rss_connector_queues_items_and_a_broken_feed_as_critical() {
    let server = Server::start().await;
    server.put_fixture("/feed.xml", "rss2.xml");
    server.put_fixture("/broken", "broken.xml");
    let h = Harness::new().await;
    let good = common::build(
        "rss",
        "RSS-harbour",
        &yaml("plugins/RSS/harbour.yaml", &format!("url: {}\ndelay: 1h\n", server.url("/feed.xml"))),
    )
    .unwrap();
    let bad = common::build(
        "rss",
        "RSS-broken",
        &yaml("plugins/RSS/broken.yaml", &format!("url: {}\ndelay: 1h\n", server.url("/broken"))),
    )
    .unwrap();
    let tasks = [h.spawn(good, "RSS-harbour", "rss"), h.spawn(bad, "RSS-broken", "rss")];
    let queued = h.wait_for(QUEUE, 3).await;
    h.shutdown.cancel();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let harbour: Vec<_> = queued.iter().filter(|m| field(m, "key") == Some("RSS-harbour")).collect();
    assert_eq!(harbour.len(), 2);
    assert!(harbour.iter().all(|m| field(m, "plugin") == Some("rss") && m.id().is_some()));
    let broken = queued.iter().find(|m| field(m, "key") == Some("RSS-broken")).unwrap();
    assert_eq!(field(broken, "status"), Some("CRITICAL"));
    assert!(field(broken, "subject").unwrap().starts_with("CRITICAL: Failure parsing feed: "), "{broken:?}");
    assert_eq!(field(broken, "link"), Some(&*server.url("/broken")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webfetch_whole_page_or_a_capture() {
    let server = Server::start().await;
    server.put("/status", "text/html; charset=iso-8859-1", b"<p>Visitors: 1234 (caf\xe9)</p>".to_vec());
    let h = Harness::new().await;
    let whole =
        common::build("webfetch", "WebFetch-page", &yaml("w.yaml", &format!("url: {}\n", server.url("/status"))))
            .unwrap();
    let captured = common::build(
        "webfetch",
        "WebFetch-hits",
        &yaml("w.yaml", &format!("url: {}\nfield: hits\nregexp: 'Visitors: (\\d+)'\n", server.url("/status"))),
    )
    .unwrap();
    let missing = common::build(
        "webfetch",
        "WebFetch-missing",
        &yaml("w.yaml", &format!("url: {}\nregexp: 'Sailors: (\\d+)'\n", server.url("/status"))),
    )
    .unwrap();
    let tasks = [
        h.spawn(whole, "WebFetch-page", "webfetch"),
        h.spawn(captured, "WebFetch-hits", "webfetch"),
        h.spawn(missing, "WebFetch-missing", "webfetch"),
    ];
    let queued = h.wait_for(QUEUE, 3).await;
    h.shutdown.cancel();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let by_key = |key: &str| queued.iter().find(|m| field(m, "key") == Some(key)).unwrap().clone();
    assert_eq!(field(&by_key("WebFetch-page"), "content"), Some("<p>Visitors: 1234 (café)</p>"), "decoded as Latin-1");
    assert_eq!(field(&by_key("WebFetch-page"), "link"), Some(&*server.url("/status")));
    assert_eq!(field(&by_key("WebFetch-hits"), "hits"), Some("1234"));
    let failed = by_key("WebFetch-missing");
    assert_eq!(field(&failed, "status"), Some("CRITICAL"));
    assert!(field(&failed, "subject").unwrap().contains("no match for regexp"), "{failed:?}");
}

#[tokio::test]
async fn webmatches_new_matches_only() {
    let server = Server::start().await;
    let page = |versions: &[&str]| -> String {
        versions.iter().map(|v| format!("<a href=\"openssl-{v}.tar.gz\">openssl-{v}</a>\n")).collect()
    };
    server.put("/source", "text/html", page(&["1.0.1c", "1.0.1d"]));
    let node = yaml("m.yaml", &format!("url: {}\n", server.url("/source")));
    let section = ConnectorSection { name: "test", node: &node, path: "connectors.test".into() };
    let (fetcher, ()) = Fetcher::from_section(&section, "webmatches", |_| Ok(())).unwrap();
    let monitor = WebMatches { fetcher, regexp: regex::Regex::new(r#""(openssl\-[\d\.]+[a-z]?\.tar\.gz)""#).unwrap() };
    let mut cache = Map::new();

    let first = check(&monitor, &mut cache).await.unwrap();
    let found: Vec<_> = first.iter().map(|m| field(m, "match").unwrap()).collect();
    assert_eq!(found, ["openssl-1.0.1c.tar.gz", "openssl-1.0.1d.tar.gz"]);
    assert_eq!(field(&first[0], "link"), Some(&*server.url("/source")));
    assert!(check(&monitor, &mut cache).await.unwrap().is_empty());

    server.put("/source", "text/html", page(&["1.0.1d", "1.0.1e"]));
    let later = check(&monitor, &mut cache).await.unwrap();
    assert_eq!(later.iter().map(|m| field(m, "match").unwrap()).collect::<Vec<_>>(), ["openssl-1.0.1e.tar.gz"]);

    server.put("/source", "text/html", "moved to a new page");
    let error = check(&monitor, &mut cache).await.unwrap_err().to_string();
    assert_eq!(error, "no matches found");
}

/// Issue 11, finding 10: credentials written into the URL (`user:pw@`) still log in,
/// but never reach a message's `link`, a relative link resolved against the feed, or a
/// failure's text.
#[tokio::test]
async fn credentials_in_the_url_stay_out_of_messages() {
    let server = Server::start().await;
    server.put(
        "/feed.xml",
        "application/rss+xml",
        "<rss version=\"2.0\"><channel><title>t</title>\
        <item><title>relative</title><link>/items/1</link></item></channel></rss>",
    );
    server.put("/source", "text/html", "openssl-1.0.1e.tar.gz");
    let secret = |path: &str| server.url(path).replace("http://", "http://bot:hunter2pw@");

    let feed = Rss { fetcher: fetcher(&secret("/feed.xml"), "", Duration::from_secs(10)), key: "k".into() };
    let items = check(&feed, &mut Map::new()).await.unwrap();
    assert_eq!(server.last_request()[header::AUTHORIZATION], "Basic Ym90Omh1bnRlcjJwdw==", "they still log in");
    assert_eq!(field(&items[0], "link"), Some(&*server.url("/items/1")));
    assert_eq!(feed.link(), Some(&*server.url("/feed.xml")), "the link of a failure's message");

    let matches = WebMatches {
        fetcher: fetcher(&secret("/source"), "", Duration::from_secs(10)),
        regexp: regex::Regex::new(r"openssl-[\d.]+[a-z]?\.tar\.gz").unwrap(),
    };
    let found = check(&matches, &mut Map::new()).await.unwrap();
    assert_eq!(field(&found[0], "link"), Some(&*server.url("/source")));

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_url = format!("http://bot:hunter2pw@{}/feed", closed.local_addr().unwrap());
    drop(closed);
    let refused = Rss { fetcher: fetcher(&closed_url, "", Duration::from_secs(10)), key: "k".into() };
    let error = check(&refused, &mut Map::new()).await.unwrap_err().to_string();
    assert!(error.starts_with("Request failure: ") && !error.contains("hunter2pw"), "{error}");
}

#[test]
fn web_configuration_errors_are_reported_together() {
    let found = errors(
        "webmatches",
        &yaml("m.yaml", "url: ftp://files.example/x\nregexp: '(unclosed'\nuser: me\nproxy: 'not a proxy'\n"),
    );
    let text = found.join("\n");
    assert!(text.contains("m.yaml:1:6: connectors.test.url: 'ftp://files.example/x' is a ftp URL"), "{text}");
    assert!(text.contains("connectors.test.regexp: invalid regular expression"), "{text}");
    assert!(text.contains("connectors.test.user: 'user' needs 'pass' too"), "{text}");
    assert!(text.contains("connectors.test.proxy: "), "{text}");
    assert_eq!(found.len(), 4, "{text}");

    let unknown = errors(
        "webmatches",
        &yaml(
            "m.yaml",
            "url: http://127.0.0.1/
regexp: x
colour: red
",
        ),
    );
    assert!(unknown[0].contains("unknown key 'colour' in connectors.test"), "{unknown:?}");

    let missing = errors("rss", &yaml("r.yaml", "delay: 1h\n"));
    assert!(missing.iter().any(|e| e.contains("url")), "{missing:?}");
}

#[tokio::test]
async fn https_runs_rustls_without_a_process_wide_provider() {
    // The binary installs aws-lc-rs as rustls's process default at start; the client
    // must work without it too (tests, other embedders). A plain-HTTP server answering
    // a TLS handshake makes the handshake fail: an error, never a panic.
    let server = Server::start().await;
    let url = server.url("/feed.xml").replacen("http://", "https://", 1);
    let error = check(&rss(&url), &mut Map::new()).await.unwrap_err().to_string();
    assert!(error.starts_with("Request failure: ") && error.contains("InvalidContentType"), "{error}");
}
