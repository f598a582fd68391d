//! Statements of components with their own tables, through the store's pool: bind
//! [`Param`]s, get [`Row`]s of [`SqlValue`]s, and group statements in a
//! [`Transaction`]. SQL text is the caller's and must respect [`crate::Dialect`]
//! (placeholders from [`crate::Dialect::placeholder`]).

use sqlx::any::{AnyArguments, AnyRow, AnyTypeInfoKind};
use sqlx::{Any, AssertSqlSafe, Row as _, ValueRef as _};

use crate::StoreError;

/// A value bound to a placeholder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Float(f64),
    Text(&'a str),
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(text: &'a str) -> Self {
        Param::Text(text)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(text: &'a String) -> Self {
        Param::Text(text)
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(text: Option<&'a str>) -> Self {
        text.map_or(Param::Null, Param::Text)
    }
}

impl From<i64> for Param<'_> {
    fn from(number: i64) -> Self {
        Param::Int(number)
    }
}

impl From<f64> for Param<'_> {
    fn from(number: f64) -> Self {
        Param::Float(number)
    }
}

/// A value read from a row. Booleans read as `Int` (0 or 1).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// One row of a result, its columns in the order the statement selected them.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    values: Vec<SqlValue>,
}

impl Row {
    /// The columns' values.
    pub fn values(&self) -> &[SqlValue] {
        &self.values
    }

    /// Column `i` (0-based), which must be text.
    pub fn text(&self, i: usize) -> Result<&str, StoreError> {
        self.opt_text(i)?.ok_or_else(|| self.mismatch(i, "text"))
    }

    /// Column `i`, which must be text or NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<&str>, StoreError> {
        match self.values.get(i) {
            Some(SqlValue::Text(text)) => Ok(Some(text)),
            Some(SqlValue::Null) => Ok(None),
            _ => Err(self.mismatch(i, "text")),
        }
    }

    /// Column `i`, which must be an integer.
    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?.ok_or_else(|| self.mismatch(i, "an integer"))
    }

    /// Column `i`, which must be an integer or NULL.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.values.get(i) {
            Some(SqlValue::Int(number)) => Ok(Some(*number)),
            Some(SqlValue::Null) => Ok(None),
            _ => Err(self.mismatch(i, "an integer")),
        }
    }

    fn mismatch(&self, i: usize, expected: &str) -> StoreError {
        let found = match self.values.get(i) {
            None => format!("the row has {} columns", self.values.len()),
            Some(value) => format!("found {value:?}"),
        };
        StoreError::Decode { context: format!("reading column {i} as {expected}"), source: found.into() }
    }

    pub(crate) fn from_any(row: &AnyRow) -> Result<Row, StoreError> {
        let decoding = |i: usize| StoreError::query(format!("decoding column {i}"));
        let mut values = Vec::with_capacity(row.len());
        for i in 0..row.len() {
            let raw = row.try_get_raw(i).map_err(decoding(i))?;
            let kind = if raw.is_null() { AnyTypeInfoKind::Null } else { raw.type_info().kind() };
            let value = match kind {
                AnyTypeInfoKind::Null => SqlValue::Null,
                AnyTypeInfoKind::Bool => SqlValue::Int(i64::from(row.try_get::<bool, _>(i).map_err(decoding(i))?)),
                AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt => {
                    SqlValue::Int(row.try_get(i).map_err(decoding(i))?)
                }
                AnyTypeInfoKind::Real | AnyTypeInfoKind::Double => {
                    SqlValue::Float(row.try_get(i).map_err(decoding(i))?)
                }
                AnyTypeInfoKind::Text => SqlValue::Text(row.try_get(i).map_err(decoding(i))?),
                AnyTypeInfoKind::Blob => SqlValue::Blob(row.try_get(i).map_err(decoding(i))?),
            };
            values.push(value);
        }
        Ok(Row { values })
    }
}

/// `sql` with `params` bound, ready to run.
pub(crate) fn query<'q>(sql: &str, params: &[Param<'q>]) -> sqlx::query::Query<'q, Any, AnyArguments> {
    let mut query = sqlx::query(AssertSqlSafe(sql.to_string()));
    for param in params {
        query = match *param {
            Param::Null => query.bind(None::<String>),
            Param::Int(number) => query.bind(number),
            Param::Float(number) => query.bind(number),
            Param::Text(text) => query.bind(text),
        };
    }
    query
}

/// Statements that commit together or not at all; dropped without
/// [`commit`](Transaction::commit), it rolls back.
pub struct Transaction {
    pub(crate) inner: sqlx::Transaction<'static, Any>,
}

impl Transaction {
    /// Runs one statement; returns the rows it affected.
    pub async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let done = query(sql, params).execute(&mut *self.inner).await.map_err(|e| StoreError::statement(sql, e))?;
        Ok(done.rows_affected())
    }

    /// Runs one query; returns every row.
    pub async fn fetch_all(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let rows = query(sql, params).fetch_all(&mut *self.inner).await.map_err(|e| StoreError::statement(sql, e))?;
        rows.iter().map(Row::from_any).collect()
    }

    /// Makes the statements durable.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.inner.commit().await.map_err(StoreError::query("committing a transaction"))
    }

    /// Undoes the statements.
    pub async fn rollback(self) -> Result<(), StoreError> {
        self.inner.rollback().await.map_err(StoreError::query("rolling back a transaction"))
    }
}

/// Where a statement failed, for its error: `running <the SQL's first words>`.
pub(crate) fn context(sql: &str) -> String {
    const SHOWN: usize = 80;
    let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match sql.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("running {}…", &sql[..cut]),
        None => format!("running {sql}"),
    }
}
