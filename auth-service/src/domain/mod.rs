//! The domain of auth-service: validated values (docs/ARCHITECTURE.md, "The pair and its layers") and the user they make.

mod common_passwords;
mod credentials;

pub use credentials::{
    Email, NewUser, Password, Username, check_login, parse_password_change, parse_profile_change,
    parse_registration,
};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A UUID from a request field (a session id), or why it is not one.
pub fn parse_id(raw: &str) -> Result<Uuid, String> {
    Uuid::try_parse(raw).map_err(|_| "must be a UUID".to_owned())
}

/// A stored user, as the rest of the service sees it. The hash stays in the store layer
/// except where a password is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// A user with the PHC string of their password hash, for Login and ChangePassword.
#[derive(Clone)]
pub struct UserWithHash {
    pub user: User,
    pub password_hash: String,
}

impl std::fmt::Debug for UserWithHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserWithHash")
            .field("user", &self.user)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}
