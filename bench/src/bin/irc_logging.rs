//! IRC logging throughput: rows waiting on the connector's log queue written into
//! `irclog` by the real logger (batched multi-row INSERTs, one transaction per batch,
//! acknowledged after the commit), into SQLite and into Postgres, printed beside a
//! naive one-INSERT-per-line baseline on the same database in the same run.
//!
//! ```text
//! cargo run --release -p flotilla-bench --bin irc_logging -- [ROWS] [BASELINE_ROWS]
//! ```
//!
//! Postgres: `FLOTILLA_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! a fresh database is created and dropped. Set `IRC_BENCH_NO_POSTGRES=1` to skip it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_bench::human;
use flotilla_bus::{Bus, EmbeddedBus, EmbeddedOptions};
use flotilla_irc::logger::{self, LoggerControl, SqlWriter, log_queue};
use flotilla_irc::record::{IrcRow, LogRow};
use flotilla_irc::status::StatusTable;
use flotilla_store::{Dialect, Store};
use sqlx::AssertSqlSafe;

/// Chat-like rows: 50 channels, 500 nicks, 40–120 characters of text.
fn rows(count: usize) -> Vec<IrcRow> {
    let words = ["fleet", "anchor", "harbour", "the", "a", "bot", "log", "sail", "wind", "IRC", "ahoy", "deck"];
    let base = 1_795_000_000_000i64;
    (0..count)
        .map(|i| {
            let length = 40 + (i * 7919) % 80;
            let mut text = String::with_capacity(length + 8);
            let mut w = i;
            while text.len() < length {
                text.push_str(words[w % words.len()]);
                text.push(' ');
                w = w.wrapping_mul(31).wrapping_add(7);
            }
            IrcRow {
                target: format!("#channel{}", i % 50),
                message: text.trim_end().to_string(),
                host: Some(format!("host{}.example.net", i % 500)),
                source: format!("nick{}", i % 500),
                user: Some(format!("~user{}", i % 500)),
                networkname: "benchnet".into(),
                irc_message_type: "PRIVMSG".into(),
                received_at: base + i as i64,
            }
        })
        .collect()
}

async fn count(store: &Store) -> i64 {
    store.fetch_all("SELECT COUNT(*) FROM irclog", &[]).await.unwrap()[0].int(0).unwrap()
}

async fn clear(store: &Store) {
    store.execute("DELETE FROM irclog", &[]).await.unwrap();
}

/// The logger: from the bus queue into the store, until the queue is empty.
async fn logger_run(store: Arc<Store>, rows: &[IrcRow]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(&dir.path().join("bus"), EmbeddedOptions::default()).unwrap());
    let queue = log_queue("bench");
    for chunk in rows.chunks(4096) {
        let payloads: Vec<Bytes> = chunk.iter().map(|r| Bytes::from(LogRow::Irc(r.clone()).to_json())).collect();
        bus.publish(&queue, payloads).await.unwrap();
    }
    let status = Arc::new(StatusTable::new("-".into(), "benchnet".into(), Vec::new()));
    let control = LoggerControl::default();
    control.drain.cancel();
    let started = Instant::now();
    logger::run(bus.clone(), store.clone(), "bench".into(), status.clone(), control).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(count(&store).await, rows.len() as i64, "every row written");
    bus.close().await.unwrap();
    rows.len() as f64 / elapsed.as_secs_f64()
}

/// The logger's batched writes without the bus (what its SQL alone costs).
async fn batched_run(store: &Store, rows: &[IrcRow]) -> f64 {
    let mut writer = SqlWriter::new(store.dialect());
    let batches: Vec<Arc<[LogRow]>> =
        rows.chunks(logger::BATCH).map(|chunk| chunk.iter().cloned().map(LogRow::Irc).collect()).collect();
    let started = Instant::now();
    for batch in &batches {
        writer.write(store, batch).await.unwrap();
    }
    rows.len() as f64 / started.elapsed().as_secs_f64()
}

/// The naive way: one INSERT (and so one commit) per line.
async fn naive_run(store: &Store, rows: &[IrcRow]) -> f64 {
    let p = |n| store.dialect().placeholder(n);
    let sql = format!(
        "INSERT INTO irclog (target, message, host, source, \"user\", networkname, irc_message_type, received_at) \
         VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
        p(1),
        p(2),
        p(3),
        p(4),
        p(5),
        p(6),
        p(7),
        p(8)
    );
    let started = Instant::now();
    for row in rows {
        let params = [
            (&row.target).into(),
            (&row.message).into(),
            row.host.as_deref().into(),
            (&row.source).into(),
            row.user.as_deref().into(),
            (&row.networkname).into(),
            (&row.irc_message_type).into(),
            row.received_at.into(),
        ];
        store.execute(&sql, &params).await.unwrap();
    }
    rows.len() as f64 / started.elapsed().as_secs_f64()
}

async fn bench(name: &str, store: Arc<Store>, all: &[IrcRow], baseline: usize) {
    let logged = logger_run(store.clone(), all).await;
    clear(&store).await;
    let batched = batched_run(&store, all).await;
    clear(&store).await;
    let naive = naive_run(&store, &all[..baseline.min(all.len())]).await;
    clear(&store).await;
    println!(
        "{name:<9} logger (bus → store) {:>10} lines/s | batched INSERTs alone {:>10} lines/s | naive INSERT per line {:>9} lines/s | logger/naive {:>6.1}x",
        human(logged),
        human(batched),
        human(naive),
        logged / naive
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(300_000);
    let baseline: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let all = rows(total);
    println!(
        "irc_logging: {total} irclog rows through the logger (indexes on received_at, target, source, networkname), naive baseline on {baseline}"
    );

    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(Store::open(&format!("sqlite://{}/bench.db", dir.path().display())).await.unwrap());
    assert_eq!(sqlite.dialect(), Dialect::Sqlite);
    sqlite.migrate(&flotilla_irc::MIGRATIONS).await.unwrap();
    bench("SQLite", sqlite.clone(), &all, baseline).await;
    sqlite.close().await;

    if std::env::var("IRC_BENCH_NO_POSTGRES").is_ok() {
        return;
    }
    let admin_url = std::env::var("FLOTILLA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    sqlx::any::install_default_drivers();
    let admin = match sqlx::AnyPool::connect(&admin_url).await {
        Ok(pool) => pool,
        Err(e) => {
            println!("Postgres   skipped: cannot connect to {admin_url}: {e}");
            return;
        }
    };
    let name = format!("flotilla_irc_bench_{}", std::process::id());
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
    let url = format!("{}/{name}", &admin_url[..admin_url.rfind('/').unwrap()]);
    let pg = Arc::new(Store::open(&url).await.unwrap());
    pg.migrate(&flotilla_irc::MIGRATIONS).await.unwrap();
    bench("Postgres", pg.clone(), &all, baseline).await;
    pg.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&admin).await.unwrap();
}
