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
    sync::Arc,
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

/// A read request whose response goes out already encoded.
trait AnsweredRead: prost::Message + Default + Send + 'static {
    /// The encoded response to this request.
    fn answer(self, grpc: &BlogGrpc) -> impl Future<Output = Result<Bytes, Status>> + Send;
}

impl AnsweredRead for pb::ListPostsRequest {
    async fn answer(self, grpc: &BlogGrpc) -> Result<Bytes, Status> {
        let author_id = self.author_id.as_deref();
        let page = grpc
            .core
            .list_posts(self.page_size, &self.page_token, author_id, page_answer);
        Ok(page.await?)
    }
}

impl AnsweredRead for pb::GetPostRequest {
    async fn answer(self, grpc: &BlogGrpc) -> Result<Bytes, Status> {
        Ok(grpc.core.get_post(&self.id, post_answer).await?)
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
        decoded(request.into_inner().answer(self).await?)
    }

    async fn get_post(
        &self,
        request: Request<pb::GetPostRequest>,
    ) -> Result<Response<pb::GetPostResponse>, Status> {
        decoded(request.into_inner().answer(self).await?)
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
    /// Shared, as the generated server shares it: a call clones one `Arc`.
    grpc: Arc<BlogGrpc>,
    generated: BlogServiceServer<BlogGrpc>,
    max_decoding_message_size: usize,
}

impl BlogServer {
    /// Serves `grpc`, refusing requests larger than `max_decoding_message_size` bytes.
    pub fn new(grpc: BlogGrpc, max_decoding_message_size: usize) -> Self {
        Self {
            generated: BlogServiceServer::new(grpc.clone())
                .max_decoding_message_size(max_decoding_message_size),
            grpc: Arc::new(grpc),
            max_decoding_message_size,
        }
    }

    /// One call of read `R`, as the generated server would make it, with `Answers` in
    /// place of its codec.
    fn read<R: AnsweredRead>(&self, request: http::Request<Body>) -> ServerFuture {
        let mut grpc = Grpc::new(Answers::<R>(PhantomData))
            .apply_max_message_size_config(Some(self.max_decoding_message_size), None);
        let read = ReadCall::<R>(self.grpc.clone(), PhantomData);
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
            LIST_POSTS_PATH => self.read::<pb::ListPostsRequest>(request),
            GET_POST_PATH => self.read::<pb::GetPostRequest>(request),
            _ => self.generated.call(request),
        }
    }
}

type AnswerFuture = Pin<Box<dyn Future<Output = Result<Response<Bytes>, Status>> + Send>>;

/// One read `R` of the service, for `Grpc::unary`.
struct ReadCall<R>(Arc<BlogGrpc>, PhantomData<fn(R)>);

impl<R: AnsweredRead> UnaryService<R> for ReadCall<R> {
    type Response = Bytes;
    type Future = AnswerFuture;

    fn call(&mut self, request: Request<R>) -> AnswerFuture {
        let grpc = self.0.clone();
        Box::pin(async move { request.into_inner().answer(&grpc).await.map(Response::new) })
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
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;
    use crate::{
        domain::now,
        introspect::Introspector,
        store::{PostStore as _, SqlPostStore, temp_sqlite},
    };

    /// `BlogGrpc` called as a `BlogService` (not through `BlogServer`, which sends the
    /// encoded answers) decodes its own answers: the posts and page token a client gets.
    #[tokio::test]
    async fn called_directly_the_reads_return_what_the_server_sends() {
        let timeout = Duration::from_secs(5);
        let (dir, pool) = temp_sqlite("blog-grpc", timeout).await;
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
        let grpc = BlogGrpc::new(BlogCore::new(store, None, Introspector::nowhere(timeout)));

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
