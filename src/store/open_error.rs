//! Why the database could not be opened at start-up, in words an operator
//! can act on. [`connect`](super::connect) reports failures as the service's
//! [`Error`], whose message is deliberately vague for API callers
//! ("internal error"); at start-up the operator is the reader, so the cause
//! is dug out of the error and named with what to do. Only the redacted URL
//! is ever shown.

use std::path::Path;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use crate::config::redact_url;
use crate::error::Error;

/// PostgreSQL's SQLSTATE for a database that does not exist.
const PG_UNKNOWN_DATABASE: &str = "3D000";
/// SQLSTATE class of failed authentication (28000, 28P01).
const PG_AUTH_CLASS: &str = "28";

/// The start-up message for a failed [`connect`](super::connect) to `url`:
/// what failed and what to do about it.
pub fn explain_open_error(url: &str, err: &Error) -> String {
    let shown = redact_url(url);
    let sqlx_error = match err {
        Error::Internal(cause) | Error::Unavailable(cause) => cause.downcast_ref::<sqlx::Error>(),
        _ => None,
    };
    let detail = if url.starts_with("sqlite:") {
        sqlite_detail(url, err)
    } else {
        sqlx_error.and_then(|e| postgres_detail(url, e))
    };
    match detail {
        Some(detail) => format!("cannot open the database {shown}: {detail}"),
        None => format!("cannot open the database {shown}: {}", cause_text(err)),
    }
}

/// The error's own text, with the cause that [`Error`] keeps for the log.
fn cause_text(err: &Error) -> String {
    match err {
        Error::Internal(cause) | Error::Unavailable(cause) => format!("{cause:#}"),
        other => other.to_string(),
    }
}

/// What went wrong with a PostgreSQL database, when it is a case an
/// operator commonly meets.
fn postgres_detail(url: &str, err: &sqlx::Error) -> Option<String> {
    let options = PgConnectOptions::from_str(url).ok()?;
    let (host, port) = (options.get_host(), options.get_port());
    let user = options.get_username();
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if code == PG_UNKNOWN_DATABASE {
                let database = options.get_database().unwrap_or(user);
                Some(format!(
                    "database \"{database}\" does not exist on {host}:{port}; create it \
                     (createdb -h {host} -p {port} -U {user} {database}) or fix --database-url"
                ))
            } else if code.starts_with(PG_AUTH_CLASS) {
                Some(format!(
                    "PostgreSQL on {host}:{port} refused user \"{user}\" ({}); check the user \
                     and password of --database-url",
                    db.message()
                ))
            } else {
                None
            }
        }
        // rustls reports a refused certificate as an I/O error.
        sqlx::Error::Io(io) if io.to_string().contains("certificate") => Some(format!(
            "TLS with PostgreSQL on {host}:{port} failed ({io}); check the ssl parameters \
             of --database-url: sslmode=disable if the server offers no TLS, \
             sslrootcert=<CA file> if its certificate is not from a CA the system trusts, \
             sslmode=verify-ca if the certificate does not name the host"
        )),
        sqlx::Error::Io(io) => Some(format!(
            "cannot connect to PostgreSQL on {host}:{port} ({io}); is it running, and are the \
             host and port of --database-url right?"
        )),
        sqlx::Error::PoolTimedOut => Some(format!(
            "no connection to PostgreSQL on {host}:{port} in time; is it running and reachable?"
        )),
        sqlx::Error::Tls(tls) => Some(format!(
            "TLS with PostgreSQL on {host}:{port} failed ({tls}); check the ssl parameters \
             of --database-url: sslmode=disable if the server offers no TLS, \
             sslrootcert=<CA file> if its certificate is not from a CA the system trusts"
        )),
        _ => None,
    }
}

/// What went wrong with a SQLite file: a missing directory or a file that
/// cannot be created or written, found by looking at the file system.
fn sqlite_detail(url: &str, err: &Error) -> Option<String> {
    if matches!(err, Error::InvalidArgument { .. }) {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let file = options.get_filename();
    let directory = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !directory.is_dir() {
        return Some(format!(
            "cannot create the SQLite file {}: the directory {} does not exist; create it or \
             fix --database-url",
            file.display(),
            directory.display()
        ));
    }
    let existed = file.exists();
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(file)
    {
        Err(io) => Some(format!(
            "cannot {} the SQLite file {}: {io}; fix the permissions or --database-url",
            if existed { "write" } else { "create" },
            file.display()
        )),
        Ok(_) => {
            // Only a probe: leave the file system as it was.
            if !existed {
                let _ = std::fs::remove_file(file);
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlite_file_in_a_missing_directory_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("missing").join("x.db");
        let url = format!("sqlite://{}", file.display());
        let text = explain_open_error(&url, &Error::internal("unable to open database file"));
        assert!(text.contains("does not exist"), "{text}");
        assert!(text.contains(&dir.path().join("missing").display().to_string()));
    }

    #[test]
    fn unknown_causes_keep_their_text_and_the_url_is_redacted() {
        let text = explain_open_error(
            "postgres://app:s3cret@db/sales",
            &Error::internal("something odd"),
        );
        assert_eq!(
            text,
            "cannot open the database postgres://app:***@db/sales: something odd"
        );
    }
}
