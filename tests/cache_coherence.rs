//! Two auth-service instances on one Redis, each with its Introspect cache (and the
//! GetProfile user kept with it): a revocation or a profile change made through one is
//! seen by the other despite what it keeps, because Redis pushes the change. Each test
//! runs its own `redis-server` (`support::stores`). Every call is bounded by a hang
//! guard; how long a change took to be seen is printed (`--nocapture` shows it).

mod support;

use std::time::{Duration, Instant};

use pair_proto::auth::v1::{
    self as auth, auth_service_client::AuthServiceClient,
    introspection_service_client::IntrospectionServiceClient,
};
use sqlx::Connection as _;
use support::faults::*;
use support::{
    PASSWORD, Running, authed, fresh_database, register_and_login, start_auth,
    stores::PrivateRedis, unique_name,
};

/// `ask`'s answer, polled until `done` holds; panics after `limit`. Returns how long it
/// took.
async fn poll_until<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    what: &str,
    limit: Duration,
    mut ask: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let answer = ask().await;
        if done(&answer) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{what} within {limit:?}: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Introspect's answer for `token` on `client`, polled until `done` holds.
async fn introspect_until(
    client: &Introspection,
    token: &str,
    what: &str,
    limit: Duration,
    done: impl Fn(&auth::IntrospectResponse) -> bool,
) -> Duration {
    let ask = || {
        let mut client = client.clone();
        let token = token.to_owned();
        async move {
            guarded(
                "Introspect",
                client.introspect(auth::IntrospectRequest { token }),
            )
            .await
            .expect("introspect")
            .into_inner()
        }
    };
    poll_until(what, limit, ask, done).await
}

/// GetProfile's answer for `token` on `client`, polled until `done` holds.
async fn profile_until(
    client: &Auth,
    token: &str,
    what: &str,
    limit: Duration,
    done: impl Fn(&auth::User) -> bool,
) -> Duration {
    let ask = || {
        let mut client = client.clone();
        async move {
            guarded("GetProfile", get_profile(&mut client, token))
                .await
                .expect("get profile")
        }
    };
    poll_until(what, limit, ask, done).await
}

/// Two auth-service instances on one fresh database and one private Redis, both caches
/// tracking it, and an admin connection to that Redis.
struct TwoInstances {
    _redis: PrivateRedis,
    database: String,
    a: Running,
    b: Running,
    admin: redis::aio::MultiplexedConnection,
}

impl TwoInstances {
    async fn start(prefix: &str) -> Self {
        let redis = PrivateRedis::start().await;
        let database = fresh_database(prefix).await;
        let config = auth_on(database.clone(), redis.url()).await;
        let (a, b) = (start_auth(config.clone()).await, start_auth(config).await);
        let mut admin = redis::Client::open(redis.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        wait_for_tracking(&mut admin, 2).await;
        Self {
            _redis: redis,
            database,
            a,
            b,
            admin,
        }
    }

    async fn stop(self) {
        self.a.stop().await;
        self.b.stop().await;
    }
}

/// The ids of the Introspect cache's tracking connections on `redis`.
async fn tracking_connections(admin: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(admin)
        .await
        .expect("CLIENT LIST");
    let name = format!("name={}", auth_service::store::TRACKING_CONNECTION_NAME);
    list.lines()
        .filter(|line| line.split(' ').any(|field| field == name))
        .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")))
        .map(str::to_owned)
        .collect()
}

async fn wait_for_tracking(admin: &mut redis::aio::MultiplexedConnection, count: usize) {
    let started = Instant::now();
    while tracking_connections(admin).await.len() < count {
        assert!(
            started.elapsed() < RECOVERY_LIMIT,
            "{count} tracking connections within {RECOVERY_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `cmdstat_<command>` calls in Redis's INFO.
async fn redis_calls(admin: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(admin)
        .await
        .expect("INFO");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("a count"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_see_each_others_revocations_despite_the_cache() {
    let mut pair = TwoInstances::start("faultcache").await;
    let mut auth_a = AuthServiceClient::new(pair.a.channel().await);
    let mut on_a = IntrospectionServiceClient::new(pair.a.channel().await);
    let mut on_b = IntrospectionServiceClient::new(pair.b.channel().await);
    let admin = &mut pair.admin;
    let (user, first) = register_and_login(&mut auth_a, "cached").await;
    let second = login(&mut auth_a, &user.username, PASSWORD)
        .await
        .expect("login");
    let third = login(&mut auth_a, &user.username, PASSWORD)
        .await
        .expect("login");

    // A checked token is answered from memory: ten more Introspects ask Redis nothing.
    assert_eq!(active(&mut on_b, &first.access_token).await, Ok(true));
    let reads = redis_calls(admin, "hmget").await;
    for _ in 0..10 {
        assert_eq!(active(&mut on_b, &first.access_token).await, Ok(true));
    }
    assert_eq!(
        redis_calls(admin, "hmget").await,
        reads,
        "the repeated Introspects were answered from memory"
    );

    // Logout through A: A says inactive at once, B once Redis's push has arrived.
    assert_eq!(active(&mut on_a, &first.access_token).await, Ok(true));
    auth_a
        .logout(authed(&first.access_token, auth::LogoutRequest {}))
        .await
        .expect("logout");
    assert_eq!(
        active(&mut on_a, &first.access_token).await,
        Ok(false),
        "the instance that logged out forgets at once"
    );
    let logout_seen = introspect_until(
        &on_b,
        &first.access_token,
        "B sees the logout made through A",
        Duration::from_secs(2),
        |answer| !answer.active,
    )
    .await;

    // A rename through A: B reports the new name for the older session.
    let seen = introspect_until(
        &on_b,
        &third.access_token,
        "B answers for the third session",
        Duration::from_secs(2),
        |answer| answer.active,
    )
    .await;
    let new_name = unique_name("recached");
    auth_a
        .update_profile(authed(
            &second.access_token,
            auth::UpdateProfileRequest {
                username: Some(new_name.clone()),
                email: None,
            },
        ))
        .await
        .expect("rename");
    let rename_seen = introspect_until(
        &on_b,
        &third.access_token,
        "B reports the new name",
        Duration::from_secs(2),
        |answer| answer.active && answer.username == new_name,
    )
    .await;

    // Cut every tracking connection, then revoke through A while they are down: no
    // remembered answer survives the cut, so B finds out from Redis.
    assert_eq!(active(&mut on_b, &third.access_token).await, Ok(true));
    for id in tracking_connections(admin).await {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(&id)
            .exec_async(&mut *admin)
            .await
            .expect("CLIENT KILL");
    }
    auth_a
        .logout_all(authed(&third.access_token, auth::LogoutAllRequest {}))
        .await
        .expect("logout all");
    let cut_seen = introspect_until(
        &on_b,
        &third.access_token,
        "B sees the revocation made while its tracking connection was cut",
        Duration::from_secs(2),
        |answer| !answer.active,
    )
    .await;
    wait_for_tracking(admin, 2).await;
    for _ in 0..10 {
        assert_eq!(active(&mut on_b, &third.access_token).await, Ok(false));
    }
    println!(
        "introspect cache: B saw a logout through A after {logout_seen:?}, a rename after \
         {rename_seen:?} (first answer {seen:?}), a revocation across a cut tracking \
         connection after {cut_seen:?}"
    );
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_see_each_others_profile_changes_despite_the_profile_cache() {
    let pair = TwoInstances::start("profilecache").await;
    let mut auth_a = AuthServiceClient::new(pair.a.channel().await);
    let mut auth_b = AuthServiceClient::new(pair.b.channel().await);
    let (user, first) = register_and_login(&mut auth_a, "profiled").await;
    let second = login(&mut auth_a, &user.username, PASSWORD)
        .await
        .expect("login");
    let mut sql = sqlx::PgConnection::connect(&pair.database)
        .await
        .expect("postgres");

    // B reads the profile once, then serves it from memory: an edit of the row by hand
    // is not seen until the remembered profile is PROFILE_MAX_AGE (5 s) old.
    assert_eq!(
        get_profile(&mut auth_b, &first.access_token)
            .await
            .expect("profile")
            .email,
        user.email
    );
    let edited = format!("{}@edited.example.com", user.username);
    let edited_at = Instant::now();
    sqlx::query("UPDATE users SET email = $1 WHERE id = $2::uuid")
        .bind(&edited)
        .bind(&user.id)
        .execute(&mut sql)
        .await
        .expect("edit by hand");
    assert_eq!(
        get_profile(&mut auth_b, &first.access_token)
            .await
            .expect("profile")
            .email,
        user.email,
        "the second GetProfile was answered from memory"
    );
    profile_until(
        &auth_b,
        &first.access_token,
        "B reads the edited row again",
        Duration::from_secs(10),
        |seen| seen.email == edited,
    )
    .await;
    let aged = edited_at.elapsed();
    assert!(
        aged >= Duration::from_secs(4),
        "served from memory for {aged:?} only"
    );

    // UpdateProfile through A, with the other session: B answers the new email for the
    // first session once Redis's push for the user's sessions has arrived.
    let renamed = unique_name("reprofiled");
    auth_a
        .update_profile(authed(
            &second.access_token,
            auth::UpdateProfileRequest {
                username: None,
                email: Some(format!("{renamed}@example.com")),
            },
        ))
        .await
        .expect("update profile");
    let update_seen = profile_until(
        &auth_b,
        &first.access_token,
        "B answers the email changed through A",
        Duration::from_secs(2),
        |seen| seen.email == format!("{renamed}@example.com"),
    )
    .await;
    assert!(update_seen < Duration::from_secs(1), "took {update_seen:?}");
    println!(
        "profile cache: B served a hand edit after {aged:?} (PROFILE_MAX_AGE 5 s), an \
         UpdateProfile through A after {update_seen:?}"
    );
    pair.stop().await;
}
