//! Flotilla's SQL store: one [`Store`] over SQLite (the default,
//! `sqlite://<data_dir>/flotilla.db`) and Postgres, through sqlx's `Any` driver. The
//! store is the only way to the database: no other crate sees a pool or a driver type.
//!
//! What lives here: small durable state ([`Store::get_state`]/[`Store::put_state`]),
//! rows the reactor's `SQL` plugin inserts into tables it creates on demand
//! ([`Store::insert_row`]), and a small statement API for components with tables of
//! their own: [`Store::execute`], [`Store::fetch_all`] and [`Store::begin`] (a
//! [`Transaction`]), binding [`Param`]s and returning [`Row`]s of [`SqlValue`]s, SQL in
//! the store's [`Dialect`]. Bulk rows take faster roads beside the pool: `COPY` on
//! Postgres ([`Store::copy_in`]) and a prepared-statement writer thread on SQLite
//! ([`Store::sqlite_bulk`]).
//!
//! **Migrations are per component** ([`migrate`]). The store applies only its own
//! (`migrations/{sqlite,postgres}/`: the state table) when it opens. A component with
//! tables ships its SQL files in its own folder, describes them as a static
//! [`Migrations`] built with `include_str!`, and calls [`Store::migrate`] before it
//! touches them: the IRC logger (`flotilla_irc::MIGRATIONS`) before its first batch,
//! the dispatcher (`flotilla_wikimedia_dispatcher::persist::MIGRATIONS`) in its
//! `start`. Migrating is idempotent and one query when nothing is pending; databases
//! made by the old single migrator (`_sqlx_migrations`) are taken over as they are.
//!
//! **Errors**: every operation fails with [`StoreError`]; its message says what failed
//! and where, its source is the cause, and [`StoreError::kind`] says whether the
//! database refused (retrying cannot help), was unavailable (retry later), or the
//! caller asked for something invalid. Print it with its causes (`{:#}` through anyhow,
//! or [`StoreError::chain`]).
//!
//! Times are stored as integers (Unix seconds or milliseconds) and ids as text: the
//! `Any` driver cannot decode Postgres `timestamptz` or `uuid`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

pub mod copy_rows;
mod error;
pub mod migrate;
mod sql;
pub mod sqlite_bulk;

pub use copy_rows::CopyRows;
pub use error::{DatabaseError, ErrorKind, SqliteFailure, StoreError};
pub use migrate::{Migration, Migrations};
use serde_json::{Map, Value};
pub use sql::{Param, Row, SqlValue, Transaction};
pub use sqlite_bulk::{BulkTx, BulkValue, SqliteBulk};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, AssertSqlSafe};

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
    /// SQLite file: its path, and the writer behind [`Store::sqlite_bulk`], started on
    /// first use (its two threads are not worth starting for a node that never logs in bulk).
    bulk: Option<(String, std::sync::OnceLock<SqliteBulk>)>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url_for_display).field("dialect", &self.dialect).finish()
    }
}

/// Creates a SQLite database file that does not exist yet (and its directory) for its
/// owner alone: it holds chat logs and token hashes. SQLite gives the `-wal`, `-shm`
/// and journal files the database file's mode. An existing file keeps its mode. The
/// error names the directory or file that could not be made.
fn create_private_database(path: &Path) -> Result<(), (String, std::io::Error)> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| (parent.display().to_string(), e))?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err((path.display().to_string(), e)),
    }
}

const EXPECTED_URL: &str = "expected sqlite://PATH or postgres://…";

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Checks a store URL without connecting or creating anything (`flotilla check`): the
/// scheme, and for Postgres what sqlx reads from it (`sslmode`, …) and that the
/// `sslrootcert` file holds a PEM certificate.
///
/// # Errors
/// [`StoreError::Url`], saying what is wrong.
pub fn check_url(url: &str) -> Result<(), StoreError> {
    let problem = if url.starts_with("sqlite:") {
        None
    } else if is_postgres(url) {
        check_postgres(url).err()
    } else {
        Some(EXPECTED_URL.to_string())
    };
    match problem {
        Some(reason) => Err(StoreError::Url { url: flotilla_core::redact::redact_url(url), reason }),
        None => Ok(()),
    }
}

/// What sqlx would refuse in a Postgres URL, and an `sslrootcert` that cannot be read or
/// holds no certificate: sqlx reports the first as an I/O error naming no file, and
/// skips what is not PEM, which leaves only "UnknownIssuer" at connect time.
fn check_postgres(url: &str) -> Result<(), String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| e.to_string())?;
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let root_certs = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| matches!(*key, "sslrootcert" | "ssl-root-cert" | "ssl-ca"))
        .map(|(_, value)| percent_decode(value));
    for path in root_certs {
        let certificates = CertificateDer::pem_file_iter(&path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read the CA certificates in sslrootcert {path}: {e}"))?;
        if certificates.is_empty() {
            return Err(format!("sslrootcert {path} holds no PEM certificate"));
        }
    }
    Ok(())
}

/// `%XX` escapes of a URL's query value (how a path with spaces is written), and `+`.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Store {
    /// Opens `url` (`sqlite://PATH` or `postgres://…`), creating a SQLite file and its
    /// directory when missing, and applies pending migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let display = flotilla_core::redact::redact_url(url);
        let mut bulk_path = None;
        let (dialect, connect_url) = if let Some(path) = url.strip_prefix("sqlite://").or(url.strip_prefix("sqlite:")) {
            let (path, query) = path.split_once('?').unwrap_or((path, ""));
            if path.is_empty() {
                return Err(StoreError::Url { url: display, reason: "no database file given".into() });
            }
            // Only where SQLite would create the file itself (not `mode=ro`, `mode=memory`).
            let creates = !query.contains("mode=") || query.contains("mode=rwc");
            if path != ":memory:" && creates {
                create_private_database(Path::new(path)).map_err(|(path, source)| StoreError::Directory {
                    url: display.clone(),
                    path,
                    source,
                })?;
            }
            let query = if query.contains("mode=") { query.to_string() } else { format!("mode=rwc&{query}") };
            bulk_path = (path != ":memory:").then(|| path.to_string());
            (Dialect::Sqlite, format!("sqlite://{path}?{}", query.trim_end_matches('&')))
        } else if is_postgres(url) {
            check_postgres(url).map_err(|reason| StoreError::Url { url: display.clone(), reason })?;
            (Dialect::Postgres, url.to_string())
        } else {
            return Err(StoreError::Url { url: display, reason: EXPECTED_URL.into() });
        };
        let memory = connect_url.contains(":memory:");
        if dialect == Dialect::Postgres {
            // One plain connection first: a refused or misconfigured server fails now
            // with its own message instead of after the pool's acquire timeout. (A SQLite
            // file fails at once either way.)
            use sqlx::Connection;
            let probe =
                sqlx::AnyConnection::connect(&connect_url).await.map_err(|e| StoreError::connect(&display, e))?;
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
        let pool = options.connect(&connect_url).await.map_err(|e| StoreError::connect(&display, e))?;
        let store = Store {
            pool,
            dialect,
            known_columns: Mutex::default(),
            url_for_display: display,
            connect_url,
            copier: tokio::sync::Mutex::default(),
            bulk: bulk_path.map(|path| (path, std::sync::OnceLock::new())),
        };
        store.migrate_store().await?;
        Ok(store)
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
    pub async fn copy_in(&self, copies: &[(&str, &[u8])]) -> Result<u64, StoreError> {
        use sqlx::Connection;
        if self.dialect != Dialect::Postgres {
            return Err(StoreError::Unsupported("COPY needs a Postgres store"));
        }
        let mut slot = self.copier.lock().await;
        let connection = match &mut *slot {
            Some(connection) => connection,
            None => slot.insert(
                sqlx::postgres::PgConnection::connect(&self.connect_url)
                    .await
                    .map_err(StoreError::query("connecting for COPY"))?,
            ),
        };
        let copied = async {
            let mut tx =
                Connection::begin(connection).await.map_err(StoreError::query("starting a COPY transaction"))?;
            let mut rows = 0;
            for (statement, data) in copies {
                let failed = |e| StoreError::statement(statement, e);
                let mut copy = tx.copy_in_raw(statement).await.map_err(failed)?;
                copy.send(*data).await.map_err(failed)?;
                rows += copy.finish().await.map_err(failed)?;
            }
            tx.commit().await.map_err(StoreError::query("committing a COPY transaction"))?;
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
    pub async fn sqlite_bulk<F>(&self, work: F) -> Result<u64, StoreError>
    where
        F: FnOnce(&mut BulkTx<'_>) -> Result<u64, StoreError> + Send + 'static,
    {
        match &self.bulk {
            Some((path, bulk)) => bulk.get_or_init(|| SqliteBulk::start(path.clone())).transaction(work).await,
            None => Err(StoreError::Unsupported("bulk inserts need a SQLite database file")),
        }
    }

    /// Runs one statement (SQL in this store's [`Dialect`]) through the pool; returns
    /// the rows it affected.
    pub async fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let done = sql::query(sql, params).execute(&self.pool).await.map_err(|e| StoreError::statement(sql, e))?;
        Ok(done.rows_affected())
    }

    /// Runs one query through the pool; returns every row.
    pub async fn fetch_all(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let rows = sql::query(sql, params).fetch_all(&self.pool).await.map_err(|e| StoreError::statement(sql, e))?;
        rows.iter().map(Row::from_any).collect()
    }

    /// Starts a transaction on a connection of the pool.
    pub async fn begin(&self) -> Result<Transaction, StoreError> {
        let inner = self.pool.begin().await.map_err(StoreError::query("starting a transaction"))?;
        Ok(Transaction { inner })
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
        let rows = sql::query(&sql, &[namespace.into(), key.into()])
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query(format!("reading state {namespace}/{key}")))?;
        let Some(row) = rows else { return Ok(None) };
        let row = Row::from_any(&row)?;
        serde_json::from_str(row.text(0)?)
            .map(Some)
            .map_err(|e| StoreError::decode(format!("state {namespace}/{key}"))(e.into()))
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
        let value = value.to_string();
        sql::query(&sql, &[namespace.into(), key.into(), Param::Text(&value), Param::Int(now as i64)])
            .execute(&self.pool)
            .await
            .map_err(StoreError::query(format!("writing state {namespace}/{key}")))?;
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
                .map_err(StoreError::query(format!("inserting into {table}")))?;
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
        query.execute(&self.pool).await.map_err(StoreError::query(format!("inserting into {table}")))?;
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
            .map_err(StoreError::query(format!("creating table {table}")))?;
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
                    return Err(StoreError::query(format!("adding column {column} to {table}"))(e));
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
        let rows: Vec<sqlx::any::AnyRow> = match self.dialect {
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
        .map_err(StoreError::query(format!("listing columns of {table}")))?;
        rows.iter().map(|r| Row::from_any(r)?.text(0).map(str::to_string)).collect()
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
