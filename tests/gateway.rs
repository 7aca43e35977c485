//! The REST API (README: "The REST API by example") through api-gateway, black-box: real servers on port 0,
//! plain HTTP/1.1 JSON calls, on both backend sets.

mod support;

use std::collections::BTreeSet;

use http::{Method, StatusCode, header};
use serde_json::{Value, json};
use support::{gateway::*, *};

on_every_backend!(
    signup_login_profile_and_refresh_speak_the_homeworks_json,
    a_profile_update_rotates_the_tokens_and_the_new_name_logs_in,
    a_password_change_rotates_the_tokens_and_ends_other_sessions,
    sessions_are_listed_and_ended_one_by_one_or_all_at_once,
    posts_are_written_read_paged_changed_and_deleted_by_their_author,
    bad_bodies_are_refused_with_a_clear_detail_and_nothing_is_written,
    missing_or_malformed_authorization_is_401_with_www_authenticate,
    bad_paths_and_queries_are_422_never_500,
    the_user_agent_reaches_auth_service,
    health_and_the_openapi_document_are_served,
    the_jwk_set_lists_the_ed25519_key_that_signs_the_tokens,
);

fn parse_time(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().expect("a time string"))
        .unwrap_or_else(|e| panic!("{value} is not RFC 3339: {e}"))
}

fn assert_user(user: &Value, username: &str) {
    uuid::Uuid::parse_str(user["uuid"].as_str().expect("uuid")).expect("a UUID");
    assert_eq!(user["username"], username);
    assert_eq!(user["email"], format!("{username}@example.com"));
    assert_eq!(user["is_superuser"], false);
    parse_time(&user["created_at"]);
    parse_time(&user["updated_at"]);
    let text = user.to_string();
    assert!(
        !text.contains("password") && !text.contains("hash"),
        "{text}"
    );
}

async fn signup_login_profile_and_refresh_speak_the_homeworks_json(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let http = &stack.http;
    let username = unique_name("rest");
    let signup = http
        .post(
            "/api/v1/signup",
            None,
            json!({"username": username, "email": format!("{username}@example.com"), "password": PASSWORD}),
        )
        .await;
    assert_eq!(signup.status, StatusCode::CREATED, "{}", signup.text);
    assert_eq!(signup.headers[header::CONTENT_TYPE], "application/json");
    assert!(signup.json["msg"].is_string());
    assert_user(&signup.json["user"], &username);

    let login = http
        .post(
            "/api/v1/login",
            None,
            json!({"username": username, "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    assert_eq!(login.json["token_type"], "bearer");
    assert_user(&login.json["user"], &username);
    let access = login.str("access_token");
    let refresh = login.str("refresh_token");

    // An OAuth2 password-flow client sends a form; its other fields are ignored.
    let form =
        format!("grant_type=password&username={username}&password=a+long+enough+passphrase&scope=");
    let form_login = http
        .raw(
            Method::POST,
            "/api/v1/login",
            "application/x-www-form-urlencoded",
            form.into_bytes(),
        )
        .await;
    assert_eq!(form_login.status, StatusCode::OK, "{}", form_login.text);
    assert_eq!(form_login.json["token_type"], "bearer");

    let me = http.get("/api/v1/users/me", Some(&access)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_user(&me.json, &username);
    assert_eq!(me.json["uuid"], signup.json["user"]["uuid"]);

    // The access token is not a refresh token, and the reverse.
    assert_unauthenticated(
        &http
            .call(Method::POST, "/api/v1/refresh", Some(&access), None)
            .await,
    );
    assert_unauthenticated(&http.get("/api/v1/users/me", Some(&refresh)).await);

    let refreshed = http
        .call(Method::POST, "/api/v1/refresh", Some(&refresh), None)
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    assert_eq!(refreshed.json["token_type"], "bearer");
    let new_access = refreshed.str("access_token");
    assert_ne!(new_access, access);
    parse_time(&refreshed.json["access_expires_at"]);
    assert!(refreshed.json["expires_in"].as_i64().expect("expires_in") > 0);
    assert_unauthenticated(&http.get("/api/v1/users/me", Some(&access)).await);
    assert_eq!(
        http.get("/api/v1/users/me", Some(&new_access)).await.status,
        StatusCode::OK
    );

    // A wrong password and an unknown user: one answer.
    let wrong = http
        .post(
            "/api/v1/login",
            None,
            json!({"username": username, "password": "not the password"}),
        )
        .await;
    let unknown = http
        .post(
            "/api/v1/login",
            None,
            json!({"username": unique_name("nobody"), "password": PASSWORD}),
        )
        .await;
    assert_unauthenticated(&wrong);
    assert_unauthenticated(&unknown);
    assert_eq!(wrong.json, unknown.json);

    // The same name again is a conflict.
    let again = http
        .post(
            "/api/v1/signup",
            None,
            json!({"username": username.to_uppercase(), "email": "other@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
}

async fn a_profile_update_rotates_the_tokens_and_the_new_name_logs_in(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let http = &stack.http;
    let (_, login) = http.signup_and_login("prof").await;
    let (taken, _) = http.signup_and_login("taken").await;
    let access = login.str("access_token");

    let new_name = unique_name("renamed");
    let patch = |token: String, body: Value| {
        let http = &stack.http;
        async move {
            http.call(Method::PATCH, "/api/v1/users/me", Some(&token), Some(body))
                .await
        }
    };
    let conflict = patch(access.clone(), json!({"username": taken})).await;
    assert_eq!(conflict.status, StatusCode::CONFLICT, "{}", conflict.text);
    let nothing = patch(access.clone(), json!({})).await;
    assert_eq!(
        nothing.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        nothing.text
    );

    let updated = patch(access.clone(), json!({"username": new_name, "email": null})).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert!(updated.json["msg"].is_string());
    assert_eq!(updated.json["user"]["username"], new_name.as_str());
    let new_access = updated.str("access_token");
    let new_refresh = updated.str("refresh_token");
    assert_unauthenticated(&http.get("/api/v1/users/me", Some(&access)).await);
    let me = http.get("/api/v1/users/me", Some(&new_access)).await;
    assert_eq!(me.json["username"], new_name.as_str());
    let refreshed = http
        .call(Method::POST, "/api/v1/refresh", Some(&new_refresh), None)
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);

    let login = http
        .post(
            "/api/v1/login",
            None,
            json!({"username": new_name, "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
}

async fn a_password_change_rotates_the_tokens_and_ends_other_sessions(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let http = &stack.http;
    let (username, first) = http.signup_and_login("pass").await;
    let second = http
        .post(
            "/api/v1/login",
            None,
            json!({"username": username, "password": PASSWORD}),
        )
        .await;
    let access = first.str("access_token");
    let path = "/api/v1/users/me/password";

    let wrong = http
        .post(path, Some(&access), json!({"current_password": "nope nope nope", "new_password": "another long passphrase"}))
        .await;
    assert_unauthenticated(&wrong);
    let weak = http
        .post(
            path,
            Some(&access),
            json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_eq!(
        weak.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        weak.text
    );
    assert_eq!(weak.locs(), ["body.new_password"]);

    let changed = http
        .post(
            path,
            Some(&access),
            json!({"current_password": PASSWORD, "new_password": "another long passphrase"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.json["token_type"], "bearer");
    assert_eq!(
        http.get("/api/v1/users/me", Some(&changed.str("access_token")))
            .await
            .status,
        StatusCode::OK
    );
    assert_unauthenticated(
        &http
            .get("/api/v1/users/me", Some(&second.str("access_token")))
            .await,
    );
    let login = http
        .post(
            "/api/v1/login",
            None,
            json!({"username": username, "password": "another long passphrase"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
}

async fn sessions_are_listed_and_ended_one_by_one_or_all_at_once(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let http = &stack.http;
    let (username, first) = http.signup_and_login("sess").await;
    let login = |user_agent: &'static str| {
        let http = &stack.http;
        let body = json!({"username": username, "password": PASSWORD}).to_string();
        async move {
            let request = http
                .request(Method::POST, "/api/v1/login")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::USER_AGENT, user_agent)
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .expect("request");
            http.send(request).await
        }
    };
    let second = login("second-device/1.0").await;
    let third = login("third-device/1.0").await;
    let access = first.str("access_token");

    let listed = http.get("/api/v1/sessions", Some(&access)).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let sessions = listed.json["sessions"]
        .as_array()
        .expect("sessions")
        .clone();
    assert_eq!(sessions.len(), 3, "{}", listed.text);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let second_session = sessions
        .iter()
        .find(|s| {
            s["user_agent"]
                .as_str()
                .is_some_and(|ua| ua.starts_with("second-device/1.0"))
        })
        .expect("the second session");
    parse_time(&second_session["created_at"]);
    parse_time(&second_session["expires_at"]);

    let path = format!(
        "/api/v1/sessions/{}",
        second_session["id"].as_str().expect("id")
    );
    let revoked = http.call(Method::DELETE, &path, Some(&access), None).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert_unauthenticated(
        &http
            .get("/api/v1/users/me", Some(&second.str("access_token")))
            .await,
    );
    let again = http.call(Method::DELETE, &path, Some(&access), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text);

    let all = http
        .call(
            Method::POST,
            "/api/v1/logout_all",
            Some(&third.str("access_token")),
            None,
        )
        .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(all.json["revoked_sessions"], 2);
    assert_unauthenticated(&http.get("/api/v1/users/me", Some(&access)).await);

    let fresh = login("fourth/1.0").await.str("access_token");
    let out = http
        .call(Method::POST, "/api/v1/logout", Some(&fresh), None)
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text);
    assert!(out.json["msg"].is_string());
    assert_unauthenticated(
        &http
            .call(Method::POST, "/api/v1/logout", Some(&fresh), None)
            .await,
    );
}

async fn posts_are_written_read_paged_changed_and_deleted_by_their_author(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let http = &stack.http;
    let (author, login) = http.signup_and_login("author").await;
    let (_, other) = http.signup_and_login("other").await;
    let token = login.str("access_token");
    let other_token = other.str("access_token");

    let mut ids = Vec::new();
    for n in 0..3 {
        let created = http
            .post(
                "/api/v1/posts",
                Some(&token),
                json!({"title": format!("Post {n}"), "description": format!("Text {n}")}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        assert_eq!(created.json["title"], format!("Post {n}"));
        assert_eq!(created.json["description"], format!("Text {n}"));
        assert_eq!(created.json["author_username"], author.as_str());
        assert_eq!(created.json["author_id"], login.json["user"]["uuid"]);
        parse_time(&created.json["created_at"]);
        ids.push(created.str("id"));
    }
    let post_path = format!("/api/v1/posts/{}", ids[0]);
    let read = http.get(&post_path, None).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.json["description"], "Text 0");

    // Paging, newest first, by author.
    let author_id = login.json["user"]["uuid"]
        .as_str()
        .expect("uuid")
        .to_owned();
    let first = http
        .get(
            &format!("/api/v1/posts?page_size=2&author_id={author_id}"),
            None,
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let titles = |answer: &Answer| -> Vec<String> {
        answer.json["posts"]
            .as_array()
            .expect("posts")
            .iter()
            .map(|p| p["title"].as_str().expect("title").to_owned())
            .collect()
    };
    assert_eq!(titles(&first), ["Post 2", "Post 1"]);
    let next = first.str("next_page_token");
    let second = http
        .get(
            &format!("/api/v1/posts?page_size=2&author_id={author_id}&page_token={next}"),
            None,
        )
        .await;
    assert_eq!(titles(&second), ["Post 0"]);
    assert_eq!(second.json["next_page_token"], Value::Null);
    // A token used with another filter, or made up, is refused.
    let foreign = http
        .get(&format!("/api/v1/posts?page_token={next}"), None)
        .await;
    assert_eq!(
        foreign.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        foreign.text
    );
    assert_eq!(foreign.locs(), ["query.page_token"]);
    let made_up = http.get("/api/v1/posts?page_token=bm90IG91cnM", None).await;
    assert_eq!(made_up.locs(), ["query.page_token"]);

    // Only the author changes or deletes.
    let by_other = http
        .call(
            Method::PATCH,
            &post_path,
            Some(&other_token),
            Some(json!({"title": "Mine now"})),
        )
        .await;
    assert_eq!(by_other.status, StatusCode::FORBIDDEN, "{}", by_other.text);
    let deleted_by_other = http
        .call(Method::DELETE, &post_path, Some(&other_token), None)
        .await;
    assert_eq!(deleted_by_other.status, StatusCode::FORBIDDEN);
    let empty = http
        .call(Method::PATCH, &post_path, Some(&token), Some(json!({})))
        .await;
    assert_eq!(
        empty.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        empty.text
    );
    let blank = http
        .call(
            Method::PATCH,
            &post_path,
            Some(&token),
            Some(json!({"description": ""})),
        )
        .await;
    assert_eq!(blank.locs(), ["body.description"], "{}", blank.text);
    let changed = http
        .call(
            Method::PATCH,
            &post_path,
            Some(&token),
            Some(json!({"description": "New text"})),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.json["title"], "Post 0");
    assert_eq!(changed.json["description"], "New text");

    let deleted = http
        .call(Method::DELETE, &post_path, Some(&token), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert!(deleted.text.is_empty());
    assert_eq!(
        http.get(&post_path, None).await.status,
        StatusCode::NOT_FOUND
    );
    let gone = http
        .call(Method::DELETE, &post_path, Some(&token), None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    // Writing needs a token.
    assert_unauthenticated(
        &http
            .post(
                "/api/v1/posts",
                None,
                json!({"title": "t", "description": "d"}),
            )
            .await,
    );
}

async fn bad_bodies_are_refused_with_a_clear_detail_and_nothing_is_written(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let http = &stack.http;
    let username = unique_name("bad");
    let signup = "/api/v1/signup";
    let good = json!({"username": username, "email": format!("{username}@example.com"), "password": PASSWORD});

    let not_json = http
        .raw(
            Method::POST,
            signup,
            "application/json",
            b"{\"username\": ".to_vec(),
        )
        .await;
    assert_eq!(
        not_json.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        not_json.text
    );
    assert_eq!(not_json.json["detail"][0]["type"], "json_invalid");
    assert_eq!(not_json.locs(), ["body"]);

    let array = http
        .raw(Method::POST, signup, "application/json", b"[1, 2]".to_vec())
        .await;
    assert_eq!(array.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(array.locs(), ["body"]);

    let wrong_types = http
        .post(
            signup,
            None,
            json!({"username": 42, "email": ["x"], "password": PASSWORD, "is_superuser": true}),
        )
        .await;
    assert_eq!(
        wrong_types.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        wrong_types.text
    );
    assert_eq!(
        wrong_types.locs(),
        ["body.is_superuser", "body.username", "body.email"]
    );

    let missing = http.post(signup, None, json!({"username": username})).await;
    assert_eq!(missing.locs(), ["body.email", "body.password"]);
    assert_eq!(missing.json["detail"][0]["type"], "missing");

    let invalid = http
        .post(
            signup,
            None,
            json!({"username": "x", "email": "not an email", "password": "short"}),
        )
        .await;
    assert_eq!(
        invalid.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        invalid.text
    );
    assert_eq!(
        invalid.locs(),
        ["body.username", "body.email", "body.password"]
    );
    assert!(
        invalid.json["detail"][0]["msg"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );

    let form = http
        .raw(
            Method::POST,
            signup,
            "application/x-www-form-urlencoded",
            b"username=x".to_vec(),
        )
        .await;
    assert_eq!(
        form.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        form.text
    );
    assert!(form.json["detail"].is_string());

    // A 2 MiB body, declared: refused from its headers (a client streaming it could
    // otherwise get a reset for an answer, as the gateway closes without reading it).
    let too_large = http
        .declared_body(Method::POST, signup, "application/json", 2 * 1024 * 1024)
        .await;
    assert_eq!(
        too_large.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        too_large.text
    );
    assert!(too_large.json["detail"].is_string());

    // None of these created the user: the name is still free.
    let created = http.post(signup, None, good).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
}

async fn missing_or_malformed_authorization_is_401_with_www_authenticate(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let http = &stack.http;
    let missing = http.get("/api/v1/users/me", None).await;
    assert_unauthenticated(&missing);
    assert_eq!(missing.json["detail"], "Not authenticated");
    for value in [
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "Bearer",
        "Bearer ",
        "token-without-scheme",
        "Bearer a b",
    ] {
        let request = http
            .request(Method::GET, "/api/v1/users/me")
            .header(header::AUTHORIZATION, value)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let answer = http.send(request).await;
        assert_unauthenticated(&answer);
    }
    assert_unauthenticated(&http.get("/api/v1/users/me", Some("not.a.jwt")).await);
    assert_unauthenticated(&http.call(Method::POST, "/api/v1/refresh", None, None).await);
    assert_unauthenticated(
        &http
            .call(Method::POST, "/api/v1/logout", Some("garbage"), None)
            .await,
    );
    // Login and signup ignore a bad Authorization header.
    let (username, _) = http.signup_and_login("ignores").await;
    let request = http
        .request(Method::POST, "/api/v1/login")
        .header(header::AUTHORIZATION, "Bearer garbage")
        .header(header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            json!({"username": username, "password": PASSWORD}).to_string(),
        )))
        .expect("request");
    assert_eq!(http.send(request).await.status, StatusCode::OK);
}

async fn bad_paths_and_queries_are_422_never_500(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let http = &stack.http;
    let (_, login) = http.signup_and_login("paths").await;
    let token = login.str("access_token");
    for path in [
        "/api/v1/posts/not-a-uuid",
        "/api/v1/posts/%ZZ",
        "/api/v1/posts/12345",
    ] {
        let answer = http.get(path, None).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {}",
            answer.text
        );
        assert_eq!(answer.locs(), ["path.id"], "{path}");
    }
    let answer = http
        .call(Method::DELETE, "/api/v1/sessions/xyz", Some(&token), None)
        .await;
    assert_eq!(answer.locs(), ["path.id"]);
    let unknown = http
        .get(&format!("/api/v1/posts/{}", uuid::Uuid::now_v7()), None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    assert!(unknown.json["detail"].is_string());

    for (query, loc) in [
        ("page_size=-1", "query.page_size"),
        ("page_size=99999999999999", "query.page_size"),
        ("page_size=abc", "query.page_size"),
        ("author_id=nope", "query.author_id"),
        ("page_token=%FF%FE", "query.page_token"),
    ] {
        let answer = http.get(&format!("/api/v1/posts?{query}"), None).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {}",
            answer.text
        );
        assert_eq!(answer.locs(), [loc], "{query}");
    }
    let huge_page = http.get("/api/v1/posts?page_size=1000000", None).await;
    assert_eq!(huge_page.status, StatusCode::OK, "{}", huge_page.text);

    let unknown_route = http.get("/api/v1/nothing-here", None).await;
    assert_eq!(unknown_route.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown_route.json["detail"], "Not Found");
    let wrong_method = http.call(Method::PUT, "/api/v1/posts", None, None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(wrong_method.json["detail"].is_string());
}

async fn the_user_agent_reaches_auth_service(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let http = &stack.http;
    let (username, _) = http.signup_and_login("agent").await;
    let request = http
        .request(Method::POST, "/api/v1/login")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "PostmanRuntime/7.39.0")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(http_body_util::Full::new(bytes::Bytes::from(
            json!({"username": username, "password": PASSWORD}).to_string(),
        )))
        .expect("request");
    let login = http.send(request).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let sessions = http
        .get("/api/v1/sessions", Some(&login.str("access_token")))
        .await;
    let current: Vec<&Value> = sessions.json["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter(|s| s["current"] == true)
        .collect();
    assert_eq!(current.len(), 1);
    // The caller's product comes first; tonic appends its own (RFC 9110 §10.1.5).
    let user_agent = current[0]["user_agent"].as_str().expect("user_agent");
    assert!(
        user_agent.starts_with("PostmanRuntime/7.39.0"),
        "{user_agent}"
    );
}

async fn health_and_the_openapi_document_are_served(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let http = &stack.http;
    let health = http.get("/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text);
    assert_eq!(health.json["status"], "SERVING");

    let document = http.get("/api/v1/openapi.json", None).await;
    assert_eq!(document.status, StatusCode::OK);
    assert_eq!(document.json["openapi"], "3.1.0");
    let documented: BTreeSet<(String, String)> = document.json["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = api_gateway::routes::table()
        .into_iter()
        .map(|(method, path, _)| (method.to_string(), path.to_owned()))
        .collect();
    assert_eq!(documented, routed);
    // Every documented route is served (none answers the router's own 404 or 405).
    for (method, path) in &documented {
        let path = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
        let answer = http
            .call(method.parse().expect("method"), &path, None, None)
            .await;
        assert!(
            answer.status != StatusCode::METHOD_NOT_ALLOWED && answer.json["detail"] != "Not Found",
            "{method} {path}: {}",
            answer.text
        );
    }
}

/// With both services down the gateway still starts, and answers 503 (never a hang).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_services_down_the_gateway_answers_503() {
    let (auth, blog) = (stores::ClosedPort::new(), stores::ClosedPort::new());
    let gateway = start_gateway(gateway_config(auth.url(), blog.url())).await;
    let http = Http::new(gateway.addr);
    let health = http.get("/healthz", None).await;
    assert_eq!(
        health.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        health.text
    );
    assert_eq!(health.json["auth"], "UNREACHABLE");
    for answer in [
        http.get("/api/v1/posts", None).await,
        http.get("/api/v1/users/me", Some("token")).await,
        http.post(
            "/api/v1/login",
            None,
            json!({"username": "ann", "password": PASSWORD}),
        )
        .await,
    ] {
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.text
        );
        assert!(answer.json["detail"].is_string());
        assert!(
            !answer.text.contains("127.0.0.1"),
            "internals leak: {}",
            answer.text
        );
    }
}

async fn the_jwk_set_lists_the_ed25519_key_that_signs_the_tokens(backend: Backend) {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    let dir = TempDir::new("gateway-jwks");
    let key = dir.join("signing.pem");
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .expect("openssl is required to make an Ed25519 key");
    assert!(made.success(), "openssl genpkey failed");
    let mut config = auth_config_on(backend).await;
    config.jwt_private_keys = Some(key.display().to_string());
    let stack = spawn_stack_with(backend, config).await;
    let http = &stack.http;

    let jwks = http.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.status, StatusCode::OK, "{}", jwks.text);
    let keys = jwks.json["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{}", jwks.text);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert_eq!(keys[0]["alg"], "EdDSA");

    let name = unique_name("jwks");
    let signup = http
        .post(
            "/api/v1/signup",
            None,
            json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD}),
        )
        .await;
    assert_eq!(signup.status, StatusCode::CREATED, "{}", signup.text);
    let login = http
        .post(
            "/api/v1/login",
            None,
            json!({"username": name, "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let token = login.str("access_token");
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().expect("header"))
            .expect("base64url"),
    )
    .expect("JSON header");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(
        header["kid"], keys[0]["kid"],
        "the token names the listed key"
    );
}
