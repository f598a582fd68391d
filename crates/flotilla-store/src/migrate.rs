//! Migrations, per component: each component (the store itself, the IRC logger, the
//! dispatcher, …) ships its SQL files in its own folder and hands them to
//! [`Store::migrate`] as a [`Migrations`] value before it touches its tables.
//!
//! Applied migrations are recorded in `flotilla_migrations (component, version, name,
//! applied_at)`. Each pending migration runs in its own transaction together with its
//! record: it is applied entirely or not at all, and two processes migrating at once
//! cannot both apply it (the second's record is a duplicate key; it then counts the
//! migration as applied by the first). When every migration is applied, `migrate` is one
//! query.
//!
//! Databases made before migrations were per component hold sqlx's `_sqlx_migrations`
//! table with one global numbering (1 state, 2 IRC logs, 3 dispatcher). A migration
//! that names its old number ([`Migration::legacy`]) and finds it applied there is
//! recorded as applied without running again.

use std::collections::HashSet;

use crate::sql::Param;
use crate::{Dialect, Store, StoreError};

/// One migration: a version (increasing within its component), a name, and its SQL
/// (one or more statements).
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
    /// Its version in the old global `_sqlx_migrations` numbering, if it was one.
    pub legacy_version: Option<i64>,
}

impl Migration {
    pub const fn new(version: i64, name: &'static str, sql: &'static str) -> Migration {
        Migration { version, name, sql, legacy_version: None }
    }

    /// The same migration, known as `version` to the old global migrator.
    pub const fn legacy(self, version: i64) -> Migration {
        Migration { legacy_version: Some(version), ..self }
    }
}

/// A component's migrations, one list per dialect, usually built with `include_str!`:
///
/// ```
/// use flotilla_store::{Migration, Migrations};
/// pub static MIGRATIONS: Migrations = Migrations {
///     component: "example",
///     sqlite: &[Migration::new(1, "things", "CREATE TABLE IF NOT EXISTS things (id INTEGER PRIMARY KEY)")],
///     postgres: &[Migration::new(1, "things", "CREATE TABLE IF NOT EXISTS things (id BIGSERIAL PRIMARY KEY)")],
/// };
/// ```
#[derive(Debug)]
pub struct Migrations {
    /// Unique among components; the key of their records.
    pub component: &'static str,
    pub sqlite: &'static [Migration],
    pub postgres: &'static [Migration],
}

/// The store's own tables.
pub(crate) static STORE_MIGRATIONS: Migrations = Migrations {
    component: "store",
    sqlite: &[Migration::new(1, "state", include_str!("../migrations/sqlite/0001_state.sql")).legacy(1)],
    postgres: &[Migration::new(1, "state", include_str!("../migrations/postgres/0001_state.sql")).legacy(1)],
};

const RECORDS: &str = "CREATE TABLE IF NOT EXISTS flotilla_migrations (
    component  TEXT    NOT NULL,
    version    BIGINT  NOT NULL,
    name       TEXT    NOT NULL,
    applied_at BIGINT  NOT NULL,
    PRIMARY KEY (component, version)
)";

impl Store {
    /// Applies `migrations`' pending migrations for this store's dialect, in version
    /// order, each in its own transaction (see [the module](crate::migrate)).
    /// Idempotent, and one query when nothing is pending.
    pub async fn migrate(&self, migrations: &Migrations) -> Result<(), StoreError> {
        let list = match self.dialect() {
            Dialect::Sqlite => migrations.sqlite,
            Dialect::Postgres => migrations.postgres,
        };
        let component = migrations.component;
        let p = |n| self.dialect().placeholder(n);
        let applied: HashSet<i64> = self
            .fetch_all(
                &format!("SELECT version FROM flotilla_migrations WHERE component = {}", p(1)),
                &[component.into()],
            )
            .await?
            .iter()
            .map(|row| row.int(0))
            .collect::<Result<_, _>>()?;
        let mut pending: Vec<&Migration> = list.iter().filter(|m| !applied.contains(&m.version)).collect();
        if pending.is_empty() {
            return Ok(());
        }
        pending.sort_by_key(|m| m.version);
        let legacy = if pending.iter().any(|m| m.legacy_version.is_some()) {
            self.legacy_applied().await?
        } else {
            HashSet::new()
        };
        let record = format!(
            "INSERT INTO flotilla_migrations (component, version, name, applied_at) VALUES ({}, {}, {}, {})",
            p(1),
            p(2),
            p(3),
            p(4)
        );
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        for migration in pending {
            let failed = |source| StoreError::Migrate {
                component,
                version: migration.version,
                name: migration.name,
                source: Box::new(source),
            };
            let mut tx = self.begin().await.map_err(failed)?;
            // The record first: a concurrent migrator waits here, then finds it taken.
            let params = [component.into(), Param::Int(migration.version), migration.name.into(), Param::Int(now)];
            match tx.execute(&record, &params).await {
                Ok(_) => {}
                Err(e) if e.is_unique_violation() => continue,
                Err(e) => return Err(failed(e)),
            }
            let done_before = migration.legacy_version.is_some_and(|v| legacy.contains(&v));
            if !done_before {
                sqlx::raw_sql(sqlx::AssertSqlSafe(migration.sql))
                    .execute(&mut *tx.inner)
                    .await
                    .map_err(|e| failed(StoreError::query("running the migration's SQL")(e)))?;
            }
            tx.commit().await.map_err(failed)?;
            tracing::info!(
                component,
                version = migration.version,
                name = migration.name,
                ran = !done_before,
                "Store migration applied."
            );
        }
        Ok(())
    }

    /// Creates the migration records' table and applies the store's own migrations.
    pub(crate) async fn migrate_store(&self) -> Result<(), StoreError> {
        self.execute(RECORDS, &[]).await.map_err(|source| StoreError::Migrate {
            component: STORE_MIGRATIONS.component,
            version: 0,
            name: "flotilla_migrations",
            source: Box::new(source),
        })?;
        self.migrate(&STORE_MIGRATIONS).await
    }

    /// The versions the old global migrator applied successfully (none if it never ran).
    async fn legacy_applied(&self) -> Result<HashSet<i64>, StoreError> {
        if self.columns_of("_sqlx_migrations").await?.is_empty() {
            return Ok(HashSet::new());
        }
        self.fetch_all("SELECT version FROM _sqlx_migrations WHERE success", &[])
            .await?
            .iter()
            .map(|row| row.int(0))
            .collect()
    }
}
