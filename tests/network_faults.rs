//! Networks that neither refuse nor answer: links that go silent (no RST, connections
//! left open, bytes held and delivered when the link heals, as TCP's retransmissions
//! would) and slow links, between auth-service and Redis, auth-service and
//! PostgreSQL, blog-service and PostgreSQL, and blog-service and auth-service. Each
//! link is a `support::link::Link` proxy on loopback, in front of a private store or
//! service; nothing else is touched.
//!
//! For each: calls answer UNAVAILABLE within their deadlines, health follows, the
//! service heals without a restart, nothing acknowledged is lost, and nothing refused
//! is written, even though the refused write's bytes reach the store once the link
//! heals.

mod support;

use std::time::{Duration, Instant};

use pair_proto::auth::v1::{
    self as auth, auth_service_client::AuthServiceClient,
    introspection_service_client::IntrospectionServiceClient,
};
use support::faults::*;
use support::{
    PASSWORD, authed,
    blog::{blog_config, start_blog},
    fresh_database,
    link::Link,
    register_and_login, start_auth,
    stores::PrivateRedis,
    unique_name,
};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;

/// The store timeout of the test configuration (`auth_on`).
const STORE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a link stays silent: longer than any deadline, so every refused call has
/// given up before its bytes are delivered.
const SILENCE: Duration = Duration::from_secs(4);

/// A call during the silence: UNAVAILABLE, within the store timeout (with slack for
/// a loaded machine, but well under the hang guard).
async fn refused_in_time<T: std::fmt::Debug>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, Status>>,
) -> Duration {
    let started = Instant::now();
    let answer = guarded(what, call).await;
    let took = started.elapsed();
    assert_eq!(
        code(what, answer),
        Code::Unavailable,
        "{what} over a silent link"
    );
    assert!(
        took < STORE_TIMEOUT + Duration::from_secs(1),
        "{what} took {took:?} over a silent link"
    );
    took
}

async fn logout(client: &mut Auth, token: &str) -> Result<(), Status> {
    client
        .logout(authed(token, auth::LogoutRequest {}))
        .await
        .map(|_| ())
}

async fn refresh(client: &mut Auth, refresh_token: &str) -> Result<auth::TokenPair, Status> {
    client
        .refresh(auth::RefreshRequest {
            refresh_token: refresh_token.into(),
        })
        .await
        .map(|response| response.into_inner().tokens.expect("tokens"))
}

async fn sessions(client: &mut Auth, token: &str) -> Result<usize, Status> {
    client
        .list_sessions(authed(token, auth::ListSessionsRequest {}))
        .await
        .map(|response| response.into_inner().sessions.len())
}

/// auth-service ↔ Redis goes silent. Introspect, Login, Refresh and Logout answer
/// UNAVAILABLE in time; health goes NOT_SERVING and comes back; a logout acknowledged
/// before holds; the refused logout, login and rotation are not written when their
/// bytes reach Redis after the heal (the refused Refresh's token still works after the
/// retry window, where a late rotation would have made it a replay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_to_redis_refuses_in_time_writes_nothing_refused_and_heals() {
    let redis = PrivateRedis::start().await;
    let link = Link::to(([127, 0, 0, 1], redis.port()).into()).await;
    let mut config = auth_on(
        fresh_database("linkredis").await,
        format!("redis://{}", link.host_port()),
    )
    .await;
    let window = Duration::from_secs(1);
    config.refresh_retry_window = window;
    let server = start_auth(config).await;
    let channel = server.channel().await;
    let mut auth = AuthServiceClient::new(channel.clone());
    let mut introspection = IntrospectionServiceClient::new(channel.clone());

    let (_, kept) = register_and_login(&mut auth, "linkkept").await;
    let (refused_user, refused) = register_and_login(&mut auth, "linkrefused").await;
    let (_, rotated) = register_and_login(&mut auth, "linkrotated").await;
    logout(&mut auth, &kept.access_token)
        .await
        .expect("logout before the fault");
    assert_eq!(
        active(&mut introspection, &refused.access_token).await,
        Ok(true)
    );
    wait_for_health(&channel, AUTH_HEALTH, ServingStatus::Serving, HEALTH_LIMIT).await;

    link.silent();
    let silent_since = Instant::now();
    let health = wait_for_health(
        &channel,
        AUTH_HEALTH,
        ServingStatus::NotServing,
        HEALTH_LIMIT,
    );
    let calls = async {
        let (mut a, mut b, mut c, mut d) = (
            auth.clone(),
            auth.clone(),
            auth.clone(),
            introspection.clone(),
        );
        tokio::join!(
            refused_in_time("Logout", logout(&mut a, &refused.access_token)),
            refused_in_time("Login", login(&mut b, &refused_user.username, PASSWORD)),
            refused_in_time("Refresh", refresh(&mut c, &rotated.refresh_token)),
            // A token never checked before: no cached answer, so Redis is asked.
            refused_in_time("Introspect", introspect(&mut d, &rotated.access_token)),
        )
    };
    let (not_serving, took) = tokio::join!(health, calls);
    // By NOT_SERVING the Introspect cache has found its tracking link silent (a PING
    // every 250 ms, 500 ms deadline) and serves nothing it kept.
    refused_in_time(
        "Introspect of a cached token",
        introspect(&mut introspection, &refused.access_token),
    )
    .await;
    tokio::time::sleep(SILENCE.saturating_sub(silent_since.elapsed())).await;

    link.heal();
    let (serving, first_ok) = healed(&channel, AUTH_HEALTH, "Introspect", || {
        let (mut client, token) = (introspection.clone(), refused.access_token.clone());
        async move { introspect(&mut client, &token).await }
    })
    .await;
    // Whatever the refused calls sent has reached Redis by now (the link is open and
    // idle); past the retry window a late rotation would make the next Refresh a replay.
    tokio::time::sleep(window + Duration::from_millis(500)).await;

    assert_eq!(
        active(&mut introspection, &kept.access_token).await,
        Ok(false),
        "a logout acknowledged before the fault came undone"
    );
    assert_eq!(
        active(&mut introspection, &refused.access_token).await,
        Ok(true),
        "a refused logout was written"
    );
    assert_eq!(
        sessions(&mut auth, &refused.access_token)
            .await
            .expect("sessions"),
        1,
        "a refused login opened a session"
    );
    refresh(&mut auth, &rotated.refresh_token)
        .await
        .expect("a refused rotation was written: the refresh token it was refused for is spent");
    println!(
        "redis link silent: UNAVAILABLE after {took:?} (Logout, Login, Refresh, \
         Introspect); NOT_SERVING after {not_serving:?}; healed: SERVING after \
         {serving:?}, Introspect ok after {first_ok:?}"
    );
    server.stop().await;
}

/// A database URL on the shared PostgreSQL, reached through `link` instead.
fn through(link: &Link, database_url: &str) -> String {
    let server = support::postgres_server();
    let host = server.rsplit('@').next().expect("host");
    database_url.replacen(host, &link.host_port(), 1)
}

fn postgres_addr() -> std::net::SocketAddr {
    let server = support::postgres_server();
    let host = server.rsplit('@').next().expect("host");
    host.parse()
        .expect("TEST_POSTGRES_URL with a numeric host:port")
}

/// auth-service ↔ PostgreSQL goes silent. Register and Login answer UNAVAILABLE in
/// time; health follows; after the heal the refused Register's name is still free
/// (its INSERT reached PostgreSQL late and wrote nothing), and a user registered
/// before logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_to_postgres_refuses_registrations_in_time_and_writes_none() {
    let link = Link::to(postgres_addr()).await;
    let redis = PrivateRedis::start().await;
    let database = fresh_database("linkpg").await;
    let server = start_auth(auth_on(through(&link, &database), redis.url()).await).await;
    let channel = server.channel().await;
    let mut auth = AuthServiceClient::new(channel.clone());
    let (before, _) = register_and_login(&mut auth, "linkpgkept").await;
    wait_for_health(&channel, AUTH_HEALTH, ServingStatus::Serving, HEALTH_LIMIT).await;

    link.silent();
    let silent_since = Instant::now();
    let refused_name = unique_name("linkpgrefused");
    let health = wait_for_health(
        &channel,
        AUTH_HEALTH,
        ServingStatus::NotServing,
        HEALTH_LIMIT,
    );
    let calls = async {
        let (mut a, mut b) = (auth.clone(), auth.clone());
        tokio::join!(
            refused_in_time("Register", register(&mut a, &refused_name)),
            refused_in_time("Login", login(&mut b, &before.username, PASSWORD)),
        )
    };
    let (not_serving, took) = tokio::join!(health, calls);
    tokio::time::sleep(SILENCE.saturating_sub(silent_since.elapsed())).await;

    link.heal();
    let (serving, first_ok) = healed(&channel, AUTH_HEALTH, "Login", || {
        let (mut client, name) = (auth.clone(), before.username.clone());
        async move { login(&mut client, &name, PASSWORD).await }
    })
    .await;
    register(&mut auth, &refused_name)
        .await
        .expect("the refused registration was written: its name is taken");
    println!(
        "postgres link silent: UNAVAILABLE after {took:?} (Register, Login); NOT_SERVING \
         after {not_serving:?}; healed: SERVING after {serving:?}, Login ok after \
         {first_ok:?}"
    );
    server.stop().await;
}

/// auth-service on the shared stores; blog-service on a fresh database of the shared
/// PostgreSQL, reached through `link`; a logged-in user's access token.
struct BlogOverLink {
    auth_server: support::Running,
    link: Link,
    blog_server: support::Running,
    channel: tonic::transport::Channel,
    blog: Blog,
    token: String,
}

async fn blog_over_a_link_to_postgres(prefix: &str) -> BlogOverLink {
    let auth_server = start_auth(support::auth_config().await).await;
    let link = Link::to(postgres_addr()).await;
    let mut config = blog_config(auth_server.url()).await;
    config.database_url = Some(through(&link, config.database_url.as_deref().expect("url")));
    let blog_server = start_blog(config).await;
    let channel = blog_server.channel().await;
    let blog = Blog::new(channel.clone());
    let mut auth = AuthServiceClient::new(auth_server.channel().await);
    let (_, tokens) = register_and_login(&mut auth, prefix).await;
    BlogOverLink {
        auth_server,
        link,
        blog_server,
        channel,
        blog,
        token: tokens.access_token,
    }
}

/// blog-service ↔ PostgreSQL goes silent. CreatePost and ListPosts answer UNAVAILABLE
/// in time (the post cache, which hears nothing on its LISTEN link, drops what it
/// kept); health follows; after the heal the refused post is nowhere and a post
/// acknowledged before is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_from_blog_to_postgres_refuses_posts_in_time_and_writes_none() {
    let BlogOverLink {
        auth_server,
        link,
        blog_server,
        channel,
        mut blog,
        token,
    } = blog_over_a_link_to_postgres("linkblog").await;
    // Two posts before, so the INSERT is a prepared statement on the pooled connection:
    // during the silence its bytes go out at once and reach PostgreSQL on the heal.
    let kept = create(&mut blog, &token, "kept")
        .await
        .expect("post before");
    create(&mut blog, &token, "kept too")
        .await
        .expect("post before");
    list(&mut blog).await.expect("list before");
    wait_for_health(&channel, BLOG_HEALTH, ServingStatus::Serving, HEALTH_LIMIT).await;

    link.silent();
    let silent_since = Instant::now();
    let health = wait_for_health(
        &channel,
        BLOG_HEALTH,
        ServingStatus::NotServing,
        HEALTH_LIMIT,
    );
    let calls = async {
        let mut a = blog.clone();
        refused_in_time("CreatePost", create(&mut a, &token, "refused")).await
    };
    let (not_serving, took) = tokio::join!(health, calls);
    refused_in_time("ListPosts", list(&mut blog)).await;
    tokio::time::sleep(SILENCE.saturating_sub(silent_since.elapsed())).await;

    link.heal();
    let (serving, first_ok) = healed(&channel, BLOG_HEALTH, "ListPosts", || {
        let mut client = blog.clone();
        async move { list(&mut client).await }
    })
    .await;
    // The refused INSERT's bytes have reached PostgreSQL by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let titles: Vec<String> = list(&mut blog)
        .await
        .expect("list after")
        .posts
        .into_iter()
        .map(|post| post.title)
        .collect();
    assert!(
        !titles.iter().any(|title| title == "refused"),
        "a refused post was written: {titles:?}"
    );
    assert_eq!(
        get(&mut blog, &kept.id).await.expect("kept post").title,
        "kept"
    );
    println!(
        "blog → postgres link silent: CreatePost UNAVAILABLE after {took:?}; NOT_SERVING \
         after {not_serving:?}; healed: SERVING after {serving:?}, ListPosts ok after \
         {first_ok:?}"
    );
    blog_server.stop().await;
    auth_server.stop().await;
}

/// blog-service ↔ auth-service goes silent, then slow. Every call that needs a token
/// answers UNAVAILABLE within the Introspect deadline and writes nothing; reads that
/// need no token go on; blog-service stays SERVING (its health is its own database's);
/// after the heal the same token works again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_or_slow_link_to_auth_refuses_writes_in_time_and_heals() {
    let auth_server = start_auth(support::auth_config().await).await;
    let link = Link::to(auth_server.addr).await;
    let blog_server = start_blog(blog_config(format!("http://{}", link.host_port())).await).await;
    let channel = blog_server.channel().await;
    let mut blog = Blog::new(channel.clone());
    let mut auth = AuthServiceClient::new(auth_server.channel().await);
    let (_, tokens) = register_and_login(&mut auth, "linkauth").await;
    let token = tokens.access_token;
    create(&mut blog, &token, "before")
        .await
        .expect("post before");

    for (fault, set) in [
        (
            "silent",
            Box::new(|link: &Link| link.silent()) as Box<dyn Fn(&Link)>,
        ),
        // Each way: slower than the whole Introspect deadline (2 s).
        (
            "slow",
            Box::new(|link: &Link| link.slow(Duration::from_millis(2_500))),
        ),
    ] {
        set(&link);
        let title = format!("refused while {fault}");
        let took = refused_in_time(
            &format!("CreatePost over a {fault} link to auth"),
            create(&mut blog, &token, &title),
        )
        .await;
        list(&mut blog)
            .await
            .unwrap_or_else(|status| panic!("ListPosts needs no token: {status:?}"));
        assert_eq!(
            health_of(
                &mut tonic_health::pb::health_client::HealthClient::new(channel.clone()),
                ""
            )
            .await,
            Some(ServingStatus::Serving)
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        link.heal();
        let first_ok = first_success(
            "CreatePost",
            RECOVERY_LIMIT + Duration::from_secs(5),
            || {
                let (mut client, token) = (blog.clone(), token.clone());
                async move { create(&mut client, &token, "after").await }
            },
        )
        .await;
        let titles: Vec<String> = list(&mut blog)
            .await
            .expect("list")
            .posts
            .into_iter()
            .map(|post| post.title)
            .collect();
        assert!(
            !titles.contains(&title),
            "a post refused over a {fault} link was written: {titles:?}"
        );
        println!(
            "blog → auth link {fault}: CreatePost UNAVAILABLE after {took:?}; healed: \
             CreatePost ok after {first_ok:?}"
        );
    }
    blog_server.stop().await;
    auth_server.stop().await;
}

/// blog-service ↔ PostgreSQL goes slow. A little slow (700 ms each way, so each
/// statement takes 1.4 s, under the 2 s store timeout): CreatePost is slow but
/// acknowledged, and its post is there. Slower than the store timeout each way:
/// CreatePost answers UNAVAILABLE in time and the refused posts are not written, even
/// though what was sent before the timeout reaches PostgreSQL after the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_from_blog_to_postgres_is_slow_or_refused_and_never_half_done() {
    let BlogOverLink {
        auth_server,
        link,
        blog_server,
        mut blog,
        token,
        ..
    } = blog_over_a_link_to_postgres("slowblog").await;
    // Several posts at once: several pooled connections with the statements prepared,
    // so during the fault each goes out in one message.
    let before: Vec<_> = (0..4)
        .map(|n| {
            let (mut client, token) = (blog.clone(), token.clone());
            tokio::spawn(async move { create(&mut client, &token, &format!("before {n}")).await })
        })
        .collect();
    for post in before {
        post.await.expect("task").expect("post before");
    }

    link.slow(Duration::from_millis(700));
    let started = Instant::now();
    let slow = guarded(
        "CreatePost over a slowish link",
        create(&mut blog, &token, "slow"),
    )
    .await
    .expect("a link slower than usual but within the store timeout still serves");
    let slow_took = started.elapsed();
    assert!(slow_took >= Duration::from_millis(1_400), "{slow_took:?}");

    link.slow(STORE_TIMEOUT + Duration::from_millis(500));
    let refused: Vec<_> = (0..3)
        .map(|n| {
            let (mut client, token) = (blog.clone(), token.clone());
            tokio::spawn(async move {
                refused_in_time(
                    "CreatePost over a slow link",
                    create(&mut client, &token, &format!("refused {n}")),
                )
                .await
            })
        })
        .collect();
    let mut refused_took = Duration::ZERO;
    for call in refused {
        refused_took = refused_took.max(call.await.expect("task"));
    }
    // Long enough for what was sent to have reached PostgreSQL.
    tokio::time::sleep(Duration::from_secs(2)).await;
    link.heal();
    first_success("ListPosts", RECOVERY_LIMIT, || {
        let mut client = blog.clone();
        async move { list(&mut client).await }
    })
    .await;
    let titles: Vec<String> = list(&mut blog)
        .await
        .expect("list after")
        .posts
        .into_iter()
        .map(|post| post.title)
        .collect();
    assert!(titles.contains(&slow.title), "{titles:?}");
    assert_eq!(titles.len(), 5, "refused posts were written: {titles:?}");
    println!(
        "blog → postgres link slow: 700 ms each way: CreatePost ok in {slow_took:?}; \
         2.5 s each way: UNAVAILABLE after at most {refused_took:?}, nothing written"
    );
    blog_server.stop().await;
    auth_server.stop().await;
}
