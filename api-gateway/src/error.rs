//! The one way a failure becomes an HTTP answer: JSON `{"detail": …}` with the status of
//! the gRPC code (README: "The REST API by example"), FastAPI's shape for validation errors.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;
use utoipa::ToSchema;

/// How long a throttled client is told to wait when the service did not say.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// An error answer with a message: `{"detail": "…"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorMessage {
    /// What went wrong, in words a client can show.
    pub detail: String,
}

/// A validation error answer (422), FastAPI's shape: one entry per bad field.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationErrors {
    pub detail: Vec<FieldError>,
}

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Where the field is: `["body", "<field>"]`, `["path", "id"]`,
    /// `["query", "<name>"]`, `["header", "authorization"]`; `["body"]` for the body
    /// as a whole.
    pub loc: Vec<String>,
    /// Why it was refused.
    pub msg: String,
    /// A machine-readable kind: `missing`, `extra_forbidden`, `string_type`,
    /// `json_invalid`, `uuid_parsing`, `int_parsing`, `value_error`, …
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    pub fn new(loc: &[&str], msg: impl Into<String>, kind: &str) -> Self {
        Self {
            loc: loc.iter().map(|part| (*part).to_owned()).collect(),
            msg: msg.into(),
            kind: kind.to_owned(),
        }
    }
}

/// Everything a request can fail with.
#[derive(Debug)]
pub enum ApiError {
    /// A service answered with an error status.
    Upstream(Status),
    /// The request itself is malformed: 422 with one entry per problem.
    Invalid(Vec<FieldError>),
    /// No usable bearer token.
    Unauthenticated(String),
    /// The body is larger than the limit.
    TooLarge(usize),
    /// The body is not declared as JSON.
    UnsupportedMediaType,
    /// The body could not be read.
    BadRequest(String),
    NotFound,
    MethodNotAllowed,
    /// Something that should not happen; the cause is logged, never sent.
    Internal(String),
}

impl ApiError {
    pub fn invalid(loc: &[&str], msg: impl Into<String>, kind: &str) -> Self {
        Self::Invalid(vec![FieldError::new(loc, msg, kind)])
    }

    /// A service's answer lacked something it always sends.
    pub fn incomplete(what: &str) -> Self {
        Self::Internal(format!("a service answered without {what}"))
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        Self::Upstream(status)
    }
}

/// Where a field a service names lives in the HTTP request.
fn location(field: &str) -> Vec<String> {
    let loc: [&str; 2] = match field {
        "id" | "session_id" => ["path", "id"],
        "page_size" | "page_token" | "author_id" => ["query", field],
        "token" | "refresh_token" => ["header", "authorization"],
        // The homework calls a post's text its description.
        "content" => ["body", "description"],
        other => ["body", other],
    };
    loc.map(str::to_owned).to_vec()
}

/// The field violations of an INVALID_ARGUMENT, one entry each.
fn violations(status: &Status) -> Vec<FieldError> {
    let found: Vec<FieldError> = status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|v| FieldError {
                    loc: location(&v.field),
                    msg: v.description,
                    kind: "value_error".into(),
                })
                .collect()
        })
        .unwrap_or_default();
    if found.is_empty() {
        vec![FieldError::new(&["body"], status.message(), "value_error")]
    } else {
        found
    }
}

/// Whole seconds to wait, from the service's RetryInfo when it sent one.
fn retry_after(status: &Status) -> u64 {
    let delay = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .unwrap_or(DEFAULT_RETRY_AFTER);
    // Rounded up: retrying early would only be throttled again.
    (delay.as_secs() + u64::from(delay.subsec_nanos() > 0)).max(1)
}

/// `body` as a JSON answer with `status`.
pub fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn message(status: StatusCode, detail: impl Into<String>) -> Response {
    json(
        status,
        &ErrorMessage {
            detail: detail.into(),
        },
    )
}

fn unauthenticated(detail: impl Into<String>) -> Response {
    let mut response = message(StatusCode::UNAUTHORIZED, detail);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn internal(cause: &str) -> Response {
    tracing::error!(cause, "request failed");
    message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
}

fn upstream(status: &Status) -> Response {
    match status.code() {
        Code::InvalidArgument => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &ValidationErrors {
                detail: violations(status),
            },
        ),
        Code::Unauthenticated => unauthenticated(status.message()),
        Code::PermissionDenied => message(StatusCode::FORBIDDEN, status.message()),
        Code::NotFound => message(StatusCode::NOT_FOUND, status.message()),
        Code::AlreadyExists => message(StatusCode::CONFLICT, status.message()),
        Code::ResourceExhausted => {
            let mut response = message(StatusCode::TOO_MANY_REQUESTS, status.message());
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after(status)));
            response
        }
        Code::Unavailable => {
            // The cause (a connection error, a store outage) is for the log only.
            tracing::warn!(cause = status.message(), "a service is unavailable");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service temporarily unavailable; try again",
            )
        }
        // tonic reports its own deadline as CANCELLED.
        Code::DeadlineExceeded | Code::Cancelled => {
            tracing::warn!(cause = status.message(), "a service did not answer in time");
            message(
                StatusCode::GATEWAY_TIMEOUT,
                "The service did not answer in time",
            )
        }
        Code::Unimplemented => {
            tracing::warn!(cause = status.message(), "a service lacks a call");
            message(
                StatusCode::NOT_IMPLEMENTED,
                "Not implemented by the service",
            )
        }
        code => internal(&format!("{code:?}: {}", status.message())),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Upstream(status) => upstream(&status),
            Self::Invalid(errors) => json(
                StatusCode::UNPROCESSABLE_ENTITY,
                &ValidationErrors { detail: errors },
            ),
            Self::Unauthenticated(detail) => unauthenticated(detail),
            Self::TooLarge(limit) => message(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body too large: at most {limit} bytes"),
            ),
            Self::UnsupportedMediaType => message(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "The body must be JSON (Content-Type: application/json)",
            ),
            Self::BadRequest(detail) => message(StatusCode::BAD_REQUEST, detail),
            Self::NotFound => message(StatusCode::NOT_FOUND, "Not Found"),
            Self::MethodNotAllowed => message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
            Self::Internal(cause) => internal(&cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(error: ApiError) -> StatusCode {
        error.into_response().status()
    }

    #[test]
    fn each_grpc_code_has_its_http_status() {
        for (code, http) in [
            (Code::InvalidArgument, 422),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::ResourceExhausted, 429),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Internal, 500),
            (Code::Unknown, 500),
            (Code::DataLoss, 500),
        ] {
            assert_eq!(
                status_of(Status::new(code, "x").into()).as_u16(),
                http,
                "{code:?}"
            );
        }
    }

    #[test]
    fn unauthenticated_answers_say_bearer() {
        let response = ApiError::from(Status::unauthenticated("no")).into_response();
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    #[test]
    fn a_throttled_call_says_when_to_retry_rounded_up() {
        let details =
            tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_millis(2_500)));
        let status = Status::with_error_details(Code::ResourceExhausted, "slow down", details);
        assert_eq!(retry_after(&status), 3);
        assert_eq!(retry_after(&Status::resource_exhausted("busy")), 1);
        let response = ApiError::from(status).into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn field_violations_are_placed_where_the_client_sent_them() {
        let details = tonic_types::ErrorDetails::with_bad_request(vec![
            tonic_types::FieldViolation::new("content", "must not be empty"),
            tonic_types::FieldViolation::new("page_size", "must not be negative"),
            tonic_types::FieldViolation::new("id", "not a UUID"),
        ]);
        let status = Status::with_error_details(Code::InvalidArgument, "bad", details);
        let locs: Vec<Vec<String>> = violations(&status).into_iter().map(|v| v.loc).collect();
        assert_eq!(
            locs,
            [
                ["body", "description"],
                ["query", "page_size"],
                ["path", "id"]
            ]
        );
    }

    #[test]
    fn internal_errors_say_nothing_of_the_cause() {
        let response =
            ApiError::from(Status::internal("password hash db at 10.0.0.3")).into_response();
        assert_eq!(response.status(), 500);
    }
}
