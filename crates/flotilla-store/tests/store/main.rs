//! The store against both databases it supports: a temporary SQLite file and a fresh
//! Postgres database on the local server (`FLOTILLA_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped afterwards.

use serde_json::json;

use flotilla_store::{Dialect, Store, StoreError, redact_url};

/// A fresh Postgres database for one test, dropped when the guard goes.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    async fn create() -> (PgDatabase, String) {
        let admin_url = std::env::var("FLOTILLA_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let mut suffix = [0u8; 6];
        getrandom::fill(&mut suffix).unwrap();
        let name = format!("flotilla_t_{}", suffix.iter().map(|b| format!("{b:02x}")).collect::<String>());
        sqlx::any::install_default_drivers();
        let admin = sqlx::AnyPool::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("Postgres at {admin_url} is needed for this test (scripts/test starts it): {e}")
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
        admin.close().await;
        let url = match admin_url.rfind('/') {
            Some(cut) => format!("{}/{name}", &admin_url[..cut]),
            None => panic!("bad postgres url"),
        };
        (PgDatabase { admin_url, name }, url)
    }

    async fn drop_now(self) {
        let admin = sqlx::AnyPool::connect(&self.admin_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
    }
}

/// Runs `check` against SQLite and Postgres.
async fn on_both<F, Fut>(check: F)
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/sub/flotilla.db", dir.path().display());
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.dialect(), Dialect::Sqlite);
    check(store).await;

    let (db, url) = PgDatabase::create().await;
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.dialect(), Dialect::Postgres);
    check(store).await;
    db.drop_now().await;
}

#[tokio::test]
async fn state_round_trips_and_is_replaced() {
    on_both(|store| async move {
        assert_eq!(store.get_state("pulse", "Pulse-a").await.unwrap(), None);
        store.put_state("pulse", "Pulse-a", &json!({"lastupdate": 1})).await.unwrap();
        store.put_state("pulse", "Pulse-a", &json!({"lastupdate": 2, "ü": "ß"})).await.unwrap();
        assert_eq!(store.get_state("pulse", "Pulse-a").await.unwrap(), Some(json!({"lastupdate": 2, "ü": "ß"})));
        assert_eq!(store.get_state("pulse", "other").await.unwrap(), None);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn insert_row_creates_the_table_and_new_columns() {
    on_both(|store| async move {
        let first = json!({"id": "01J0000000000000000000000A", "subject": "hi", "count": 3, "load": 0.5, "ok": true});
        store.insert_row("wubot_log", first.as_object().unwrap()).await.unwrap();
        let second = json!({"subject": "again", "extra": {"a": [1]}, "missing": null});
        store.insert_row("wubot_log", second.as_object().unwrap()).await.unwrap();
        let columns = store.columns_of("wubot_log").await.unwrap();
        for c in ["row_id", "id", "subject", "count", "load", "ok", "extra", "missing"] {
            assert!(columns.contains(c), "{c} in {columns:?}");
        }
        let rows: Vec<(String, Option<i64>, Option<String>)> =
            sqlx::query_as("SELECT subject, count, extra FROM wubot_log ORDER BY row_id")
                .fetch_all(store.pool())
                .await
                .unwrap();
        assert_eq!(rows, vec![("hi".into(), Some(3), None), ("again".into(), None, Some("{\"a\":[1]}".into()))]);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn identifiers_are_checked_before_reaching_sql() {
    on_both(|store| async move {
        let row = json!({"ok": 1});
        let err = store.insert_row("x; DROP TABLE y", row.as_object().unwrap()).await.unwrap_err();
        assert!(matches!(err, StoreError::Identifier(_)), "{err}");
        let bad_column = json!({"a\"b": 1});
        assert!(store.insert_row("t", bad_column.as_object().unwrap()).await.is_err());
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn migrations_are_idempotent_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/flotilla.db", dir.path().display());
    let store = Store::open(&url).await.unwrap();
    store.put_state("a", "b", &json!(1)).await.unwrap();
    store.close().await;
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.get_state("a", "b").await.unwrap(), Some(json!(1)));
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_get_clear_errors() {
    let err = Store::open("mysql://x").await.unwrap_err().to_string();
    assert!(err.contains("expected sqlite://PATH or postgres://"), "{err}");
    let err = Store::open("postgres://user:secret@127.0.0.1:1/db").await.unwrap_err().to_string();
    assert!(err.contains("cannot open the store") && !err.contains("secret"), "{err}");
    assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
}
