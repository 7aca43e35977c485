//! `TokenStore` on Redis: one node (two logical databases), or a Redis Cluster (one
//! keyspace, the same keys). docs/ARCHITECTURE.md, "Tokens and sessions", has the model.
//!
//! Session keys (on one node, database AUTH_REDIS_REFRESH_DB, default 1), all under the
//! user's hash tag `{<user_id>}`, so one user's keys share one Redis Cluster slot:
//! - `auth:sessions:{uid}`: hash, one field per session: session id (16 bytes) -> its
//!   current refresh token id, access twin id and expiries, creation time and user agent,
//!   packed (`record`); and the field `name`, the user's current name (for Introspect, so
//!   it needs one command). It is the per-user index of the sessions and holds their
//!   refresh tokens: one key per user, small enough for Redis's flat listpack encoding
//!   (BENCHMARKS.md, "Redis memory per unit of state"). A session lives until its
//!   refresh token's `exp`; the key's TTL is its newest session's life; a session that
//!   expired is never answered as live, and is dropped by the revocation or rotation
//!   that meets it, or by a login once the user's logins have grown the hash (at most
//!   twice its live sessions, or 8 fields: `scripts::OPEN`). The field `sweep` holds
//!   that threshold when it is above 8.
//! - `auth:retry:{uid}:<old_refresh_jti>`: hash `sid next access refresh`, the pair a
//!   rotation issued in place of that refresh token, answered again if it is presented
//!   within AUTH_REFRESH_RETRY_WINDOW; TTL = the window.
//!
//! Blocklist keys (on one node, database AUTH_REDIS_BLOCKLIST_DB, default 2):
//! - `auth:blocked:{uid}:<access_jti>`: TTL = the access token's remaining life.
//! - `auth:throttle:{<key>}:failures` and `…:lock`: failed logins of a username or a
//!   client address, and the wait they impose; TTL = the failure window / the wait.
//! - `auth:limit:{a:<address>}:hashes` and `…:registrations`: what one client address
//!   spent of its budgets in front of password hashing (`admission`); TTL = the window.
//!
//! Every key has a TTL and names its owner in its hash tag; no request writes a key
//! shared by every user. Every change of a user's sessions is one Lua script (atomic)
//! that declares every key it touches. The session key is the authority: an access
//! token is active only if it is the twin named by a live session, so a lost blocklist
//! write cannot revive a token.
//!
//! This layout replaced (late November 2026) one key per refresh token plus a per-user
//! index; sessions stored in that layout are not read: after the upgrade, users sign in
//! again.
//!
//! Durability (AUTH_REDIS_MIN_REPLICAS): a revocation or rotation is sent on a
//! connection of its own, followed by `WAIT` in the same pipeline, and is acknowledged
//! only once that many replicas have it (`Unavailable` otherwise). Its own connections,
//! because Redis blocks a client in `WAIT`: reads never queue behind it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use async_trait::async_trait;
use pair_common::cache::Ticket;
use redis::{
    AsyncCommands as _, Client, Cmd, IntoConnectionInfo as _, Pipeline, ProtocolVersion,
    RedisConnectionInfo, RedisFuture, Script, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
};
use uuid::Uuid;

mod record;
mod scripts;

use record::{NAME_FIELD, Record};
use scripts::{COMMON, GUARD, OPEN, RENAME, REVOKE, REVOKE_ALL, ROTATE, ScriptCall, changed};

use super::{
    sessions::{NewSession, PairRotation, Rotation, SessionInfo, TokenStore, login_delay},
    tracked::{
        IntrospectAnswers as _, IntrospectCache, Tracked as TrackedSource, introspect_cache,
        spawn_tracking,
    },
};
use crate::{
    admission::Budget,
    domain::User,
    error::StoreError,
    tokens::{Claims, remaining_ms},
};

/// Where the tokens live.
#[derive(Debug, Clone, Copy)]
pub enum RedisTarget<'a> {
    /// One node (AUTH_REDIS_URL), its two logical databases.
    Node {
        url: &'a str,
        refresh_db: u8,
        blocklist_db: u8,
    },
    /// Some nodes of a Redis Cluster (AUTH_REDIS_CLUSTER_URLS); the client finds the rest.
    Cluster { urls: &'a [String] },
}

/// How the store reaches Redis, after `connect`.
#[derive(Debug, Clone, Copy)]
pub struct RedisOptions {
    /// Life of a refresh token (the TTL of the keys of a session).
    pub refresh_ttl: Duration,
    /// Deadline of every command; also how long `WAIT` waits for replicas.
    pub timeout: Duration,
    /// Keep Introspect answers in process (`tracked`).
    pub cache_answers: bool,
    /// AUTH_REDIS_MIN_REPLICAS; `None`: 1 on a cluster whose every shard has a replica,
    /// 0 otherwise.
    pub min_replicas: Option<u32>,
}

/// A connection to one node or to a cluster; cheap to clone (both multiplex).
#[derive(Clone)]
enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// How many connections carry durable writes (each blocks in `WAIT` in turn).
const DURABLE_CONNECTIONS: usize = 4;

/// The connections that carry revocations and rotations when replicas must confirm
/// them, and how many must.
struct Durable {
    conns: Vec<Conn>,
    next: AtomicUsize,
    replicas: u32,
    timeout: Duration,
}

impl Durable {
    fn conn(&self) -> Conn {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }
}

/// The connections (one per logical database on one node, the same one on a cluster)
/// and the scripts.
#[derive(Clone)]
pub struct RedisTokenStore {
    refresh: Conn,
    blocklist: Conn,
    durable: Option<Arc<Durable>>,
    refresh_ttl: Duration,
    /// Each command's response timeout: the deadline scripts are given (`GUARD`).
    timeout: Duration,
    open: Script,
    rotate: Script,
    revoke: Script,
    revoke_all: Script,
    rename: Script,
    /// Introspect answers kept true by Redis pushes; `None` when turned off.
    cache: Option<Arc<IntrospectCache>>,
}

/// The prefixes of every key an Introspect answer depends on.
const TRACKED_PREFIXES: &[&str] = &["auth:sessions:", "auth:blocked:"];

fn sessions_key(user: Uuid) -> String {
    format!("auth:sessions:{{{user}}}")
}
fn retry_key(user: Uuid, old_refresh_jti: Uuid) -> String {
    format!("auth:retry:{{{user}}}:{old_refresh_jti}")
}
fn blocked_key(user: Uuid, access_jti: Uuid) -> String {
    format!("auth:blocked:{{{user}}}:{access_jti}")
}
fn failures_key(key: &str) -> String {
    format!("auth:throttle:{{{key}}}:failures")
}
fn lock_key(key: &str) -> String {
    format!("auth:throttle:{{{key}}}:lock")
}
fn allowance_key(subject: &str, budget: &str) -> String {
    format!("auth:limit:{{{subject}}}:{budget}")
}

fn classify(error: redis::RedisError) -> StoreError {
    use redis::{ErrorKind, ServerErrorKind};
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_cluster_error()
        || matches!(
            error.kind(),
            ErrorKind::Io
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(ServerErrorKind::MasterDown | ServerErrorKind::ReadOnly)
        )
    {
        StoreError::Unavailable(error.into())
    } else {
        StoreError::Other(error.into())
    }
}

/// Connection settings of `url`, changed by `adjust`.
fn connection_info(
    url: &str,
    setting: &str,
    adjust: impl FnOnce(RedisConnectionInfo) -> RedisConnectionInfo,
) -> anyhow::Result<redis::ConnectionInfo> {
    let info = url
        .into_connection_info()
        .with_context(|| format!("{setting} is not a valid Redis URL"))?;
    let settings = adjust(info.redis_settings().clone());
    Ok(info.set_redis_settings(settings))
}

/// A client for `url`, its connection settings changed by `adjust`.
fn client(
    url: &str,
    adjust: impl FnOnce(RedisConnectionInfo) -> RedisConnectionInfo,
) -> anyhow::Result<Client> {
    Client::open(connection_info(url, "AUTH_REDIS_URL", adjust)?)
        .context("AUTH_REDIS_URL is not a valid Redis URL")
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A cluster client that gives up on a command within `timeout` (so a failover is an
/// error for as long as it lasts, never a hang) and follows the topology as it changes.
fn cluster_client(urls: &[String], timeout: Duration) -> anyhow::Result<ClusterClient> {
    let nodes = urls
        .iter()
        .map(|url| connection_info(url, "AUTH_REDIS_CLUSTER_URLS", |settings| settings))
        .collect::<anyhow::Result<Vec<_>>>()?;
    ClusterClientBuilder::new(nodes)
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .overall_response_timeout(Some(timeout))
        .retries(3)
        .min_retry_wait(50)
        .max_retry_wait(500)
        .build()
        .context("AUTH_REDIS_CLUSTER_URLS: cannot build a cluster client")
}

impl RedisTokenStore {
    /// Connects to `target`. Reconnects back off at most 1 s and every command has
    /// `options.timeout`, so an outage is an error, never a hang. With
    /// `options.cache_answers`, tracking connections keep Introspect answers in process
    /// (see `tracked`).
    pub async fn connect(target: RedisTarget<'_>, options: RedisOptions) -> anyhow::Result<Self> {
        let timeout = options.timeout;
        let (refresh, blocklist, tracking, default_replicas, durable_conns) = match target {
            RedisTarget::Node {
                url,
                refresh_db,
                blocklist_db,
            } => {
                let manager = |db: u8, response_timeout: Duration| async move {
                    let client = client(url, |settings| settings.set_db(i64::from(db)))?;
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(response_timeout))
                        .set_max_delay(Duration::from_secs(1))
                        .set_number_of_retries(2);
                    ConnectionManager::new_with_config(client, config)
                        .await
                        .map(Conn::Node)
                        .with_context(|| {
                            format!("AUTH_REDIS_URL: cannot connect to Redis (database {db})")
                        })
                };
                let refresh = manager(refresh_db, timeout).await?;
                let blocklist = manager(blocklist_db, timeout).await?;
                let mut durable = Vec::new();
                if options.min_replicas.unwrap_or(0) > 0 {
                    for _ in 0..DURABLE_CONNECTIONS {
                        // The script and then WAIT, each with the full timeout.
                        durable.push(manager(refresh_db, timeout * 2).await?);
                    }
                }
                // RESP3, so that Redis's pushes share the connection.
                let tracking = client(url, |settings| {
                    settings.set_protocol(ProtocolVersion::RESP3)
                })?;
                (
                    refresh,
                    blocklist,
                    TrackedSource::Node(tracking),
                    0,
                    durable,
                )
            }
            RedisTarget::Cluster { urls } => {
                let has_replicas = super::tracked::cluster_has_replicas(urls, timeout)
                    .await
                    .context("AUTH_REDIS_CLUSTER_URLS: no node answered CLUSTER SLOTS")?;
                let conn = Conn::Cluster(
                    cluster_client(urls, timeout)?
                        .get_async_connection()
                        .await
                        .context("AUTH_REDIS_CLUSTER_URLS: cannot connect to the cluster")?,
                );
                let mut durable = Vec::new();
                if options.min_replicas.unwrap_or(1) > 0 {
                    for _ in 0..DURABLE_CONNECTIONS {
                        durable.push(Conn::Cluster(
                            cluster_client(urls, timeout * 2)?
                                .get_async_connection()
                                .await
                                .context(
                                    "AUTH_REDIS_CLUSTER_URLS: cannot connect to the cluster",
                                )?,
                        ));
                    }
                }
                let default_replicas = u32::from(has_replicas);
                (
                    conn.clone(),
                    conn,
                    TrackedSource::Cluster(urls.to_vec()),
                    default_replicas,
                    durable,
                )
            }
        };
        let replicas = options.min_replicas.unwrap_or(default_replicas);
        let durable = (replicas > 0 && !durable_conns.is_empty()).then(|| {
            Arc::new(Durable {
                conns: durable_conns,
                next: AtomicUsize::new(0),
                replicas,
                timeout,
            })
        });
        let cache = options.cache_answers.then(|| {
            let cache = Arc::new(introspect_cache());
            spawn_tracking(tracking, TRACKED_PREFIXES, &cache, timeout);
            cache
        });
        Ok(Self {
            refresh,
            blocklist,
            durable,
            refresh_ttl: options.refresh_ttl,
            timeout,
            open: Script::new(&format!("{GUARD}{COMMON}{OPEN}")),
            rotate: Script::new(&format!("{GUARD}{COMMON}{ROTATE}")),
            revoke: Script::new(&format!("{GUARD}{COMMON}{REVOKE}")),
            revoke_all: Script::new(&format!("{GUARD}{COMMON}{REVOKE_ALL}")),
            rename: Script::new(&format!("{GUARD}{RENAME}")),
            cache,
        })
    }

    /// How many replicas must confirm a revocation before it is acknowledged.
    pub fn min_replicas(&self) -> u32 {
        self.durable.as_ref().map_or(0, |durable| durable.replicas)
    }

    /// After a change to `user`'s sessions (whether or not it went through): this
    /// process answers from Redis for that user until its next read.
    fn forget(&self, user: Uuid) {
        if let Some(cache) = &self.cache {
            cache.drop_owner(&user);
        }
    }

    /// Runs `call` and answers its reply. A revocation (`durable`) runs on a durable
    /// connection, followed by `WAIT` in the same pipeline, when replicas must confirm it.
    async fn run(&self, call: &ScriptCall<'_>, durable: bool) -> Result<Vec<String>, StoreError> {
        let durable = self.durable.as_deref().filter(|_| durable);
        let mut conn = match durable {
            Some(durable) => durable.conn(),
            None => self.refresh.clone(),
        };
        let (mut loaded, mut redirected) = (false, 0);
        loop {
            // When this attempt stops waiting for the script (the command's response
            // timeout); the script does nothing if it runs later (`GUARD`). An attempt
            // that is tried again failed without running (NOSCRIPT, MOVED), so each has
            // a deadline of its own.
            let deadline = crate::tokens::now().1 + self.timeout.as_millis();
            let attempt = match durable {
                // One command: the cluster client follows MOVED and ASK by itself.
                None => call
                    .evalsha(deadline)
                    .query_async::<Vec<String>>(&mut conn)
                    .await
                    .map(|reply| (reply, 0)),
                Some(durable) => {
                    let mut pipe = redis::pipe();
                    pipe.add_command(call.evalsha(deadline))
                        .cmd("WAIT")
                        .arg(durable.replicas)
                        .arg(ms(durable.timeout));
                    pipe.query_async::<(Vec<String>, u64)>(&mut conn).await
                }
            };
            match attempt {
                Ok((reply, _)) if reply.first().is_some_and(|r| r == "late") => {
                    return Err(StoreError::Unavailable(anyhow::anyhow!(
                        "Redis ran a write after its deadline, and refused it: its clock \
                         is ahead of ours, or the link held the write up"
                    )));
                }
                Ok((reply, confirmed)) => {
                    if let Some(durable) = durable
                        && confirmed < u64::from(durable.replicas)
                        && changed(&reply)
                    {
                        return Err(StoreError::Unavailable(anyhow::anyhow!(
                            "{confirmed} of {} Redis replicas confirmed the write within {:?}",
                            durable.replicas,
                            durable.timeout
                        )));
                    }
                    return Ok(reply);
                }
                Err(error)
                    if !loaded
                        && error.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    call.script
                        .prepare_invoke()
                        .load_async(&mut conn)
                        .await
                        .map_err(classify)?;
                    loaded = true;
                }
                // A pipeline is not redirected by the cluster client: the script did not
                // run. One command on the same key is, and teaches the client the new
                // owner of the slot; then the pipeline goes there.
                Err(error) if error.is_cluster_error() && redirected < 2 => {
                    redirected += 1;
                    let key = call.keys.first().cloned().unwrap_or_default();
                    redis::cmd("EXISTS")
                        .arg(key)
                        .query_async::<i64>(&mut conn)
                        .await
                        .map_err(classify)?;
                }
                Err(error) => {
                    if durable.is_some() && matches!(conn, Conn::Cluster(_)) {
                        // The cluster client learns a new topology from failed commands,
                        // not from failed pipelines: one command on the key, in the
                        // background, so that the next durable write finds the slot's
                        // new master (after a failover) instead of failing again.
                        let key = call.keys.first().cloned().unwrap_or_default();
                        let mut probe = conn.clone();
                        tokio::spawn(async move {
                            let _ = redis::cmd("EXISTS")
                                .arg(key)
                                .query_async::<i64>(&mut probe)
                                .await;
                        });
                    }
                    return Err(classify(error));
                }
            }
        }
    }

    /// Blocks access tokens `(jti, exp)` until they expire.
    async fn block(&self, user: Uuid, tokens: &[(String, String)]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for (jti, exp) in tokens {
            let (Ok(jti), Ok(exp)) = (jti.parse::<Uuid>(), exp.parse::<u64>()) else {
                continue;
            };
            pipe.cmd("SET")
                .arg(blocked_key(user, jti))
                .arg(1)
                .arg("PX")
                .arg(remaining_ms(exp))
                .ignore();
        }
        if pipe.is_empty() {
            return Ok(());
        }
        pipe.query_async::<()>(&mut self.blocklist.clone())
            .await
            .map_err(classify)
    }
}

fn pairs(flat: Vec<String>) -> Vec<(String, String)> {
    flat.chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect()
}

#[async_trait]
impl TokenStore for RedisTokenStore {
    async fn open_session(&self, session: NewSession<'_>) -> Result<(), StoreError> {
        let (access, refresh) = (session.access, session.refresh);
        let user = refresh.sub;
        let record = Record {
            refresh_jti: refresh.jti,
            access_jti: access.jti,
            access_exp: access.exp,
            refresh_exp: refresh.exp,
            create_time: refresh.iat,
            user_agent: session.user_agent.to_owned(),
        };
        let call = ScriptCall::new(&self.open)
            .key(sessions_key(user))
            .bytes(refresh.sid.as_bytes().as_slice())
            .bytes(record.encode())
            .arg(session.username)
            .arg(ms(self.refresh_ttl))
            .arg(crate::tokens::now().0);
        self.run(&call, false).await.map(drop)
    }

    async fn check_access(&self, access: &Claims) -> Result<Option<String>, StoreError> {
        let ticket = match self.cache.as_deref().map(|cache| cache.answer(access)) {
            Some(Ok(username)) => return Ok(Some(username)),
            Some(Err(ticket)) => ticket,
            None => None,
        };
        // One read: the session. "Not blocked" (DESIGN §4) follows from "the current access
        // token of a live session": every block is of a token that the script before it
        // had just made no session's current one (rotated, revoked), and token ids are
        // never reused, so no blocked token is ever current again. Asking the blocklist
        // too cost a second command on every miss and could not change an answer.
        let mut hmget = redis::cmd("HMGET");
        hmget
            .arg(sessions_key(access.sub))
            .arg(access.sid.as_bytes().as_slice())
            .arg(NAME_FIELD);
        let session = hmget
            .query_async::<(Option<Vec<u8>>, Option<String>)>(&mut self.refresh.clone())
            .await;
        let (record, username) = match session {
            Ok(session) => session,
            Err(error) => {
                // Fail closed: no remembered answer outlives a Redis that stopped answering.
                if let Some(cache) = &self.cache {
                    cache.drop_all();
                }
                return Err(classify(error));
            }
        };
        let (now, _) = crate::tokens::now();
        let active = record.as_deref().and_then(Record::decode).is_some_and(|r| {
            r.live_at(now) && r.refresh_jti == access.twin && r.access_jti == access.jti
        });
        if let (true, Some(username), Some(cache), Some(ticket)) =
            (active, &username, &self.cache, ticket)
        {
            cache.remember(ticket, access, username);
        }
        Ok(if active { username } else { None })
    }

    fn remembered_profile(&self, access: &Claims) -> Result<Arc<User>, Option<Ticket>> {
        match &self.cache {
            Some(cache) => cache.profile(access),
            None => Err(None),
        }
    }

    fn remember_profile(&self, ticket: Ticket, access: &Claims, user: Arc<User>) {
        if let Some(cache) = &self.cache {
            cache.remember_profile(ticket, access, user);
        }
    }

    async fn rotate(&self, rotation: PairRotation<'_>) -> Result<Rotation, StoreError> {
        let PairRotation {
            expected_refresh,
            next,
            reuse_is_theft,
            retry_window,
        } = rotation;
        let (user_id, session_id) = (next.refresh.sub, next.refresh.sid);
        let call = ScriptCall::new(&self.rotate)
            .key(sessions_key(user_id))
            .key(retry_key(user_id, expected_refresh))
            .bytes(session_id.as_bytes().as_slice())
            .bytes(expected_refresh.as_bytes().as_slice())
            .bytes(record::pair(
                next.refresh.jti,
                next.access.jti,
                next.access.exp,
                next.refresh.exp,
            ))
            .arg(ms(self.refresh_ttl))
            .arg(if reuse_is_theft { "1" } else { "0" })
            .arg(ms(retry_window))
            .arg(&next.access_token)
            .arg(&next.refresh_token)
            .arg(crate::tokens::now().0);
        let reply = self.run(&call, true).await;
        self.forget(user_id);
        let mut reply = reply?.into_iter();
        let outcome = match reply.next().as_deref() {
            Some("rotated") => Rotation::Rotated,
            Some("reused") => Rotation::Reused,
            Some("replayed") => {
                let (Some(access_token), Some(refresh_token)) = (reply.next(), reply.next()) else {
                    return Ok(Rotation::Gone);
                };
                return Ok(Rotation::Replayed {
                    access_token,
                    refresh_token,
                });
            }
            _ => return Ok(Rotation::Gone),
        };
        self.block(user_id, &pairs(reply.collect())).await?;
        Ok(outcome)
    }

    async fn revoke_session(&self, user_id: Uuid, session_id: Uuid) -> Result<bool, StoreError> {
        let call = ScriptCall::new(&self.revoke)
            .key(sessions_key(user_id))
            .bytes(session_id.as_bytes().as_slice())
            .arg(crate::tokens::now().0);
        let reply = self.run(&call, true).await;
        self.forget(user_id);
        let mut reply = reply?.into_iter();
        match reply.next().as_deref() {
            Some("revoked") => {
                self.block(user_id, &pairs(reply.collect())).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn revoke_all(&self, user_id: Uuid, except: Option<Uuid>) -> Result<u32, StoreError> {
        let except = except.map_or_else(Vec::new, |sid| sid.as_bytes().to_vec());
        let call = ScriptCall::new(&self.revoke_all)
            .key(sessions_key(user_id))
            .bytes(except)
            .arg(crate::tokens::now().0);
        let reply = self.run(&call, true).await;
        self.forget(user_id);
        let reply = reply?;
        let tokens: Vec<(String, String)> = reply
            .get(1..)
            .unwrap_or_default()
            .chunks_exact(3)
            .map(|t| (t[1].clone(), t[2].clone()))
            .collect();
        self.block(user_id, &tokens).await?;
        Ok(u32::try_from(tokens.len()).unwrap_or(u32::MAX))
    }

    async fn list_sessions(&self, user_id: Uuid) -> Result<Vec<SessionInfo>, StoreError> {
        let fields: Vec<(Vec<u8>, Vec<u8>)> = self
            .refresh
            .clone()
            .hgetall(sessions_key(user_id))
            .await
            .map_err(classify)?;
        // A session whose refresh token has expired waits in the hash for the user's
        // next login: it is not listed.
        let (now, _) = crate::tokens::now();
        let mut sessions: Vec<SessionInfo> = fields
            .iter()
            .filter_map(|(sid, value)| {
                let record = Record::decode(value).filter(|r| r.live_at(now))?;
                Some(SessionInfo {
                    id: Uuid::from_slice(sid).ok()?,
                    create_time: record.create_time,
                    expire_time: record.refresh_exp,
                    user_agent: record.user_agent,
                })
            })
            .collect();
        sessions.sort_by(|a, b| b.create_time.cmp(&a.create_time).then(b.id.cmp(&a.id)));
        Ok(sessions)
    }

    async fn set_username(&self, user_id: Uuid, username: &str) -> Result<(), StoreError> {
        let call = ScriptCall::new(&self.rename)
            .key(sessions_key(user_id))
            .arg(username);
        let reply = self.run(&call, false).await;
        self.forget(user_id);
        reply.map(drop)
    }

    async fn login_lock(&self, keys: &[String]) -> Result<Option<Duration>, StoreError> {
        // One command per key: the keys of one login (its username, its address) are
        // in different slots of a cluster.
        let mut longest = None;
        for key in keys {
            let ttl: i64 = self
                .blocklist
                .clone()
                .pttl(lock_key(key))
                .await
                .map_err(classify)?;
            if ttl > 0 {
                longest = longest.max(Some(Duration::from_millis(ttl.unsigned_abs())));
            }
        }
        Ok(longest)
    }

    async fn record_login_failure(
        &self,
        keys: &[(String, u32)],
        window: Duration,
        max_delay: Duration,
    ) -> Result<(), StoreError> {
        let mut conn = self.blocklist.clone();
        // One pipeline per key (one slot each on a cluster).
        for (key, free) in keys {
            let (failures,): (u32,) = redis::pipe()
                .incr(failures_key(key), 1)
                .cmd("PEXPIRE")
                .arg(failures_key(key))
                .arg(ms(window))
                .arg("NX")
                .ignore()
                .query_async(&mut conn)
                .await
                .map_err(classify)?;
            if let Some(delay) = login_delay(failures, *free, max_delay) {
                redis::cmd("SET")
                    .arg(lock_key(key))
                    .arg(1)
                    .arg("PX")
                    .arg(ms(delay))
                    .exec_async(&mut conn)
                    .await
                    .map_err(classify)?;
            }
        }
        Ok(())
    }

    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        self.blocklist
            .clone()
            .del::<_, ()>(&[failures_key(key), lock_key(key)])
            .await
            .map_err(classify)
    }

    async fn spend_allowance(
        &self,
        subject: &str,
        budgets: &[(&'static str, Budget)],
    ) -> Result<Option<Duration>, StoreError> {
        let mut pipe = redis::pipe();
        for (name, budget) in budgets {
            let key = allowance_key(subject, name);
            pipe.incr(&key, 1)
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(ms(budget.window))
                .arg("NX")
                .ignore()
                .cmd("PTTL")
                .arg(&key);
        }
        let counts: Vec<(u32, i64)> = pipe
            .query_async(&mut self.blocklist.clone())
            .await
            .map_err(classify)?;
        Ok(budgets
            .iter()
            .zip(counts)
            .filter(|((_, budget), (count, _))| *count > budget.limit)
            .map(|(_, (_, ttl))| Duration::from_millis(ttl.max(1).unsigned_abs()))
            .max())
    }

    async fn active_sessions(&self) -> Result<Option<u64>, StoreError> {
        // Counting them would take a key shared by every user, written at every login.
        Ok(None)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let ping = redis::cmd("PING");
        let (mut refresh, mut blocklist) = (self.refresh.clone(), self.blocklist.clone());
        let (refresh, blocklist) = tokio::join!(
            ping.query_async::<String>(&mut refresh),
            ping.query_async::<String>(&mut blocklist),
        );
        refresh.map_err(classify)?;
        blocklist.map_err(classify)?;
        Ok(())
    }
}
