//! The token store: live sessions (the current refresh token of each, naming its access
//! twin) and blocked access tokens (DESIGN.md §4).

use async_trait::async_trait;
use uuid::Uuid;

use crate::{error::StoreError, tokens::Claims};

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

/// The outcome of trying to rotate a session's pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The new pair is now the session's; the old one is dead.
    Rotated,
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

    /// Replaces the session's pair if `expected_refresh` (a refresh token id) is still its
    /// current one. Otherwise, when `reuse_is_theft`, the session is revoked (`Reused`).
    async fn rotate(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        expected_refresh: Uuid,
        next_access: &Claims,
        next_refresh: &Claims,
        reuse_is_theft: bool,
    ) -> Result<Rotation, StoreError>;

    /// Revokes one session; false if it was not live.
    async fn revoke_session(&self, user_id: Uuid, session_id: Uuid) -> Result<bool, StoreError>;

    /// Revokes every session of the user but `except`; returns how many it revoked.
    async fn revoke_all(&self, user_id: Uuid, except: Option<Uuid>) -> Result<u32, StoreError>;

    /// The user's live sessions, newest first.
    async fn list_sessions(&self, user_id: Uuid) -> Result<Vec<SessionInfo>, StoreError>;

    /// Records a new username for Introspect of the user's live sessions.
    async fn set_username(&self, user_id: Uuid, username: &str) -> Result<(), StoreError>;

    /// Succeeds while the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
}
