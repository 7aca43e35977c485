//! What the fault tests share: hang guards, health waits, a load that records every
//! outcome, and one-line calls of each service.
use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use super::{Backend, PASSWORD, auth_config_on, authed, blog::new_post};
use pair_proto::{
    auth::v1::{
        self as auth, auth_service_client::AuthServiceClient,
        introspection_service_client::IntrospectionServiceClient,
    },
    blog::v1::{self as blog, blog_service_client::BlogServiceClient},
};
use tokio::task::JoinHandle;
use tonic::{Code, Status, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// A call that needs a store that is gone must answer within the store timeout (2 s in
/// the test configuration); this leaves slack for a loaded 2-core machine.
pub const HANG_GUARD: Duration = Duration::from_secs(5);
/// Health flips within 2 s of a store going away or coming back (docs/ARCHITECTURE.md,
/// "Failure behaviour"); the assert allows slack for a loaded machine (the measured time
/// is printed).
pub const HEALTH_LIMIT: Duration = Duration::from_secs(5);
/// Calls succeed again within 2 s of the store's return (again with slack).
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(5);

pub const AUTH_HEALTH: &[&str] = &["", "auth.v1.AuthService", "auth.v1.IntrospectionService"];
pub const BLOG_HEALTH: &[&str] = &["", "blog.v1.BlogService"];

pub type Auth = AuthServiceClient<Channel>;
pub type Introspection = IntrospectionServiceClient<Channel>;
pub type Blog = BlogServiceClient<Channel>;

/// Runs `call` under the hang guard; a hang fails the test, naming `what`.
pub async fn guarded<T>(
    what: &str,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let started = Instant::now();
    let result = tokio::time::timeout(HANG_GUARD, call)
        .await
        .unwrap_or_else(|_| panic!("{what} did not answer within {HANG_GUARD:?}"));
    let took = started.elapsed();
    assert!(took < HANG_GUARD, "{what} took {took:?}");
    result
}

pub async fn health_of(client: &mut HealthClient<Channel>, service: &str) -> Option<ServingStatus> {
    let check = client.check(HealthCheckRequest {
        service: service.into(),
    });
    let response = tokio::time::timeout(Duration::from_secs(1), check)
        .await
        .ok()?
        .ok()?;
    ServingStatus::try_from(response.into_inner().status).ok()
}

/// Polls every name in `services` until all report `wanted`; how long that took. Fails
/// after `limit`, naming what was last seen.
pub async fn wait_for_health(
    channel: &Channel,
    services: &[&str],
    wanted: ServingStatus,
    limit: Duration,
) -> Duration {
    let mut client = HealthClient::new(channel.clone());
    let started = Instant::now();
    loop {
        let mut seen = Vec::new();
        for service in services {
            seen.push(health_of(&mut client, service).await);
        }
        if seen.iter().all(|status| *status == Some(wanted)) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "health of {services:?} was still {seen:?}, not {wanted:?}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Calls `call` every 25 ms until it succeeds; how long that took. Fails after `limit`
/// with the last error.
pub async fn first_success<T, F, Fut>(what: &str, limit: Duration, mut call: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let started = Instant::now();
    loop {
        match guarded(what, call()).await {
            Ok(_) => return started.elapsed(),
            Err(status) => assert!(
                started.elapsed() < limit,
                "{what} still failed {limit:?} after the store came back: {status:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// After a store or link comes back: waits until health of `services` on `channel` is
/// SERVING, then until `call` succeeds (each within `RECOVERY_LIMIT`); how long each
/// took.
pub async fn healed<T, F, Fut>(
    channel: &Channel,
    services: &[&str],
    what: &str,
    call: F,
) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let serving = wait_for_health(channel, services, ServingStatus::Serving, RECOVERY_LIMIT).await;
    let first_ok = first_success(what, RECOVERY_LIMIT, call).await;
    (serving, first_ok)
}

/// One call of a load stream: when it started, how long it took, what it answered
/// (the call's key on success, else the status code).
#[derive(Debug, Clone)]
pub struct Outcome<K> {
    pub started: Instant,
    pub took: Duration,
    pub result: Result<K, Code>,
}

/// `workers` tasks calling `call(worker, n)` in a loop until stopped, each call under
/// the hang guard, every outcome recorded.
pub struct Load<K> {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome<K>>>>,
    ok: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl<K: Send + Clone + PartialEq + 'static> Load<K> {
    pub fn start<F, Fut>(workers: usize, call: F) -> Self
    where
        F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Result<K, Status>> + Send,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let ok = Arc::new(AtomicUsize::new(0));
        let tasks = (0..workers)
            .map(|worker| {
                let (stop, outcomes, ok, call) =
                    (stop.clone(), outcomes.clone(), ok.clone(), call.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let started = Instant::now();
                        let result = tokio::time::timeout(HANG_GUARD, call(worker, n)).await;
                        let took = started.elapsed();
                        let result = match result {
                            Ok(Ok(key)) => {
                                ok.fetch_add(1, Ordering::SeqCst);
                                Ok(key)
                            }
                            Ok(Err(status)) => Err(status.code()),
                            // Recorded as a hang; the test fails on it after the stream.
                            Err(_) => Err(Code::DeadlineExceeded),
                        };
                        outcomes.lock().expect("lock").push(Outcome {
                            started,
                            took,
                            result,
                        });
                        n += 1;
                        if took < Duration::from_millis(5) {
                            // A store that refuses at once must not turn this into a
                            // busy loop that starves the servers of CPU.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            outcomes,
            ok,
            tasks,
        }
    }

    pub fn successes(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// How many calls ended with `code`.
    pub fn count_of(&self, code: Code) -> usize {
        self.outcomes
            .lock()
            .expect("lock")
            .iter()
            .filter(|o| o.result.as_ref().err() == Some(&code))
            .count()
    }

    /// Waits (polling, bounded) until `ready(self)` holds.
    pub async fn wait_until(&self, what: &str, limit: Duration, ready: impl Fn(&Self) -> bool) {
        let started = Instant::now();
        while !ready(self) {
            assert!(started.elapsed() < limit, "load: {what} within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(self) -> Vec<Outcome<K>> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            tokio::time::timeout(HANG_GUARD * 2, task)
                .await
                .expect("a load task did not stop")
                .expect("a load task panicked");
        }
        let outcomes = self.outcomes.lock().expect("lock").clone();
        let hung = outcomes
            .iter()
            .filter(|o| o.took >= HANG_GUARD || o.result == Err(Code::DeadlineExceeded))
            .count();
        assert_eq!(hung, 0, "{hung} calls of the load hung or ran out of time");
        outcomes
    }
}

/// A summary line of a load's outcomes.
pub fn tally<K>(outcomes: &[Outcome<K>]) -> String {
    let mut codes: Vec<(Code, usize)> = Vec::new();
    for outcome in outcomes {
        let code = outcome.result.as_ref().err().copied().unwrap_or(Code::Ok);
        match codes.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => codes.push((code, 1)),
        }
    }
    let slowest = outcomes.iter().map(|o| o.took).max().unwrap_or_default();
    format!("{codes:?}, slowest {slowest:?}")
}

pub fn assert_only_ok_or_unavailable<K>(what: &str, outcomes: &[Outcome<K>]) {
    let wrong: Vec<Code> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().copied())
        .filter(|code| *code != Code::Unavailable)
        .collect();
    assert!(
        wrong.is_empty(),
        "{what}: an outage must be UNAVAILABLE, got {wrong:?}"
    );
}

/// Whether `token` is active, or the status code of the failure.
pub async fn active(client: &mut Introspection, token: &str) -> Result<bool, Code> {
    introspect(client, token)
        .await
        .map_err(|status| status.code())
}

pub async fn introspect(client: &mut Introspection, token: &str) -> Result<bool, Status> {
    client
        .introspect(auth::IntrospectRequest {
            token: token.into(),
        })
        .await
        .map(|response| response.into_inner().active)
}

pub async fn login(
    client: &mut Auth,
    username: &str,
    password: &str,
) -> Result<auth::TokenPair, Status> {
    client
        .login(auth::LoginRequest {
            username: username.into(),
            password: password.into(),
        })
        .await
        .map(|response| response.into_inner().tokens.expect("tokens"))
}

pub async fn register(client: &mut Auth, username: &str) -> Result<auth::User, Status> {
    client
        .register(auth::RegisterRequest {
            username: username.into(),
            email: format!("{username}@example.com"),
            password: PASSWORD.into(),
        })
        .await
        .map(|response| response.into_inner().user.expect("user"))
}

pub async fn get_profile(client: &mut Auth, token: &str) -> Result<auth::User, Status> {
    client
        .get_profile(authed(token, auth::GetProfileRequest {}))
        .await
        .map(|response| response.into_inner().user.expect("user"))
}

pub async fn create(client: &mut Blog, token: &str, title: &str) -> Result<blog::Post, Status> {
    client
        .create_post(authed(
            token,
            new_post(
                title,
                &format!("Written while the store may be down: {title}"),
            ),
        ))
        .await
        .map(|response| response.into_inner().post.expect("post"))
}

pub async fn get(client: &mut Blog, id: &str) -> Result<blog::Post, Status> {
    client
        .get_post(blog::GetPostRequest { id: id.into() })
        .await
        .map(|response| response.into_inner().post.expect("post"))
}

pub async fn list(client: &mut Blog) -> Result<blog::ListPostsResponse, Status> {
    client
        .list_posts(blog::ListPostsRequest::default())
        .await
        .map(tonic::Response::into_inner)
}

pub fn code<T: std::fmt::Debug>(what: &str, result: Result<T, Status>) -> Code {
    match result {
        Ok(value) => panic!("{what} succeeded during the outage: {value:?}"),
        Err(status) => status.code(),
    }
}

/// auth-service on `database_url` and `redis_url` (nothing on the shared servers).
pub async fn auth_on(database_url: String, redis_url: String) -> auth_service::Config {
    let mut config = auth_config_on(Backend::Embedded).await;
    config.database_url = Some(database_url);
    config.redis_url = Some(redis_url);
    config
}

/// Sends and receives message bytes as they are, so a test can put anything in a gRPC
/// frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self
    }

    fn decoder(&mut self) -> Self {
        Self
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        use prost::bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        use prost::bytes::Buf as _;
        let bytes = src.copy_to_bytes(src.remaining());
        Ok(Some(bytes.to_vec()))
    }
}
