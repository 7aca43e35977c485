//! The pair as a process: SIGTERM in the middle of a burst finishes the calls in flight,
//! auth-service outlives blog-service's last calls, and debug logs hold no password,
//! hash, token or secret.

mod support;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use pair_proto::{
    auth::v1::{
        self as auth, auth_service_client::AuthServiceClient,
        introspection_service_client::IntrospectionServiceClient,
    },
    blog::v1::{self as blog, blog_service_client::BlogServiceClient},
};
use support::faults::*;
use support::{
    authed,
    blog::new_post,
    fresh_database, register_and_login,
    stores::{PrivateRedis, free_port},
    unique_name,
};
use tokio::task::JoinHandle;
use tonic::{Code, Request, Status, transport::Channel};

const PAIR: &str = env!("CARGO_BIN_EXE_auth-blog");
const PAIR_SECRET: &str = "pair-secret-for-the-fault-tests-0123456789";

/// What the pair process is started with: fresh databases on the shared PostgreSQL, a
/// Redis of its own (the login throttle counts failures per client address, and every
/// test calls from 127.0.0.1), free ports.
struct PairEnv {
    auth_addr: SocketAddr,
    blog_addr: SocketAddr,
    auth_database: String,
    blog_database: String,
    redis: PrivateRedis,
    rust_log: &'static str,
}

impl PairEnv {
    async fn fresh(rust_log: &'static str) -> Self {
        Self {
            auth_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            blog_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            auth_database: fresh_database("pairauth").await,
            blog_database: fresh_database("pairblog").await,
            redis: PrivateRedis::start().await,
            rust_log,
        }
    }
}

/// The pair binary, its stdout and stderr going to one file. Killed on drop if still
/// running.
struct Pair {
    child: Option<Child>,
    log: PathBuf,
}

impl Pair {
    async fn start(env: &PairEnv, log: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(PAIR)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AUTH_LISTEN_ADDR", env.auth_addr.to_string())
            .env("BLOG_LISTEN_ADDR", env.blog_addr.to_string())
            // The gateway of the pair binary on a free port, never the shared :8000.
            .env("GATEWAY_LISTEN_ADDR", "127.0.0.1:0")
            .env("AUTH_DATABASE_URL", &env.auth_database)
            .env("BLOG_DATABASE_URL", &env.blog_database)
            .env("AUTH_REDIS_URL", env.redis.url())
            .env("AUTH_JWT_SECRET", PAIR_SECRET)
            .env("RUST_LOG", env.rust_log)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("start the pair");
        let mut pair = Self {
            child: Some(child),
            log: log.to_owned(),
        };
        for addr in [env.auth_addr, env.blog_addr] {
            let deadline = Instant::now() + Duration::from_secs(30);
            while pair_common::health::check(addr).await.is_err() {
                if let Some(status) = pair.child().try_wait().expect("wait") {
                    panic!(
                        "the pair exited ({status}) before serving: {}",
                        pair.output()
                    );
                }
                assert!(Instant::now() < deadline, "{addr} did not start serving");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        pair
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("running")
    }

    fn signal(&mut self, signal: &str) {
        let pid = self.child().id().to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Waits (polling, bounded by `limit`) for the process to exit.
    async fn exit(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child().try_wait().expect("wait") {
                self.child = None;
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "the pair did not exit within {limit:?}: {}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A directory for the pair's logs: removed when the test passes, kept (and named on
/// stderr) when it fails.
struct LogDir(PathBuf);

impl LogDir {
    fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn join(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the pair's logs are kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn lazy_channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect_lazy()
}

async fn connected_channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

async fn titles_in(database: &str) -> Vec<String> {
    use sqlx::Connection as _;
    let mut db = sqlx::PgConnection::connect(database)
        .await
        .expect("connect");
    let rows: Vec<(String,)> = sqlx::query_as("SELECT title FROM posts ORDER BY title")
        .fetch_all(&mut db)
        .await
        .expect("titles");
    rows.into_iter().map(|(title,)| title).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_a_burst_finishes_the_calls_in_flight_and_exits_zero() {
    let env = PairEnv::fresh("info").await;
    let dir = LogDir::new("auth-blog-burst");
    let mut pair = Pair::start(&env, &dir.join("first.log")).await;
    let mut auth = AuthServiceClient::new(lazy_channel(env.auth_addr));
    let (_, tokens) = register_and_login(&mut auth, "burst").await;
    let token = tokens.access_token;

    // 200 concurrent CreatePost calls over 4 connections; SIGTERM once 10 are done.
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(connected_channel(env.blog_addr).await);
    }
    let done = Arc::new(AtomicUsize::new(0));
    let content = "x".repeat(20_000);
    // Each call: its title, the id it was given or its failure, and when it answered.
    type Call = JoinHandle<(String, Result<String, Status>, Instant)>;
    let calls: Vec<Call> = (0..200)
        .map(|i| {
            let mut client = BlogServiceClient::new(channels[i % channels.len()].clone());
            let (token, content, done) = (token.clone(), content.clone(), done.clone());
            tokio::spawn(async move {
                let title = format!("burst {i:03}");
                let answer = tokio::time::timeout(
                    Duration::from_secs(15),
                    client.create_post(authed(&token, new_post(&title, &content))),
                )
                .await
                .unwrap_or_else(|_| panic!("CreatePost {i} hung across the shutdown"));
                done.fetch_add(1, Ordering::SeqCst);
                let answer = answer.map(|r| r.into_inner().post.expect("post").id);
                (title, answer, Instant::now())
            })
        })
        .collect();
    let started = Instant::now();
    while done.load(Ordering::SeqCst) < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the burst made no progress"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    pair.signal("-TERM");
    let signalled = Instant::now();
    let done_at_signal = done.load(Ordering::SeqCst);

    let mut ok: Vec<(String, String)> = Vec::new();
    let mut failed: Vec<(String, Code, String)> = Vec::new();
    let mut ok_after_signal = 0;
    for call in calls {
        let (title, answer, at) = call.await.expect("call task");
        match answer {
            Ok(id) => {
                ok_after_signal += usize::from(at > signalled);
                ok.push((title, id));
            }
            Err(status) => failed.push((title, status.code(), status.message().to_owned())),
        }
    }
    let status = pair.exit(Duration::from_secs(10)).await;
    let exited = signalled.elapsed();
    assert!(
        status.success(),
        "the pair exited with {status}: {}",
        pair.output()
    );
    for addr in [env.auth_addr, env.blog_addr] {
        let refused = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        assert!(
            refused.is_err(),
            "{addr} still accepts connections after exit"
        );
    }

    // Only refusals, never a half-done call: a failed call wrote nothing, every
    // acknowledged post is there after a restart, and nothing else is.
    let unexpected: Vec<_> = failed
        .iter()
        .filter(|(_, code, _)| *code != Code::Unavailable)
        .collect();
    assert!(
        unexpected.is_empty(),
        "calls failed other than UNAVAILABLE: {unexpected:?}"
    );
    // A call blog-service had accepted is in flight: it must not fail because
    // auth-service (its Introspect) stopped first. Only calls the transport refused
    // before blog-service took them may fail.
    let cut_off: Vec<_> = failed
        .iter()
        .filter(|(_, _, message)| message.contains("backing service"))
        .collect();
    assert!(
        cut_off.is_empty(),
        "{} calls in flight failed because auth-service stopped under them: {:?}",
        cut_off.len(),
        cut_off.first()
    );
    let mut pair = Pair::start(&env, &dir.join("second.log")).await;
    let mut blog = BlogServiceClient::new(lazy_channel(env.blog_addr));
    for (title, id) in &ok {
        let post = guarded("GetPost", get(&mut blog, id))
            .await
            .unwrap_or_else(|e| panic!("acknowledged post {title} was lost: {e:?}"));
        assert_eq!(&post.title, title);
    }
    let mut acknowledged: Vec<String> = ok.iter().map(|(title, _)| title.clone()).collect();
    acknowledged.sort();
    assert_eq!(
        titles_in(&env.blog_database).await,
        acknowledged,
        "the database holds exactly the acknowledged posts"
    );
    println!(
        "SIGTERM after {done_at_signal} of 200 calls: {} OK ({ok_after_signal} answered after \
         the signal), {} refused {:?}; exit 0 after {exited:?}",
        ok.len(),
        failed.len(),
        failed.first()
    );
    pair.signal("-INT");
    assert!(pair.exit(Duration::from_secs(10)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_auth_service_up_until_blog_service_has_finished_its_calls() {
    use prost::Message as _;
    use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

    let env = PairEnv::fresh("info").await;
    let dir = LogDir::new("auth-blog-drain");
    let mut pair = Pair::start(&env, &dir.join("pair.log")).await;
    let mut auth = AuthServiceClient::new(lazy_channel(env.auth_addr));
    let (_, tokens) = register_and_login(&mut auth, "drain").await;
    let blog_channel = connected_channel(env.blog_addr).await;

    // Three CreatePost calls that blog-service has taken (their headers are in) but whose
    // message is still on its way, so their Introspect comes after SIGTERM.
    let path = "/blog.v1.BlogService/CreatePost";
    let mut bodies = Vec::new();
    let mut calls = Vec::new();
    for i in 0..3 {
        let (body, stream) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
        let mut request = Request::new(ReceiverStream::new(stream));
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", tokens.access_token)
                .parse()
                .expect("ascii"),
        );
        let mut grpc = tonic::client::Grpc::new(blog_channel.clone());
        grpc.ready().await.expect("ready");
        let mut call = Box::pin(async move {
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
            grpc.client_streaming(request, path, RawCodec).await
        });
        // One poll queues the request on the connection, ahead of any later call.
        tokio::select! {
            biased;
            answer = &mut call => panic!("CreatePost {i} answered before its message: {answer:?}"),
            () = std::future::ready(()) => {}
        }
        calls.push(tokio::spawn(call));
        bodies.push(body);
    }
    // A later call on the same connection answers: the server has taken the three.
    let mut blog = BlogServiceClient::new(blog_channel.clone());
    guarded("ListPosts", list(&mut blog)).await.expect("list");

    pair.signal("-TERM");
    let started = Instant::now();
    while !pair.output().contains("shutdown signal received") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the pair did not log the signal"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        pair_common::health::check(env.auth_addr).await.is_ok(),
        "auth-service stopped while blog-service still had calls in flight"
    );

    for (i, body) in bodies.into_iter().enumerate() {
        let message = blog::CreatePostRequest {
            title: format!("drained {i}"),
            content: "sent after SIGTERM".into(),
        };
        body.send(message.encode_to_vec()).await.expect("send");
    }
    for (i, call) in calls.into_iter().enumerate() {
        let answer = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .unwrap_or_else(|_| panic!("CreatePost {i} hung"))
            .expect("task")
            .unwrap_or_else(|e| panic!("CreatePost {i}, in flight at SIGTERM, failed: {e:?}"));
        let post = blog::CreatePostResponse::decode(answer.into_inner().as_slice())
            .expect("a CreatePostResponse")
            .post
            .expect("post");
        assert_eq!(post.title, format!("drained {i}"));
    }
    let status = pair.exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}: {}", pair.output());
    assert_eq!(
        titles_in(&env.blog_database).await,
        ["drained 0", "drained 1", "drained 2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_hold_no_password_hash_token_or_secret() {
    use sqlx::Connection as _;
    let env = PairEnv::fresh("debug").await;
    let dir = LogDir::new("auth-blog-logs");
    let log = dir.join("pair.log");
    let mut pair = Pair::start(&env, &log).await;
    let mut auth = AuthServiceClient::new(lazy_channel(env.auth_addr));
    let mut introspection = IntrospectionServiceClient::new(lazy_channel(env.auth_addr));
    let mut blog = BlogServiceClient::new(lazy_channel(env.blog_addr));
    let mut secrets: Vec<(&str, String)> = vec![("JWT secret", PAIR_SECRET.into())];
    let mut users_db = sqlx::PgConnection::connect(&env.auth_database)
        .await
        .expect("auth database");
    let hashes = |label: &'static str, rows: Vec<(String,)>| {
        rows.into_iter()
            .map(|(hash,)| (label, hash))
            .collect::<Vec<_>>()
    };

    let first_password = "flow: correct horse battery staple";
    let second_password = "flow: a different long passphrase";
    let wrong_password = "flow: not the password at all";
    for (label, password) in [
        ("password", first_password),
        ("new password", second_password),
        ("wrong password", wrong_password),
    ] {
        secrets.push((label, password.into()));
    }
    let mut tokens = Vec::new();

    // The homework flow.
    let username = unique_name("logs");
    auth.register(auth::RegisterRequest {
        username: username.clone(),
        email: format!("{username}@example.com"),
        password: first_password.into(),
    })
    .await
    .expect("register");
    let first_hashes = sqlx::query_as("SELECT password_hash FROM users")
        .fetch_all(&mut users_db)
        .await
        .expect("hashes");
    secrets.extend(hashes("password hash", first_hashes));
    let pair1 = login(&mut auth, &username, first_password)
        .await
        .expect("login");
    tokens.push(pair1.clone());
    let pair2 = auth
        .refresh(auth::RefreshRequest {
            refresh_token: pair1.refresh_token.clone(),
        })
        .await
        .expect("refresh")
        .into_inner()
        .tokens
        .expect("tokens");
    tokens.push(pair2.clone());
    get_profile(&mut auth, &pair2.access_token)
        .await
        .expect("profile");
    create(&mut blog, &pair2.access_token, "a post")
        .await
        .expect("create post");
    let new_name = unique_name("logsren");
    let pair3 = auth
        .update_profile(authed(
            &pair2.access_token,
            auth::UpdateProfileRequest {
                username: Some(new_name.clone()),
                email: None,
            },
        ))
        .await
        .expect("update profile")
        .into_inner()
        .tokens
        .expect("tokens");
    tokens.push(pair3.clone());
    let pair4 = auth
        .change_password(authed(
            &pair3.access_token,
            auth::ChangePasswordRequest {
                current_password: first_password.into(),
                new_password: second_password.into(),
            },
        ))
        .await
        .expect("change password")
        .into_inner()
        .tokens
        .expect("tokens");
    tokens.push(pair4.clone());
    auth.logout(authed(&pair4.access_token, auth::LogoutRequest {}))
        .await
        .expect("logout");
    let pair5 = login(&mut auth, &new_name, second_password)
        .await
        .expect("login");
    tokens.push(pair5.clone());
    assert_eq!(
        active(&mut introspection, &pair5.access_token).await,
        Ok(true)
    );
    create(&mut blog, &pair5.access_token, "another post")
        .await
        .expect("create post");
    auth.logout_all(authed(&pair5.access_token, auth::LogoutAllRequest {}))
        .await
        .expect("logout all");
    assert_eq!(
        login(&mut auth, &new_name, wrong_password)
            .await
            .expect_err("wrong password")
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        active(&mut introspection, &pair5.access_token).await,
        Ok(false)
    );
    let last_hashes = sqlx::query_as("SELECT password_hash FROM users")
        .fetch_all(&mut users_db)
        .await
        .expect("hashes");
    secrets.extend(hashes("password hash", last_hashes));

    pair.signal("-INT");
    assert!(pair.exit(Duration::from_secs(10)).await.success());
    let logs = pair.output();
    assert!(
        logs.contains("DEBUG"),
        "RUST_LOG=debug gave no debug lines:\n{logs}"
    );

    for pair in &tokens {
        for (label, token) in [
            ("access token", &pair.access_token),
            ("refresh token", &pair.refresh_token),
        ] {
            secrets.push((label, token.clone()));
            // The header segment is the same for every token of a kind and says only
            // `{"alg":"HS256","typ":…}`; the claims and the signature are the secrets.
            for segment in token.split('.').skip(1) {
                secrets.push((label, segment.to_owned()));
            }
        }
    }
    for (label, secret) in &secrets {
        if let Some(at) = logs.find(secret.as_str()) {
            let line_start = logs[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = logs[at..].find('\n').map_or(logs.len(), |i| at + i);
            panic!(
                "a {label} appears in the logs: {}",
                &logs[line_start..line_end]
            );
        }
    }
    // A PHC hash is `$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>`: neither part may leak.
    for (label, secret) in &secrets {
        if *label == "password hash" {
            for part in secret.rsplit('$').take(2) {
                assert!(
                    !logs.contains(part),
                    "part of a password hash appears in the logs"
                );
            }
        }
    }
    println!(
        "debug logs: {} lines, {} bytes, none of {} secrets",
        logs.lines().count(),
        logs.len(),
        secrets.len()
    );
}
