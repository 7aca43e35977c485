//! What blog-service does, free of transport: every RPC is one method here. Reads are
//! anonymous and never touch auth-service; every write first asks auth-service who the
//! caller is.

use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use crate::{
    domain::{
        self, NewPost, Post,
        page::{ListQuery, Page},
    },
    error::BlogError,
    introspect::{Caller, Introspector},
    store::{PostStore, Read, ReadCache},
};

const INACTIVE_TOKEN: &str = "access token is invalid, expired or revoked";

/// The service: the post store, the answers kept of its reads (if the post cache is
/// on) and the auth-service client, shared by every call.
#[derive(Clone)]
pub struct BlogCore {
    posts: Arc<dyn PostStore>,
    kept: Option<ReadCache>,
    auth: Introspector,
}

impl BlogCore {
    pub fn new(posts: Arc<dyn PostStore>, kept: Option<ReadCache>, auth: Introspector) -> Self {
        Self { posts, kept, auth }
    }

    /// A page of posts, as `answer` makes it into what the transport sends (its encoded
    /// response). The answer is kept, if the post cache is on, and handed out as is to
    /// the same request until a change to the posts drops it.
    pub async fn list_posts(
        &self,
        page_size: i32,
        page_token: &str,
        author_id: Option<&str>,
        answer: impl FnOnce(Page) -> Bytes,
    ) -> Result<Bytes, BlogError> {
        let query =
            ListQuery::parse(page_size, page_token, author_id).map_err(BlogError::Validation)?;
        let read = Read::page(query.author_id, query.after, query.fetch_limit());
        self.answer(read, async {
            let rows = self
                .posts
                .list(query.author_id, query.after, query.fetch_limit())
                .await?;
            Ok(answer(query.page(rows)))
        })
        .await
    }

    /// Post `id`, as `answer` makes it into what the transport sends; kept as
    /// [`Self::list_posts`] keeps pages. A post that does not exist is not kept.
    pub async fn get_post(
        &self,
        id: &str,
        answer: impl FnOnce(Post) -> Bytes,
    ) -> Result<Bytes, BlogError> {
        let id = domain::parse_id(id).map_err(|why| BlogError::invalid("id", why))?;
        self.answer(Read::Post(id), async {
            let post = self.posts.find(id).await?;
            Ok(answer(post.ok_or(BlogError::NotFound("post"))?))
        })
        .await
    }

    /// The kept answer to `read`, or the `fresh` one, kept unless the posts changed
    /// while it was made.
    async fn answer(
        &self,
        read: Read,
        fresh: impl Future<Output = Result<Bytes, BlogError>>,
    ) -> Result<Bytes, BlogError> {
        let ticket = match self.kept.as_ref().map(|kept| kept.lookup(&read)) {
            Some(Ok(kept)) => return Ok(kept),
            Some(Err(ticket)) => ticket,
            None => None,
        };
        let answer = fresh.await?;
        if let (Some(kept), Some(ticket)) = (&self.kept, ticket) {
            kept.keep(ticket, read, answer.clone());
        }
        Ok(answer)
    }

    pub async fn create_post(
        &self,
        token: &str,
        title: &str,
        content: &str,
    ) -> Result<Post, BlogError> {
        let caller = self.writer(token).await?;
        let new = NewPost::parse(title, content).map_err(BlogError::Validation)?;
        let now = domain::now();
        let post = Post {
            id: Uuid::now_v7(),
            author_id: caller.user_id,
            author_username: caller.username,
            title: new.title.as_str().to_owned(),
            content: new.content.as_str().to_owned(),
            create_time: now,
            update_time: now,
        };
        self.posts.insert(&post).await?;
        tracing::info!(post_id = %post.id, author_id = %post.author_id, "post created");
        Ok(post)
    }

    pub async fn update_post(
        &self,
        token: &str,
        id: &str,
        title: Option<&str>,
        content: Option<&str>,
    ) -> Result<Post, BlogError> {
        let caller = self.writer(token).await?;
        let (id, change) =
            domain::parse_post_update(id, title, content).map_err(BlogError::Validation)?;
        match self
            .posts
            .update_owned(id, caller.user_id, &change, domain::now())
            .await?
        {
            Some(post) => {
                tracing::info!(post_id = %post.id, author_id = %post.author_id, "post updated");
                Ok(post)
            }
            None => Err(self.not_owned(id).await),
        }
    }

    pub async fn delete_post(&self, token: &str, id: &str) -> Result<(), BlogError> {
        let caller = self.writer(token).await?;
        let id = domain::parse_id(id).map_err(|why| BlogError::invalid("id", why))?;
        if self.posts.delete_owned(id, caller.user_id).await? {
            tracing::info!(post_id = %id, author_id = %caller.user_id, "post deleted");
            Ok(())
        } else {
            Err(self.not_owned(id).await)
        }
    }

    /// Succeeds while the post store answers (for the health service). auth-service is
    /// not probed: reads go on without it, so blog-service still serves.
    pub async fn ping(&self) -> Result<(), String> {
        self.posts
            .ping()
            .await
            .map_err(|error| format!("{:#}", anyhow::Error::new(error)))
    }

    /// The caller of a write, from their bearer token. Introspect reports the caller's
    /// current username, so their posts take it on here if they were renamed since their
    /// last write.
    async fn writer(&self, token: &str) -> Result<Caller, BlogError> {
        let caller = self
            .auth
            .introspect(token)
            .await?
            .ok_or(BlogError::Unauthenticated(INACTIVE_TOKEN))?;
        let renamed = self
            .posts
            .rename_author(caller.user_id, &caller.username)
            .await?;
        if renamed > 0 {
            tracing::info!(author_id = %caller.user_id, posts = renamed, "author renamed: posts follow");
        }
        Ok(caller)
    }

    /// Why a write to post `id` matched none of the caller's posts: it does not exist, or
    /// it is someone else's.
    async fn not_owned(&self, id: Uuid) -> BlogError {
        match self.posts.find(id).await {
            Ok(Some(_)) => BlogError::PermissionDenied,
            Ok(None) => BlogError::NotFound("post"),
            Err(error) => error.into(),
        }
    }
}
