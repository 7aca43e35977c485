//! A Redis Cluster that loses a master: acknowledged revocations stay revoked, a
//! revocation no replica confirms is refused, and calls under load are UNAVAILABLE only
//! until a replica takes over, with the Introspect cache of another instance correct
//! throughout. Each test runs a cluster of its own (`support::stores::PrivateCluster`)
//! and kills or freezes its nodes, never the shared test cluster. Recovery times and
//! error counts are printed (`--nocapture` shows them).

mod support;

use std::time::{Duration, Instant};

use pair_proto::auth::v1::{
    self as auth, auth_service_client::AuthServiceClient,
    introspection_service_client::IntrospectionServiceClient,
};
use support::faults::*;
use support::{
    Backend, PASSWORD, Running, auth_config_on, authed, claims_of, register_and_login, start_auth,
    stores::PrivateCluster,
};
use tonic::Code;

/// auth-service on `cluster` (and a fresh PostgreSQL database).
async fn config_on(cluster: &PrivateCluster) -> auth_service::Config {
    let mut config = auth_config_on(Backend::PostgresRedis).await;
    config.redis_url = None;
    config.redis_cluster_urls = cluster.urls();
    config
}

fn index_key(user: &auth::User) -> String {
    format!("auth:sessions:{{{}}}", user.id)
}

async fn logout(server: &Running, access_token: &str) -> Result<(), tonic::Status> {
    AuthServiceClient::new(server.channel().await)
        .logout(authed(access_token, auth::LogoutRequest {}))
        .await
        .map(drop)
}

async fn refresh(server: &Running, refresh_token: &str) -> Result<auth::TokenPair, tonic::Status> {
    AuthServiceClient::new(server.channel().await)
        .refresh(auth::RefreshRequest {
            refresh_token: refresh_token.into(),
        })
        .await
        .map(|answer| answer.into_inner().tokens.expect("tokens"))
}

async fn is_active(server: &Running, token: &str) -> Result<bool, Code> {
    active(
        &mut IntrospectionServiceClient::new(server.channel().await),
        token,
    )
    .await
}

/// Polls Introspect of `token` through `server` until it answers at all; how long the
/// failover took as this client saw it.
async fn until_answered(server: &Running, token: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match guarded("Introspect", async {
            Ok::<_, tonic::Status>(is_active(server, token).await)
        })
        .await
        {
            Ok(Ok(_)) => return started.elapsed(),
            Ok(Err(code)) => assert_eq!(code, Code::Unavailable, "during a failover"),
            Err(status) => panic!("{status:?}"),
        }
        assert!(
            started.elapsed() < limit,
            "Introspect answered again within {limit:?} of the master's loss"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_revocations_survive_the_loss_of_their_master() {
    let cluster = PrivateCluster::start().await;
    let server = start_auth(config_on(&cluster).await).await;
    let mut client = AuthServiceClient::new(server.channel().await);
    let (user, first) = register_and_login(&mut client, "durable").await;
    let mut pairs = vec![first];
    for _ in 0..5 {
        pairs.push(
            login(&mut client, &user.username, PASSWORD)
                .await
                .expect("login"),
        );
    }
    let shard = cluster.shard_of(&index_key(&user)).await;
    cluster.wait_in_sync().await;

    // Revoke four ways, each acknowledged, then lose the master at once.
    logout(&server, &pairs[0].access_token)
        .await
        .expect("logout");
    let revoked_session = claims_of(&pairs[1].access_token)["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    client
        .revoke_session(authed(
            &pairs[2].access_token,
            auth::RevokeSessionRequest {
                session_id: revoked_session,
            },
        ))
        .await
        .expect("revoke session");
    let rotated = refresh(&server, &pairs[3].refresh_token)
        .await
        .expect("refresh");
    let changed = client
        .change_password(authed(
            &pairs[4].access_token,
            auth::ChangePasswordRequest {
                current_password: PASSWORD.into(),
                new_password: format!("{PASSWORD} changed"),
            },
        ))
        .await
        .expect("change password")
        .into_inner()
        .tokens
        .expect("tokens");
    cluster.kill(shard.master);
    let killed = Instant::now();
    cluster.wait_promoted(shard.replicas[0]).await;
    until_answered(&server, &changed.access_token, Duration::from_secs(30)).await;
    let failover = killed.elapsed();

    // Nothing acknowledged came undone on the promoted replica.
    for (what, token) in [
        ("logged out", &pairs[0].access_token),
        ("revoked", &pairs[1].access_token),
        ("rotated away", &pairs[3].access_token),
        ("ended by the password change", &rotated.access_token),
        ("ended by the password change", &pairs[5].access_token),
    ] {
        assert_eq!(
            is_active(&server, token).await,
            Ok(false),
            "the {what} access token is inactive after the failover"
        );
    }
    for (what, token) in [
        ("logged out", &pairs[0].refresh_token),
        ("revoked", &pairs[1].refresh_token),
        ("ended by the password change", &pairs[5].refresh_token),
    ] {
        let status = refresh(&server, token).await.expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    }
    // What was not revoked is still live: the pair the password change issued.
    assert_eq!(is_active(&server, &changed.access_token).await, Ok(true));
    for pair in [&pairs[2], &pairs[4]] {
        assert_eq!(is_active(&server, &pair.access_token).await, Ok(false));
    }
    println!(
        "failover: Introspect answered again {failover:?} after the master's loss; \
         every acknowledged revocation held"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_no_replica_confirms_is_unavailable_and_takes_effect_once_it_does() {
    let cluster = PrivateCluster::start().await;
    let mut config = config_on(&cluster).await;
    config.store_timeout = Duration::from_secs(1);
    let durable = start_auth(config.clone()).await;
    config.redis_min_replicas = Some(0);
    let hasty = start_auth(config).await;
    let mut client = AuthServiceClient::new(durable.channel().await);
    let (user, first) = register_and_login(&mut client, "unconfirmed").await;
    let second = login(&mut client, &user.username, PASSWORD)
        .await
        .expect("login");
    // A first logout while every node answers: the revoke script is then loaded on the
    // master (loading it goes to every node, the frozen replica included).
    let warm_up = login(&mut client, &user.username, PASSWORD)
        .await
        .expect("login");
    logout(&durable, &warm_up.access_token)
        .await
        .expect("logout while every node answers");
    let shard = cluster.shard_of(&index_key(&user)).await;
    cluster.wait_in_sync().await;

    cluster.freeze(shard.replicas[0]);
    let started = Instant::now();
    let status = guarded("Logout", logout(&durable, &first.access_token))
        .await
        .expect_err("no replica confirms the logout");
    let refused_after = started.elapsed();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // AUTH_REDIS_MIN_REPLICAS=0 does not wait for the frozen replica.
    let started = Instant::now();
    guarded("Logout", logout(&hasty, &second.access_token))
        .await
        .expect("without replicas required, the logout is acknowledged");
    let hasty_took = started.elapsed();
    cluster.thaw(shard.replicas[0]);

    // The refused logout reached the master: repeating it is safe, the token is dead.
    assert_eq!(is_active(&durable, &first.access_token).await, Ok(false));
    let status = logout(&durable, &first.access_token)
        .await
        .expect_err("a repeat");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    println!(
        "durability: unconfirmed logout refused after {refused_after:?}; \
         with AUTH_REDIS_MIN_REPLICAS=0 acknowledged in {hasty_took:?}"
    );
    durable.stop().await;
    hasty.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_under_load_is_unavailable_only_until_its_replica_takes_over() {
    let cluster = PrivateCluster::start().await;
    let config = config_on(&cluster).await;
    let (a, b) = (start_auth(config.clone()).await, start_auth(config).await);
    let mut client = AuthServiceClient::new(a.channel().await);
    // Users on every shard (64 random ids cover three shards), each with a session.
    let mut users = Vec::new();
    for _ in 0..16 {
        users.push(register_and_login(&mut client, "load").await);
    }
    let victim = cluster.shard_of(&index_key(&users[0].0)).await;
    cluster.wait_in_sync().await;
    let tokens: Vec<String> = users.iter().map(|(_, t)| t.access_token.clone()).collect();
    let names: Vec<String> = users.iter().map(|(u, _)| u.username.clone()).collect();
    // Refresh chains of their own: users 8.. rotate; a refused rotation is retried with
    // the same token (within the retry window it answers the pair it issued).
    let chains: Vec<std::sync::Arc<tokio::sync::Mutex<String>>> = users[8..]
        .iter()
        .map(|(_, t)| std::sync::Arc::new(tokio::sync::Mutex::new(t.refresh_token.clone())))
        .collect();
    let (a_channel, b_channel) = (a.channel().await, b.channel().await);

    let introspect = Load::start(4, {
        let (tokens, a, b) = (tokens.clone(), a_channel.clone(), b_channel.clone());
        move |worker, n| {
            let token = tokens[(worker + n) % 8].clone();
            let channel = if n % 2 == 0 { a.clone() } else { b.clone() };
            async move {
                active(&mut IntrospectionServiceClient::new(channel), &token)
                    .await
                    .map_err(|code| tonic::Status::new(code, "introspect"))
            }
        }
    });
    let logins = Load::start(1, {
        let (names, a) = (names.clone(), a_channel.clone());
        move |_, n| {
            let name = names[n % names.len()].clone();
            let mut client = AuthServiceClient::new(a.clone());
            async move { login(&mut client, &name, PASSWORD).await.map(|_| true) }
        }
    });
    let refreshes = Load::start(2, {
        let (chains, a) = (chains.clone(), a_channel.clone());
        move |worker, n| {
            let chain = chains[(worker * 4 + n) % chains.len()].clone();
            let mut client = AuthServiceClient::new(a.clone());
            async move {
                let mut token = chain.lock().await;
                let next = client
                    .refresh(auth::RefreshRequest {
                        refresh_token: token.clone(),
                    })
                    .await?
                    .into_inner()
                    .tokens
                    .expect("tokens");
                *token = next.refresh_token;
                Ok(true)
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = Instant::now();
    cluster.kill(victim.master);
    cluster.wait_promoted(victim.replicas[0]).await;
    let failover = killed.elapsed();
    // The promoted replica has no replica of its own: revocations and rotations of its
    // users wait for one (AUTH_REDIS_MIN_REPLICAS=1). The killed node comes back, as a
    // process supervisor would start it, and rejoins as that replica. (Only after the
    // promotion: a master without persistence that returns before it would take its
    // slots back empty, and its replica would copy the emptiness.)
    cluster.restart(victim.master).await;
    cluster.wait_replica(victim.master).await;
    let replica_back = killed.elapsed();
    // Three more seconds of normal service.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (introspect, logins, refreshes) = (
        introspect.stop().await,
        logins.stop().await,
        refreshes.stop().await,
    );

    for (what, outcomes) in [("Login", &logins), ("Refresh", &refreshes)] {
        assert_only_ok_or_unavailable(what, outcomes);
    }
    assert_only_ok_or_unavailable("Introspect", &introspect);
    assert!(
        introspect.iter().all(|o| o.result != Ok(false)),
        "a live token was never reported inactive"
    );
    let last_error = |outcomes: &[Outcome<bool>]| {
        outcomes
            .iter()
            .filter(|o| o.result.is_err())
            .map(|o| o.started + o.took)
            .max()
            .map(|at| at.saturating_duration_since(killed))
    };
    println!(
        "failover under load: the replica was a master {failover:?} after the kill, the killed node \
         was back as a replica in sync after {replica_back:?}; \
         Introspect {} (last error ended {:?} after the kill), Login {} ({:?}), \
         Refresh {} ({:?})",
        tally(&introspect),
        last_error(&introspect),
        tally(&logins),
        last_error(&logins),
        tally(&refreshes),
        last_error(&refreshes),
    );
    // After the failover (and a settling second) every read and login succeeds, and every
    // rotation once the shard has a replica again.
    let settled = killed + failover + Duration::from_secs(1);
    let durable_settled = killed + replica_back + Duration::from_secs(1);
    for (what, outcomes) in [
        ("Introspect", &introspect),
        ("Login", &logins),
        ("Refresh", &refreshes),
    ] {
        let settled = if what == "Refresh" {
            durable_settled
        } else {
            settled
        };
        let late: Vec<_> = outcomes
            .iter()
            .filter(|o| o.started > settled && o.result.is_err())
            .map(|o| (o.started.saturating_duration_since(killed), o.result))
            .collect();
        assert!(
            late.is_empty(),
            "{what} failed after the failover ({failover:?}): {late:?}"
        );
        assert!(
            outcomes
                .iter()
                .any(|o| o.started > settled && o.result.is_ok()),
            "{what} ran after the failover"
        );
    }

    // Both instances follow the new topology, and B's cache sees a revocation made
    // through A on the promoted master.
    let mut on_b = IntrospectionServiceClient::new(b_channel);
    assert_eq!(active(&mut on_b, &tokens[0]).await, Ok(true));
    logout(&a, &tokens[0])
        .await
        .expect("logout after the failover");
    let started = Instant::now();
    while active(&mut on_b, &tokens[0]).await != Ok(false) {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "B saw the logout made through A on the new master"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    a.stop().await;
    b.stop().await;
}
