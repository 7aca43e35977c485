//! `PostStore` on SQL: PostgreSQL or SQLite, the same queries for both.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pair_common::{
    sql::{Migrations, SqlPool, is_unavailable},
    sqlite_read::{self, ReadError, SqliteReader},
    with_pool,
};
use sqlx::Row;
use uuid::Uuid;

use super::PostStore;
use crate::{
    domain::{Post, PostChange, page::Cursor},
    error::BlogError,
};

/// The blog-service schema, per backend.
pub static MIGRATIONS: Migrations = Migrations {
    postgres: &sqlx::migrate!("../migrations/blog/postgres"),
    sqlite: &sqlx::migrate!("../migrations/blog/sqlite"),
};

/// Posts in a SQL database, indexed for newest-first keyset paging overall and per author.
/// On SQLite, GetPost and ListPosts read through `SqliteReader` (see its module).
#[derive(Clone, Debug)]
pub struct SqlPostStore {
    pool: SqlPool,
    reader: Option<Arc<SqliteReader>>,
}

impl SqlPostStore {
    /// `read_timeout` bounds how long an SQLite read waits for a lock.
    pub fn new(pool: SqlPool, read_timeout: Duration) -> anyhow::Result<Self> {
        let reader = match pool.sqlite_file() {
            Some(file) => {
                // Half the cores (at least one, at most four): on two cores one reader
                // keeps up with the runtime's two workers and takes jobs back to back,
                // where two readers woke each other on the queue's lock.
                let threads =
                    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 4));
                Some(Arc::new(SqliteReader::open(file, threads, read_timeout)?))
            }
            None => None,
        };
        Ok(Self { pool, reader })
    }
}

/// The SELECT list every read uses, in `post_from_sqlite`'s order, then `$rest`.
macro_rules! select_posts {
    ($rest:literal) => {
        concat!(
            "SELECT id, author_id, author_username, title, content, create_time, update_time \
             FROM posts ",
            $rest
        )
    };
}

// The reads, one literal per shape, each matching an index exactly: the row comparison
// `(create_time, id) < (..)` walks (create_time DESC, id DESC) from the cursor on. Both
// the sqlx queries and the SQLite reader threads run these.
const FIND: &str = select_posts!("WHERE id = $1");
const LIST: &str = select_posts!("ORDER BY create_time DESC, id DESC LIMIT $1");
const LIST_AFTER: &str =
    select_posts!("WHERE (create_time, id) < ($1, $2) ORDER BY create_time DESC, id DESC LIMIT $3");
const LIST_BY_AUTHOR: &str =
    select_posts!("WHERE author_id = $1 ORDER BY create_time DESC, id DESC LIMIT $2");
const LIST_BY_AUTHOR_AFTER: &str = select_posts!(
    "WHERE author_id = $1 AND (create_time, id) < ($2, $3) \
     ORDER BY create_time DESC, id DESC LIMIT $4"
);

/// A post from a row of `select_posts!`, decoded as sqlx stores them in SQLite: ids as
/// 16-byte blobs, times as RFC 3339 text.
fn post_from_sqlite(row: &sqlite_read::Row<'_>) -> Result<Post, sqlite_read::Error> {
    fn uuid(row: &sqlite_read::Row<'_>, column: usize) -> Result<Uuid, sqlite_read::Error> {
        let bytes = row.get_ref(column)?.as_blob()?;
        Uuid::from_slice(bytes).map_err(|error| {
            sqlite_read::Error::FromSqlConversionFailure(
                column,
                sqlite_read::Type::Blob,
                Box::new(error),
            )
        })
    }
    fn time(
        row: &sqlite_read::Row<'_>,
        column: usize,
    ) -> Result<DateTime<Utc>, sqlite_read::Error> {
        let text = row.get_ref(column)?.as_str()?;
        if let Some(time) = stored_time(text) {
            return Ok(time);
        }
        DateTime::parse_from_rfc3339(text)
            .map(|time| time.with_timezone(&Utc))
            .map_err(|error| {
                sqlite_read::Error::FromSqlConversionFailure(
                    column,
                    sqlite_read::Type::Text,
                    Box::new(error),
                )
            })
    }
    Ok(Post {
        id: uuid(row, 0)?,
        author_id: uuid(row, 1)?,
        author_username: row.get(2)?,
        title: row.get(3)?,
        content: row.get(4)?,
        create_time: time(row, 5)?,
        update_time: time(row, 6)?,
    })
}

/// A time in the one shape sqlx writes (`2026-11-25T04:03:00.123456+00:00`, the
/// fraction optional), read without a general RFC 3339 parser (two per row, 42 per
/// page); `None` for any other shape, which `DateTime::parse_from_rfc3339` then reads.
fn stored_time(text: &str) -> Option<DateTime<Utc>> {
    let (main, rest) = text.split_at_checked(19)?;
    let b = main.as_bytes();
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0_u32, |n, digit| {
            digit
                .is_ascii_digit()
                .then(|| n * 10 + u32::from(digit - b'0'))
        })
    };
    let rest = rest.strip_suffix("+00:00")?;
    let nanos = match rest.strip_prefix('.') {
        None if rest.is_empty() => 0,
        Some(fraction) if (1..=9).contains(&fraction.len()) => {
            let digits = fraction.as_bytes().iter().try_fold(0_u32, |n, digit| {
                digit
                    .is_ascii_digit()
                    .then(|| n * 10 + u32::from(digit - b'0'))
            })?;
            digits * 10_u32.pow(9 - u32::try_from(fraction.len()).ok()?)
        }
        _ => return None,
    };
    let year = i32::try_from(number(0..4)?).ok()?;
    let date = chrono::NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?)?;
    let time = chrono::NaiveTime::from_hms_nano_opt(
        number(11..13)?,
        number(14..16)?,
        number(17..19)?,
        nanos,
    )?;
    Some(date.and_time(time).and_utc())
}

/// A time as sqlx writes it to SQLite, so that text comparisons order it as the stored ones.
fn sqlite_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}

/// A reader thread's error, classified as `classify` does sqlx's.
fn classify_read(error: ReadError) -> BlogError {
    let outage = !matches!(error, ReadError::Failed(_));
    store_error(outage, error)
}

/// Outages are `Unavailable`; anything else is `Internal`.
fn classify(error: sqlx::Error) -> BlogError {
    store_error(is_unavailable(&error), error)
}

fn store_error(outage: bool, error: impl std::error::Error + Send + Sync + 'static) -> BlogError {
    let cause = anyhow::Error::new(error).context("posts database");
    if outage {
        BlogError::Unavailable(cause)
    } else {
        BlogError::Internal(cause)
    }
}

fn post_from_row<R>(row: &R) -> Result<Post, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> Uuid: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> DateTime<Utc>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Post {
        id: row.try_get("id")?,
        author_id: row.try_get("author_id")?,
        author_username: row.try_get("author_username")?,
        title: row.try_get("title")?,
        content: row.try_get("content")?,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
    })
}

fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl PostStore for SqlPostStore {
    async fn insert(&self, post: &Post) -> Result<(), BlogError> {
        with_pool!(write &self.pool, conn => sqlx::query(
            "INSERT INTO posts \
             (id, author_id, author_username, title, content, create_time, update_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(post.id)
        .bind(post.author_id)
        .bind(&post.author_username)
        .bind(&post.title)
        .bind(&post.content)
        .bind(post.create_time)
        .bind(post.update_time)
        .execute(conn)
        .await
        .map(drop))
        .map_err(classify)
    }

    async fn find(&self, id: Uuid) -> Result<Option<Post>, BlogError> {
        if let Some(reader) = &self.reader {
            return reader
                .read(move |conn| {
                    let mut statement = conn.prepare_cached(FIND)?;
                    let mut rows =
                        statement.query(sqlite_read::params![id.as_bytes().as_slice()])?;
                    rows.next()?.map(post_from_sqlite).transpose()
                })
                .await
                .map_err(classify_read);
        }
        with_pool!(&self.pool, conn => sqlx::query(FIND)
        .bind(id)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(post_from_row)
        .transpose())
        .map_err(classify)
    }

    async fn list(
        &self,
        author_id: Option<Uuid>,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Post>, BlogError> {
        let limit = self::limit(limit);
        if let Some(reader) = &self.reader {
            return reader
                .read(move |conn| sqlite_list(conn, author_id, after, limit))
                .await
                .map_err(classify_read);
        }
        with_pool!(&self.pool, conn => {
        let query = match (author_id, after) {
            (None, None) => sqlx::query(LIST)
            .bind(limit),
            (None, Some(after)) => sqlx::query(LIST_AFTER)
            .bind(after.create_time)
            .bind(after.id)
            .bind(limit),
            (Some(author_id), None) => sqlx::query(LIST_BY_AUTHOR)
            .bind(author_id)
            .bind(limit),
            (Some(author_id), Some(after)) => sqlx::query(LIST_BY_AUTHOR_AFTER)
            .bind(author_id)
            .bind(after.create_time)
            .bind(after.id)
            .bind(limit),
        };
        let rows = query.fetch_all(conn).await?;
        rows.iter().map(post_from_row).collect()
        })
        .map_err(classify)
    }

    async fn update_owned(
        &self,
        id: Uuid,
        author_id: Uuid,
        change: &PostChange,
        now: DateTime<Utc>,
    ) -> Result<Option<Post>, BlogError> {
        with_pool!(write &self.pool, conn => sqlx::query(
            "UPDATE posts SET title = COALESCE($3, title), content = COALESCE($4, content), \
             update_time = $5 WHERE id = $1 AND author_id = $2 \
             RETURNING id, author_id, author_username, title, content, create_time, update_time",
        )
        .bind(id)
        .bind(author_id)
        .bind(change.title.as_ref().map(|title| title.as_str()))
        .bind(change.content.as_ref().map(|content| content.as_str()))
        .bind(now)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(post_from_row)
        .transpose())
        .map_err(classify)
    }

    async fn delete_owned(&self, id: Uuid, author_id: Uuid) -> Result<bool, BlogError> {
        with_pool!(write &self.pool, conn => sqlx::query("DELETE FROM posts WHERE id = $1 AND author_id = $2")
            .bind(id)
            .bind(author_id)
            .execute(conn)
            .await
            .map(|done| done.rows_affected() == 1))
            .map_err(classify)
    }

    async fn rename_author(&self, author_id: Uuid, username: &str) -> Result<u64, BlogError> {
        with_pool!(write &self.pool, conn => sqlx::query(
            "UPDATE posts SET author_username = $2 \
             WHERE author_id = $1 AND author_username <> $2",
        )
        .bind(author_id)
        .bind(username)
        .execute(conn)
        .await
        .map(|done| done.rows_affected()))
        .map_err(classify)
    }

    async fn ping(&self) -> Result<(), BlogError> {
        self.pool.ping().await.map_err(classify)
    }
}

/// `list` on an SQLite reader connection: the same four shapes as the sqlx queries.
fn sqlite_list(
    conn: &sqlite_read::Connection,
    author_id: Option<Uuid>,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Vec<Post>, sqlite_read::Error> {
    let after = after.map(|after| (sqlite_time(after.create_time), after.id));
    let mut posts = Vec::with_capacity(usize::try_from(limit).unwrap_or(0));
    let mut collect = |mut rows: sqlite_read::Rows<'_>| -> Result<(), sqlite_read::Error> {
        while let Some(row) = rows.next()? {
            posts.push(post_from_sqlite(row)?);
        }
        Ok(())
    };
    match (author_id, &after) {
        (None, None) => collect(
            conn.prepare_cached(LIST)?
                .query(sqlite_read::params![limit])?,
        )?,
        (None, Some((time, id))) => collect(
            conn.prepare_cached(LIST_AFTER)?
                .query(sqlite_read::params![time, id.as_bytes().as_slice(), limit])?,
        )?,
        (Some(author_id), None) => collect(
            conn.prepare_cached(LIST_BY_AUTHOR)?
                .query(sqlite_read::params![author_id.as_bytes().as_slice(), limit])?,
        )?,
        (Some(author_id), Some((time, id))) => collect(
            conn.prepare_cached(LIST_BY_AUTHOR_AFTER)?
                .query(sqlite_read::params![
                    author_id.as_bytes().as_slice(),
                    time,
                    id.as_bytes().as_slice(),
                    limit
                ])?,
        )?,
    }
    Ok(posts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_read_back_exactly_and_other_shapes_are_left_to_chrono() {
        let base = DateTime::parse_from_rfc3339("2026-11-25T04:03:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        for nanos in [0, 1, 1_000, 123_456_000, 999_999_999, 500_000_000] {
            for days in [0, 1, 400, -20_000] {
                let time =
                    base + chrono::Duration::days(days) + chrono::Duration::nanoseconds(nanos);
                let text = sqlite_time(time);
                assert_eq!(stored_time(&text), Some(time), "{text}");
                let parsed = DateTime::parse_from_rfc3339(&text).expect("rfc 3339");
                assert_eq!(parsed.with_timezone(&Utc), time, "{text}");
            }
        }
        for other in [
            "2026-11-25T04:03:00Z",
            "2026-11-25T04:03:00.1+01:00",
            "2026-11-25 04:03:00+00:00",
            "2026-02-30T04:03:00+00:00",
            "2026-11-25T24:03:00+00:00",
            "2026-11-25T04:03:00.+00:00",
            "2026-11-25T04:03:00.1234567890+00:00",
            "2026-1x-25T04:03:00+00:00",
            "2026-11-25T04:03",
            "",
        ] {
            assert_eq!(stored_time(other), None, "{other}");
        }
    }
}
