//! `TokenStore` in process memory, for the embedded default: the same model and the same
//! semantics as the Redis store (see `redis.rs`), in two separate maps. Sessions do not
//! survive a restart. Each map sits behind a plain mutex that is never held across an
//! await, which also makes every operation atomic as the Redis scripts are. Expired
//! entries are dropped on access and swept every few seconds, so nothing accumulates.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use uuid::Uuid;

use super::sessions::{NewSession, PairRotation, Rotation, SessionInfo, TokenStore, login_delay};
use crate::{
    admission::Budget,
    error::StoreError,
    tokens::{Claims, remaining_ms},
};

const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The current refresh token of a session: a field of `auth:sessions:{uid}` in the Redis
/// model.
#[derive(Debug, Clone)]
struct RefreshEntry {
    session_id: Uuid,
    access_jti: Uuid,
    access_exp: u64,
    create_time: u64,
    refresh_exp: u64,
    user_agent: String,
    expires: Instant,
}

/// Per-user index and current username (the fields of `auth:sessions:{uid}` in the Redis
/// model).
#[derive(Debug, Default)]
struct UserEntry {
    sessions: HashMap<Uuid, Uuid>,
    username: String,
    expires: Option<Instant>,
}

/// The pair a rotation issued, kept for the retry window under the refresh token it
/// replaced: `auth:retry:{uid}:<old refresh jti>` of the Redis model.
#[derive(Debug, Clone)]
struct RetryEntry {
    session_id: Uuid,
    next_refresh: Uuid,
    access_token: String,
    refresh_token: String,
    expires: Instant,
}

/// The refresh "database".
#[derive(Debug, Default)]
struct RefreshDb {
    tokens: HashMap<(Uuid, Uuid), RefreshEntry>,
    users: HashMap<Uuid, UserEntry>,
    retries: HashMap<(Uuid, Uuid), RetryEntry>,
}

/// The blocklist "database": (user, access jti) until its expiry.
type BlockDb = HashMap<(Uuid, Uuid), Instant>;

/// Failed logins of a username or an address: count, when the count is forgotten, and
/// until when logins wait.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    forget_at: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug, Default)]
struct Maps {
    refresh: Mutex<RefreshDb>,
    blocked: Mutex<BlockDb>,
    throttle: Mutex<HashMap<String, Failures>>,
}

impl Failures {
    fn expired(&self, now: Instant) -> bool {
        self.forget_at <= now && self.locked_until.is_none_or(|until| until <= now)
    }
}

/// Sessions and blocked tokens in this process.
#[derive(Clone, Debug)]
pub struct MemoryTokenStore {
    maps: Arc<Maps>,
    refresh_ttl: Duration,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-written in a way that
    // matters more than losing the store; keep serving.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn expiry_of(exp: u64) -> Instant {
    Instant::now() + Duration::from_millis(remaining_ms(exp))
}

impl RefreshDb {
    fn live_token(&mut self, user: Uuid, jti: Uuid, now: Instant) -> Option<&RefreshEntry> {
        if self
            .tokens
            .get(&(user, jti))
            .is_some_and(|e| e.expires <= now)
        {
            self.tokens.remove(&(user, jti));
        }
        self.tokens.get(&(user, jti))
    }

    fn live_user(&mut self, user: Uuid, now: Instant) -> Option<&mut UserEntry> {
        if self
            .users
            .get(&user)
            .is_some_and(|u| u.expires.is_some_and(|e| e <= now))
        {
            self.users.remove(&user);
        }
        self.users.get_mut(&user)
    }

    /// The pair that replaced refresh token `old` of `session`, if it was issued less
    /// than the retry window ago and is still the session's current pair.
    fn replay(&mut self, user: Uuid, session: Uuid, old: Uuid, now: Instant) -> Option<Rotation> {
        let retry = self
            .retries
            .get(&(user, old))
            .filter(|r| r.expires > now && r.session_id == session)?
            .clone();
        let current = self.live_user(user, now)?.sessions.get(&session).copied();
        if current != Some(retry.next_refresh) {
            return None;
        }
        self.live_token(user, retry.next_refresh, now)?;
        Some(Rotation::Replayed {
            access_token: retry.access_token,
            refresh_token: retry.refresh_token,
        })
    }

    /// Deletes the session's current refresh token and index entry; returns the access
    /// twin `(jti, exp)` if the token was still live.
    fn remove_session(&mut self, user: Uuid, session: Uuid, now: Instant) -> Option<(Uuid, u64)> {
        let refresh_jti = self.live_user(user, now)?.sessions.remove(&session)?;
        let entry = self.tokens.remove(&(user, refresh_jti))?;
        (entry.expires > now).then_some((entry.access_jti, entry.access_exp))
    }

    fn sweep(&mut self, now: Instant) {
        self.tokens.retain(|_, entry| entry.expires > now);
        self.retries.retain(|_, entry| entry.expires > now);
        self.users
            .retain(|_, user| user.expires.is_none_or(|e| e > now));
    }
}

impl MemoryTokenStore {
    /// A new, empty store, with a sweeper task that ends when the store is dropped.
    pub fn new(refresh_ttl: Duration) -> Self {
        let maps = Arc::new(Maps::default());
        let weak: Weak<Maps> = Arc::downgrade(&maps);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                ticker.tick().await;
                let Some(maps) = weak.upgrade() else { break };
                let now = Instant::now();
                lock(&maps.refresh).sweep(now);
                lock(&maps.blocked).retain(|_, expires| *expires > now);
                lock(&maps.throttle).retain(|_, failures| !failures.expired(now));
            }
        });
        Self { maps, refresh_ttl }
    }

    fn block(&self, user: Uuid, tokens: impl IntoIterator<Item = (Uuid, u64)>) {
        let mut blocked = lock(&self.maps.blocked);
        for (jti, exp) in tokens {
            blocked.insert((user, jti), expiry_of(exp));
        }
    }

    /// How many entries each map holds (including not yet swept expired ones).
    pub fn entry_counts(&self) -> (usize, usize) {
        let refresh = lock(&self.maps.refresh);
        (
            refresh.tokens.len() + refresh.users.len() + refresh.retries.len(),
            lock(&self.maps.blocked).len(),
        )
    }

    /// Drops every expired entry now (the sweeper does this every few seconds).
    pub fn sweep(&self) {
        let now = Instant::now();
        lock(&self.maps.refresh).sweep(now);
        lock(&self.maps.blocked).retain(|_, expires| *expires > now);
        lock(&self.maps.throttle).retain(|_, failures| !failures.expired(now));
    }
}

#[async_trait]
impl TokenStore for MemoryTokenStore {
    async fn open_session(&self, session: NewSession<'_>) -> Result<(), StoreError> {
        let (access, refresh) = (session.access, session.refresh);
        let now = Instant::now();
        let expires = now + self.refresh_ttl;
        let mut db = lock(&self.maps.refresh);
        db.tokens.insert(
            (refresh.sub, refresh.jti),
            RefreshEntry {
                session_id: refresh.sid,
                access_jti: access.jti,
                access_exp: access.exp,
                create_time: refresh.iat,
                refresh_exp: refresh.exp,
                user_agent: session.user_agent.to_owned(),
                expires: expiry_of(refresh.exp),
            },
        );
        db.live_user(refresh.sub, now);
        let user = db.users.entry(refresh.sub).or_default();
        user.sessions.insert(refresh.sid, refresh.jti);
        user.username = session.username.to_owned();
        user.expires = Some(expires);
        Ok(())
    }

    async fn check_access(&self, access: &Claims) -> Result<Option<String>, StoreError> {
        let now = Instant::now();
        let blocked = lock(&self.maps.blocked)
            .get(&(access.sub, access.jti))
            .is_some_and(|expires| *expires > now);
        if blocked {
            return Ok(None);
        }
        let mut db = lock(&self.maps.refresh);
        let live = db
            .live_token(access.sub, access.twin, now)
            .is_some_and(|e| e.session_id == access.sid && e.access_jti == access.jti);
        if !live {
            return Ok(None);
        }
        Ok(db
            .live_user(access.sub, now)
            .map(|user| user.username.clone()))
    }

    async fn rotate(&self, rotation: PairRotation<'_>) -> Result<Rotation, StoreError> {
        let PairRotation {
            expected_refresh,
            next,
            reuse_is_theft,
            retry_window,
        } = rotation;
        let (user_id, session_id) = (next.refresh.sub, next.refresh.sid);
        let now = Instant::now();
        let (outcome, to_block) = {
            let mut db = lock(&self.maps.refresh);
            let current = db
                .live_user(user_id, now)
                .and_then(|user| user.sessions.get(&session_id).copied());
            match current {
                None => (Rotation::Gone, None),
                Some(current) if current != expected_refresh => {
                    if !reuse_is_theft {
                        (Rotation::Gone, None)
                    } else if let Some(replayed) =
                        db.replay(user_id, session_id, expected_refresh, now)
                    {
                        (replayed, None)
                    } else {
                        db.retries.remove(&(user_id, expected_refresh));
                        (
                            Rotation::Reused,
                            db.remove_session(user_id, session_id, now),
                        )
                    }
                }
                Some(current) => match db.live_token(user_id, current, now).cloned() {
                    None => {
                        db.remove_session(user_id, session_id, now);
                        (Rotation::Gone, None)
                    }
                    Some(old) => {
                        db.tokens.remove(&(user_id, current));
                        db.tokens.insert(
                            (user_id, next.refresh.jti),
                            RefreshEntry {
                                access_jti: next.access.jti,
                                access_exp: next.access.exp,
                                refresh_exp: next.refresh.exp,
                                expires: expiry_of(next.refresh.exp),
                                ..old.clone()
                            },
                        );
                        if let Some(user) = db.users.get_mut(&user_id) {
                            user.sessions.insert(session_id, next.refresh.jti);
                            user.expires = Some(now + self.refresh_ttl);
                        }
                        if !retry_window.is_zero() {
                            db.retries.insert(
                                (user_id, current),
                                RetryEntry {
                                    session_id,
                                    next_refresh: next.refresh.jti,
                                    access_token: next.access_token.clone(),
                                    refresh_token: next.refresh_token.clone(),
                                    expires: now + retry_window,
                                },
                            );
                        }
                        (Rotation::Rotated, Some((old.access_jti, old.access_exp)))
                    }
                },
            }
        };
        self.block(user_id, to_block);
        Ok(outcome)
    }

    async fn revoke_session(&self, user_id: Uuid, session_id: Uuid) -> Result<bool, StoreError> {
        let revoked = lock(&self.maps.refresh).remove_session(user_id, session_id, Instant::now());
        let found = revoked.is_some();
        self.block(user_id, revoked);
        Ok(found)
    }

    async fn revoke_all(&self, user_id: Uuid, except: Option<Uuid>) -> Result<u32, StoreError> {
        let now = Instant::now();
        let revoked: Vec<(Uuid, u64)> = {
            let mut db = lock(&self.maps.refresh);
            let sessions: Vec<Uuid> = db
                .live_user(user_id, now)
                .map(|user| {
                    user.sessions
                        .keys()
                        .copied()
                        .filter(|s| Some(*s) != except)
                        .collect()
                })
                .unwrap_or_default();
            sessions
                .into_iter()
                .filter_map(|session| db.remove_session(user_id, session, now))
                .collect()
        };
        let count = u32::try_from(revoked.len()).unwrap_or(u32::MAX);
        self.block(user_id, revoked);
        Ok(count)
    }

    async fn list_sessions(&self, user_id: Uuid) -> Result<Vec<SessionInfo>, StoreError> {
        let now = Instant::now();
        let mut db = lock(&self.maps.refresh);
        let index: Vec<(Uuid, Uuid)> = db
            .live_user(user_id, now)
            .map(|user| user.sessions.iter().map(|(s, r)| (*s, *r)).collect())
            .unwrap_or_default();
        let mut sessions: Vec<SessionInfo> = index
            .into_iter()
            .filter_map(|(session, refresh_jti)| {
                db.live_token(user_id, refresh_jti, now)
                    .map(|entry| SessionInfo {
                        id: session,
                        create_time: entry.create_time,
                        expire_time: entry.refresh_exp,
                        user_agent: entry.user_agent.clone(),
                    })
            })
            .collect();
        sessions.sort_by(|a, b| b.create_time.cmp(&a.create_time).then(b.id.cmp(&a.id)));
        Ok(sessions)
    }

    async fn set_username(&self, user_id: Uuid, username: &str) -> Result<(), StoreError> {
        if let Some(user) = lock(&self.maps.refresh).live_user(user_id, Instant::now()) {
            user.username = username.to_owned();
        }
        Ok(())
    }

    async fn login_lock(&self, keys: &[String]) -> Result<Option<Duration>, StoreError> {
        let now = Instant::now();
        let throttle = lock(&self.maps.throttle);
        Ok(keys
            .iter()
            .filter_map(|key| throttle.get(key)?.locked_until)
            .filter(|until| *until > now)
            .max()
            .map(|until| until - now))
    }

    async fn record_login_failure(
        &self,
        keys: &[(String, u32)],
        window: Duration,
        max_delay: Duration,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut throttle = lock(&self.maps.throttle);
        for (key, free) in keys {
            let entry = throttle
                .entry(key.clone())
                .and_modify(|f| {
                    if f.forget_at <= now {
                        *f = Failures {
                            count: 0,
                            forget_at: now + window,
                            locked_until: None,
                        };
                    }
                })
                .or_insert(Failures {
                    count: 0,
                    forget_at: now + window,
                    locked_until: None,
                });
            entry.count = entry.count.saturating_add(1);
            if let Some(delay) = login_delay(entry.count, *free, max_delay) {
                entry.locked_until = Some(now + delay);
            }
        }
        Ok(())
    }

    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        lock(&self.maps.throttle).remove(key);
        Ok(())
    }

    async fn spend_allowance(
        &self,
        subject: &str,
        budgets: &[(&'static str, Budget)],
    ) -> Result<Option<Duration>, StoreError> {
        let now = Instant::now();
        let mut counters = lock(&self.maps.throttle);
        let mut wait = None;
        for (name, budget) in budgets {
            let fresh = Failures {
                count: 0,
                forget_at: now + budget.window,
                locked_until: None,
            };
            let counter = counters
                .entry(format!("{name}:{subject}"))
                .and_modify(|c| {
                    if c.forget_at <= now {
                        *c = fresh;
                    }
                })
                .or_insert(fresh);
            counter.count = counter.count.saturating_add(1);
            if counter.count > budget.limit {
                wait = wait.max(Some(counter.forget_at - now));
            }
        }
        Ok(wait)
    }

    async fn active_sessions(&self) -> Result<Option<u64>, StoreError> {
        let now = Instant::now();
        let count = lock(&self.maps.refresh)
            .tokens
            .values()
            .filter(|e| e.expires > now)
            .count();
        Ok(Some(u64::try_from(count).unwrap_or(u64::MAX)))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::{IssuedPair, TokenUse, now};

    fn issued(access: &Claims, refresh: &Claims) -> IssuedPair {
        IssuedPair {
            access_token: format!("access {}", access.jti),
            refresh_token: format!("refresh {}", refresh.jti),
            access: access.clone(),
            refresh: refresh.clone(),
        }
    }

    fn rotation(expected_refresh: Uuid, next: &IssuedPair, window: u64) -> PairRotation<'_> {
        PairRotation {
            expected_refresh,
            next,
            reuse_is_theft: true,
            retry_window: Duration::from_millis(window),
        }
    }

    fn claims(
        user: Uuid,
        session: Uuid,
        token_use: TokenUse,
        jti: Uuid,
        twin: Uuid,
        exp: u64,
    ) -> Claims {
        Claims {
            iss: "test".into(),
            sub: user,
            sid: session,
            jti,
            twin,
            token_use,
            iat: now().0,
            exp,
        }
    }

    #[tokio::test]
    async fn expired_entries_are_removed_not_just_ignored() {
        let store = MemoryTokenStore::new(Duration::from_secs(1));
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        let (access_jti, refresh_jti) = (Uuid::now_v7(), Uuid::now_v7());
        let exp = now().0 + 1;
        let access = claims(
            user,
            session,
            TokenUse::Access,
            access_jti,
            refresh_jti,
            exp,
        );
        let refresh = claims(
            user,
            session,
            TokenUse::Refresh,
            refresh_jti,
            access_jti,
            exp,
        );
        store
            .open_session(NewSession {
                access: &access,
                refresh: &refresh,
                username: "ann",
                user_agent: "test",
            })
            .await
            .unwrap();
        assert_eq!(
            store.check_access(&access).await.unwrap().as_deref(),
            Some("ann")
        );
        // Rotating blocks the old access token, filling the blocklist map too.
        let (next_access_jti, next_refresh_jti) = (Uuid::now_v7(), Uuid::now_v7());
        let next_access = claims(
            user,
            session,
            TokenUse::Access,
            next_access_jti,
            next_refresh_jti,
            exp,
        );
        let next_refresh = claims(
            user,
            session,
            TokenUse::Refresh,
            next_refresh_jti,
            next_access_jti,
            exp,
        );
        let next = issued(&next_access, &next_refresh);
        let rotated = store
            .rotate(rotation(refresh_jti, &next, 1000))
            .await
            .unwrap();
        assert_eq!(rotated, Rotation::Rotated);
        // The refresh token, the user's index, the pair kept for the retry window.
        assert_eq!(store.entry_counts(), (3, 1));

        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(store.check_access(&next_access).await.unwrap(), None);
        store.sweep();
        assert_eq!(store.entry_counts(), (0, 0));
    }

    #[tokio::test]
    async fn a_second_rotation_with_the_same_token_is_reuse_and_ends_the_session() {
        let store = MemoryTokenStore::new(Duration::from_secs(3600));
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        let ids: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
        let exp = now().0 + 3600;
        let pair = |a: usize, r: usize| {
            (
                claims(user, session, TokenUse::Access, ids[a], ids[r], exp),
                claims(user, session, TokenUse::Refresh, ids[r], ids[a], exp),
            )
        };
        let (access, refresh) = pair(0, 1);
        store
            .open_session(NewSession {
                access: &access,
                refresh: &refresh,
                username: "ann",
                user_agent: "",
            })
            .await
            .unwrap();
        let (a2, r2) = pair(2, 3);
        let second = issued(&a2, &r2);
        assert_eq!(
            store.rotate(rotation(ids[1], &second, 0)).await.unwrap(),
            Rotation::Rotated
        );
        let (a3, r3) = pair(4, 5);
        let third = issued(&a3, &r3);
        assert_eq!(
            store.rotate(rotation(ids[1], &third, 0)).await.unwrap(),
            Rotation::Reused
        );
        assert_eq!(store.check_access(&a2).await.unwrap(), None);
        assert!(store.list_sessions(user).await.unwrap().is_empty());
    }
}
