//! Seeding: users (register + login) and posts, with bounded concurrency.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use anyhow::Context as _;
use pair_proto::{
    auth::v1::{LoginRequest, RegisterRequest, auth_service_client::AuthServiceClient},
    blog::v1::{CreatePostRequest, ListPostsRequest, blog_service_client::BlogServiceClient},
};
use tonic::{
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};

/// The password of every seeded user.
pub const PASSWORD: &str = "loadgen passphrase 42";

/// A registered, logged-in user.
#[derive(Clone, Debug)]
pub struct User {
    pub username: String,
    pub access_token: String,
    /// `Bearer <access_token>`, ready to send.
    pub authorization: MetadataValue<Ascii>,
}

/// Runs `work(i)` for every `i` in `0..count` with at most `concurrency` at once, on
/// tasks pulling indices from a shared counter; fails on the first error.
async fn for_each_bounded<T, F, Fut>(
    count: usize,
    concurrency: usize,
    work: F,
) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let next = Arc::clone(&next);
        let work = work.clone();
        handles.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(done);
                }
                done.push(work(i).await?);
            }
        }));
    }
    let mut all = Vec::with_capacity(count);
    for handle in handles {
        all.extend(handle.await.context("a seeding task panicked")??);
    }
    Ok(all)
}

/// Registers and logs in `count` users named `lg<run_id><n>`.
pub async fn users(
    channels: &[Channel],
    run_id: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<User>> {
    let channels: Arc<[Channel]> = channels.into();
    let run_id: Arc<str> = run_id.into();
    for_each_bounded(count, concurrency, move |i| {
        let mut client = AuthServiceClient::new(channels[i % channels.len()].clone());
        let username = format!("lg{run_id}{i}");
        async move {
            client
                .register(RegisterRequest {
                    username: username.clone(),
                    email: format!("{username}@loadgen.example.com"),
                    password: PASSWORD.to_owned(),
                })
                .await
                .with_context(|| format!("Register of seed user {username} failed"))?;
            let tokens = client
                .login(LoginRequest {
                    username: username.clone(),
                    password: PASSWORD.to_owned(),
                })
                .await
                .with_context(|| format!("Login of seed user {username} failed"))?
                .into_inner()
                .tokens
                .context("Login answered no tokens")?;
            let authorization = format!("Bearer {}", tokens.access_token)
                .parse()
                .context("the access token is not valid metadata")?;
            Ok(User {
                username,
                access_token: tokens.access_token,
                authorization,
            })
        }
    })
    .await
}

/// A request carrying `authorization` metadata.
pub fn authorized<T>(message: T, authorization: &MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", authorization.clone());
    request
}

/// A post body of a realistic size (~600 characters).
pub fn post_content(n: usize) -> String {
    let mut content = format!("Post number {n}, written by loadgen. ");
    while content.len() < 600 {
        content.push_str("The quick brown fox jumps over the lazy dog. ");
    }
    content
}

/// Creates `count` posts, round-robin over the users' tokens; returns their ids.
pub async fn posts(
    channels: &[Channel],
    users: &[User],
    run_id: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    anyhow::ensure!(!users.is_empty(), "posts need at least one seeded user");
    let channels: Arc<[Channel]> = channels.into();
    let users: Arc<[User]> = users.into();
    let run_id: Arc<str> = run_id.into();
    for_each_bounded(count, concurrency, move |i| {
        let mut client = BlogServiceClient::new(channels[i % channels.len()].clone());
        let request = authorized(
            CreatePostRequest {
                title: format!("loadgen {run_id} seed post {i}"),
                content: post_content(i),
            },
            &users[i % users.len()].authorization,
        );
        async move {
            let post = client
                .create_post(request)
                .await
                .with_context(|| format!("CreatePost of seed post {i} failed"))?
                .into_inner()
                .post
                .context("CreatePost answered no post")?;
            Ok(post.id)
        }
    })
    .await
}

/// The ids of up to `max` existing posts, newest first (for `--no-seed-posts`).
pub async fn existing_post_ids(channel: Channel, max: usize) -> anyhow::Result<Vec<String>> {
    let mut client = BlogServiceClient::new(channel);
    let mut ids = Vec::new();
    let mut page_token = String::new();
    while ids.len() < max {
        let page = client
            .list_posts(ListPostsRequest {
                page_size: 100,
                page_token,
                author_id: None,
            })
            .await
            .context("ListPosts failed while collecting post ids")?
            .into_inner();
        ids.extend(page.posts.into_iter().map(|post| post.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    ids.truncate(max);
    Ok(ids)
}
