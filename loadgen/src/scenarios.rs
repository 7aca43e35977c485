//! The calls each scenario makes.

use std::sync::Arc;

use pair_proto::{
    auth::v1::{
        IntrospectRequest, LoginRequest, auth_service_client::AuthServiceClient,
        introspection_service_client::IntrospectionServiceClient,
    },
    blog::v1::{
        CreatePostRequest, GetPostRequest, ListPostsRequest, blog_service_client::BlogServiceClient,
    },
};
use tonic::{
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    harness::{Caller, Failure, Rng, failure},
    seed,
};

/// The page size of list-posts.
const PAGE_SIZE: i32 = 20;
/// At most this many further pages are followed after a first page.
const MAX_EXTRA_PAGES: usize = 4;

/// `grpc.health.v1.Health/Check` of the server as a whole.
pub struct Health(pub HealthClient<Channel>);

impl Caller for Health {
    async fn call(&mut self) -> Result<(), Failure> {
        let response = self
            .0
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(failure)?;
        if response.into_inner().status == ServingStatus::Serving as i32 {
            Ok(())
        } else {
            Err("NOT_SERVING")
        }
    }
}

/// Introspect of live access tokens, cycling through them.
pub struct Introspect {
    pub client: IntrospectionServiceClient<Channel>,
    pub tokens: Arc<[String]>,
    pub next: usize,
}

impl Caller for Introspect {
    async fn call(&mut self) -> Result<(), Failure> {
        let token = self.tokens[self.next % self.tokens.len()].clone();
        self.next = self.next.wrapping_add(1);
        let response = self
            .client
            .introspect(IntrospectRequest { token })
            .await
            .map_err(failure)?;
        if response.into_inner().active {
            Ok(())
        } else {
            Err("INACTIVE_TOKEN")
        }
    }
}

/// GetPost of random known post ids.
pub struct GetPost {
    pub client: BlogServiceClient<Channel>,
    pub ids: Arc<[String]>,
    pub rng: Rng,
}

impl Caller for GetPost {
    async fn call(&mut self) -> Result<(), Failure> {
        let id = self.ids[self.rng.below(self.ids.len())].clone();
        let response = self
            .client
            .get_post(GetPostRequest { id })
            .await
            .map_err(failure)?;
        match response.into_inner().post {
            Some(_) => Ok(()),
            None => Err("EMPTY_RESPONSE"),
        }
    }
}

/// ListPosts of the first page, then sometimes a few following pages.
pub struct ListPosts {
    pub client: BlogServiceClient<Channel>,
    pub rng: Rng,
    pub page_token: String,
    pub pages_left: usize,
}

impl ListPosts {
    pub fn new(client: BlogServiceClient<Channel>, rng: Rng) -> Self {
        Self {
            client,
            rng,
            page_token: String::new(),
            pages_left: 0,
        }
    }
}

impl Caller for ListPosts {
    async fn call(&mut self) -> Result<(), Failure> {
        let first_page = self.page_token.is_empty();
        let request = ListPostsRequest {
            page_size: PAGE_SIZE,
            page_token: std::mem::take(&mut self.page_token),
            author_id: None,
        };
        let page = match self.client.list_posts(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                self.pages_left = 0;
                return Err(failure(status));
            }
        };
        if first_page {
            self.pages_left = self.rng.below(MAX_EXTRA_PAGES + 1);
        }
        if self.pages_left > 0 && !page.next_page_token.is_empty() {
            self.pages_left -= 1;
            self.page_token = page.next_page_token;
        }
        if first_page && page.posts.is_empty() {
            return Err("EMPTY_PAGE");
        }
        Ok(())
    }
}

/// Authenticated CreatePost, cycling through the users' tokens.
pub struct CreatePost {
    pub client: BlogServiceClient<Channel>,
    pub authorizations: Arc<[MetadataValue<Ascii>]>,
    pub content: Arc<str>,
    pub task: usize,
    pub next: usize,
}

impl Caller for CreatePost {
    async fn call(&mut self) -> Result<(), Failure> {
        let authorization = &self.authorizations[self.next % self.authorizations.len()];
        let request = seed::authorized(
            CreatePostRequest {
                title: format!("loadgen post {}-{}", self.task, self.next),
                content: self.content.to_string(),
            },
            authorization,
        );
        self.next = self.next.wrapping_add(1);
        let response = self.client.create_post(request).await.map_err(failure)?;
        match response.into_inner().post {
            Some(_) => Ok(()),
            None => Err("EMPTY_RESPONSE"),
        }
    }
}

/// Login of the seeded users, cycling through them.
pub struct Login {
    pub client: AuthServiceClient<Channel>,
    pub usernames: Arc<[String]>,
    pub next: usize,
}

impl Caller for Login {
    async fn call(&mut self) -> Result<(), Failure> {
        let username = self.usernames[self.next % self.usernames.len()].clone();
        self.next = self.next.wrapping_add(1);
        let response = self
            .client
            .login(LoginRequest {
                username,
                password: seed::PASSWORD.to_owned(),
            })
            .await
            .map_err(failure)?;
        match response.into_inner().tokens {
            Some(_) => Ok(()),
            None => Err("EMPTY_RESPONSE"),
        }
    }
}
