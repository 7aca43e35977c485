//! The JSON the API speaks, in the homework's names, and the conversions from the gRPC
//! messages. Times are RFC 3339 in UTC.

use chrono::SecondsFormat;
use pair_proto::{auth::v1 as auth, blog::v1 as blog};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{error::ApiError, extract::BodyFields};

/// A time of the wire as RFC 3339 (`2026-11-29T20:15:03.123456Z`).
pub fn rfc3339(time: Option<prost_types::Timestamp>) -> Result<String, ApiError> {
    let time = time.ok_or_else(|| ApiError::incomplete("a time"))?;
    pair_common::time::from_timestamp(time)
        .map(|time| time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .ok_or_else(|| ApiError::incomplete("a valid time"))
}

/// A user. Never a password or a hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    /// The user's id.
    #[schema(format = Uuid)]
    pub uuid: String,
    pub username: String,
    pub email: String,
    /// Always false: the pair has no superusers.
    pub is_superuser: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl TryFrom<Option<auth::User>> for User {
    type Error = ApiError;

    fn try_from(user: Option<auth::User>) -> Result<Self, ApiError> {
        let user = user.ok_or_else(|| ApiError::incomplete("a user"))?;
        Ok(Self {
            uuid: user.id,
            username: user.username,
            email: user.email,
            is_superuser: false,
            created_at: rfc3339(user.create_time)?,
            updated_at: rfc3339(user.update_time)?,
        })
    }
}

/// `POST /signup`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupBody {
    /// 3-32 characters: ASCII letters, digits, `.`, `_`, `-`, starting with a letter or
    /// a digit; unique case-insensitively.
    #[schema(
        min_length = 3,
        max_length = 32,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{2,31}$"
    )]
    pub username: String,
    /// An email address of at most 254 characters; unique case-insensitively.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 8-1024 characters, not a common password, not containing the username.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
}

impl BodyFields for SignupBody {
    const FIELDS: &'static [(&'static str, bool)] =
        &[("username", true), ("email", true), ("password", true)];
}

/// The answer of `POST /signup`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignupAnswer {
    pub msg: String,
    pub user: User,
}

/// `POST /login`: JSON, or a form as OAuth2 password-flow clients send it (other form
/// fields, such as `grant_type`, are ignored).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub username: String,
    pub password: String,
}

impl BodyFields for LoginBody {
    const FIELDS: &'static [(&'static str, bool)] = &[("username", true), ("password", true)];
    const FORM: bool = true;
}

/// A token pair: the answer of `POST /login` (with the user), `POST /refresh` and
/// `POST /users/me/password`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tokens {
    /// Sent as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Sent as `Authorization: Bearer <refresh_token>` to `POST /refresh` only.
    pub refresh_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// When the access token expires.
    #[schema(format = DateTime)]
    pub access_expires_at: String,
    /// When the refresh token (and with it the session, unless refreshed) expires.
    #[schema(format = DateTime)]
    pub refresh_expires_at: String,
    /// The user who logged in (login only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
}

impl Tokens {
    pub fn from_pair(pair: Option<auth::TokenPair>, user: Option<User>) -> Result<Self, ApiError> {
        let pair = pair.ok_or_else(|| ApiError::incomplete("tokens"))?;
        let expires_in = pair
            .access_expire_time
            .map_or(0, |at| (at.seconds - chrono::Utc::now().timestamp()).max(0));
        Ok(Self {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: "bearer".into(),
            expires_in,
            access_expires_at: rfc3339(pair.access_expire_time)?,
            refresh_expires_at: rfc3339(pair.refresh_expire_time)?,
            user,
        })
    }
}

/// `PATCH /users/me`: at least one field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    #[schema(
        min_length = 3,
        max_length = 32,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{2,31}$"
    )]
    pub username: Option<String>,
    #[schema(format = Email, max_length = 254)]
    pub email: Option<String>,
}

impl BodyFields for ProfileBody {
    const FIELDS: &'static [(&'static str, bool)] = &[("username", false), ("email", false)];
}

/// The answer of `PATCH /users/me`: the user and the session's new token pair (the old
/// one stops working at once).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileAnswer {
    pub msg: String,
    pub user: User,
    pub access_token: String,
    pub refresh_token: String,
    /// Always `bearer`.
    pub token_type: String,
}

/// `POST /users/me/password`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    pub current_password: String,
    #[schema(min_length = 8, max_length = 1024)]
    pub new_password: String,
}

impl BodyFields for PasswordBody {
    const FIELDS: &'static [(&'static str, bool)] =
        &[("current_password", true), ("new_password", true)];
}

/// A plain confirmation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    pub msg: String,
}

/// The answer of `POST /logout_all`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogoutAllAnswer {
    pub msg: String,
    /// How many sessions were ended, the calling one included.
    pub revoked_sessions: i32,
}

/// A login session.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    #[schema(format = Uuid)]
    pub id: String,
    /// When the session was opened (at login).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it ends unless its refresh token is used before.
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// The `User-Agent` of the login that opened it.
    pub user_agent: String,
    /// True for the session of the calling token.
    pub current: bool,
}

impl TryFrom<auth::Session> for Session {
    type Error = ApiError;

    fn try_from(session: auth::Session) -> Result<Self, ApiError> {
        Ok(Self {
            id: session.id,
            created_at: rfc3339(session.create_time)?,
            expires_at: rfc3339(session.expire_time)?,
            user_agent: session.user_agent,
            current: session.current,
        })
    }
}

/// The answer of `GET /sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Sessions {
    pub sessions: Vec<Session>,
}

/// A blog post.
#[derive(Debug, Serialize, ToSchema)]
pub struct Post {
    #[schema(format = Uuid)]
    pub id: String,
    pub title: String,
    /// The post's text.
    pub description: String,
    #[schema(format = Uuid)]
    pub author_id: String,
    /// The author's current username.
    pub author_username: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl TryFrom<Option<blog::Post>> for Post {
    type Error = ApiError;

    fn try_from(post: Option<blog::Post>) -> Result<Self, ApiError> {
        let post = post.ok_or_else(|| ApiError::incomplete("a post"))?;
        Ok(Self {
            id: post.id,
            title: post.title,
            description: post.content,
            author_id: post.author_id,
            author_username: post.author_username,
            created_at: rfc3339(post.create_time)?,
            updated_at: rfc3339(post.update_time)?,
        })
    }
}

/// A page of posts, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PostPage {
    pub posts: Vec<Post>,
    /// Pass as `page_token` for the next page; null on the last page.
    pub next_page_token: Option<String>,
}

/// `POST /posts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPostBody {
    /// 1-200 characters after trimming.
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// The post's text: 1-50,000 characters.
    #[schema(min_length = 1, max_length = 50000)]
    pub description: String,
}

impl BodyFields for NewPostBody {
    const FIELDS: &'static [(&'static str, bool)] = &[("title", true), ("description", true)];
}

/// `PATCH /posts/{id}`: changes only the fields given, at least one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostPatchBody {
    #[schema(min_length = 1, max_length = 200)]
    pub title: Option<String>,
    #[schema(min_length = 1, max_length = 50000)]
    pub description: Option<String>,
}

impl BodyFields for PostPatchBody {
    const FIELDS: &'static [(&'static str, bool)] = &[("title", false), ("description", false)];
}

/// The answer of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `SERVING` when both services serve, else `NOT_SERVING`.
    pub status: String,
    /// auth-service's health: `SERVING`, `NOT_SERVING` or `UNREACHABLE`.
    pub auth: String,
    /// blog-service's health, the same way.
    pub blog: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_rfc3339_in_utc() {
        let time = prost_types::Timestamp {
            seconds: 1_764_447_303,
            nanos: 123_456_000,
        };
        assert_eq!(rfc3339(Some(time)).unwrap(), "2025-11-29T20:15:03.123456Z");
        assert!(rfc3339(None).is_err());
    }
}
