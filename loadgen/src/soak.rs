//! The soak scenario: a mixed, stateful load that checks every answer.
//!
//! Each of `--concurrency` workers plays one client of a seeded user: it logs in, uses
//! its access token (Introspect, CreatePost), reads posts (ListPosts, GetPost of seeded
//! posts and of its own), rotates its pair with Refresh (keeping the new pair), logs out
//! and then logs in again. The operation of each step is drawn from `--soak-mix`.
//!
//! Every answer is checked: an unexpected status, or an OK answer that is wrong (an
//! inactive current token, a post of someone else, a page out of order, …), counts as an
//! unexpected error under its status code or label. The only expected failure is
//! RESOURCE_EXHAUSTED from Login without retry details: the server shedding logins when
//! its hash queue is full; it is counted apart ("shed"). After a successful Refresh or
//! Logout the worker introspects the access token it just gave up, which must be inactive
//! (`introspect-revoked`, an operation outside the mix).
//!
//! Unexpected errors are counted over the whole run, warm-up and drain included.

use std::{
    collections::{BTreeMap, VecDeque},
    future::Future,
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
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
use serde::Serialize;
use tokio::time::Instant;
use tonic::{
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};

use crate::{
    harness::{Failure, Rng, Stats, Tally, Window, code_name},
    seed,
};

/// The page size of list-posts.
const PAGE_SIZE: i32 = 20;
/// After a first page, at most this many following pages are read (one per step).
const MAX_EXTRA_PAGES: usize = 3;
/// Own posts each worker remembers for GetPost.
const OWN_POSTS: usize = 32;
/// The pause of a logged-out worker after a shed Login, before it tries again.
const SHED_BACKOFF: Duration = Duration::from_millis(50);
/// Distinct error messages kept per operation and label.
const EXAMPLES_PER_LABEL: usize = 3;

/// One kind of call of the soak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Introspect,
    ListPosts,
    GetPost,
    CreatePost,
    Refresh,
    Login,
    Logout,
    /// Introspect of the access token given up by a Refresh or Logout: must be inactive.
    IntrospectRevoked,
}

impl Op {
    /// The operations `--soak-mix` draws from.
    pub const MIX: [Self; 7] = [
        Self::Introspect,
        Self::ListPosts,
        Self::GetPost,
        Self::CreatePost,
        Self::Refresh,
        Self::Login,
        Self::Logout,
    ];

    /// Every operation, in report order.
    pub const ALL: [Self; 8] = [
        Self::Introspect,
        Self::ListPosts,
        Self::GetPost,
        Self::CreatePost,
        Self::Refresh,
        Self::Login,
        Self::Logout,
        Self::IntrospectRevoked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Introspect => "introspect",
            Self::ListPosts => "list-posts",
            Self::GetPost => "get-post",
            Self::CreatePost => "create-post",
            Self::Refresh => "refresh",
            Self::Login => "login",
            Self::Logout => "logout",
            Self::IntrospectRevoked => "introspect-revoked",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The weights of the soak's operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    /// The weight of each of [`Op::MIX`], in that order.
    weights: [u32; 7],
}

impl Default for Mix {
    /// introspect 40, list-posts 15, get-post 20, create-post 10, refresh 8, login 5,
    /// logout 2.
    fn default() -> Self {
        Self {
            weights: [40, 15, 20, 10, 8, 5, 2],
        }
    }
}

impl Mix {
    /// Parses `op=weight[,op=weight…]`; operations not named keep their default weight.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut mix = Self::default();
        for part in text.split(',').map(str::trim) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not op=weight (e.g. login=5)"))?;
            let (name, weight) = (name.trim(), weight.trim());
            let position = Op::MIX
                .iter()
                .position(|op| op.name() == name)
                .ok_or_else(|| {
                    let valid: Vec<&str> = Op::MIX.iter().map(|op| op.name()).collect();
                    format!(
                        "unknown soak operation `{name}`: valid operations are {}",
                        valid.join(", ")
                    )
                })?;
            mix.weights[position] = weight
                .parse()
                .map_err(|_| format!("the weight of {name}, `{weight}`, is not a whole number"))?;
        }
        if mix.weights.iter().all(|w| *w == 0) {
            return Err("every soak weight is 0".to_owned());
        }
        Ok(mix)
    }

    pub fn weight(&self, op: Op) -> u32 {
        Op::MIX
            .iter()
            .position(|o| *o == op)
            .map_or(0, |i| self.weights[i])
    }

    fn total(&self) -> u64 {
        self.weights.iter().map(|w| u64::from(*w)).sum()
    }

    /// An operation drawn with probability weight / total.
    pub fn pick(&self, rng: &mut Rng) -> Op {
        let total = self.total().max(1);
        let mut draw = rng.next_u64() % total;
        for (op, weight) in Op::MIX.iter().zip(self.weights) {
            let weight = u64::from(weight);
            if draw < weight {
                return *op;
            }
            draw -= weight;
        }
        Op::Introspect
    }

    /// `op=weight,…` of every operation.
    pub fn describe(&self) -> String {
        Op::MIX
            .iter()
            .zip(self.weights)
            .map(|(op, weight)| format!("{}={weight}", op.name()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The result of one call.
#[derive(Debug)]
enum Outcome {
    Ok,
    /// Login answered RESOURCE_EXHAUSTED without retry details: the hash queue is full.
    Shed,
    Unexpected {
        label: Failure,
        detail: String,
    },
}

fn wrong(label: Failure, detail: impl Into<String>) -> Outcome {
    Outcome::Unexpected {
        label,
        detail: detail.into(),
    }
}

fn status_outcome(status: &tonic::Status) -> Outcome {
    wrong(
        code_name(status.code()),
        format!("{}: {}", code_name(status.code()), status.message()),
    )
}

/// How a failed Login is counted: shedding (hash queue full: RESOURCE_EXHAUSTED with no
/// details) is expected; throttling (RESOURCE_EXHAUSTED with RetryInfo details, after
/// failed logins, which the soak never makes) and everything else is not.
fn login_failure(status: &tonic::Status) -> Outcome {
    if status.code() == tonic::Code::ResourceExhausted {
        if status.details().is_empty() {
            return Outcome::Shed;
        }
        return wrong(
            "RESOURCE_EXHAUSTED_THROTTLED",
            format!("login throttled: {}", status.message()),
        );
    }
    status_outcome(status)
}

/// What one operation recorded.
struct OpTally {
    /// Calls completed in the measured window.
    window: Tally,
    /// Sheds in the measured window.
    shed: u64,
    /// Sheds during warm-up or drain.
    shed_outside: u64,
    /// Unexpected errors during warm-up or after the window (calls in flight at its end).
    errors_outside: BTreeMap<Failure, u64>,
    /// A few messages per label.
    examples: BTreeMap<Failure, Vec<String>>,
}

impl OpTally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            window: Tally::new()?,
            shed: 0,
            shed_outside: 0,
            errors_outside: BTreeMap::new(),
            examples: BTreeMap::new(),
        })
    }

    fn merge(&mut self, other: &Self) -> anyhow::Result<()> {
        self.window.merge(&other.window)?;
        self.shed += other.shed;
        self.shed_outside += other.shed_outside;
        for (label, count) in &other.errors_outside {
            *self.errors_outside.entry(label).or_default() += count;
        }
        for (label, messages) in &other.examples {
            let kept = self.examples.entry(label).or_default();
            for message in messages {
                if kept.len() < EXAMPLES_PER_LABEL && !kept.contains(message) {
                    kept.push(message.clone());
                }
            }
        }
        Ok(())
    }
}

/// What one worker recorded, per operation.
struct Recorder {
    window: Window,
    ops: Vec<OpTally>,
}

impl Recorder {
    fn new(window: Window) -> anyhow::Result<Self> {
        Ok(Self {
            window,
            ops: Op::ALL
                .iter()
                .map(|_| OpTally::new())
                .collect::<anyhow::Result<_>>()?,
        })
    }

    /// Runs `call` under the call deadline and records it; returns whether it succeeded.
    async fn time<F>(&mut self, op: Op, call: F) -> Outcome
    where
        F: Future<Output = Outcome>,
    {
        let start = Instant::now();
        let outcome = tokio::time::timeout(self.window.call_timeout, call)
            .await
            .unwrap_or_else(|_| {
                wrong(
                    "CLIENT_TIMEOUT",
                    format!("no answer within {:?}", self.window.call_timeout),
                )
            });
        let end = Instant::now();
        let inside = end >= self.window.measure_from && end <= self.window.until;
        let tally = &mut self.ops[op.index()];
        match &outcome {
            Outcome::Ok if inside => {
                let micros =
                    u64::try_from(end.duration_since(start).as_micros()).unwrap_or(u64::MAX);
                tally.window.latency.saturating_record(micros.max(1));
            }
            Outcome::Ok => {}
            Outcome::Shed if inside => tally.shed += 1,
            Outcome::Shed => tally.shed_outside += 1,
            Outcome::Unexpected { label, detail } => {
                if inside {
                    *tally.window.errors.entry(label).or_default() += 1;
                } else {
                    *tally.errors_outside.entry(label).or_default() += 1;
                }
                let kept = tally.examples.entry(label).or_default();
                if kept.len() < EXAMPLES_PER_LABEL && !kept.contains(detail) {
                    kept.push(detail.clone());
                }
            }
        }
        outcome
    }
}

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
    content: Arc<str>,
    mix: Arc<Mix>,
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

    async fn run(mut self, window: Window) -> anyhow::Result<Recorder> {
        let mut recorder = Recorder::new(window)?;
        while Instant::now() < window.until {
            let op = if self.session.is_none() {
                Op::Login
            } else {
                self.mix.pick(&mut self.rng)
            };
            self.step(op, &mut recorder).await;
        }
        Ok(recorder)
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

/// One operation's results.
#[derive(Serialize)]
pub struct OpReport {
    pub op: &'static str,
    /// Its weight in the mix (none for introspect-revoked, which follows Refresh/Logout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// In the measured window: calls (ok + unexpected errors; sheds are apart), rps of
    /// successful calls, latency of the successful calls, unexpected errors by label.
    #[serde(flatten)]
    pub stats: Stats,
    /// Logins shed with RESOURCE_EXHAUSTED (hash queue full), in the window: expected.
    pub shed: u64,
    /// Unexpected errors during warm-up or drain (calls in flight when the window ended).
    pub errors_outside_window: BTreeMap<String, u64>,
    /// A few messages of each unexpected error label (status code + message, or what
    /// was wrong with an OK answer).
    pub error_examples: BTreeMap<String, Vec<String>>,
}

/// The soak's report.
#[derive(Serialize)]
pub struct SoakReport {
    pub mix: String,
    pub workers: usize,
    pub users: usize,
    pub ops: Vec<OpReport>,
    /// Every operation in the measured window (sheds apart).
    pub total: Stats,
    /// Logins shed, window + warm-up + drain.
    pub shed_total: u64,
    /// Unexpected errors, window + warm-up + drain: the gate (must be 0).
    pub unexpected_errors: u64,
}

/// Runs the soak: one worker per `workers`, over a new window.
pub async fn run(workers: Vec<Worker>, users: usize, window: Window) -> anyhow::Result<SoakReport> {
    let count = workers.len();
    let mix = workers
        .first()
        .map_or_else(|| Mix::default().describe(), |w| w.mix.describe());
    let weights = workers.first().map(|w| Arc::clone(&w.mix));
    let handles: Vec<_> = workers
        .into_iter()
        .map(|worker| tokio::spawn(worker.run(window)))
        .collect();
    let mut merged: Vec<OpTally> = Op::ALL
        .iter()
        .map(|_| OpTally::new())
        .collect::<anyhow::Result<_>>()?;
    for handle in handles {
        let recorder = handle.await.context("a soak worker panicked")??;
        for (total, tally) in merged.iter_mut().zip(&recorder.ops) {
            total.merge(tally)?;
        }
    }
    let measured = window.measured();
    let mut all = Tally::new()?;
    let mut ops = Vec::with_capacity(Op::ALL.len());
    let (mut shed_total, mut unexpected) = (0, 0);
    for (op, tally) in Op::ALL.iter().zip(&merged) {
        all.merge(&tally.window)?;
        let stats = tally.window.stats(measured);
        shed_total += tally.shed + tally.shed_outside;
        unexpected += stats.error_count + tally.errors_outside.values().sum::<u64>();
        ops.push(OpReport {
            op: op.name(),
            weight: weights
                .as_ref()
                .filter(|_| Op::MIX.contains(op))
                .map(|mix| mix.weight(*op)),
            stats,
            shed: tally.shed,
            errors_outside_window: tally
                .errors_outside
                .iter()
                .map(|(label, count)| ((*label).to_owned(), *count))
                .collect(),
            error_examples: tally
                .examples
                .iter()
                .map(|(label, messages)| ((*label).to_owned(), messages.clone()))
                .collect(),
        });
    }
    Ok(SoakReport {
        mix,
        workers: count,
        users,
        ops,
        total: all.stats(measured),
        shed_total,
        unexpected_errors: unexpected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mix_is_the_documented_one() {
        let mix = Mix::default();
        assert_eq!(
            mix.describe(),
            "introspect=40,list-posts=15,get-post=20,create-post=10,refresh=8,login=5,logout=2"
        );
        assert_eq!(mix.total(), 100);
        assert_eq!(mix.weight(Op::Login), 5);
        assert_eq!(mix.weight(Op::IntrospectRevoked), 0);
    }

    #[test]
    fn a_mix_overrides_only_the_named_weights() {
        let mix = Mix::parse("login=1, logout = 0").unwrap();
        assert_eq!(mix.weight(Op::Login), 1);
        assert_eq!(mix.weight(Op::Logout), 0);
        assert_eq!(mix.weight(Op::Introspect), 40);
        assert!(Mix::parse("login").unwrap_err().contains("op=weight"));
        assert!(
            Mix::parse("nope=3")
                .unwrap_err()
                .contains("unknown soak operation")
        );
        assert!(Mix::parse("login=-1").is_err());
        assert!(Mix::parse("introspect-revoked=3").is_err());
        let all_zero = Op::MIX
            .iter()
            .map(|op| format!("{}=0", op.name()))
            .collect::<Vec<_>>()
            .join(",");
        assert!(
            Mix::parse(&all_zero)
                .unwrap_err()
                .contains("every soak weight is 0")
        );
    }

    #[test]
    fn picks_follow_the_weights() {
        let mix = Mix::default();
        let mut rng = Rng::new(11);
        let mut counts = BTreeMap::new();
        let draws = 100_000;
        for _ in 0..draws {
            *counts.entry(mix.pick(&mut rng)).or_insert(0u32) += 1;
        }
        for op in Op::MIX {
            let share = f64::from(counts.get(&op).copied().unwrap_or(0)) / f64::from(draws);
            let expected = f64::from(mix.weight(op)) / 100.0;
            assert!(
                (share - expected).abs() < 0.01,
                "{op:?}: {share} vs {expected}"
            );
        }
        let only_login =
            Mix::parse("introspect=0,list-posts=0,get-post=0,create-post=0,refresh=0,logout=0")
                .unwrap();
        assert!((0..100).all(|_| only_login.pick(&mut rng) == Op::Login));
    }

    #[test]
    fn shedding_is_expected_but_throttling_and_other_codes_are_not() {
        let shed = tonic::Status::resource_exhausted("the server is busy");
        assert!(matches!(login_failure(&shed), Outcome::Shed));
        let throttled = tonic::Status::with_details(
            tonic::Code::ResourceExhausted,
            "too many failed logins",
            vec![1, 2, 3].into(),
        );
        assert!(matches!(
            login_failure(&throttled),
            Outcome::Unexpected {
                label: "RESOURCE_EXHAUSTED_THROTTLED",
                ..
            }
        ));
        let wrong_password = tonic::Status::unauthenticated("wrong username or password");
        match login_failure(&wrong_password) {
            Outcome::Unexpected { label, detail } => {
                assert_eq!(label, "UNAUTHENTICATED");
                assert!(detail.contains("wrong username or password"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }

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
