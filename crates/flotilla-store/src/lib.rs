//! Flotilla's SQL store: one [`Store`] over SQLite (the default,
//! `sqlite://<data_dir>/flotilla.db`) and Postgres, through sqlx's `Any` driver, with
//! migrations embedded in the binary (one directory per dialect under `migrations/`).
//!
//! What lives here: small durable state ([`Store::get_state`]/[`Store::put_state`]),
//! rows the reactor's `SQL` plugin inserts into tables it creates on demand
//! ([`Store::insert_row`]), and the tables of the dispatcher and the IRC logger. Bulk
//! rows take faster roads beside the pool: `COPY` on Postgres ([`Store::copy_in`]) and
//! a prepared-statement writer thread on SQLite ([`Store::sqlite_bulk`]).
//!
//! Times are stored as integers (Unix seconds or milliseconds) and ids as text: the
//! `Any` driver cannot decode Postgres `timestamptz` or `uuid`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

pub mod copy_rows;
pub mod sqlite_bulk;

pub use copy_rows::CopyRows;
use serde_json::{Map, Value};
pub use sqlite_bulk::{BulkError, BulkTx, BulkValue, SqliteBulk};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};

/// Which database a store talks to; SQL text differs in placeholders and types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The `n`-th (1-based) bind placeholder.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// An auto-incrementing integer primary key column definition.
    pub fn serial_primary_key(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
        }
    }

    fn float_type(self) -> &'static str {
        match self {
            Dialect::Sqlite => "REAL",
            Dialect::Postgres => "DOUBLE PRECISION",
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL '{url}': {reason}")]
    Url { url: String, reason: String },
    #[error("cannot open the store at {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("migrating the store failed: {0}")]
    Migrate(String),
    #[error(
        "invalid SQL identifier '{0}': use letters, digits and _ (not starting with a digit), at most 63 characters"
    )]
    Identifier(String),
    #[error("{context}: {detail}")]
    Query { context: String, detail: String },
}

fn query_error(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> StoreError {
    let context = context.into();
    move |e| StoreError::Query { context, detail: e.to_string() }
}

/// A connection pool to the configured database.
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// Columns known to exist per table, so `insert_row` asks the catalog once.
    known_columns: Mutex<HashMap<String, HashSet<String>>>,
    url_for_display: String,
    /// The URL as given (it may hold a password: never log it), for connections the
    /// Any pool cannot offer.
    connect_url: String,
    /// Postgres: the connection [`Store::copy_in`] uses, opened on first use.
    copier: tokio::sync::Mutex<Option<sqlx::postgres::PgConnection>>,
    /// SQLite file: the writer behind [`Store::sqlite_bulk`].
    bulk: Option<SqliteBulk>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url_for_display).field("dialect", &self.dialect).finish()
    }
}

/// The URL with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Store {
    /// Opens `url` (`sqlite://PATH` or `postgres://…`), creating a SQLite file and its
    /// directory when missing, and applies pending migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let display = redact_url(url);
        let mut bulk_path = None;
        let (dialect, connect_url) = if let Some(path) = url.strip_prefix("sqlite://").or(url.strip_prefix("sqlite:")) {
            let (path, query) = path.split_once('?').unwrap_or((path, ""));
            if path.is_empty() {
                return Err(StoreError::Url { url: display, reason: "no database file given".into() });
            }
            if path != ":memory:"
                && let Some(parent) = Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::Connect {
                    url: display.clone(),
                    detail: format!("cannot create directory {}: {e}", parent.display()),
                })?;
            }
            let query = if query.contains("mode=") { query.to_string() } else { format!("mode=rwc&{query}") };
            bulk_path = (path != ":memory:").then(|| path.to_string());
            (Dialect::Sqlite, format!("sqlite://{path}?{}", query.trim_end_matches('&')))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Dialect::Postgres, url.to_string())
        } else {
            return Err(StoreError::Url { url: display, reason: "expected sqlite://PATH or postgres://…".into() });
        };
        let memory = connect_url.contains(":memory:");
        if !memory {
            // One plain connection first: a refused or misconfigured server fails now
            // with its own message instead of after the pool's acquire timeout.
            use sqlx::Connection;
            let probe = sqlx::AnyConnection::connect(&connect_url)
                .await
                .map_err(|e| StoreError::Connect { url: display.clone(), detail: e.to_string() })?;
            let _ = probe.close().await;
        }
        let options = AnyPoolOptions::new()
            // An in-memory SQLite database exists per connection: keep exactly one.
            .max_connections(if memory {
                1
            } else if dialect == Dialect::Sqlite {
                4
            } else {
                8
            })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL lets readers run beside the writer; the busy timeout makes
                        // concurrent writers wait instead of failing.
                        sqlx::query("PRAGMA journal_mode=WAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA busy_timeout=10000").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA synchronous=NORMAL").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        let pool = options
            .connect(&connect_url)
            .await
            .map_err(|e| StoreError::Connect { url: display.clone(), detail: e.to_string() })?;
        let store = Store {
            pool,
            dialect,
            known_columns: Mutex::default(),
            url_for_display: display,
            connect_url,
            copier: tokio::sync::Mutex::default(),
            bulk: bulk_path.map(SqliteBulk::start),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.dialect {
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator.run(&self.pool).await.map_err(|e| StoreError::Migrate(e.to_string()))
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Postgres only: runs each `COPY … FROM STDIN` statement with its data (in the
    /// format the statement names; [`CopyRows`] builds the default text format) in one
    /// transaction, and returns the rows copied.
    /// COPY is several times faster than INSERT for bulk rows, and sqlx offers it only
    /// on a plain Postgres connection, so the store keeps one for it, opened on first
    /// use and dropped after any error (it may be mid-COPY); the next call reopens it.
    pub async fn copy_in(&self, copies: &[(&str, &[u8])]) -> Result<u64, sqlx::Error> {
        use sqlx::Connection;
        if self.dialect != Dialect::Postgres {
            return Err(sqlx::Error::Configuration("COPY needs a Postgres store".into()));
        }
        let mut slot = self.copier.lock().await;
        let connection = match &mut *slot {
            Some(connection) => connection,
            None => slot.insert(sqlx::postgres::PgConnection::connect(&self.connect_url).await?),
        };
        let copied = async {
            let mut tx = Connection::begin(connection).await?;
            let mut rows = 0;
            for (statement, data) in copies {
                let mut copy = tx.copy_in_raw(statement).await?;
                copy.send(*data).await?;
                rows += copy.finish().await?;
            }
            tx.commit().await?;
            Ok(rows)
        }
        .await;
        if copied.is_err() {
            *slot = None;
        }
        copied
    }

    /// SQLite file only: runs `work`'s inserts in one transaction on the store's bulk
    /// writer ([`sqlite_bulk`]), several times faster than INSERTs through the pool.
    pub async fn sqlite_bulk<F>(&self, work: F) -> Result<u64, BulkError>
    where
        F: FnOnce(&mut BulkTx<'_>) -> Result<u64, BulkError> + Send + 'static,
    {
        match &self.bulk {
            Some(bulk) => bulk.transaction(work).await,
            None => Err(BulkError::Failed("bulk inserts need a SQLite database file".into())),
        }
    }

    /// The pool, for components with their own tables (their SQL must respect
    /// [`Store::dialect`]).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The URL with its password hidden.
    pub fn display_url(&self) -> &str {
        &self.url_for_display
    }

    /// A stored JSON value.
    pub async fn get_state(&self, namespace: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let sql = format!(
            "SELECT value FROM flotilla_state WHERE namespace = {} AND key = {}",
            self.dialect.placeholder(1),
            self.dialect.placeholder(2)
        );
        let row: Option<AnyRow> = sqlx::query(AssertSqlSafe(sql))
            .bind(namespace)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error(format!("reading state {namespace}/{key}")))?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.try_get(0).map_err(query_error("decoding state"))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Query { context: format!("state {namespace}/{key}"), detail: e.to_string() })
    }

    /// Stores a JSON value, replacing any previous one.
    pub async fn put_state(&self, namespace: &str, key: &str, value: &Value) -> Result<(), StoreError> {
        let p = |n| self.dialect.placeholder(n);
        let sql = format!(
            "INSERT INTO flotilla_state (namespace, key, value, updated_at) VALUES ({}, {}, {}, {}) \
             ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            p(1),
            p(2),
            p(3),
            p(4)
        );
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        sqlx::query(AssertSqlSafe(sql))
            .bind(namespace)
            .bind(key)
            .bind(value.to_string())
            .bind(now as i64)
            .execute(&self.pool)
            .await
            .map_err(query_error(format!("writing state {namespace}/{key}")))?;
        Ok(())
    }

    /// Inserts one row into `table`, creating the table (with a `row_id` key, so a
    /// message's own `id` field is an ordinary column) and any missing columns first. Strings become TEXT, integers BIGINT, other numbers a
    /// float type, booleans 0/1, lists and maps JSON text.
    pub async fn insert_row(&self, table: &str, row: &Map<String, Value>) -> Result<(), StoreError> {
        check_identifier(table)?;
        for column in row.keys() {
            check_identifier(column)?;
        }
        self.ensure_columns(table, row).await?;
        if row.is_empty() {
            let sql = format!("INSERT INTO \"{table}\" DEFAULT VALUES");
            sqlx::query(AssertSqlSafe(sql))
                .execute(&self.pool)
                .await
                .map_err(query_error(format!("inserting into {table}")))?;
            return Ok(());
        }
        let columns: Vec<String> = row.keys().map(|c| format!("\"{c}\"")).collect();
        let placeholders: Vec<String> = (1..=row.len()).map(|n| self.dialect.placeholder(n)).collect();
        let sql = format!("INSERT INTO \"{table}\" ({}) VALUES ({})", columns.join(", "), placeholders.join(", "));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for value in row.values() {
            query = match value {
                Value::Null => query.bind(None::<String>),
                Value::Bool(b) => query.bind(i64::from(*b)),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => query.bind(i),
                    None => query.bind(n.as_f64().unwrap_or(f64::NAN)),
                },
                Value::String(s) => query.bind(s.clone()),
                other => query.bind(other.to_string()),
            };
        }
        query.execute(&self.pool).await.map_err(query_error(format!("inserting into {table}")))?;
        Ok(())
    }

    async fn ensure_columns(&self, table: &str, row: &Map<String, Value>) -> Result<(), StoreError> {
        let missing: Vec<(&String, &Value)> = {
            let known = self.known_columns.lock().unwrap_or_else(|p| p.into_inner());
            match known.get(table) {
                Some(columns) => row.iter().filter(|(c, _)| !columns.contains(c.as_str())).collect(),
                None => row.iter().collect(),
            }
        };
        if missing.is_empty() && self.known_columns.lock().unwrap_or_else(|p| p.into_inner()).contains_key(table) {
            return Ok(());
        }
        let create = format!("CREATE TABLE IF NOT EXISTS \"{table}\" (row_id {})", self.dialect.serial_primary_key());
        sqlx::query(AssertSqlSafe(create))
            .execute(&self.pool)
            .await
            .map_err(query_error(format!("creating table {table}")))?;
        let mut existing = self.columns_of(table).await?;
        for (column, value) in missing {
            if existing.contains(column.as_str()) {
                continue;
            }
            let sql_type = match value {
                Value::Number(n) if n.is_i64() || n.is_u64() => "BIGINT",
                Value::Number(_) => self.dialect.float_type(),
                Value::Bool(_) => "BIGINT",
                _ => "TEXT",
            };
            let alter = format!("ALTER TABLE \"{table}\" ADD COLUMN \"{column}\" {sql_type}");
            if let Err(e) = sqlx::query(AssertSqlSafe(alter)).execute(&self.pool).await {
                // Another writer may have added it a moment ago.
                existing = self.columns_of(table).await?;
                if !existing.contains(column.as_str()) {
                    return Err(query_error(format!("adding column {column} to {table}"))(e));
                }
            }
            existing.insert(column.clone());
        }
        self.known_columns.lock().unwrap_or_else(|p| p.into_inner()).insert(table.to_string(), existing);
        Ok(())
    }

    /// The column names of a table.
    pub async fn columns_of(&self, table: &str) -> Result<HashSet<String>, StoreError> {
        check_identifier(table)?;
        let rows: Vec<AnyRow> = match self.dialect {
            Dialect::Sqlite => {
                sqlx::query(AssertSqlSafe(format!("SELECT name FROM pragma_table_info('{table}')")))
                    .fetch_all(&self.pool)
                    .await
            }
            Dialect::Postgres => {
                sqlx::query(
                    "SELECT column_name::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1",
                )
                .bind(table)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(query_error(format!("listing columns of {table}")))?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(query_error("decoding column names"))).collect()
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Table and column names must be plain identifiers: they are spliced into SQL.
pub fn check_identifier(name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let ok = name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok { Ok(()) } else { Err(StoreError::Identifier(name.to_string())) }
}

impl FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sqlite" => Ok(Dialect::Sqlite),
            "postgres" => Ok(Dialect::Postgres),
            other => Err(format!("unknown dialect {other}")),
        }
    }
}
