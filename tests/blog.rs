//! Black-box tests of blog-service with auth-service: real servers on port 0, real
//! PostgreSQL (a fresh database per server) and real Redis, called through the
//! generated tonic clients.

mod support;

on_every_backend!(
    the_homework_flow_works_step_by_step_over_grpc,
    paging_never_repeats_or_skips_an_older_post_while_posts_are_written,
    the_author_filter_lists_only_that_authors_posts,
    page_size_zero_means_twenty_above_one_hundred_means_one_hundred_and_negative_is_refused,
    a_page_token_we_did_not_issue_is_invalid_argument,
    only_the_author_may_update_or_delete_a_post,
    an_update_that_sets_no_field_is_invalid_argument,
    invalid_posts_and_ids_are_refused_naming_every_bad_field,
    writes_without_a_live_bearer_access_token_are_unauthenticated,
    writes_are_unavailable_while_auth_service_is_down_and_reads_go_on,
    blog_service_starts_and_serves_reads_while_auth_service_is_down,
    an_auth_service_that_never_answers_makes_writes_unavailable_within_the_deadline,
);

use std::time::{Duration, Instant};

use pair_proto::{auth::v1 as auth, blog::v1 as pb};
use support::{
    Backend, PASSWORD, Running, auth_client, authed,
    blog::{
        Blog, blog_config, blog_config_on, code, create_post, delete, drop_database, get_post, ids,
        list_posts, new_post, spawn_blog_on, start_blog, update,
    },
    blog_client, register_and_login, spawn_auth, spawn_auth_on, unique_name, violated_fields,
};
use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

type Auth = auth::auth_service_client::AuthServiceClient<Channel>;

/// A write that must not hang: an outage is to be answered, not waited out.
const HANG_GUARD: Duration = Duration::from_secs(5);

/// auth-service and blog-service, each on fresh stores, with a client of each.
async fn pair(backend: Backend) -> (Running, Running, Auth, Blog) {
    let auth_server = spawn_auth_on(backend).await;
    let blog_server = spawn_blog_on(backend, &auth_server).await;
    let auth = auth_client(&auth_server).await;
    let blog = blog_client(&blog_server).await;
    (auth_server, blog_server, auth, blog)
}

async fn login(auth: &mut Auth, username: &str) -> String {
    auth.login(auth::LoginRequest {
        username: username.into(),
        password: PASSWORD.into(),
    })
    .await
    .expect("login")
    .into_inner()
    .tokens
    .expect("tokens")
    .access_token
}

/// Whether the holder of `token` may still write.
async fn can_write(blog: &mut Blog, token: &str) -> Result<(), Code> {
    blog.create_post(authed(token, new_post("Still here?", "Checking.")))
        .await
        .map(drop)
        .map_err(|status| status.code())
}

/// `message` with `authorization` metadata set to exactly `value`.
fn with_authorization<T>(value: &'static str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", MetadataValue::from_static(value));
    request
}

async fn the_homework_flow_works_step_by_step_over_grpc(backend: Backend) {
    let (_auth_server, _blog_server, mut auth, mut blog) = pair(backend).await;

    // Anyone lists posts; there are none yet, which is not an error.
    let page = list_posts(&mut blog, 0, "", None)
        .await
        .expect("anonymous ListPosts");
    assert!(page.posts.is_empty());
    assert_eq!(page.next_page_token, "");

    // Register.
    let username = unique_name("flow");
    let user = auth
        .register(auth::RegisterRequest {
            username: username.clone(),
            email: format!("{username}@example.com"),
            password: PASSWORD.into(),
        })
        .await
        .expect("register")
        .into_inner()
        .user
        .expect("user");

    // Log in, sending a garbage bearer token that Login ignores.
    let tokens = auth
        .login(authed(
            "garbage",
            auth::LoginRequest {
                username: username.clone(),
                password: PASSWORD.into(),
            },
        ))
        .await
        .expect("login ignores garbage authorization")
        .into_inner()
        .tokens
        .expect("tokens");

    // Refresh: a new pair; the replaced access token can no longer write.
    let refreshed = auth
        .refresh(auth::RefreshRequest {
            refresh_token: tokens.refresh_token,
        })
        .await
        .expect("refresh")
        .into_inner()
        .tokens
        .expect("tokens");
    assert_eq!(
        can_write(&mut blog, &tokens.access_token).await,
        Err(Code::Unauthenticated)
    );
    let access = refreshed.access_token;

    // Profile.
    let profile = auth
        .get_profile(authed(&access, auth::GetProfileRequest {}))
        .await
        .expect("get profile")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(profile.id, user.id);
    assert_eq!(profile.username, username);

    // Create a post; anyone reads it back.
    let first = create_post(&mut blog, &access, "First post").await;
    assert_eq!(first.author_id, user.id);
    assert_eq!(first.author_username, username);
    assert_eq!(
        get_post(&mut blog, &first.id).await.expect("get post"),
        first
    );

    // Change username and email: a new pair, and the old access token dies at once.
    let new_name = unique_name("renamed");
    let changed = auth
        .update_profile(authed(
            &access,
            auth::UpdateProfileRequest {
                username: Some(new_name.clone()),
                email: Some(format!("{new_name}@example.org")),
            },
        ))
        .await
        .expect("update profile")
        .into_inner();
    assert_eq!(changed.user.expect("user").username, new_name);
    assert_eq!(
        can_write(&mut blog, &access).await,
        Err(Code::Unauthenticated)
    );
    let access = changed.tokens.expect("tokens").access_token;

    // The author's next write carries the new name to all their posts.
    let second = create_post(&mut blog, &access, "Second post").await;
    assert_eq!(second.author_username, new_name);
    let first_now = get_post(&mut blog, &first.id).await.expect("get post");
    assert_eq!(first_now.author_username, new_name);
    assert_eq!(first_now.title, first.title);
    let listed = list_posts(&mut blog, 0, "", Some(&user.id))
        .await
        .expect("list");
    assert_eq!(ids(&listed.posts), [second.id.clone(), first.id.clone()]);
    assert!(
        listed
            .posts
            .iter()
            .all(|post| post.author_username == new_name)
    );

    // Logout: this token can no longer write.
    auth.logout(authed(&access, auth::LogoutRequest {}))
        .await
        .expect("logout");
    assert_eq!(
        can_write(&mut blog, &access).await,
        Err(Code::Unauthenticated)
    );

    // Log in with the new username, on two devices; LogoutAll ends both.
    let phone = login(&mut auth, &new_name).await;
    let laptop = login(&mut auth, &new_name).await;
    assert_eq!(can_write(&mut blog, &phone).await, Ok(()));
    assert_eq!(can_write(&mut blog, &laptop).await, Ok(()));
    let revoked = auth
        .logout_all(authed(&phone, auth::LogoutAllRequest {}))
        .await
        .expect("logout all")
        .into_inner()
        .revoked_sessions;
    assert!(revoked >= 2, "revoked {revoked} sessions");
    assert_eq!(
        can_write(&mut blog, &phone).await,
        Err(Code::Unauthenticated)
    );
    assert_eq!(
        can_write(&mut blog, &laptop).await,
        Err(Code::Unauthenticated)
    );

    // Reading stays open to everyone.
    let all = list_posts(&mut blog, 0, "", None).await.expect("list");
    assert_eq!(all.posts.len(), 4);
}

async fn paging_never_repeats_or_skips_an_older_post_while_posts_are_written(backend: Backend) {
    let (_auth_server, _blog_server, mut auth, mut blog) = pair(backend).await;
    let (_, tokens) = register_and_login(&mut auth, "pager").await;
    let token = tokens.access_token;
    let mut older = Vec::new();
    for n in 0..45 {
        older.push(
            create_post(&mut blog, &token, &format!("Older {n}"))
                .await
                .id,
        );
    }
    older.reverse();

    let first = list_posts(&mut blog, 20, "", None).await.expect("page 1");

    // From now on another client writes posts while we page on.
    let (writing, started) = tokio::sync::oneshot::channel();
    let writer = {
        let mut blog = blog.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let mut writing = Some(writing);
            let mut written = Vec::new();
            for n in 0..15 {
                written.push(
                    create_post(&mut blog, &token, &format!("Newer {n}"))
                        .await
                        .id,
                );
                if n == 4 {
                    let _ = writing.take().map(|tx| tx.send(()));
                }
            }
            written
        })
    };
    started.await.expect("the writer has written");
    let second = list_posts(&mut blog, 20, &first.next_page_token, None)
        .await
        .expect("page 2");
    let third = list_posts(&mut blog, 20, &second.next_page_token, None)
        .await
        .expect("page 3");
    let mut newer = writer.await.expect("writer");

    let sizes = [&first, &second, &third].map(|page| page.posts.len());
    assert_eq!(sizes, [20, 20, 5]);
    assert_ne!(second.next_page_token, "");
    assert_eq!(third.next_page_token, "");
    let seen: Vec<String> = [first, second, third]
        .iter()
        .flat_map(|page| ids(&page.posts))
        .collect();
    assert_eq!(seen, older, "every older post once, newest first");

    // The posts written meanwhile come first when paging starts again.
    newer.reverse();
    let fresh = list_posts(&mut blog, 100, "", None)
        .await
        .expect("fresh page");
    assert_eq!(ids(&fresh.posts[..15]), newer);
    assert_eq!(ids(&fresh.posts[15..]), older);
}

async fn the_author_filter_lists_only_that_authors_posts(backend: Backend) {
    let (_auth_server, _blog_server, mut auth, mut blog) = pair(backend).await;
    let (ann, ann_tokens) = register_and_login(&mut auth, "ann").await;
    let (bob, bob_tokens) = register_and_login(&mut auth, "bob").await;
    let mut anns = Vec::new();
    for n in 0..3 {
        anns.push(
            create_post(&mut blog, &ann_tokens.access_token, &format!("Ann {n}"))
                .await
                .id,
        );
        create_post(&mut blog, &bob_tokens.access_token, &format!("Bob {n}")).await;
    }
    anns.reverse();

    let page = list_posts(&mut blog, 2, "", Some(&ann.id))
        .await
        .expect("ann page 1");
    assert_eq!(ids(&page.posts), anns[..2]);
    assert!(page.posts.iter().all(|post| post.author_id == ann.id));
    let rest = list_posts(&mut blog, 2, &page.next_page_token, Some(&ann.id))
        .await
        .expect("ann page 2");
    assert_eq!(ids(&rest.posts), anns[2..]);
    assert_eq!(rest.next_page_token, "");

    // A token is bound to the filter it was issued for.
    for other in [Some(bob.id.as_str()), None] {
        let status = list_posts(&mut blog, 2, &page.next_page_token, other)
            .await
            .expect_err("token of another filter");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["page_token"]);
    }
    let unfiltered = list_posts(&mut blog, 2, "", None).await.expect("all posts");
    let status = list_posts(&mut blog, 2, &unfiltered.next_page_token, Some(&ann.id))
        .await
        .expect_err("unfiltered token with a filter");
    assert_eq!(status.code(), Code::InvalidArgument);

    // An author without posts is an empty list; a malformed author id is refused.
    let nobody = uuid::Uuid::now_v7().to_string();
    let empty = list_posts(&mut blog, 0, "", Some(&nobody))
        .await
        .expect("no posts");
    assert!(empty.posts.is_empty());
    let status = list_posts(&mut blog, 0, "", Some("ann"))
        .await
        .expect_err("malformed author_id");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["author_id"]);
}

async fn page_size_zero_means_twenty_above_one_hundred_means_one_hundred_and_negative_is_refused(
    backend: Backend,
) {
    let (_auth_server, _blog_server, mut auth, blog) = pair(backend).await;
    let (_, tokens) = register_and_login(&mut auth, "many").await;
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..4 {
        let mut blog = blog.clone();
        let token = tokens.access_token.clone();
        writers.spawn(async move {
            for n in (writer..101).step_by(4) {
                create_post(&mut blog, &token, &format!("Post {n}")).await;
            }
        });
    }
    writers.join_all().await;
    let mut blog = blog;

    let page = list_posts(&mut blog, 0, "", None)
        .await
        .expect("page size 0");
    assert_eq!(page.posts.len(), 20);
    assert_ne!(page.next_page_token, "");
    let page = list_posts(&mut blog, 500, "", None)
        .await
        .expect("page size 500");
    assert_eq!(page.posts.len(), 100);
    assert_ne!(page.next_page_token, "");
    let last = list_posts(&mut blog, 500, &page.next_page_token, None)
        .await
        .expect("the rest");
    assert_eq!(last.posts.len(), 1);
    assert_eq!(last.next_page_token, "");

    let status = list_posts(&mut blog, -1, "", None)
        .await
        .expect_err("negative page size");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["page_size"]);
}

async fn a_page_token_we_did_not_issue_is_invalid_argument(backend: Backend) {
    let (_auth_server, _blog_server, mut auth, mut blog) = pair(backend).await;
    let (_, tokens) = register_and_login(&mut auth, "tokens").await;
    for n in 0..3 {
        create_post(&mut blog, &tokens.access_token, &format!("Post {n}")).await;
    }
    let page = list_posts(&mut blog, 1, "", None).await.expect("page 1");
    let token = page.next_page_token;

    let mut tampered = token.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let same_length = "A".repeat(token.len());
    for bad in [
        tampered.as_str(),
        same_length.as_str(),
        "garbage",
        "%%%",
        "eyJvZmZzZXQiOjIwfQ",
    ] {
        let status = list_posts(&mut blog, 1, bad, None)
            .await
            .expect_err("a token we did not issue");
        assert_eq!(status.code(), Code::InvalidArgument, "{bad}");
        assert_eq!(violated_fields(&status), ["page_token"], "{bad}");
    }

    let next = list_posts(&mut blog, 1, &token, None)
        .await
        .expect("page 2");
    assert_eq!(next.posts.len(), 1);
    assert_ne!(next.posts[0].id, page.posts[0].id);
}

async fn only_the_author_may_update_or_delete_a_post(backend: Backend) {
    let (_auth_server, _blog_server, mut auth, mut blog) = pair(backend).await;
    let (_, ann) = register_and_login(&mut auth, "ann").await;
    let (_, bob) = register_and_login(&mut auth, "bob").await;
    let post = create_post(&mut blog, &ann.access_token, "Ann's post").await;

    let status = blog
        .update_post(authed(
            &bob.access_token,
            update(&post.id, Some("Bob's now"), None),
        ))
        .await
        .expect_err("bob updates ann's post");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = blog
        .delete_post(authed(&bob.access_token, delete(&post.id)))
        .await
        .expect_err("bob deletes ann's post");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        get_post(&mut blog, &post.id).await.expect("unchanged"),
        post
    );

    // The author changes only the fields they set.
    let retitled = blog
        .update_post(authed(
            &ann.access_token,
            update(&post.id, Some("  New title\n"), None),
        ))
        .await
        .expect("update title")
        .into_inner()
        .post
        .expect("post");
    assert_eq!(retitled.title, "New title");
    assert_eq!(retitled.content, post.content);
    assert_eq!(retitled.create_time, post.create_time);
    let time = |t: &Option<prost_types::Timestamp>| t.map(|t| (t.seconds, t.nanos));
    assert!(time(&retitled.update_time) > time(&post.update_time));
    let rewritten = blog
        .update_post(authed(
            &ann.access_token,
            update(&post.id, None, Some("New content")),
        ))
        .await
        .expect("update content")
        .into_inner()
        .post
        .expect("post");
    assert_eq!(rewritten.title, "New title");
    assert_eq!(rewritten.content, "New content");
    assert_eq!(get_post(&mut blog, &post.id).await.expect("get"), rewritten);

    // Deleted is gone, for everyone.
    blog.delete_post(authed(&ann.access_token, delete(&post.id)))
        .await
        .expect("delete");
    assert_eq!(code(get_post(&mut blog, &post.id).await), Code::NotFound);
    for token in [&ann.access_token, &bob.access_token] {
        let deleted = blog.delete_post(authed(token, delete(&post.id))).await;
        assert_eq!(code(deleted), Code::NotFound);
        let updated = blog
            .update_post(authed(token, update(&post.id, Some("Again"), None)))
            .await;
        assert_eq!(code(updated), Code::NotFound);
    }
}

async fn an_update_that_sets_no_field_is_invalid_argument(backend: Backend) {
    let (_auth_server, _blog_server, mut auth, mut blog) = pair(backend).await;
    let (_, tokens) = register_and_login(&mut auth, "noop").await;
    let post = create_post(&mut blog, &tokens.access_token, "Untouched").await;
    let status = blog
        .update_post(authed(&tokens.access_token, update(&post.id, None, None)))
        .await
        .expect_err("no field set");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["title", "content"]);
    assert_eq!(get_post(&mut blog, &post.id).await.expect("get"), post);
}

async fn invalid_posts_and_ids_are_refused_naming_every_bad_field(backend: Backend) {
    let (_auth_server, _blog_server, mut auth, mut blog) = pair(backend).await;
    let (_, tokens) = register_and_login(&mut auth, "checks").await;
    let token = tokens.access_token.as_str();

    let cases = [
        (" \t\u{3000} ", "x".repeat(50_001), vec!["title", "content"]),
        ("", String::new(), vec!["title", "content"]),
        (&*"t".repeat(201), "fine".into(), vec!["title"]),
        ("Fine", String::new(), vec!["content"]),
    ];
    for (title, content, fields) in cases {
        let status = blog
            .create_post(authed(token, new_post(title, &content)))
            .await
            .expect_err("invalid post");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), fields);
    }

    // Limits count characters: 200 and 50,000 four-byte characters fit (200 KB).
    let title = "😀".repeat(200);
    let content = "😀".repeat(50_000);
    let post = blog
        .create_post(authed(token, new_post(&title, &content)))
        .await
        .expect("the largest post")
        .into_inner()
        .post
        .expect("post");
    assert_eq!(post.title, title);
    assert_eq!(
        get_post(&mut blog, &post.id).await.expect("get").content,
        content
    );

    let status = blog
        .update_post(authed(token, update(&post.id, Some("   "), Some(""))))
        .await
        .expect_err("invalid update");
    assert_eq!(violated_fields(&status), ["title", "content"]);

    // Malformed ids.
    let status = get_post(&mut blog, "not-a-uuid").await.expect_err("get");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["id"]);
    let status = blog
        .update_post(authed(token, update("42", Some("Title"), None)))
        .await
        .expect_err("update");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["id"]);
    let status = blog
        .delete_post(authed(token, delete("")))
        .await
        .expect_err("delete");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["id"]);

    // An unknown but well-formed id is NOT_FOUND.
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(code(get_post(&mut blog, &unknown).await), Code::NotFound);
}

async fn writes_without_a_live_bearer_access_token_are_unauthenticated(backend: Backend) {
    let (_auth_server, _blog_server, mut auth, mut blog) = pair(backend).await;
    let (_, tokens) = register_and_login(&mut auth, "anon").await;
    let post = create_post(&mut blog, &tokens.access_token, "Target").await;

    for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer garbage", "garbage"] {
        let created = blog
            .create_post(with_authorization(value, new_post("T", "C")))
            .await;
        assert_eq!(code(created), Code::Unauthenticated, "{value}");
        let updated = blog
            .update_post(with_authorization(value, update(&post.id, Some("T"), None)))
            .await;
        assert_eq!(code(updated), Code::Unauthenticated, "{value}");
        let deleted = blog
            .delete_post(with_authorization(value, delete(&post.id)))
            .await;
        assert_eq!(code(deleted), Code::Unauthenticated, "{value}");
    }
    let missing = blog.create_post(new_post("T", "C")).await;
    assert_eq!(code(missing), Code::Unauthenticated);
    // A refresh token is not an access token.
    assert_eq!(
        can_write(&mut blog, &tokens.refresh_token).await,
        Err(Code::Unauthenticated)
    );

    // Reads ignore authorization, even garbage.
    blog.list_posts(with_authorization(
        "Bearer garbage",
        pb::ListPostsRequest::default(),
    ))
    .await
    .expect("list with garbage authorization");
    let read = blog
        .get_post(with_authorization(
            "Bearer garbage",
            pb::GetPostRequest {
                id: post.id.clone(),
            },
        ))
        .await
        .expect("get with garbage authorization");
    assert_eq!(read.into_inner().post.expect("post"), post);
}

async fn writes_are_unavailable_while_auth_service_is_down_and_reads_go_on(backend: Backend) {
    let (auth_server, _blog_server, mut auth, mut blog) = pair(backend).await;
    let (_, tokens) = register_and_login(&mut auth, "outage").await;
    let token = tokens.access_token;
    let post = create_post(&mut blog, &token, "Before the outage").await;
    auth_server.stop().await;

    let started = Instant::now();
    let created = tokio::time::timeout(
        HANG_GUARD,
        blog.create_post(authed(&token, new_post("During", "the outage"))),
    )
    .await
    .expect("CreatePost answers while auth-service is down");
    assert_eq!(code(created), Code::Unavailable);
    let updated = tokio::time::timeout(
        HANG_GUARD,
        blog.update_post(authed(&token, update(&post.id, Some("During"), None))),
    )
    .await
    .expect("UpdatePost answers");
    assert_eq!(code(updated), Code::Unavailable);
    let deleted = tokio::time::timeout(
        HANG_GUARD,
        blog.delete_post(authed(&token, delete(&post.id))),
    )
    .await
    .expect("DeletePost answers");
    assert_eq!(code(deleted), Code::Unavailable);
    assert!(
        started.elapsed() < HANG_GUARD,
        "took {:?}",
        started.elapsed()
    );

    // No token: refused without asking auth-service.
    assert_eq!(
        code(blog.create_post(new_post("T", "C")).await),
        Code::Unauthenticated
    );

    // Reads never needed auth-service.
    let page = list_posts(&mut blog, 0, "", None).await.expect("list");
    assert_eq!(ids(&page.posts), std::slice::from_ref(&post.id));
    assert_eq!(get_post(&mut blog, &post.id).await.expect("get"), post);
}

async fn blog_service_starts_and_serves_reads_while_auth_service_is_down(backend: Backend) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let auth_url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let blog_server = start_blog(blog_config_on(backend, auth_url).await).await;
    let mut blog = blog_client(&blog_server).await;

    let page = list_posts(&mut blog, 0, "", None).await.expect("list");
    assert!(page.posts.is_empty());
    let created = tokio::time::timeout(
        HANG_GUARD,
        blog.create_post(authed("token", new_post("T", "C"))),
    )
    .await
    .expect("CreatePost answers");
    assert_eq!(code(created), Code::Unavailable);
}

async fn an_auth_service_that_never_answers_makes_writes_unavailable_within_the_deadline(
    backend: Backend,
) {
    // Accepts connections (the kernel does) but never speaks HTTP/2.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut config = blog_config_on(
        backend,
        format!("http://{}", silent.local_addr().expect("addr")),
    )
    .await;
    config.auth_timeout = Duration::from_millis(500);
    let blog_server = start_blog(config).await;
    let mut blog = blog_client(&blog_server).await;

    let started = Instant::now();
    let created = tokio::time::timeout(
        HANG_GUARD,
        blog.create_post(authed("token", new_post("T", "C"))),
    )
    .await
    .expect("CreatePost answers");
    assert_eq!(code(created), Code::Unavailable);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    drop(silent);
}

async fn health(client: &mut HealthClient<Channel>, service: &str) -> Option<ServingStatus> {
    let response = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(response.into_inner().status).ok()
}

/// Polls until `service` reports `wanted`; how long that took, or `None` after `limit`.
async fn wait_for(
    client: &mut HealthClient<Channel>,
    service: &str,
    wanted: ServingStatus,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if health(client, service).await == Some(wanted) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_post_database() {
    let auth_server = spawn_auth().await;
    let config = blog_config(auth_server.url()).await;
    let database_url = config.database_url.clone().expect("database url");
    let blog_server = start_blog(config).await;
    let mut health_client = HealthClient::new(blog_server.channel().await);
    let mut blog = blog_client(&blog_server).await;

    for service in ["", "blog.v1.BlogService"] {
        let took = wait_for(
            &mut health_client,
            service,
            ServingStatus::Serving,
            Duration::from_secs(2),
        )
        .await;
        assert!(took.is_some(), "`{service}` never became SERVING");
    }

    drop_database(&database_url).await;
    for service in ["blog.v1.BlogService", ""] {
        let took = wait_for(
            &mut health_client,
            service,
            ServingStatus::NotServing,
            Duration::from_secs(2),
        )
        .await;
        assert!(
            took.is_some(),
            "`{service}` still SERVING 2 s after the database went away"
        );
    }
    let listed = tokio::time::timeout(HANG_GUARD, list_posts(&mut blog, 0, "", None))
        .await
        .expect("ListPosts answers");
    assert_eq!(code(listed), Code::Unavailable);
}
