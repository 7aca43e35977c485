//! What a call's status says, in the words both services use: field violations as a
//! `google.rpc.BadRequest`, and the bearer token of a call (RFC 6750).

use tonic::{Code, Status, metadata::MetadataMap};
use tonic_types::{ErrorDetails, StatusExt};

/// One field that failed validation, and why, in words a client can show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: &'static str,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: &'static str, description: impl Into<String>) -> Self {
        Self {
            field,
            description: description.into(),
        }
    }
}

/// INVALID_ARGUMENT carrying one `BadRequest` field violation per bad field.
pub fn bad_request(violations: &[FieldViolation]) -> Status {
    let message = violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ");
    let details = ErrorDetails::with_bad_request(
        violations
            .iter()
            .map(|v| tonic_types::FieldViolation::new(v.field, v.description.clone()))
            .collect::<Vec<_>>(),
    );
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// The token of an `authorization` value `Bearer <token>` (scheme case-insensitive,
/// RFC 6750), or `None` for any other form.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Why a call carries no bearer token; each service answers it UNAUTHENTICATED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub enum BearerError {
    /// No `authorization` metadata, or a value that is not visible ASCII.
    Missing,
    Malformed,
}

impl BearerError {
    /// The message the client is told.
    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => {
                "missing authorization metadata: send `authorization: Bearer <access_token>`"
            }
            Self::Malformed => "authorization metadata must be `Bearer <access_token>`",
        }
    }
}

/// The bearer token of a gRPC call's `authorization` metadata: what the adapters hand
/// their cores, which never read metadata themselves.
pub fn bearer(metadata: &MetadataMap) -> Result<&str, BearerError> {
    let header = metadata
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .ok_or(BearerError::Missing)?;
    bearer_token(header).ok_or(BearerError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_header_whatever_the_scheme_case() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("abc"), None);
        assert_eq!(bearer_token(""), None);
    }

    #[test]
    fn metadata_without_a_bearer_token_says_whether_it_was_missing_or_malformed() {
        let mut metadata = MetadataMap::new();
        assert_eq!(bearer(&metadata), Err(BearerError::Missing));
        metadata.insert("authorization", "Basic abc".parse().expect("ascii"));
        assert_eq!(bearer(&metadata), Err(BearerError::Malformed));
        metadata.insert("authorization", "Bearer abc".parse().expect("ascii"));
        assert_eq!(bearer(&metadata), Ok("abc"));
    }

    #[test]
    fn every_violation_is_in_the_message_and_the_details() {
        let status = bad_request(&[
            FieldViolation::new("username", "is too short"),
            FieldViolation::new("email", "is not an address"),
        ]);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "username: is too short; email: is not an address"
        );
        let details = status.get_error_details();
        let fields: Vec<_> = details
            .bad_request()
            .expect("a BadRequest")
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["username", "email"]);
    }
}
