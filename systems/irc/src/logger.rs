//! Writing `irclog` and `fleetlog` (SPEC §7) from the connector's log queue
//! (`irclog.<connector>` on the bus) into the store, in batches.
//!
//! The logger is a bus stage ([`flotilla_bus::stage`], group `store`): it fetches up
//! to [`BATCH`] rows, writes them in one transaction, and acknowledges them only after
//! the commit. While one batch is being written the next is already fetched. When
//! the database is down it retries the same batch with backoff; new lines keep arriving
//! on the bus meanwhile and wait there, so nothing is lost and no connection ever waits
//! for the database. A restart replays whatever was not acknowledged (at-least-once).
//!
//! Before its first batch the logger creates or updates its tables
//! ([`crate::MIGRATIONS`] through [`Store::migrate`]), retrying while the database is
//! down, so a connector never waits for the database to start its bots.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use flotilla_bus::stage::{Outputs, Stage, Work};
use flotilla_bus::{Bus, BusError, Delivery};
use flotilla_connector::Backoff;
use flotilla_store::{BulkValue, CopyRows, Dialect, ErrorKind, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::record::LogRow;
use crate::status::StatusTable;

/// Rows fetched from the queue at once.
pub const BATCH: usize = 32768;

/// The consumer group the logger reads the log queue in.
pub const GROUP: &str = "store";

/// The log queue of a connector.
pub fn log_queue(connector: &str) -> String {
    format!("irclog.{connector}")
}

const IRC_COLUMNS: &str = "target, message, host, source, \"user\", networkname, irc_message_type, received_at";
const FLEET_COLUMNS: &str = "channel, message, nick, networkname, detail, received_at";

/// Writes rows with the fastest bulk path each database offers, one transaction per
/// batch:
///
/// - SQLite: a prepared single-row INSERT stepped per row on the store's bulk writer
///   thread ([`Store::sqlite_bulk`]), with the values borrowed, not copied: about twice
///   the rows per second of multi-row INSERTs through sqlx's Any driver.
/// - Postgres: `COPY … FROM STDIN` in text format ([`Store::copy_in`]), one per table:
///   about 1.2 times the rows per second of the best INSERT form measured (one
///   `UNNEST` of array literals per batch).
pub struct SqlWriter {
    dialect: Dialect,
}

const IRC_INSERT: &str = "INSERT INTO irclog (target, message, host, source, \"user\", networkname, \
     irc_message_type, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
const FLEET_INSERT: &str =
    "INSERT INTO fleetlog (channel, message, nick, networkname, detail, received_at) VALUES (?, ?, ?, ?, ?, ?)";

/// Why a batch was not written.
#[derive(Debug)]
pub enum WriteError {
    /// The database refused the data (a constraint, an encoding): the same rows fail
    /// again, so they are written one by one to find the refused ones.
    Refused(String),
    /// The database is unreachable or failing: retry later.
    Failed(String),
}

impl From<StoreError> for WriteError {
    /// The store's [`ErrorKind`] decides: only a refusal is the rows' fault.
    fn from(error: StoreError) -> Self {
        match error.kind() {
            ErrorKind::Refused => WriteError::Refused(error.chain()),
            ErrorKind::Unavailable | ErrorKind::Invalid => WriteError::Failed(error.chain()),
        }
    }
}

impl SqlWriter {
    pub fn new(dialect: Dialect) -> SqlWriter {
        SqlWriter { dialect }
    }

    /// Writes every row in one transaction.
    pub async fn write(&mut self, store: &Store, rows: &Arc<[LogRow]>) -> Result<(), WriteError> {
        match self.dialect {
            Dialect::Postgres => {
                let (mut irc, mut fleet) = (CopyRows::default(), CopyRows::default());
                for row in rows.iter() {
                    match row {
                        LogRow::Irc(row) => irc
                            .field(Some(&row.target))
                            .field(Some(&row.message))
                            .field(row.host.as_deref())
                            .field(Some(&row.source))
                            .field(row.user.as_deref())
                            .field(Some(&row.networkname))
                            .field(Some(&row.irc_message_type))
                            .number(row.received_at)
                            .end_row(),
                        LogRow::Fleet(row) => fleet
                            .field(row.channel.as_deref())
                            .field(Some(&row.message))
                            .field(row.nick.as_deref())
                            .field(Some(&row.networkname))
                            .field(row.detail.as_deref())
                            .number(row.received_at)
                            .end_row(),
                    }
                }
                let irc_copy = format!("COPY irclog ({IRC_COLUMNS}) FROM STDIN");
                let fleet_copy = format!("COPY fleetlog ({FLEET_COLUMNS}) FROM STDIN");
                let mut copies: Vec<(&str, &[u8])> = Vec::new();
                if !irc.is_empty() {
                    copies.push((&irc_copy, irc.as_bytes()));
                }
                if !fleet.is_empty() {
                    copies.push((&fleet_copy, fleet.as_bytes()));
                }
                store.copy_in(&copies).await?;
            }
            Dialect::Sqlite => {
                let rows = rows.clone();
                store
                    .sqlite_bulk(move |tx| {
                        for row in rows.iter() {
                            match row {
                                LogRow::Irc(row) => tx.insert(
                                    IRC_INSERT,
                                    &[
                                        BulkValue::Text(&row.target),
                                        BulkValue::Text(&row.message),
                                        row.host.as_deref().into(),
                                        BulkValue::Text(&row.source),
                                        row.user.as_deref().into(),
                                        BulkValue::Text(&row.networkname),
                                        BulkValue::Text(&row.irc_message_type),
                                        BulkValue::Int(row.received_at),
                                    ],
                                )?,
                                LogRow::Fleet(row) => tx.insert(
                                    FLEET_INSERT,
                                    &[
                                        row.channel.as_deref().into(),
                                        BulkValue::Text(&row.message),
                                        row.nick.as_deref().into(),
                                        BulkValue::Text(&row.networkname),
                                        row.detail.as_deref().into(),
                                        BulkValue::Int(row.received_at),
                                    ],
                                )?,
                            }
                        }
                        Ok(rows.len() as u64)
                    })
                    .await?;
            }
        }
        Ok(())
    }
}

/// Decodes a batch's rows; a payload that is not a row is reported and skipped (it can
/// never be written, and must not block the queue).
fn decode(batch: &[Delivery], connector: &str) -> Arc<[LogRow]> {
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

/// The logger's work on a batch: write its rows in one transaction. The stage retries
/// a failed write on the same batch with backoff (200 ms doubling to 30 s, with
/// jitter) until it succeeds or the logger is told to stop (then the batch stays
/// unacknowledged on the bus).
struct WriteRows {
    writer: SqlWriter,
    store: Arc<Store>,
    status: Arc<StatusTable>,
    connector: String,
}

impl Work for WriteRows {
    type Prepared = Arc<[LogRow]>;
    type Done = u64;
    type Error = String;

    async fn process(&mut self, _: &[Delivery], rows: &mut Arc<[LogRow]>, _: &mut Outputs) -> Result<u64, String> {
        let (status, connector) = (&self.status, self.connector.as_str());
        match self.writer.write(&self.store, rows).await {
            Ok(()) => {
                if status.logger.retrying.swap(false, Ordering::Relaxed) {
                    tracing::info!(connector, "The database takes IRC log rows again.");
                    status.touch();
                }
                Ok(rows.len() as u64)
            }
            Err(WriteError::Refused(refusal)) => {
                // The database refused the data, not the connection (a constraint, an
                // encoding): find the rows it refuses and skip only those, so that one
                // bad row can never hold up the log.
                tracing::warn!(connector, error = %refusal, rows = rows.len(),
                    "The database refused a batch of IRC log rows; writing them one by one.");
                match one_by_one(&mut self.writer, &self.store, &rows[..], connector).await {
                    Ok(()) => Ok(rows.len() as u64),
                    // The database went away meanwhile: retry the batch (rows written one
                    // by one may then be written twice; the log is at-least-once).
                    Err(WriteError::Failed(error) | WriteError::Refused(error)) => Err(error),
                }
            }
            Err(WriteError::Failed(error)) => {
                status.logger.failures.fetch_add(1, Ordering::Relaxed);
                *status.logger.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
                if !status.logger.retrying.swap(true, Ordering::Relaxed) {
                    tracing::warn!(connector, %error, rows = rows.len(),
                        "Writing IRC log rows failed; retrying with backoff. Lines wait on the bus meanwhile.");
                }
                status.touch();
                Err(error)
            }
        }
    }

    fn acknowledged(&mut self, written: u64) {
        let status = &self.status;
        status.logger.written.fetch_add(written, Ordering::Relaxed);
        status.logger.batches.fetch_add(1, Ordering::Relaxed);
        status.touch();
    }
}

/// Writes rows one per transaction, skipping (and reporting) each the database refuses.
/// Fails on the first error that is not a refusal (the database is unreachable).
async fn one_by_one(writer: &mut SqlWriter, store: &Store, rows: &[LogRow], connector: &str) -> Result<(), WriteError> {
    for row in rows {
        match writer.write(store, &Arc::from([row.clone()])).await {
            Ok(()) => {}
            Err(WriteError::Refused(refusal)) => {
                let message = match row {
                    LogRow::Irc(row) => &row.message,
                    LogRow::Fleet(row) => &row.message,
                };
                tracing::error!(connector, error = %refusal, row = ?message,
                    "The database refuses an IRC log row; skipping it.");
            }
            Err(failed) => return Err(failed),
        }
    }
    Ok(())
}

/// Creates or updates the log tables, retrying with backoff while that fails. Returns
/// false when told to stop first.
async fn migrate_until_done(store: &Store, stop: &CancellationToken, status: &StatusTable, connector: &str) -> bool {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        let error = match store.migrate(&crate::MIGRATIONS).await {
            Ok(()) => return true,
            Err(error) => error,
        };
        let error_text = error.chain();
        if error.kind() == ErrorKind::Unavailable {
            tracing::warn!(connector, error = %error_text, "Cannot create the IRC log tables yet; retrying with backoff.");
        } else {
            tracing::error!(connector, error = %error_text,
                "The database refuses the IRC log tables; retrying with backoff. Lines wait on the bus meanwhile.");
        }
        status.logger.failures.fetch_add(1, Ordering::Relaxed);
        *status.logger.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error_text);
        status.touch();
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// When the logger should end.
#[derive(Clone, Default)]
pub struct LoggerControl {
    /// Stop: finish the batch being written (unless writing it is failing), leave the
    /// rest on the bus.
    pub stop: CancellationToken,
    /// Finish once the queue is empty.
    pub drain: CancellationToken,
}

/// Runs the logger of `connector` until told to stop (or to drain and the queue is
/// empty).
///
/// A bus stage ([`flotilla_bus::stage`]) that prepares ahead: while one batch is being
/// written, the next is already fetched and decoded on another task (decoding is CPU
/// work; the database works on its own thread meanwhile).
pub async fn run(
    bus: Arc<dyn Bus>,
    store: Arc<Store>,
    connector: String,
    status: Arc<StatusTable>,
    control: LoggerControl,
) -> Result<(), BusError> {
    if !migrate_until_done(&store, &control.stop, &status, &connector).await {
        return Ok(());
    }
    let stage = Stage::new("IRC logger", &log_queue(&connector), GROUP, BATCH)
        .idle_wait(Duration::from_millis(500))
        .prepare_ahead()
        .retry(Duration::from_millis(200), Duration::from_secs(30))
        .drain(control.drain.clone());
    let name = connector.clone();
    let decode_rows = move |batch: &[Delivery]| decode(batch, &name);
    let mut work = WriteRows { writer: SqlWriter::new(store.dialect()), store, status, connector };
    stage.run(bus, decode_rows, &mut work, &control.stop).await
}
