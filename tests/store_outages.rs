//! Store outages: Redis and PostgreSQL that crash or freeze under load, an auth-service
//! that goes away and comes back under blog-service, and metrics while Redis is down
//! (two instances on one Redis: `tests/cache_coherence.rs`). Each test runs its own
//! `redis-server` and PostgreSQL cluster (`support::stores`) and kills those, never the
//! shared servers. Every call is bounded by a hang guard; recovery times are measured
//! and printed (`--nocapture` shows them).

mod support;

use std::time::{Duration, Instant};

use pair_proto::{
    auth::v1::{
        self as auth, auth_service_client::AuthServiceClient,
        introspection_service_client::IntrospectionServiceClient,
    },
    blog::v1::blog_service_client::BlogServiceClient,
};
use support::faults::*;
use support::{
    Backend, PASSWORD,
    blog::{blog_config_on, start_blog},
    fresh_database, redis_url, register_and_login, start_auth,
    stores::{PrivatePostgres, PrivateRedis},
    unique_name,
};
use tokio::task::JoinHandle;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_crash_fails_closed_and_auth_recovers_without_a_restart() {
    let mut redis = PrivateRedis::start().await;
    let server = start_auth(auth_on(fresh_database("faultredis").await, redis.url()).await).await;
    let channel = server.channel().await;
    let mut auth = AuthServiceClient::new(channel.clone());
    let mut introspection = IntrospectionServiceClient::new(channel.clone());
    let (_, tokens) = register_and_login(&mut auth, "redisdown").await;
    let token = tokens.access_token.clone();
    assert_eq!(active(&mut introspection, &token).await, Ok(true));
    wait_for_health(&channel, AUTH_HEALTH, ServingStatus::Serving, HEALTH_LIMIT).await;

    // Introspect of a live token from four tasks, across the crash and the return.
    let load = Load::start(4, {
        let (client, token) = (introspection.clone(), token.clone());
        move |_, _| {
            let (mut client, token) = (client.clone(), token.clone());
            async move { introspect(&mut client, &token).await }
        }
    });
    load.wait_until(
        "20 answers before the crash",
        Duration::from_secs(10),
        |l| l.successes() >= 20,
    )
    .await;

    redis.kill();
    let down = Instant::now();
    let not_serving = wait_for_health(
        &channel,
        AUTH_HEALTH,
        ServingStatus::NotServing,
        HEALTH_LIMIT,
    )
    .await;

    // Fail closed: while Redis is gone, no Introspect says `active`, and each says
    // UNAVAILABLE within the store timeout: 50 calls, 10 at a time.
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let calls: Vec<JoinHandle<(Duration, Result<bool, Code>)>> = (0..10)
            .map(|_| {
                let (mut client, token) = (introspection.clone(), token.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    let answer = guarded("Introspect", introspect(&mut client, &token)).await;
                    (started.elapsed(), answer.map_err(|status| status.code()))
                })
            })
            .collect();
        for call in calls {
            let (took, answer) = call.await.expect("Introspect task");
            slowest = slowest.max(took);
            assert_eq!(answer, Err(Code::Unavailable), "Introspect with Redis down");
        }
    }
    // Every call that needs Redis is UNAVAILABLE; Register, which does not, works.
    assert_eq!(
        code(
            "Login",
            guarded("Login", login(&mut auth, "nobody", PASSWORD)).await
        ),
        Code::Unavailable
    );
    assert_eq!(
        code(
            "GetProfile",
            guarded("GetProfile", get_profile(&mut auth, &token)).await
        ),
        Code::Unavailable
    );
    let refreshed = auth.refresh(auth::RefreshRequest {
        refresh_token: tokens.refresh_token.clone(),
    });
    assert_eq!(
        code("Refresh", guarded("Refresh", refreshed).await),
        Code::Unavailable
    );
    let newcomer = unique_name("during");
    guarded("Register", register(&mut auth, &newcomer))
        .await
        .expect("Register needs no Redis");
    load.wait_until("UNAVAILABLE answers in the load", HANG_GUARD, |l| {
        l.count_of(Code::Unavailable) >= 8
    })
    .await;

    redis.restart().await;
    let back = Instant::now();
    let outage = back - down;
    let (serving, first_ok) = healed(&channel, AUTH_HEALTH, "Login", || {
        let mut auth = auth.clone();
        let newcomer = newcomer.clone();
        async move { login(&mut auth, &newcomer, PASSWORD).await }
    })
    .await;
    let back_to_work = back.elapsed();
    // The restarted Redis is empty (no persistence): the old session is gone, a new one
    // works.
    let fresh = login(&mut auth, &newcomer, PASSWORD).await.expect("login");
    assert_eq!(
        active(&mut introspection, &fresh.access_token).await,
        Ok(true)
    );
    assert_eq!(active(&mut introspection, &token).await, Ok(false));

    let outcomes = load.stop().await;
    assert_only_ok_or_unavailable("Introspect load", &outcomes);
    // The token was answered from memory before the crash (the Introspect cache), and
    // may still be in the instants before the service reads the end of its tracking
    // connection: an answer Redis gave and could no longer have changed. Once any call
    // has been refused, none says active until Redis is back.
    let first_refusal = outcomes
        .iter()
        .filter(|o| o.started >= down && o.result == Err(Code::Unavailable))
        .map(|o| o.started + o.took)
        .min()
        .expect("a refused call during the outage");
    let opened_after_refusal = outcomes
        .iter()
        .filter(|o| o.started >= first_refusal && o.result == Ok(true))
        .count();
    assert_eq!(
        opened_after_refusal, 0,
        "Introspect said active after an Introspect had been refused for the outage"
    );
    assert!(
        outcomes
            .iter()
            .any(|o| o.started >= down && o.result == Err(Code::Unavailable))
    );
    println!(
        "redis crash: NOT_SERVING after {not_serving:?}; outage Introspect slowest {slowest:?}; \
         back after {outage:?}; SERVING {serving:?} after restart; first Login OK {first_ok:?} \
         after restart ({back_to_work:?} until the fresh session was checked); load {}",
        tally(&outcomes)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_is_unavailable_within_the_store_timeout_never_a_hang() {
    let redis = PrivateRedis::start().await;
    let server = start_auth(auth_on(fresh_database("faultfreeze").await, redis.url()).await).await;
    let channel = server.channel().await;
    let mut auth = AuthServiceClient::new(channel.clone());
    let introspection = IntrospectionServiceClient::new(channel.clone());
    let (_, tokens) = register_and_login(&mut auth, "frozen").await;
    let token = tokens.access_token;
    wait_for_health(&channel, AUTH_HEALTH, ServingStatus::Serving, HEALTH_LIMIT).await;

    // SIGSTOP: connections stay open, nothing answers. Only timeouts can end a call.
    redis.freeze();
    let calls = async {
        let calls: Vec<JoinHandle<(Duration, Result<bool, Code>)>> = (0..8)
            .map(|_| {
                let (mut client, token) = (introspection.clone(), token.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    let answer = guarded("Introspect", introspect(&mut client, &token)).await;
                    (started.elapsed(), answer.map_err(|status| status.code()))
                })
            })
            .collect();
        let mut slowest = Duration::ZERO;
        for call in calls {
            let (took, answer) = call.await.expect("Introspect task");
            slowest = slowest.max(took);
            assert_eq!(
                answer,
                Err(Code::Unavailable),
                "Introspect with Redis frozen"
            );
        }
        slowest
    };
    let health = wait_for_health(
        &channel,
        AUTH_HEALTH,
        ServingStatus::NotServing,
        HEALTH_LIMIT,
    );
    let (slowest, not_serving) = tokio::join!(calls, health);

    redis.thaw();
    let (serving, first_ok) = healed(&channel, AUTH_HEALTH, "Introspect", || {
        let (mut client, token) = (introspection.clone(), token.clone());
        async move {
            match introspect(&mut client, &token).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(Status::failed_precondition("the live token is inactive")),
                Err(status) => Err(status),
            }
        }
    })
    .await;
    println!(
        "redis frozen: Introspect UNAVAILABLE after at most {slowest:?}; NOT_SERVING after \
         {not_serving:?}; after SIGCONT: SERVING {serving:?}, token active again \
         {first_ok:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_crash_under_registrations_loses_no_acknowledged_user() {
    let postgres = PrivatePostgres::start().await;
    let database = postgres.fresh_database("authcrash").await;
    let server = start_auth(auth_on(database, redis_url()).await).await;
    let channel = server.channel().await;
    let mut auth = AuthServiceClient::new(channel.clone());
    let mut introspection = IntrospectionServiceClient::new(channel.clone());
    let (user, tokens) = register_and_login(&mut auth, "pgdown").await;
    let token = tokens.access_token;
    wait_for_health(&channel, AUTH_HEALTH, ServingStatus::Serving, HEALTH_LIMIT).await;

    // Two tasks register new users across the crash and the restart.
    let prefix = unique_name("s");
    let load = Load::start(2, {
        let (client, prefix) = (auth.clone(), prefix.clone());
        move |worker, n| {
            let mut client = client.clone();
            let username = format!("{prefix}w{worker}n{n}");
            async move { register(&mut client, &username).await.map(|_| username) }
        }
    });
    load.wait_until(
        "5 registrations before the crash",
        Duration::from_secs(30),
        |l| l.successes() >= 5,
    )
    .await;

    postgres.crash().await;
    let down = Instant::now();
    let not_serving = wait_for_health(
        &channel,
        AUTH_HEALTH,
        ServingStatus::NotServing,
        HEALTH_LIMIT,
    )
    .await;
    let before_restart = load.successes();
    assert_eq!(
        code(
            "GetProfile",
            guarded("GetProfile", get_profile(&mut auth, &token)).await
        ),
        Code::Unavailable
    );
    assert_eq!(
        code(
            "Login",
            guarded("Login", login(&mut auth, &user.username, PASSWORD)).await
        ),
        Code::Unavailable
    );
    // Introspect needs no SQL: it goes on.
    assert_eq!(
        guarded("Introspect", introspect(&mut introspection, &token))
            .await
            .map_err(|status| status.code()),
        Ok(true)
    );
    load.wait_until("UNAVAILABLE registrations", HANG_GUARD * 2, |l| {
        l.count_of(Code::Unavailable) >= 2
    })
    .await;

    postgres.restart().await;
    let back = Instant::now();
    let outage = back - down;
    let (serving, first_ok) = healed(&channel, AUTH_HEALTH, "GetProfile", || {
        let (mut auth, token) = (auth.clone(), token.clone());
        async move { get_profile(&mut auth, &token).await }
    })
    .await;
    load.wait_until(
        "5 registrations after the restart",
        Duration::from_secs(30),
        |l| l.successes() >= before_restart + 5,
    )
    .await;
    let outcomes = load.stop().await;
    assert_only_ok_or_unavailable("Register stream", &outcomes);
    assert!(
        outcomes
            .iter()
            .any(|o| o.started >= down && o.result == Err(Code::Unavailable)),
        "no registration met the outage"
    );

    // Every registration that was acknowledged is there: its user logs in.
    let acknowledged: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.result.clone().ok())
        .collect();
    for username in &acknowledged {
        let tokens = guarded("Login", login(&mut auth, username, PASSWORD))
            .await
            .unwrap_or_else(|e| panic!("acknowledged user {username} was lost: {e:?}"));
        assert_eq!(
            get_profile(&mut auth, &tokens.access_token)
                .await
                .expect("profile")
                .username,
            *username
        );
    }
    println!(
        "auth postgres crash: NOT_SERVING after {not_serving:?}; back after {outage:?}; \
         SERVING {serving:?} after restart; first GetProfile OK {first_ok:?} after restart; \
         {} acknowledged registrations all kept; stream {}",
        acknowledged.len(),
        tally(&outcomes)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_crash_under_writes_loses_no_acknowledged_post() {
    let postgres = PrivatePostgres::start().await;
    let auth_server =
        start_auth(auth_on(fresh_database("blogcrashauth").await, redis_url()).await).await;
    let mut config = blog_config_on(Backend::Embedded, auth_server.url()).await;
    config.database_url = Some(postgres.fresh_database("blogcrash").await);
    let server = start_blog(config).await;
    let channel = server.channel().await;
    let mut blog = BlogServiceClient::new(channel.clone());
    let mut auth = AuthServiceClient::new(auth_server.channel().await);
    let (_, tokens) = register_and_login(&mut auth, "postsdown").await;
    let token = tokens.access_token;
    let early = create(&mut blog, &token, "before the crash")
        .await
        .expect("create");
    wait_for_health(&channel, BLOG_HEALTH, ServingStatus::Serving, HEALTH_LIMIT).await;

    // Three tasks write posts across the crash and the restart.
    let load = Load::start(3, {
        let (client, token) = (blog.clone(), token.clone());
        move |worker, n| {
            let (mut client, token) = (client.clone(), token.clone());
            let title = format!("stream {worker}/{n}");
            async move {
                let post = create(&mut client, &token, &title).await?;
                assert_eq!(post.title, title);
                Ok(post.id)
            }
        }
    });
    load.wait_until("10 posts before the crash", Duration::from_secs(30), |l| {
        l.successes() >= 10
    })
    .await;

    postgres.crash().await;
    let down = Instant::now();
    let not_serving = wait_for_health(
        &channel,
        BLOG_HEALTH,
        ServingStatus::NotServing,
        HEALTH_LIMIT,
    )
    .await;
    let before_restart = load.successes();
    assert_eq!(
        code(
            "GetPost",
            guarded("GetPost", get(&mut blog, &early.id)).await
        ),
        Code::Unavailable
    );
    assert_eq!(
        code("ListPosts", guarded("ListPosts", list(&mut blog)).await),
        Code::Unavailable
    );
    load.wait_until("UNAVAILABLE writes", HANG_GUARD * 2, |l| {
        l.count_of(Code::Unavailable) >= 3
    })
    .await;

    postgres.restart().await;
    let back = Instant::now();
    let outage = back - down;
    let (serving, first_ok) = healed(&channel, BLOG_HEALTH, "ListPosts", || {
        let mut blog = blog.clone();
        async move { list(&mut blog).await }
    })
    .await;
    load.wait_until("10 posts after the restart", Duration::from_secs(30), |l| {
        l.successes() >= before_restart + 10
    })
    .await;
    let outcomes = load.stop().await;
    assert_only_ok_or_unavailable("CreatePost stream", &outcomes);
    assert!(
        outcomes
            .iter()
            .any(|o| o.started >= down && o.result == Err(Code::Unavailable)),
        "no write met the outage"
    );

    let acknowledged: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.result.clone().ok())
        .collect();
    for id in acknowledged.iter().chain([&early.id]) {
        guarded("GetPost", get(&mut blog, id))
            .await
            .unwrap_or_else(|e| panic!("acknowledged post {id} was lost: {e:?}"));
    }
    println!(
        "blog postgres crash: NOT_SERVING after {not_serving:?}; back after {outage:?}; \
         SERVING {serving:?} after restart; first ListPosts OK {first_ok:?} after restart; \
         {} acknowledged posts all kept; stream {}",
        acknowledged.len(),
        tally(&outcomes)
    );
    server.stop().await;
    auth_server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blog_recovers_when_a_new_auth_service_takes_the_same_port() {
    let config = auth_on(fresh_database("authswap").await, redis_url()).await;
    let first = start_auth(config.clone()).await;
    let addr = first.addr;
    let blog_server = start_blog(blog_config_on(Backend::PostgresRedis, first.url()).await).await;
    let mut blog = BlogServiceClient::new(blog_server.channel().await);
    let mut auth = AuthServiceClient::new(first.channel().await);
    let (_, tokens) = register_and_login(&mut auth, "swap").await;
    let token = tokens.access_token;
    let post = create(&mut blog, &token, "before").await.expect("create");

    // Writes from four tasks across the stop and the new start: each is OK or
    // UNAVAILABLE, even one that meets auth-service's connection as it goes away.
    let load = Load::start(4, {
        let (client, token) = (blog.clone(), token.clone());
        move |worker, n| {
            let (mut client, token) = (client.clone(), token.clone());
            async move {
                create(&mut client, &token, &format!("load {worker}/{n}"))
                    .await
                    .map(|p| p.id)
            }
        }
    });
    load.wait_until("10 writes before the stop", Duration::from_secs(10), |l| {
        l.successes() >= 10
    })
    .await;

    first.stop().await;
    let stopped = Instant::now();
    assert_eq!(
        code(
            "CreatePost",
            guarded("CreatePost", create(&mut blog, &token, "during")).await
        ),
        Code::Unavailable
    );
    assert_eq!(
        guarded("GetPost", get(&mut blog, &post.id))
            .await
            .expect("read"),
        post
    );
    // Anonymous reads never needed auth-service.
    let page = guarded("ListPosts", list(&mut blog)).await.expect("list");
    assert!(!page.posts.is_empty());

    // A new process on the same port, the same stores and the same secret: the token
    // issued by the old one is still good.
    let mut second_config = config;
    second_config.listen_addr = addr;
    let second = start_auth(second_config).await;
    assert_eq!(second.addr, addr);
    let restarted = Instant::now();
    let recovered = first_success("CreatePost", RECOVERY_LIMIT, || {
        let (mut blog, token) = (blog.clone(), token.clone());
        async move { create(&mut blog, &token, "after").await }
    })
    .await;
    let before = load.successes();
    load.wait_until("10 writes after the new start", RECOVERY_LIMIT, |l| {
        l.successes() >= before + 10
    })
    .await;
    let outcomes = load.stop().await;
    assert_only_ok_or_unavailable("CreatePost load", &outcomes);
    println!(
        "auth-service swap: down for {:?}; blog write OK {recovered:?} after the new \
         auth-service bound {addr}; load {}",
        restarted - stopped,
        tally(&outcomes)
    );
    blog_server.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_while_redis_is_down_and_count_the_failures() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut redis = PrivateRedis::start().await;
    let mut config = auth_on(fresh_database("faultmetrics").await, redis.url()).await;
    config.metrics_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let app = auth_service::Application::build(config)
        .await
        .expect("build");
    let metrics_addr = app.metrics_addr().expect("metrics endpoint");
    let server = support::start_built_auth(app);
    let mut client = support::auth_client(&server).await;
    let (user, _) = register_and_login(&mut client, "scrape").await;

    redis.kill();
    let status = tokio::time::timeout(
        HANG_GUARD,
        client.login(auth::LoginRequest {
            username: user.username.clone(),
            password: support::PASSWORD.into(),
        }),
    )
    .await
    .expect("no hang")
    .expect_err("Redis is down");
    assert_eq!(status.code(), Code::Unavailable);

    let scrape = async {
        let mut stream = tokio::net::TcpStream::connect(metrics_addr)
            .await
            .expect("connect");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read");
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), scrape)
        .await
        .expect("the scrape answers while Redis is down");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(r#"grpc_method="Login",grpc_code="OK"} 1"#),
        "{answer}"
    );
    assert!(
        answer.contains(r#"grpc_method="Login",grpc_code="Unavailable"} 1"#),
        "{answer}"
    );
    server.stop().await;
}
