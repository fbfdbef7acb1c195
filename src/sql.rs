//! SQL on a PostgreSQL service as its admin user, over TLS verified against the project
//! CA (as `sslmode=verify-full` would), for what the API cannot do: per-run roles and
//! databases on shared services, seeds and templates.

use std::time::Duration;

use rand::Rng;
use tokio_postgres::types::{FromSqlOwned, ToSql};
use tokio_postgres::{Client, Config};

use crate::probe::{self, TlsMaterial};

/// Where and as whom.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: crate::secret::Secret,
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.host, self.port)
    }
}

/// What a session runs, which decides how it is set up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// The tool's own statements with the admin's rights. Names resolve in `pg_catalog`
    /// only (CVE-2018-1058: a function or operator a run planted in a schema on the path
    /// would otherwise run with the admin's rights), and the settings a database's owner
    /// may give its database (`ALTER DATABASE ... SET role|default_transaction_read_only
    /// ...`) are overridden: startup options outrank them.
    Admin,
    /// Someone's SQL (a seed file), with the server's usual settings.
    Code,
}

/// The startup options of an admin session.
const ADMIN_OPTIONS: &str = "-c search_path=pg_catalog,pg_temp -c role=none \
    -c default_transaction_read_only=off -c statement_timeout=0 -c lock_timeout=0 \
    -c idle_in_transaction_session_timeout=0 -c idle_session_timeout=0 \
    -c local_preload_libraries=";

/// Opens an admin session ([`Session::Admin`]) on `database`.
pub async fn connect_as(t: &Target, database: &str, application: &str) -> Result<Client, String> {
    connect(t, database, application, Session::Admin)
        .await
        .map_err(|e| e.to_string())
}

/// A session that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("connecting to {database} on {host}:{port} as {user}: {why}")]
pub struct ConnectError {
    database: String,
    host: String,
    port: u16,
    user: String,
    why: String,
    /// The server's SQLSTATE, when the server answered.
    pub code: Option<String>,
}

/// Opens a session on `database`, named `application` (sessions can be found, and ended,
/// by it). The connection lives as long as the client.
pub async fn connect(
    t: &Target,
    database: &str,
    application: &str,
    session: Session,
) -> Result<Client, ConnectError> {
    let failed = |why: String, code: Option<String>| ConnectError {
        database: database.to_string(),
        host: t.host.clone(),
        port: t.port,
        user: t.user.clone(),
        why,
        code,
    };
    let tls = probe::client_config(&TlsMaterial {
        ca_pem: t.ca_pem.clone(),
        client: None,
    })
    .map_err(|e| failed(e, None))?;
    let mut config = Config::new();
    config
        .host(&t.host)
        .port(t.port)
        .user(&t.user)
        .password(t.password.expose())
        .dbname(database)
        .application_name(application)
        .ssl_mode(tokio_postgres::config::SslMode::Require)
        .connect_timeout(Duration::from_secs(10));
    if session == Session::Admin {
        config.options(ADMIN_OPTIONS);
    }
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
    let (client, connection) = config
        .connect(connector)
        .await
        .map_err(|e| failed(said(&e), code(&e).map(str::to_string)))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The first column of every row of `query`.
pub async fn column<T: FromSqlOwned>(
    db: &Client,
    query: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<T>, String> {
    let rows = db.query(query, params).await.map_err(|e| said(&e))?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(|e| said(&e)))
        .collect()
}

/// The one value of a query that answers one row of one column.
pub async fn value<T: FromSqlOwned>(
    db: &Client,
    query: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<T, String> {
    let row = db.query_one(query, params).await.map_err(|e| said(&e))?;
    row.try_get(0).map_err(|e| said(&e))
}

/// The server's own message (and detail), not the driver's wrapping.
pub fn said(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        },
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s = format!("{s}: {inner}");
                src = inner.source();
            }
            s
        }
    }
}

/// The SQLSTATE of a server error.
pub fn code(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(|c| c.code())
}

/// `"name"`: an identifier, quoted.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'text'`: a literal, quoted.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A SCRAM-SHA-256 verifier for `password`: the statement that sets it never carries
/// the password itself (statements may reach logs).
pub fn scram(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// A fresh password for a role made over SQL: 24 letters and digits.
pub fn password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
