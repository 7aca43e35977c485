//! The token store: live sessions (the current refresh token of each, naming its access
//! twin) and blocked access tokens (docs/ARCHITECTURE.md, "Tokens and sessions").

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use pair_common::cache::Ticket;
use uuid::Uuid;

use crate::{
    admission::Budget,
    domain::User,
    error::StoreError,
    tokens::{Claims, IssuedPair},
};

/// What Login stores for a new session.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub access: &'a Claims,
    pub refresh: &'a Claims,
    pub username: &'a str,
    pub user_agent: &'a str,
}

/// A live session as ListSessions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: Uuid,
    /// Unix seconds.
    pub create_time: u64,
    /// Unix seconds: the expiry of its current refresh token.
    pub expire_time: u64,
    pub user_agent: String,
}

/// The lock a key gets after `failures` failed logins, `free` of them allowed.
pub fn login_delay(failures: u32, free: u32, max_delay: Duration) -> Option<Duration> {
    let over = failures.checked_sub(free)?.checked_sub(1)?;
    let delay = Duration::from_secs(1u64.checked_shl(over.min(62)).unwrap_or(u64::MAX));
    Some(delay.min(max_delay))
}

/// A rotation to attempt: `next` (of its user and session) becomes the session's pair
/// if `expected_refresh` is still the session's current refresh token id.
#[derive(Debug, Clone, Copy)]
pub struct PairRotation<'a> {
    pub expected_refresh: Uuid,
    pub next: &'a IssuedPair,
    /// Whether an `expected_refresh` that is no longer current was stolen (a refresh
    /// token presented again) rather than a session that moved on under its caller.
    pub reuse_is_theft: bool,
    /// For how long after this rotation `expected_refresh`, presented again, answers
    /// `next` (AUTH_REFRESH_RETRY_WINDOW); zero keeps nothing.
    pub retry_window: Duration,
}

/// The outcome of trying to rotate a session's pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The new pair is now the session's; the old one is dead.
    Rotated,
    /// The presented refresh token was rotated less than the retry window ago and the
    /// pair that rotation issued is still the session's: that pair, byte for byte.
    Replayed {
        access_token: String,
        refresh_token: String,
    },
    /// The presented refresh token had already been rotated: the session was revoked.
    Reused,
    /// No such live session.
    Gone,
}

/// Live sessions and blocked access tokens of every user.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Stores the first pair of a new session, and the user's current username.
    async fn open_session(&self, session: NewSession<'_>) -> Result<(), StoreError>;

    /// The user's current username if `access` is the current access token of a live
    /// session and is not blocked; `None` otherwise.
    async fn check_access(&self, access: &Claims) -> Result<Option<String>, StoreError>;

    /// GetProfile's user as remembered with `access`'s Introspect answer, or a ticket to
    /// remember it once read (`None`: do not). A store without an Introspect cache
    /// remembers nothing.
    fn remembered_profile(&self, access: &Claims) -> Result<Arc<User>, Option<Ticket>> {
        let _ = access;
        Err(None)
    }

    /// Remembers `user`, read after `ticket` was taken, with `access`'s answer.
    fn remember_profile(&self, ticket: Ticket, access: &Claims, user: Arc<User>) {
        let _ = (ticket, access, user);
    }

    /// Replaces the session's pair if `expected_refresh` (a refresh token id) is still its
    /// current one, remembering the new pair for the retry window. Otherwise, when
    /// `reuse_is_theft`: the remembered pair if it is still the session's (`Replayed`),
    /// else the session is revoked (`Reused`). One atomic step.
    async fn rotate(&self, rotation: PairRotation<'_>) -> Result<Rotation, StoreError>;

    /// Revokes one session; false if it was not live.
    async fn revoke_session(&self, user_id: Uuid, session_id: Uuid) -> Result<bool, StoreError>;

    /// Revokes every session of the user but `except`; returns how many it revoked.
    async fn revoke_all(&self, user_id: Uuid, except: Option<Uuid>) -> Result<u32, StoreError>;

    /// The user's live sessions, newest first.
    async fn list_sessions(&self, user_id: Uuid) -> Result<Vec<SessionInfo>, StoreError>;

    /// Records a new username for Introspect of the user's live sessions.
    async fn set_username(&self, user_id: Uuid, username: &str) -> Result<(), StoreError>;

    /// The longest remaining login lock among `keys`, if any is locked.
    async fn login_lock(&self, keys: &[String]) -> Result<Option<Duration>, StoreError>;

    /// Counts a failed login against each `(key, free failures)`; past its free
    /// failures a key is locked for 1 s, doubling with each further failure, at most
    /// `max_delay`. Counts are forgotten `window` after the first failure.
    async fn record_login_failure(
        &self,
        keys: &[(String, u32)],
        window: Duration,
        max_delay: Duration,
    ) -> Result<(), StoreError>;

    /// Forgets the failures and lock of `key` (after a successful login).
    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError>;

    /// Spends one unit of each named budget of `subject` (a client address): each
    /// counter starts at the first unit spent and is forgotten a window later. Past a
    /// budget's limit, the longest time left until an exhausted counter is forgotten.
    async fn spend_allowance(
        &self,
        subject: &str,
        budgets: &[(&'static str, Budget)],
    ) -> Result<Option<Duration>, StoreError>;

    /// How many sessions are live (for the metrics gauge), if the store can count them
    /// without a key shared by every user.
    async fn active_sessions(&self) -> Result<Option<u64>, StoreError>;

    /// Succeeds while the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_delays_start_after_the_free_failures_and_double_up_to_the_cap() {
        let cap = Duration::from_secs(300);
        assert_eq!(login_delay(5, 5, cap), None);
        assert_eq!(login_delay(6, 5, cap), Some(Duration::from_secs(1)));
        assert_eq!(login_delay(7, 5, cap), Some(Duration::from_secs(2)));
        assert_eq!(login_delay(10, 5, cap), Some(Duration::from_secs(16)));
        assert_eq!(login_delay(40, 5, cap), Some(cap));
        assert_eq!(login_delay(u32::MAX, 0, cap), Some(cap));
    }
}
