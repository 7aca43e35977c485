//! Users and sessions: each route one call to auth-service.

use axum::{extract::State, response::Response};
use http::StatusCode;
use pair_proto::auth::v1 as pb;

use crate::{
    AppState,
    error::{ApiError, ErrorMessage},
    extract::{Authed, Caller, JsonBody, PathId},
    model::{
        LoginBody, LogoutAllAnswer, Message, PasswordBody, ProfileAnswer, ProfileBody, Session,
        Sessions, SignupAnswer, SignupBody, Tokens, User,
    },
    routes::json,
};

/// Creates an account.
#[utoipa::path(
    post, path = "/api/v1/signup", tag = "users",
    request_body = SignupBody,
    responses(
        (status = 201, description = "The new user", body = SignupAnswer),
        (status = 409, description = "The username or the email is taken", body = ErrorMessage),
        (status = 429, description = "Too many password hashes waiting; retry after `Retry-After` seconds", body = ErrorMessage),
    )
)]
pub async fn signup(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<SignupBody>,
) -> Result<Response, ApiError> {
    let answer = state
        .upstream
        .auth
        .clone()
        .register(caller.request(pb::RegisterRequest {
            username: body.username,
            email: body.email,
            password: body.password,
        }))
        .await?
        .into_inner();
    let user = User::try_from(answer.user)?;
    Ok(json(
        StatusCode::CREATED,
        &SignupAnswer {
            msg: "User created successfully".into(),
            user,
        },
    ))
}

/// Logs in: opens a session and answers its token pair.
#[utoipa::path(
    post, path = "/api/v1/login", tag = "users",
    request_body(content(
        (LoginBody = "application/json"),
        (LoginBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "The new session's tokens and the user", body = Tokens),
        (status = 401, description = "Wrong username or password (one answer for both)", body = ErrorMessage),
        (status = 429, description = "Too many failed logins; retry after `Retry-After` seconds", body = ErrorMessage),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, ApiError> {
    let answer = state
        .upstream
        .auth
        .clone()
        .login(caller.request(pb::LoginRequest {
            username: body.username,
            password: body.password,
        }))
        .await?
        .into_inner();
    let user = User::try_from(answer.user)?;
    Ok(json(
        StatusCode::OK,
        &Tokens::from_pair(answer.tokens, Some(user))?,
    ))
}

/// Exchanges the refresh token (sent as `Authorization: Bearer <refresh token>`) for a
/// new pair of the same session; the old pair stops working.
#[utoipa::path(
    post, path = "/api/v1/refresh", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The session's new tokens", body = Tokens),
    )
)]
pub async fn refresh(State(state): State<AppState>, authed: Authed) -> Result<Response, ApiError> {
    let refresh_token = authed.token().to_owned();
    let answer = state
        .upstream
        .auth
        .clone()
        .refresh(authed.request(pb::RefreshRequest { refresh_token }))
        .await?
        .into_inner();
    Ok(json(
        StatusCode::OK,
        &Tokens::from_pair(answer.tokens, None)?,
    ))
}

/// The calling user.
#[utoipa::path(
    get, path = "/api/v1/users/me", tag = "users",
    security(("bearer" = [])),
    responses((status = 200, description = "The calling user", body = User))
)]
pub async fn me(State(state): State<AppState>, authed: Authed) -> Result<Response, ApiError> {
    let answer = state
        .upstream
        .auth
        .clone()
        .get_profile(authed.request(pb::GetProfileRequest {}))
        .await?
        .into_inner();
    Ok(json(StatusCode::OK, &User::try_from(answer.user)?))
}

/// Changes the username and/or the email; the session gets a new token pair.
#[utoipa::path(
    patch, path = "/api/v1/users/me", tag = "users",
    security(("bearer" = [])),
    request_body = ProfileBody,
    responses(
        (status = 200, description = "The changed user and the session's new tokens", body = ProfileAnswer),
        (status = 409, description = "The username or the email is taken", body = ErrorMessage),
    )
)]
pub async fn update_me(
    State(state): State<AppState>,
    authed: Authed,
    JsonBody(body): JsonBody<ProfileBody>,
) -> Result<Response, ApiError> {
    let answer = state
        .upstream
        .auth
        .clone()
        .update_profile(authed.request(pb::UpdateProfileRequest {
            username: body.username,
            email: body.email,
        }))
        .await?
        .into_inner();
    let user = User::try_from(answer.user)?;
    let tokens = Tokens::from_pair(answer.tokens, None)?;
    Ok(json(
        StatusCode::OK,
        &ProfileAnswer {
            msg: "Profile updated".into(),
            user,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            token_type: tokens.token_type,
        },
    ))
}

/// Changes the password: the session gets a new token pair, every other session ends.
#[utoipa::path(
    post, path = "/api/v1/users/me/password", tag = "users",
    security(("bearer" = [])),
    request_body = PasswordBody,
    responses(
        (status = 200, description = "The session's new tokens", body = Tokens),
        (status = 429, description = "Too many password hashes waiting; retry after `Retry-After` seconds", body = ErrorMessage),
    )
)]
pub async fn change_password(
    State(state): State<AppState>,
    authed: Authed,
    JsonBody(body): JsonBody<PasswordBody>,
) -> Result<Response, ApiError> {
    let answer = state
        .upstream
        .auth
        .clone()
        .change_password(authed.request(pb::ChangePasswordRequest {
            current_password: body.current_password,
            new_password: body.new_password,
        }))
        .await?
        .into_inner();
    Ok(json(
        StatusCode::OK,
        &Tokens::from_pair(answer.tokens, None)?,
    ))
}

/// Ends the calling session: its tokens stop working at once.
#[utoipa::path(
    post, path = "/api/v1/logout", tag = "users",
    security(("bearer" = [])),
    responses((status = 200, description = "Logged out", body = Message))
)]
pub async fn logout(State(state): State<AppState>, authed: Authed) -> Result<Response, ApiError> {
    state
        .upstream
        .auth
        .clone()
        .logout(authed.request(pb::LogoutRequest {}))
        .await?;
    Ok(json(
        StatusCode::OK,
        &Message {
            msg: "Successfully logged out".into(),
        },
    ))
}

/// Ends every session of the calling user, the calling one included.
#[utoipa::path(
    post, path = "/api/v1/logout_all", tag = "users",
    security(("bearer" = [])),
    responses((status = 200, description = "Logged out everywhere", body = LogoutAllAnswer))
)]
pub async fn logout_all(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<Response, ApiError> {
    let answer = state
        .upstream
        .auth
        .clone()
        .logout_all(authed.request(pb::LogoutAllRequest {}))
        .await?
        .into_inner();
    Ok(json(
        StatusCode::OK,
        &LogoutAllAnswer {
            msg: "Successfully logged out from all devices".into(),
            revoked_sessions: answer.revoked_sessions,
        },
    ))
}

/// The calling user's live sessions.
#[utoipa::path(
    get, path = "/api/v1/sessions", tag = "users",
    security(("bearer" = [])),
    responses((status = 200, description = "The live sessions", body = Sessions))
)]
pub async fn sessions(State(state): State<AppState>, authed: Authed) -> Result<Response, ApiError> {
    let answer = state
        .upstream
        .auth
        .clone()
        .list_sessions(authed.request(pb::ListSessionsRequest {}))
        .await?
        .into_inner();
    let sessions = answer
        .sessions
        .into_iter()
        .map(Session::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json(StatusCode::OK, &Sessions { sessions }))
}

/// Ends one session of the calling user.
#[utoipa::path(
    delete, path = "/api/v1/sessions/{id}", tag = "users",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session is ended", body = Message),
        (status = 404, description = "No such session of the calling user", body = ErrorMessage),
    )
)]
pub async fn revoke_session(
    State(state): State<AppState>,
    authed: Authed,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    state
        .upstream
        .auth
        .clone()
        .revoke_session(authed.request(pb::RevokeSessionRequest { session_id: id }))
        .await?;
    Ok(json(
        StatusCode::OK,
        &Message {
            msg: "Session revoked".into(),
        },
    ))
}
