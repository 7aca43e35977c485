//! The binaries as a newcomer and an operator meet them: `cargo run` with nothing
//! configured, a second copy on the same ports, bad settings, Ctrl-C; and two servers
//! sharing one SQLite file.

mod support;

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use pair_proto::{auth::v1 as auth, blog::v1 as blog};
use sqlx::{Connection as _, SqliteConnection};
use support::{stores::free_port, *};

const PAIR: &str = env!("CARGO_BIN_EXE_auth-blog");

/// The pair binary in `dir` with only `env` set (no AUTH_*/BLOG_* from the caller).
fn pair_command(dir: &Path, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(PAIR);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        // The gateway on a free port unless a test says otherwise: never the shared :8000.
        .env("GATEWAY_LISTEN_ADDR", "127.0.0.1:0")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn temp_dir() -> TempDir {
    TempDir::new("auth-blog-start")
}

async fn wait_until_serving(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while pair_common::health::check(addr).await.is_err() {
        assert!(Instant::now() < deadline, "{addr} did not start serving");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends SIGINT, as Ctrl-C does, and returns the exit status once the process ends.
fn interrupt(mut child: Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the pair did not stop within 10 s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stderr_of(child: Child) -> String {
    String::from_utf8_lossy(&child.wait_with_output().expect("output").stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_configured_the_pair_runs_on_embedded_stores_and_stops_on_ctrl_c() {
    let dir = temp_dir();
    let (auth_port, blog_port) = (free_port(), free_port());
    let env = [
        ("AUTH_LISTEN_ADDR", format!("127.0.0.1:{auth_port}")),
        ("BLOG_LISTEN_ADDR", format!("127.0.0.1:{blog_port}")),
    ];
    let child = pair_command(&dir, &env).spawn().expect("start the pair");
    let auth_addr: SocketAddr = env[0].1.parse().expect("addr");
    let blog_addr: SocketAddr = env[1].1.parse().expect("addr");
    wait_until_serving(auth_addr).await;
    wait_until_serving(blog_addr).await;
    assert!(dir.join("data/auth.db").exists() && dir.join("data/blog.db").exists());

    let channel = |addr: SocketAddr| {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("url")
            .connect_lazy()
    };
    let mut auth_client = auth::auth_service_client::AuthServiceClient::new(channel(auth_addr));
    let mut blog_client = blog::blog_service_client::BlogServiceClient::new(channel(blog_addr));
    let (_, tokens) = register_and_login(&mut auth_client, "fresh").await;
    let post = blog_client
        .create_post(authed(
            &tokens.access_token,
            blog::CreatePostRequest {
                title: "Hello".into(),
                content: "from a fresh clone".into(),
            },
        ))
        .await
        .expect("blog checks the token with the auth-service beside it")
        .into_inner()
        .post
        .expect("post");
    let listed = blog_client
        .list_posts(blog::ListPostsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .posts;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, post.id);

    let status = interrupt(child);
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pair_on_the_same_ports_fails_clearly() {
    let dir = temp_dir();
    let env = [
        ("AUTH_LISTEN_ADDR", format!("127.0.0.1:{}", free_port())),
        ("BLOG_LISTEN_ADDR", format!("127.0.0.1:{}", free_port())),
    ];
    let first = pair_command(&dir, &env).spawn().expect("start the pair");
    wait_until_serving(env[0].1.parse().expect("addr")).await;
    wait_until_serving(env[1].1.parse().expect("addr")).await;
    let second = pair_command(&dir, &env)
        .spawn()
        .expect("start a second pair");
    let message = stderr_of(second);
    assert!(
        message.contains("AUTH_LISTEN_ADDR") && message.contains("in use"),
        "{message}"
    );
    assert!(interrupt(first).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_stop_the_start_with_one_line_naming_the_variable() {
    let dir = temp_dir();
    let not_a_dir = temp_dir();
    std::fs::write(not_a_dir.join("data"), b"a file where ./data/ should be").expect("file");
    let cases: Vec<(&Path, (&str, String), &str)> = vec![
        (
            &dir,
            ("AUTH_DATABASE_URL", "mysql://localhost/x".into()),
            "AUTH_DATABASE_URL",
        ),
        (
            &dir,
            ("BLOG_DATABASE_URL", "mongodb://localhost/x".into()),
            "BLOG_DATABASE_URL",
        ),
        (
            &dir,
            ("AUTH_ACCESS_TOKEN_TTL", "15x".into()),
            "AUTH_ACCESS_TOKEN_TTL",
        ),
        (
            &dir,
            ("AUTH_REFRESH_TOKEN_TTL", "-3d".into()),
            "AUTH_REFRESH_TOKEN_TTL",
        ),
        (
            &dir,
            ("AUTH_JWT_SECRET", "too short".into()),
            "AUTH_JWT_SECRET",
        ),
        (
            &dir,
            (
                "AUTH_DATABASE_URL",
                "postgres://postgres@127.0.0.1:1/none".into(),
            ),
            "AUTH_DATABASE_URL",
        ),
        (
            &not_a_dir,
            ("AUTH_LISTEN_ADDR", format!("127.0.0.1:{}", free_port())),
            "AUTH_DATABASE_URL",
        ),
        (
            &dir,
            ("TOKIO_WORKER_THREADS", "0".into()),
            "TOKIO_WORKER_THREADS",
        ),
        (
            &dir,
            ("GATEWAY_AUTH_URL", "ftp://127.0.0.1:50051".into()),
            "GATEWAY_AUTH_URL",
        ),
        (
            &dir,
            ("GATEWAY_REQUEST_TIMEOUT", "10".into()),
            "GATEWAY_REQUEST_TIMEOUT",
        ),
        (
            &dir,
            ("AUTH_TRUSTED_PROXIES", "10.0.0.1,,not-an-address".into()),
            "AUTH_TRUSTED_PROXIES",
        ),
        (
            &dir,
            ("AUTH_TRUSTED_PROXIES", "10.0.0.0/40".into()),
            "AUTH_TRUSTED_PROXIES",
        ),
        (
            &dir,
            ("AUTH_ADDRESS_HASH_LIMIT", "-1".into()),
            "AUTH_ADDRESS_HASH_LIMIT",
        ),
        (
            &dir,
            ("AUTH_ADDRESS_REGISTRATION_WINDOW", "0s".into()),
            "AUTH_ADDRESS_REGISTRATION_WINDOW",
        ),
    ];
    for (cwd, setting, named) in cases {
        let error = start_error(cwd, &setting);
        assert!(error.contains(named), "{setting:?}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_redis_settings_stop_the_start_naming_both() {
    let dir = temp_dir();
    let cluster = ("AUTH_REDIS_CLUSTER_URLS", "redis://127.0.0.1:1".to_owned());
    // The settings, and what the error line names.
    type Case<'a> = (Vec<(&'a str, String)>, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (
            vec![
                cluster.clone(),
                ("AUTH_REDIS_URL", "redis://127.0.0.1:6379".into()),
            ],
            &["AUTH_REDIS_URL", "AUTH_REDIS_CLUSTER_URLS"],
        ),
        (
            vec![cluster.clone(), ("AUTH_REDIS_REFRESH_DB", "3".into())],
            &["AUTH_REDIS_REFRESH_DB", "AUTH_REDIS_CLUSTER_URLS"],
        ),
        (
            vec![cluster.clone(), ("AUTH_REDIS_BLOCKLIST_DB", "4".into())],
            &["AUTH_REDIS_BLOCKLIST_DB", "AUTH_REDIS_CLUSTER_URLS"],
        ),
        (
            vec![("AUTH_REDIS_CLUSTER_URLS", ",".into())],
            &["AUTH_REDIS_CLUSTER_URLS"],
        ),
        (
            vec![(
                "AUTH_REDIS_CLUSTER_URLS",
                "redis://127.0.0.1:1,http://127.0.0.1:2".into(),
            )],
            &["AUTH_REDIS_CLUSTER_URLS", "`http`"],
        ),
        (
            vec![("AUTH_REDIS_MIN_REPLICAS", "1".into())],
            &["AUTH_REDIS_MIN_REPLICAS"],
        ),
        (
            vec![("AUTH_REDIS_MIN_REPLICAS", "-1".into())],
            &["AUTH_REDIS_MIN_REPLICAS"],
        ),
        // Nothing listens there: the start fails, naming the setting.
        (vec![cluster.clone()], &["AUTH_REDIS_CLUSTER_URLS"]),
    ];
    for (settings, named) in cases {
        let error = start_error_with(&dir, &settings);
        for name in named {
            assert!(error.contains(name), "{settings:?}: {error}");
        }
    }
}

/// The one error line the pair prints when it refuses to start with `setting`.
fn start_error(cwd: &Path, setting: &(&str, String)) -> String {
    start_error_with(cwd, std::slice::from_ref(setting))
}

/// The one error line the pair prints when it refuses to start with `settings`.
fn start_error_with(cwd: &Path, settings: &[(&str, String)]) -> String {
    let setting = settings;
    let mut env = settings.to_vec();
    env.push(("BLOG_LISTEN_ADDR", format!("127.0.0.1:{}", free_port())));
    let child = pair_command(cwd, &env).spawn().expect("start");
    let started = Instant::now();
    let output = child.wait_with_output().expect("exit");
    assert!(!output.status.success(), "{setting:?} was accepted");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{setting:?}: slow to fail"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("auth-blog:"))
        .collect();
    assert_eq!(errors.len(), 1, "{setting:?}: {stderr}");
    errors[0].to_owned()
}

fn openssl_key(path: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .arg("-out")
        .arg(path)
        .stderr(Stdio::null())
        .status()
        .expect("openssl is required to make keys");
    assert!(status.success(), "openssl genpkey {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signing_keys_stop_the_start_naming_the_variable_and_the_item_never_a_secret() {
    let dir = temp_dir();
    let good = "a-good-secret-a-good-secret-a-good-secret";
    let short = "tiny-secret-value";
    let (ed25519, p256, garbage) = (
        dir.join("ed25519.pem"),
        dir.join("p256.pem"),
        dir.join("garbage.pem"),
    );
    openssl_key(&ed25519, &["-algorithm", "ed25519"]);
    openssl_key(
        &p256,
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .expect("file");
    let missing = dir.join("missing.pem");
    let path = |p: &Path| p.display().to_string();
    let cases: Vec<((&str, String), Vec<String>)> = vec![
        (
            ("AUTH_JWT_SECRET", format!("{good},{short}")),
            vec!["AUTH_JWT_SECRET".into(), "secret 2".into()],
        ),
        (
            ("AUTH_JWT_SECRET", format!("{good},{good}")),
            vec![
                "AUTH_JWT_SECRET".into(),
                "secret 2".into(),
                "secret 1".into(),
            ],
        ),
        (
            ("AUTH_JWT_PRIVATE_KEYS", path(&missing)),
            vec![
                "AUTH_JWT_PRIVATE_KEYS".into(),
                "key 1".into(),
                path(&missing),
            ],
        ),
        (
            (
                "AUTH_JWT_PRIVATE_KEYS",
                format!("{},{}", path(&ed25519), path(&p256)),
            ),
            vec!["AUTH_JWT_PRIVATE_KEYS".into(), "key 2".into(), path(&p256)],
        ),
        (
            ("AUTH_JWT_PRIVATE_KEYS", path(&garbage)),
            vec![
                "AUTH_JWT_PRIVATE_KEYS".into(),
                "key 1".into(),
                path(&garbage),
            ],
        ),
        (
            (
                "AUTH_JWT_PRIVATE_KEYS",
                format!("{},{}", path(&ed25519), path(&ed25519)),
            ),
            vec![
                "AUTH_JWT_PRIVATE_KEYS".into(),
                "key 2".into(),
                "key 1".into(),
            ],
        ),
    ];
    for (setting, named) in cases {
        let error = start_error(&dir, &setting);
        for name in named {
            assert!(error.contains(&name), "{setting:?}: {error} lacks {name}");
        }
        for secret in [good, short] {
            assert!(
                !error.contains(secret),
                "{setting:?}: {error} shows a secret"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_sqlite_file_share_it_without_corruption() {
    let url = fresh_sqlite("shared");
    let mut config = auth_config_on(Backend::Embedded).await;
    config.database_url = Some(url.clone());
    let first = start_auth(config.clone()).await;
    let second = start_auth(config).await;
    let mut calls = Vec::new();
    for (i, server) in [&first, &second, &first, &second, &first, &second]
        .into_iter()
        .enumerate()
    {
        let mut client = auth_client(server).await;
        calls.push(tokio::spawn(async move {
            for j in 0..5 {
                let name = format!("{}{i}x{j}", unique_name("w"));
                client
                    .register(auth::RegisterRequest {
                        username: name.clone(),
                        email: format!("{name}@example.com"),
                        password: PASSWORD.into(),
                    })
                    .await
                    .expect("register through either server");
            }
        }));
    }
    for call in calls {
        call.await.expect("task");
    }
    let mut db = SqliteConnection::connect(&url).await.expect("open");
    let (integrity,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut db)
        .await
        .expect("check");
    assert_eq!(integrity, "ok");
    let (users,): (i64,) = sqlx::query_as("SELECT count(*) FROM users")
        .fetch_one(&mut db)
        .await
        .expect("count");
    assert_eq!(users, 30);
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut db)
        .await
        .expect("mode");
    assert_eq!(mode, "wal");
}

#[test]
fn env_example_lists_every_setting_of_the_three_servers() {
    use clap::CommandFactory as _;
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"))
        .expect(".env.example");
    let commands = [
        auth_service::Config::command(),
        blog_service::Config::command(),
        api_gateway::Config::command(),
    ];
    for command in &commands {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                assert!(
                    example.contains(&format!("{env}=")),
                    "{env} is missing from .env.example"
                );
            }
        }
    }
}
