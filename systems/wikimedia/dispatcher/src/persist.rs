//! Subscriptions in the SQL store (tables `dispatch_subscriptions` and
//! `dispatch_definitions`, migration `0003_dispatch.sql`, both dialects).
//!
//! The pure core changes its in-memory state and hands back [`Mutation`]s; this module
//! writes them, in order, each line's records in one transaction ([`SubscriptionStore::apply`]),
//! and reads everything back at start-up ([`SubscriptionStore::load_all`]) for
//! [`Subscriptions::restore_all`](flotilla_wikimedia_core::Subscriptions::restore_all). Writes
//! are idempotent (a definition added twice is one row; deleting what is gone is a no-op),
//! so replaying a record never corrupts the copy.

use std::collections::BTreeMap;

use flotilla_store::{Store, StoreError};
use flotilla_wikimedia_core::definition::DefinitionFields;
use flotilla_wikimedia_core::{Definition, Mutation, OutputFormat, Restored, SubscriptionName, TokenHash, Wikis};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

/// The dispatcher's tables in a store.
#[derive(Clone)]
pub struct SubscriptionStore {
    store: std::sync::Arc<Store>,
}

/// What loading found besides the subscriptions: rows that no longer make sense (a
/// wiki that left the registry, a damaged hash), skipped with a warning each.
#[derive(Debug, Default)]
pub struct Loaded {
    pub subscriptions: Vec<Restored>,
    pub skipped: Vec<String>,
}

fn query_error(context: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| StoreError::Query { context: context.to_string(), detail: e.to_string() }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The key of a definition: the SHA-256 of its canonical parts, NUL-separated (no part
/// can contain NUL: they come from XML attributes, JSON strings without escapes the
/// protocol allows, or names).
fn definition_key(fields: &DefinitionFields) -> String {
    let mut hasher = Sha256::new();
    for part in [
        fields.wiki.as_str(),
        fields.page.as_deref().unwrap_or(""),
        fields.page_rx.as_deref().unwrap_or(""),
        fields.user.as_deref().unwrap_or(""),
        fields.user_rx.as_deref().unwrap_or(""),
        &fields.flags.join(","),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl SubscriptionStore {
    pub fn new(store: std::sync::Arc<Store>) -> SubscriptionStore {
        SubscriptionStore { store }
    }

    fn p(&self, n: usize) -> String {
        self.store.dialect().placeholder(n)
    }

    /// Writes one line's (or one request's) records, in order, in one transaction.
    ///
    /// # Errors
    /// [`StoreError::Query`] if the database refused; nothing of the batch is written.
    pub async fn apply(&self, mutations: &[Mutation]) -> Result<(), StoreError> {
        if mutations.is_empty() {
            return Ok(());
        }
        let mut tx = self.store.pool().begin().await.map_err(query_error("starting a transaction"))?;
        for mutation in mutations {
            match mutation {
                Mutation::Created { name, token_hash, format } => {
                    // A name freed and taken again within one batch: the old rows go.
                    self.delete_subscription(&mut tx, name).await?;
                    let sql = format!(
                        "INSERT INTO dispatch_subscriptions (name, token_hash, format, created_at) VALUES ({}, {}, {}, {})",
                        self.p(1),
                        self.p(2),
                        self.p(3),
                        self.p(4)
                    );
                    sqlx::query(AssertSqlSafe(sql))
                        .bind(name.as_str())
                        .bind(token_hash.to_hex())
                        .bind(format.name())
                        .bind(now())
                        .execute(&mut *tx)
                        .await
                        .map_err(query_error("storing a new subscription"))?;
                }
                Mutation::Deleted { name } => self.delete_subscription(&mut tx, name).await?,
                Mutation::FormatSet { name, format } => {
                    let sql =
                        format!("UPDATE dispatch_subscriptions SET format = {} WHERE name = {}", self.p(1), self.p(2));
                    sqlx::query(AssertSqlSafe(sql))
                        .bind(format.name())
                        .bind(name.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(query_error("storing a subscription's format"))?;
                }
                Mutation::DefinitionsAdded { name, definitions } => {
                    let sql = format!(
                        "INSERT INTO dispatch_definitions \
                         (subscription, def_key, wiki, page, page_rx, user_name, user_rx, flags, added_at) \
                         VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}) \
                         ON CONFLICT (subscription, def_key) DO NOTHING",
                        self.p(1),
                        self.p(2),
                        self.p(3),
                        self.p(4),
                        self.p(5),
                        self.p(6),
                        self.p(7),
                        self.p(8),
                        self.p(9)
                    );
                    let at = now();
                    for definition in definitions {
                        let fields = definition.fields();
                        sqlx::query(AssertSqlSafe(sql.clone()))
                            .bind(name.as_str())
                            .bind(definition_key(&fields))
                            .bind(fields.wiki.clone())
                            .bind(fields.page.clone().unwrap_or_default())
                            .bind(fields.page_rx.clone().unwrap_or_default())
                            .bind(fields.user.clone().unwrap_or_default())
                            .bind(fields.user_rx.clone().unwrap_or_default())
                            .bind(fields.flags.join(","))
                            .bind(at)
                            .execute(&mut *tx)
                            .await
                            .map_err(query_error("storing definitions"))?;
                    }
                }
                Mutation::DefinitionsRemoved { name, definitions } => {
                    let sql = format!(
                        "DELETE FROM dispatch_definitions WHERE subscription = {} AND def_key = {}",
                        self.p(1),
                        self.p(2)
                    );
                    for definition in definitions {
                        sqlx::query(AssertSqlSafe(sql.clone()))
                            .bind(name.as_str())
                            .bind(definition_key(&definition.fields()))
                            .execute(&mut *tx)
                            .await
                            .map_err(query_error("removing definitions"))?;
                    }
                }
            }
        }
        tx.commit().await.map_err(query_error("committing subscription changes"))?;
        Ok(())
    }

    async fn delete_subscription(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        name: &SubscriptionName,
    ) -> Result<(), StoreError> {
        for table_and_column in ["dispatch_definitions WHERE subscription", "dispatch_subscriptions WHERE name"] {
            let sql = format!("DELETE FROM {table_and_column} = {}", self.p(1));
            sqlx::query(AssertSqlSafe(sql))
                .bind(name.as_str())
                .execute(&mut **tx)
                .await
                .map_err(query_error("deleting a subscription"))?;
        }
        Ok(())
    }

    /// Every stored subscription with its definitions, for `restore_all`.
    ///
    /// # Errors
    /// [`StoreError::Query`] if the tables cannot be read.
    pub async fn load_all(&self, wikis: &Wikis) -> Result<Loaded, StoreError> {
        let pool = self.store.pool();
        let rows: Vec<AnyRow> =
            sqlx::query("SELECT name, token_hash, format FROM dispatch_subscriptions ORDER BY name")
                .fetch_all(pool)
                .await
                .map_err(query_error("reading subscriptions"))?;
        let mut loaded = Loaded::default();
        let mut by_name: BTreeMap<String, Restored> = BTreeMap::new();
        for row in rows {
            let name: String = row.try_get(0).map_err(query_error("decoding a subscription"))?;
            let hash: String = row.try_get(1).map_err(query_error("decoding a subscription"))?;
            let format: String = row.try_get(2).map_err(query_error("decoding a subscription"))?;
            let (Ok(parsed), Some(token_hash)) = (SubscriptionName::parse(&name), TokenHash::from_hex(&hash)) else {
                loaded.skipped.push(format!("subscription {name:?}: invalid name or token hash"));
                continue;
            };
            let format = OutputFormat::parse(&format).unwrap_or_default();
            by_name.insert(name, Restored { name: parsed, token_hash, format, definitions: Vec::new() });
        }
        let rows: Vec<AnyRow> = sqlx::query(
            "SELECT subscription, wiki, page, page_rx, user_name, user_rx, flags FROM dispatch_definitions \
             ORDER BY subscription, added_at, def_key",
        )
        .fetch_all(pool)
        .await
        .map_err(query_error("reading definitions"))?;
        for row in rows {
            let text = |i: usize| -> Result<String, StoreError> {
                row.try_get(i).map_err(query_error("decoding a definition"))
            };
            let subscription = text(0)?;
            let optional = |value: String| Some(value).filter(|v| !v.is_empty());
            let flags = text(6)?;
            let fields = DefinitionFields {
                wiki: text(1)?,
                page: optional(text(2)?),
                page_rx: optional(text(3)?),
                user: optional(text(4)?),
                user_rx: optional(text(5)?),
                flags: flags.split(',').filter(|f| !f.is_empty()).map(str::to_string).collect(),
            };
            let Some(restored) = by_name.get_mut(&subscription) else {
                loaded.skipped.push(format!("a definition of {subscription:?}, which does not exist"));
                continue;
            };
            match Definition::new(wikis, &fields) {
                Ok(definition) => restored.definitions.push(definition),
                Err(error) => loaded.skipped.push(format!("a definition of {subscription:?}: {error}")),
            }
        }
        loaded.subscriptions = by_name.into_values().collect();
        Ok(loaded)
    }
}
