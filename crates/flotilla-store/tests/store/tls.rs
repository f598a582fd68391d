//! Postgres over TLS: a throwaway cluster that accepts TLS connections only, with a
//! certificate from a CA made for the test. `verify-full` with that CA connects (the
//! pool and the COPY connection); a CA that did not sign it is refused as a certificate
//! problem naming the URL, password hidden; `require` encrypts without checking.

use flotilla_store::{ErrorKind, Param, SqlValue, Store, StoreError};
use flotilla_test_support::{PgTlsServer, TestCa};

/// Whether the store's own connection is encrypted, as the server sees it.
async fn encrypted(store: &Store) -> bool {
    let rows = store
        .fetch_all("SELECT CASE WHEN ssl THEN 1 ELSE 0 END FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .unwrap();
    rows[0].int(0).unwrap() == 1
}

#[tokio::test]
async fn verify_full_with_the_ca_connects_over_tls_for_queries_and_copy() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "pg");
    let server = PgTlsServer::start(&ca);
    let url = server.url(&format!("sslmode=verify-full&sslrootcert={}", ca.cert.display()));
    flotilla_store::check_url(&url).unwrap();
    let store = Store::open(&url).await.unwrap();
    assert!(encrypted(&store).await);

    store.execute("CREATE TABLE tls_t (t TEXT, n BIGINT)", &[]).await.unwrap();
    let copied = store.copy_in(&[("COPY tls_t (t, n) FROM STDIN", b"over tls\t7\n")]).await.unwrap();
    assert_eq!(copied, 1);
    let rows = store.fetch_all("SELECT t, n FROM tls_t WHERE n = $1", &[Param::Int(7)]).await.unwrap();
    assert_eq!(rows[0].values(), &[SqlValue::Text("over tls".into()), SqlValue::Int(7)]);
    store.close().await;

    // The server takes nothing else: without TLS the same database is refused.
    let plain = Store::open(&server.url("sslmode=disable")).await.unwrap_err();
    assert!(plain.chain().contains("no encryption"), "{}", plain.chain());
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_certificate_is_refused_as_a_certificate_problem() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "pg");
    let other = TestCa::new(dir.path(), "other");
    let server = PgTlsServer::start(&ca);
    for mode in ["verify-full", "verify-ca"] {
        let url = server
            .url(&format!("sslmode={mode}&sslrootcert={}", other.cert.display()))
            .replace("postgres@", "postgres:hunter2@");
        let error = Store::open(&url).await.unwrap_err();
        assert!(matches!(error, StoreError::Certificate { .. }), "{mode}: {}", error.chain());
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        let chain = error.chain();
        let shown = format!("postgres://postgres:***@127.0.0.1:{}/postgres", server.port);
        assert!(chain.contains(&shown), "{chain}");
        assert!(chain.contains("TLS certificate problem") && chain.contains("UnknownIssuer"), "{chain}");
        assert!(!chain.contains("hunter2"), "{chain}");
    }
}

#[tokio::test]
async fn sslmode_require_encrypts_without_checking_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "pg");
    let server = PgTlsServer::start(&ca);
    // No CA at all: `require` (like libpq's) encrypts and checks nothing.
    let store = Store::open(&server.url("sslmode=require")).await.unwrap();
    assert!(encrypted(&store).await);
    store.close().await;
    // `verify-full` without the CA trusts only the public roots, which never signed it.
    let error = Store::open(&server.url("sslmode=verify-full")).await.unwrap_err();
    assert!(matches!(error, StoreError::Certificate { .. }), "{}", error.chain());
}

#[test]
fn check_url_names_a_bad_sslrootcert_or_sslmode() {
    let dir = tempfile::tempdir().unwrap();
    let url = |query: &str| format!("postgres://u:hunter2@db.example/flotilla?{query}");

    let missing =
        flotilla_store::check_url(&url("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")).unwrap_err().to_string();
    assert!(missing.contains("sslrootcert /nonexistent/ca.pem"), "{missing}");
    assert!(missing.contains("postgres://u:***@db.example") && !missing.contains("hunter2"), "{missing}");

    let not_pem = dir.path().join("ca file.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let escaped = not_pem.display().to_string().replace(' ', "%20");
    let empty =
        flotilla_store::check_url(&url(&format!("sslmode=verify-ca&sslrootcert={escaped}"))).unwrap_err().to_string();
    assert!(empty.contains(&format!("sslrootcert {} holds no PEM certificate", not_pem.display())), "{empty}");

    let mode = flotilla_store::check_url(&url("sslmode=sometimes")).unwrap_err().to_string();
    assert!(mode.contains("sslmode") && mode.contains("sometimes"), "{mode}");

    flotilla_store::check_url(&url("sslmode=require")).unwrap();
    flotilla_store::check_url("sqlite://data/flotilla.db").unwrap();
    assert!(flotilla_store::check_url("mysql://h/db").is_err());
}
