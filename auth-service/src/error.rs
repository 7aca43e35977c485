//! The one error type of auth-service and its one mapping to `tonic::Status`.

use pair_common::status::{FieldViolation, bad_request};
use tonic::Status;
use tonic_types::StatusExt as _;

/// The retry delay sent with a full hashing queue: a few hashes' time, rounded up.
const OVERLOADED_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Everything a call can end with besides success. Expected outcomes are variants;
/// the unexpected is `Internal`, whose cause is logged and never sent to the client.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid request")]
    Validation(Vec<FieldViolation>),
    #[error("{0} is already taken")]
    AlreadyExists(&'static str),
    /// Wrong username or password: one message for both, so usernames cannot be probed.
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Too many failed logins for this username or from this address: retry after the
    /// delay.
    #[error("too many failed logins; retry in {} s", .0.as_secs().max(1))]
    Throttled(std::time::Duration),
    /// The password hashing queue is full.
    #[error("too many password checks in progress; retry shortly")]
    Overloaded,
    /// The client's address is over its share of password hashing (`admission`): retry
    /// after the delay. Decided before any user is looked up.
    #[error("too many password checks from this address; retry in {} s", .0.as_secs().max(1))]
    RateLimited(std::time::Duration),
    #[error("a store is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AuthError {
    /// A single bad field.
    pub fn invalid(field: &'static str, description: impl Into<String>) -> Self {
        Self::Validation(vec![FieldViolation::new(field, description)])
    }
}

/// Failures of a store (user database or token store), before they get a meaning.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique index refused the write; the field is `username` or `email`.
    #[error("{0} is already taken")]
    Conflict(&'static str),
    /// The store could not be reached or did not answer in time.
    #[error("store unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("store failure")]
    Other(#[source] anyhow::Error),
}

impl From<StoreError> for AuthError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(field) => Self::AlreadyExists(field),
            StoreError::Unavailable(cause) => Self::Unavailable(cause),
            StoreError::Other(cause) => Self::Internal(cause),
        }
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Validation(violations) => bad_request(&violations),
            AuthError::AlreadyExists(_) => Status::already_exists(error.to_string()),
            AuthError::InvalidCredentials | AuthError::Unauthenticated(_) => {
                Status::unauthenticated(error.to_string())
            }
            AuthError::NotFound(_) => Status::not_found(error.to_string()),
            AuthError::Overloaded => Status::with_error_details(
                tonic::Code::ResourceExhausted,
                error.to_string(),
                tonic_types::ErrorDetails::with_retry_info(Some(OVERLOADED_RETRY)),
            ),
            AuthError::Throttled(delay) | AuthError::RateLimited(delay) => {
                Status::with_error_details(
                    tonic::Code::ResourceExhausted,
                    error.to_string(),
                    tonic_types::ErrorDetails::with_retry_info(Some(delay)),
                )
            }
            AuthError::Unavailable(cause) => {
                tracing::warn!(error = format!("{cause:#}"), "store unavailable");
                Status::unavailable("a backing store is unavailable; retry shortly")
            }
            AuthError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                Status::internal("internal error")
            }
        }
    }
}
