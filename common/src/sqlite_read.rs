//! Reads from the embedded SQLite file on threads of their own.
//!
//! sqlx runs each SQLite connection on a thread of its own too, but a query crosses
//! threads several times (the command in, each row out, the end of the result), and each
//! value is copied before the row is mapped: under GetPost a third of blog-service's CPU
//! went to waking threads. Here a read is one job on a channel and one answer on a
//! oneshot, run by a few long-lived threads that each keep one read-only connection and
//! its prepared statements; when reads arrive faster than they finish, a thread takes the
//! next job without sleeping in between. File I/O stays off the async runtime.
//! Writes keep going through sqlx (`SqlPool`).

use std::{
    path::Path,
    sync::{Arc, Mutex, PoisonError, mpsc},
    thread,
    time::Duration,
};

use anyhow::Context as _;
use tokio::sync::oneshot;

pub use rusqlite::{Connection, Error, Row, Rows, params, types::Type};

type Job = Box<dyn FnOnce(&Connection) + Send>;

/// Read-only connections to one SQLite file, each on its own thread.
#[derive(Debug)]
pub struct SqliteReader {
    jobs: mpsc::Sender<Job>,
}

/// How a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file is locked past the busy timeout, or cannot be opened or read.
    #[error("the SQLite database is unavailable")]
    Unavailable(#[source] Error),
    /// Anything else: a bad statement, a value that does not decode.
    #[error("reading from SQLite failed")]
    Failed(#[source] Error),
    /// The reader threads are gone (the process is stopping).
    #[error("the SQLite reader threads have stopped")]
    Stopped,
}

impl From<Error> for ReadError {
    fn from(error: Error) -> Self {
        use rusqlite::ErrorCode::{
            CannotOpen, DatabaseBusy, DatabaseLocked, NotADatabase, SystemIoFailure,
        };
        match error.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked | CannotOpen | SystemIoFailure | NotADatabase) => {
                Self::Unavailable(error)
            }
            _ => Self::Failed(error),
        }
    }
}

impl SqliteReader {
    /// Opens `threads` read-only connections to the (existing) file at `path` and starts
    /// their threads; they end when the reader is dropped. `busy_timeout` bounds how long
    /// a read waits for a lock (rare in WAL mode: recovery, a truncating checkpoint).
    pub fn open(path: &Path, threads: usize, busy_timeout: Duration) -> anyhow::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let conn = open_read_only(path, busy_timeout)
                .with_context(|| format!("cannot open `{}` for reading", path.display()))?;
            conn.set_prepared_statement_cache_capacity(32);
            let queue = Arc::clone(&queue);
            thread::Builder::new()
                .name(format!("sqlite-read-{n}"))
                .spawn(move || serve(&conn, &queue))
                .context("cannot start a SQLite reader thread")?;
        }
        Ok(Self { jobs })
    }

    /// Runs `read` on one of the connections and returns its answer.
    pub async fn read<T, F>(&self, read: F) -> Result<T, ReadError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            // The caller may have gone (its call was cancelled): nothing to tell it.
            let _ = answer.send(read(conn));
        });
        self.jobs.send(job).map_err(|_| ReadError::Stopped)?;
        answered
            .await
            .map_err(|_| ReadError::Stopped)?
            .map_err(ReadError::from)
    }
}

/// A read-only connection to the (existing) file at `path`, for one thread, whose reads
/// wait up to `busy_timeout` for a lock.
pub fn open_read_only(path: &Path, busy_timeout: Duration) -> Result<Connection, Error> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    Ok(conn)
}

/// One reader thread: takes jobs until every sender is gone.
fn serve(conn: &Connection, queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = {
            let queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.recv()
        };
        match job {
            Ok(job) => job(conn),
            Err(mpsc::RecvError) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pair-read-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let path = dir.join("read.db");
        let _ = std::fs::remove_file(&path);
        let conn = Connection::open(&path).expect("SQLite opens");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER NOT NULL); \
             INSERT INTO t (n) VALUES (1), (2), (3);",
        )
        .expect("the table is made");
        path
    }

    #[tokio::test]
    async fn reads_see_what_another_connection_committed() {
        let path = database("commit");
        let reader = SqliteReader::open(&path, 2, Duration::from_secs(1)).expect("opens");
        let sum = |conn: &Connection| {
            conn.query_row("SELECT sum(n) FROM t", [], |row| row.get::<_, i64>(0))
        };
        assert_eq!(reader.read(sum).await.expect("reads"), 6);
        let writer = Connection::open(&path).expect("SQLite opens");
        writer
            .execute("INSERT INTO t (n) VALUES (10)", [])
            .expect("the row is written");
        assert_eq!(reader.read(sum).await.expect("reads"), 16);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_each_get_their_own_answer() {
        let path = database("concurrent");
        let reader = Arc::new(SqliteReader::open(&path, 2, Duration::from_secs(1)).expect("opens"));
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..200_i64 {
            let reader = Arc::clone(&reader);
            calls.spawn(async move {
                let got = reader
                    .read(move |conn| {
                        conn.prepare_cached("SELECT $1 + count(*) FROM t")?
                            .query_row(params![n], |row| row.get::<_, i64>(0))
                    })
                    .await;
                (n, got)
            });
        }
        for (n, got) in calls.join_all().await {
            assert_eq!(got.expect("reads"), n + 3);
        }
    }

    #[tokio::test]
    async fn connections_are_read_only_and_errors_are_told_apart() {
        let path = database("readonly");
        let reader = SqliteReader::open(&path, 1, Duration::from_secs(1)).expect("opens");
        let write = reader
            .read(|conn| conn.execute("INSERT INTO t (n) VALUES (4)", []))
            .await;
        assert!(matches!(write, Err(ReadError::Failed(_))), "{write:?}");
        let missing = reader
            .read(|conn| conn.query_row("SELECT n FROM nowhere", [], |row| row.get::<_, i64>(0)))
            .await;
        assert!(matches!(missing, Err(ReadError::Failed(_))), "{missing:?}");
        assert!(
            SqliteReader::open(&path.with_file_name("absent.db"), 1, Duration::from_secs(1))
                .is_err(),
            "a missing file is an error, not an empty database"
        );
    }
}
