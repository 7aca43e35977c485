//! The SQL backends both services run on: PostgreSQL for production, an embedded SQLite
//! file by default. The backend is chosen once, from the URL; a store keeps one
//! `SqlPool` and writes each query once (the SQL both backends accept), running it
//! through `with_pool!`.

use std::{path::Path, str::FromStr as _, time::Duration};

use anyhow::Context as _;
use sqlx::{
    ConnectOptions as _, PgPool, SqlitePool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

/// A connection pool of either backend.
#[derive(Clone, Debug)]
pub enum SqlPool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The migrations of one service, one set per backend.
pub struct Migrations {
    pub postgres: &'static Migrator,
    pub sqlite: &'static Migrator,
}

/// Runs `$body` with `$pool` bound to the concrete pool of either backend, so one
/// query text and one row mapping serve both.
#[macro_export]
macro_rules! with_pool {
    ($sql_pool:expr, $pool:ident => $body:expr) => {
        match $sql_pool {
            $crate::sql::SqlPool::Postgres($pool) => $body,
            $crate::sql::SqlPool::Sqlite($pool) => $body,
        }
    };
}

/// Whether a database error means "the database is not reachable" (so UNAVAILABLE):
/// no connection, a lost one, a server shutting down or full, a locked SQLite file.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_outage_code(&code)),
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs of refusals while connecting or of a live connection: class 08
/// (connection exception), class 28 (login refused), 3D000 (no such database), 53300
/// (too many connections), 57P01-57P03 (server shutting down or starting); and SQLite's
/// BUSY and LOCKED codes after the busy timeout (another process holds the file).
fn is_outage_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("28")
        || code.starts_with("57P")
        || matches!(code, "3D000" | "53300" | "5" | "6" | "261" | "517")
}

impl SqlPool {
    /// Connects to `url` (`postgres://`, `postgresql://` or `sqlite://`), or with no URL
    /// to the SQLite file `./data/<default_file>`, then applies the migrations.
    /// `variable` names the setting in every error, so a bad value is easy to find.
    pub async fn connect(
        url: Option<&str>,
        default_file: &str,
        variable: &str,
        timeout: Duration,
        migrations: &Migrations,
    ) -> anyhow::Result<Self> {
        let pool = match url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let options = PgConnectOptions::from_str(url)
                    .with_context(|| format!("{variable} is not a valid PostgreSQL URL"))?;
                // One direct connection first: its error says why (refused, no such
                // database, auth), where a pool would only say it timed out.
                let first = tokio::time::timeout(timeout, options.connect())
                    .await
                    .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))
                    .and_then(|connected| connected.map_err(anyhow::Error::from))
                    .with_context(|| format!("{variable}: cannot connect to PostgreSQL"))?;
                drop(first);
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(timeout)
                    // sqlx pings a connection when it goes back to the pool (closing a
                    // broken one); pinging again when taking it out cost every query a
                    // second round trip.
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await
                    .with_context(|| format!("{variable}: cannot connect to PostgreSQL"))?;
                Self::Postgres(pool)
            }
            Some(url) if url.starts_with("sqlite:") => {
                Self::Sqlite(sqlite(url, variable, timeout).await?)
            }
            Some(url) => anyhow::bail!(
                "{variable} has an unsupported scheme `{}`: use postgres:// or sqlite://",
                url.split(':').next().unwrap_or_default()
            ),
            None => {
                let dir = Path::new("data");
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("{variable} is unset and ./data/ cannot be created for the embedded database")
                })?;
                let url = format!("sqlite://data/{default_file}");
                Self::Sqlite(sqlite(&url, variable, timeout).await?)
            }
        };
        let migrated = match &pool {
            Self::Postgres(pool) => migrations.postgres.run(pool).await,
            Self::Sqlite(pool) => migrations.sqlite.run(pool).await,
        };
        migrated.with_context(|| format!("applying the migrations of {variable} failed"))?;
        Ok(pool)
    }

    /// Which backend this is, for the startup log.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "PostgreSQL",
            Self::Sqlite(_) => "SQLite",
        }
    }

    /// Succeeds while the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))
    }
}

/// SQLite in WAL mode with foreign keys on and a busy timeout, so two processes on one
/// file wait for each other instead of failing or corrupting it.
async fn sqlite(url: &str, variable: &str, timeout: Duration) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("{variable} is not a valid SQLite URL"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(8)
        .acquire_timeout(timeout)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .with_context(|| format!("{variable}: cannot open the SQLite database `{url}`"))
}
