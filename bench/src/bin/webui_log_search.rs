//! The web UI's IRC log search (`/logs?q=…`) over a large `irclog`: the full-text
//! query the page runs (SQLite FTS5 / Postgres GIN on `to_tsvector`, from the IRC
//! system's migration 2) beside a `LIKE '%…%'` scan for the same word, in the same run
//! on the same rows. Goal (issue 17): ≤ 100 ms per search at 10,000,000 lines.
//!
//! `cargo run --release -p flotilla-bench --bin webui_log_search [-- LINES]` (default
//! 10,000,000); Postgres too when `FLOTILLA_TEST_POSTGRES` is set (`scripts/peers
//! ensure postgres`). Rows are generated inside the database (a recursive CTE /
//! `generate_series`), so the load is not what is measured.

use std::time::{Duration, Instant};

use flotilla_bench::percentile;
use flotilla_store::{Dialect, Param, Store};
use flotilla_webui::logs::{LogQuery, lines};

/// Fills `irclog` with `count` lines: a few common words, and a rare token
/// `zq<n>` (about one line in 10,007 has a given one) to search for.
async fn fill(store: &Store, count: u64) {
    let generate = match store.dialect() {
        Dialect::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) \
             INSERT INTO irclog (target, message, host, source, \"user\", networkname, irc_message_type, received_at) \
             SELECT '#chan' || (i % 50), 'hello there line ' || i || ' about topic' || (i % 997) || ' zq' || ((i * 31) % 10007), \
             'host', 'nick' || (i % 400), 'user', 'net' || (i % 5), 'PRIVMSG', 1700000000000 + i FROM n"
        ),
        Dialect::Postgres => format!(
            "INSERT INTO irclog (target, message, host, source, \"user\", networkname, irc_message_type, received_at) \
             SELECT '#chan' || (i % 50), 'hello there line ' || i || ' about topic' || (i % 997) || ' zq' || ((i * 31) % 10007), \
             'host', 'nick' || (i % 400), 'user', 'net' || (i % 5), 'PRIVMSG', 1700000000000 + i FROM generate_series(1, {count}) AS i"
        ),
    };
    let start = Instant::now();
    store.execute(&generate, &[]).await.expect("generating the log");
    if store.dialect() == Dialect::Postgres {
        store.execute("ANALYZE irclog", &[]).await.expect("ANALYZE");
    }
    println!("  {count} lines written and indexed in {:.1} s", start.elapsed().as_secs_f64());
}

async fn run(label: &str, store: &Store, count: u64) {
    println!("{label}:");
    store.migrate(&flotilla_irc::MIGRATIONS).await.expect("the IRC migrations");
    fill(store, count).await;
    let words: Vec<String> = (0..20).map(|i| format!("zq{}", 17 + i * 503)).collect();
    let (mut search, mut scan) = (Vec::new(), Vec::new());
    let mut found = 0;
    for word in &words {
        let query = LogQuery { search: word.clone(), ..LogQuery::default() };
        let start = Instant::now();
        let page = lines(store, &query).await.expect("search");
        search.push(start.elapsed());
        found += page.rows.len();
        let like = format!("%{word}%");
        let sql = format!(
            "SELECT id, received_at, networkname, target, source, irc_message_type, message FROM irclog \
             WHERE message LIKE {} ORDER BY id DESC LIMIT 51",
            store.dialect().placeholder(1)
        );
        let start = Instant::now();
        let rows = store.fetch_all(&sql, &[Param::Text(&like)]).await.expect("scan");
        scan.push(start.elapsed());
        std::hint::black_box(rows);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (s50, s99) = (percentile(&mut search, 50.0), percentile(&mut search, 99.0));
    let (l50, l99) = (percentile(&mut scan, 50.0), percentile(&mut scan, 99.0));
    println!(
        "  full-text search: p50 {:.2} ms, p99 {:.2} ms ({} words, {found} lines shown; goal ≤ 100 ms)",
        ms(s50),
        ms(s99),
        words.len()
    );
    println!("  LIKE '%…%' scan:  p50 {:.2} ms, p99 {:.2} ms", ms(l50), ms(l99));
    println!("  ratio scan / search: {:.0}×", l50.as_secs_f64() / s50.as_secs_f64().max(1e-9));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let store = Store::open(&url).await.expect("the SQLite store");
    run("SQLite (FTS5)", &store, count).await;
    store.close().await;
    if std::env::var("FLOTILLA_TEST_POSTGRES").is_ok() {
        let database = flotilla_test_support::PgDatabase::create().await;
        let store = Store::open(&database.url).await.expect("the Postgres store");
        run("Postgres (GIN on to_tsvector)", &store, count).await;
        store.close().await;
        database.drop_now().await;
    } else {
        println!("Postgres: not run (FLOTILLA_TEST_POSTGRES is not set)");
    }
}
