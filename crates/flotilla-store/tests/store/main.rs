//! The store against both databases it supports: a temporary SQLite file and a fresh
//! Postgres database on the local server (`FLOTILLA_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped afterwards.

mod tls;

use flotilla_test_support::PgDatabase;
use serde_json::json;

use flotilla_store::{
    BulkValue, CopyRows, Dialect, ErrorKind, Migration, Migrations, Param, SqlValue, Store, StoreError,
};

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

    let db = PgDatabase::create().await;
    let url = db.url.clone();
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
        let rows = store.fetch_all("SELECT subject, count, extra FROM wubot_log ORDER BY row_id", &[]).await.unwrap();
        let rows: Vec<(String, Option<i64>, Option<String>)> = rows
            .iter()
            .map(|r| {
                (r.text(0).unwrap().to_string(), r.opt_int(1).unwrap(), r.opt_text(2).unwrap().map(str::to_string))
            })
            .collect();
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
}

#[tokio::test]
async fn a_sqlite_file_that_cannot_be_opened_fails_at_once_with_its_path() {
    // A directory where the database file should be: SQLite cannot open it.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().display());
    let started = std::time::Instant::now();
    let error = Store::open(&url).await.unwrap_err();
    let line = flotilla_core::error_chain(&error);
    assert!(line.starts_with(&format!("cannot open the store at {url}: ")), "{line}");
    assert!(line.contains("unable to open database file"), "{line}");
    // Not after the pool's acquire timeout (10 s).
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}

/// Texts that need escaping on one road or the other.
const AWKWARD: [&str; 9] =
    ["plain", "tab\there", "new\nline", "cr\rx", "back\\slash", "\\N", "ünïcødé 日本語", "quote\"'{,}", ""];

#[tokio::test]
async fn the_bulk_roads_keep_every_character_and_null() {
    // SQLite: the bulk writer thread, read back through the pool.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/flotilla.db", dir.path().display())).await.unwrap();
    store.execute("CREATE TABLE bulk_t (id INTEGER PRIMARY KEY, t TEXT, n BIGINT)", &[]).await.unwrap();
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
    let db = PgDatabase::create().await;
    let url = db.url.clone();
    let store = Store::open(&url).await.unwrap();
    store.execute("CREATE TABLE bulk_t (id BIGSERIAL PRIMARY KEY, t TEXT, n BIGINT)", &[]).await.unwrap();
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
    assert_eq!(err.kind(), ErrorKind::Refused, "{err:?}");
    assert!(err.chain().contains("invalid input syntax"), "{}", err.chain());
    let mut one = CopyRows::default();
    one.field(Some("after")).number(100).end_row();
    assert_eq!(store.copy_in(&[("COPY bulk_t (t, n) FROM STDIN", one.as_bytes())]).await.unwrap(), 1);
    let err = store.sqlite_bulk(|_| Ok(0)).await.unwrap_err().to_string();
    assert!(err.contains("SQLite database file"), "{err}");
    store.close().await;
    db.drop_now().await;
}

async fn assert_bulk_rows(store: &Store) {
    let rows: Vec<(Option<String>, i64)> = store
        .fetch_all("SELECT t, n FROM bulk_t ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.opt_text(0).unwrap().map(str::to_string), r.int(1).unwrap()))
        .collect();
    let mut expected: Vec<(Option<String>, i64)> =
        AWKWARD.iter().enumerate().map(|(i, t)| (Some(t.to_string()), i as i64)).collect();
    expected.push((None, -1));
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn errors_say_whether_retrying_can_help() {
    on_both(|store| async move {
        store.execute("CREATE TABLE kinds_t (id BIGINT PRIMARY KEY, name TEXT NOT NULL)", &[]).await.unwrap();
        let insert = format!(
            "INSERT INTO kinds_t (id, name) VALUES ({}, {})",
            store.dialect().placeholder(1),
            store.dialect().placeholder(2)
        );
        store.execute(&insert, &[Param::Int(1), "one".into()]).await.unwrap();
        // A duplicate key, a NULL where none may go, a syntax error, a missing table: the
        // database refuses the statement; running it again fails again.
        let duplicate = store.execute(&insert, &[Param::Int(1), "again".into()]).await.unwrap_err();
        let null = store.execute(&insert, &[Param::Int(2), Param::Null]).await.unwrap_err();
        let syntax = store.execute("INSERT INTO kinds_t VALUES VALUES", &[]).await.unwrap_err();
        let missing = store.fetch_all("SELECT x FROM no_such_table", &[]).await.unwrap_err();
        for err in [&duplicate, &null, &syntax, &missing] {
            assert_eq!(err.kind(), ErrorKind::Refused, "{err:?}");
            // The message says where; the cause is the source, and the chain prints both.
            assert!(matches!(err, StoreError::Query { .. }), "{err:?}");
            assert!(std::error::Error::source(err).is_some(), "{err:?}");
            assert!(err.chain().starts_with("running "), "{}", err.chain());
        }
        assert!(duplicate.to_string().contains("INSERT INTO kinds_t"), "{duplicate}");
        assert!(missing.chain().contains("no_such_table"), "{}", missing.chain());
        // The caller's mistakes.
        let row = json!({"ok": 1});
        let bad = store.insert_row("no good", row.as_object().unwrap()).await.unwrap_err();
        assert_eq!(bad.kind(), ErrorKind::Invalid);
        let rows = store.fetch_all("SELECT name FROM kinds_t", &[]).await.unwrap();
        assert_eq!(rows[0].values(), &[SqlValue::Text("one".into())]);
        let wrong_type = rows[0].int(0).unwrap_err();
        assert_eq!(wrong_type.kind(), ErrorKind::Invalid, "{wrong_type:?}");
        store.close().await;
    })
    .await;

    // Nobody listens on port 1: the database is unavailable, retry later.
    let err = Store::open("postgres://user:secret@127.0.0.1:1/db").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    assert!(std::error::Error::source(&err).is_some(), "{err:?}");
    assert!(!err.chain().contains("secret"), "{}", err.chain());
    // A URL of no database the store knows is the caller's mistake.
    assert_eq!(Store::open("mysql://x").await.unwrap_err().kind(), ErrorKind::Invalid);
    // Bulk roads a database does not offer.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/flotilla.db", dir.path().display())).await.unwrap();
    assert_eq!(store.copy_in(&[]).await.unwrap_err().kind(), ErrorKind::Invalid);
    // A refused bulk insert on SQLite is a refusal too, with SQLite's words.
    store.execute("CREATE TABLE bulk_k (t TEXT NOT NULL)", &[]).await.unwrap();
    let err = store
        .sqlite_bulk(|tx| tx.insert("INSERT INTO bulk_k (t) VALUES (?)", &[BulkValue::Null]).map(|()| 1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{err:?}");
    assert!(err.chain().contains("NOT NULL"), "{}", err.chain());
    store.close().await;
}

#[tokio::test]
async fn a_transaction_commits_together_or_not_at_all() {
    on_both(|store| async move {
        store.execute("CREATE TABLE tx_t (id BIGINT PRIMARY KEY)", &[]).await.unwrap();
        let insert = format!("INSERT INTO tx_t (id) VALUES ({})", store.dialect().placeholder(1));
        let mut tx = store.begin().await.unwrap();
        assert_eq!(tx.execute(&insert, &[Param::Int(1)]).await.unwrap(), 1);
        tx.execute(&insert, &[Param::Int(2)]).await.unwrap();
        assert_eq!(tx.fetch_all("SELECT id FROM tx_t", &[]).await.unwrap().len(), 2);
        tx.commit().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        tx.execute(&insert, &[Param::Int(3)]).await.unwrap();
        assert_eq!(tx.execute(&insert, &[Param::Int(1)]).await.unwrap_err().kind(), ErrorKind::Refused);
        drop(tx);
        let mut tx = store.begin().await.unwrap();
        tx.execute(&insert, &[Param::Int(4)]).await.unwrap();
        tx.rollback().await.unwrap();
        let ids: Vec<i64> = store
            .fetch_all("SELECT id FROM tx_t ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.int(0).unwrap())
            .collect();
        assert_eq!(ids, vec![1, 2]);
        // Expressions read as what they compute.
        let sql = match store.dialect() {
            Dialect::Sqlite => "SELECT COUNT(*), 1.5, NULL, 'x' FROM tx_t",
            Dialect::Postgres => "SELECT COUNT(*), CAST(1.5 AS DOUBLE PRECISION), NULL, 'x' FROM tx_t",
        };
        let rows = store.fetch_all(sql, &[]).await.unwrap();
        assert_eq!(rows[0].values()[0], SqlValue::Int(2));
        assert_eq!(rows[0].values()[1], SqlValue::Float(1.5));
        assert_eq!(rows[0].values()[2], SqlValue::Null);
        assert_eq!(rows[0].values()[3], SqlValue::Text("x".into()));
        store.close().await;
    })
    .await;
}

/// A component's tables, version 1 (also known to the old global migrator as 2).
const THINGS_V1: &str = "CREATE TABLE things (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
CREATE INDEX things_name ON things (name)";
const THINGS_V2: &str = "ALTER TABLE things ADD COLUMN extra TEXT";

static THINGS: Migrations = Migrations {
    component: "things",
    sqlite: &[Migration::new(1, "things", THINGS_V1).legacy(2)],
    postgres: &[Migration::new(1, "things", THINGS_V1).legacy(2)],
};
static THINGS_LATER: Migrations = Migrations {
    component: "things",
    sqlite: &[Migration::new(1, "things", THINGS_V1).legacy(2), Migration::new(2, "extra", THINGS_V2)],
    postgres: &[Migration::new(1, "things", THINGS_V1).legacy(2), Migration::new(2, "extra", THINGS_V2)],
};
/// A component two migrators apply at once.
static RACING: Migrations = Migrations {
    component: "racing",
    sqlite: &[Migration::new(1, "racing", "CREATE TABLE racing (x BIGINT)")],
    postgres: &[Migration::new(1, "racing", "CREATE TABLE racing (x BIGINT)")],
};
/// Another component whose second migration fails halfway.
static BROKEN: Migrations = Migrations {
    component: "broken",
    sqlite: &[
        Migration::new(1, "ok", "CREATE TABLE broken_ok (x BIGINT)"),
        Migration::new(2, "bad", "CREATE TABLE broken_half (x BIGINT); INSERT INTO no_such_table VALUES (1)"),
    ],
    postgres: &[
        Migration::new(1, "ok", "CREATE TABLE broken_ok (x BIGINT)"),
        Migration::new(2, "bad", "CREATE TABLE broken_half (x BIGINT); INSERT INTO no_such_table VALUES (1)"),
    ],
};

async fn applied(store: &Store, component: &str) -> Vec<i64> {
    let sql = format!(
        "SELECT version FROM flotilla_migrations WHERE component = {} ORDER BY version",
        store.dialect().placeholder(1)
    );
    store.fetch_all(&sql, &[component.into()]).await.unwrap().iter().map(|r| r.int(0).unwrap()).collect()
}

#[tokio::test]
async fn each_component_migrates_its_own_tables_once() {
    on_both(|store| async move {
        assert_eq!(applied(&store, "store").await, vec![1]);
        assert_eq!(applied(&store, "things").await, Vec::<i64>::new());
        // THINGS_V1 is not idempotent by itself: running it twice would fail.
        store.migrate(&THINGS).await.unwrap();
        store.migrate(&THINGS).await.unwrap();
        assert_eq!(applied(&store, "things").await, vec![1]);
        store.execute("INSERT INTO things (id, name) VALUES (1, 'a')", &[]).await.unwrap();
        // A later release adds a migration: only it runs.
        store.migrate(&THINGS_LATER).await.unwrap();
        assert_eq!(applied(&store, "things").await, vec![1, 2]);
        assert!(store.columns_of("things").await.unwrap().contains("extra"));
        // Concurrent migrators apply each migration once.
        let (a, b) = tokio::join!(store.migrate(&RACING), store.migrate(&RACING));
        a.unwrap();
        b.unwrap();
        assert_eq!(applied(&store, "racing").await, vec![1]);

        // A failing migration leaves nothing of itself, and says which one failed.
        let err = store.migrate(&BROKEN).await.unwrap_err();
        assert!(matches!(err, StoreError::Migrate { component: "broken", version: 2, .. }), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Refused);
        assert!(err.chain().contains("broken migration 2 (bad)"), "{}", err.chain());
        assert_eq!(applied(&store, "broken").await, vec![1]);
        assert!(store.columns_of("broken_ok").await.unwrap().contains("x"));
        assert!(store.columns_of("broken_half").await.unwrap().is_empty());
        store.close().await;
    })
    .await;
}

/// A database made by the old single sqlx migrator (`_sqlx_migrations`, versions 1 to
/// 3 across components) keeps its data, and what it applied is not applied again.
#[tokio::test]
async fn a_database_of_the_old_migrator_keeps_working() {
    async fn make_old(url: &str, dialect: Dialect) {
        // What sqlx 0.9's migrator creates, and the store's old 0001_state.sql.
        let (timestamp, blob, yes, no) = match dialect {
            Dialect::Sqlite => ("TIMESTAMP", "BLOB", "TRUE", "FALSE"),
            Dialect::Postgres => ("TIMESTAMPTZ", "BYTEA", "TRUE", "FALSE"),
        };
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        for sql in [
            format!(
                "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
                 installed_on {timestamp} NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
                 checksum {blob} NOT NULL, execution_time BIGINT NOT NULL)"
            ),
            "CREATE TABLE flotilla_state (namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, \
             updated_at BIGINT NOT NULL, PRIMARY KEY (namespace, key))"
                .to_string(),
            "INSERT INTO flotilla_state VALUES ('old', 'k', '\"kept\"', 1)".to_string(),
            // Version 2 was this component's; 3 another's; 4 failed halfway.
            THINGS_V1.split(';').next().unwrap().to_string(),
            "CREATE INDEX things_name ON things (name)".to_string(),
            "INSERT INTO things (id, name) VALUES (7, 'old row')".to_string(),
            format!(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES \
                 (1, 'state', {yes}, ''::{blob}, 1), (2, 'things', {yes}, ''::{blob}, 1), \
                 (3, 'other', {yes}, ''::{blob}, 1), (4, 'failed', {no}, ''::{blob}, 1)"
            )
            .replace("''::BLOB", "x''"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    static FAILED_BEFORE: Migrations = Migrations {
        component: "failed",
        sqlite: &[Migration::new(1, "failed", "CREATE TABLE failed_before (x BIGINT)").legacy(4)],
        postgres: &[Migration::new(1, "failed", "CREATE TABLE failed_before (x BIGINT)").legacy(4)],
    };
    async fn check(url: &str) {
        let store = Store::open(url).await.unwrap();
        assert_eq!(store.get_state("old", "k").await.unwrap(), Some(json!("kept")));
        assert_eq!(applied(&store, "store").await, vec![1]);
        // Applied by the old migrator: recorded, not run again (it would fail: no IF NOT
        // EXISTS); the next one runs.
        store.migrate(&THINGS_LATER).await.unwrap();
        assert_eq!(applied(&store, "things").await, vec![1, 2]);
        let rows = store.fetch_all("SELECT id, name, extra FROM things", &[]).await.unwrap();
        assert_eq!(rows[0].values(), &[SqlValue::Int(7), SqlValue::Text("old row".into()), SqlValue::Null]);
        // What failed under the old migrator runs now.
        store.migrate(&FAILED_BEFORE).await.unwrap();
        assert!(store.columns_of("failed_before").await.unwrap().contains("x"));
        store.close().await;
        // And all of it again on the next start is nothing to do.
        let store = Store::open(url).await.unwrap();
        store.migrate(&THINGS_LATER).await.unwrap();
        store.migrate(&FAILED_BEFORE).await.unwrap();
        store.close().await;
    }

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/old.db", dir.path().display());
    make_old(&format!("{url}?mode=rwc"), Dialect::Sqlite).await;
    check(&url).await;

    let db = PgDatabase::create().await;
    let url = db.url.clone();
    make_old(&url, Dialect::Postgres).await;
    check(&url).await;
    db.drop_now().await;
}
