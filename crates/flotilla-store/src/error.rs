//! The store's one error type, [`StoreError`], and what a caller can do about an error:
//! [`StoreError::kind`].
//!
//! Every variant says what failed and where in its message and keeps the cause as its
//! [`source`](std::error::Error::source), so `{:#}` (anyhow) prints
//! `inserting into wubot_log: error returned from database: …`. Code that prints only
//! the top message (`to_string()`, `%error` in a log) should print the chain instead.

use std::ffi::c_int;

use libsqlite3_sys as ffi;

/// What a caller can do about a failed store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The database rejected this statement or its data: a constraint, a value of the
    /// wrong type or too big, a syntax error, a missing table or column. Running the
    /// same statement with the same data again fails again.
    Refused,
    /// The database could not be reached or could not do the work now: connection
    /// refused or lost, pool timeout, I/O error, disk full, busy or locked, a deadlock.
    /// Retrying later may succeed.
    Unavailable,
    /// The caller asked for something the store cannot do as asked: an invalid URL or
    /// identifier, an operation this database does not offer, a value that does not
    /// decode as the caller expected.
    Invalid,
}

/// Why a store operation failed. Its [`kind`](StoreError::kind) says whether retrying
/// can help; its source is the underlying error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL '{url}': {reason}")]
    Url { url: String, reason: String },
    #[error("cannot open the store at {url}")]
    Connect {
        url: String,
        #[source]
        source: DatabaseError,
    },
    /// The Postgres server's TLS certificate failed the check `sslmode=verify-ca` or
    /// `verify-full` asks for: retrying with the same `sslrootcert` cannot help.
    #[error(
        "cannot open the store at {url}: a TLS certificate problem: the server's certificate is not trusted (sslrootcert must name the CA that signed it; verify-full also wants the URL's host in it)"
    )]
    Certificate {
        url: String,
        #[source]
        source: DatabaseError,
    },
    #[error("cannot open the store at {url}: cannot create {path}")]
    Directory {
        url: String,
        /// The directory, or the database file, that could not be created.
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("migrating the store failed: {component} migration {version} ({name})")]
    Migrate {
        component: &'static str,
        version: i64,
        name: &'static str,
        #[source]
        source: Box<StoreError>,
    },
    #[error(
        "invalid SQL identifier '{0}': use letters, digits and _ (not starting with a digit), at most 63 characters"
    )]
    Identifier(String),
    /// A statement through the pool (or on Postgres' COPY connection) failed.
    #[error("{context}")]
    Query {
        context: String,
        #[source]
        source: DatabaseError,
    },
    /// A statement on the SQLite bulk writer ([`crate::sqlite_bulk`]) failed.
    #[error("{context}")]
    Bulk {
        context: String,
        #[source]
        source: SqliteFailure,
    },
    /// A stored value or a row's column is not what the caller expected.
    #[error("{context}")]
    Decode {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The operation needs another database or setup than this store has.
    #[error("{0}")]
    Unsupported(&'static str),
}

impl StoreError {
    /// Whether the database refused the work, could not do it now, or was asked for
    /// something impossible.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Url { .. } | StoreError::Identifier(_) | StoreError::Decode { .. } => ErrorKind::Invalid,
            StoreError::Unsupported(_) => ErrorKind::Invalid,
            // Whatever the reason (a server down, a wrong password, a full disk), a store
            // that does not open is one to try again once someone has looked.
            StoreError::Connect { .. } | StoreError::Certificate { .. } | StoreError::Directory { .. } => {
                ErrorKind::Unavailable
            }
            StoreError::Migrate { source, .. } => source.kind(),
            StoreError::Query { source, .. } => source.kind(),
            StoreError::Bulk { source, .. } => source.kind(),
        }
    }

    /// Connecting to the store at `url` (redacted) failed with `e`.
    pub(crate) fn connect(url: &str, e: sqlx::Error) -> StoreError {
        let source = DatabaseError(e);
        if source.is_certificate_problem() {
            StoreError::Certificate { url: url.to_string(), source }
        } else {
            StoreError::Connect { url: url.to_string(), source }
        }
    }

    pub(crate) fn query(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> StoreError {
        let context = context.into();
        move |e| StoreError::Query { context, source: DatabaseError(e) }
    }

    /// `sql` failed: the context is the statement's first words.
    pub(crate) fn statement(sql: &str, e: sqlx::Error) -> StoreError {
        StoreError::Query { context: crate::sql::context(sql), source: DatabaseError(e) }
    }

    pub(crate) fn decode(
        context: impl Into<String>,
    ) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> StoreError {
        let context = context.into();
        move |source| StoreError::Decode { context, source }
    }

    /// Whether the database refused this as a duplicate key.
    pub(crate) fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Query { source: DatabaseError(sqlx::Error::Database(db)), .. } => {
                db.kind() == sqlx::error::ErrorKind::UniqueViolation
            }
            _ => false,
        }
    }

    /// The message with every cause after it, `: `-separated (what anyhow's `{:#}`
    /// prints), for logs and status lines that hold one string.
    pub fn chain(&self) -> String {
        flotilla_core::error_chain(self)
    }
}

/// An error of the database driver (sqlx). Its message already ends with its own
/// cause's (sqlx writes `error returned from database: <the database's message>`), so
/// the chain ends here rather than print that cause twice; [`DatabaseError::sqlx`]
/// gives the driver's error itself.
#[derive(Debug)]
pub struct DatabaseError(pub(crate) sqlx::Error);

impl DatabaseError {
    /// The driver's error.
    pub fn sqlx(&self) -> &sqlx::Error {
        &self.0
    }

    /// Whether rustls refused the server's certificate (or the server sent none). sqlx
    /// hands the handshake's `io::Error` on as it is, with rustls's error inside.
    fn is_certificate_problem(&self) -> bool {
        let rustls_error = match &self.0 {
            sqlx::Error::Io(e) => e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
            sqlx::Error::Tls(e) => e.downcast_ref::<rustls::Error>(),
            _ => None,
        };
        matches!(rustls_error, Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented))
    }

    /// See [`ErrorKind`]: SQLSTATE classes on Postgres, result codes on SQLite.
    pub fn kind(&self) -> ErrorKind {
        use sqlx::Error as E;
        match &self.0 {
            E::Database(db) => {
                if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    postgres_kind(pg.code())
                } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    let code = db.code().and_then(|c| c.parse::<c_int>().ok()).unwrap_or(ffi::SQLITE_ERROR);
                    sqlite_kind(code)
                } else {
                    ErrorKind::Refused
                }
            }
            E::Configuration(_)
            | E::InvalidArgument(_)
            | E::RowNotFound
            | E::TypeNotFound { .. }
            | E::ColumnIndexOutOfBounds { .. }
            | E::ColumnNotFound(_)
            | E::ColumnDecode { .. }
            | E::Encode(_)
            | E::Decode(_)
            | E::AnyDriverError(_)
            | E::InvalidSavePointStatement => ErrorKind::Invalid,
            // I/O, TLS, protocol trouble, pool timeouts, a crashed worker, and whatever
            // else the driver adds: the connection, not the statement.
            _ => ErrorKind::Unavailable,
        }
    }
}

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DatabaseError {}

/// Postgres: connection trouble (08), a transaction to retry (40: serialization
/// failure, deadlock), too few resources (53), operator intervention (57: shutdown,
/// statement cancelled), system errors (58), internal errors (XX), and a lock not
/// available (55P03) are worth retrying; the rest (data, integrity, syntax, undefined
/// objects, privileges) is the statement's.
fn postgres_kind(sqlstate: &str) -> ErrorKind {
    match sqlstate.get(..2) {
        Some("08" | "40" | "53" | "57" | "58" | "XX") => ErrorKind::Unavailable,
        _ if sqlstate == "55P03" || sqlstate == "55006" => ErrorKind::Unavailable,
        _ => ErrorKind::Refused,
    }
}

/// SQLite: errors of the statement (SQL error, missing table, constraint, type
/// mismatch, too big, out of range) are refusals; busy, locked, I/O, full, cannot open
/// and the like are worth retrying.
pub(crate) fn sqlite_kind(code: c_int) -> ErrorKind {
    match code & 0xff {
        ffi::SQLITE_ERROR | ffi::SQLITE_CONSTRAINT | ffi::SQLITE_MISMATCH | ffi::SQLITE_TOOBIG | ffi::SQLITE_RANGE => {
            ErrorKind::Refused
        }
        _ => ErrorKind::Unavailable,
    }
}

/// An error SQLite's C API returned to the bulk writer: its result code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SqliteFailure {
    /// SQLite's (extended) result code; 0 when the failure is not SQLite's own (the
    /// writer thread is gone, a path with a NUL byte).
    pub code: c_int,
    pub message: String,
}

impl SqliteFailure {
    /// See [`ErrorKind`]; a failure that is not SQLite's own is [`ErrorKind::Unavailable`].
    pub fn kind(&self) -> ErrorKind {
        if self.code == 0 { ErrorKind::Unavailable } else { sqlite_kind(self.code) }
    }
}
