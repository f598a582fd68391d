//! Subscriptions survive a restart, on SQLite and on Postgres: names, tokens (only
//! their hashes are stored), formats and definitions; deletions too.

use flotilla_wikimedia_core::OutputFormat;
use flotilla_wikimedia_dispatcher::ControlLimits;
use flotilla_wikimedia_source::sample::recorded_events;

use crate::support::{Harness, PgDatabase, rendered};

async fn survives_a_restart(mut harness: Harness) {
    let mut c = harness.client().await;
    let token = c.subscribe_and_auth("keeper").await;
    let long_regex = format!("^(?:{})$", (0..300).map(|i| format!("Page{i}")).collect::<Vec<_>>().join("|"));
    let document = format!(
        r#"insert json [{{"wiki":"en.wikipedia.org","page":"Main Page"}},{{"wiki":"kowiki","user":"廢后","flags":["nobot","nominor"]}},{{"wiki":"dewiki","page_rx":"{long_regex}"}}]"#
    );
    assert_eq!(c.ask(&document).await, "3");
    assert_eq!(c.ask(r#"remove json [{"wiki":"enwiki","page":"Main Page"}]"#).await, "1");
    assert_eq!(c.ask("format xml").await, "OK");
    let listed = c.ask("list").await;
    let mut gone = harness.client().await;
    let gone_token = gone.subscribe_and_auth("gone").await;
    assert_eq!(gone.ask(&format!("unsubscribe gone {gone_token}")).await, "OK");
    drop((c, gone));

    // The token is not in the store, only its hash.
    let rows = harness.store.fetch_all("SELECT token_hash FROM dispatch_subscriptions", &[]).await.unwrap();
    let rows: Vec<(String,)> = rows.iter().map(|r| (r.text(0).unwrap().to_string(),)).collect();
    assert_eq!(rows.len(), 1);
    assert_ne!(rows[0].0, token);
    assert_eq!(rows[0].0.len(), 64);

    harness.restart().await;
    let mut c = harness.client().await;
    assert_eq!(c.ask(&format!("auth keeper {token}")).await, "OK");
    assert_eq!(c.ask("list").await, listed);
    assert_eq!(c.ask(&format!("auth gone {gone_token}")).await, "E005: Invalid token or name");
    assert_eq!(c.ask("subscribe keeper").await, "E002: This subscription exist");
    assert_eq!(c.ask("info").await, "I have 1 connections and 1 subscriptions, I am now watching 2 wikis");

    // The restored format and definitions are what delivery uses.
    let kowiki = recorded_events().into_iter().find(|e| e.contains("kowiki")).unwrap();
    harness.publish_events(std::slice::from_ref(&kowiki)).await;
    assert_eq!(harness.queue("sub.keeper", 1).await, vec![rendered(&kowiki, OutputFormat::Xml)]);
    harness.stop().await;
}

#[tokio::test]
async fn subscriptions_survive_a_restart_on_sqlite() {
    survives_a_restart(Harness::start(None, ControlLimits::default()).await).await;
}

#[tokio::test]
async fn subscriptions_survive_a_restart_on_postgres() {
    let db = PgDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    survives_a_restart(Harness::start_with_store(dir, &db.url, None, ControlLimits::default()).await).await;
    db.drop_now().await;
}

#[tokio::test]
async fn the_definition_cap_refuses_the_whole_insert() {
    let mut harness = Harness::start(None, ControlLimits::default()).await;
    harness.settings.limits.max_definitions = 3;
    harness.restart().await;
    let mut c = harness.client().await;
    c.subscribe_and_auth("small").await;
    assert_eq!(c.ask(r#"insert json [{"wiki":"enwiki"},{"wiki":"dewiki"}]"#).await, "2");
    assert_eq!(
        c.ask(r#"insert json [{"wiki":"frwiki"},{"wiki":"itwiki"}]"#).await,
        "E015: Too many definitions (at most 3 per subscription)"
    );
    assert_eq!(c.ask("list").await, r#"[{"wiki":"dewiki"},{"wiki":"enwiki"}]"#);
    harness.stop().await;
}

/// A store made before migrations were per component (sqlx's `_sqlx_migrations`, the
/// dispatcher's tables as its version 3) keeps its subscriptions: the dispatcher's
/// migration counts as applied and the rows load.
#[tokio::test]
async fn subscriptions_of_a_database_from_the_old_migrator_load() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/store.db", dir.path().display());
    let token = "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMN";
    sqlx::any::install_default_drivers();
    let old = sqlx::AnyPool::connect(&format!("{url}?mode=rwc")).await.unwrap();
    let statements = [
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
         checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)"
            .to_string(),
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES \
         (1, 'state', TRUE, x'00', 1), (2, 'irc', TRUE, x'00', 1), (3, 'dispatch', TRUE, x'00', 1)"
            .to_string(),
        "CREATE TABLE flotilla_state (namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, \
         updated_at BIGINT NOT NULL, PRIMARY KEY (namespace, key))"
            .to_string(),
        include_str!("../../migrations/sqlite/0001_dispatch.sql").to_string(),
        format!(
            "INSERT INTO dispatch_subscriptions VALUES ('veteran', '{}', 'json', 1)",
            flotilla_wikimedia_core::TokenHash::of(token).to_hex()
        ),
        "INSERT INTO dispatch_definitions VALUES ('veteran', 'k1', 'enwiki', 'Main Page', '', '', '', '', 1)"
            .to_string(),
    ];
    for sql in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&old).await.unwrap();
    }
    old.close().await;

    let harness = Harness::start_with_store(dir, &url, None, ControlLimits::default()).await;
    let mut c = harness.client().await;
    assert_eq!(c.ask(&format!("auth veteran {token}")).await, "OK");
    let listed = c.ask("list").await;
    assert!(listed.contains("Main Page") && listed.contains("enwiki"), "{listed}");
    harness.stop().await;
}
