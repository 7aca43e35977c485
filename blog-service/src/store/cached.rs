//! Posts and pages kept in memory, dropped when the database says they changed.
//!
//! - **PostgreSQL** (`LISTEN blog_posts`): every change to `posts`, whoever makes it,
//!   fires a trigger that sends the post's id on channel `blog_posts` (see the PostgreSQL
//!   migration `posts_changed`). Each instance listens on a connection of its own; a
//!   notification drops that post and every kept page.
//! - **SQLite** (`PRAGMA data_version`): another process may write the same file, and
//!   SQLite tells no one. A task with a connection of its own asks the file's data version every
//!   `WATCH_INTERVAL` (it moves on any commit by another connection, ours included) and
//!   drops everything when it moved. Kept answers are served only while the last such
//!   check started less than `WATCH_FRESH_FOR` ago, so a stalled watcher cannot keep an
//!   answer alive.
//!
//! The rules that keep answers true are those of auth-service's Introspect cache:
//!
//! - This instance's own writes drop what they touch before they return, so a caller
//!   reads its own writes at once. Other writers' changes are dropped once PostgreSQL's
//!   notification arrives (sent at commit), or at the next SQLite check.
//! - A read is kept only if nothing was dropped between the moment it was sent and the
//!   moment it is stored (a generation count), so a row read before a change cannot be
//!   kept after the change's notification.
//! - Nothing is kept or answered unless the source of changes is confirmed: when the
//!   listening connection fails, or stays silent for 250 ms and then does not answer
//!   `SELECT 1` within 500 ms, or the SQLite check fails, everything kept is dropped until
//!   it works again. A failed read drops everything too.
//! - The kept posts and pages are bounded (`BUDGET` bytes of text); past it, deeper pages
//!   then posts are dropped, at random, down to half the budget (first pages stay).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
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
/// Bytes of post text (title, content, author name) kept at most, posts and pages together.
const BUDGET: usize = 24 << 20;
const KEEPALIVE: Duration = Duration::from_millis(250);
const KEEPALIVE_DEADLINE: Duration = Duration::from_millis(500);
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));
/// How often the SQLite watcher asks for the file's data version.
const WATCH_INTERVAL: Duration = Duration::from_millis(25);
/// How long after a SQLite check began its answer still vouches for what is kept.
const WATCH_FRESH_FOR: Duration = Duration::from_millis(100);

/// A page request: author filter, cursor, limit.
type PageKey = (Option<Uuid>, Option<(DateTime<Utc>, Uuid)>, usize);

#[derive(Default)]
struct State {
    live: bool,
    /// SQLite: kept answers are served until then (the last check's start + fresh-for).
    fresh_until: Option<Instant>,
    generation: u64,
    /// Sizes of what `posts` and `pages` hold.
    post_bytes: usize,
    page_bytes: usize,
    posts: HashMap<Uuid, Post>,
    pages: HashMap<PageKey, Vec<Post>>,
}

fn size(post: &Post) -> usize {
    post.title.len() + post.content.len() + post.author_username.len() + 64
}

fn page_size(page: &[Post]) -> usize {
    page.iter().map(size).sum()
}

impl State {
    fn clear(&mut self) {
        self.posts.clear();
        self.pages.clear();
        self.post_bytes = 0;
        self.page_bytes = 0;
    }

    fn drop_all(&mut self) {
        self.generation += 1;
        self.clear();
    }

    /// Drops `post` (if given) and every page: any change can move posts between pages.
    fn drop_post(&mut self, post: Option<Uuid>) {
        self.generation += 1;
        if let Some(gone) = post.and_then(|id| self.posts.remove(&id)) {
            self.post_bytes -= size(&gone);
        }
        self.pages.clear();
        self.page_bytes = 0;
    }

    /// Whether kept answers may be served (and reads kept) now.
    fn serving(&self) -> bool {
        self.live && self.fresh_until.is_none_or(|until| Instant::now() < until)
    }

    /// Whether a read sent at `ticket` may be kept, making room for `bytes` more.
    fn admit(&mut self, ticket: Ticket, bytes: usize) -> bool {
        if !self.serving() || self.generation != ticket.0 || bytes > BUDGET / 4 {
            return false;
        }
        if self.post_bytes + self.page_bytes + bytes > BUDGET {
            // Dropping for room changes nothing stored, so pending reads stay valid.
            self.make_room();
        }
        true
    }

    /// Drops kept answers until at most half the budget is used: deeper pages first (the
    /// first pages are what most readers ask for), then posts, each in the maps' order,
    /// which is random. Dropping everything instead, as before, made a cache whose
    /// readers wander over more than the budget (a million posts read at random) slower
    /// than no cache at all: every ~BUDGET of misses emptied it, first pages included
    /// (BENCHMARKS.md, "How cost grows with state").
    fn make_room(&mut self) {
        let target = BUDGET / 2;
        let mut excess = (self.post_bytes + self.page_bytes).saturating_sub(target);
        if excess > 0 {
            let mut freed = 0;
            self.pages.retain(|(_, after, _), page| {
                if freed >= excess || after.is_none() {
                    return true;
                }
                freed += page_size(page);
                false
            });
            self.page_bytes -= freed;
            excess = excess.saturating_sub(freed);
        }
        if excess > 0 {
            let mut freed = 0;
            self.posts.retain(|_, post| {
                if freed >= excess {
                    return true;
                }
                freed += size(post);
                false
            });
            self.post_bytes -= freed;
            excess = excess.saturating_sub(freed);
        }
        if excess > 0 {
            self.clear();
        }
    }
}

/// What a missed read hands back to `keep_*`: the generation it was sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

/// The kept posts and pages; shared by the store and its listening task.
#[derive(Default)]
pub struct PostCache {
    state: Mutex<State>,
}

impl PostCache {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn post(&self, id: Uuid) -> Result<Option<Post>, Option<Ticket>> {
        let state = self.state();
        if !state.serving() {
            return Err(None);
        }
        match state.posts.get(&id) {
            Some(post) => Ok(Some(post.clone())),
            None => Err(Some(Ticket(state.generation))),
        }
    }

    fn keep_post(&self, ticket: Ticket, post: &Post) {
        let mut state = self.state();
        if state.admit(ticket, size(post)) {
            state.post_bytes += size(post);
            if let Some(old) = state.posts.insert(post.id, post.clone()) {
                state.post_bytes -= size(&old);
            }
        }
    }

    fn page(&self, key: &PageKey) -> Result<Vec<Post>, Option<Ticket>> {
        let state = self.state();
        if !state.serving() {
            return Err(None);
        }
        match state.pages.get(key) {
            Some(page) => Ok(page.clone()),
            None => Err(Some(Ticket(state.generation))),
        }
    }

    fn keep_page(&self, ticket: Ticket, key: PageKey, page: &[Post]) {
        let mut state = self.state();
        if state.admit(ticket, page_size(page)) {
            state.page_bytes += page_size(page);
            if let Some(old) = state.pages.insert(key, page.to_vec()) {
                state.page_bytes -= page_size(&old);
            }
        }
    }

    fn drop_post(&self, id: Option<Uuid>) {
        self.state().drop_post(id);
    }

    fn drop_all(&self) {
        self.state().drop_all();
    }

    fn set_live(&self, live: bool) {
        let mut state = self.state();
        state.drop_all();
        state.live = live;
    }

    /// SQLite: a check that began at `started` found nothing new (or dropped it).
    fn confirm(&self, started: Instant) {
        self.state().fresh_until = Some(started + WATCH_FRESH_FOR);
    }

    fn is_live(&self) -> bool {
        self.state().live
    }

    /// A notification on `CHANNEL`: a post id, or anything else (`*` after a TRUNCATE)
    /// for every post.
    fn changed(&self, payload: &str) {
        match payload.parse::<Uuid>() {
            Ok(id) => self.drop_post(Some(id)),
            Err(_) => self.drop_all(),
        }
    }
}

/// `PostStore` with a `PostCache` in front of the reads.
pub struct CachedPostStore<S> {
    inner: S,
    cache: Arc<PostCache>,
}

impl<S: PostStore> CachedPostStore<S> {
    /// Wraps `inner` and starts listening for changes on PostgreSQL at `url`; nothing is
    /// kept until the first connection listens.
    pub fn postgres(inner: S, url: &str, timeout: Duration) -> Self {
        let cache = Arc::new(PostCache::default());
        spawn_listener(url.to_owned(), Arc::downgrade(&cache), timeout);
        Self { inner, cache }
    }

    /// Wraps `inner` and starts the task that watches the SQLite `file` for commits;
    /// nothing is kept until its first check. `busy_timeout` bounds a check's wait for a
    /// lock.
    pub fn sqlite(inner: S, file: &Path, busy_timeout: Duration) -> Self {
        let cache = Arc::new(PostCache::default());
        tokio::spawn(watch_sqlite(
            file.to_owned(),
            Arc::downgrade(&cache),
            busy_timeout,
        ));
        Self { inner, cache }
    }

    /// Runs a read, dropping everything kept if it failed (fail closed).
    fn checked<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            self.cache.drop_all();
        }
        result
    }
}

#[async_trait]
impl<S: PostStore> PostStore for CachedPostStore<S> {
    async fn insert(&self, post: &Post) -> Result<(), StoreError> {
        let result = self.inner.insert(post).await;
        self.cache.drop_post(Some(post.id));
        result
    }

    async fn find(&self, id: Uuid) -> Result<Option<Post>, StoreError> {
        let ticket = match self.cache.post(id) {
            Ok(post) => return Ok(post),
            Err(ticket) => ticket,
        };
        let post = self.checked(self.inner.find(id).await)?;
        if let (Some(ticket), Some(post)) = (ticket, &post) {
            self.cache.keep_post(ticket, post);
        }
        Ok(post)
    }

    async fn list(
        &self,
        author_id: Option<Uuid>,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Post>, StoreError> {
        let key = (author_id, after.map(|c| (c.create_time, c.id)), limit);
        let ticket = match self.cache.page(&key) {
            Ok(page) => return Ok(page),
            Err(ticket) => ticket,
        };
        let page = self.checked(self.inner.list(author_id, after, limit).await)?;
        if let Some(ticket) = ticket {
            self.cache.keep_page(ticket, key, &page);
        }
        Ok(page)
    }

    async fn update_owned(
        &self,
        id: Uuid,
        author_id: Uuid,
        change: &PostChange,
        now: DateTime<Utc>,
    ) -> Result<Option<Post>, StoreError> {
        let result = self.inner.update_owned(id, author_id, change, now).await;
        self.cache.drop_post(Some(id));
        result
    }

    async fn delete_owned(&self, id: Uuid, author_id: Uuid) -> Result<bool, StoreError> {
        let result = self.inner.delete_owned(id, author_id).await;
        self.cache.drop_post(Some(id));
        result
    }

    async fn rename_author(&self, author_id: Uuid, username: &str) -> Result<u64, StoreError> {
        let result = self.inner.rename_author(author_id, username).await;
        // Called on every write, and usually renames nothing: only a change drops.
        if !matches!(result, Ok(0)) {
            self.cache.drop_all();
        }
        result
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

fn spawn_listener(url: String, cache: Weak<PostCache>, timeout: Duration) {
    tokio::spawn(async move {
        let mut backoff = BACKOFF.0;
        let mut told = false;
        loop {
            let error = listen(&url, &cache, timeout).await;
            let Some(strong) = cache.upgrade() else {
                return;
            };
            match error {
                None => return,
                Some(error) => {
                    if strong.is_live() || !told {
                        tracing::warn!(
                            error = %error,
                            "post cache off until PostgreSQL notifications are back"
                        );
                        told = true;
                    }
                    strong.set_live(false);
                }
            }
            drop(strong);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    });
}

/// One listening connection, from connect to failure (`None` once the cache is gone).
async fn listen(url: &str, cache: &Weak<PostCache>, timeout: Duration) -> Option<anyhow::Error> {
    let connected = tokio::time::timeout(timeout, async {
        let options = url
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
    let mut listener = match connected {
        Ok(Ok(listener)) => listener,
        Ok(Err(error)) => return Some(error.into()),
        Err(_) => {
            return Some(anyhow::anyhow!(
                "no connection to PostgreSQL within {timeout:?}"
            ));
        }
    };
    cache.upgrade()?.set_live(true);
    tracing::debug!("post cache on: PostgreSQL announces changes to posts");
    loop {
        match tokio::time::timeout(KEEPALIVE, listener.try_recv()).await {
            Ok(Ok(Some(notification))) => cache.upgrade()?.changed(notification.payload()),
            Ok(Ok(None)) => return Some(anyhow::anyhow!("the listening connection was lost")),
            Ok(Err(error)) => return Some(error.into()),
            Err(_) => {
                cache.upgrade()?;
                let alive = tokio::time::timeout(
                    KEEPALIVE_DEADLINE,
                    sqlx::query("SELECT 1").execute(&mut listener),
                )
                .await;
                match alive {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Some(error.into()),
                    Err(_) => {
                        return Some(anyhow::anyhow!(
                            "PostgreSQL did not answer on the listening connection within \
                             {KEEPALIVE_DEADLINE:?}"
                        ));
                    }
                }
            }
        }
    }
}

/// The SQLite watcher: checks until the cache is gone, backing off after failures.
async fn watch_sqlite(file: PathBuf, cache: Weak<PostCache>, busy_timeout: Duration) {
    let mut backoff = BACKOFF.0;
    let mut told = false;
    loop {
        let error = watch_file(&file, &cache, busy_timeout).await;
        let (Some(strong), Some(error)) = (cache.upgrade(), error) else {
            return;
        };
        if strong.is_live() {
            backoff = BACKOFF.0;
        }
        if strong.is_live() || !told {
            tracing::warn!(error = %error, "post cache off until SQLite answers again");
            told = true;
        }
        strong.set_live(false);
        drop(strong);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// One read-only connection asking `PRAGMA data_version` every `WATCH_INTERVAL`, from
/// open to failure (`None` once the cache is gone).
async fn watch_file(
    file: &Path,
    cache: &Weak<PostCache>,
    busy_timeout: Duration,
) -> Option<anyhow::Error> {
    let options = SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .busy_timeout(busy_timeout)
        .disable_statement_logging();
    let mut conn = match options.connect().await {
        Ok(conn) => conn,
        Err(error) => return Some(error.into()),
    };
    let mut started = Instant::now();
    let mut seen = match data_version(&mut conn).await {
        Ok(version) => version,
        Err(error) => return Some(error.into()),
    };
    {
        let cache = cache.upgrade()?;
        cache.set_live(true);
        cache.confirm(started);
    }
    tracing::debug!("post cache on: watching the SQLite file for commits");
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        started = Instant::now();
        let version = match data_version(&mut conn).await {
            Ok(version) => version,
            Err(error) => return Some(error.into()),
        };
        let cache = cache.upgrade()?;
        if version != seen {
            cache.drop_all();
            seen = version;
        }
        cache.confirm(started);
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

    fn live() -> PostCache {
        let cache = PostCache::default();
        cache.set_live(true);
        cache
    }

    #[test]
    fn a_read_is_kept_only_while_live_and_only_if_nothing_changed_since_it_was_sent() {
        let cache = PostCache::default();
        let one = post("one");
        assert!(
            matches!(cache.post(one.id), Err(None)),
            "not live: no ticket"
        );
        cache.set_live(true);
        let Err(Some(ticket)) = cache.post(one.id) else {
            panic!("a miss")
        };
        cache.changed(&Uuid::now_v7().to_string());
        cache.keep_post(ticket, &one);
        assert!(
            cache.post(one.id).is_err(),
            "a change since the read: not kept"
        );

        let Err(Some(ticket)) = cache.post(one.id) else {
            panic!("a miss")
        };
        cache.keep_post(ticket, &one);
        assert_eq!(cache.post(one.id), Ok(Some(one.clone())));

        let key: PageKey = (None, None, 21);
        let Err(Some(ticket)) = cache.page(&key) else {
            panic!("a miss")
        };
        cache.keep_page(ticket, key, std::slice::from_ref(&one));
        assert_eq!(cache.page(&key), Ok(vec![one.clone()]));

        // A change to another post drops every page but not this post.
        cache.changed(&Uuid::now_v7().to_string());
        assert!(cache.page(&key).is_err());
        assert!(cache.post(one.id).is_ok());
        // A change to this post drops it; anything else drops everything.
        cache.changed(&one.id.to_string());
        assert!(cache.post(one.id).is_err());
        let Err(Some(ticket)) = cache.post(one.id) else {
            panic!("a miss")
        };
        cache.keep_post(ticket, &one);
        cache.changed("*");
        assert!(cache.post(one.id).is_err());

        let Err(Some(ticket)) = cache.post(one.id) else {
            panic!("a miss")
        };
        cache.keep_post(ticket, &one);
        cache.set_live(false);
        assert!(matches!(cache.post(one.id), Err(None)));
        cache.set_live(true);
        assert!(cache.post(one.id).is_err(), "a new connection starts empty");
    }

    #[test]
    fn the_budget_bounds_what_is_kept() {
        let cache = live();
        let big = "x".repeat(1 << 20);
        let mut kept = 0;
        for _ in 0..100 {
            let one = post(&big);
            let Err(Some(ticket)) = cache.post(one.id) else {
                panic!("a miss")
            };
            cache.keep_post(ticket, &one);
            kept += usize::from(cache.post(one.id).is_ok_and(|p| p.is_some()));
        }
        assert_eq!(kept, 100, "each post was kept when it was read");
        let state = cache.state();
        assert!(state.post_bytes <= BUDGET, "{}", state.post_bytes);
        assert!(state.posts.len() < 100 && !state.posts.is_empty());
        let counted: usize = state.posts.values().map(size).sum();
        assert_eq!(counted, state.post_bytes);
    }

    #[test]
    fn making_room_keeps_first_pages_and_half_the_budget() {
        let cache = live();
        let big = "x".repeat(1 << 16);
        let first: PageKey = (None, None, 20);
        let Err(Some(ticket)) = cache.page(&first) else {
            panic!("a miss")
        };
        cache.keep_page(ticket, first, &[post("newest")]);
        for n in 0..1000 {
            let one = post(&big);
            let key: PageKey = (None, Some((one.create_time, one.id)), n);
            let Err(Some(ticket)) = cache.page(&key) else {
                panic!("a miss")
            };
            cache.keep_page(ticket, key, std::slice::from_ref(&one));
        }
        assert!(
            cache.page(&first).is_ok(),
            "the first page outlived making room"
        );
        let state = cache.state();
        let counted: usize = state.pages.values().map(|p| page_size(p)).sum();
        assert_eq!(counted, state.page_bytes);
        assert!(state.page_bytes <= BUDGET);
        assert!(state.pages.len() > 100, "{} pages kept", state.pages.len());
    }

    #[test]
    fn nothing_kept_is_served_once_the_last_check_is_too_old() {
        let cache = live();
        let one = post("one");
        cache.confirm(Instant::now());
        let Err(Some(ticket)) = cache.post(one.id) else {
            panic!("a miss")
        };
        cache.keep_post(ticket, &one);
        assert_eq!(cache.post(one.id), Ok(Some(one.clone())));
        let stale = Instant::now() - WATCH_FRESH_FOR - Duration::from_millis(1);
        cache.confirm(stale);
        assert!(matches!(cache.post(one.id), Err(None)), "not served");
        let key: PageKey = (None, None, 20);
        assert!(matches!(cache.page(&key), Err(None)), "no ticket either");
        // A read sent while fresh is not kept once the checks have lapsed.
        cache.confirm(Instant::now());
        let Err(Some(ticket)) = cache.page(&key) else {
            panic!("a miss")
        };
        cache.confirm(stale);
        cache.keep_page(ticket, key, std::slice::from_ref(&one));
        cache.confirm(Instant::now());
        assert!(cache.page(&key).is_err(), "not kept");
        assert_eq!(
            cache.post(one.id),
            Ok(Some(one)),
            "a check that passes serves again"
        );
    }

    /// The real SQLite store, counting the reads that reach it.
    struct Counting {
        inner: crate::store::SqlPostStore,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl Counting {
        fn reads(&self) -> usize {
            self.reads.load(std::sync::atomic::Ordering::SeqCst)
        }

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
        let dir = std::env::temp_dir().join(format!("blog-cache-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let file = dir.join("blog.db");
        let url = format!("sqlite://{}", file.display());
        let timeout = Duration::from_millis(200);
        let pool = pair_common::sql::SqlPool::connect(
            Some(&url),
            "blog.db",
            "BLOG_DATABASE_URL",
            timeout,
            &crate::store::MIGRATIONS,
        )
        .await
        .expect("SQLite opens");
        let inner = Counting {
            inner: crate::store::SqlPostStore::new(pool),
            reads: 0.into(),
        };
        let store = CachedPostStore::sqlite(inner, &file, timeout);
        wait_until("the first check", || store.cache.is_live()).await;

        let mut one = post("one");
        one.create_time = crate::domain::now();
        one.update_time = one.create_time;
        store.insert(&one).await.expect("insert");
        let reads = store.inner.reads();
        for _ in 0..5 {
            let found = store.find(one.id).await.expect("find").expect("the post");
            assert_eq!(found.content, "one");
            assert_eq!(store.list(None, None, 20).await.expect("list").len(), 1);
        }
        assert_eq!(store.inner.reads(), reads + 2, "one read each, then memory");

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
            let found = store.find(one.id).await.expect("find").expect("the post");
            if found.content == "edited elsewhere" {
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
        store.find(one.id).await.expect("find");
        let reads = store.inner.reads();
        store.find(one.id).await.expect("find");
        assert_eq!(store.inner.reads(), reads, "from memory again");
        drop(other);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
