//! Posts: each route one call to blog-service.

use axum::{
    extract::State,
    response::{IntoResponse as _, Response},
};
use http::StatusCode;
use pair_proto::blog::v1 as pb;

use crate::{
    AppState,
    error::{ApiError, ErrorMessage},
    extract::{Authed, Caller, JsonBody, PathId, PostsQuery},
    model::{NewPostBody, Post, PostPage, PostPatchBody},
    routes::json,
};

/// A page of posts, newest first; anyone may read.
#[utoipa::path(
    get, path = "/api/v1/posts", tag = "posts",
    params(
        ("page_size" = Option<i32>, Query, minimum = 0, description = "Posts per page: 0 or absent means 20, more than 100 means 100"),
        ("page_token" = Option<String>, Query, description = "The `next_page_token` of the previous page, with the same `author_id`"),
        ("author_id" = Option<uuid::Uuid>, Query, description = "Only this author's posts"),
    ),
    responses((status = 200, description = "A page of posts", body = PostPage))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: PostsQuery,
) -> Result<Response, ApiError> {
    let answer = state
        .upstream
        .blog
        .clone()
        .list_posts(caller.request(pb::ListPostsRequest {
            page_size: query.page_size,
            page_token: query.page_token,
            author_id: query.author_id,
        }))
        .await?
        .into_inner();
    let posts = answer
        .posts
        .into_iter()
        .map(|post| Post::try_from(Some(post)))
        .collect::<Result<Vec<_>, _>>()?;
    let next_page_token = Some(answer.next_page_token).filter(|token| !token.is_empty());
    Ok(json(
        StatusCode::OK,
        &PostPage {
            posts,
            next_page_token,
        },
    ))
}

/// One post; anyone may read.
#[utoipa::path(
    get, path = "/api/v1/posts/{id}", tag = "posts",
    params(("id" = uuid::Uuid, Path, description = "The post's id")),
    responses(
        (status = 200, description = "The post", body = Post),
        (status = 404, description = "No such post", body = ErrorMessage),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let answer = state
        .upstream
        .blog
        .clone()
        .get_post(caller.request(pb::GetPostRequest { id }))
        .await?
        .into_inner();
    Ok(json(StatusCode::OK, &Post::try_from(answer.post)?))
}

/// Writes a post as the calling user.
#[utoipa::path(
    post, path = "/api/v1/posts", tag = "posts",
    security(("bearer" = [])),
    request_body = NewPostBody,
    responses((status = 201, description = "The new post", body = Post))
)]
pub async fn create(
    State(state): State<AppState>,
    authed: Authed,
    JsonBody(body): JsonBody<NewPostBody>,
) -> Result<Response, ApiError> {
    let answer = state
        .upstream
        .blog
        .clone()
        .create_post(authed.request(pb::CreatePostRequest {
            title: body.title,
            content: body.description,
        }))
        .await?
        .into_inner();
    Ok(json(StatusCode::CREATED, &Post::try_from(answer.post)?))
}

/// Changes the fields given of one of the caller's posts.
#[utoipa::path(
    patch, path = "/api/v1/posts/{id}", tag = "posts",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The post's id")),
    request_body = PostPatchBody,
    responses(
        (status = 200, description = "The changed post", body = Post),
        (status = 403, description = "The post is another user's", body = ErrorMessage),
        (status = 404, description = "No such post", body = ErrorMessage),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    authed: Authed,
    PathId(id): PathId,
    JsonBody(body): JsonBody<PostPatchBody>,
) -> Result<Response, ApiError> {
    let answer = state
        .upstream
        .blog
        .clone()
        .update_post(authed.request(pb::UpdatePostRequest {
            id,
            title: body.title,
            content: body.description,
        }))
        .await?
        .into_inner();
    Ok(json(StatusCode::OK, &Post::try_from(answer.post)?))
}

/// Deletes one of the caller's posts.
#[utoipa::path(
    delete, path = "/api/v1/posts/{id}", tag = "posts",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The post's id")),
    responses(
        (status = 204, description = "The post is deleted"),
        (status = 403, description = "The post is another user's", body = ErrorMessage),
        (status = 404, description = "No such post", body = ErrorMessage),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    authed: Authed,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    state
        .upstream
        .blog
        .clone()
        .delete_post(authed.request(pb::DeletePostRequest { id }))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
