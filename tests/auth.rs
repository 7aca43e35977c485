//! Black-box tests of auth-service: a real server on port 0, real PostgreSQL (a fresh
//! database per test) and real Redis, called through the generated tonic clients.

mod support;

on_every_backend!(
    register_returns_the_user_and_never_a_password,
    register_reports_every_bad_field_at_once,
    register_applies_each_validation_rule,
    a_taken_username_or_email_is_already_exists_whatever_the_case,
    of_concurrent_registrations_of_one_name_exactly_one_wins,
    login_returns_a_bearer_pair_with_the_configured_lifetimes,
    wrong_password_and_unknown_user_get_the_same_answer,
    register_and_login_ignore_garbage_authorization,
    authenticated_calls_refuse_missing_malformed_and_refresh_tokens,
    refresh_rotates_and_the_old_pair_dies_at_once,
    reusing_a_rotated_refresh_token_revokes_the_session,
    of_eight_concurrent_refreshes_with_one_token_exactly_one_succeeds,
    logout_ends_only_the_calling_session,
    logout_all_kills_every_session_at_once,
    sessions_are_listed_with_the_current_one_marked_and_can_be_revoked,
    another_users_session_cannot_be_revoked,
    update_profile_rotates_and_introspect_reports_the_new_name_for_older_sessions,
    update_profile_to_a_taken_name_changes_nothing,
    change_password_rotates_and_revokes_every_other_session,
    introspect_describes_an_active_token_and_nothing_of_an_inactive_one,
);

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use pair_proto::auth::v1::{self as pb};
use support::*;
use tonic::{Code, Request};

fn introspect(token: &str) -> pb::IntrospectRequest {
    pb::IntrospectRequest {
        token: token.to_owned(),
    }
}

async fn register_returns_the_user_and_never_a_password(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let username = unique_name("ann");
    let user = client
        .register(pb::RegisterRequest {
            username: username.clone(),
            email: format!("{username}@Example.com"),
            password: PASSWORD.into(),
        })
        .await
        .expect("register")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(user.username, username);
    assert_eq!(user.email, format!("{username}@Example.com"));
    let id = uuid::Uuid::parse_str(&user.id).expect("uuid id");
    assert_eq!(id.get_version_num(), 7);
    assert!(user.create_time.is_some() && user.update_time.is_some());
    // What Register answers is exactly what later reads return (same time precision).
    let login = login(&mut client, &username, PASSWORD)
        .await
        .expect("login");
    assert_eq!(login.user, Some(user));
}

async fn register_reports_every_bad_field_at_once(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let status = client
        .register(pb::RegisterRequest {
            username: "x".into(),
            email: "not-an-email".into(),
            password: "short".into(),
        })
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["username", "email", "password"]);
}

async fn register_applies_each_validation_rule(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let name = unique_name("rule");
    let cases: Vec<(String, String, String, &str)> = vec![
        (
            "ab".into(),
            format!("{name}@example.com"),
            PASSWORD.into(),
            "username",
        ),
        (
            "a".repeat(33),
            format!("{name}@example.com"),
            PASSWORD.into(),
            "username",
        ),
        (
            "_starts".into(),
            format!("{name}@example.com"),
            PASSWORD.into(),
            "username",
        ),
        (
            "has space".into(),
            format!("{name}@example.com"),
            PASSWORD.into(),
            "username",
        ),
        (name.clone(), "no-at-sign".into(), PASSWORD.into(), "email"),
        (
            name.clone(),
            format!("{}@example.com", "e".repeat(250)),
            PASSWORD.into(),
            "email",
        ),
        (
            name.clone(),
            format!("{name}@example.com"),
            "seven77".into(),
            "password",
        ),
        (
            name.clone(),
            format!("{name}@example.com"),
            "x".repeat(1025),
            "password",
        ),
        (
            name.clone(),
            format!("{name}@example.com"),
            "Password1".into(),
            "password",
        ),
        (
            name.clone(),
            format!("{name}@example.com"),
            format!("my{name}pass"),
            "password",
        ),
    ];
    for (username, email, password, field) in cases {
        let status = client
            .register(pb::RegisterRequest {
                username,
                email,
                password,
            })
            .await
            .expect_err("must be refused");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), [field]);
    }
    // Nothing was written: the name is still free.
    client
        .register(pb::RegisterRequest {
            username: name.clone(),
            email: format!("{name}@example.com"),
            password: "ünïcödé pässwörd".into(),
        })
        .await
        .expect("a valid registration after refused ones");
}

async fn a_taken_username_or_email_is_already_exists_whatever_the_case(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let (user, _) = register_and_login(&mut client, "taken").await;
    let by_name = client
        .register(pb::RegisterRequest {
            username: user.username.to_uppercase(),
            email: "other@example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .expect_err("name taken");
    assert_eq!(by_name.code(), Code::AlreadyExists);
    assert!(
        by_name.message().contains("username"),
        "{}",
        by_name.message()
    );
    let by_email = client
        .register(pb::RegisterRequest {
            username: unique_name("other"),
            email: user.email.to_uppercase(),
            password: PASSWORD.into(),
        })
        .await
        .expect_err("email taken");
    assert_eq!(by_email.code(), Code::AlreadyExists);
    assert!(
        by_email.message().contains("email"),
        "{}",
        by_email.message()
    );
}

async fn of_concurrent_registrations_of_one_name_exactly_one_wins(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let client = auth_client(&server).await;
    let name = unique_name("race");
    let calls = (0..8).map(|i| {
        let mut client = client.clone();
        let name = name.clone();
        tokio::spawn(async move {
            client
                .register(pb::RegisterRequest {
                    username: if i % 2 == 0 {
                        name.clone()
                    } else {
                        name.to_uppercase()
                    },
                    email: format!("{i}{name}@example.com"),
                    password: PASSWORD.into(),
                })
                .await
        })
    });
    let results: Vec<_> = futures_join(calls).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1);
    for result in results.into_iter().filter_map(Result::err) {
        assert_eq!(result.code(), Code::AlreadyExists);
    }
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.expect("task"));
    }
    out
}

async fn login_returns_a_bearer_pair_with_the_configured_lifetimes(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let (user, tokens) = register_and_login(&mut client, "life").await;
    assert_eq!(tokens.token_type, "Bearer");
    let now = chrono::Utc::now().timestamp();
    let access = tokens.access_expire_time.expect("access expiry").seconds - now;
    let refresh = tokens.refresh_expire_time.expect("refresh expiry").seconds - now;
    assert!((895..=900).contains(&access), "{access}");
    assert!(
        (30 * 86_400 - 5..=30 * 86_400).contains(&refresh),
        "{refresh}"
    );
    let profile = client
        .get_profile(authed(&tokens.access_token, pb::GetProfileRequest {}))
        .await
        .expect("profile")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(profile, user);
}

async fn wrong_password_and_unknown_user_get_the_same_answer(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let (user, _) = register_and_login(&mut client, "probe").await;
    let wrong = login(&mut client, &user.username, "not the password")
        .await
        .expect_err("wrong");
    let unknown = login(&mut client, &unique_name("nobody"), PASSWORD)
        .await
        .expect_err("unknown");
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(unknown.code(), Code::Unauthenticated);
    assert_eq!(wrong.message(), unknown.message());
    // Usernames are matched case-insensitively.
    login(&mut client, &user.username.to_uppercase(), PASSWORD)
        .await
        .expect("case-insensitive login");
    let empty = login(&mut client, "", "").await.expect_err("empty");
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&empty), ["username", "password"]);
}

async fn register_and_login_ignore_garbage_authorization(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let name = unique_name("garb");
    let mut request = authed(
        "garbage.not.a-token",
        pb::RegisterRequest {
            username: name.clone(),
            email: format!("{name}@example.com"),
            password: PASSWORD.into(),
        },
    );
    request.metadata_mut().insert(
        "authorization",
        "Basic Zm9vOmJhcg==".parse().expect("ascii"),
    );
    client
        .register(request)
        .await
        .expect("register ignores authorization");
    client
        .login(authed(
            "stale.garbage",
            pb::LoginRequest {
                username: name,
                password: PASSWORD.into(),
            },
        ))
        .await
        .expect("login ignores authorization");
}

async fn authenticated_calls_refuse_missing_malformed_and_refresh_tokens(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let (_, tokens) = register_and_login(&mut client, "meta").await;
    let missing = client
        .get_profile(Request::new(pb::GetProfileRequest {}))
        .await
        .expect_err("missing");
    assert_eq!(missing.code(), Code::Unauthenticated);
    let mut basic = Request::new(pb::GetProfileRequest {});
    basic.metadata_mut().insert(
        "authorization",
        "Basic Zm9vOmJhcg==".parse().expect("ascii"),
    );
    assert_eq!(
        client.get_profile(basic).await.expect_err("basic").code(),
        Code::Unauthenticated
    );
    for token in ["garbage", "a.b.c", &tokens.refresh_token] {
        let status = client
            .get_profile(authed(token, pb::GetProfileRequest {}))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{token}");
    }
    // And an access token is no refresh token.
    assert_refresh_refused(&server, &tokens.access_token, "access as refresh").await;
    assert!(
        is_active(&server, &tokens.access_token).await,
        "a refused misuse does not revoke"
    );
}

async fn refresh_rotates_and_the_old_pair_dies_at_once(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let (_, old) = register_and_login(&mut client, "rot").await;
    let new = refresh(&server, &old.refresh_token).await.expect("refresh");
    assert_ne!(new.access_token, old.access_token);
    assert!(!is_active(&server, &old.access_token).await);
    assert!(is_active(&server, &new.access_token).await);
    let status = client
        .get_profile(authed(&old.access_token, pb::GetProfileRequest {}))
        .await
        .expect_err("old access");
    assert_eq!(status.code(), Code::Unauthenticated);
    client
        .get_profile(authed(&new.access_token, pb::GetProfileRequest {}))
        .await
        .expect("new access works");
}

/// auth-service whose refresh tokens are strictly single-use (no retry window; the
/// window itself is tested in tests/tokens.rs).
async fn spawn_single_use_auth_on(backend: Backend) -> Running {
    let mut config = auth_config_on(backend).await;
    config.refresh_retry_window = Duration::ZERO;
    start_auth(config).await
}

async fn reusing_a_rotated_refresh_token_revokes_the_session(backend: Backend) {
    let server = spawn_single_use_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let (_, old) = register_and_login(&mut client, "theft").await;
    let new = refresh(&server, &old.refresh_token).await.expect("refresh");
    assert_refresh_refused(&server, &old.refresh_token, "reuse").await;
    assert!(
        !is_active(&server, &new.access_token).await,
        "the thief's session is revoked"
    );
    assert_refresh_refused(
        &server,
        &new.refresh_token,
        "the new refresh token died with the session",
    )
    .await;
}

async fn of_eight_concurrent_refreshes_with_one_token_exactly_one_succeeds(backend: Backend) {
    let server = spawn_single_use_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let (_, tokens) = register_and_login(&mut client, "conc").await;
    let calls = (0..8).map(|_| {
        let mut client = client.clone();
        let refresh_token = tokens.refresh_token.clone();
        tokio::spawn(async move { client.refresh(pb::RefreshRequest { refresh_token }).await })
    });
    let results = futures_join(calls).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    for failure in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(failure.code(), Code::Unauthenticated);
    }
}

async fn logout_ends_only_the_calling_session(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let (user, first) = register_and_login(&mut client, "out").await;
    let second = login(&mut client, &user.username, PASSWORD)
        .await
        .expect("login")
        .tokens
        .expect("tokens");
    client
        .logout(authed(&first.access_token, pb::LogoutRequest {}))
        .await
        .expect("logout");
    assert!(!is_active(&server, &first.access_token).await);
    assert!(is_active(&server, &second.access_token).await);
    assert_refresh_refused(&server, &first.refresh_token, "refresh after logout").await;
    let again = client
        .logout(authed(&first.access_token, pb::LogoutRequest {}))
        .await
        .expect_err("again");
    assert_eq!(again.code(), Code::Unauthenticated);
}

async fn logout_all_kills_every_session_at_once(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let (user, first) = register_and_login(&mut client, "all").await;
    let mut others = Vec::new();
    for _ in 0..2 {
        others.push(
            login(&mut client, &user.username, PASSWORD)
                .await
                .expect("login")
                .tokens
                .expect("t"),
        );
    }
    let revoked = client
        .logout_all(authed(&first.access_token, pb::LogoutAllRequest {}))
        .await
        .expect("logout all")
        .into_inner()
        .revoked_sessions;
    assert_eq!(revoked, 3);
    for tokens in others.iter().chain([&first]) {
        assert!(!is_active(&server, &tokens.access_token).await);
        assert_refresh_refused(&server, &tokens.refresh_token, "refresh after logout all").await;
    }
}

async fn sessions_are_listed_with_the_current_one_marked_and_can_be_revoked(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let (user, first) = register_and_login(&mut client, "sess").await;
    let second = login(&mut client, &user.username, PASSWORD)
        .await
        .expect("login")
        .tokens
        .expect("t");
    let sessions = client
        .list_sessions(authed(&first.access_token, pb::ListSessionsRequest {}))
        .await
        .expect("list")
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s.current).count(), 1);
    assert!(
        sessions
            .iter()
            .all(|s| s.user_agent.contains("tonic") && s.expire_time.is_some())
    );
    let other = sessions.iter().find(|s| !s.current).expect("other session");
    client
        .revoke_session(authed(
            &first.access_token,
            pb::RevokeSessionRequest {
                session_id: other.id.clone(),
            },
        ))
        .await
        .expect("revoke");
    assert!(!is_active(&server, &second.access_token).await);
    assert!(is_active(&server, &first.access_token).await);
    let listed = client
        .list_sessions(authed(&first.access_token, pb::ListSessionsRequest {}))
        .await
        .expect("list")
        .into_inner()
        .sessions;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].current);

    let again = client
        .revoke_session(authed(
            &first.access_token,
            pb::RevokeSessionRequest {
                session_id: other.id.clone(),
            },
        ))
        .await
        .expect_err("already revoked");
    assert_eq!(again.code(), Code::NotFound);
    let malformed = client
        .revoke_session(authed(
            &first.access_token,
            pb::RevokeSessionRequest {
                session_id: "nope".into(),
            },
        ))
        .await
        .expect_err("malformed");
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&malformed), ["session_id"]);
}

async fn another_users_session_cannot_be_revoked(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let (_, mallory) = register_and_login(&mut client, "mal").await;
    let (_, alice) = register_and_login(&mut client, "ali").await;
    let alice_session = client
        .list_sessions(authed(&alice.access_token, pb::ListSessionsRequest {}))
        .await
        .expect("list")
        .into_inner()
        .sessions[0]
        .id
        .clone();
    let status = client
        .revoke_session(authed(
            &mallory.access_token,
            pb::RevokeSessionRequest {
                session_id: alice_session,
            },
        ))
        .await
        .expect_err("not hers");
    assert_eq!(status.code(), Code::NotFound);
    assert!(is_active(&server, &alice.access_token).await);
}

async fn update_profile_rotates_and_introspect_reports_the_new_name_for_older_sessions(
    backend: Backend,
) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let (user, first) = register_and_login(&mut client, "ren").await;
    let older = login(&mut client, &user.username, PASSWORD)
        .await
        .expect("login")
        .tokens
        .expect("t");
    let none = client
        .update_profile(authed(
            &first.access_token,
            pb::UpdateProfileRequest::default(),
        ))
        .await
        .expect_err("no field");
    assert_eq!(none.code(), Code::InvalidArgument);

    let new_name = unique_name("renamed");
    let updated = client
        .update_profile(authed(
            &first.access_token,
            pb::UpdateProfileRequest {
                username: Some(new_name.clone()),
                email: Some(format!("{new_name}@example.org")),
            },
        ))
        .await
        .expect("update")
        .into_inner();
    let changed = updated.user.expect("user");
    assert_eq!(changed.username, new_name);
    assert_eq!(changed.email, format!("{new_name}@example.org"));
    let tokens = updated.tokens.expect("new pair");
    assert!(
        !is_active(&server, &first.access_token).await,
        "old access token dies at once"
    );
    assert!(is_active(&server, &tokens.access_token).await);

    let mut introspection = introspection_client(&server).await;
    let seen = introspection
        .introspect(introspect(&older.access_token))
        .await
        .expect("i")
        .into_inner();
    assert!(seen.active);
    assert_eq!(
        seen.username, new_name,
        "older sessions see the current username"
    );
    login(&mut client, &new_name, PASSWORD)
        .await
        .expect("login with the new name");
    let old_name = login(&mut client, &user.username, PASSWORD)
        .await
        .expect_err("old name");
    assert_eq!(old_name.code(), Code::Unauthenticated);
}

async fn update_profile_to_a_taken_name_changes_nothing(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let (taken, _) = register_and_login(&mut client, "own").await;
    let (me, tokens) = register_and_login(&mut client, "me").await;
    let status = client
        .update_profile(authed(
            &tokens.access_token,
            pb::UpdateProfileRequest {
                username: Some(taken.username.to_uppercase()),
                email: None,
            },
        ))
        .await
        .expect_err("taken");
    assert_eq!(status.code(), Code::AlreadyExists);
    let bad = client
        .update_profile(authed(
            &tokens.access_token,
            pb::UpdateProfileRequest {
                username: Some("x".into()),
                email: Some("bad".into()),
            },
        ))
        .await
        .expect_err("invalid");
    assert_eq!(violated_fields(&bad), ["username", "email"]);
    let profile = client
        .get_profile(authed(&tokens.access_token, pb::GetProfileRequest {}))
        .await
        .expect("the pair still works")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(profile.username, me.username);
}

async fn change_password_rotates_and_revokes_every_other_session(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let (user, first) = register_and_login(&mut client, "pw").await;
    let other = login(&mut client, &user.username, PASSWORD)
        .await
        .expect("login")
        .tokens
        .expect("t");
    let wrong = client
        .change_password(authed(
            &first.access_token,
            pb::ChangePasswordRequest {
                current_password: "not my password".into(),
                new_password: "a brand new passphrase".into(),
            },
        ))
        .await
        .expect_err("wrong current");
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let weak = client
        .change_password(authed(
            &first.access_token,
            pb::ChangePasswordRequest {
                current_password: PASSWORD.into(),
                new_password: "password1".into(),
            },
        ))
        .await
        .expect_err("weak");
    assert_eq!(violated_fields(&weak), ["new_password"]);
    assert!(
        is_active(&server, &other.access_token).await,
        "refused changes revoke nothing"
    );

    let tokens = client
        .change_password(authed(
            &first.access_token,
            pb::ChangePasswordRequest {
                current_password: PASSWORD.into(),
                new_password: "a brand new passphrase".into(),
            },
        ))
        .await
        .expect("change")
        .into_inner()
        .tokens
        .expect("tokens");
    assert!(is_active(&server, &tokens.access_token).await);
    assert!(!is_active(&server, &first.access_token).await);
    assert!(!is_active(&server, &other.access_token).await);
    assert_eq!(
        login(&mut client, &user.username, PASSWORD)
            .await
            .expect_err("old")
            .code(),
        Code::Unauthenticated
    );
    login(&mut client, &user.username, "a brand new passphrase")
        .await
        .expect("new password");
}

async fn introspect_describes_an_active_token_and_nothing_of_an_inactive_one(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let (user, tokens) = register_and_login(&mut client, "intro").await;
    let mut introspection = introspection_client(&server).await;
    let active = introspection
        .introspect(introspect(&tokens.access_token))
        .await
        .expect("i")
        .into_inner();
    assert!(active.active);
    assert_eq!(active.user_id, user.id);
    assert_eq!(active.username, user.username);
    assert!(uuid::Uuid::parse_str(&active.session_id).is_ok());
    assert!(uuid::Uuid::parse_str(&active.token_id).is_ok());
    assert_eq!(
        active.expire_time.expect("exp").seconds - active.issue_time.expect("iat").seconds,
        900
    );

    let empty = introspection
        .introspect(introspect(""))
        .await
        .expect_err("empty");
    assert_eq!(empty.code(), Code::InvalidArgument);

    let inactive = [
        format!("Bearer {}", tokens.access_token),
        tokens.refresh_token.clone(),
        tokens.access_token[..tokens.access_token.len() - 4].to_owned(),
        "garbage".to_owned(),
        forge_alg_none(&tokens.access_token),
        forge_with_key(&tokens.access_token, b"some-other-secret-some-other-secret"),
        swap_subject(&tokens.access_token),
    ];
    for token in inactive {
        let answer = introspection
            .introspect(introspect(&token))
            .await
            .expect("ok")
            .into_inner();
        assert_eq!(answer, pb::IntrospectResponse::default(), "{token}");
    }
}

fn forge_alg_none(token: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
    let payload = token.split('.').nth(1).expect("payload");
    format!("{header}.{payload}.")
}

fn forge_with_key(token: &str, key: &[u8]) -> String {
    let claims = claims_of(token);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .expect("sign")
}

fn swap_subject(token: &str) -> String {
    let mut claims = claims_of(token);
    claims["sub"] = serde_json::Value::String(uuid::Uuid::now_v7().to_string());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"));
    parts.join(".")
}
