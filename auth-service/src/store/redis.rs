//! `TokenStore` on Redis, in two logical databases (docs/ARCHITECTURE.md, "Tokens and sessions"):
//!
//! refresh database (default 1), one hash tag `{<user_id>}` per user:
//! - `auth:refresh:{uid}:<refresh_jti>`: hash `sid ajti aexp ctime rexp ua name`, the
//!   current refresh token of a session, its access twin, and the user's current name
//!   (for Introspect, so it needs one command); TTL = the refresh token's life.
//! - `auth:sessions:{uid}`: hash `<sid> -> <refresh_jti>`, the per-user index; TTL = the
//!   life of the user's newest refresh token (the longest).
//!
//! blocklist database (default 2):
//! - `auth:blocked:{uid}:<access_jti>`: TTL = the access token's remaining life.
//! - `auth:metrics:sessions`: sorted set of live sessions (`<uid>:<sid>`, scored by
//!   expiry), for the active-sessions gauge; expired members are dropped at each read.
//! - `auth:throttle:{<key>}:failures` and `…:lock`: failed logins of a username or a
//!   client address, and the wait they impose; TTL = the failure window / the wait.
//! - `auth:limit:{a:<address>}:hashes` and `…:registrations`: what one client address
//!   spent of its budgets in front of password hashing (`admission`); TTL = the window.
//!
//! Every multi-key change of the refresh database is one Lua script (atomic), and the
//! refresh database is the authority: an access token is active only if it is the twin
//! named by a live refresh key, so a lost blocklist write cannot revive a token.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use async_trait::async_trait;
use redis::{
    AsyncCommands as _, Client, IntoConnectionInfo as _, ProtocolVersion, RedisConnectionInfo,
    Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use uuid::Uuid;

use super::{
    sessions::{NewSession, Rotation, SessionInfo, TokenStore, login_delay},
    tracked::{IntrospectCache, spawn_tracking},
};
use crate::{
    admission::Budget,
    error::StoreError,
    tokens::{Claims, remaining_ms},
};

/// The two connection managers (one per logical database) and the scripts.
#[derive(Clone)]
pub struct RedisTokenStore {
    refresh: ConnectionManager,
    blocklist: ConnectionManager,
    refresh_ttl: Duration,
    rotate: Script,
    revoke: Script,
    revoke_all: Script,
    rename: Script,
    /// Introspect answers kept true by Redis pushes; `None` when turned off.
    cache: Option<Arc<IntrospectCache>>,
}

/// The prefixes of every key an Introspect answer depends on.
const TRACKED_PREFIXES: &[&str] = &["auth:refresh:", "auth:blocked:"];

fn refresh_prefix(user: Uuid) -> String {
    format!("auth:refresh:{{{user}}}:")
}
fn refresh_key(user: Uuid, refresh_jti: Uuid) -> String {
    format!("auth:refresh:{{{user}}}:{refresh_jti}")
}
fn index_key(user: Uuid) -> String {
    format!("auth:sessions:{{{user}}}")
}
fn blocked_key(user: Uuid, access_jti: Uuid) -> String {
    format!("auth:blocked:{{{user}}}:{access_jti}")
}
/// Live sessions for the metrics gauge (not on any request's critical path).
const SESSIONS_KEY: &str = "auth:metrics:sessions";

fn session_member(user: Uuid, session: Uuid) -> String {
    format!("{user}:{session}")
}

/// How a change affects the live-session count.
enum Tracked<'a> {
    Opened(Uuid, u64),
    Closed(&'a [Uuid]),
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

/// KEYS: index, old refresh, new refresh. ARGV: sid, expected refresh jti,
/// new refresh jti, new access jti, new access exp, new refresh exp, ttl ms, refresh key
/// prefix, reuse-is-theft flag. Returns {outcome, old access jti, old access exp}.
const ROTATE: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return {'gone'} end
if current ~= ARGV[2] then
  if ARGV[9] ~= '1' then return {'gone'} end
  local key = ARGV[8] .. current
  local old = redis.call('HMGET', key, 'ajti', 'aexp')
  redis.call('DEL', key)
  redis.call('HDEL', KEYS[1], ARGV[1])
  return {'reused', old[1] or '', old[2] or ''}
end
local old = redis.call('HMGET', KEYS[2], 'ajti', 'aexp', 'ctime', 'ua', 'name')
if not old[1] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return {'gone'}
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[3], 'sid', ARGV[1], 'ajti', ARGV[4], 'aexp', ARGV[5],
  'ctime', old[3], 'rexp', ARGV[6], 'ua', old[4], 'name', old[5])
redis.call('PEXPIRE', KEYS[3], ARGV[7])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return {'rotated', old[1], old[2]}
";

/// KEYS: index. ARGV: refresh key prefix, new name. Writes the name into every live
/// refresh token of the user (never creating a key that has expired).
const RENAME: &str = r"
local entries = redis.call('HGETALL', KEYS[1])
for i = 2, #entries, 2 do
  local key = ARGV[1] .. entries[i]
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'name', ARGV[2])
  end
end
return 0
";

/// KEYS: index. ARGV: sid, refresh key prefix. Returns {access jti, access exp} of the
/// revoked session, or an empty list if it was not live.
const REVOKE: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return {} end
local key = ARGV[2] .. current
local old = redis.call('HMGET', key, 'ajti', 'aexp')
redis.call('DEL', key)
redis.call('HDEL', KEYS[1], ARGV[1])
if not old[1] then return {} end
return {old[1], old[2]}
";

/// KEYS: index. ARGV: refresh key prefix, sid to keep (or ''). Returns a flat list of
/// {sid, access jti, access exp} of every session it revoked.
const REVOKE_ALL: &str = r"
local entries = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #entries, 2 do
  local sid, rjti = entries[i], entries[i + 1]
  if sid ~= ARGV[2] then
    local key = ARGV[1] .. rjti
    local old = redis.call('HMGET', key, 'ajti', 'aexp')
    redis.call('DEL', key)
    redis.call('HDEL', KEYS[1], sid)
    if old[1] then
      table.insert(out, sid)
      table.insert(out, old[1])
      table.insert(out, old[2])
    end
  end
end
return out
";

fn classify(error: redis::RedisError) -> StoreError {
    use redis::ErrorKind;
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::Io | ErrorKind::ClusterConnectionNotFound
        )
    {
        StoreError::Unavailable(error.into())
    } else {
        StoreError::Other(error.into())
    }
}

/// A client for `url`, its connection settings changed by `adjust`.
fn client(
    url: &str,
    adjust: impl FnOnce(RedisConnectionInfo) -> RedisConnectionInfo,
) -> anyhow::Result<Client> {
    let info = url
        .into_connection_info()
        .context("AUTH_REDIS_URL is not a valid Redis URL")?;
    let settings = adjust(info.redis_settings().clone());
    Client::open(info.set_redis_settings(settings))
        .context("AUTH_REDIS_URL is not a valid Redis URL")
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl RedisTokenStore {
    /// Connects one manager per logical database. Reconnects back off at most 1 s and
    /// every command has `timeout`, so an outage is an error, never a hang. With
    /// `cache_answers`, a tracking connection keeps Introspect answers in process (see
    /// `tracked`).
    pub async fn connect(
        url: &str,
        refresh_db: u8,
        blocklist_db: u8,
        refresh_ttl: Duration,
        timeout: Duration,
        cache_answers: bool,
    ) -> anyhow::Result<Self> {
        let manager = |db: u8| async move {
            let client = client(url, |settings| settings.set_db(i64::from(db)))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_max_delay(Duration::from_secs(1))
                .set_number_of_retries(2);
            ConnectionManager::new_with_config(client, config)
                .await
                .with_context(|| format!("AUTH_REDIS_URL: cannot connect to Redis (database {db})"))
        };
        Ok(Self {
            refresh: manager(refresh_db).await?,
            blocklist: manager(blocklist_db).await?,
            refresh_ttl,
            rotate: Script::new(ROTATE),
            revoke: Script::new(REVOKE),
            revoke_all: Script::new(REVOKE_ALL),
            rename: Script::new(RENAME),
            cache: if cache_answers {
                let cache = Arc::new(IntrospectCache::default());
                // RESP3, so that Redis's pushes share the connection.
                let tracking = client(url, |settings| {
                    settings.set_protocol(ProtocolVersion::RESP3)
                })?;
                spawn_tracking(tracking, TRACKED_PREFIXES, &cache, timeout);
                Some(cache)
            } else {
                None
            },
        })
    }

    /// After a change to `user`'s sessions (whether or not it went through): this
    /// process answers from Redis for that user until its next read.
    fn forget(&self, user: Uuid) {
        if let Some(cache) = &self.cache {
            cache.forget_user(user);
        }
    }

    /// Blocks access tokens `(jti, exp)` until they expire, and tracks the sessions.
    async fn block(
        &self,
        user: Uuid,
        tokens: &[(String, String)],
        tracked: Tracked<'_>,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        match tracked {
            Tracked::Opened(session, exp) => {
                pipe.zadd(SESSIONS_KEY, session_member(user, session), exp)
                    .ignore();
            }
            Tracked::Closed(sessions) => {
                for session in sessions {
                    pipe.zrem(SESSIONS_KEY, session_member(user, *session))
                        .ignore();
                }
            }
        }
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
        let ttl = ms(self.refresh_ttl);
        redis::pipe()
            .atomic()
            .hset_multiple(
                refresh_key(user, refresh.jti),
                &[
                    ("sid", refresh.sid.to_string()),
                    ("ajti", access.jti.to_string()),
                    ("aexp", access.exp.to_string()),
                    ("ctime", refresh.iat.to_string()),
                    ("rexp", refresh.exp.to_string()),
                    ("ua", session.user_agent.to_owned()),
                    ("name", session.username.to_owned()),
                ],
            )
            .ignore()
            .cmd("PEXPIRE")
            .arg(refresh_key(user, refresh.jti))
            .arg(ttl)
            .ignore()
            .hset(
                index_key(user),
                refresh.sid.to_string(),
                refresh.jti.to_string(),
            )
            .ignore()
            .cmd("PEXPIRE")
            .arg(index_key(user))
            .arg(ttl)
            .ignore()
            .query_async::<()>(&mut self.refresh.clone())
            .await
            .map_err(classify)?;
        self.block(user, &[], Tracked::Opened(refresh.sid, refresh.exp))
            .await
    }

    async fn check_access(&self, access: &Claims) -> Result<Option<String>, StoreError> {
        let ticket = match self.cache.as_deref().map(|cache| cache.lookup(access)) {
            Some(Ok(username)) => return Ok(Some(username)),
            Some(Err(ticket)) => ticket,
            None => None,
        };
        let user = access.sub;
        let mut refresh = self.refresh.clone();
        let mut blocklist = self.blocklist.clone();
        let mut hmget = redis::cmd("HMGET");
        hmget
            .arg(refresh_key(user, access.twin))
            .arg("sid")
            .arg("ajti")
            .arg("name");
        let session =
            hmget.query_async::<(Option<String>, Option<String>, Option<String>)>(&mut refresh);
        let blocked = blocklist.exists::<_, bool>(blocked_key(user, access.jti));
        let (session, blocked) = tokio::join!(session, blocked);
        let (session, blocked) = match (session, blocked) {
            (Ok(session), Ok(blocked)) => (session, blocked),
            (Err(error), _) | (_, Err(error)) => {
                // Fail closed: no remembered answer outlives a Redis that stopped answering.
                if let Some(cache) = &self.cache {
                    cache.forget_all();
                }
                return Err(classify(error));
            }
        };
        let (sid, ajti, username) = session;
        let sid_matches = sid.and_then(|s| s.parse::<Uuid>().ok()) == Some(access.sid);
        let jti_matches = ajti.and_then(|j| j.parse::<Uuid>().ok()) == Some(access.jti);
        let active = sid_matches && jti_matches && !blocked;
        if let (true, Some(username), Some(cache), Some(ticket)) =
            (active, &username, &self.cache, ticket)
        {
            cache.remember(ticket, access, username);
        }
        Ok(if active { username } else { None })
    }

    async fn rotate(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        expected_refresh: Uuid,
        next_access: &Claims,
        next_refresh: &Claims,
        reuse_is_theft: bool,
    ) -> Result<Rotation, StoreError> {
        let reply: redis::RedisResult<Vec<String>> = self
            .rotate
            .key(index_key(user_id))
            .key(refresh_key(user_id, expected_refresh))
            .key(refresh_key(user_id, next_refresh.jti))
            .arg(session_id.to_string())
            .arg(expected_refresh.to_string())
            .arg(next_refresh.jti.to_string())
            .arg(next_access.jti.to_string())
            .arg(next_access.exp)
            .arg(next_refresh.exp)
            .arg(ms(self.refresh_ttl))
            .arg(refresh_prefix(user_id))
            .arg(if reuse_is_theft { "1" } else { "0" })
            .invoke_async(&mut self.refresh.clone())
            .await;
        self.forget(user_id);
        let reply = reply.map_err(classify)?;
        let outcome = match reply.first().map(String::as_str) {
            Some("rotated") => Rotation::Rotated,
            Some("reused") => Rotation::Reused,
            _ => return Ok(Rotation::Gone),
        };
        let tracked = match outcome {
            Rotation::Rotated => Tracked::Opened(session_id, next_refresh.exp),
            _ => Tracked::Closed(&[session_id]),
        };
        self.block(
            user_id,
            &pairs(reply.into_iter().skip(1).collect()),
            tracked,
        )
        .await?;
        Ok(outcome)
    }

    async fn revoke_session(&self, user_id: Uuid, session_id: Uuid) -> Result<bool, StoreError> {
        let reply: redis::RedisResult<Vec<String>> = self
            .revoke
            .key(index_key(user_id))
            .arg(session_id.to_string())
            .arg(refresh_prefix(user_id))
            .invoke_async(&mut self.refresh.clone())
            .await;
        self.forget(user_id);
        let reply = reply.map_err(classify)?;
        if reply.is_empty() {
            return Ok(false);
        }
        self.block(user_id, &pairs(reply), Tracked::Closed(&[session_id]))
            .await?;
        Ok(true)
    }

    async fn revoke_all(&self, user_id: Uuid, except: Option<Uuid>) -> Result<u32, StoreError> {
        let reply: redis::RedisResult<Vec<String>> = self
            .revoke_all
            .key(index_key(user_id))
            .arg(refresh_prefix(user_id))
            .arg(except.map(|sid| sid.to_string()).unwrap_or_default())
            .invoke_async(&mut self.refresh.clone())
            .await;
        self.forget(user_id);
        let reply = reply.map_err(classify)?;
        let (sessions, tokens): (Vec<Uuid>, Vec<(String, String)>) = reply
            .chunks_exact(3)
            .map(|t| {
                (
                    t[0].parse::<Uuid>().unwrap_or_default(),
                    (t[1].clone(), t[2].clone()),
                )
            })
            .unzip();
        self.block(user_id, &tokens, Tracked::Closed(&sessions))
            .await?;
        Ok(u32::try_from(tokens.len()).unwrap_or(u32::MAX))
    }

    async fn list_sessions(&self, user_id: Uuid) -> Result<Vec<SessionInfo>, StoreError> {
        let mut conn = self.refresh.clone();
        let index: Vec<(String, String)> =
            conn.hgetall(index_key(user_id)).await.map_err(classify)?;
        let mut pipe = redis::pipe();
        for (_, refresh_jti) in &index {
            pipe.cmd("HMGET")
                .arg(format!("{}{refresh_jti}", refresh_prefix(user_id)))
                .arg("ctime")
                .arg("rexp")
                .arg("ua");
        }
        let rows: Vec<(Option<u64>, Option<u64>, Option<String>)> =
            pipe.query_async(&mut conn).await.map_err(classify)?;
        let mut sessions: Vec<SessionInfo> = index
            .iter()
            .zip(rows)
            .filter_map(|((sid, _), row)| match row {
                (Some(create_time), Some(expire_time), user_agent) => Some(SessionInfo {
                    id: sid.parse().ok()?,
                    create_time,
                    expire_time,
                    user_agent: user_agent.unwrap_or_default(),
                }),
                _ => None,
            })
            .collect();
        sessions.sort_by(|a, b| b.create_time.cmp(&a.create_time).then(b.id.cmp(&a.id)));
        Ok(sessions)
    }

    async fn set_username(&self, user_id: Uuid, username: &str) -> Result<(), StoreError> {
        let renamed = self
            .rename
            .key(index_key(user_id))
            .arg(refresh_prefix(user_id))
            .arg(username)
            .invoke_async::<()>(&mut self.refresh.clone())
            .await;
        self.forget(user_id);
        renamed.map_err(classify)
    }

    async fn login_lock(&self, keys: &[String]) -> Result<Option<Duration>, StoreError> {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("PTTL").arg(lock_key(key));
        }
        let ttls: Vec<i64> = pipe
            .query_async(&mut self.blocklist.clone())
            .await
            .map_err(classify)?;
        Ok(ttls
            .into_iter()
            .filter(|ttl| *ttl > 0)
            .max()
            .map(|ms| Duration::from_millis(ms.unsigned_abs())))
    }

    async fn record_login_failure(
        &self,
        keys: &[(String, u32)],
        window: Duration,
        max_delay: Duration,
    ) -> Result<(), StoreError> {
        let mut conn = self.blocklist.clone();
        let mut pipe = redis::pipe();
        for (key, _) in keys {
            pipe.incr(failures_key(key), 1)
                .cmd("PEXPIRE")
                .arg(failures_key(key))
                .arg(ms(window))
                .arg("NX")
                .ignore();
        }
        let counts: Vec<u32> = pipe.query_async(&mut conn).await.map_err(classify)?;
        let mut locks = redis::pipe();
        for ((key, free), failures) in keys.iter().zip(counts) {
            if let Some(delay) = login_delay(failures, *free, max_delay) {
                locks
                    .cmd("SET")
                    .arg(lock_key(key))
                    .arg(1)
                    .arg("PX")
                    .arg(ms(delay))
                    .ignore();
            }
        }
        if locks.is_empty() {
            return Ok(());
        }
        locks.query_async::<()>(&mut conn).await.map_err(classify)
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

    async fn active_sessions(&self) -> Result<u64, StoreError> {
        let (now, _) = crate::tokens::now();
        let (count,): (u64,) = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(SESSIONS_KEY)
            .arg("-inf")
            .arg(now)
            .ignore()
            .zcard(SESSIONS_KEY)
            .query_async(&mut self.blocklist.clone())
            .await
            .map_err(classify)?;
        Ok(count)
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
