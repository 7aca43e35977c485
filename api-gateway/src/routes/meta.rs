//! What is not the homework's API: health, the OpenAPI document, the token keys.

use axum::{
    extract::State,
    response::{IntoResponse as _, Response},
};
use http::{HeaderValue, StatusCode, header};
use pair_proto::auth::v1 as pb;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{AppState, error::ApiError, extract::Caller, model::Health, routes::json};

/// 200 when both services answer SERVING to grpc.health.v1, else 503.
#[utoipa::path(
    get, path = "/healthz", tag = "meta",
    responses(
        (status = 200, description = "Both services serve", body = Health),
        (status = 503, description = "A service is down or not serving", body = Health),
    )
)]
pub async fn healthz(State(state): State<AppState>) -> Response {
    let (auth, blog) = state.upstream.health().await;
    let serving = auth == "SERVING" && blog == "SERVING";
    let status = if serving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        &Health {
            status: if serving { "SERVING" } else { "NOT_SERVING" }.into(),
            auth: auth.into(),
            blog: blog.into(),
        },
    )
}

/// This document.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object))
)]
pub async fn openapi(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.openapi.clone(),
    )
        .into_response()
}

/// A JWK Set (RFC 7517).
#[derive(Debug, Serialize, ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// A public key that verifies tokens (Ed25519: `kty` OKP, `crv` Ed25519).
#[derive(Debug, Serialize, ToSchema)]
pub struct Jwk {
    pub kty: String,
    pub kid: String,
    pub crv: Option<String>,
    pub x: Option<String>,
    pub alg: Option<String>,
    #[serde(rename = "use")]
    pub use_: Option<String>,
}

/// The public keys that verify tokens, from auth-service; shared secrets are never listed.
#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "meta",
    responses((status = 200, description = "The JWK Set of auth-service", body = JwkSet))
)]
pub async fn jwks(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let answer = state
        .upstream
        .introspection
        .clone()
        .list_keys(caller.request(pb::ListKeysRequest {}))
        .await?
        .into_inner();
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        answer.jwks,
    )
        .into_response())
}
