//! The store against both databases it supports: a temporary SQLite file and a fresh
//! Postgres database on the local server (`FLOTILLA_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped afterwards.

use serde_json::json;

use flotilla_store::{BulkValue, CopyRows, Dialect, Store, StoreError, redact_url};

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

/// Texts that need escaping on one road or the other.
const AWKWARD: [&str; 9] =
    ["plain", "tab\there", "new\nline", "cr\rx", "back\\slash", "\\N", "ünïcødé 日本語", "quote\"'{,}", ""];

#[tokio::test]
async fn the_bulk_roads_keep_every_character_and_null() {
    // SQLite: the bulk writer thread, read back through the pool.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/flotilla.db", dir.path().display())).await.unwrap();
    sqlx::query("CREATE TABLE bulk_t (id INTEGER PRIMARY KEY, t TEXT, n BIGINT)").execute(store.pool()).await.unwrap();
    let written = store
        .sqlite_bulk(|tx| {
            for (i, text) in AWKWARD.iter().enumerate() {
                tx.insert(
                    "INSERT INTO bulk_t (t, n) VALUES (?, ?)",
                    &[BulkValue::Text(text), BulkValue::Int(i as i64)],
                )?;
            }
            tx.insert("INSERT INTO bulk_t (t, n) VALUES (?, ?)", &[BulkValue::Null, BulkValue::Int(-1)])?;
            Ok(AWKWARD.len() as u64 + 1)
        })
        .await
        .unwrap();
    assert_eq!(written, AWKWARD.len() as u64 + 1);
    assert_bulk_rows(&store).await;
    let err = store.copy_in(&[]).await.unwrap_err().to_string();
    assert!(err.contains("COPY needs a Postgres store"), "{err}");
    store.close().await;

    // Postgres: COPY in text format.
    let (db, url) = PgDatabase::create().await;
    let store = Store::open(&url).await.unwrap();
    sqlx::query("CREATE TABLE bulk_t (id BIGSERIAL PRIMARY KEY, t TEXT, n BIGINT)")
        .execute(store.pool())
        .await
        .unwrap();
    let mut rows = CopyRows::default();
    for (i, text) in AWKWARD.iter().enumerate() {
        rows.field(Some(text)).number(i as i64).end_row();
    }
    rows.field(None).number(-1).end_row();
    let copied = store.copy_in(&[("COPY bulk_t (t, n) FROM STDIN", rows.as_bytes())]).await.unwrap();
    assert_eq!(copied, AWKWARD.len() as u64 + 1);
    assert_bulk_rows(&store).await;
    // A refused COPY (a text where a number goes) fails as a database error and
    // leaves the connection usable for the next one.
    let err = store.copy_in(&[("COPY bulk_t (t, n) FROM STDIN", b"x\tnot-a-number\n")]).await.unwrap_err();
    assert!(matches!(err, sqlx::Error::Database(_)), "{err}");
    let mut one = CopyRows::default();
    one.field(Some("after")).number(100).end_row();
    assert_eq!(store.copy_in(&[("COPY bulk_t (t, n) FROM STDIN", one.as_bytes())]).await.unwrap(), 1);
    let err = store.sqlite_bulk(|_| Ok(0)).await.unwrap_err().to_string();
    assert!(err.contains("SQLite database file"), "{err}");
    store.close().await;
    db.drop_now().await;
}

async fn assert_bulk_rows(store: &Store) {
    let rows: Vec<(Option<String>, i64)> =
        sqlx::query_as("SELECT t, n FROM bulk_t ORDER BY id").fetch_all(store.pool()).await.unwrap();
    let mut expected: Vec<(Option<String>, i64)> =
        AWKWARD.iter().enumerate().map(|(i, t)| (Some(t.to_string()), i as i64)).collect();
    expected.push((None, -1));
    assert_eq!(rows, expected);
}
