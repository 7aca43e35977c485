//! The routes, in one table that both the router and the OpenAPI test read.

pub mod auth;
pub mod meta;
pub mod posts;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{MethodRouter, delete, get, patch, post},
};
use http::Method;

pub use crate::error::json;
use crate::{AppState, error::ApiError, extract::MAX_BODY_BYTES};

/// Every route: method, path (OpenAPI's template syntax, which is axum's) and handler.
pub fn table() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    vec![
        (Method::POST, "/api/v1/signup", post(auth::signup)),
        (Method::POST, "/api/v1/login", post(auth::login)),
        (Method::POST, "/api/v1/refresh", post(auth::refresh)),
        (Method::GET, "/api/v1/users/me", get(auth::me)),
        (Method::PATCH, "/api/v1/users/me", patch(auth::update_me)),
        (
            Method::POST,
            "/api/v1/users/me/password",
            post(auth::change_password),
        ),
        (Method::POST, "/api/v1/logout", post(auth::logout)),
        (Method::POST, "/api/v1/logout_all", post(auth::logout_all)),
        (Method::GET, "/api/v1/sessions", get(auth::sessions)),
        (
            Method::DELETE,
            "/api/v1/sessions/{id}",
            delete(auth::revoke_session),
        ),
        (Method::GET, "/api/v1/posts", get(posts::list)),
        (Method::POST, "/api/v1/posts", post(posts::create)),
        (Method::GET, "/api/v1/posts/{id}", get(posts::get)),
        (Method::PATCH, "/api/v1/posts/{id}", patch(posts::update)),
        (Method::DELETE, "/api/v1/posts/{id}", delete(posts::delete)),
        (Method::GET, "/api/v1/openapi.json", get(meta::openapi)),
        (Method::GET, "/healthz", get(meta::healthz)),
        (Method::GET, "/.well-known/jwks.json", get(meta::jwks)),
    ]
}

/// The router of [`table`], with JSON answers for unknown paths and methods.
pub fn router(state: AppState) -> Router {
    let routes = table()
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| {
            router.route(path, handler)
        });
    routes
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
