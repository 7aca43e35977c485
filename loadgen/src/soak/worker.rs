//! One soak worker: a client of one user, stepping through the mix and checking every
//! answer.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use pair_proto::{
    auth::v1::{
        IntrospectRequest, LoginRequest, LogoutRequest, RefreshRequest,
        auth_service_client::AuthServiceClient,
        introspection_service_client::IntrospectionServiceClient,
    },
    blog::v1::{
        CreatePostRequest, GetPostRequest, ListPostsRequest, Post,
        blog_service_client::BlogServiceClient,
    },
};
use tokio::time::Instant;
use tonic::{
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};

use crate::{
    harness::{Rng, Window},
    seed,
};

use super::{
    Mix, Op,
    record::{Outcome, Recorder, login_failure, status_outcome, wrong},
};

/// The page size of list-posts.
const PAGE_SIZE: i32 = 20;
/// After a first page, at most this many following pages are read (one per step).
const MAX_EXTRA_PAGES: usize = 3;
/// Own posts each worker remembers for GetPost.
const OWN_POSTS: usize = 32;
/// The pause of a logged-out worker after a shed Login, before it tries again.
const SHED_BACKOFF: Duration = Duration::from_millis(50);

/// The live session of a worker.
struct Session {
    access: String,
    authorization: MetadataValue<Ascii>,
    refresh: String,
    /// Learned from the first Introspect; every later one must report the same.
    session_id: Option<String>,
}

/// One client of one user.
pub struct Worker {
    auth: AuthServiceClient<Channel>,
    introspection: IntrospectionServiceClient<Channel>,
    blog: BlogServiceClient<Channel>,
    username: String,
    /// Learned at the first Login.
    user_id: Option<String>,
    session: Option<Session>,
    seeded_posts: Arc<[String]>,
    /// (id, title) of the latest posts this worker created.
    own_posts: VecDeque<(String, String)>,
    /// Every post this worker created (acknowledged), checked again after the run.
    created_ids: Vec<String>,
    /// Every access token a successful Refresh or Logout gave up, checked again after
    /// the run: none may have come back (a revocation lost in a failover would).
    given_up: Vec<String>,
    content: Arc<str>,
    pub(super) mix: Arc<Mix>,
    rng: Rng,
    task: usize,
    created: u64,
    /// ListPosts continuation: the next page token, pages still to read, and the sort
    /// key of the last post seen.
    page_token: String,
    pages_left: usize,
    last_key: Option<PostKey>,
}

/// Everything a worker needs.
pub struct WorkerSetup {
    pub auth: Channel,
    pub blog: Channel,
    pub username: String,
    pub seeded_posts: Arc<[String]>,
    pub content: Arc<str>,
    pub mix: Arc<Mix>,
    pub seed: u64,
    pub task: usize,
}

impl Worker {
    pub fn new(setup: WorkerSetup) -> Self {
        Self {
            auth: AuthServiceClient::new(setup.auth.clone()),
            introspection: IntrospectionServiceClient::new(setup.auth),
            blog: BlogServiceClient::new(setup.blog),
            username: setup.username,
            user_id: None,
            session: None,
            seeded_posts: setup.seeded_posts,
            own_posts: VecDeque::with_capacity(OWN_POSTS),
            created_ids: Vec::new(),
            given_up: Vec::new(),
            content: setup.content,
            mix: setup.mix,
            rng: Rng::new(setup.seed),
            task: setup.task,
            created: 0,
            page_token: String::new(),
            pages_left: 0,
            last_key: None,
        }
    }

    pub(super) async fn run(mut self, window: Window) -> anyhow::Result<Recorder> {
        let mut recorder = Recorder::new(window)?;
        while Instant::now() < window.until {
            let op = if self.session.is_none() {
                Op::Login
            } else {
                self.mix.pick(&mut self.rng)
            };
            self.step(op, &mut recorder).await;
        }
        self.verify(&mut recorder).await;
        Ok(recorder)
    }

    /// After the run: every acknowledged revocation still holds and every acknowledged
    /// post is still there. A call that fails is tried again (up to 20 times, 250 ms
    /// apart: a failover may still be settling); one that never answers counts as lost.
    async fn verify(&mut self, recorder: &mut Recorder) {
        for token in std::mem::take(&mut self.given_up) {
            let revoked = retried(|| {
                let (mut client, token) = (self.introspection.clone(), token.clone());
                async move {
                    let answer = client.introspect(IntrospectRequest { token }).await?;
                    Ok(!answer.into_inner().active)
                }
            });
            let lost = match revoked.await {
                Ok(true) => None,
                Ok(false) => Some((
                    "REVOCATION_LOST",
                    "a given-up access token is active again".to_owned(),
                )),
                Err(status) => Some(("UNVERIFIED", format!("Introspect after the run: {status}"))),
            };
            recorder.verified(lost);
        }
        for id in std::mem::take(&mut self.created_ids) {
            let exists = retried(|| {
                let (mut client, id) = (self.blog.clone(), id.clone());
                async move {
                    match client.get_post(GetPostRequest { id }).await {
                        Ok(_) => Ok(true),
                        Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
                        Err(status) => Err(status),
                    }
                }
            });
            let lost = match exists.await {
                Ok(true) => None,
                Ok(false) => Some(("POST_LOST", format!("acknowledged post {id} is gone"))),
                Err(status) => Some(("UNVERIFIED", format!("GetPost after the run: {status}"))),
            };
            recorder.verified(lost);
        }
    }

    async fn step(&mut self, op: Op, recorder: &mut Recorder) {
        match op {
            Op::Login => {
                let outcome = recorder.time(op, self.login()).await;
                if matches!(outcome, Outcome::Shed) && self.session.is_none() {
                    tokio::time::sleep(SHED_BACKOFF).await;
                }
            }
            Op::Introspect => {
                let outcome = recorder.time(op, self.introspect()).await;
                self.end_session_unless_ok(&outcome);
            }
            Op::CreatePost => {
                let outcome = recorder.time(op, self.create_post()).await;
                self.end_session_unless_ok(&outcome);
            }
            Op::GetPost => {
                recorder.time(op, self.get_post()).await;
            }
            Op::ListPosts => {
                recorder.time(op, self.list_posts()).await;
            }
            Op::Refresh => {
                let old_access = self.session.as_ref().map(|s| s.access.clone());
                let outcome = recorder.time(op, self.refresh()).await;
                if matches!(outcome, Outcome::Ok) {
                    if let Some(old) = old_access {
                        self.given_up.push(old.clone());
                        recorder
                            .time(Op::IntrospectRevoked, self.introspect_revoked(old, op))
                            .await;
                    }
                } else {
                    // The pair may or may not have rotated: start over with a new session.
                    self.session = None;
                }
            }
            Op::Logout => {
                let old_access = self.session.as_ref().map(|s| s.access.clone());
                let outcome = recorder.time(op, self.logout()).await;
                // Logged out either way: a failed Logout leaves the session unknown.
                self.session = None;
                if let (Outcome::Ok, Some(old)) = (outcome, old_access) {
                    self.given_up.push(old.clone());
                    recorder
                        .time(Op::IntrospectRevoked, self.introspect_revoked(old, op))
                        .await;
                }
            }
            Op::IntrospectRevoked => {}
        }
    }

    /// After an unexpected failure with the current token, its state is unknown: the
    /// worker logs in again rather than repeat the error.
    fn end_session_unless_ok(&mut self, outcome: &Outcome) {
        if matches!(outcome, Outcome::Unexpected { .. }) {
            self.session = None;
        }
    }

    async fn login(&mut self) -> Outcome {
        let request = LoginRequest {
            username: self.username.clone(),
            password: seed::PASSWORD.to_owned(),
        };
        let response = match self.auth.login(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return login_failure(&status),
        };
        let Some(user) = response.user else {
            return wrong("MISSING_FIELD", "Login answered no user");
        };
        if user.username != self.username {
            return wrong(
                "WRONG_USER",
                format!("Login of {} answered user {}", self.username, user.username),
            );
        }
        match &self.user_id {
            Some(id) if *id != user.id => {
                return wrong(
                    "WRONG_USER",
                    format!(
                        "Login of {} answered user id {}, earlier {id}",
                        self.username, user.id
                    ),
                );
            }
            Some(_) => {}
            None => self.user_id = Some(user.id),
        }
        let Some(tokens) = response.tokens else {
            return wrong("MISSING_FIELD", "Login answered no tokens");
        };
        match new_session(
            tokens.access_token,
            tokens.refresh_token,
            &tokens.token_type,
        ) {
            Ok(session) => {
                // A Login while logged in opens a second session and leaves the first
                // (as a second device would); the worker goes on with the new one.
                self.session = Some(session);
                Outcome::Ok
            }
            Err(outcome) => outcome,
        }
    }

    async fn introspect(&mut self) -> Outcome {
        let Some(session) = &mut self.session else {
            return Outcome::Ok;
        };
        let request = IntrospectRequest {
            token: session.access.clone(),
        };
        let answer = match self.introspection.introspect(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return status_outcome(&status),
        };
        if !answer.active {
            return wrong(
                "INACTIVE_TOKEN",
                "Introspect answered active=false for the current access token",
            );
        }
        if answer.username != self.username || Some(&answer.user_id) != self.user_id.as_ref() {
            return wrong(
                "WRONG_USER",
                format!(
                    "Introspect answered user {} ({}) for a token of {} ({})",
                    answer.username,
                    answer.user_id,
                    self.username,
                    self.user_id.as_deref().unwrap_or("?")
                ),
            );
        }
        match &session.session_id {
            Some(id) if *id != answer.session_id => wrong(
                "WRONG_SESSION",
                format!(
                    "Introspect answered session {}, earlier {id}",
                    answer.session_id
                ),
            ),
            Some(_) => Outcome::Ok,
            None if answer.session_id.is_empty() => {
                wrong("MISSING_FIELD", "Introspect answered no session_id")
            }
            None => {
                session.session_id = Some(answer.session_id);
                Outcome::Ok
            }
        }
    }

    async fn introspect_revoked(&mut self, token: String, after: Op) -> Outcome {
        let answer = match self
            .introspection
            .introspect(IntrospectRequest { token })
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => return status_outcome(&status),
        };
        if answer.active {
            return wrong(
                "REVOKED_TOKEN_ACTIVE",
                format!(
                    "Introspect answered active=true for the access token given up by a successful {}",
                    after.name()
                ),
            );
        }
        if !answer.user_id.is_empty() || !answer.session_id.is_empty() {
            return wrong(
                "INACTIVE_WITH_FIELDS",
                "Introspect answered active=false with other fields set",
            );
        }
        Outcome::Ok
    }

    async fn refresh(&mut self) -> Outcome {
        let Some(session) = &self.session else {
            return Outcome::Ok;
        };
        let request = RefreshRequest {
            refresh_token: session.refresh.clone(),
        };
        let response = match self.auth.refresh(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return status_outcome(&status),
        };
        let Some(tokens) = response.tokens else {
            return wrong("MISSING_FIELD", "Refresh answered no tokens");
        };
        if tokens.access_token == session.access || tokens.refresh_token == session.refresh {
            return wrong("NOT_ROTATED", "Refresh answered a token of the old pair");
        }
        match new_session(
            tokens.access_token,
            tokens.refresh_token,
            &tokens.token_type,
        ) {
            Ok(mut rotated) => {
                // Same session: Introspect must keep reporting the same session id.
                rotated.session_id = session.session_id.clone();
                self.session = Some(rotated);
                Outcome::Ok
            }
            Err(outcome) => outcome,
        }
    }

    async fn logout(&mut self) -> Outcome {
        let Some(session) = &self.session else {
            return Outcome::Ok;
        };
        let request = seed::authorized(LogoutRequest {}, &session.authorization);
        match self.auth.logout(request).await {
            Ok(_) => Outcome::Ok,
            Err(status) => status_outcome(&status),
        }
    }

    async fn create_post(&mut self) -> Outcome {
        let Some(session) = &self.session else {
            return Outcome::Ok;
        };
        self.created += 1;
        let title = format!("soak {}-{}", self.task, self.created);
        let request = seed::authorized(
            CreatePostRequest {
                title: title.clone(),
                content: self.content.to_string(),
            },
            &session.authorization,
        );
        let post = match self.blog.create_post(request).await {
            Ok(response) => response.into_inner().post,
            Err(status) => return status_outcome(&status),
        };
        let Some(post) = post else {
            return wrong("MISSING_FIELD", "CreatePost answered no post");
        };
        if post.id.is_empty() || post.create_time.is_none() {
            return wrong(
                "MISSING_FIELD",
                "CreatePost answered a post without id or time",
            );
        }
        if Some(&post.author_id) != self.user_id.as_ref() || post.author_username != self.username {
            return wrong(
                "WRONG_AUTHOR",
                format!(
                    "CreatePost by {} answered author {} ({})",
                    self.username, post.author_username, post.author_id
                ),
            );
        }
        if post.title != title || *post.content != *self.content {
            return wrong("WRONG_POST", "CreatePost answered another title or content");
        }
        if self.own_posts.len() == OWN_POSTS {
            self.own_posts.pop_front();
        }
        self.created_ids.push(post.id.clone());
        self.own_posts.push_back((post.id, title));
        Outcome::Ok
    }

    async fn get_post(&mut self) -> Outcome {
        // Half the time one of its own posts (when it has any), else a seeded one.
        let own = if !self.own_posts.is_empty() && self.rng.below(2) == 0 {
            let i = self.rng.below(self.own_posts.len());
            self.own_posts.get(i).cloned()
        } else {
            None
        };
        let id = match &own {
            Some((id, _)) => id.clone(),
            None if self.seeded_posts.is_empty() => return Outcome::Ok,
            None => self.seeded_posts[self.rng.below(self.seeded_posts.len())].clone(),
        };
        let post = match self.blog.get_post(GetPostRequest { id: id.clone() }).await {
            Ok(response) => response.into_inner().post,
            Err(status) => return status_outcome(&status),
        };
        let Some(post) = post else {
            return wrong("MISSING_FIELD", "GetPost answered no post");
        };
        if post.id != id {
            return wrong(
                "WRONG_POST",
                format!("GetPost of {id} answered post {}", post.id),
            );
        }
        if let Some((_, title)) = own
            && (post.title != title
                || Some(&post.author_id) != self.user_id.as_ref()
                || post.author_username != self.username)
        {
            return wrong(
                "WRONG_POST",
                format!(
                    "GetPost of own post {id} answered title {:?} by {} ({})",
                    post.title, post.author_username, post.author_id
                ),
            );
        }
        Outcome::Ok
    }

    async fn list_posts(&mut self) -> Outcome {
        let first_page = self.page_token.is_empty();
        let request = ListPostsRequest {
            page_size: PAGE_SIZE,
            page_token: std::mem::take(&mut self.page_token),
            author_id: None,
        };
        let previous = if first_page {
            None
        } else {
            self.last_key.take()
        };
        let page = match self.blog.list_posts(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                self.pages_left = 0;
                return status_outcome(&status);
            }
        };
        if first_page {
            self.pages_left = self.rng.below(MAX_EXTRA_PAGES + 1);
        }
        if let Err(outcome) = check_page(&page.posts, previous.as_ref(), first_page) {
            self.pages_left = 0;
            return outcome;
        }
        if self.pages_left > 0 && !page.next_page_token.is_empty() {
            self.pages_left -= 1;
            self.page_token = page.next_page_token;
            self.last_key = page.posts.last().and_then(PostKey::of);
        } else {
            self.pages_left = 0;
        }
        Outcome::Ok
    }
}

fn new_session(access: String, refresh: String, token_type: &str) -> Result<Session, Outcome> {
    if access.is_empty() || refresh.is_empty() {
        return Err(wrong("MISSING_FIELD", "an empty access or refresh token"));
    }
    if token_type != "Bearer" {
        return Err(wrong(
            "WRONG_TOKEN_TYPE",
            format!("token_type {token_type:?}, not \"Bearer\""),
        ));
    }
    let authorization = format!("Bearer {access}")
        .parse()
        .map_err(|_| wrong("BAD_TOKEN", "the access token is not valid metadata"))?;
    Ok(Session {
        access,
        authorization,
        refresh,
        session_id: None,
    })
}

/// The order of ListPosts: newest first, by (create_time, id), both descending.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PostKey {
    seconds: i64,
    nanos: i32,
    id: String,
}

impl PostKey {
    fn of(post: &Post) -> Option<Self> {
        let time = post.create_time.as_ref()?;
        Some(Self {
            seconds: time.seconds,
            nanos: time.nanos,
            id: post.id.clone(),
        })
    }
}

/// Checks one page: at most PAGE_SIZE posts, strictly newest first, each older than the
/// last post of the previous page, and a first page not empty (posts were seeded).
fn check_page(posts: &[Post], previous: Option<&PostKey>, first_page: bool) -> Result<(), Outcome> {
    if first_page && posts.is_empty() {
        return Err(wrong("EMPTY_PAGE", "the first page of ListPosts is empty"));
    }
    if posts.len() > PAGE_SIZE as usize {
        return Err(wrong(
            "PAGE_TOO_LONG",
            format!(
                "ListPosts answered {} posts for page_size {PAGE_SIZE}",
                posts.len()
            ),
        ));
    }
    let mut above = previous.cloned();
    for post in posts {
        let key = PostKey::of(post).ok_or_else(|| {
            wrong(
                "MISSING_FIELD",
                "ListPosts answered a post without create_time",
            )
        })?;
        if let Some(above) = &above
            && key >= *above
        {
            let which = if previous == Some(above) {
                "the last post of the previous page"
            } else {
                "the post before it"
            };
            return Err(wrong(
                "UNORDERED_PAGE",
                format!(
                    "ListPosts: post {} ({}.{:09}) is not older than {which}, {} ({}.{:09})",
                    key.id, key.seconds, key.nanos, above.id, above.seconds, above.nanos,
                ),
            ));
        }
        above = Some(key);
    }
    Ok(())
}

/// `call` until it answers, or 20 more tries 250 ms apart; the last answer.
async fn retried<F, Fut>(mut call: F) -> Result<bool, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, tonic::Status>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(_) if tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            answer => return answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::Failure;

    fn post(id: &str, seconds: i64, nanos: i32) -> Post {
        let mut time = pair_proto::timestamp(std::time::UNIX_EPOCH);
        time.seconds = seconds;
        time.nanos = nanos;
        Post {
            id: id.to_owned(),
            create_time: Some(time),
            ..Post::default()
        }
    }

    fn label(result: Result<(), Outcome>) -> Option<Failure> {
        match result {
            Ok(()) => None,
            Err(Outcome::Unexpected { label, .. }) => Some(label),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn pages_must_be_newest_first_and_continue_below_the_previous_page() {
        let page = [
            post("b", 20, 5),
            post("a", 20, 5),
            post("c", 19, 999_999_000),
        ];
        assert_eq!(label(check_page(&page, None, true)), None);
        // Same time: the id breaks the tie, descending.
        let tie = [post("a", 20, 5), post("b", 20, 5)];
        assert_eq!(label(check_page(&tie, None, true)), Some("UNORDERED_PAGE"));
        let repeated = [post("a", 20, 5), post("a", 20, 5)];
        assert_eq!(
            label(check_page(&repeated, None, true)),
            Some("UNORDERED_PAGE")
        );
        let last = PostKey::of(&page[2]).unwrap();
        let next = [post("z", 19, 1_000), post("y", 3, 0)];
        assert_eq!(label(check_page(&next, Some(&last), false)), None);
        let overlapping = [post("c", 19, 999_999_000)];
        assert_eq!(
            label(check_page(&overlapping, Some(&last), false)),
            Some("UNORDERED_PAGE")
        );
        assert_eq!(label(check_page(&[], None, true)), Some("EMPTY_PAGE"));
        assert_eq!(label(check_page(&[], Some(&last), false)), None);
        let long: Vec<Post> = (0..=PAGE_SIZE)
            .map(|i| post(&format!("{i:03}"), 100 - i64::from(i), 0))
            .collect();
        assert_eq!(label(check_page(&long, None, true)), Some("PAGE_TOO_LONG"));
        let mut untimed = post("x", 1, 0);
        untimed.create_time = None;
        assert_eq!(
            label(check_page(&[untimed], None, true)),
            Some("MISSING_FIELD")
        );
    }

    #[test]
    fn a_session_needs_both_tokens_and_the_bearer_type() {
        assert!(new_session("a".into(), "r".into(), "Bearer").is_ok());
        assert!(new_session(String::new(), "r".into(), "Bearer").is_err());
        assert!(new_session("a".into(), String::new(), "Bearer").is_err());
        assert!(new_session("a".into(), "r".into(), "bearer").is_err());
        assert!(new_session("a\nb".into(), "r".into(), "Bearer").is_err());
    }
}
