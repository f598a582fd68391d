//! The web UI in a real headless Chromium (driven over WebDriver), against real
//! `flotilla run` nodes: the fleet page with live data and its graph, logging in, a
//! form without its CSRF token refused, `/tail` showing a message sent with `flotilla
//! send` without a reload (and a subject of `<script>alert(1)</script>` as text), bad
//! input said on the page, an expired session, phone width, and `/logs` finding a line
//! really logged from ngIRCd. Screenshots of each page are taken (into docs/screenshots/
//! with `FLOTILLA_SCREENSHOTS=docs`).

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use flotilla_test_support::webdriver::Browser;

use crate::support::{NodeProcess, Workspace};

const ADMIN_TOKEN: &str = "webui-test-admin-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(20);

/// A workspace whose node has `http.admin_token` set.
fn workspace_with_token(config: &str) -> Workspace {
    let ws = Workspace::new(config);
    let text = std::fs::read_to_string(ws.config()).unwrap();
    std::fs::write(ws.config(), text.replacen("http:\n", &format!("http:\n  admin_token: {ADMIN_TOKEN}\n"), 1))
        .unwrap();
    ws
}

/// Where the screenshots go: docs/screenshots/ when `FLOTILLA_SCREENSHOTS=docs` (to
/// refresh the committed ones), else a directory under the system's temporary one, so
/// a test run leaves the checkout as it found it. Taken either way.
fn screenshots() -> PathBuf {
    if std::env::var("FLOTILLA_SCREENSHOTS").is_ok_and(|v| v == "docs") {
        return PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    }
    let dir = std::env::temp_dir().join("flotilla-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One GET over a plain socket: (status line, headers, body).
fn raw_get(node: &NodeProcess, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(&node.http).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", node.http).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

async fn log_in(browser: &Browser, base: &str) {
    browser.goto(&format!("{base}/login")).await.unwrap();
    browser.fill("#token", ADMIN_TOKEN).await.unwrap();
    browser.click(&browser.find("#login").await.unwrap()).await.unwrap();
    browser.wait_for_text("header .who", "admin", WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_shows_the_fleet_tails_live_and_refuses_forms_without_csrf() {
    let ws = workspace_with_token("connectors:\n  Pulse-web:\n    type: pulse\n    delay: 1s\n");
    let node = ws.start();
    let base = format!("http://{}", node.http);

    // Headers: a policy that allows no inline script, assets cached by content hash.
    let (status, headers, body) = raw_get(&node, "/");
    assert!(status.contains("200"), "{status}");
    assert!(headers.contains("content-security-policy: default-src 'none'; script-src 'self'"), "{headers}");
    assert!(!headers.contains("unsafe-inline"));
    let style = body.split("href=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap().to_string();
    assert!(style.starts_with("/assets/style.") && style.ends_with(".css"), "{style}");
    let (status, headers, _) = raw_get(&node, &style);
    assert!(status.contains("200") && headers.contains("immutable"), "{status} {headers}");
    assert!(raw_get(&node, "/assets/style.css").0.contains("404"));

    let browser = Browser::start(1280, 1000).await.unwrap();

    // Without a login: read-only, the public view; other pages ask for a login.
    browser.goto(&format!("{base}/")).await.unwrap();
    assert!(browser.text_of("header .who").await.unwrap().contains("read-only"));
    browser.wait_for_text("#connectors", "Pulse-web", WAIT).await.unwrap();
    browser.goto(&format!("{base}/tail")).await.unwrap();
    assert!(browser.text_of("main").await.unwrap().contains("Log in with the admin token"));

    // A wrong token is refused on the page.
    browser.goto(&format!("{base}/login")).await.unwrap();
    browser.fill("#token", "not-the-token").await.unwrap();
    browser.click(&browser.find("#login").await.unwrap()).await.unwrap();
    browser.wait_for_text(".notice.error", "not the admin token", WAIT).await.unwrap();
    browser.screenshot(&screenshots().join("login.png")).await.unwrap();

    log_in(&browser, &base).await;

    // The fleet with live data: the pulse connector has emitted, and its line in the
    // graph has left zero (its latest point is above the bottom of the plot).
    let (b, at) = (&browser, base.as_str());
    let emitted = browser
        .wait_for("the pulse connector to emit", WAIT, move || async move {
            b.goto(&format!("{at}/")).await.ok()?;
            let row = b.text_of("tr[data-connector='Pulse-web']").await.ok()?;
            let emitted: u64 = row.split_whitespace().nth(5)?.parse().ok()?;
            (emitted >= 2).then_some(emitted)
        })
        .await
        .unwrap();
    assert!(emitted >= 2);
    let points = browser
        .execute("return document.querySelector(\"polyline[data-name='Pulse-web']\").getAttribute('points')", vec![])
        .await
        .unwrap();
    let last_y: f64 = points.as_str().unwrap().rsplit(' ').next().unwrap().split(',').nth(1).unwrap().parse().unwrap();
    assert!(last_y < 216.0, "the latest minute is drawn above zero: {points}");
    assert!(browser.text_of("#queues").await.unwrap().contains("reactor"));
    assert!(browser.text_of("#summary").await.unwrap().contains("reactor messages"));
    browser.screenshot(&screenshots().join("fleet.png")).await.unwrap();

    // A form without its CSRF token is refused, and nothing changes (still logged in).
    browser
        .execute("document.querySelector(\"form[action='/logout'] input[name=csrf]\").remove()", vec![])
        .await
        .unwrap();
    browser.click(&browser.find("form[action='/logout'] button").await.unwrap()).await.unwrap();
    browser.wait_for_text(".notice.error", "CSRF token is missing or wrong", WAIT).await.unwrap();
    browser.goto(&format!("{base}/")).await.unwrap();
    assert!(browser.text_of("header .who").await.unwrap().contains("admin"), "still logged in");

    // /tail: a message sent with `flotilla send` appears without a reload; a subject
    // that is a script shows as text; the condition filters.
    let out = ws.run(&["send", "--queue", "webtest", "--field", "subject=first one"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    browser.goto(&format!("{base}/tail?queue=webtest&where=subject+imatches+script%7Cshown")).await.unwrap();
    browser.wait_for_text("#live-status", "live: connected", WAIT).await.unwrap();
    assert!(!browser.text_of("#messages").await.unwrap().contains("first one"), "filtered out by the condition");
    browser.execute("window.__marker = 'not reloaded'", vec![]).await.unwrap();
    for subject in ["hidden one", "<script>alert(1)</script>", "shown as well"] {
        let out = ws.run(&["send", "--queue", "webtest", "--field", &format!("subject={subject}")]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    browser.wait_for_text("#messages", "shown as well", WAIT).await.unwrap();
    let list = browser.text_of("#messages").await.unwrap();
    assert!(list.contains("<script>alert(1)</script>"), "{list}");
    assert!(!list.contains("hidden one"), "{list}");
    let marker = browser.execute("return window.__marker", vec![]).await.unwrap();
    assert_eq!(marker, "not reloaded");
    let scripts = browser.execute("return document.querySelectorAll('#messages script').length", vec![]).await.unwrap();
    assert_eq!(scripts, 0);
    browser.screenshot(&screenshots().join("tail.png")).await.unwrap();
    // Rendered by the server (a reload, or no JavaScript): escaped text as well.
    browser.goto(&format!("{base}/tail?queue=webtest&where=subject+imatches+script")).await.unwrap();
    assert_eq!(browser.text_of("#messages li .subject").await.unwrap(), "<script>alert(1)</script>");
    assert!(browser.source().await.unwrap().contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    // /notifications: grouped by mailbox, sticky and unseen first; "mark seen" is
    // recorded (and survives a reload); a javascript: link is not a link.
    for fields in [
        ["subject=build failed", "mailbox=ci", "color=red", "link=https://ci.example/42", "sticky=0"],
        ["subject=disk almost full", "mailbox=ops", "color=#ffaa00", "link=javascript:alert(1)", "sticky=1"],
        ["subject=build passed", "mailbox=ci", "color=green", "link=https://ci.example/43", "sticky=0"],
    ] {
        let mut args = vec!["send", "--queue", "notifications"];
        for field in &fields {
            args.extend(["--field", field]);
        }
        let out = ws.run(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    browser.goto(&format!("{base}/notifications")).await.unwrap();
    let ci = browser.text_of("section[data-mailbox='ci']").await.unwrap();
    assert!(ci.contains("2 unseen"), "{ci}");
    assert!(ci.find("build passed").unwrap() < ci.find("build failed").unwrap(), "newest first: {ci}");
    assert!(browser.find("section[data-mailbox='ci'] a[href='https://ci.example/42']").await.is_ok());
    assert!(browser.find_all("a[href^='javascript']").await.unwrap().is_empty());
    assert!(browser.text_of("section[data-mailbox='ops'] li.sticky").await.unwrap().contains("disk almost full"));
    browser.screenshot(&screenshots().join("notifications.png")).await.unwrap();
    browser.click(&browser.find("section[data-mailbox='ci'] button.seen").await.unwrap()).await.unwrap();
    browser.wait_for_text(".notice.info", "Marked seen", WAIT).await.unwrap();
    browser.goto(&format!("{base}/notifications")).await.unwrap();
    assert!(browser.text_of("section[data-mailbox='ci'] h2").await.unwrap().contains("0 unseen"));
    assert!(browser.text_of("section[data-mailbox='ops'] h2").await.unwrap().contains("1 unseen"));

    // Bad input: said on the page.
    for (path, expected) in [
        ("/tail?queue=no-such-queue", "There is no queue named 'no-such-queue'"),
        ("/tail?queue=webtest&where=subject+frobnicates", "The condition does not parse"),
        ("/logs?q=hello", "There is no IRC log in this store yet"),
    ] {
        browser.goto(&format!("{base}{path}")).await.unwrap();
        browser.wait_for_text(".notice.error", expected, WAIT).await.unwrap();
    }

    // Phone width: nothing wider than the screen (tables scroll inside their box).
    browser.resize(390, 844).await.unwrap();
    browser.goto(&format!("{base}/")).await.unwrap();
    let overflow = browser
        .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth", vec![])
        .await
        .unwrap();
    assert_eq!(overflow, 0, "the page is no wider than a phone");
    browser.screenshot(&screenshots().join("fleet-phone.png")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_said_on_the_page() {
    let ws = workspace_with_token("webui:\n  session_ttl: 2s\n");
    let node = ws.start();
    let base = format!("http://{}", node.http);
    let browser = Browser::start(1024, 768).await.unwrap();
    log_in(&browser, &base).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    browser.goto(&format!("{base}/tail")).await.unwrap();
    browser.wait_for_text(".notice.error", "your session has expired; log in again", WAIT).await.unwrap();
    assert!(browser.text_of("header .who").await.unwrap().contains("read-only"));
}

/// An IRC client of the test's own on ngIRCd, that says one line in a channel.
fn say_on_irc(port: u16, channel: &str, text: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    write!(stream, "NICK webwriter\r\nUSER webwriter 0 * :webwriter\r\n").unwrap();
    let mut line = String::new();
    while !line.contains(" 001 ") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "ngIRCd closed the connection");
        if let Some(token) = line.strip_prefix("PING ") {
            write!(stream, "PONG {token}").unwrap();
        }
    }
    write!(stream, "JOIN {channel}\r\n").unwrap();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0);
        if line.contains(" 366 ") {
            break;
        }
    }
    write!(stream, "PRIVMSG {channel} :{text}\r\n").unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_finds_a_line_logged_from_ngircd() {
    let irc = flotilla_test_support::Ngircd::start(flotilla_test_support::NgircdOptions::default());
    let ws = workspace_with_token(&format!(
        "connectors:\n  Logbot:\n    type: irc\n    server: 127.0.0.1:{}\n    nick: logbot\n    channels: ['#weblog']\n    \
         log: true\n",
        irc.port
    ));
    let node = ws.start();
    let base = format!("http://{}", node.http);
    let browser = Browser::start(1280, 900).await.unwrap();
    log_in(&browser, &base).await;

    // Wait for the bot to be in the channel (its join is logged), then say the line.
    let (b, at) = (&browser, base.as_str());
    browser
        .wait_for("the bot's join in the log", WAIT, move || async move {
            b.goto(&format!("{at}/logs?network=&channel=%23weblog")).await.ok()?;
            b.text_of("#lines").await.ok().filter(|t| t.contains("logbot")).map(drop)
        })
        .await
        .unwrap();
    let _writer = say_on_irc(irc.port, "#weblog", "the quick brown zebrafox jumps <b>over</b>");
    let found = browser
        .wait_for("the line in a search", WAIT, move || async move {
            b.goto(&format!("{at}/logs?q=zebrafox")).await.ok()?;
            b.text_of("#lines").await.ok().filter(|t| t.contains("zebrafox"))
        })
        .await
        .unwrap();
    assert!(found.contains("the quick brown zebrafox jumps <b>over</b>"), "{found}");
    assert!(found.contains("webwriter") && found.contains("#weblog"), "{found}");
    browser.screenshot(&screenshots().join("logs.png")).await.unwrap();

    // Words that are not there find nothing; a query FTS5 rejects is said on the page.
    browser.goto(&format!("{base}/logs?q=notsaidanywhere")).await.unwrap();
    assert!(browser.find("#no-lines").await.is_ok());
    browser.goto(&format!("{base}/logs?q=%22unterminated")).await.unwrap();
    browser.wait_for_text(".notice.error", "The search engine rejected the query", WAIT).await.unwrap();

    // By network and channel: the channel list links to the channel's lines.
    let network =
        browser.execute("return document.querySelector('#network option:nth-child(2)').value", vec![]).await.unwrap();
    let network = network.as_str().unwrap().to_string();
    browser.goto(&format!("{base}/logs?network={network}")).await.unwrap();
    browser.click(&browser.find("#channels a").await.unwrap()).await.unwrap();
    browser.wait_for_text("#lines", "zebrafox", WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_made_in_the_ui_gets_the_next_matching_change() {
    let redis_dir = tempfile::tempdir().unwrap();
    let redis = flotilla_test_support::RedisServer::start(redis_dir.path());
    let events_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/wikimedia");
    let mut files: Vec<_> = std::fs::read_dir(&events_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let lines: Vec<String> = files
        .iter()
        .map(|f| serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(f).unwrap()).unwrap().to_string())
        .collect();
    let ws = workspace_with_token(&format!(
        "redis:\n  url: redis://127.0.0.1:{}/0\nconnectors:\n  replay:\n    type: wikimedia-file\n    path: EVENTS\n    \
         rate: 20\n    loop: true\n",
        redis.port
    ));
    let events = ws.dir.path().join("events.jsonl");
    std::fs::write(&events, lines.join("\n")).unwrap();
    let config = std::fs::read_to_string(ws.config()).unwrap().replace("EVENTS", &events.display().to_string());
    std::fs::write(ws.config(), config).unwrap();
    let node = ws.start();
    let base = format!("http://{}", node.http);
    let browser = Browser::start(1280, 1000).await.unwrap();
    log_in(&browser, &base).await;

    // Create: the token is shown once.
    browser.goto(&format!("{base}/subscriptions")).await.unwrap();
    browser.fill("#new-name", "webbot").await.unwrap();
    browser.click(&browser.find("#create").await.unwrap()).await.unwrap();
    let token = browser.wait_for_text("#new-token", "shown this once", WAIT).await.unwrap();
    let token = token.rsplit(' ').next().unwrap().trim().to_string();
    assert_eq!(token.len(), 40, "{token}");
    assert!(token.chars().all(|c| c.is_ascii_uppercase()));

    // A document the dispatcher rejects is said on the page, in its own words.
    browser.fill("section[data-subscription='webbot'] textarea", r#"[{"wiki": "nowhere"}]"#).await.unwrap();
    browser.click(&browser.find("section[data-subscription='webbot'] button.insert").await.unwrap()).await.unwrap();
    browser.wait_for_text(".notice.error", "E014: Unknown wiki: nowhere", WAIT).await.unwrap();

    // A definition for every change on kowiki: the next replayed one is delivered.
    browser.fill("section[data-subscription='webbot'] textarea", r#"[{"wiki": "kowiki"}]"#).await.unwrap();
    browser.click(&browser.find("section[data-subscription='webbot'] button.insert").await.unwrap()).await.unwrap();
    browser.wait_for_text(".notice.info", "Inserted: 1", WAIT).await.unwrap();
    assert!(browser.text_of("section[data-subscription='webbot']").await.unwrap().contains("kowiki"));
    browser.screenshot(&screenshots().join("subscriptions.png")).await.unwrap();
    let delivered = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let out = std::process::Command::new("redis-cli")
                .args(["-p", &redis.port.to_string(), "--raw", "LRANGE", "webbot", "0", "0"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !text.is_empty() || std::time::Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
    assert!(delivered.starts_with("kowiki|"), "pipe format, a kowiki change: {delivered:?}");
}
