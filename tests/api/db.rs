//! Fresh databases for tests: every test gets its own SQLite file, and its own
//! PostgreSQL database when `TEST_DATABASE_URL` names a server, so tests run
//! in parallel without seeing each other's rows.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor, PgConnection, Row};

/// Test databases older than this are dropped by later runs (a crashed or
/// interrupted run leaves its databases behind).
const STALE_AFTER_SECS: u64 = 24 * 60 * 60;

/// A new, empty SQLite database file in a temporary directory. Keep the
/// directory alive for as long as the database is used.
pub async fn fresh_sqlite() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("salesmetrics.db").display());
    (dir, url)
}

/// A new, empty PostgreSQL database on the server of `TEST_DATABASE_URL`,
/// named `sm_<unix seconds>_<pid>_<n>`, with a locale (not byte-order)
/// default collation where the server supports ICU; `None` (and a note) when
/// the variable is not set.
pub async fn fresh_postgres() -> Option<String> {
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        println!("TEST_DATABASE_URL not set: skipping PostgreSQL");
        return None;
    };
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut conn = PgConnection::connect(&base)
        .await
        .expect("connect to TEST_DATABASE_URL");
    drop_stale_databases(&mut conn).await;
    let name = format!(
        "sm_{}_{}_{}",
        unix_secs(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    // A locale collation (ICU en-US: 'a' < 'B') as the database default, so
    // the suite proves the schema's COLLATE "C" columns sort by bytes like
    // SQLite. Servers built without ICU get the server default.
    let icu = format!(
        "CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
    );
    if conn.execute(icu.as_str()).await.is_err() {
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .expect("create a test database");
    }
    conn.close().await.ok();
    Some(with_database(&base, &name))
}

/// Best effort: drops a database made by [`fresh_postgres`] once its test is
/// done (a test that panics leaves it for [`drop_stale_databases`]). `FORCE`
/// ends the store's pooled connections, which are being closed anyway.
pub async fn drop_postgres(url: &str) {
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        return;
    };
    let name = url
        .split('?')
        .next()
        .and_then(|u| u.rsplit('/').next())
        .unwrap_or_default();
    if !name.starts_with("sm_") {
        return;
    }
    if let Ok(mut conn) = PgConnection::connect(&base).await {
        let _ = conn
            .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
            .await;
        conn.close().await.ok();
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Best effort: drops `sm_*` databases created more than a day ago.
async fn drop_stale_databases(conn: &mut PgConnection) {
    let Ok(rows) = sqlx::query("SELECT datname FROM pg_database WHERE datname LIKE 'sm\\_%'")
        .fetch_all(&mut *conn)
        .await
    else {
        return;
    };
    let now = unix_secs();
    for row in rows {
        let name: String = row.get(0);
        let created = name.split('_').nth(1).and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|secs| now.saturating_sub(secs) > STALE_AFTER_SECS) {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                .await;
        }
    }
}

/// `base` with its database name replaced by `database`.
pub fn with_database(base: &str, database: &str) -> String {
    let (url, query) = match base.split_once('?') {
        Some((url, query)) => (url, format!("?{query}")),
        None => (base, String::new()),
    };
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let server = match url[authority_start..].find('/') {
        Some(slash) => &url[..authority_start + slash],
        None => url,
    };
    format!("{server}/{database}{query}")
}

#[test]
fn replaces_the_database_name() {
    assert_eq!(
        with_database("postgres://u@h:5432/test", "sm_1"),
        "postgres://u@h:5432/sm_1"
    );
    assert_eq!(with_database("postgres://h", "sm_1"), "postgres://h/sm_1");
    assert_eq!(
        with_database("postgresql://h/x?sslmode=disable", "sm_1"),
        "postgresql://h/sm_1?sslmode=disable"
    );
}
