//! The post cache across instances, black-box: two blog-services on one database (or
//! one SQLite file) each read what the other wrote, once the database says it changed.

mod support;

use std::time::{Duration, Instant};

use pair_proto::blog::v1 as pb;
use support::{
    Backend, auth_client, authed,
    blog::{
        Blog, blog_config, blog_config_on, code, create_post, delete, get_post, ids, list_posts,
        start_blog, update,
    },
    blog_client, register_and_login, spawn_auth, spawn_auth_on,
};
use tonic::Code;

/// GetPost on `client` polled until `done` holds (or the post is gone, `None`); panics
/// after two seconds. Returns how long it took.
async fn get_until(
    client: &mut Blog,
    id: &str,
    what: &str,
    done: impl Fn(Option<&pb::Post>) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let answer = match get_post(client, id).await {
            Ok(post) => Some(post),
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => panic!("GetPost: {status:?}"),
        };
        if done(answer.as_ref()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what} within 2s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Updates `post` through A (titled "second title"), checks A reads it at once, waits
/// until B does, then creates a newer post through A and waits until B's first page
/// lists it first. Returns the newer post and how long B took to see each write.
async fn update_and_insert_through_a_seen_on_b(
    on_a: &mut Blog,
    on_b: &mut Blog,
    token: &str,
    post: &pb::Post,
) -> (pb::Post, Duration, Duration) {
    get_post(on_a, &post.id).await.expect("get");
    on_a.update_post(authed(token, update(&post.id, Some("second title"), None)))
        .await
        .expect("update");
    assert_eq!(
        get_post(on_a, &post.id).await.expect("get").title,
        "second title",
        "the instance that wrote reads its write at once"
    );
    let update_seen = get_until(on_b, &post.id, "B sees A's update", |p| {
        p.is_some_and(|p| p.title == "second title")
    })
    .await;

    let newer = create_post(on_a, token, "newer").await;
    let started = Instant::now();
    loop {
        let page = list_posts(on_b, 5, "", None).await.expect("list");
        if ids(&page.posts) == [newer.id.clone(), post.id.clone()] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "B lists A's new post"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (newer, update_seen, started.elapsed())
}

/// The first column of the one row `sql` returns on the database at `url`.
async fn count_on(url: &str, sql: &str) -> i64 {
    use sqlx::{Connection as _, Row as _};
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut conn)
        .await
        .expect("sql")
        .get(0)
}

/// Runs `sql` on the database at `url`.
async fn execute_on(url: &str, sql: &str) -> u64 {
    use sqlx::{Connection as _, Executor as _};
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    conn.execute(sqlx::AssertSqlSafe(sql.to_owned()))
        .await
        .expect("sql")
        .rows_affected()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_see_each_others_writes_despite_the_post_cache() {
    let auth_server = spawn_auth().await;
    let config = blog_config(auth_server.url()).await;
    let url = config.database_url.clone().expect("a database");
    let (a, b) = (start_blog(config.clone()).await, start_blog(config).await);
    let (mut on_a, mut on_b) = (blog_client(&a).await, blog_client(&b).await);
    let mut auth = auth_client(&auth_server).await;
    let (_, tokens) = register_and_login(&mut auth, "cacher").await;
    let token = tokens.access_token;
    let post = create_post(&mut on_a, &token, "first title").await;
    // Reads are kept once the listening connections are up. B answers from memory: a
    // change made with the trigger off (which nothing but this test does) goes unseen.
    let listeners = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{}' \
         AND datname = current_database() AND state = 'idle'",
        blog_service::store::CACHE_LISTENER_NAME
    );
    let started = Instant::now();
    while count_on(&url, &listeners).await < 2 {
        assert!(started.elapsed() < Duration::from_secs(5), "two listeners");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        get_post(&mut on_b, &post.id).await.expect("get").title,
        "first title"
    );
    execute_on(
        &url,
        &format!(
            "ALTER TABLE posts DISABLE TRIGGER posts_changed; \
             UPDATE posts SET title = 'unannounced' WHERE id = '{}'; \
             ALTER TABLE posts ENABLE TRIGGER posts_changed",
            post.id
        ),
    )
    .await;
    assert_eq!(
        get_post(&mut on_b, &post.id).await.expect("get").title,
        "first title",
        "B answered from memory"
    );
    let page = list_posts(&mut on_b, 5, "", None).await.expect("list");
    assert_eq!(ids(&page.posts), std::slice::from_ref(&post.id));

    // An update through A: A reads its own write at once, B once notified; then a new
    // post through A appears on B's first page.
    let (newer, update_seen, insert_seen) =
        update_and_insert_through_a_seen_on_b(&mut on_a, &mut on_b, &token, &post).await;

    // A change made in SQL, outside any blog-service, is announced by the trigger.
    get_until(&mut on_b, &post.id, "B reads the post", |p| p.is_some()).await;
    let changed = execute_on(
        &url,
        &format!(
            "UPDATE posts SET title = 'edited in SQL' WHERE id = '{}'",
            post.id
        ),
    )
    .await;
    assert_eq!(changed, 1);
    let sql_seen = get_until(&mut on_b, &post.id, "B sees a change made in SQL", |p| {
        p.is_some_and(|p| p.title == "edited in SQL")
    })
    .await;

    // Cut the listening connections, then change the post while they are down: nothing
    // kept survives the cut.
    get_until(&mut on_b, &newer.id, "B reads the newer post", |p| {
        p.is_some()
    })
    .await;
    let cut = execute_on(
        &url,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = '{}' AND datname = current_database()",
            blog_service::store::CACHE_LISTENER_NAME
        ),
    )
    .await;
    assert_eq!(cut, 2, "one listening connection per instance");
    on_a.delete_post(authed(&token, delete(&newer.id)))
        .await
        .expect("delete");
    let cut_seen = get_until(
        &mut on_b,
        &newer.id,
        "B sees a delete made while its listener was cut",
        |p| p.is_none(),
    )
    .await;
    println!(
        "post cache: B saw A's update after {update_seen:?}, A's new post after \
         {insert_seen:?}, an edit in SQL after {sql_seen:?}, a delete across a cut \
         listener after {cut_seen:?}"
    );
    a.stop().await;
    b.stop().await;
    auth_server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_sqlite_file_see_each_others_writes_despite_the_post_cache() {
    use sqlx::{Connection as _, Executor as _};
    let auth_server = spawn_auth_on(Backend::Embedded).await;
    let config = blog_config_on(Backend::Embedded, auth_server.url()).await;
    let url = config.database_url.clone().expect("a database");
    let (a, b) = (start_blog(config.clone()).await, start_blog(config).await);
    let (mut on_a, mut on_b) = (blog_client(&a).await, blog_client(&b).await);
    let mut auth = auth_client(&auth_server).await;
    let (_, tokens) = register_and_login(&mut auth, "filecacher").await;
    let token = tokens.access_token;
    let post = create_post(&mut on_a, &token, "first title").await;
    for _ in 0..3 {
        assert_eq!(
            get_post(&mut on_b, &post.id).await.expect("get").title,
            "first title"
        );
        list_posts(&mut on_b, 5, "", None).await.expect("list");
    }

    // An update through A: A reads its own write at once, B at its next check; then a new
    // post through A appears on B's first page.
    let (newer, update_seen, insert_seen) =
        update_and_insert_through_a_seen_on_b(&mut on_a, &mut on_b, &token, &post).await;

    // A change made by another connection to the file (as another process would).
    get_until(&mut on_b, &post.id, "B reads the post", |p| p.is_some()).await;
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    let changed = conn
        .execute("UPDATE posts SET title = 'edited in SQL' WHERE title = 'second title'")
        .await
        .expect("sql")
        .rows_affected();
    assert_eq!(changed, 1);
    conn.close().await.expect("close");
    let sql_seen = get_until(&mut on_b, &post.id, "B sees a change made in SQL", |p| {
        p.is_some_and(|p| p.title == "edited in SQL")
    })
    .await;

    // A delete through A.
    get_until(&mut on_b, &newer.id, "B reads the newer post", |p| {
        p.is_some()
    })
    .await;
    on_a.delete_post(authed(&token, delete(&newer.id)))
        .await
        .expect("delete");
    assert_eq!(
        code(get_post(&mut on_a, &newer.id).await),
        Code::NotFound,
        "A sees its own delete at once"
    );
    let delete_seen = get_until(&mut on_b, &newer.id, "B sees A's delete", |p| p.is_none()).await;
    println!(
        "post cache on SQLite: B saw A's update after {update_seen:?}, A's new post after \
         {insert_seen:?}, an edit by another connection after {sql_seen:?}, A's delete \
         after {delete_seen:?}"
    );
    a.stop().await;
    b.stop().await;
    auth_server.stop().await;
}
