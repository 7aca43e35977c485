"""The original homework flow, through stubs generated from proto/ with grpcio-tools.

Runs against a running pair: AUTH_ADDR and BLOG_ADDR (default 127.0.0.1:50051 / :50052).
"""

import grpc
import pytest
from auth.v1 import auth_pb2, auth_pb2_grpc
from blog.v1 import blog_pb2, blog_pb2_grpc

from helpers import (
    PASSWORD,
    TIMEOUT,
    assert_recent,
    assert_token_pair,
    assert_uuid_v7,
    bearer,
    expect_code,
    unique_username,
)

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture()
def auth(auth_channel):
    return auth_pb2_grpc.AuthServiceStub(auth_channel)


@pytest.fixture()
def introspection(auth_channel):
    return auth_pb2_grpc.IntrospectionServiceStub(auth_channel)


@pytest.fixture()
def blog(blog_channel):
    return blog_pb2_grpc.BlogServiceStub(blog_channel)


def login(auth, username, password=PASSWORD):
    return auth.Login(
        auth_pb2.LoginRequest(username=username, password=password), timeout=TIMEOUT
    )


def test_homework_flow(auth, introspection, blog):
    # 1. Anyone may list posts: no metadata at all.
    listed = blog.ListPosts(blog_pb2.ListPostsRequest(page_size=5), timeout=TIMEOUT)
    assert len(listed.posts) <= 5

    # 2. Register.
    username = unique_username()
    email = f"{username}@example.com"
    registered = auth.Register(
        auth_pb2.RegisterRequest(username=username, email=email, password=PASSWORD),
        timeout=TIMEOUT,
    ).user
    assert_uuid_v7(registered.id)
    assert (registered.username, registered.email) == (username, email)
    created = assert_recent(registered.create_time)
    assert registered.update_time.ToDatetime().timestamp() >= created.timestamp() - 1
    user_id = registered.id

    # 3. Login; a garbage authorization header is ignored.
    logged_in = auth.Login(
        auth_pb2.LoginRequest(username=username, password=PASSWORD),
        metadata=(("authorization", "Bearer not-a-token-at-all"),),
        timeout=TIMEOUT,
    )
    assert_token_pair(logged_in.tokens)
    assert logged_in.user.id == user_id
    assert logged_in.user.username == username
    first = logged_in.tokens

    # 4. Refresh: a new pair of the same session; the old access token is dead at once.
    refreshed = auth.Refresh(
        auth_pb2.RefreshRequest(refresh_token=first.refresh_token), timeout=TIMEOUT
    ).tokens
    assert_token_pair(refreshed)
    assert refreshed.access_token != first.access_token
    assert refreshed.refresh_token != first.refresh_token
    expect_code(
        UNAUTHENTICATED,
        auth.GetProfile,
        auth_pb2.GetProfileRequest(),
        metadata=bearer(first.access_token),
    )
    access = refreshed.access_token

    # 5. GetProfile with the new access token.
    profile = auth.GetProfile(
        auth_pb2.GetProfileRequest(), metadata=bearer(access), timeout=TIMEOUT
    ).user
    assert (profile.id, profile.username, profile.email) == (user_id, username, email)

    # The session is listed as the current one; Introspect agrees.
    sessions = auth.ListSessions(
        auth_pb2.ListSessionsRequest(), metadata=bearer(access), timeout=TIMEOUT
    ).sessions
    assert len(sessions) == 1 and sessions[0].current
    assert "grpc-python" in sessions[0].user_agent
    checked = introspection.Introspect(
        auth_pb2.IntrospectRequest(token=access), timeout=TIMEOUT
    )
    assert checked.active
    assert (checked.user_id, checked.username) == (user_id, username)
    assert checked.session_id == sessions[0].id

    # 6. CreatePost, then read it back anonymously.
    post = blog.CreatePost(
        blog_pb2.CreatePostRequest(title="Hello from Python", content="First post"),
        metadata=bearer(access),
        timeout=TIMEOUT,
    ).post
    assert_uuid_v7(post.id)
    assert (post.author_id, post.author_username) == (user_id, username)
    assert (post.title, post.content) == ("Hello from Python", "First post")
    assert_recent(post.create_time)
    fetched = blog.GetPost(blog_pb2.GetPostRequest(id=post.id), timeout=TIMEOUT).post
    assert fetched == post
    mine = blog.ListPosts(
        blog_pb2.ListPostsRequest(author_id=user_id), timeout=TIMEOUT
    ).posts
    assert [p.id for p in mine] == [post.id]

    # 7. UpdateProfile: new username and email, a new pair; the old access token is dead.
    new_username = unique_username("py-renamed")
    new_email = f"{new_username}@example.org"
    updated = auth.UpdateProfile(
        auth_pb2.UpdateProfileRequest(username=new_username, email=new_email),
        metadata=bearer(access),
        timeout=TIMEOUT,
    )
    assert (updated.user.id, updated.user.username, updated.user.email) == (
        user_id,
        new_username,
        new_email,
    )
    assert_token_pair(updated.tokens)
    assert updated.tokens.access_token != access
    expect_code(
        UNAUTHENTICATED,
        blog.CreatePost,
        blog_pb2.CreatePostRequest(title="stale", content="old token"),
        metadata=bearer(access),
    )
    access = updated.tokens.access_token

    # The new token writes, as the new name; the author's older post follows the rename.
    second = blog.CreatePost(
        blog_pb2.CreatePostRequest(title="Renamed", content="Second post"),
        metadata=bearer(access),
        timeout=TIMEOUT,
    ).post
    assert second.author_username == new_username
    renamed = blog.GetPost(blog_pb2.GetPostRequest(id=post.id), timeout=TIMEOUT).post
    assert renamed.author_username == new_username

    # 8. Logout: the token can no longer write.
    auth.Logout(auth_pb2.LogoutRequest(), metadata=bearer(access), timeout=TIMEOUT)
    expect_code(
        UNAUTHENTICATED,
        blog.CreatePost,
        blog_pb2.CreatePostRequest(title="after logout", content="nope"),
        metadata=bearer(access),
    )
    assert not introspection.Introspect(
        auth_pb2.IntrospectRequest(token=access), timeout=TIMEOUT
    ).active

    # 9. Login with the new username; the old one no longer exists.
    expect_code(
        UNAUTHENTICATED,
        auth.Login,
        auth_pb2.LoginRequest(username=username, password=PASSWORD),
    )
    one = login(auth, new_username)
    assert_token_pair(one.tokens)
    assert (one.user.id, one.user.username) == (user_id, new_username)

    # 10. LogoutAll from one of two sessions: every session's token stops writing.
    two = login(auth, new_username)
    revoked = auth.LogoutAll(
        auth_pb2.LogoutAllRequest(), metadata=bearer(one.tokens.access_token), timeout=TIMEOUT
    )
    assert revoked.revoked_sessions == 2
    for tokens in (one.tokens, two.tokens):
        expect_code(
            UNAUTHENTICATED,
            blog.CreatePost,
            blog_pb2.CreatePostRequest(title="after logout all", content="nope"),
            metadata=bearer(tokens.access_token),
        )
        expect_code(
            UNAUTHENTICATED,
            auth.Refresh,
            auth_pb2.RefreshRequest(refresh_token=tokens.refresh_token),
        )

    # The posts stay readable by anyone.
    still = blog.ListPosts(
        blog_pb2.ListPostsRequest(author_id=user_id), timeout=TIMEOUT
    ).posts
    assert [p.id for p in still] == [second.id, post.id]
