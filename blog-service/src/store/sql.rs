//! `PostStore` on SQL: PostgreSQL or SQLite, the same queries for both.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pair_common::{
    sql::{Migrations, SqlPool, is_unavailable},
    with_pool,
};
use sqlx::Row;
use uuid::Uuid;

use super::PostStore;
use crate::{
    domain::{Post, PostChange, page::Cursor},
    error::StoreError,
};

/// The blog-service schema, per backend.
pub static MIGRATIONS: Migrations = Migrations {
    postgres: &sqlx::migrate!("../migrations/blog/postgres"),
    sqlite: &sqlx::migrate!("../migrations/blog/sqlite"),
};

/// Posts in a SQL database, indexed for newest-first keyset paging overall and per author.
#[derive(Clone, Debug)]
pub struct SqlPostStore {
    pool: SqlPool,
}

impl SqlPostStore {
    pub fn new(pool: SqlPool) -> Self {
        Self { pool }
    }
}

/// The SELECT list every read uses, then `$rest`.
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
// `(create_time, id) < (..)` walks (create_time DESC, id DESC) from the cursor on.
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

/// Outages are `Unavailable`; anything else is `Internal`.
fn classify(error: sqlx::Error) -> StoreError {
    let outage = is_unavailable(&error);
    let cause = anyhow::Error::new(error).context("posts database");
    if outage {
        StoreError::Unavailable(cause)
    } else {
        StoreError::Other(cause)
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
    async fn insert(&self, post: &Post) -> Result<(), StoreError> {
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

    async fn find(&self, id: Uuid) -> Result<Option<Post>, StoreError> {
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
    ) -> Result<Vec<Post>, StoreError> {
        let limit = self::limit(limit);
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
    ) -> Result<Option<Post>, StoreError> {
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

    async fn delete_owned(&self, id: Uuid, author_id: Uuid) -> Result<bool, StoreError> {
        with_pool!(write &self.pool, conn => sqlx::query("DELETE FROM posts WHERE id = $1 AND author_id = $2")
            .bind(id)
            .bind(author_id)
            .execute(conn)
            .await
            .map(|done| done.rows_affected() == 1))
            .map_err(classify)
    }

    async fn rename_author(&self, author_id: Uuid, username: &str) -> Result<u64, StoreError> {
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

    async fn ping(&self) -> Result<(), StoreError> {
        self.pool.ping().await.map_err(classify)
    }
}
