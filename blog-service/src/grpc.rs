//! gRPC adapter: read metadata, hand the request to `BlogCore`, convert back.

use pair_common::time::timestamp;
use pair_proto::blog::v1::{self as pb, blog_service_server::BlogService};
use tonic::{Request, Response, Status, metadata::MetadataMap};

use crate::{domain::Post, error::BlogError, service::BlogCore};

/// blog.v1.BlogService over one `BlogCore`.
#[derive(Clone)]
pub struct BlogGrpc {
    core: BlogCore,
}

impl BlogGrpc {
    pub fn new(core: BlogCore) -> Self {
        Self { core }
    }
}

/// The bearer token of a write; a call without one is refused without asking
/// auth-service.
fn bearer(metadata: &MetadataMap) -> Result<&str, BlogError> {
    pair_common::status::bearer(metadata).map_err(|e| BlogError::Unauthenticated(e.message()))
}

impl From<Post> for pb::Post {
    fn from(post: Post) -> Self {
        Self {
            id: post.id.to_string(),
            author_id: post.author_id.to_string(),
            author_username: post.author_username,
            title: post.title,
            content: post.content,
            create_time: timestamp(post.create_time),
            update_time: timestamp(post.update_time),
        }
    }
}

#[tonic::async_trait]
impl BlogService for BlogGrpc {
    async fn list_posts(
        &self,
        request: Request<pb::ListPostsRequest>,
    ) -> Result<Response<pb::ListPostsResponse>, Status> {
        let r = request.into_inner();
        let page = self
            .core
            .list_posts(r.page_size, &r.page_token, r.author_id.as_deref())
            .await?;
        Ok(Response::new(pb::ListPostsResponse {
            posts: page.posts.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_post(
        &self,
        request: Request<pb::GetPostRequest>,
    ) -> Result<Response<pb::GetPostResponse>, Status> {
        let post = self.core.get_post(&request.into_inner().id).await?;
        Ok(Response::new(pb::GetPostResponse {
            post: Some(post.into()),
        }))
    }

    async fn create_post(
        &self,
        request: Request<pb::CreatePostRequest>,
    ) -> Result<Response<pb::CreatePostResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        let post = self
            .core
            .create_post(bearer(&metadata)?, &r.title, &r.content)
            .await?;
        Ok(Response::new(pb::CreatePostResponse {
            post: Some(post.into()),
        }))
    }

    async fn update_post(
        &self,
        request: Request<pb::UpdatePostRequest>,
    ) -> Result<Response<pb::UpdatePostResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        let post = self
            .core
            .update_post(
                bearer(&metadata)?,
                &r.id,
                r.title.as_deref(),
                r.content.as_deref(),
            )
            .await?;
        Ok(Response::new(pb::UpdatePostResponse {
            post: Some(post.into()),
        }))
    }

    async fn delete_post(
        &self,
        request: Request<pb::DeletePostRequest>,
    ) -> Result<Response<pb::DeletePostResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        self.core.delete_post(bearer(&metadata)?, &r.id).await?;
        Ok(Response::new(pb::DeletePostResponse {}))
    }
}
