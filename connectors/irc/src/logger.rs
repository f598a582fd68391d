//! Writing `irclog` and `fleetlog` (SPEC §7) from the connector's log queue
//! (`irclog.<connector>` on the bus) into the store, in batches.
//!
//! The logger is a bus consumer (group `store`): it fetches up to [`BATCH`] rows,
//! inserts them with multi-row INSERTs in one transaction, and acknowledges them only
//! after the commit. While one batch is being written the next is already fetched. When
//! the database is down it retries the same batch with backoff; new lines keep arriving
//! on the bus meanwhile and wait there, so nothing is lost and no connection ever waits
//! for the database. A restart replays whatever was not acknowledged (at-least-once).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use flotilla_bus::{Bus, BusError, Delivery, DeliveryId};
use flotilla_connector::Backoff;
use flotilla_store::{Dialect, Store};
use sqlx::{AnyPool, AssertSqlSafe};
use tokio_util::sync::CancellationToken;

use crate::record::{FleetRow, IrcRow, LogRow};
use crate::status::StatusTable;

/// Rows fetched from the queue at once.
pub const BATCH: usize = 8192;
/// Rows per INSERT statement: 8 parameters each stays far below SQLite's 32766 and
/// Postgres's 65535 bind limits, and the statement is prepared once per size.
const ROWS_PER_STATEMENT: usize = 1024;

/// The consumer group the logger reads the log queue in.
pub const GROUP: &str = "store";

/// The log queue of a connector.
pub fn log_queue(connector: &str) -> String {
    format!("irclog.{connector}")
}

/// Builds and caches the INSERT statements of one dialect.
pub struct SqlWriter {
    dialect: Dialect,
    statements: HashMap<(bool, usize), String>,
}

const IRC_COLUMNS: &str = "target, message, host, source, \"user\", networkname, irc_message_type, received_at";
const FLEET_COLUMNS: &str = "channel, message, nick, networkname, detail, received_at";

impl SqlWriter {
    pub fn new(dialect: Dialect) -> SqlWriter {
        SqlWriter { dialect, statements: HashMap::new() }
    }

    fn statement(&mut self, irc: bool, rows: usize) -> String {
        let dialect = self.dialect;
        self.statements
            .entry((irc, rows))
            .or_insert_with(|| {
                let (table, columns, width) =
                    if irc { ("irclog", IRC_COLUMNS, 8) } else { ("fleetlog", FLEET_COLUMNS, 6) };
                let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
                for row in 0..rows {
                    if row > 0 {
                        sql.push(',');
                    }
                    sql.push('(');
                    for column in 0..width {
                        if column > 0 {
                            sql.push(',');
                        }
                        sql.push_str(&dialect.placeholder(row * width + column + 1));
                    }
                    sql.push(')');
                }
                sql
            })
            .clone()
    }

    /// Inserts every row in one transaction.
    pub async fn write(&mut self, pool: &AnyPool, irc: &[&IrcRow], fleet: &[&FleetRow]) -> Result<(), sqlx::Error> {
        let mut tx = pool.begin().await?;
        for chunk in irc.chunks(ROWS_PER_STATEMENT) {
            let sql = self.statement(true, chunk.len());
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for row in chunk {
                query = query
                    .bind(row.target.as_str())
                    .bind(row.message.as_str())
                    .bind(row.host.as_deref())
                    .bind(row.source.as_str())
                    .bind(row.user.as_deref())
                    .bind(row.networkname.as_str())
                    .bind(row.irc_message_type.as_str())
                    .bind(row.received_at);
            }
            query.execute(&mut *tx).await?;
        }
        for chunk in fleet.chunks(ROWS_PER_STATEMENT) {
            let sql = self.statement(false, chunk.len());
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for row in chunk {
                query = query
                    .bind(row.channel.as_deref())
                    .bind(row.message.as_str())
                    .bind(row.nick.as_deref())
                    .bind(row.networkname.as_str())
                    .bind(row.detail.as_deref())
                    .bind(row.received_at);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await
    }
}

/// Decodes a batch's rows; a payload that is not a row is reported and skipped (it can
/// never be written, and must not block the queue).
fn decode(batch: &[Delivery], connector: &str) -> Vec<LogRow> {
    batch
        .iter()
        .filter_map(|d| match serde_json::from_slice::<LogRow>(&d.payload) {
            Ok(row) => Some(row),
            Err(e) => {
                tracing::error!(connector, seq = d.seq, error = %e, "A message on the IRC log queue is not a log row; skipping it.");
                None
            }
        })
        .collect()
}

/// Writes one batch, retrying with backoff while the database fails. Returns false when
/// told to stop before it succeeded (the batch stays unacknowledged on the bus).
async fn write_until_done(
    writer: &mut SqlWriter,
    store: &Store,
    rows: &[LogRow],
    stop: &CancellationToken,
    status: &StatusTable,
    connector: &str,
) -> bool {
    let irc: Vec<&IrcRow> = rows.iter().filter_map(|r| if let LogRow::Irc(r) = r { Some(r) } else { None }).collect();
    let fleet: Vec<&FleetRow> =
        rows.iter().filter_map(|r| if let LogRow::Fleet(r) = r { Some(r) } else { None }).collect();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        match writer.write(store.pool(), &irc, &fleet).await {
            Ok(()) => {
                if status.logger.retrying.swap(false, Ordering::Relaxed) {
                    tracing::info!(connector, "The database takes IRC log rows again.");
                    status.touch();
                }
                return true;
            }
            Err(e) => {
                let error = e.to_string();
                status.logger.failures.fetch_add(1, Ordering::Relaxed);
                *status.logger.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
                if !status.logger.retrying.swap(true, Ordering::Relaxed) {
                    tracing::warn!(connector, %error, rows = rows.len(),
                        "Writing IRC log rows failed; retrying with backoff. Lines wait on the bus meanwhile.");
                }
                status.touch();
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = stop.cancelled() => return false,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// When the logger should end.
#[derive(Clone, Default)]
pub struct LoggerControl {
    /// Stop now; what is unwritten stays on the bus.
    pub stop: CancellationToken,
    /// Finish once the queue is empty.
    pub drain: CancellationToken,
}

/// Runs the logger of `connector` until told to stop (or to drain and the queue is
/// empty).
pub async fn run(
    bus: Arc<dyn Bus>,
    store: Arc<Store>,
    connector: String,
    status: Arc<StatusTable>,
    control: LoggerControl,
) -> Result<(), BusError> {
    let mut consumer = bus.subscribe(&log_queue(&connector), GROUP).await?;
    let mut writer = SqlWriter::new(store.dialect());
    let mut next: Option<Vec<Delivery>> = None;
    loop {
        let batch = match next.take() {
            Some(batch) => batch,
            None => {
                let wait = if control.drain.is_cancelled() { Duration::ZERO } else { Duration::from_millis(500) };
                tokio::select! {
                    _ = control.stop.cancelled() => return Ok(()),
                    fetched = consumer.fetch(BATCH, wait) => fetched?,
                }
            }
        };
        if batch.is_empty() {
            if control.drain.is_cancelled() {
                return Ok(());
            }
            continue;
        }
        let rows = decode(&batch, &connector);
        let ids: Vec<DeliveryId> = batch.iter().map(|d| d.id.clone()).collect();
        // Write this batch while fetching the next one.
        let prefetch = async {
            if control.stop.is_cancelled() {
                return Ok(Vec::new());
            }
            consumer.fetch(BATCH, Duration::ZERO).await
        };
        let (written, fetched) =
            tokio::join!(write_until_done(&mut writer, &store, &rows, &control.stop, &status, &connector), prefetch);
        if !written {
            return Ok(());
        }
        consumer.ack(&ids).await?;
        status.logger.written.fetch_add(rows.len() as u64, Ordering::Relaxed);
        status.logger.batches.fetch_add(1, Ordering::Relaxed);
        status.touch();
        let fetched = fetched?;
        if !fetched.is_empty() {
            next = Some(fetched);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_per_dialect() {
        let mut sqlite = SqlWriter::new(Dialect::Sqlite);
        assert_eq!(
            sqlite.statement(false, 2),
            "INSERT INTO fleetlog (channel, message, nick, networkname, detail, received_at) VALUES \
             (?1,?2,?3,?4,?5,?6),(?7,?8,?9,?10,?11,?12)"
        );
        let mut pg = SqlWriter::new(Dialect::Postgres);
        let sql = pg.statement(true, 1);
        assert_eq!(
            sql,
            "INSERT INTO irclog (target, message, host, source, \"user\", networkname, irc_message_type, received_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"
        );
        assert!(pg.statement(true, ROWS_PER_STATEMENT).ends_with("$8192)"));
    }
}
