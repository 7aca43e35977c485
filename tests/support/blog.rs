//! Starting blog-service for black-box tests: on a fresh PostgreSQL database of its own
//! (never auth-service's), on port 0, pointed at an auth-service.

use std::{fmt::Debug, net::SocketAddr, time::Duration};

use pair_proto::blog::v1::{self as blog, blog_service_client::BlogServiceClient};
use sqlx::{Connection as _, Executor as _, PgConnection};
use tonic::{Code, Status, transport::Channel};

use super::{Backend, Running, authed, fresh_database_on, postgres_server, serve};

/// The configuration tests run blog-service with: a fresh PostgreSQL database, port 0,
/// and auth-service at `auth_url`.
pub async fn blog_config(auth_url: String) -> blog_service::Config {
    blog_config_on(Backend::PostgresRedis, auth_url).await
}

/// The same on a fresh database of `backend`.
pub async fn blog_config_on(backend: Backend, auth_url: String) -> blog_service::Config {
    blog_service::Config {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url: Some(fresh_database_on(backend, "blogtest").await),
        auth_url,
        auth_timeout: Duration::from_secs(2),
        store_timeout: Duration::from_secs(2),
        post_cache: true,
        post_cache_mb: 24,
        metrics_addr: None,
        health_addr: None,
        cors_allowed_origins: Vec::new(),
        max_connections: pair_common::limits::Limits::DEFAULT.max_connections,
        max_streams_per_connection: pair_common::limits::Limits::DEFAULT.max_streams_per_connection,
        max_calls_in_flight: pair_common::limits::Limits::DEFAULT.max_calls_in_flight,
    }
}

/// Starts blog-service with `config`.
pub async fn start_blog(config: blog_service::Config) -> Running {
    let app = blog_service::Application::build(config)
        .await
        .expect("build blog-service");
    serve(app)
}

/// Starts blog-service on a fresh database, using the running `auth` server.
pub async fn spawn_blog(auth: &Running) -> Running {
    start_blog(blog_config(auth.url()).await).await
}

/// Starts blog-service on a fresh database of `backend`, using the running `auth` server.
pub async fn spawn_blog_on(backend: Backend, auth: &Running) -> Running {
    start_blog(blog_config_on(backend, auth.url()).await).await
}

/// Drops the database at `url` with its connections still open: the store goes away
/// under a running server.
pub async fn drop_database(url: &str) {
    let (_, name) = url.rsplit_once('/').expect("database url has a name");
    let server = postgres_server();
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {server} is required for these tests: {e}"));
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE \"{name}\" WITH (FORCE)"
        )))
        .await
        .expect("drop test database");
}

/// A CreatePost request.
pub fn new_post(title: &str, content: &str) -> blog::CreatePostRequest {
    blog::CreatePostRequest {
        title: title.into(),
        content: content.into(),
    }
}

/// Creates a post as the holder of `access_token`.
pub async fn create_post(
    client: &mut BlogServiceClient<Channel>,
    access_token: &str,
    title: &str,
) -> blog::Post {
    client
        .create_post(authed(
            access_token,
            new_post(title, &format!("All about {title}.")),
        ))
        .await
        .expect("create post")
        .into_inner()
        .post
        .expect("post")
}

/// One ListPosts call.
pub async fn list_posts(
    client: &mut BlogServiceClient<Channel>,
    page_size: i32,
    page_token: &str,
    author_id: Option<&str>,
) -> Result<blog::ListPostsResponse, tonic::Status> {
    client
        .list_posts(blog::ListPostsRequest {
            page_size,
            page_token: page_token.into(),
            author_id: author_id.map(str::to_owned),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// One GetPost call.
pub async fn get_post(
    client: &mut BlogServiceClient<Channel>,
    id: &str,
) -> Result<blog::Post, tonic::Status> {
    client
        .get_post(blog::GetPostRequest { id: id.into() })
        .await
        .map(|response| response.into_inner().post.expect("post"))
}

/// The ids of `posts`, in order.
pub fn ids(posts: &[blog::Post]) -> Vec<String> {
    posts.iter().map(|post| post.id.clone()).collect()
}

/// A client of blog-service.
pub type Blog = BlogServiceClient<Channel>;

/// The code of a call that must have failed.
pub fn code<T: Debug>(result: Result<T, Status>) -> Code {
    result.expect_err("the call should have failed").code()
}

/// An UpdatePost of post `id` setting the given fields.
pub fn update(id: &str, title: Option<&str>, content: Option<&str>) -> blog::UpdatePostRequest {
    blog::UpdatePostRequest {
        id: id.into(),
        title: title.map(str::to_owned),
        content: content.map(str::to_owned),
    }
}

/// A DeletePost of post `id`.
pub fn delete(id: &str) -> blog::DeletePostRequest {
    blog::DeletePostRequest { id: id.into() }
}
