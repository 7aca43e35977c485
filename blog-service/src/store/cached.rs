//! Answers to the two reads (GetPost, ListPosts pages) kept in memory, dropped when the
//! database says they changed, on the shared change-driven cache (`pair_common::cache`:
//! live flag, generation tickets, keepalive and reconnect, the budget). This file holds
//! what is the blog's: where changes come from, and which post each kept answer belongs
//! to.
//!
//! What is kept is the answer as the transport sent it (the encoded response, see
//! `crate::grpc`), not the posts it was made from: a hit hands out one shared block of
//! bytes, where keeping posts meant copying each post's strings on every hit and
//! encoding them again (docs/ARCHITECTURE.md, "The post cache keeps encoded answers").
//!
//! - **PostgreSQL** (`LISTEN blog_posts`): every change to `posts`, whoever makes it,
//!   fires a trigger that sends the post's id on channel `blog_posts` (see the PostgreSQL
//!   migration `posts_changed`). Each instance listens on a connection of its own; a
//!   notification drops that post and every kept page. After 250 ms of silence the
//!   connection must answer `SELECT 1` within 500 ms.
//! - **SQLite** (`PRAGMA data_version`): another process may write the same file, and
//!   SQLite tells no one. A task with a connection of its own asks the file's data version
//!   every `WATCH_INTERVAL` (it moves on any commit by another connection, ours included)
//!   and drops everything when it moved. Kept answers are served only while the last such
//!   check started less than `WATCH_FRESH_FOR` ago, so a stalled watcher cannot keep an
//!   answer alive.
//!
//! This instance's own writes drop what they touch before they return, so a caller reads
//! its own writes at once; a failed read drops everything. The kept answers are bounded
//! (`BLOG_POST_CACHE_MB` megabytes of encoded answers); past it, deeper pages, then
//! posts, then first pages go, at random, down to half the budget.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Weak},
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use pair_common::{
    cache::{Change, ChangeCache, ChangeSource, Failure, Policy, Rhythm, Ticket},
    metrics::Metrics,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use sqlx::{
    ConnectOptions as _,
    postgres::{PgConnectOptions, PgListener, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteConnection},
};
use uuid::Uuid;

use super::PostStore;
use crate::{
    domain::{Post, PostChange, page::Cursor},
    error::StoreError,
};

/// The channel the `posts_changed` trigger notifies.
pub const CHANNEL: &str = "blog_posts";
/// The listening connection's `application_name` in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "blog-post-cache";
/// How often the SQLite watcher asks for the file's data version.
const WATCH_INTERVAL: Duration = Duration::from_millis(25);
/// How long after a SQLite check began its answer still vouches for what is kept.
const WATCH_FRESH_FOR: Duration = Duration::from_millis(100);

/// A page request: author filter, cursor, limit.
type PageKey = (Option<Uuid>, Option<(DateTime<Utc>, Uuid)>, usize);

/// What a kept answer answers: GetPost of one post, or one ListPosts page.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Read {
    Post(Uuid),
    Page(PageKey),
}

impl Read {
    /// The page of at most `limit` posts (of `author_id` only, if given) after `after`.
    pub fn page(author_id: Option<Uuid>, after: Option<Cursor>, limit: usize) -> Self {
        Self::Page((author_id, after.map(|c| (c.create_time, c.id)), limit))
    }
}

/// Each entry's own cost besides its answer: its key and its place in the maps.
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// Encoded answers to posts and pages.
struct Posts;

impl Policy for Posts {
    type Key = Read;
    type Value = Bytes;
    /// A post: every change PostgreSQL announces names one.
    type Owner = Uuid;

    /// A post belongs to itself; a page to no post, since any change can move posts
    /// between pages: every change drops every page.
    fn owner(read: &Read) -> Option<Uuid> {
        match read {
            Read::Post(id) => Some(*id),
            Read::Page(_) => None,
        }
    }

    fn weight(_: &Read, answer: &Bytes) -> usize {
        answer.len() + ENTRY_OVERHEAD_BYTES
    }

    /// Deeper pages go first, first pages last: they are what most readers ask for.
    fn rank(read: &Read, _: &Bytes) -> u8 {
        match read {
            Read::Page((_, Some(_), _)) => 0,
            Read::Post(_) => 1,
            Read::Page((_, None, _)) => 2,
        }
    }
}

/// The kept posts and pages; shared by the store and its listening task.
type PostCache = ChangeCache<Posts>;

/// A notification on `CHANNEL`: a post id, or anything else (`*` after a TRUNCATE) for
/// every post.
fn change_of(payload: &str) -> Change<Uuid> {
    payload.parse().map_or(Change::All, Change::Owner)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadLabels {
    read: &'static str,
    result: &'static str,
}

/// How many reads the cache answered and how many went to the database, by kind: the
/// `blog_post_cache_reads_total` counter (the hit rate an operator sizes
/// `BLOG_POST_CACHE_MB` by).
#[derive(Clone, Debug, Default)]
pub struct CacheReads {
    post_hit: Counter,
    post_miss: Counter,
    page_hit: Counter,
    page_miss: Counter,
}

impl CacheReads {
    /// Counters that are also in `metrics`' registry.
    pub fn registered(metrics: &Metrics) -> Self {
        let family = Family::<ReadLabels, Counter>::default();
        let counter = |read, result| family.get_or_create(&ReadLabels { read, result }).clone();
        let this = Self {
            post_hit: counter("post", "hit"),
            post_miss: counter("post", "miss"),
            page_hit: counter("page", "hit"),
            page_miss: counter("page", "miss"),
        };
        metrics.register(
            "blog_post_cache_reads",
            "GetPost (read=post) and ListPosts (read=page) reads by whether the post cache answered (hit) or the database (miss).",
            family,
        );
        this
    }
}

/// The kept answers, as the reads see them: shared by `CachedPostStore` (which drops
/// what its writes touch) and the service (which looks answers up and keeps them).
#[derive(Clone)]
pub struct ReadCache {
    cache: Arc<PostCache>,
    reads: CacheReads,
}

impl ReadCache {
    /// The answer kept for `read`; on a miss, a ticket for [`Self::keep`] (`None`: the
    /// cache is not serving, do not keep the answer). Counted in `CacheReads`.
    pub fn lookup(&self, read: &Read) -> Result<Bytes, Option<Ticket>> {
        let found = self.cache.lookup(read, Bytes::clone);
        let counter = match (read, found.is_ok()) {
            (Read::Post(_), true) => &self.reads.post_hit,
            (Read::Post(_), false) => &self.reads.post_miss,
            (Read::Page(_), true) => &self.reads.page_hit,
            (Read::Page(_), false) => &self.reads.page_miss,
        };
        counter.inc();
        found
    }

    /// Keeps `answer` to `read`, made from what the store returned after `ticket` was
    /// taken, unless anything was dropped since; whether it was kept.
    pub fn keep(&self, ticket: Ticket, read: Read, answer: Bytes) -> bool {
        self.cache.keep(ticket, read, answer)
    }
}

/// `PostStore` whose writes drop the kept answers they touch, and whose failed reads
/// drop them all (fail closed); the answers themselves are looked up and kept by the
/// service, through [`Self::reads`].
pub struct CachedPostStore<S> {
    inner: S,
    cache: ReadCache,
}

impl<S: PostStore> CachedPostStore<S> {
    /// Wraps `inner` and starts listening for changes on PostgreSQL at `url`; nothing is
    /// kept until the first connection listens. At most `budget` bytes of answers are
    /// kept.
    pub fn postgres(
        inner: S,
        url: &str,
        timeout: Duration,
        budget: usize,
        reads: CacheReads,
    ) -> Self {
        let cache = Arc::new(PostCache::new(budget));
        let source = Notifications {
            url: url.to_owned(),
            timeout,
        };
        pair_common::cache::supervise(&cache, source, Rhythm::KEEPALIVE);
        Self {
            inner,
            cache: ReadCache { cache, reads },
        }
    }

    /// Wraps `inner` and starts the task that watches the SQLite `file` for commits;
    /// nothing is kept until its first check. `busy_timeout` bounds a check's wait for a
    /// lock. At most `budget` bytes of answers are kept.
    pub fn sqlite(
        inner: S,
        file: &Path,
        busy_timeout: Duration,
        budget: usize,
        reads: CacheReads,
    ) -> Self {
        let cache = Arc::new(PostCache::new(budget));
        let source = DataVersion {
            file: file.to_owned(),
            busy_timeout,
            seen: 0,
        };
        let rhythm = Rhythm {
            every: WATCH_INTERVAL,
            deadline: Rhythm::KEEPALIVE.deadline.max(busy_timeout),
            lease: Some(WATCH_FRESH_FOR),
        };
        pair_common::cache::supervise(&cache, source, rhythm);
        Self {
            inner,
            cache: ReadCache { cache, reads },
        }
    }

    /// The kept answers, for the service's reads.
    pub fn reads(&self) -> ReadCache {
        self.cache.clone()
    }

    fn kept(&self) -> &PostCache {
        &self.cache.cache
    }

    /// Runs a read, dropping everything kept if it failed (fail closed).
    fn checked<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            self.kept().drop_all();
        }
        result
    }
}

#[async_trait]
impl<S: PostStore> PostStore for CachedPostStore<S> {
    async fn insert(&self, post: &Post) -> Result<(), StoreError> {
        let result = self.inner.insert(post).await;
        self.kept().drop_owner(&post.id);
        result
    }

    async fn find(&self, id: Uuid) -> Result<Option<Post>, StoreError> {
        self.checked(self.inner.find(id).await)
    }

    async fn list(
        &self,
        author_id: Option<Uuid>,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Post>, StoreError> {
        self.checked(self.inner.list(author_id, after, limit).await)
    }

    async fn update_owned(
        &self,
        id: Uuid,
        author_id: Uuid,
        change: &PostChange,
        now: DateTime<Utc>,
    ) -> Result<Option<Post>, StoreError> {
        let result = self.inner.update_owned(id, author_id, change, now).await;
        self.kept().drop_owner(&id);
        result
    }

    async fn delete_owned(&self, id: Uuid, author_id: Uuid) -> Result<bool, StoreError> {
        let result = self.inner.delete_owned(id, author_id).await;
        self.kept().drop_owner(&id);
        result
    }

    async fn rename_author(&self, author_id: Uuid, username: &str) -> Result<u64, StoreError> {
        let result = self.inner.rename_author(author_id, username).await;
        // Called on every write, and usually renames nothing: only a change drops.
        if !matches!(result, Ok(0)) {
            self.kept().drop_all();
        }
        result
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

/// PostgreSQL's notifications on `CHANNEL`, on a connection of their own.
struct Notifications {
    url: String,
    timeout: Duration,
}

impl ChangeSource<Posts> for Notifications {
    type Link = PgListener;
    const CACHE: &'static str = "post cache";
    const SOURCE: &'static str = "PostgreSQL's notifications";

    async fn connect(&mut self, _: &Weak<PostCache>) -> Result<PgListener, Failure> {
        let connected = tokio::time::timeout(self.timeout, async {
            let options = self
                .url
                .parse::<PgConnectOptions>()?
                .application_name(APPLICATION_NAME);
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(options);
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        })
        .await;
        match connected {
            Ok(Ok(listener)) => Ok(listener),
            Ok(Err(error)) => Err(Failure::Lost(error.into())),
            Err(_) => Err(Failure::Lost(anyhow::anyhow!(
                "no connection to PostgreSQL within {:?}",
                self.timeout
            ))),
        }
    }

    async fn next_change(&mut self, listener: &mut PgListener) -> anyhow::Result<Change<Uuid>> {
        match listener.try_recv().await? {
            Some(notification) => Ok(change_of(notification.payload())),
            None => Err(anyhow::anyhow!("the listening connection was lost")),
        }
    }

    async fn check(&mut self, listener: &mut PgListener) -> anyhow::Result<Option<Change<Uuid>>> {
        sqlx::query("SELECT 1").execute(&mut *listener).await?;
        Ok(None)
    }
}

/// The SQLite file's `PRAGMA data_version`, asked on a read-only connection of its own.
struct DataVersion {
    file: PathBuf,
    busy_timeout: Duration,
    /// The version last seen.
    seen: i64,
}

impl ChangeSource<Posts> for DataVersion {
    type Link = SqliteConnection;
    const CACHE: &'static str = "post cache";
    const SOURCE: &'static str = "the SQLite file's data version";

    async fn connect(&mut self, _: &Weak<PostCache>) -> Result<SqliteConnection, Failure> {
        let options = SqliteConnectOptions::new()
            .filename(&self.file)
            .read_only(true)
            .busy_timeout(self.busy_timeout)
            .disable_statement_logging();
        let opened = async {
            let mut conn = options.connect().await?;
            self.seen = data_version(&mut conn).await?;
            Ok::<_, sqlx::Error>(conn)
        };
        opened.await.map_err(|error| Failure::Lost(error.into()))
    }

    async fn check(&mut self, conn: &mut SqliteConnection) -> anyhow::Result<Option<Change<Uuid>>> {
        let version = data_version(conn).await?;
        if version == self.seen {
            return Ok(None);
        }
        self.seen = version;
        Ok(Some(Change::All))
    }
}

/// A number that moves whenever another connection commits to the file.
async fn data_version(conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(conn)
        .await
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn post(content: &str) -> Post {
        let now = Utc::now();
        Post {
            id: Uuid::now_v7(),
            author_id: Uuid::now_v7(),
            author_username: "ann".into(),
            title: "t".into(),
            content: content.into(),
            create_time: now,
            update_time: now,
        }
    }

    /// The default budget (`BLOG_POST_CACHE_MB=24`).
    const BUDGET: usize = 24 << 20;

    fn live() -> PostCache {
        let cache = PostCache::new(BUDGET);
        cache.set_live(true);
        cache
    }

    fn keep(cache: &PostCache, read: &Read, answer: impl Into<Bytes>) {
        let Err(Some(ticket)) = cache.lookup(read, |_| ()) else {
            panic!("a miss")
        };
        assert!(cache.keep(ticket, read.clone(), answer.into()));
    }

    fn hit(cache: &PostCache, read: &Read) -> bool {
        cache.lookup(read, |_| ()).is_ok()
    }

    #[test]
    fn a_notified_post_drops_itself_and_every_page_and_anything_else_drops_all() {
        let cache = live();
        let (one, two) = (Uuid::now_v7(), Uuid::now_v7());
        let first = Read::Page((None, None, 20));
        keep(&cache, &Read::Post(one), "one");
        keep(&cache, &Read::Post(two), "two");
        keep(&cache, &first, "one and two");

        cache.apply(&change_of(&one.to_string()));
        assert!(!hit(&cache, &Read::Post(one)));
        assert!(
            !hit(&cache, &first),
            "any change can move posts between pages"
        );
        assert!(hit(&cache, &Read::Post(two)), "another post stays");

        cache.apply(&change_of("*"));
        assert!(cache.is_empty());
    }

    #[test]
    fn making_room_keeps_first_pages_and_half_the_budget() {
        let cache = live();
        let big = "x".repeat(1 << 16);
        // The first page of everyone's posts and of each of 20 authors'.
        let firsts: Vec<Read> = std::iter::once(None)
            .chain((0..20).map(|_| Some(Uuid::now_v7())))
            .map(|author| Read::Page((author, None, 20)))
            .collect();
        for first in &firsts {
            keep(&cache, first, "the newest post");
        }
        for n in 0..1000 {
            let deeper = Read::Page((None, Some((Utc::now(), Uuid::now_v7())), n));
            keep(&cache, &deeper, big.clone());
        }
        assert!(
            firsts.iter().all(|first| hit(&cache, first)),
            "first pages outlived making room"
        );
        assert!(cache.weight() <= BUDGET);
        assert!(cache.len() > 100, "{} pages kept", cache.len());
    }

    /// The real SQLite store, counting the reads that reach it.
    struct Counting {
        inner: crate::store::SqlPostStore,
        reads: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Counting {
        fn count(&self) {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl PostStore for Counting {
        async fn insert(&self, post: &Post) -> Result<(), StoreError> {
            self.inner.insert(post).await
        }
        async fn find(&self, id: Uuid) -> Result<Option<Post>, StoreError> {
            self.count();
            self.inner.find(id).await
        }
        async fn list(
            &self,
            author_id: Option<Uuid>,
            after: Option<Cursor>,
            limit: usize,
        ) -> Result<Vec<Post>, StoreError> {
            self.count();
            self.inner.list(author_id, after, limit).await
        }
        async fn update_owned(
            &self,
            id: Uuid,
            author_id: Uuid,
            change: &PostChange,
            now: DateTime<Utc>,
        ) -> Result<Option<Post>, StoreError> {
            self.inner.update_owned(id, author_id, change, now).await
        }
        async fn delete_owned(&self, id: Uuid, author_id: Uuid) -> Result<bool, StoreError> {
            self.inner.delete_owned(id, author_id).await
        }
        async fn rename_author(&self, author_id: Uuid, username: &str) -> Result<u64, StoreError> {
            self.inner.rename_author(author_id, username).await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            self.inner.ping().await
        }
    }

    async fn wait_until(what: &str, done: impl Fn() -> bool) -> Duration {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{what} within 3s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        started.elapsed()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_sqlite_reads_come_from_memory_until_another_connection_commits() {
        let timeout = Duration::from_millis(200);
        let (dir, pool) = crate::store::temp_sqlite("blog-cache", timeout).await;
        let file = dir.join("blog.db");
        let url = format!("sqlite://{}", file.display());
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let inner = Counting {
            inner: crate::store::SqlPostStore::new(pool),
            reads: reads.clone(),
        };
        let reads = move || reads.load(std::sync::atomic::Ordering::SeqCst);
        let store = CachedPostStore::sqlite(inner, &file, timeout, BUDGET, CacheReads::default());
        let cache = store.reads();
        wait_until("the first check", || cache.cache.is_live()).await;
        let store = Arc::new(store);
        let auth = crate::introspect::Introspector::nowhere(timeout);
        let core = crate::service::BlogCore::new(store.clone(), Some(cache), auth);
        let content = |post: Post| Bytes::from(post.content);
        let count = |page: crate::domain::page::Page| Bytes::from(page.posts.len().to_string());
        let id = |post: &Post| post.id.to_string();

        let mut one = post("one");
        one.create_time = crate::domain::now();
        one.update_time = one.create_time;
        store.insert(&one).await.expect("insert");
        let before = reads();
        for _ in 0..5 {
            let found = core.get_post(&id(&one), content).await.expect("GetPost");
            assert_eq!(found, "one");
            let page = core
                .list_posts(0, "", None, count)
                .await
                .expect("ListPosts");
            assert_eq!(page, "1");
        }
        assert_eq!(reads(), before + 2, "one read each, then memory");

        // Another connection commits (as another process would): seen at the next check.
        let mut other = <SqliteConnection as sqlx::Connection>::connect(&url)
            .await
            .expect("SQLite opens");
        sqlx::query("UPDATE posts SET content = 'edited elsewhere'")
            .execute(&mut other)
            .await
            .expect("the edit");
        let started = Instant::now();
        loop {
            let found = core.get_post(&id(&one), content).await.expect("GetPost");
            if found == "edited elsewhere" {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "the edit is seen"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        println!(
            "an edit by another connection was seen after {:?}",
            started.elapsed()
        );

        // Kept again once read after the edit.
        core.get_post(&id(&one), content).await.expect("GetPost");
        let before = reads();
        core.get_post(&id(&one), content).await.expect("GetPost");
        assert_eq!(reads(), before, "from memory again");
        drop(other);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
