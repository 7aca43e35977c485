//! `UserStore` on SQL: PostgreSQL or SQLite, the same queries for both.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pair_common::{
    sql::{Migrations, SqlPool, is_unavailable},
    with_pool,
};
use sqlx::Row;
use uuid::Uuid;

use super::UserStore;
use crate::{
    domain::{Email, User, UserWithHash, Username},
    error::StoreError,
};

/// The auth-service schema, per backend.
pub static MIGRATIONS: Migrations = Migrations {
    postgres: &sqlx::migrate!("../migrations/auth/postgres"),
    sqlite: &sqlx::migrate!("../migrations/auth/sqlite"),
};

/// Users in a SQL database; unique indexes on `lower(username)` and `lower(email)`.
#[derive(Clone, Debug)]
pub struct SqlUserStore {
    pool: SqlPool,
}

impl SqlUserStore {
    pub fn new(pool: SqlPool) -> Self {
        Self { pool }
    }
}

fn classify(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error
        && db.is_unique_violation()
    {
        // PostgreSQL names the index; SQLite names it in the message.
        let index = db
            .constraint()
            .map_or_else(|| db.message().to_owned(), str::to_owned);
        return StoreError::Conflict(if index.contains("email") {
            "email"
        } else {
            "username"
        });
    }
    if is_unavailable(&error) {
        StoreError::Unavailable(error.into())
    } else {
        StoreError::Other(error.into())
    }
}

fn user_from_row<R>(row: &R) -> Result<UserWithHash, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> Uuid: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> DateTime<Utc>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(UserWithHash {
        user: User {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            email: row.try_get("email")?,
            create_time: row.try_get("create_time")?,
            update_time: row.try_get("update_time")?,
        },
        password_hash: row.try_get("password_hash")?,
    })
}

const INSERT: &str = "INSERT INTO users (id, username, email, password_hash, create_time, update_time) \
     VALUES ($1, $2, $3, $4, $5, $6)";
const BY_USERNAME: &str = "SELECT id, username, email, password_hash, create_time, update_time \
     FROM users WHERE lower(username) = lower($1)";
const BY_ID: &str = "SELECT id, username, email, password_hash, create_time, update_time \
     FROM users WHERE id = $1";
const UPDATE_PROFILE: &str = "UPDATE users SET username = COALESCE($2, username), \
     email = COALESCE($3, email), update_time = $4 WHERE id = $1 \
     RETURNING id, username, email, password_hash, create_time, update_time";
const SET_PASSWORD: &str = "UPDATE users SET password_hash = $2, update_time = $3 WHERE id = $1";

#[async_trait]
impl UserStore for SqlUserStore {
    async fn insert(&self, user: &User, password_hash: &str) -> Result<(), StoreError> {
        with_pool!(write &self.pool, conn => sqlx::query(INSERT)
            .bind(user.id)
            .bind(&user.username)
            .bind(&user.email)
            .bind(password_hash)
            .bind(user.create_time)
            .bind(user.update_time)
            .execute(conn)
            .await
            .map(drop))
        .map_err(classify)
    }

    async fn find_by_username(&self, username: &str) -> Result<Option<UserWithHash>, StoreError> {
        with_pool!(&self.pool, conn => sqlx::query(BY_USERNAME)
            .bind(username)
            .fetch_optional(conn)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose())
        .map_err(classify)
    }

    async fn find_by_id(&self, id: Uuid) -> Result<Option<UserWithHash>, StoreError> {
        with_pool!(&self.pool, conn => sqlx::query(BY_ID)
            .bind(id)
            .fetch_optional(conn)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose())
        .map_err(classify)
    }

    async fn update_profile(
        &self,
        id: Uuid,
        username: Option<&Username>,
        email: Option<&Email>,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError> {
        let found = with_pool!(write &self.pool, conn => sqlx::query(UPDATE_PROFILE)
            .bind(id)
            .bind(username.map(Username::as_str))
            .bind(email.map(Email::as_str))
            .bind(now)
            .fetch_optional(conn)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose())
        .map_err(classify)?;
        Ok(found.map(|found| found.user))
    }

    async fn set_password_hash(
        &self,
        id: Uuid,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        with_pool!(write &self.pool, conn => sqlx::query(SET_PASSWORD)
            .bind(id)
            .bind(password_hash)
            .bind(now)
            .execute(conn)
            .await
            .map(|done| done.rows_affected() == 1))
        .map_err(classify)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.pool.ping().await.map_err(classify)
    }
}
