//! The one error type of blog-service and its one mapping to `tonic::Status`.

use pair_common::status::{FieldViolation, bad_request};
use tonic::Status;

/// Everything a call can end with besides success. Expected outcomes are variants;
/// the unexpected is `Internal`, whose cause is logged and never sent to the client.
#[derive(Debug, thiserror::Error)]
pub enum BlogError {
    #[error("invalid request")]
    Validation(Vec<FieldViolation>),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("only the author of a post may change or delete it")]
    PermissionDenied,
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The post database or auth-service could not be reached or did not answer in time.
    #[error("a backing service is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl BlogError {
    /// A single bad field.
    pub fn invalid(field: &'static str, description: impl Into<String>) -> Self {
        Self::Validation(vec![FieldViolation::new(field, description)])
    }
}

/// Failures of the post store, before they get a meaning.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or did not answer in time.
    #[error("post store unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("post store failure")]
    Other(#[source] anyhow::Error),
}

impl From<StoreError> for BlogError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => Self::Unavailable(cause),
            StoreError::Other(cause) => Self::Internal(cause),
        }
    }
}

impl From<BlogError> for Status {
    fn from(error: BlogError) -> Self {
        match error {
            BlogError::Validation(violations) => bad_request(&violations),
            BlogError::Unauthenticated(_) => Status::unauthenticated(error.to_string()),
            BlogError::PermissionDenied => Status::permission_denied(error.to_string()),
            BlogError::NotFound(_) => Status::not_found(error.to_string()),
            BlogError::Unavailable(cause) => {
                tracing::warn!(error = format!("{cause:#}"), "backing service unavailable");
                Status::unavailable("a backing service is unavailable; retry shortly")
            }
            BlogError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn internal_errors_never_reach_the_client() {
        let status = Status::from(BlogError::Internal(anyhow::anyhow!("secret detail")));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }

    #[test]
    fn outages_are_unavailable_without_their_cause() {
        let status = Status::from(BlogError::Unavailable(anyhow::anyhow!(
            "10.0.0.7:5432 refused"
        )));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("10.0.0.7"));
    }

    #[test]
    fn validation_failures_carry_one_violation_per_field() {
        use tonic_types::StatusExt as _;
        let status = Status::from(BlogError::Validation(vec![
            FieldViolation::new("title", "must not be empty"),
            FieldViolation::new("content", "must not be empty"),
        ]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let fields: Vec<String> = status
            .get_details_bad_request()
            .unwrap()
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["title", "content"]);
    }
}
