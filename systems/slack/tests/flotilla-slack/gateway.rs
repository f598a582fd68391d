//! The gateway over real HTTP: what is accepted, what is refused, and that nothing
//! refused is queued.

use std::path::Path;

use flotilla_slack::event::{QUEUE_COMMAND, QUEUE_PRIVATE, QUEUE_PUBLIC};
use flotilla_test_support::TestNode;

use crate::support::*;

const NO_API: &str = "http://127.0.0.1:9/api";

/// Runs `sign.py` (Python's hmac, slack_sdk's SignatureVerifier).
fn python(args: &[&str], body: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    std::fs::write(&file, body).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flotilla-slack/sign.py");
    let mut command = std::process::Command::new("python3");
    command.arg(&script).arg(args[0]).arg(SECRET).arg(args[1]).arg(&file).args(&args[2..]);
    let out = command.output().expect("python3 runs (pip install slack_sdk)");
    assert!(out.status.success(), "sign.py failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn slacks_published_example_and_an_independent_signer_agree() {
    // Slack's example request (a slash command) at its own time: our verifier accepts
    // it (unit tests), and here Python's hmac computes the same signature.
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    assert_eq!(
        python(&["sign", "1531420618"], body.as_bytes()),
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    );

    let node = TestNode::new().await;
    let gateway = Gateway::start(&node, &section(NO_API, "")).await;
    for (i, text) in ["plain", "ünïcödé ✓ and \"quotes\"", "<@UBOT> define gopher"].iter().enumerate() {
        let ts = now();
        let body = message_event(&format!("EvPy{i}"), text, ts as f64);
        let by_python = python(&["sign", &ts.to_string()], body.as_bytes());
        let ours = sign_json(&body, ts);
        assert_eq!(by_python, ours.signature, "Python's hmac and the gateway's signer agree");
        assert_eq!(
            python(&["verify", &ts.to_string(), &ours.signature], body.as_bytes()),
            "True",
            "slack_sdk accepts ours"
        );
        let request = Signed { signature: by_python, ..ours };
        assert_eq!(post(&gateway.url(), &request, &[]).await, (200, String::new()));
        // And slack_sdk refuses what the gateway refuses.
        let mut tampered = body.clone().into_bytes();
        tampered[10] ^= 1;
        assert_eq!(python(&["verify", &ts.to_string(), &request.signature], &tampered), "False");
    }
    let queued = wait_for(&node, QUEUE_PUBLIC, 3).await;
    assert_eq!(queued.len(), 3);
    assert_eq!(queued[1]["text"], "ünïcödé ✓ and \"quotes\"");
    assert_eq!(queued[1]["key"], "team");
    assert_eq!(queued[1]["plugin"], "slack");
    gateway.stop().await;
}

#[tokio::test]
async fn refused_requests_queue_nothing() {
    let node = TestNode::new().await;
    let gateway = Gateway::start(&node, &section(NO_API, "max_body: 4KiB\n")).await;
    let url = gateway.url();
    let ts = now();
    let body = message_event("EvBad", "hello", ts as f64);
    let good = sign_json(&body, ts);

    // Every tampered byte of the body.
    for i in 0..body.len() {
        let mut tampered = body.clone().into_bytes();
        tampered[i] ^= 0x20;
        let request = Signed {
            body: tampered,
            timestamp: good.timestamp.clone(),
            signature: good.signature.clone(),
            content_type: good.content_type,
        };
        let (status, answer) = post(&url, &request, &[]).await;
        assert_eq!(status, 401, "byte {i}: {answer}");
    }
    // Tampered signature and timestamp.
    let mut sig = good.signature.clone().into_bytes();
    sig[10] = if sig[10] == b'0' { b'1' } else { b'0' };
    let bad_sig = Signed { signature: String::from_utf8(sig).unwrap(), ..sign_json(&body, ts) };
    assert_eq!(post(&url, &bad_sig, &[]).await.0, 401);
    let moved = Signed { timestamp: (ts + 1).to_string(), ..sign_json(&body, ts) };
    assert_eq!(post(&url, &moved, &[]).await.0, 401);
    // ±301 s, correctly signed: refused; ±299 s accepted later (different event ids).
    for skew in [301, -301] {
        // Against the clock now: the tampering above took a while.
        let (status, answer) = post(&url, &sign_json(&body, now() + skew), &[]).await;
        assert_eq!(status, 401, "{skew}: {answer}");
        assert!(answer.contains("from the gateway's clock"), "{answer}");
    }
    // Missing or malformed headers.
    let client = reqwest::Client::new();
    for (name, headers) in [
        ("no headers", vec![]),
        ("no signature", vec![("x-slack-request-timestamp", good.timestamp.clone())]),
        ("no timestamp", vec![("x-slack-signature", good.signature.clone())]),
        (
            "v1",
            vec![
                ("x-slack-request-timestamp", good.timestamp.clone()),
                ("x-slack-signature", good.signature.replace("v0=", "v1=")),
            ],
        ),
    ] {
        let mut request = client.post(&url).header("content-type", "application/json").body(body.clone());
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{name}");
        let answer: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert!(answer["error"].as_str().unwrap().contains("X-Slack"), "{name}: {answer}");
    }
    // Method, content type, size.
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let text_plain = Signed { content_type: "text/plain", ..sign_json(&body, ts) };
    assert_eq!(post(&url, &text_plain, &[]).await.0, 415);
    let huge = format!(r#"{{"type":"event_callback","pad":"{}"}}"#, "x".repeat(5000));
    let (status, answer) = post(&url, &sign_json(&huge, ts), &[]).await;
    assert_eq!((status, answer.contains("larger than 4096 bytes")), (413, true), "{answer}");
    // Signed, but not JSON / the wrong shape / another app / a command missing a field.
    for (body, content_type, status, says) in [
        ("{not json", "application/json", 400, "the body is not JSON"),
        ("[1,2,3]", "application/json", 400, "expected a JSON object"),
        (
            r#"{"type":"event_callback","api_app_id":"A1","team_id":"T1","event":"text"}"#,
            "application/json",
            400,
            "'event' is not an object",
        ),
        (
            r#"{"type":"event_callback","api_app_id":"A2","team_id":"T1","event":{"type":"message"}}"#,
            "application/json",
            403,
            "api_app_id is 'A2'",
        ),
        (
            "command=%2Fx&team_id=T1&channel_id=C1&text=&trigger_id=t",
            "application/x-www-form-urlencoded",
            400,
            "missing the field 'user_id'",
        ),
    ] {
        let request = Signed { content_type, ..sign_json(body, ts) };
        let (got, answer) = post(&url, &request, &[]).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer.contains(says), "{body}: {answer}");
    }
    for queue in [QUEUE_PUBLIC, QUEUE_PRIVATE, QUEUE_COMMAND] {
        assert_eq!(queued(&node, queue).await.len(), 0, "nothing queued on {queue}");
    }
    // The gateway still serves, and the good request is accepted once.
    assert_eq!(post(&url, &good, &[]).await, (200, String::new()));
    assert_eq!(wait_for(&node, QUEUE_PUBLIC, 1).await.len(), 1);
    let status = gateway.running.status();
    assert!(status["gateways"][0]["unauthorized"].as_u64().unwrap() >= body.len() as u64 + 8, "{status}");
    gateway.stop().await;
}

#[tokio::test]
async fn a_retry_storm_queues_one_message_and_the_ids_survive_a_restart() {
    let node = TestNode::new().await;
    let gateway = Gateway::start(&node, &section(NO_API, "")).await;
    let ts = now();
    let body = message_event("EvStorm", "once", ts as f64);
    assert_eq!(post(&gateway.url(), &sign_json(&body, ts), &[]).await.0, 200);
    for retry in ["1", "2", "3"] {
        let headers = [("x-slack-retry-num", retry), ("x-slack-retry-reason", "http_timeout")];
        assert_eq!(post(&gateway.url(), &sign_json(&body, ts), &headers).await.0, 200, "retry {retry}");
    }
    assert_eq!(wait_for(&node, QUEUE_PUBLIC, 1).await.len(), 1);
    assert_eq!(gateway.running.status()["gateways"][0]["duplicates"], 3);
    gateway.stop().await;

    // A new gateway on the same store still knows the id.
    let gateway = Gateway::start(&node, &section(NO_API, "")).await;
    assert_eq!(post(&gateway.url(), &sign_json(&body, now()), &[("x-slack-retry-num", "3")]).await.0, 200);
    let other = message_event("EvOther", "twice", now() as f64);
    assert_eq!(post(&gateway.url(), &sign_json(&other, now()), &[]).await.0, 200);
    let all = wait_for(&node, QUEUE_PUBLIC, 2).await;
    assert_eq!(all.iter().map(|m| m["event_id"].as_str().unwrap()).collect::<Vec<_>>(), ["EvStorm", "EvOther"]);
    gateway.stop().await;
}

#[tokio::test]
async fn challenges_routes_commands_and_ignored_types() {
    let node = TestNode::new().await;
    let gateway = Gateway::start(&node, &section(NO_API, "")).await;
    let url = gateway.url();
    let ts = now();
    let challenge =
        r#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    assert_eq!(
        post(&url, &sign_json(challenge, ts), &[]).await,
        (200, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".to_string())
    );
    let dm = serde_json::json!({"type": "event_callback", "api_app_id": "A1", "team_id": "T1", "event_id": "EvDm",
        "event": {"type": "message", "channel_type": "im", "channel": "D1", "user": "U1", "text": "psst", "ts": "1.0"}});
    assert_eq!(post(&url, &sign_json(&dm.to_string(), ts), &[]).await.0, 200);
    let join = serde_json::json!({"type": "event_callback", "api_app_id": "A1", "team_id": "T1", "event_id": "EvJoin",
        "event": {"type": "team_join", "user": {"id": "U7", "name": "newbie"}}});
    assert_eq!(post(&url, &sign_json(&join.to_string(), ts), &[]).await.0, 200);
    let chan = serde_json::json!({"type": "event_callback", "api_app_id": "A1", "team_id": "T1", "event_id": "EvChan",
        "event": {"type": "member_joined_channel", "user": "U7", "channel": "C5", "channel_type": "C"}});
    assert_eq!(post(&url, &sign_json(&chan.to_string(), ts), &[]).await.0, 200);
    let reaction = serde_json::json!({"type": "event_callback", "api_app_id": "A1", "team_id": "T1", "event_id": "EvR",
        "event": {"type": "reaction_added", "user": "U7"}});
    assert_eq!(post(&url, &sign_json(&reaction.to_string(), ts), &[]).await, (200, String::new()));
    let command = "token=gIkuvaNzQIHg97ATvDxqgjtO&team_id=T1&team_domain=example&channel_id=C2147483705&channel_name=test&user_id=U2147483697&user_name=Steve&command=%2Fweather&text=94070&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1234%2F5678&trigger_id=13345224609.738474920.8088930838d88f008e0&api_app_id=A1";
    assert_eq!(post(&url, &sign_form(command, ts), &[]).await, (200, String::new()));

    assert_eq!(wait_for(&node, QUEUE_PRIVATE, 1).await[0]["text"], "psst");
    assert_eq!(wait_for(&node, "slack_team_join", 1).await[0]["user"], "U7");
    assert_eq!(wait_for(&node, "slack_channel_join", 1).await[0]["channel"], "C5");
    let commands = wait_for(&node, QUEUE_COMMAND, 1).await;
    assert_eq!((commands[0]["command"].as_str(), commands[0]["text"].as_str()), (Some("/weather"), Some("94070")));
    assert!(commands[0].get("token").is_none());
    assert_eq!(gateway.running.status()["gateways"][0]["ignored"], 1);
    gateway.stop().await;
}

/// Two nodes, each with its own bus, sharing one Postgres store (a fleet behind a load
/// balancer): Slack's retry reaching the other node is not queued again.
#[tokio::test]
async fn two_nodes_on_one_postgres_queue_an_event_once() {
    let database = flotilla_test_support::PgDatabase::create().await;
    let alpha = TestNode::with_store(tempfile::tempdir().unwrap(), &database.url).await;
    let beta = TestNode::with_store(tempfile::tempdir().unwrap(), &database.url).await;
    let on_alpha = Gateway::start(&alpha, &section(NO_API, "")).await;
    let on_beta = Gateway::start(&beta, &section(NO_API, "")).await;
    let ts = now();
    let body = message_event("EvFleet", "once in the fleet", ts as f64);
    assert_eq!(post(&on_alpha.url(), &sign_json(&body, ts), &[]).await.0, 200);
    assert_eq!(post(&on_beta.url(), &sign_json(&body, ts), &[("x-slack-retry-num", "1")]).await.0, 200);
    let other = message_event("EvFleet2", "the other one", ts as f64);
    assert_eq!(post(&on_beta.url(), &sign_json(&other, ts), &[]).await.0, 200);
    assert_eq!(wait_for(&alpha, QUEUE_PUBLIC, 1).await.len(), 1);
    let on_b = wait_for(&beta, QUEUE_PUBLIC, 1).await;
    assert_eq!(on_b.iter().map(|m| m["event_id"].as_str().unwrap()).collect::<Vec<_>>(), ["EvFleet2"]);
    assert_eq!(on_beta.running.status()["gateways"][0]["duplicates"], 1);
    on_alpha.stop().await;
    on_beta.stop().await;
    database.drop_now().await;
}
