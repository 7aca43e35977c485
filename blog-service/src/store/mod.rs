//! Storage of posts behind one small trait, `PostStore`, with one implementation per
//! backend, chosen once at start from the URL. Implementations hold SQL only: what is
//! valid, how pages are cut and who may change a post is decided above the trait.

mod cached;
mod sql;

pub use self::cached::{
    APPLICATION_NAME as CACHE_LISTENER_NAME, CacheReads, CachedPostStore, Read, ReadCache,
};
pub use self::sql::{MIGRATIONS, SqlPostStore};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    domain::{Post, PostChange, page::Cursor},
    error::StoreError,
};

/// Posts, read newest first: by `create_time` then `id`, both descending. Failures are
/// `StoreError::Unavailable` when the store cannot be reached and `Other` otherwise.
#[async_trait]
pub trait PostStore: Send + Sync + 'static {
    async fn insert(&self, post: &Post) -> Result<(), StoreError>;

    async fn find(&self, id: Uuid) -> Result<Option<Post>, StoreError>;

    /// At most `limit` posts, newest first, of `author_id` only if given, and strictly
    /// after `after` in that order if given (keyset paging).
    async fn list(
        &self,
        author_id: Option<Uuid>,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Post>, StoreError>;

    /// Sets the given fields of post `id` if `author_id` wrote it, in one statement so
    /// ownership cannot change between check and write; `None` if no such post of theirs.
    async fn update_owned(
        &self,
        id: Uuid,
        author_id: Uuid,
        change: &PostChange,
        now: DateTime<Utc>,
    ) -> Result<Option<Post>, StoreError>;

    /// Deletes post `id` if `author_id` wrote it; false if no such post of theirs.
    async fn delete_owned(&self, id: Uuid, author_id: Uuid) -> Result<bool, StoreError>;

    /// Gives every post of `author_id` the name `username`; returns how many changed.
    async fn rename_author(&self, author_id: Uuid, username: &str) -> Result<u64, StoreError>;

    /// Succeeds while the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// A migrated SQLite database, `blog.db` in a new directory under the system's temp
/// directory named after `name` (the caller removes it): the directory and the pool.
#[cfg(test)]
pub(crate) async fn temp_sqlite(
    name: &str,
    timeout: std::time::Duration,
) -> (std::path::PathBuf, pair_common::sql::SqlPool) {
    let dir = std::env::temp_dir().join(format!("{name}-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let url = format!("sqlite://{}", dir.join("blog.db").display());
    let pool = pair_common::sql::SqlPool::connect(
        Some(&url),
        "blog.db",
        "BLOG_DATABASE_URL",
        timeout,
        &MIGRATIONS,
    )
    .await
    .expect("SQLite opens");
    (dir, pool)
}
