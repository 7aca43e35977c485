//! The SQL backends both services run on: PostgreSQL for production, an embedded SQLite
//! file by default. The backend is chosen once, from the URL; a store keeps one
//! `SqlPool` and writes each query once (the SQL both backends accept), running it
//! through `with_pool!`.
//!
//! The pool is ours, not sqlx's: sqlx's pool pings every connection on its way back
//! (a second round trip per query, a wake-up of the database and a spawned task), only
//! to learn what the query's own result already says. Here a connection goes back to
//! the pool when its query ended in a way that leaves the protocol in step (a row, no
//! row, or an error the database answered with); a lost connection, or one whose query
//! was cancelled midway, is closed instead, and an I/O error also drops the idle ones,
//! which a restarted server has cut as well.

use std::{
    fmt,
    future::Future,
    path::Path,
    str::FromStr as _,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use sqlx::{
    ConnectOptions as _, Connection,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgConnection},
    sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous},
};
use tokio::sync::{Semaphore, SemaphorePermit};

/// The error of every query, whichever backend ran it.
pub type Error = sqlx::Error;

/// A connection pool of either backend.
#[derive(Clone, Debug)]
pub enum SqlPool {
    Postgres(Pool<PgConnection>),
    Sqlite(Pool<SqliteConnection>),
}

/// The migrations of one service, one set per backend.
pub struct Migrations {
    pub postgres: &'static Migrator,
    pub sqlite: &'static Migrator,
}

/// Runs `$body` with `$conn` bound to a pooled connection (`&mut PgConnection` or
/// `&mut SqliteConnection`), so one query text and one row mapping serve both. `$body`
/// is the inside of an async block that yields `Result<_, sqlx::Error>` (`?` works in
/// it); the macro yields that result, or the error of getting a connection.
/// `$body` gets the pool's timeout (the store timeout): a database that stops
/// answering, with its connection left open (a silent link, a frozen server), fails
/// the query with a timed-out I/O error (so UNAVAILABLE) and the connection is
/// closed, never reused.
/// `with_pool!(write pool, conn => …)` runs a write: on SQLite it first waits for the
/// pool's write turn (`SqlPool::write_turn`).
#[macro_export]
macro_rules! with_pool {
    (write $sql_pool:expr, $conn:ident => $body:expr) => {
        match $sql_pool.write_turn().await {
            Ok(_turn) => $crate::with_pool!($sql_pool, $conn => $body),
            Err(error) => Err(error),
        }
    };
    ($sql_pool:expr, $conn:ident => $body:expr) => {
        match $sql_pool {
            $crate::sql::SqlPool::Postgres(pool) => $crate::with_pool!(@lease pool, $conn => $body),
            $crate::sql::SqlPool::Sqlite(pool) => $crate::with_pool!(@lease pool, $conn => $body),
        }
    };
    (@lease $pool:ident, $conn:ident => $body:expr) => {
        match $pool.acquire().await {
            Ok(mut lease) => {
                let deadline = lease.timeout();
                let run = async {
                    let $conn = lease.connection();
                    $body
                };
                let result: ::std::result::Result<_, $crate::sql::Error> =
                    $crate::sql::within(deadline, run).await;
                lease.settle(&result);
                result
            }
            Err(error) => Err(error),
        }
    };
}

/// How long a connection may live, and stay unused, before the pool closes it (as
/// sqlx's defaults: a server-side leak or a changed setting does not live forever).
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
const MAX_IDLE: Duration = Duration::from_secs(10 * 60);

/// At most `size` connections of one kind, opened on demand and reused; waiting for
/// one (including opening it) is bounded by the acquire timeout.
pub struct Pool<C: Connection> {
    inner: Arc<Inner<C>>,
}

struct Inner<C: Connection> {
    options: <C as Connection>::Options,
    idle: Mutex<Vec<Pooled<C>>>,
    permits: Semaphore,
    /// One write at a time, on SQLite (`SqlPool::write_turn`).
    write_turns: Semaphore,
    size: usize,
    acquire_timeout: Duration,
}

struct Pooled<C> {
    conn: C,
    opened: Instant,
    released: Instant,
}

impl<C: Connection> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: Connection> fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.inner.size)
            .field(
                "in_use",
                &(self.inner.size - self.inner.permits.available_permits()),
            )
            .field("idle", &self.inner.idle().len())
            .finish_non_exhaustive()
    }
}

impl<C: Connection> Inner<C> {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Pooled<C>>> {
        // The list stays consistent whatever panicked while holding it.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<C: Connection + 'static> Pool<C> {
    /// A pool of at most `size` connections, starting with `first`.
    fn new(
        options: <C as Connection>::Options,
        size: usize,
        acquire_timeout: Duration,
        first: C,
    ) -> Self {
        let now = Instant::now();
        Self {
            inner: Arc::new(Inner {
                options,
                idle: Mutex::new(vec![Pooled {
                    conn: first,
                    opened: now,
                    released: now,
                }]),
                permits: Semaphore::new(size),
                write_turns: Semaphore::new(1),
                size,
                acquire_timeout,
            }),
        }
    }

    /// A connection for one query: an idle one, or a new one when none is idle and the
    /// pool is not full. `PoolTimedOut` after the acquire timeout.
    pub async fn acquire(&self) -> Result<Lease<'_, C>, Error> {
        // The common case, without arming a timer: a free slot and an idle connection.
        if let Ok(permit) = self.inner.permits.try_acquire()
            && let Some(pooled) = self.take_idle()
        {
            return Ok(Lease {
                pool: &self.inner,
                pooled: Some(pooled),
                _permit: permit,
            });
        }
        tokio::time::timeout(self.inner.acquire_timeout, async {
            let permit = self
                .inner
                .permits
                .acquire()
                .await
                .map_err(|_| Error::PoolClosed)?;
            let pooled = match self.take_idle() {
                Some(pooled) => pooled,
                None => {
                    let conn = self.inner.options.connect().await?;
                    let now = Instant::now();
                    Pooled {
                        conn,
                        opened: now,
                        released: now,
                    }
                }
            };
            Ok(Lease {
                pool: &self.inner,
                pooled: Some(pooled),
                _permit: permit,
            })
        })
        .await
        .map_err(|_| Error::PoolTimedOut)?
    }

    /// The most recently used idle connection that is not past its age limits; older
    /// ones met on the way are closed.
    fn take_idle(&self) -> Option<Pooled<C>> {
        let now = Instant::now();
        loop {
            let pooled = self.inner.idle().pop()?;
            if now.duration_since(pooled.opened) < MAX_LIFETIME
                && now.duration_since(pooled.released) < MAX_IDLE
            {
                return Some(pooled);
            }
            close(pooled.conn);
        }
    }
}

/// Closes a connection politely (PostgreSQL's Terminate, SQLite's worker shut down)
/// without making the caller wait.
fn close<C: Connection + 'static>(conn: C) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.close()).await;
        });
    }
}

/// One connection taken from the pool. `settle` gives it back after a query; dropped
/// without `settle` (the query's future was cancelled) it is closed, since the
/// protocol may be out of step.
pub struct Lease<'a, C: Connection> {
    pool: &'a Inner<C>,
    pooled: Option<Pooled<C>>,
    _permit: SemaphorePermit<'a>,
}

impl<C: Connection> Lease<'_, C> {
    /// How long a query on this connection may take: the pool's timeout.
    pub fn timeout(&self) -> Duration {
        self.pool.acquire_timeout
    }

    /// The connection, to run queries on.
    #[expect(
        clippy::missing_panics_doc,
        reason = "present until settled, which consumes the lease"
    )]
    pub fn connection(&mut self) -> &mut C {
        &mut self
            .pooled
            .as_mut()
            .expect("a lease holds its connection until settled")
            .conn
    }

    /// Returns the connection to the pool if `result` leaves it usable; closes it
    /// otherwise. When the connection was lost, the idle ones are closed too: a server
    /// that restarted or cut its clients has cut them as well.
    pub fn settle<T>(mut self, result: &Result<T, Error>) {
        let Some(mut pooled) = self.pooled.take() else {
            return;
        };
        match result {
            Err(error) if is_unavailable(error) => {
                drop(pooled);
                if is_connection_lost(error) {
                    let idle = std::mem::take(&mut *self.pool.idle());
                    drop(idle);
                }
            }
            // The query ran to its end: a result, or an answer the protocol expects.
            Ok(_)
            | Err(
                Error::Database(_)
                | Error::RowNotFound
                | Error::ColumnNotFound(_)
                | Error::ColumnIndexOutOfBounds { .. }
                | Error::ColumnDecode { .. }
                | Error::Decode(_)
                | Error::TypeNotFound { .. },
            ) => {
                pooled.released = Instant::now();
                self.pool.idle().push(pooled);
            }
            Err(_) => drop(pooled),
        }
    }
}

/// `query`'s result, or, when it does not answer within `deadline`, a timed-out I/O
/// error: so the connection is closed (the protocol is out of step) and the idle ones
/// with it (they went through the same silent link).
pub async fn within<T>(
    deadline: Duration,
    query: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(deadline, query)
        .await
        .unwrap_or_else(|_| {
            Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the database did not answer in time",
            )))
        })
}

/// A connection that broke, or that the server closed (PostgreSQL's class 08 and 57P).
fn is_connection_lost(error: &Error) -> bool {
    match error {
        Error::Io(_) | Error::Protocol(_) => true,
        Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
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
                let mut first = open_first::<PgConnection>(&options, timeout)
                    .await
                    .with_context(|| format!("{variable}: cannot connect to PostgreSQL"))?;
                migrations
                    .postgres
                    .run(&mut first)
                    .await
                    .with_context(|| format!("applying the migrations of {variable} failed"))?;
                Self::Postgres(Pool::new(options, 16, timeout, first))
            }
            Some(url) if url.starts_with("sqlite:") => {
                Self::Sqlite(sqlite(url, variable, timeout, migrations).await?)
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
                Self::Sqlite(sqlite(&url, variable, timeout, migrations).await?)
            }
        };
        Ok(pool)
    }

    /// Which backend this is, for the startup log.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "PostgreSQL",
            Self::Sqlite(_) => "SQLite",
        }
    }

    /// The file of an SQLite database on disk (`None` on PostgreSQL, and for an
    /// in-memory SQLite database, which only the pool's own connections can see).
    pub fn sqlite_file(&self) -> Option<&Path> {
        match self {
            Self::Postgres(_) => None,
            Self::Sqlite(pool) => {
                Some(pool.inner.options.get_filename()).filter(|file| file.is_file())
            }
        }
    }

    /// On SQLite, this process's turn to write, held until the permit is dropped; `None`
    /// on PostgreSQL. SQLite lets one connection write at a time, and a connection that
    /// finds the file locked sleeps in SQLite's busy handler (1, 2, 5 … up to 100 ms
    /// between tries) however soon the lock is free: with many writers in one process,
    /// writes waited up to a second. Taking turns here, in arrival order, leaves the busy
    /// handler to writers in other processes. `PoolTimedOut` after the acquire timeout.
    pub async fn write_turn(&self) -> Result<Option<SemaphorePermit<'_>>, Error> {
        match self {
            Self::Postgres(_) => Ok(None),
            Self::Sqlite(pool) => {
                tokio::time::timeout(pool.inner.acquire_timeout, pool.inner.write_turns.acquire())
                    .await
                    .map_err(|_| Error::PoolTimedOut)?
                    .map(Some)
                    .map_err(|_| Error::PoolClosed)
            }
        }
    }

    /// Succeeds while the database answers.
    pub async fn ping(&self) -> Result<(), Error> {
        with_pool!(self, conn => sqlx::query("SELECT 1").execute(conn).await.map(drop))
    }
}

/// The pool's first connection, opened directly: its error says why (refused, no such
/// database, auth, a file that cannot be created), where a pool would only time out.
async fn open_first<C: Connection>(
    options: &<C as Connection>::Options,
    timeout: Duration,
) -> anyhow::Result<C> {
    tokio::time::timeout(timeout, options.connect())
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))?
        .map_err(anyhow::Error::from)
}

/// SQLite in WAL mode with foreign keys on and a busy timeout, so two processes on one
/// file wait for each other instead of failing or corrupting it.
async fn sqlite(
    url: &str,
    variable: &str,
    timeout: Duration,
    migrations: &Migrations,
) -> anyhow::Result<Pool<SqliteConnection>> {
    let options = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("{variable} is not a valid SQLite URL"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let mut first = open_first::<SqliteConnection>(&options, timeout)
        .await
        .with_context(|| format!("{variable}: cannot open the SQLite database `{url}`"))?;
    migrations
        .sqlite
        .run(&mut first)
        .await
        .with_context(|| format!("applying the migrations of {variable} failed"))?;
    Ok(Pool::new(options, 8, timeout, first))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn postgres_options() -> PgConnectOptions {
        let base = std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        PgConnectOptions::from_str(&format!("{}/test", base.trim_end_matches('/')))
            .expect("a valid PostgreSQL URL")
    }

    async fn postgres_pool(size: usize) -> Pool<PgConnection> {
        let options = postgres_options();
        let first = options.connect().await.expect("PostgreSQL is up");
        Pool::new(options, size, Duration::from_secs(5), first)
    }

    async fn backend_pid(pool: &SqlPool) -> Result<i32, Error> {
        with_pool!(pool, conn => sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(conn).await)
    }

    /// The backends of `n` queries that each hold their connection for 100 ms, so that
    /// `n` connections (up to the pool's size) are open at once.
    async fn overlapping_pids(pool: &SqlPool, n: usize) -> HashSet<i32> {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..n {
            let pool = pool.clone();
            calls.spawn(async move {
                with_pool!(&pool, conn => sqlx::query_scalar::<_, i32>(
                    "SELECT pg_backend_pid() FROM (SELECT pg_sleep(0.1)) AS slept"
                ).fetch_one(conn).await)
            });
        }
        calls
            .join_all()
            .await
            .into_iter()
            .map(|pid| pid.expect("the query runs"))
            .collect()
    }

    /// Ends server processes from a connection of its own, outside the pool.
    async fn terminate(pids: &[i32]) {
        let mut admin = postgres_options()
            .connect()
            .await
            .expect("PostgreSQL is up");
        for pid in pids {
            let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .fetch_one(&mut admin)
                .await
                .expect("pg_terminate_backend answers");
            assert!(ended, "backend {pid} was not ended");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_reused_and_never_more_than_the_size() {
        let pool = SqlPool::Postgres(postgres_pool(3).await);
        let pids = overlapping_pids(&pool, 12).await;
        assert_eq!(pids.len(), 3, "12 overlapping queries on a pool of 3");
    }

    #[tokio::test]
    async fn a_lost_connection_fails_one_query_then_the_pool_reconnects() {
        let pool = SqlPool::Postgres(postgres_pool(4).await);
        // Four connections open and idle, then all cut by the server.
        let pids = overlapping_pids(&pool, 4).await;
        assert_eq!(pids.len(), 4, "four overlapping queries, four connections");
        terminate(&pids.iter().copied().collect::<Vec<_>>()).await;
        // Give the server a moment to close the sockets.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let first = backend_pid(&pool).await;
        let error = first.expect_err("the first query meets a closed connection");
        assert!(is_unavailable(&error), "not an outage: {error:?}");
        // The other idle connections were dropped with it: the next query connects anew.
        let pid = backend_pid(&pool).await.expect("the pool reconnects");
        assert!(!pids.contains(&pid), "a cut connection was reused");
    }

    #[tokio::test]
    async fn a_cancelled_query_does_not_return_its_connection() {
        let pool = SqlPool::Postgres(postgres_pool(1).await);
        let before = backend_pid(&pool).await.expect("the query runs");
        let sleeping = async {
            with_pool!(&pool, conn => sqlx::query("SELECT pg_sleep(3)").execute(conn).await.map(drop))
        };
        let cancelled = tokio::time::timeout(Duration::from_millis(200), sleeping).await;
        assert!(cancelled.is_err(), "pg_sleep(3) finished within 200ms");
        // Reusing the sleeping connection would wait for pg_sleep and then answer with
        // the same backend; a fresh one answers at once.
        let after = tokio::time::timeout(Duration::from_secs(2), backend_pid(&pool))
            .await
            .expect("a fresh connection answers at once")
            .expect("the query runs");
        assert_ne!(before, after, "the cancelled query's connection was reused");
        terminate(&[before]).await;
    }

    #[tokio::test]
    async fn an_error_the_database_answers_keeps_the_connection() {
        let pool = SqlPool::Postgres(postgres_pool(1).await);
        let before = backend_pid(&pool).await.expect("the query runs");
        let failed =
            with_pool!(&pool, conn => sqlx::query("SELECT 1/0").execute(conn).await.map(drop));
        assert!(
            matches!(failed, Err(Error::Database(_))),
            "division by zero: {failed:?}"
        );
        let after = backend_pid(&pool).await.expect("the query runs");
        assert_eq!(before, after, "a healthy connection was closed");
    }

    /// A pool on a new SQLite file `<temp>/pair-sql-<name>-<pid>/pool.db`, and its folder.
    async fn sqlite_pool(name: &str) -> (std::path::PathBuf, SqlPool) {
        let dir = std::env::temp_dir().join(format!("pair-sql-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let _ = std::fs::remove_file(dir.join("pool.db"));
        let url = format!("sqlite://{}/pool.db", dir.display());
        let migrations = Migrations {
            postgres: &EMPTY,
            sqlite: &EMPTY,
        };
        let pool = SqlPool::connect(
            Some(&url),
            "unused.db",
            "TEST_URL",
            Duration::from_secs(5),
            &migrations,
        )
        .await
        .expect("SQLite opens");
        (dir, pool)
    }

    #[tokio::test]
    async fn sqlite_runs_migrations_and_queries_through_the_pool() {
        let (dir, pool) = sqlite_pool("queries").await;
        assert_eq!(pool.backend(), "SQLite");
        assert_eq!(pool.sqlite_file(), Some(dir.join("pool.db").as_path()));
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..40_i64 {
            let pool = pool.clone();
            calls.spawn(async move {
                let sum = with_pool!(&pool, conn => sqlx::query_scalar::<_, i64>("SELECT $1 + 1").bind(n).fetch_one(conn).await);
                (n, sum)
            });
        }
        for (n, sum) in calls.join_all().await {
            assert_eq!(sum.expect("the query runs"), n + 1);
        }
        pool.ping().await.expect("SQLite answers");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_writers_of_one_process_take_turns_instead_of_finding_the_file_locked() {
        let (dir, pool) = sqlite_pool("turns").await;
        with_pool!(write &pool, conn => sqlx::query("CREATE TABLE t (n INTEGER NOT NULL)").execute(conn).await.map(drop))
            .expect("the table");
        // No busy timeout: a write that found the file locked by another connection would
        // fail at once (SQLITE_BUSY) instead of sleeping in SQLite's busy handler.
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..32_i64 {
            let pool = pool.clone();
            calls.spawn(async move {
                for m in 0..20_i64 {
                    with_pool!(write &pool, conn => {
                        sqlx::query("PRAGMA busy_timeout = 0").execute(&mut *conn).await?;
                        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
                        sqlx::query("INSERT INTO t (n) VALUES ($1)").bind(n * 100 + m).execute(&mut *conn).await?;
                        sqlx::query("COMMIT").execute(&mut *conn).await.map(drop)
                    })?;
                }
                Ok::<_, Error>(())
            });
        }
        for result in calls.join_all().await {
            result.expect("every write had its turn");
        }
        let count = with_pool!(&pool, conn => sqlx::query_scalar::<_, i64>("SELECT count(*) FROM t").fetch_one(conn).await);
        assert_eq!(count.expect("the count"), 32 * 20);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn an_in_memory_sqlite_database_has_no_file() {
        let migrations = Migrations {
            postgres: &EMPTY,
            sqlite: &EMPTY,
        };
        let pool = SqlPool::connect(
            Some("sqlite::memory:"),
            "unused.db",
            "TEST_URL",
            Duration::from_secs(5),
            &migrations,
        )
        .await
        .expect("an in-memory SQLite database opens");
        assert_eq!(pool.sqlite_file(), None);
        pool.ping().await.expect("SQLite answers");
    }

    static EMPTY: Migrator = Migrator::DEFAULT;
}
