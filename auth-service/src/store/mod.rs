//! Storage behind small traits: `UserStore` (PostgreSQL or SQLite) and `TokenStore`
//! (Redis or in-process). The backend is chosen once, at start, from the URL.

mod memory;
mod redis;
pub mod sessions;
mod sql;
mod tracked;

pub use self::memory::MemoryTokenStore;
pub use self::redis::{RedisOptions, RedisTarget, RedisTokenStore};
pub use self::sql::{MIGRATIONS, SqlUserStore};
pub use self::tracked::CONNECTION_NAME as TRACKING_CONNECTION_NAME;
pub use sessions::{NewSession, PairRotation, Rotation, SessionInfo, TokenStore};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    domain::{Email, User, UserWithHash, Username},
    error::StoreError,
};

/// User accounts. Usernames and emails are unique case-insensitively, enforced by the
/// store's unique indexes (a conflicting write is `StoreError::Conflict`).
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    async fn insert(&self, user: &User, password_hash: &str) -> Result<(), StoreError>;
    async fn find_by_username(&self, username: &str) -> Result<Option<UserWithHash>, StoreError>;
    async fn find_by_id(&self, id: Uuid) -> Result<Option<UserWithHash>, StoreError>;
    /// Sets the given fields; `None` if the user is gone.
    async fn update_profile(
        &self,
        id: Uuid,
        username: Option<&Username>,
        email: Option<&Email>,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError>;
    /// Replaces the password hash; false if the user is gone.
    async fn set_password_hash(
        &self,
        id: Uuid,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Succeeds while the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
}
