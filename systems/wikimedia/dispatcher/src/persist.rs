//! Subscriptions in the SQL store (tables `dispatch_subscriptions` and
//! `dispatch_definitions`, created by this crate's [`MIGRATIONS`] from
//! `migrations/{sqlite,postgres}/`, applied at start).
//!
//! The pure core changes its in-memory state and hands back [`Mutation`]s; this module
//! writes them, in order, each line's records in one transaction ([`SubscriptionStore::apply`]),
//! and reads everything back at start-up ([`SubscriptionStore::load_all`]) for
//! [`Subscriptions::restore_all`](flotilla_wikimedia_core::Subscriptions::restore_all). Writes
//! are idempotent (a definition added twice is one row; deleting what is gone is a no-op),
//! so replaying a record never corrupts the copy.

use std::collections::BTreeMap;

use flotilla_store::{Migration, Migrations, Param, Store, StoreError, Transaction};
use flotilla_wikimedia_core::definition::DefinitionFields;
use flotilla_wikimedia_core::{Definition, Mutation, OutputFormat, Restored, SubscriptionName, TokenHash, Wikis};
use sha2::{Digest, Sha256};

/// The dispatcher's tables, for [`Store::migrate`]. Version 1 was version 3 of the old
/// global migrator.
pub static MIGRATIONS: Migrations = Migrations {
    component: "wikimedia-dispatcher",
    sqlite: &[Migration::new(1, "dispatch", include_str!("../migrations/sqlite/0001_dispatch.sql")).legacy(3)],
    postgres: &[Migration::new(1, "dispatch", include_str!("../migrations/postgres/0001_dispatch.sql")).legacy(3)],
};

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

/// An optional part of a definition: absent is the empty string.
fn part(value: &Option<String>) -> Param<'_> {
    Param::Text(value.as_deref().unwrap_or_default())
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
    /// The database refused or is unavailable ([`StoreError::kind`]); nothing of the
    /// batch is written.
    pub async fn apply(&self, mutations: &[Mutation]) -> Result<(), StoreError> {
        if mutations.is_empty() {
            return Ok(());
        }
        let mut tx = self.store.begin().await?;
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
                    let token_hash = token_hash.to_hex();
                    tx.execute(&sql, &[name.as_str().into(), (&token_hash).into(), format.name().into(), now().into()])
                        .await?;
                }
                Mutation::Deleted { name } => self.delete_subscription(&mut tx, name).await?,
                Mutation::FormatSet { name, format } => {
                    let sql =
                        format!("UPDATE dispatch_subscriptions SET format = {} WHERE name = {}", self.p(1), self.p(2));
                    tx.execute(&sql, &[format.name().into(), name.as_str().into()]).await?;
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
                        let (key, flags) = (definition_key(&fields), fields.flags.join(","));
                        let params = [
                            name.as_str().into(),
                            (&key).into(),
                            (&fields.wiki).into(),
                            part(&fields.page),
                            part(&fields.page_rx),
                            part(&fields.user),
                            part(&fields.user_rx),
                            (&flags).into(),
                            at.into(),
                        ];
                        tx.execute(&sql, &params).await?;
                    }
                }
                Mutation::DefinitionsRemoved { name, definitions } => {
                    let sql = format!(
                        "DELETE FROM dispatch_definitions WHERE subscription = {} AND def_key = {}",
                        self.p(1),
                        self.p(2)
                    );
                    for definition in definitions {
                        let key = definition_key(&definition.fields());
                        tx.execute(&sql, &[name.as_str().into(), (&key).into()]).await?;
                    }
                }
            }
        }
        tx.commit().await
    }

    async fn delete_subscription(&self, tx: &mut Transaction, name: &SubscriptionName) -> Result<(), StoreError> {
        for table_and_column in ["dispatch_definitions WHERE subscription", "dispatch_subscriptions WHERE name"] {
            let sql = format!("DELETE FROM {table_and_column} = {}", self.p(1));
            tx.execute(&sql, &[name.as_str().into()]).await?;
        }
        Ok(())
    }

    /// Creates or updates the dispatcher's tables ([`MIGRATIONS`]); cheap when they
    /// are current.
    ///
    /// # Errors
    /// A migration failed; see [`StoreError::kind`].
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.store.migrate(&MIGRATIONS).await
    }

    /// Every stored subscription with its definitions, for `restore_all`.
    ///
    /// # Errors
    /// The tables cannot be read; see [`StoreError::kind`].
    pub async fn load_all(&self, wikis: &Wikis) -> Result<Loaded, StoreError> {
        let rows = self
            .store
            .fetch_all("SELECT name, token_hash, format FROM dispatch_subscriptions ORDER BY name", &[])
            .await?;
        let mut loaded = Loaded::default();
        let mut by_name: BTreeMap<String, Restored> = BTreeMap::new();
        for row in rows {
            let name = row.text(0)?.to_string();
            let hash = row.text(1)?;
            let format = row.text(2)?;
            let (Ok(parsed), Some(token_hash)) = (SubscriptionName::parse(&name), TokenHash::from_hex(hash)) else {
                loaded.skipped.push(format!("subscription {name:?}: invalid name or token hash"));
                continue;
            };
            let format = OutputFormat::parse(format).unwrap_or_default();
            by_name.insert(name, Restored { name: parsed, token_hash, format, definitions: Vec::new() });
        }
        let rows = self
            .store
            .fetch_all(
                "SELECT subscription, wiki, page, page_rx, user_name, user_rx, flags FROM dispatch_definitions \
                 ORDER BY subscription, added_at, def_key",
                &[],
            )
            .await?;
        for row in rows {
            let text = |i: usize| -> Result<String, StoreError> { row.text(i).map(str::to_string) };
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
