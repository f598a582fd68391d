//! What Slack keeps in the node's store (`migrations/{sqlite,postgres}/`, applied when
//! the service starts): the event ids the gateway has seen, so that Slack's retries are
//! queued once, and the glossary.
//!
//! **De-duplication.** [`SeenEvents::claim`] inserts `(connector, event_id)` and
//! reports whether this request was the first to do so; the primary key makes that
//! atomic, so on a store the fleet shares (Postgres) two nodes receiving the same
//! retry cannot both queue it. A claim is taken *before* publishing; when publishing
//! fails the gateway [`SeenEvents::release`]s it (and answers 500), so Slack's next
//! retry is queued: nothing accepted is lost. Rows older than `dedupe_for` are pruned.

use std::time::{SystemTime, UNIX_EPOCH};

use flotilla_store::{Migration, Migrations, Param, Store, StoreError};

/// The Slack tables, for [`Store::migrate`].
pub static MIGRATIONS: Migrations = Migrations {
    component: "slack",
    sqlite: &[Migration::new(1, "slack", include_str!("../migrations/sqlite/0001_slack.sql"))],
    postgres: &[Migration::new(1, "slack", include_str!("../migrations/postgres/0001_slack.sql"))],
};

pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Event ids seen, per connector.
#[derive(Clone)]
pub struct SeenEvents {
    store: std::sync::Arc<Store>,
    connector: String,
    claim_sql: String,
    release_sql: String,
}

impl SeenEvents {
    pub fn new(store: std::sync::Arc<Store>, connector: &str) -> SeenEvents {
        let p = |n| store.dialect().placeholder(n);
        let claim_sql = format!(
            "INSERT INTO slack_seen (connector, event_id, seen_at) VALUES ({}, {}, {}) ON CONFLICT DO NOTHING",
            p(1),
            p(2),
            p(3)
        );
        let release_sql = format!("DELETE FROM slack_seen WHERE connector = {} AND event_id = {}", p(1), p(2));
        SeenEvents { store, connector: connector.to_string(), claim_sql, release_sql }
    }

    /// Whether `event_id` is new (and now claimed).
    ///
    /// # Errors
    /// The store failed; the caller answers 500 and Slack retries.
    pub async fn claim(&self, event_id: &str) -> Result<bool, StoreError> {
        let params = [Param::Text(&self.connector), Param::Text(event_id), Param::Int(unix_now())];
        Ok(self.store.execute(&self.claim_sql, &params).await? == 1)
    }

    /// Forgets a claim whose event could not be queued.
    ///
    /// # Errors
    /// The store failed (the retry will then be taken for a duplicate: logged as an error).
    pub async fn release(&self, event_id: &str) -> Result<(), StoreError> {
        self.store.execute(&self.release_sql, &[Param::Text(&self.connector), Param::Text(event_id)]).await.map(drop)
    }

    /// Deletes ids seen more than `keep_secs` ago; returns how many.
    ///
    /// # Errors
    /// The store failed.
    pub async fn prune(&self, keep_secs: i64) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM slack_seen WHERE connector = {} AND seen_at < {}",
            self.store.dialect().placeholder(1),
            self.store.dialect().placeholder(2)
        );
        self.store.execute(&sql, &[Param::Text(&self.connector), Param::Int(unix_now() - keep_secs)]).await
    }
}

/// The glossary of one connector.
#[derive(Clone)]
pub struct GlossaryTable {
    store: std::sync::Arc<Store>,
    connector: String,
}

impl GlossaryTable {
    pub fn new(store: std::sync::Arc<Store>, connector: &str) -> GlossaryTable {
        GlossaryTable { store, connector: connector.to_string() }
    }

    /// Every term and its definition.
    ///
    /// # Errors
    /// The store failed.
    pub async fn load(&self) -> Result<crate::handlers::Glossary, StoreError> {
        let sql = format!(
            "SELECT term, definition FROM slack_glossary WHERE connector = {}",
            self.store.dialect().placeholder(1)
        );
        let rows = self.store.fetch_all(&sql, &[Param::Text(&self.connector)]).await?;
        rows.iter().map(|row| Ok((row.text(0)?.to_string(), row.text(1)?.to_string()))).collect()
    }

    /// Sets a term (`replace`: also when it exists; else only when it does not, which
    /// is how the configuration's terms are seeded without undoing edits).
    ///
    /// # Errors
    /// The store failed.
    pub async fn put(&self, term: &str, definition: &str, replace: bool) -> Result<(), StoreError> {
        let p = |n| self.store.dialect().placeholder(n);
        let conflict = if replace {
            "ON CONFLICT (connector, term) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at"
        } else {
            "ON CONFLICT DO NOTHING"
        };
        let sql = format!(
            "INSERT INTO slack_glossary (connector, term, definition, updated_at) VALUES ({}, {}, {}, {}) {conflict}",
            p(1),
            p(2),
            p(3),
            p(4)
        );
        let params = [Param::Text(&self.connector), Param::Text(term), Param::Text(definition), Param::Int(unix_now())];
        self.store.execute(&sql, &params).await.map(drop)
    }
}
