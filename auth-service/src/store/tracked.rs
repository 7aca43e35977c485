//! Introspect answers kept in process, and kept true by Redis (server-assisted
//! client-side caching, `CLIENT TRACKING … BCAST`), on the shared change-driven cache
//! (`pair_common::cache`: live flag, generation tickets, keepalive and reconnect, the
//! budget). This file holds what is Redis's: the tracking links, and which user each
//! answer and each pushed key belongs to.
//!
//! Introspect of a live token costs a Redis request; on a busy pair that is most of
//! its cost, and the same tokens are checked again and again. A dedicated RESP3
//! connection asks Redis to push the name of every key under the refresh and blocklist
//! prefixes that changes (written, deleted, expired or evicted), and each pushed name
//! drops what is remembered of that key's user.
//!
//! What a caller sees:
//! - On the instance that made a change (Logout, Refresh, LogoutAll, UpdateProfile…)
//!   the change is visible at once: the store forgets the user before it returns.
//! - On another instance sharing the Redis, it is visible once Redis's push has been
//!   read. Redis writes the push before it answers the change, so on one host this is
//!   well under a millisecond.
//! - If the tracking connection drops, or any Redis read fails, everything remembered is
//!   dropped and nothing is remembered until the connection is back. A frozen Redis
//!   (connection open, nothing answered) is found by a PING after 250 ms of silence
//!   with a 500 ms deadline.
//! - On a Redis Cluster there is one tracking connection per master (each master pushes
//!   the changes of its own keys). Answers are kept only while every one is confirmed;
//!   every 250 ms each is asked `CLUSTER SLOTS` (500 ms deadline), and when the masters
//!   are no longer the ones tracked (a failover, a resharding) everything is dropped and
//!   tracking starts over on the new masters.
//! - Only active answers are remembered; every inactive one asks Redis.
//! - GetProfile's user (from the user database) is remembered with the answer of the
//!   token that asked, for at most `PROFILE_MAX_AGE`. A profile changes only through
//!   UpdateProfile and ChangePassword, and both write the user's sessions in Redis after
//!   the user database, so the same push that drops the answer drops the profile on every
//!   instance; the age bound covers a profile write whose session write then failed, and
//!   edits made by hand.

use std::{
    collections::BTreeSet,
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use pair_common::cache::{Change, ChangeCache, ChangeSource, Failure, Policy, Rhythm, Ticket};
use redis::{
    AsyncConnectionConfig, Client, IntoConnectionInfo as _, ProtocolVersion, PushInfo, PushKind,
    Value, aio::MultiplexedConnection,
};
use uuid::Uuid;

use crate::{domain::User, tokens::Claims};

/// At most this many answers are kept (≈ 100 bytes each).
const CAPACITY: usize = 65_536;
/// A remembered profile is served for at most this long (module documentation).
pub const PROFILE_MAX_AGE: Duration = Duration::from_secs(5);
/// The tracking connection's name in `CLIENT LIST`.
pub const CONNECTION_NAME: &str = "auth-introspect-tracking";

/// Introspect answers: an access token found active, and its user's current name.
pub struct Introspected;

/// An access token by all the claims its answer depends on: a token with the same id
/// but another session or twin is not this answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Access {
    jti: Uuid,
    user: Uuid,
    session: Uuid,
    twin: Uuid,
}

impl Access {
    fn of(claims: &Claims) -> Self {
        Self {
            jti: claims.jti,
            user: claims.sub,
            session: claims.sid,
            twin: claims.twin,
        }
    }
}

pub struct Answer {
    username: String,
    expires: u64,
    /// GetProfile's user, and when it was read.
    profile: Option<(Arc<User>, Instant)>,
}

impl Policy for Introspected {
    type Key = Access;
    type Value = Answer;
    /// A user: every change Redis pushes names one (the hash tag of the key).
    type Owner = Uuid;

    fn owner(access: &Access) -> Option<Uuid> {
        Some(access.user)
    }

    fn weight(_: &Access, _: &Answer) -> usize {
        1
    }

    /// Expired answers are never asked for again: they go first.
    fn rank(_: &Access, answer: &Answer) -> u8 {
        let (now, _) = crate::tokens::now();
        u8::from(answer.expires > now)
    }
}

/// The remembered answers; shared by the store and its tracking task.
pub type IntrospectCache = ChangeCache<Introspected>;

/// An empty cache, dark until its tracking connections are confirmed.
pub fn introspect_cache() -> IntrospectCache {
    ChangeCache::new(CAPACITY)
}

/// Introspect's words for the cache's lookup and keep.
pub trait IntrospectAnswers {
    /// The remembered username if `access` was found active and nothing of its user has
    /// changed since; otherwise a ticket for `remember` (`None`: do not remember).
    fn answer(&self, access: &Claims) -> Result<String, Option<Ticket>>;
    /// Remembers that `access` is active, unless anything was dropped since `ticket`.
    fn remember(&self, ticket: Ticket, access: &Claims, username: &str);
    /// The user remembered with `access`'s answer, if read less than `PROFILE_MAX_AGE`
    /// ago; otherwise a ticket for `remember_profile` if the answer itself is remembered
    /// (`None`: do not remember).
    fn profile(&self, access: &Claims) -> Result<Arc<User>, Option<Ticket>>;
    /// Adds `user`, read after `ticket` was taken, to `access`'s remembered answer, unless
    /// anything was dropped since. Never remembers an answer on its own: only a read of
    /// Redis says a token is active.
    fn remember_profile(&self, ticket: Ticket, access: &Claims, user: Arc<User>);
}

impl IntrospectAnswers for IntrospectCache {
    fn answer(&self, access: &Claims) -> Result<String, Option<Ticket>> {
        self.lookup(&Access::of(access), |answer| answer.username.clone())
    }

    fn remember(&self, ticket: Ticket, access: &Claims, username: &str) {
        let answer = Answer {
            username: username.to_owned(),
            expires: access.exp,
            profile: None,
        };
        self.keep(ticket, Access::of(access), answer);
    }

    fn profile(&self, access: &Claims) -> Result<Arc<User>, Option<Ticket>> {
        let found = self.lookup(&Access::of(access), |answer| {
            answer
                .profile
                .as_ref()
                .filter(|(_, read)| read.elapsed() < PROFILE_MAX_AGE)
                .map(|(user, _)| user.clone())
        });
        match found {
            Ok(Some(user)) => Ok(user),
            Ok(None) => Err(self.ticket()),
            Err(_) => Err(None),
        }
    }

    fn remember_profile(&self, ticket: Ticket, access: &Claims, user: Arc<User>) {
        self.amend(ticket, &Access::of(access), |answer| {
            answer.profile = Some((user, Instant::now()));
        });
    }
}

/// One push from Redis: a list of changed keys, or null after FLUSHDB/FLUSHALL; or the
/// news that the connection is gone.
fn on_push(cache: &IntrospectCache, push: &PushInfo) {
    match push.kind {
        PushKind::Invalidate => match push.data.first() {
            Some(Value::Array(keys)) => {
                for key in keys {
                    cache.apply(&user_of_key(key).map_or(Change::All, Change::Owner));
                }
            }
            _ => cache.drop_all(),
        },
        PushKind::Disconnection => cache.set_live(false),
        _ => {}
    }
}

/// The user id of a key named `<prefix>{<user id>}…`.
fn user_of_key(key: &Value) -> Option<Uuid> {
    let bytes = match key {
        Value::BulkString(bytes) => bytes.as_slice(),
        Value::SimpleString(text) => text.as_bytes(),
        _ => return None,
    };
    let start = bytes.iter().position(|b| *b == b'{')? + 1;
    let end = start + bytes[start..].iter().position(|b| *b == b'}')?;
    Uuid::try_parse_ascii(&bytes[start..end]).ok()
}

/// What to track: one node, or every master of a cluster (found from some of its nodes).
#[derive(Clone)]
pub enum Tracked {
    Node(Client),
    Cluster(Vec<String>),
}

/// The masters of a cluster as `CLUSTER SLOTS` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTopology {
    pub masters: BTreeSet<(String, u16)>,
}

/// Asks the nodes of `urls` in turn for the cluster's slots; the first answer counts.
pub async fn cluster_masters(
    urls: &[String],
    timeout: Duration,
) -> redis::RedisResult<ClusterTopology> {
    let mut last = redis::RedisError::from((redis::ErrorKind::Io, "no cluster node given"));
    for url in urls {
        match ask_topology(url, timeout).await {
            Ok(topology) => return Ok(topology),
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// Whether every master that serves slots has a replica that is not failed, as the
/// first node of `urls` that answers sees the cluster; `None` if none answers. From
/// `CLUSTER NODES`: `CLUSTER SLOTS` leaves out a replica until it has replicated a byte.
pub async fn cluster_has_replicas(urls: &[String], timeout: Duration) -> Option<bool> {
    for url in urls {
        let asked = async {
            let (_, mut conn) = connect_plain(url, timeout).await?;
            redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async::<String>(&mut conn)
                .await
        };
        if let Ok(nodes) = asked.await {
            return Some(every_master_has_a_replica(&nodes));
        }
    }
    None
}

/// Reads `CLUSTER NODES`: `<id> <addr> <flags> <master id or -> … [slots…]`.
fn every_master_has_a_replica(nodes: &str) -> bool {
    let lines: Vec<Vec<&str>> = nodes
        .lines()
        .map(|line| line.split_whitespace().collect())
        .filter(|fields: &Vec<&str>| fields.len() >= 8)
        .collect();
    let flags = |fields: &Vec<&str>, flag: &str| fields[2].split(',').any(|f| f == flag);
    let masters: Vec<&str> = lines
        .iter()
        .filter(|fields| flags(fields, "master") && fields.len() > 8)
        .map(|fields| fields[0])
        .collect();
    !masters.is_empty()
        && masters.iter().all(|master| {
            lines.iter().any(|fields| {
                flags(fields, "slave") && !flags(fields, "fail") && fields[3] == *master
            })
        })
}

async fn ask_topology(url: &str, timeout: Duration) -> redis::RedisResult<ClusterTopology> {
    let (client, mut conn) = connect_plain(url, timeout).await?;
    topology(&mut conn, &host_of(&client)).await
}

/// A connection to the node of `url`, for a question or two.
async fn connect_plain(
    url: &str,
    timeout: Duration,
) -> redis::RedisResult<(Client, MultiplexedConnection)> {
    let client = Client::open(url)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    Ok((client, conn))
}

fn host_of(client: &Client) -> String {
    match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(host, _) | redis::ConnectionAddr::TcpTls { host, .. } => {
            host.clone()
        }
        _ => String::new(),
    }
}

/// `CLUSTER SLOTS` on `conn` (a node reached at `host`), read as a topology.
async fn topology(
    conn: &mut impl redis::aio::ConnectionLike,
    host: &str,
) -> redis::RedisResult<ClusterTopology> {
    let slots: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let malformed =
        || redis::RedisError::from((redis::ErrorKind::Parse, "unexpected CLUSTER SLOTS reply"));
    let mut masters = BTreeSet::new();
    for range in slots {
        let Value::Array(range) = range else {
            return Err(malformed());
        };
        let Some(Value::Array(master)) = range.get(2) else {
            return Err(malformed());
        };
        let node_host: String = match master.first() {
            Some(value) => redis::from_redis_value_ref(value)?,
            None => return Err(malformed()),
        };
        let port: u16 = match master.get(1) {
            Some(value) => redis::from_redis_value_ref(value)?,
            None => return Err(malformed()),
        };
        // An empty or unknown host means "the address you reached me at".
        let node_host = if node_host.is_empty() || node_host == "?" {
            host.to_owned()
        } else {
            node_host
        };
        masters.insert((node_host, port));
    }
    if masters.is_empty() {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
            "the cluster serves no slot",
        )));
    }
    Ok(ClusterTopology { masters })
}

/// Keeps `cache` in step with Redis until the cache is dropped: connects to the node
/// (every master of a cluster), subscribes to changes under `prefixes`, checks every
/// connection (and on a cluster, that its masters are still the ones tracked), and
/// starts over when any of that fails.
pub fn spawn_tracking(
    source: Tracked,
    prefixes: &'static [&'static str],
    cache: &Arc<IntrospectCache>,
    timeout: Duration,
) {
    let tracking = Tracking {
        source,
        prefixes,
        timeout,
    };
    pair_common::cache::supervise(cache, tracking, Rhythm::KEEPALIVE);
}

/// Redis as the Introspect cache's change source.
struct Tracking {
    source: Tracked,
    prefixes: &'static [&'static str],
    timeout: Duration,
}

/// The tracking connections of one run, each with the host it was reached at.
struct Links {
    links: Vec<(MultiplexedConnection, String)>,
    /// On a cluster, the masters tracked.
    masters: Option<Arc<BTreeSet<(String, u16)>>>,
}

impl ChangeSource<Introspected> for Tracking {
    type Link = Links;
    const CACHE: &'static str = "Introspect cache";
    const SOURCE: &'static str = "every tracking connection to Redis";

    async fn connect(&mut self, cache: &Weak<IntrospectCache>) -> Result<Links, Failure> {
        let (clients, masters) = match &self.source {
            Tracked::Node(client) => (vec![client.clone()], None),
            Tracked::Cluster(urls) => {
                let topology = cluster_masters(urls, self.timeout)
                    .await
                    .map_err(|error| Failure::Lost(error.into()))?;
                let seed = urls.first().map(String::as_str).unwrap_or_default();
                let clients = topology
                    .masters
                    .iter()
                    .map(|(host, port)| node_client(seed, host, *port))
                    .collect::<redis::RedisResult<Vec<_>>>()
                    .map_err(|error| Failure::Refused(error.into()))?;
                (clients, Some(Arc::new(topology.masters)))
            }
        };
        let mut links = Vec::with_capacity(clients.len());
        for client in &clients {
            let link = open_link(client, self.prefixes, cache, self.timeout).await?;
            links.push((link, host_of(client)));
        }
        Ok(Links { links, masters })
    }

    /// Every link at once: each is still a master, and the cluster's masters still the
    /// ones tracked (a write to a master this process does not track would be missed).
    async fn check(&mut self, links: &mut Links) -> anyhow::Result<Option<Change<Uuid>>> {
        let mut checks = tokio::task::JoinSet::new();
        for (link, host) in &links.links {
            let (mut link, host, masters) = (link.clone(), host.clone(), links.masters.clone());
            checks.spawn(async move {
                match masters {
                    Some(masters) => {
                        let now = topology(&mut link, &host).await?;
                        anyhow::ensure!(now.masters == *masters, "the cluster's masters changed");
                    }
                    None => redis::cmd("PING")
                        .query_async::<String>(&mut link)
                        .await
                        .map(drop)?,
                }
                Ok(())
            });
        }
        while let Some(checked) = checks.join_next().await {
            checked??;
        }
        Ok(None)
    }
}

/// A refusal by the server (no RESP3, no CLIENT TRACKING) will not go away by retrying.
fn failure(error: redis::RedisError) -> Failure {
    match error.kind() {
        redis::ErrorKind::Server(_) | redis::ErrorKind::RESP3NotSupported => {
            Failure::Refused(error.into())
        }
        _ => Failure::Lost(error.into()),
    }
}

/// One tracking connection to `client`'s node, confirmed.
async fn open_link(
    client: &Client,
    prefixes: &[&str],
    cache: &Weak<IntrospectCache>,
    timeout: Duration,
) -> Result<MultiplexedConnection, Failure> {
    let pushes = cache.clone();
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(Rhythm::KEEPALIVE.deadline.max(timeout)))
        .set_push_sender(move |push: PushInfo| {
            if let Some(cache) = pushes.upgrade() {
                on_push(&cache, &push);
            }
            Ok::<(), std::convert::Infallible>(())
        });
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(failure)?;
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(CONNECTION_NAME)
        .exec_async(&mut conn)
        .await
        .map_err(|error| Failure::Lost(error.into()))?;
    let mut tracking = redis::cmd("CLIENT");
    tracking.arg("TRACKING").arg("ON").arg("BCAST");
    for prefix in prefixes {
        tracking.arg("PREFIX").arg(*prefix);
    }
    tracking.exec_async(&mut conn).await.map_err(failure)?;
    Ok(conn)
}

/// The RESP3 client of a cluster node, with the settings (credentials, TLS) of `seed`.
fn node_client(seed: &str, host: &str, port: u16) -> redis::RedisResult<Client> {
    let info = seed.into_connection_info()?;
    let addr = match info.addr() {
        redis::ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => redis::ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => redis::ConnectionAddr::Tcp(host.to_owned(), port),
    };
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    Client::open(info.set_addr(addr).set_redis_settings(settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(user: Uuid) -> Claims {
        Claims {
            iss: "auth-service".into(),
            sub: user,
            sid: Uuid::now_v7(),
            jti: Uuid::now_v7(),
            twin: Uuid::now_v7(),
            token_use: crate::tokens::TokenUse::Access,
            iat: 0,
            exp: u64::MAX,
        }
    }

    fn live() -> IntrospectCache {
        let cache = introspect_cache();
        cache.set_live(true);
        cache
    }

    fn remember(cache: &IntrospectCache, token: &Claims) {
        let Err(Some(ticket)) = cache.answer(token) else {
            panic!("a miss")
        };
        cache.remember(ticket, token, "x");
    }

    #[test]
    fn an_answer_is_found_only_for_the_very_claims_it_was_kept_for() {
        let cache = live();
        let token = claims(Uuid::now_v7());
        let Err(Some(ticket)) = cache.answer(&token) else {
            panic!("a live cache gives a ticket on a miss")
        };
        cache.remember(ticket, &token, "ann");
        assert_eq!(cache.answer(&token), Ok("ann".to_owned()));
        // Another token with the same id but other claims is not this answer.
        for forged in [
            Claims {
                sid: Uuid::now_v7(),
                ..token.clone()
            },
            Claims {
                twin: Uuid::now_v7(),
                ..token.clone()
            },
            Claims {
                sub: Uuid::now_v7(),
                ..token.clone()
            },
        ] {
            assert!(cache.answer(&forged).is_err());
        }
        // Forgetting the user (a change this process made) forgets the answer.
        cache.drop_owner(&token.sub);
        assert!(cache.answer(&token).is_err());
    }

    fn user(id: Uuid) -> Arc<User> {
        let now = chrono::Utc::now();
        Arc::new(User {
            id,
            username: "ann".into(),
            email: "ann@example.com".into(),
            create_time: now,
            update_time: now,
        })
    }

    #[test]
    fn a_profile_is_remembered_only_with_an_active_answer_until_its_user_changes_or_it_ages() {
        let cache = live();
        let token = claims(Uuid::now_v7());
        // No answer remembered: the profile is not either, whatever the ticket.
        assert!(matches!(cache.profile(&token), Err(None)));
        let ticket = cache.ticket().expect("a live cache gives tickets");
        cache.remember_profile(ticket, &token, user(token.sub));
        assert!(cache.answer(&token).is_err(), "a profile made up an answer");

        remember(&cache, &token);
        let Err(Some(ticket)) = cache.profile(&token) else {
            panic!("an answer without a profile gives a ticket")
        };
        cache.remember_profile(ticket, &token, user(token.sub));
        assert_eq!(cache.profile(&token).map(|u| u.id), Ok(token.sub));
        // Another session of the same user has an answer of its own.
        let other = Claims {
            sid: Uuid::now_v7(),
            ..token.clone()
        };
        assert!(matches!(cache.profile(&other), Err(None)));

        // A profile read before a change is not added after it.
        remember(&cache, &other);
        let Err(Some(ticket)) = cache.profile(&other) else {
            panic!("a ticket")
        };
        cache.drop_owner(&Uuid::now_v7());
        cache.remember_profile(ticket, &other, user(other.sub));
        assert!(cache.profile(&other).is_err(), "kept across a drop");

        // Aged past PROFILE_MAX_AGE: read again, and the answer stays.
        let aged = Instant::now()
            .checked_sub(PROFILE_MAX_AGE)
            .expect("the machine has been up for 5 s");
        let ticket = cache.ticket().expect("a ticket");
        assert!(cache.amend(ticket, &Access::of(&token), |answer| {
            answer.profile.as_mut().expect("remembered").1 = aged;
        }));
        assert!(matches!(cache.profile(&token), Err(Some(_))));
        assert_eq!(cache.answer(&token), Ok("x".to_owned()));

        // A change of the user drops answer and profile alike.
        let ticket = cache.ticket().expect("a ticket");
        cache.remember_profile(ticket, &token, user(token.sub));
        assert!(cache.profile(&token).is_ok());
        cache.drop_owner(&token.sub);
        assert!(matches!(cache.profile(&token), Err(None)));
    }

    #[test]
    fn a_pushed_key_drops_its_users_answers_and_a_null_push_drops_all() {
        let cache = live();
        let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let tokens = [claims(ann), claims(ann), claims(bob)];
        for token in &tokens {
            remember(&cache, token);
        }
        assert_eq!(cache.len(), 3);
        let key = Value::BulkString(format!("auth:blocked:{{{ann}}}:{}", Uuid::now_v7()).into());
        on_push(
            &cache,
            &PushInfo {
                kind: PushKind::Invalidate,
                data: vec![Value::Array(vec![key])],
            },
        );
        assert_eq!(cache.len(), 1);
        assert!(cache.answer(&tokens[2]).is_ok(), "bob's answer stays");
        on_push(
            &cache,
            &PushInfo {
                kind: PushKind::Invalidate,
                data: vec![Value::Nil],
            },
        );
        assert_eq!(cache.len(), 0);
        assert!(cache.is_live(), "a flush keeps the connection");
        // A key that names no user drops everything too.
        remember(&cache, &tokens[2]);
        on_push(
            &cache,
            &PushInfo {
                kind: PushKind::Invalidate,
                data: vec![Value::Array(vec![Value::BulkString(
                    b"auth:refresh:odd".to_vec(),
                )])],
            },
        );
        assert_eq!(cache.len(), 0);
        on_push(
            &cache,
            &PushInfo {
                kind: PushKind::Disconnection,
                data: vec![],
            },
        );
        assert!(!cache.is_live());
    }

    #[test]
    fn a_full_cache_drops_expired_answers_before_live_ones() {
        let cache = live();
        let user = Uuid::now_v7();
        let live_tokens: Vec<Claims> = (0..CAPACITY / 4).map(|_| claims(user)).collect();
        for token in &live_tokens {
            remember(&cache, token);
        }
        for _ in 0..CAPACITY {
            remember(
                &cache,
                &Claims {
                    exp: 1,
                    ..claims(user)
                },
            );
        }
        assert!(cache.len() <= CAPACITY, "{}", cache.len());
        let kept = live_tokens
            .iter()
            .filter(|token| cache.answer(token).is_ok())
            .count();
        assert_eq!(
            kept,
            live_tokens.len(),
            "every live answer outlived the expired"
        );
    }

    #[test]
    fn a_cluster_has_replicas_only_if_every_master_with_slots_has_a_live_one() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922
a3 127.0.0.1:7003@17003 master - 0 0 3 connected 10923-16383
r1 127.0.0.1:7004@17004 slave a1 0 0 1 connected
r2 127.0.0.1:7005@17005 slave a2 0 0 2 connected
r3 127.0.0.1:7006@17006 slave,fail a3 0 0 3 connected
";
        assert!(
            !every_master_has_a_replica(nodes),
            "a3's only replica has failed"
        );
        let healed = nodes.replace("slave,fail a3", "slave a3");
        assert!(every_master_has_a_replica(&healed));
        // A master without slots (a failed one after its failover) needs no replica.
        let failed_over =
            format!("{healed}old 127.0.0.1:7007@17007 master,fail - 0 0 4 connected\n");
        assert!(every_master_has_a_replica(&failed_over));
        assert!(!every_master_has_a_replica(""));
    }
}
