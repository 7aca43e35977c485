//! Starting real servers for black-box tests: auth-service on real PostgreSQL (a fresh
//! database per test) and real Redis, blog-service on its own fresh database, each on
//! port 0, talked to through the generated tonic clients.
#![allow(dead_code)]

use std::{net::SocketAddr, time::Duration};

use pair_proto::{
    auth::v1::{
        self as auth, auth_service_client::AuthServiceClient,
        introspection_service_client::IntrospectionServiceClient,
    },
    blog::v1::blog_service_client::BlogServiceClient,
};
use sqlx::{Connection as _, Executor as _, PgConnection};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{
    Request,
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

/// PostgreSQL server for tests (no database name); override with TEST_POSTGRES_URL.
pub fn postgres_server() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Redis for tests; override with TEST_REDIS_URL.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Creates an empty database and returns its URL. Fails (never skips) when PostgreSQL
/// cannot be reached.
pub async fn fresh_database(prefix: &str) -> String {
    let server = postgres_server();
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {server} is required for these tests: {e}"));
    drop_stale_databases(&mut admin).await;
    let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await
        .expect("create test database");
    format!("{server}/{name}")
}

/// Test databases are not dropped by the test that made them (a server may still hold
/// them); each name carries a UUIDv7, so those made more than an hour ago, by earlier
/// runs, are dropped here, once per test binary.
async fn drop_stale_databases(admin: &mut PgConnection) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    ONCE.call_once(|| first = true);
    if !first {
        return;
    }
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT datname FROM pg_database WHERE datname ~ '^[a-z]+_[0-9a-f]{32}$'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for (name,) in names {
        let made = name
            .rsplit('_')
            .next()
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
            .and_then(|id| id.get_timestamp())
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                std::time::UNIX_EPOCH + Duration::new(secs, nanos)
            });
        if made.is_some_and(|made| made < hour_ago) {
            let _ = admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .await;
        }
    }
}

/// The backend sets every black-box test runs on (docs/ARCHITECTURE.md, "Configuration").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite files and the in-process token store: the default with nothing configured.
    Embedded,
    /// PostgreSQL and one Redis node: production on one machine.
    PostgresRedis,
    /// PostgreSQL and a Redis Cluster of three masters with a replica each.
    PostgresRedisCluster,
}

impl Backend {
    /// Whether tokens live in Redis (one node or a cluster).
    pub fn redis(self) -> bool {
        self != Self::Embedded
    }
}

/// The URLs of the test Redis Cluster: TEST_REDIS_CLUSTER_URLS, or else the cluster of
/// this checkout, started by `tests/cluster/redis-cluster.sh start` if it is not up
/// (that script reuses a healthy one).
pub fn redis_cluster_urls() -> Vec<String> {
    static URLS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let urls = URLS.get_or_init(|| {
        if let Ok(urls) = std::env::var("TEST_REDIS_CLUSTER_URLS")
            && !urls.trim().is_empty()
        {
            return urls;
        }
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/cluster/redis-cluster.sh"
        );
        let output = std::process::Command::new("bash")
            .args([script, "start"])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("bash runs tests/cluster/redis-cluster.sh");
        assert!(
            output.status.success(),
            "tests/cluster/redis-cluster.sh start failed ({})",
            output.status
        );
        String::from_utf8(output.stdout)
            .expect("URLs are text")
            .trim()
            .to_owned()
    });
    urls.split(',').map(str::to_owned).collect()
}

/// A temporary directory, removed (with what is in it) when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh SQLite database file URL in the temp directory.
pub fn fresh_sqlite(prefix: &str) -> String {
    let dir = std::env::temp_dir().join("auth-blog-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join(format!("{prefix}-{}.db", uuid::Uuid::now_v7().simple()));
    format!("sqlite://{}", file.display())
}

/// A fresh database of `backend` for a service.
pub async fn fresh_database_on(backend: Backend, prefix: &str) -> String {
    match backend {
        Backend::Embedded => fresh_sqlite(prefix),
        Backend::PostgresRedis | Backend::PostgresRedisCluster => fresh_database(prefix).await,
    }
}

/// Runs each named `async fn(Backend)` test once per backend set, as
/// `embedded::<name>`, `postgres_redis::<name>` and `redis_cluster::<name>`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Backend::Embedded).await
                }
            )*
        }
        mod postgres_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Backend::PostgresRedis).await
                }
            )*
        }
        mod redis_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Backend::PostgresRedisCluster).await
                }
            )*
        }
    };
}

/// The configuration tests run auth-service with on Postgres + Redis.
pub async fn auth_config() -> auth_service::Config {
    auth_config_on(Backend::PostgresRedis).await
}

/// The configuration tests run auth-service with (fixed secret, port 0) on `backend`.
pub async fn auth_config_on(backend: Backend) -> auth_service::Config {
    auth_service::Config {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url: Some(fresh_database_on(backend, "authtest").await),
        redis_url: (backend == Backend::PostgresRedis).then(redis_url),
        redis_cluster_urls: if backend == Backend::PostgresRedisCluster {
            redis_cluster_urls()
        } else {
            Vec::new()
        },
        redis_refresh_db: None,
        redis_blocklist_db: None,
        redis_min_replicas: None,
        introspect_cache: true,
        jwt_secret: Some(TEST_SECRET.into()),
        jwt_private_keys: None,
        refresh_retry_window: Duration::from_secs(10),
        jwt_issuer: "auth-service".into(),
        access_token_ttl: Duration::from_secs(900),
        refresh_token_ttl: Duration::from_secs(30 * 86_400),
        hash_concurrency: None,
        hash_queue: 64,
        login_throttle: true,
        login_free_failures: 5,
        login_address_free_failures: 1_000_000,
        login_failure_window: Duration::from_secs(900),
        login_max_delay: Duration::from_secs(300),
        // Tests share one Redis and all connect from 127.0.0.1, and some race eight
        // registrations at once, so the per-address limits are off here;
        // tests/flood.rs runs them at their defaults from addresses of its own.
        address_hashes_in_flight: 0,
        address_hash_limit: 0,
        address_hash_window: Duration::from_secs(60),
        address_registration_limit: 0,
        address_registration_window: Duration::from_secs(3600),
        trusted_proxies: Vec::new(),
        store_timeout: Duration::from_secs(2),
        metrics_addr: None,
        health_addr: None,
        cors_allowed_origins: Vec::new(),
        max_connections: pair_common::limits::Limits::DEFAULT.max_connections,
        max_streams_per_connection: pair_common::limits::Limits::DEFAULT.max_streams_per_connection,
        max_calls_in_flight: pair_common::limits::Limits::DEFAULT.max_calls_in_flight,
    }
}

pub const TEST_SECRET: &str = "test-secret-test-secret-test-secret!";

/// A running server: its address and the way to stop it.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect to test server")
    }

    /// Graceful shutdown; waits until the server has stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn spawn<F>(addr: SocketAddr, run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Running
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel();
    Running {
        addr,
        stop: Some(stop),
        task: tokio::spawn(run(stopped)),
    }
}

/// Serves a built auth-service or blog-service until the returned server is stopped.
pub fn serve<C: Send + 'static>(app: pair_common::service::Application<C>) -> Running {
    let addr = app.local_addr();
    spawn(addr, |stopped| {
        app.run_until_stopped(async move {
            let _ = stopped.await;
        })
    })
}

/// Serves an already built auth-service.
pub fn start_built_auth(app: auth_service::Application) -> Running {
    serve(app)
}

/// Starts auth-service with `config`.
pub async fn start_auth(config: auth_service::Config) -> Running {
    // Server logs only when asked for (RUST_LOG=debug cargo test …).
    if std::env::var_os("RUST_LOG").is_some() {
        pair_common::telemetry::init();
    }
    let app = auth_service::Application::build(config)
        .await
        .expect("build auth-service");
    serve(app)
}

/// Starts auth-service on a fresh database and the shared Redis.
pub async fn spawn_auth() -> Running {
    start_auth(auth_config().await).await
}

/// Starts auth-service on fresh stores of `backend`.
pub async fn spawn_auth_on(backend: Backend) -> Running {
    start_auth(auth_config_on(backend).await).await
}

pub async fn auth_client(server: &Running) -> AuthServiceClient<Channel> {
    AuthServiceClient::new(server.channel().await)
}

pub async fn introspection_client(server: &Running) -> IntrospectionServiceClient<Channel> {
    IntrospectionServiceClient::new(server.channel().await)
}

pub async fn blog_client(server: &Running) -> BlogServiceClient<Channel> {
    BlogServiceClient::new(server.channel().await)
}

/// `message` with `authorization: Bearer <token>`.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).expect("ascii token"),
    );
    request
}

/// A username no other test uses.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("{prefix}{}", &id[id.len() - 12..])
}

pub const PASSWORD: &str = "a long enough passphrase";

/// Registers a new user and logs them in; returns (user, tokens).
pub async fn register_and_login(
    client: &mut AuthServiceClient<Channel>,
    prefix: &str,
) -> (auth::User, auth::TokenPair) {
    let username = unique_name(prefix);
    client
        .register(auth::RegisterRequest {
            username: username.clone(),
            email: format!("{username}@example.com"),
            password: PASSWORD.into(),
        })
        .await
        .expect("register");
    let login = client
        .login(auth::LoginRequest {
            username,
            password: PASSWORD.into(),
        })
        .await
        .expect("login")
        .into_inner();
    (login.user.expect("user"), login.tokens.expect("tokens"))
}

/// The claims of a JWT, read without checking its signature.
pub fn claims_of(token: &str) -> serde_json::Value {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
}

/// Login, answered or refused.
pub async fn login(
    client: &mut auth::auth_service_client::AuthServiceClient<tonic::transport::Channel>,
    username: &str,
    password: &str,
) -> Result<auth::LoginResponse, tonic::Status> {
    client
        .login(auth::LoginRequest {
            username: username.into(),
            password: password.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The field names of a BadRequest detail.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

pub mod blog;
pub mod faults;
pub mod gateway;
pub mod link;
pub mod stores;

/// Whether Introspect on `server` says `token` is an active access token.
pub async fn is_active(server: &Running, token: &str) -> bool {
    introspection_client(server)
        .await
        .introspect(auth::IntrospectRequest {
            token: token.to_owned(),
        })
        .await
        .expect("introspect")
        .into_inner()
        .active
}

/// Refresh on `server` with `refresh_token`: the new pair, or the call's status.
pub async fn refresh(
    server: &Running,
    refresh_token: &str,
) -> Result<auth::TokenPair, tonic::Status> {
    auth_client(server)
        .await
        .refresh(auth::RefreshRequest {
            refresh_token: refresh_token.to_owned(),
        })
        .await
        .map(|r| r.into_inner().tokens.expect("tokens"))
}

/// Refresh on `server` with `refresh_token` must be UNAUTHENTICATED; `why` it must.
pub async fn assert_refresh_refused(server: &Running, refresh_token: &str, why: &str) {
    let status = refresh(server, refresh_token).await.expect_err(why);
    assert_eq!(
        status.code(),
        tonic::Code::Unauthenticated,
        "{why}: {status:?}"
    );
}

/// A loopback address no other test (or earlier run) uses: 127.x.y.z, never 127.0.0.1,
/// so what auth-service counts per client address starts from zero.
pub fn fresh_loopback() -> std::net::IpAddr {
    let id = uuid::Uuid::new_v4();
    let b = id.as_bytes();
    std::net::IpAddr::from([127, 1 + b[0] % 254, b[1], 1 + b[2] % 254])
}

/// A client of `server` whose connection comes from `source`.
pub async fn client_from(server: &Running, source: std::net::IpAddr) -> AuthServiceClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .expect("url")
        .local_address(Some(source))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect from {source}: {e}"));
    AuthServiceClient::new(channel)
}
