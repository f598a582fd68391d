//! Who may create subscriptions (`dispatcher.subscribe`), in each mode, over the
//! control protocol and over HTTP: `open` (anyone who reaches the control port),
//! `admin` (`subscribe NAME ADMIN_TOKEN`; before, the control port ignored the admin
//! token altogether) and `closed`. Existing subscriptions work in every mode.

use flotilla_wikimedia_core::SubscribePolicy;
use reqwest::StatusCode;

use crate::support::{Api, Harness};

const ADMIN: &str = "admin-secret";

async fn start(policy: SubscribePolicy) -> (Harness, Api) {
    let harness = Harness::start_adjusted(None, |s| s.subscribe = policy).await;
    let api = Api::start(&harness).await;
    (harness, api)
}

async fn create_over_http(api: &Api, name: &str, token: Option<&str>) -> (StatusCode, String) {
    let (status, body) =
        api.call("POST", "/api/v1/subscriptions", token, Some(&format!(r#"{{"name":"{name}"}}"#))).await;
    (status, body["error"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn open_lets_anyone_who_reaches_the_control_port_subscribe() {
    let (harness, api) = start(SubscribePolicy::Open).await;
    let mut c = harness.client().await;
    assert!(c.ask("subscribe anyone").await.starts_with("TOKEN: "));
    assert!(c.ask(&format!("subscribe admins {ADMIN}")).await.starts_with("TOKEN: "));
    assert_eq!(c.ask("subscribe guess not-the-token").await, "E005: Invalid token or name");
    // Over HTTP, creating always needs the admin token (SPEC §11).
    assert_eq!(create_over_http(&api, "web", Some(ADMIN)).await.0, StatusCode::CREATED);
    assert_eq!(create_over_http(&api, "web2", None).await.0, StatusCode::UNAUTHORIZED);
    harness.stop().await;
}

#[tokio::test]
async fn admin_needs_the_admin_token_on_the_control_port_too() {
    let (harness, api) = start(SubscribePolicy::Admin).await;
    let mut c = harness.client().await;
    assert_eq!(c.ask("subscribe anyone").await, "E022: Subscribing needs the admin token: subscribe NAME ADMIN_TOKEN");
    assert_eq!(c.ask("subscribe anyone not-the-token").await, "E005: Invalid token or name");
    assert!(c.ask("info").await.contains(" 0 subscriptions"), "nothing was created");
    let reply = c.ask(&format!("subscribe admins {ADMIN}")).await;
    let token = reply.strip_prefix("TOKEN: ").unwrap_or_else(|| panic!("{reply}"));
    // The subscription is its token's from then on, as before.
    assert_eq!(c.ask(&format!("auth admins {token}")).await, "OK");
    assert_eq!(c.ask(r#"insert json [{"wiki":"dewiki"}]"#).await, "1");
    assert_eq!(create_over_http(&api, "web", Some(ADMIN)).await.0, StatusCode::CREATED);
    assert_eq!(create_over_http(&api, "web2", Some(token)).await.0, StatusCode::UNAUTHORIZED);
    harness.stop().await;
}

#[tokio::test]
async fn closed_creates_nothing_anywhere_and_existing_subscriptions_still_work() {
    let mut harness = Harness::start_adjusted(None, |_| {}).await;
    let token = harness.client().await.subscribe_and_auth("before").await;
    harness.settings.subscribe = SubscribePolicy::Closed;
    harness.restart().await;
    let api = Api::start(&harness).await;
    let mut c = harness.client().await;
    assert_eq!(c.ask("subscribe anyone").await, "E023: Subscribing is closed");
    assert_eq!(c.ask(&format!("subscribe admins {ADMIN}")).await, "E023: Subscribing is closed");
    let (status, error) = create_over_http(&api, "web", Some(ADMIN)).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::FORBIDDEN, "creating subscriptions is closed on this dispatcher (dispatcher.subscribe: closed)")
    );
    assert_eq!(c.ask(&format!("auth before {token}")).await, "OK");
    assert_eq!(c.ask(r#"insert json [{"wiki":"dewiki"}]"#).await, "1");
    assert_eq!(c.ask("info").await, "I have 1 connections and 1 subscriptions, I am now watching 1 wikis");
    drop(api);
    harness.stop().await;
}
