//! Introspect answers kept in process, and kept true by Redis (server-assisted
//! client-side caching, `CLIENT TRACKING … BCAST`).
//!
//! Introspect of a live token costs two Redis requests; on a busy pair that is most of
//! its cost, and the same tokens are checked again and again. A dedicated RESP3
//! connection asks Redis to push the name of every key under the refresh and blocklist
//! prefixes that changes (written, deleted, expired or evicted), and each pushed name
//! drops what is remembered of that key's user. An answer is remembered only while that
//! connection is confirmed, and only if nothing was dropped between the moment its Redis
//! reads were sent and the moment it is stored, so an answer read before a change can
//! never outlive the change's push.
//!
//! What a caller sees:
//! - On the instance that made a change (Logout, Refresh, LogoutAll, UpdateProfile…)
//!   the change is visible at once: the store forgets the user before it returns.
//! - On another instance sharing the Redis, it is visible once Redis's push has been
//!   read. Redis writes the push before it answers the change, so on one host this is
//!   well under a millisecond.
//! - If the tracking connection drops, or any Redis read fails, everything remembered is
//!   dropped and nothing is remembered until the connection is back. A frozen Redis
//!   (connection open, nothing answered) is found by a PING every 250 ms with a 500 ms
//!   deadline.
//! - On a Redis Cluster there is one tracking connection per master (each master pushes
//!   the changes of its own keys). Answers are kept only while every one is confirmed;
//!   every 250 ms each is asked `CLUSTER SLOTS` (500 ms deadline), and when the masters
//!   are no longer the ones tracked (a failover, a resharding) everything is dropped and
//!   tracking starts over on the new masters.
//! - Only active answers are remembered; every inactive one asks Redis.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::Duration,
};

use redis::{
    AsyncConnectionConfig, Client, IntoConnectionInfo as _, ProtocolVersion, PushInfo, PushKind,
    Value, aio::MultiplexedConnection,
};
use uuid::Uuid;

use crate::tokens::Claims;

/// At most this many answers are kept (≈ 100 bytes each); past it the expired ones go,
/// then half of the rest.
const CAPACITY: usize = 65_536;
/// How often the tracking connection is checked, and how long a check may take.
const KEEPALIVE: Duration = Duration::from_millis(250);
const KEEPALIVE_DEADLINE: Duration = Duration::from_millis(500);
/// Reconnect backoff: doubles from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));
/// The tracking connection's name in `CLIENT LIST`.
pub const CONNECTION_NAME: &str = "auth-introspect-tracking";

/// One remembered active answer, under its access token's id.
struct Entry {
    user: Uuid,
    session: Uuid,
    twin: Uuid,
    username: String,
    expires: u64,
}

#[derive(Default)]
struct State {
    /// True while the tracking connection is confirmed: only then are answers kept or
    /// given.
    live: bool,
    /// Bumped by every drop, so that an answer read before it is not stored after it.
    generation: u64,
    entries: HashMap<Uuid, Entry>,
    by_user: HashMap<Uuid, Vec<Uuid>>,
}

impl State {
    fn drop_all(&mut self) {
        self.generation += 1;
        self.entries.clear();
        self.by_user.clear();
    }

    fn drop_user(&mut self, user: Uuid) {
        self.generation += 1;
        for jti in self.by_user.remove(&user).unwrap_or_default() {
            self.entries.remove(&jti);
        }
    }
}

/// The remembered answers; shared by the store and its tracking task.
#[derive(Default)]
pub struct IntrospectCache {
    state: Mutex<State>,
}

/// What a lookup that missed must hand back to `remember`: the generation it saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

impl IntrospectCache {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The remembered username if `access` was found active and nothing of its user
    /// has changed since; otherwise a ticket for `remember` (`None`: do not remember).
    pub fn lookup(&self, access: &Claims) -> Result<String, Option<Ticket>> {
        let state = self.state();
        if !state.live {
            return Err(None);
        }
        match state.entries.get(&access.jti) {
            Some(entry)
                if entry.user == access.sub
                    && entry.session == access.sid
                    && entry.twin == access.twin =>
            {
                Ok(entry.username.clone())
            }
            _ => Err(Some(Ticket(state.generation))),
        }
    }

    /// Remembers that `access` is active, unless anything was dropped since `ticket`.
    pub fn remember(&self, ticket: Ticket, access: &Claims, username: &str) {
        let mut state = self.state();
        if !state.live || state.generation != ticket.0 {
            return;
        }
        if state.entries.len() >= CAPACITY {
            let (now, _) = crate::tokens::now();
            state.entries.retain(|_, entry| entry.expires > now);
            if state.entries.len() >= CAPACITY / 2 {
                // Every other entry in the map's (random) order: half of what is kept,
                // not all of it, so hot users' answers mostly survive a wave of cold ones.
                let mut keep = false;
                state.entries.retain(|_, _| {
                    keep = !keep;
                    keep
                });
            }
            let State {
                entries, by_user, ..
            } = &mut *state;
            by_user.retain(|_, jtis| {
                jtis.retain(|jti| entries.contains_key(jti));
                !jtis.is_empty()
            });
        }
        state.entries.insert(
            access.jti,
            Entry {
                user: access.sub,
                session: access.sid,
                twin: access.twin,
                username: username.to_owned(),
                expires: access.exp,
            },
        );
        state
            .by_user
            .entry(access.sub)
            .or_default()
            .push(access.jti);
    }

    /// Forgets every answer about `user` (after this process changed its sessions).
    pub fn forget_user(&self, user: Uuid) {
        self.state().drop_user(user);
    }

    /// Forgets everything, keeping the connection state (after a failed Redis read).
    pub fn forget_all(&self) {
        self.state().drop_all();
    }

    /// How many answers are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().entries.len()
    }

    /// Whether answers are being remembered (the tracking connection is confirmed).
    pub fn is_live(&self) -> bool {
        self.state().live
    }

    fn set_live(&self, live: bool) {
        let mut state = self.state();
        state.drop_all();
        state.live = live;
    }

    /// One push from Redis: a list of changed keys, or null after FLUSHDB/FLUSHALL.
    fn invalidate(&self, keys: Option<&[Value]>) {
        let mut state = self.state();
        let Some(keys) = keys else {
            state.drop_all();
            return;
        };
        for key in keys {
            match user_of_key(key) {
                Some(user) => state.drop_user(user),
                None => state.drop_all(),
            }
        }
    }

    fn on_push(&self, push: &PushInfo) {
        match push.kind {
            PushKind::Invalidate => match push.data.first() {
                Some(Value::Array(keys)) => self.invalidate(Some(keys)),
                _ => self.invalidate(None),
            },
            PushKind::Disconnection => self.set_live(false),
            _ => {}
        }
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
    let cache = Arc::downgrade(cache);
    tokio::spawn(async move {
        let mut backoff = BACKOFF.0;
        let mut told = false;
        loop {
            match track(&source, prefixes, &cache, timeout).await {
                Ok(()) => return,
                Err(Stop::Unsupported(error)) => {
                    tracing::warn!(
                        error = %error,
                        "Redis refused CLIENT TRACKING: Introspect answers are not cached"
                    );
                    return;
                }
                Err(Stop::Lost(error)) => {
                    let Some(cache) = cache.upgrade() else { return };
                    if cache.is_live() {
                        // After a confirmed run, start over quickly (a failover).
                        backoff = BACKOFF.0;
                    }
                    if cache.is_live() || !told {
                        tracing::warn!(
                            error = %error,
                            "Introspect cache off until every tracking connection to Redis is back"
                        );
                        told = true;
                    }
                    cache.set_live(false);
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF.1);
            if cache.strong_count() == 0 {
                return;
            }
        }
    });
}

enum Stop {
    Lost(redis::RedisError),
    Unsupported(redis::RedisError),
}

/// A refusal by the server (no RESP3, no CLIENT TRACKING) will not go away by retrying.
fn stop(error: redis::RedisError) -> Stop {
    match error.kind() {
        redis::ErrorKind::Server(_) | redis::ErrorKind::RESP3NotSupported => {
            Stop::Unsupported(error)
        }
        _ => Stop::Lost(error),
    }
}

fn lost(why: &'static str) -> Stop {
    Stop::Lost(redis::RedisError::from((redis::ErrorKind::Io, why)))
}

/// One tracking connection to `client`'s node, confirmed.
async fn open_link(
    client: &Client,
    prefixes: &[&str],
    cache: &Weak<IntrospectCache>,
    timeout: Duration,
) -> Result<MultiplexedConnection, Stop> {
    let pushes = cache.clone();
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(KEEPALIVE_DEADLINE.max(timeout)))
        .set_push_sender(move |push: PushInfo| {
            if let Some(cache) = pushes.upgrade() {
                cache.on_push(&push);
            }
            Ok::<(), std::convert::Infallible>(())
        });
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(stop)?;
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(CONNECTION_NAME)
        .exec_async(&mut conn)
        .await
        .map_err(Stop::Lost)?;
    let mut tracking = redis::cmd("CLIENT");
    tracking.arg("TRACKING").arg("ON").arg("BCAST");
    for prefix in prefixes {
        tracking.arg("PREFIX").arg(*prefix);
    }
    tracking.exec_async(&mut conn).await.map_err(stop)?;
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

/// The tracking connections of one run, from connect to failure; `Ok` once the cache is
/// gone.
async fn track(
    source: &Tracked,
    prefixes: &[&str],
    cache: &Weak<IntrospectCache>,
    timeout: Duration,
) -> Result<(), Stop> {
    let (clients, expected) = match source {
        Tracked::Node(client) => (vec![client.clone()], None),
        Tracked::Cluster(urls) => {
            let topology = cluster_masters(urls, timeout).await.map_err(Stop::Lost)?;
            let seed = urls.first().map(String::as_str).unwrap_or_default();
            let clients = topology
                .masters
                .iter()
                .map(|(host, port)| node_client(seed, host, *port))
                .collect::<redis::RedisResult<Vec<_>>>()
                .map_err(Stop::Unsupported)?;
            (clients, Some(topology.masters))
        }
    };
    let mut links = Vec::with_capacity(clients.len());
    for client in &clients {
        links.push(open_link(client, prefixes, cache, timeout).await?);
    }
    match cache.upgrade() {
        Some(cache) => cache.set_live(true),
        None => return Ok(()),
    }
    tracing::debug!(
        links = links.len(),
        "Introspect cache on: Redis pushes changes of token keys"
    );
    loop {
        tokio::time::sleep(KEEPALIVE).await;
        if cache.strong_count() == 0 {
            return Ok(());
        }
        for (link, client) in links.iter_mut().zip(&clients) {
            let check = async {
                match &expected {
                    // Still a master, and the cluster's masters still the ones tracked:
                    // a write to a master this process does not track would be missed.
                    Some(expected) => {
                        let now = topology(link, &host_of(client)).await.map_err(Stop::Lost)?;
                        if &now.masters != expected {
                            return Err(lost("the cluster's masters changed"));
                        }
                        Ok(())
                    }
                    None => redis::cmd("PING")
                        .query_async::<String>(link)
                        .await
                        .map(drop)
                        .map_err(Stop::Lost),
                }
            };
            match tokio::time::timeout(KEEPALIVE_DEADLINE, check).await {
                Ok(Ok(())) => {}
                Ok(Err(stop)) => return Err(stop),
                Err(_) => return Err(lost("no answer on a tracking connection")),
            }
        }
    }
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
        let cache = IntrospectCache::default();
        cache.set_live(true);
        cache
    }

    #[test]
    fn an_answer_is_kept_only_while_live_and_only_if_nothing_was_dropped_since_its_ticket() {
        let cache = IntrospectCache::default();
        let token = claims(Uuid::now_v7());
        assert!(
            matches!(cache.lookup(&token), Err(None)),
            "not live: no ticket"
        );

        cache.set_live(true);
        let Err(Some(ticket)) = cache.lookup(&token) else {
            panic!("a live cache gives a ticket on a miss")
        };
        // A change to an unrelated user between the read and the store: not kept.
        cache.forget_user(Uuid::now_v7());
        cache.remember(ticket, &token, "ann");
        assert_eq!(cache.len(), 0);

        let Err(Some(ticket)) = cache.lookup(&token) else {
            panic!("still a miss")
        };
        cache.remember(ticket, &token, "ann");
        assert_eq!(cache.lookup(&token), Ok("ann".to_owned()));

        // Another token with the same id but other claims is not this answer.
        let forged = Claims {
            sid: Uuid::now_v7(),
            ..token.clone()
        };
        assert!(cache.lookup(&forged).is_err());

        cache.set_live(false);
        assert!(matches!(cache.lookup(&token), Err(None)));
        assert_eq!(cache.len(), 0, "losing the connection drops everything");
    }

    #[test]
    fn a_pushed_key_drops_its_users_answers_and_a_null_push_drops_all() {
        let cache = live();
        let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let tokens = [claims(ann), claims(ann), claims(bob)];
        for token in &tokens {
            let Err(Some(ticket)) = cache.lookup(token) else {
                panic!("a miss")
            };
            cache.remember(ticket, token, "x");
        }
        assert_eq!(cache.len(), 3);
        let key = Value::BulkString(format!("auth:blocked:{{{ann}}}:{}", Uuid::now_v7()).into());
        cache.on_push(&PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Array(vec![key])],
        });
        assert_eq!(cache.len(), 1);
        assert!(cache.lookup(&tokens[2]).is_ok(), "bob's answer stays");
        cache.on_push(&PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Nil],
        });
        assert_eq!(cache.len(), 0);
        assert!(cache.is_live(), "a flush keeps the connection");
        // A key that names no user drops everything too.
        let Err(Some(ticket)) = cache.lookup(&tokens[2]) else {
            panic!("a miss")
        };
        cache.remember(ticket, &tokens[2], "x");
        cache.on_push(&PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Array(vec![Value::BulkString(
                b"auth:refresh:odd".to_vec(),
            )])],
        });
        assert_eq!(cache.len(), 0);
        cache.on_push(&PushInfo {
            kind: PushKind::Disconnection,
            data: vec![],
        });
        assert!(!cache.is_live());
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

    #[test]
    fn a_full_cache_makes_room() {
        let cache = live();
        let user = Uuid::now_v7();
        for _ in 0..CAPACITY + 10 {
            let token = claims(user);
            let Err(Some(ticket)) = cache.lookup(&token) else {
                panic!("a miss")
            };
            cache.remember(ticket, &token, "x");
        }
        assert!(cache.len() <= CAPACITY, "{}", cache.len());
        assert!(
            cache.len() >= CAPACITY / 2,
            "making room keeps half: {}",
            cache.len()
        );
    }
}
