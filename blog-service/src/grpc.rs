//! gRPC adapter: read metadata, hand the request to `BlogCore`, convert back.
//!
//! The two reads, GetPost and ListPosts, answer with their response already encoded:
//! `BlogCore` keeps those bytes in the post cache and hands them out again, so a hit
//! copies one block instead of building and encoding 20 posts. `BlogServer` serves those
//! two methods with a codec that writes such bytes as they are
//! (docs/ARCHITECTURE.md, "The post cache keeps encoded answers"), and every other
//! method through the generated server.

use std::{
    convert::Infallible,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{BufMut as _, Bytes};
use pair_common::time::timestamp;
use pair_proto::blog::v1::{
    self as pb,
    blog_service_server::{BlogService, BlogServiceServer},
};
use prost::Message as _;
use tonic::{
    Request, Response, Status,
    body::Body,
    codec::{Codec, EncodeBuf, Encoder},
    metadata::MetadataMap,
    server::{Grpc, NamedService, UnaryService},
};
use tonic_prost::ProstDecoder;

use crate::{
    domain::{Post, page::Page},
    error::BlogError,
    service::BlogCore,
};

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

/// The encoded `ListPostsResponse` of `page`.
fn page_answer(page: Page) -> Bytes {
    pb::ListPostsResponse {
        posts: page.posts.into_iter().map(Into::into).collect(),
        next_page_token: page.next_page_token,
    }
    .encode_to_vec()
    .into()
}

/// The encoded `GetPostResponse` of `post`.
fn post_answer(post: Post) -> Bytes {
    pb::GetPostResponse {
        post: Some(post.into()),
    }
    .encode_to_vec()
    .into()
}

impl BlogGrpc {
    /// ListPosts, its response encoded.
    async fn list_posts_answer(&self, r: pb::ListPostsRequest) -> Result<Bytes, Status> {
        let answer = self
            .core
            .list_posts(
                r.page_size,
                &r.page_token,
                r.author_id.as_deref(),
                page_answer,
            )
            .await?;
        Ok(answer)
    }

    /// GetPost, its response encoded.
    async fn get_post_answer(&self, r: pb::GetPostRequest) -> Result<Bytes, Status> {
        Ok(self.core.get_post(&r.id, post_answer).await?)
    }
}

/// A response this service encoded itself, read back (for callers of `BlogService`
/// itself; the server sends the bytes).
fn decoded<M: prost::Message + Default>(answer: Bytes) -> Result<Response<M>, Status> {
    M::decode(answer)
        .map(Response::new)
        .map_err(|error| Status::internal(format!("an answer did not decode: {error}")))
}

#[tonic::async_trait]
impl BlogService for BlogGrpc {
    async fn list_posts(
        &self,
        request: Request<pb::ListPostsRequest>,
    ) -> Result<Response<pb::ListPostsResponse>, Status> {
        decoded(self.list_posts_answer(request.into_inner()).await?)
    }

    async fn get_post(
        &self,
        request: Request<pb::GetPostRequest>,
    ) -> Result<Response<pb::GetPostResponse>, Status> {
        decoded(self.get_post_answer(request.into_inner()).await?)
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

const LIST_POSTS_PATH: &str = "/blog.v1.BlogService/ListPosts";
const GET_POST_PATH: &str = "/blog.v1.BlogService/GetPost";

/// blog.v1.BlogService as served: GetPost and ListPosts send their encoded answers as
/// they are, every other method goes to the generated server.
#[derive(Clone)]
pub struct BlogServer {
    grpc: BlogGrpc,
    generated: BlogServiceServer<BlogGrpc>,
    max_decoding_message_size: usize,
}

impl BlogServer {
    /// Serves `grpc`, refusing requests larger than `max_decoding_message_size` bytes.
    pub fn new(grpc: BlogGrpc, max_decoding_message_size: usize) -> Self {
        Self {
            generated: BlogServiceServer::new(grpc.clone())
                .max_decoding_message_size(max_decoding_message_size),
            grpc,
            max_decoding_message_size,
        }
    }

    /// One call of a read, as the generated server would make it, with `Answers` in
    /// place of its codec.
    fn read<R, S>(&self, read: S, request: http::Request<Body>) -> ServerFuture
    where
        R: prost::Message + Default + Send + 'static,
        S: UnaryService<R, Response = Bytes> + Send + 'static,
        S::Future: Send,
    {
        let mut grpc = Grpc::new(Answers::<R>(PhantomData))
            .apply_max_message_size_config(Some(self.max_decoding_message_size), None);
        Box::pin(async move { Ok(grpc.unary(read, request).await) })
    }
}

type ServerFuture = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

impl NamedService for BlogServer {
    const NAME: &'static str = <BlogServiceServer<BlogGrpc> as NamedService>::NAME;
}

impl tower_service::Service<http::Request<Body>> for BlogServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = ServerFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower_service::Service::<http::Request<Body>>::poll_ready(&mut self.generated, cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> ServerFuture {
        match request.uri().path() {
            LIST_POSTS_PATH => self.read(ListPostsCall(self.grpc.clone()), request),
            GET_POST_PATH => self.read(GetPostCall(self.grpc.clone()), request),
            _ => self.generated.call(request),
        }
    }
}

type AnswerFuture = Pin<Box<dyn Future<Output = Result<Response<Bytes>, Status>> + Send>>;

struct ListPostsCall(BlogGrpc);

impl UnaryService<pb::ListPostsRequest> for ListPostsCall {
    type Response = Bytes;
    type Future = AnswerFuture;

    fn call(&mut self, request: Request<pb::ListPostsRequest>) -> AnswerFuture {
        let grpc = self.0.clone();
        Box::pin(async move {
            let answer = grpc.list_posts_answer(request.into_inner()).await?;
            Ok(Response::new(answer))
        })
    }
}

struct GetPostCall(BlogGrpc);

impl UnaryService<pb::GetPostRequest> for GetPostCall {
    type Response = Bytes;
    type Future = AnswerFuture;

    fn call(&mut self, request: Request<pb::GetPostRequest>) -> AnswerFuture {
        let grpc = self.0.clone();
        Box::pin(async move {
            let answer = grpc.get_post_answer(request.into_inner()).await?;
            Ok(Response::new(answer))
        })
    }
}

/// The codec of the reads: requests `R` decoded by prost, responses already encoded.
struct Answers<R>(PhantomData<R>);

impl<R: prost::Message + Default + Send + 'static> Codec for Answers<R> {
    type Encode = Bytes;
    type Decode = R;
    type Encoder = AnswerEncoder;
    type Decoder = ProstDecoder<R>;

    fn encoder(&mut self) -> AnswerEncoder {
        AnswerEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<R> {
        ProstDecoder::default()
    }
}

/// Writes an encoded answer as it is.
struct AnswerEncoder;

impl Encoder for AnswerEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, answer: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&answer);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use uuid::Uuid;

    use super::*;
    use crate::{
        domain::now,
        introspect::Introspector,
        store::{MIGRATIONS, PostStore as _, SqlPostStore},
    };

    /// `BlogGrpc` called as a `BlogService` (not through `BlogServer`, which sends the
    /// encoded answers) decodes its own answers: the posts and page token a client gets.
    #[tokio::test]
    async fn called_directly_the_reads_return_what_the_server_sends() {
        let dir = std::env::temp_dir().join(format!("blog-grpc-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let url = format!("sqlite://{}", dir.join("blog.db").display());
        let timeout = Duration::from_secs(5);
        let pool = pair_common::sql::SqlPool::connect(
            Some(&url),
            "blog.db",
            "BLOG_DATABASE_URL",
            timeout,
            &MIGRATIONS,
        )
        .await
        .expect("SQLite opens");
        let store = Arc::new(SqlPostStore::new(pool));
        let mut posts: Vec<pb::Post> = Vec::new();
        for n in 0..3 {
            let time = now();
            let post = Post {
                id: Uuid::now_v7(),
                author_id: Uuid::now_v7(),
                author_username: "ann".into(),
                title: format!("post {n}"),
                content: "text".into(),
                create_time: time,
                update_time: time,
            };
            store.insert(&post).await.expect("insert");
            posts.push(post.into());
        }
        // Reads never ask auth-service; nothing listens here.
        let auth = Introspector::new("http://127.0.0.1:9", timeout).expect("a valid URL");
        let grpc = BlogGrpc::new(BlogCore::new(store, None, auth));

        let found = BlogService::get_post(
            &grpc,
            Request::new(pb::GetPostRequest {
                id: posts[2].id.clone(),
            }),
        )
        .await
        .expect("GetPost")
        .into_inner();
        assert_eq!(found.post.as_ref(), Some(&posts[2]));
        let page = BlogService::list_posts(
            &grpc,
            Request::new(pb::ListPostsRequest {
                page_size: 2,
                ..Default::default()
            }),
        )
        .await
        .expect("ListPosts")
        .into_inner();
        assert_eq!(page.posts, vec![posts[2].clone(), posts[1].clone()]);
        let rest = BlogService::list_posts(
            &grpc,
            Request::new(pb::ListPostsRequest {
                page_size: 2,
                page_token: page.next_page_token,
                author_id: None,
            }),
        )
        .await
        .expect("the next page")
        .into_inner();
        assert_eq!(rest.posts, vec![posts[0].clone()]);
        assert_eq!(rest.next_page_token, "");
        let missing = BlogService::get_post(
            &grpc,
            Request::new(pb::GetPostRequest {
                id: Uuid::now_v7().to_string(),
            }),
        )
        .await
        .expect_err("no such post");
        assert_eq!(missing.code(), tonic::Code::NotFound);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
