//! Reading a request: JSON bodies, the bearer token, path ids and the posts query, each
//! refusing bad input with a 4xx JSON answer (never a 500), and the metadata passed on to
//! the services.

use std::net::SocketAddr;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Path, RawQuery, Request},
};
use http::{HeaderMap, StatusCode, header, request::Parts};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::error::{ApiError, FieldError};

/// Largest body accepted: a post's 50,000 characters, JSON-escaped, fit with room.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// A JSON body's fields, for the checks made before deserializing: `(name, required)`.
/// Every field of every body is a string.
pub trait BodyFields {
    const FIELDS: &'static [(&'static str, bool)];
    /// Whether an HTML form (`application/x-www-form-urlencoded`) is accepted too, as
    /// OAuth2 password-flow clients send a login; its other fields (`grant_type`,
    /// `scope`, …) are ignored.
    const FORM: bool = false;
}

/// A JSON object body with exactly the fields of `T`: unknown fields, missing ones and
/// values that are not strings are each reported, all at once.
pub struct JsonBody<T>(pub T);

/// How a body is encoded, from its Content-Type.
#[derive(Debug, PartialEq, Eq)]
enum Encoding {
    Json,
    Form,
    Other,
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + BodyFields,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let encoding = encoding(request.headers());
        if encoding == Encoding::Other || (encoding == Encoding::Form && !T::FORM) {
            return Err(ApiError::UnsupportedMediaType);
        }
        // A body declared too large is refused before a byte of it is read, so the
        // client gets the 413 instead of a reset while it is still sending (and one
        // that waits for `100 Continue` never sends it).
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
            return Err(ApiError::TooLarge(MAX_BODY_BYTES));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge(MAX_BODY_BYTES)
                } else {
                    ApiError::BadRequest(rejection.body_text())
                }
            })?;
        match encoding {
            Encoding::Form => parse_form(&bytes).map(JsonBody),
            _ => parse_body(&bytes).map(JsonBody),
        }
    }
}

/// No Content-Type (curl without -H, some scripts) is read as JSON.
fn encoding(headers: &HeaderMap) -> Encoding {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Encoding::Json;
    };
    let Ok(value) = value.to_str() else {
        return Encoding::Other;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
    {
        Encoding::Json
    } else if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Encoding::Form
    } else {
        Encoding::Other
    }
}

/// The checks of [`JsonBody`] on a form: the fields of `T` are taken, others ignored.
pub fn parse_form<T: DeserializeOwned + BodyFields>(bytes: &[u8]) -> Result<T, ApiError> {
    let object: serde_json::Map<String, Value> = form_urlencoded::parse(bytes)
        .filter(|(name, _)| T::FIELDS.iter().any(|(field, _)| field == name))
        .map(|(name, value)| (name.into_owned(), Value::String(value.into_owned())))
        .collect();
    check_object(object)
}

/// The checks of [`JsonBody`], on the body's bytes.
pub fn parse_body<T: DeserializeOwned + BodyFields>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|error| {
        ApiError::invalid(
            &["body"],
            format!("JSON decode error: {error}"),
            "json_invalid",
        )
    })?;
    let Value::Object(object) = value else {
        return Err(ApiError::invalid(
            &["body"],
            "Input should be a JSON object",
            "model_attributes_type",
        ));
    };
    check_object(object)
}

fn check_object<T: DeserializeOwned + BodyFields>(
    object: serde_json::Map<String, Value>,
) -> Result<T, ApiError> {
    let mut errors = Vec::new();
    for key in object.keys() {
        if !T::FIELDS.iter().any(|(name, _)| name == key) {
            errors.push(FieldError::new(
                &["body", key],
                "Extra inputs are not permitted",
                "extra_forbidden",
            ));
        }
    }
    for (name, required) in T::FIELDS {
        match object.get(*name) {
            None if *required => {
                errors.push(FieldError::new(
                    &["body", name],
                    "Field required",
                    "missing",
                ));
            }
            None | Some(Value::String(_)) => {}
            Some(Value::Null) if !*required => {}
            Some(_) => errors.push(FieldError::new(
                &["body", name],
                "Input should be a valid string",
                "string_type",
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    serde_json::from_value(Value::Object(object))
        .map_err(|error| ApiError::invalid(&["body"], error.to_string(), "value_error"))
}

/// The metadata every call carries on to a service: the caller's `user-agent` and
/// `traceparent`, and its address for the per-address login throttle.
#[derive(Debug, Clone)]
pub struct Caller {
    metadata: MetadataMap,
}

impl Caller {
    /// `message` as a gRPC request carrying the caller's metadata.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = self.metadata.clone();
        request
    }
}

/// `X-Forwarded-For` as the services read it: what the client's own proxies said, then
/// the address this gateway saw (RFC 7239's order: rightmost is nearest).
fn forwarded_for(headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<String> {
    let mut hops: Vec<String> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|hop| !hop.is_empty())
        .map(str::to_owned)
        .collect();
    hops.extend(peer.map(|peer| peer.ip().to_string()));
    (!hops.is_empty()).then(|| hops.join(", "))
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let mut metadata = MetadataMap::new();
        for name in ["user-agent", "traceparent", "tracestate"] {
            let value = parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| MetadataValue::try_from(value).ok());
            if let Some(value) = value {
                metadata.insert(name, value);
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0);
        if let Some(value) = forwarded_for(&parts.headers, peer)
            .and_then(|value| MetadataValue::try_from(value.as_str()).ok())
        {
            metadata.insert("x-forwarded-for", value);
        }
        Ok(Self { metadata })
    }
}

/// A caller with a bearer token (`Authorization: Bearer <token>`), passed on as the
/// gRPC `authorization` metadata.
#[derive(Debug, Clone)]
pub struct Authed {
    caller: Caller,
    token: String,
}

impl Authed {
    /// The bare token (for Refresh, which takes it in its message).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `message` as a gRPC request with the caller's metadata and the token.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = self.caller.request(message);
        if let Ok(value) = MetadataValue::try_from(format!("Bearer {}", self.token)) {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthenticated("Not authenticated".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(pair_common::status::bearer_token)
            // A token is visible ASCII (JWTs are base64url and dots).
            .filter(|token| token.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "Invalid Authorization header: expected `Bearer <token>`".into(),
                )
            })?;
        let token = token.to_owned();
        let caller = Caller::from_request_parts(parts, state).await?;
        Ok(Self { caller, token })
    }
}

/// The `{id}` of a path, a UUID, in its canonical form.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                ApiError::invalid(&["path", "id"], rejection.body_text(), "value_error")
            })?;
        let id = uuid::Uuid::parse_str(&raw).map_err(|_| {
            ApiError::invalid(
                &["path", "id"],
                "Input should be a valid UUID",
                "uuid_parsing",
            )
        })?;
        Ok(Self(id.hyphenated().to_string()))
    }
}

/// The query of `GET /posts`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PostsQuery {
    pub page_size: i32,
    pub page_token: String,
    pub author_id: Option<String>,
}

impl PostsQuery {
    /// Reads `page_size`, `page_token` and `author_id`; other parameters are ignored. A
    /// page size that is not a whole number of at most 2^31 - 1, a negative one, or an
    /// author id that is not a UUID is refused.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let mut parsed = Self::default();
        let mut errors = Vec::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "page_size" if value.is_empty() => parsed.page_size = 0,
                "page_size" => match value.trim().parse::<i32>() {
                    Ok(size) if size >= 0 => parsed.page_size = size,
                    Ok(_) => errors.push(FieldError::new(
                        &["query", "page_size"],
                        "Input should be greater than or equal to 0",
                        "greater_than_equal",
                    )),
                    Err(_) => errors.push(FieldError::new(
                        &["query", "page_size"],
                        "Input should be a valid integer of at most 2147483647",
                        "int_parsing",
                    )),
                },
                "page_token" => parsed.page_token = value.into_owned(),
                "author_id" if value.is_empty() => parsed.author_id = None,
                "author_id" => match uuid::Uuid::parse_str(&value) {
                    Ok(id) => parsed.author_id = Some(id.hyphenated().to_string()),
                    Err(_) => errors.push(FieldError::new(
                        &["query", "author_id"],
                        "Input should be a valid UUID",
                        "uuid_parsing",
                    )),
                },
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(parsed)
        } else {
            Err(ApiError::Invalid(errors))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PostsQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let RawQuery(query) = RawQuery::from_request_parts(parts, state)
            .await
            .unwrap_or(RawQuery(None));
        Self::parse(query.as_deref().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        name: String,
        #[allow(dead_code)]
        note: Option<String>,
    }

    impl BodyFields for Sample {
        const FIELDS: &'static [(&'static str, bool)] = &[("name", true), ("note", false)];
    }

    fn errors_of(body: &str) -> Vec<(Vec<String>, String)> {
        match parse_body::<Sample>(body.as_bytes()) {
            Err(ApiError::Invalid(errors)) => errors.into_iter().map(|e| (e.loc, e.kind)).collect(),
            other => panic!("{body}: {other:?}"),
        }
    }

    fn loc(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn a_body_with_the_right_fields_is_read() {
        let sample: Sample = parse_body(br#"{"name": "ann", "note": null}"#).unwrap();
        assert_eq!(sample.name, "ann");
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        assert_eq!(
            errors_of(r#"{"note": 3, "admin": true}"#),
            [
                (loc(&["body", "admin"]), "extra_forbidden".into()),
                (loc(&["body", "name"]), "missing".into()),
                (loc(&["body", "note"]), "string_type".into()),
            ]
        );
    }

    #[test]
    fn a_body_that_is_not_a_json_object_is_refused() {
        assert_eq!(
            errors_of("name=ann"),
            [(loc(&["body"]), "json_invalid".into())]
        );
        assert_eq!(errors_of(""), [(loc(&["body"]), "json_invalid".into())]);
        assert_eq!(
            errors_of(r#"["ann"]"#),
            [(loc(&["body"]), "model_attributes_type".into())]
        );
    }

    #[test]
    fn content_types_are_recognised() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, http::HeaderValue::from_static(value));
            encoding(&headers)
        };
        assert_eq!(encoding(&HeaderMap::new()), Encoding::Json);
        assert_eq!(with("application/json"), Encoding::Json);
        assert_eq!(with("Application/JSON; charset=utf-8"), Encoding::Json);
        assert_eq!(with("application/merge-patch+json"), Encoding::Json);
        assert_eq!(with("text/plain"), Encoding::Other);
        assert_eq!(with("application/x-www-form-urlencoded"), Encoding::Form);
    }

    #[test]
    fn a_form_gives_the_fields_it_has_and_ignores_the_rest() {
        let sample: Sample = parse_form(b"grant_type=password&name=ann+b&scope=").unwrap();
        assert_eq!(sample.name, "ann b");
        assert!(matches!(
            parse_form::<Sample>(b"grant_type=password"),
            Err(ApiError::Invalid(errors)) if errors.len() == 1
        ));
    }

    #[test]
    fn the_posts_query_is_checked() {
        assert_eq!(PostsQuery::parse("").unwrap(), PostsQuery::default());
        let id = uuid::Uuid::now_v7().to_string();
        let query =
            PostsQuery::parse(&format!("page_size=5&page_token=abc&author_id={id}&x=1")).unwrap();
        assert_eq!(query.page_size, 5);
        assert_eq!(query.page_token, "abc");
        assert_eq!(query.author_id, Some(id));
        for bad in [
            "page_size=-1",
            "page_size=99999999999",
            "page_size=ten",
            "author_id=x",
        ] {
            assert!(
                matches!(PostsQuery::parse(bad), Err(ApiError::Invalid(_))),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn the_forwarded_address_ends_with_the_peer() {
        let peer: SocketAddr = "10.0.0.9:4000".parse().unwrap();
        assert_eq!(
            forwarded_for(&HeaderMap::new(), Some(peer)).unwrap(),
            "10.0.0.9"
        );
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "203.0.113.7, 10.0.0.1".parse().unwrap());
        headers.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        assert_eq!(
            forwarded_for(&headers, Some(peer)).unwrap(),
            "203.0.113.7, 10.0.0.1, 10.0.0.2, 10.0.0.9"
        );
    }
}
