//! What operators and other clients meet besides plain gRPC: Prometheus metrics,
//! gRPC-Web with CORS, and W3C trace context carried from blog-service to auth-service.

mod support;

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use pair_proto::{auth::v1 as auth, blog::v1 as blog};
use support::{
    blog::{blog_config_on, create_post, get_post, list_posts},
    stores::free_port,
    *,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::{Code, Request};

/// Sends one HTTP/1.1 request and reads the whole answer (the server closes).
async fn http1(addr: SocketAddr, head: &str, body: &[u8]) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answer in time")
        .expect("read");
    answer
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn scrape(addr: SocketAddr) -> String {
    let answer = http1(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"",
    )
    .await;
    let answer = text(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// blog-service on `backend` with its metrics endpoint on: the server and that endpoint.
async fn blog_with_metrics(backend: Backend, auth: &Running) -> (Running, SocketAddr) {
    let mut config = blog_config_on(backend, auth.url()).await;
    config.metrics_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let app = blog_service::Application::build(config)
        .await
        .expect("build");
    let metrics_addr = app.metrics_addr().expect("metrics endpoint");
    (serve(app), metrics_addr)
}

/// `blog_post_cache_reads_total` of `read` (post or page) with `result` (hit or miss).
fn cache_reads(metrics: &str, read: &str, result: &str) -> f64 {
    let series = format!(r#"blog_post_cache_reads_total{{read="{read}",result="{result}"}}"#);
    value(metrics, &series).unwrap_or_else(|| panic!("no {series}: {metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_by_method_and_code_and_report_sessions_and_introspections() {
    for backend in [
        Backend::Embedded,
        Backend::PostgresRedis,
        Backend::PostgresRedisCluster,
    ] {
        let mut config = auth_config_on(backend).await;
        config.metrics_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let app = auth_service::Application::build(config)
            .await
            .expect("build");
        let metrics_addr = app.metrics_addr().expect("metrics endpoint");
        let server = start_built_auth(app);
        let mut client = auth_client(&server).await;
        let mut introspection = introspection_client(&server).await;
        let (_, tokens) = register_and_login(&mut client, "metric").await;
        for token in [
            &tokens.access_token,
            &tokens.access_token,
            &"garbage".to_owned(),
        ] {
            introspection
                .introspect(auth::IntrospectRequest {
                    token: token.clone(),
                })
                .await
                .expect("introspect");
        }
        let status = client
            .get_profile(Request::new(auth::GetProfileRequest {}))
            .await
            .expect_err("no token");
        assert_eq!(status.code(), Code::Unauthenticated);

        let metrics = scrape(metrics_addr).await;
        let handled = |method: &str, service: &str, code: &str| {
            value(
                &metrics,
                &format!(
                    r#"grpc_server_handled_total{{grpc_type="unary",grpc_service="{service}",grpc_method="{method}",grpc_code="{code}"}}"#
                ),
            )
        };
        assert_eq!(
            handled("Introspect", "auth.v1.IntrospectionService", "OK"),
            Some(3.0),
            "{metrics}"
        );
        assert_eq!(
            handled("Register", "auth.v1.AuthService", "OK"),
            Some(1.0),
            "{metrics}"
        );
        assert_eq!(
            handled("GetProfile", "auth.v1.AuthService", "Unauthenticated"),
            Some(1.0),
            "{metrics}"
        );
        assert_eq!(
            value(&metrics, r#"auth_introspections_total{outcome="active"}"#),
            Some(2.0),
            "{metrics}"
        );
        assert_eq!(
            value(&metrics, r#"auth_introspections_total{outcome="inactive"}"#),
            Some(1.0),
            "{metrics}"
        );
        assert!(
            value(
                &metrics,
                r#"grpc_server_handling_seconds_count{grpc_type="unary",grpc_service="auth.v1.IntrospectionService",grpc_method="Introspect"}"#
            ) == Some(3.0),
            "{metrics}"
        );
        if backend == Backend::Embedded {
            assert_eq!(
                value(&metrics, "auth_sessions_active"),
                Some(1.0),
                "{metrics}"
            );
        } else {
            // On Redis, counting every user's sessions would take a key written at every
            // login by every user: no such gauge.
            assert!(!metrics.contains("auth_sessions_active"), "{metrics}");
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blog_metrics_count_the_reads_the_post_cache_answered_and_those_it_did_not() {
    for backend in [Backend::Embedded, Backend::PostgresRedis] {
        let auth = spawn_auth_on(backend).await;
        let (server, metrics_addr) = blog_with_metrics(backend, &auth).await;
        let mut client = blog_client(&server).await;
        let (_, tokens) = register_and_login(&mut auth_client(&auth).await, "cachereads").await;
        let post = create_post(&mut client, &tokens.access_token, "counted").await;

        // Creating a post keeps nothing: its first read goes to the database.
        get_post(&mut client, &post.id).await.expect("get");
        let metrics = scrape(metrics_addr).await;
        assert_eq!(cache_reads(&metrics, "post", "miss"), 1.0, "{metrics}");
        assert_eq!(cache_reads(&metrics, "post", "hit"), 0.0, "{metrics}");

        // Once the cache serves (its change source confirmed), the same reads are hits.
        let (mut gets, mut lists) = (1.0, 0.0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let metrics = loop {
            get_post(&mut client, &post.id).await.expect("get");
            list_posts(&mut client, 10, "", None).await.expect("list");
            gets += 1.0;
            lists += 1.0;
            let metrics = scrape(metrics_addr).await;
            if cache_reads(&metrics, "post", "hit") > 0.0
                && cache_reads(&metrics, "page", "hit") > 0.0
            {
                break metrics;
            }
            assert!(Instant::now() < deadline, "no hit within 10 s: {metrics}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Every read is counted once, as a hit or a miss.
        assert_eq!(
            cache_reads(&metrics, "post", "hit") + cache_reads(&metrics, "post", "miss"),
            gets,
            "{metrics}"
        );
        assert_eq!(
            cache_reads(&metrics, "page", "hit") + cache_reads(&metrics, "page", "miss"),
            lists,
            "{metrics}"
        );
        assert!(cache_reads(&metrics, "page", "miss") >= 1.0, "{metrics}");
        server.stop().await;
        auth.stop().await;
    }
}

/// One gRPC-Web frame holding an encoded message.
fn grpc_web_frame(message: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_over_http1_is_served_and_a_wrong_content_type_is_refused_cleanly() {
    let server = spawn_auth_on(Backend::Embedded).await;
    // grpc.health.v1.Health/Check with an empty request (service "").
    let body = grpc_web_frame(&[]);
    let head = format!(
        "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let answer = http1(server.addr, &head, &body).await;
    let shown = text(&answer);
    assert!(shown.starts_with("HTTP/1.1 200"), "{shown}");
    assert!(
        shown
            .to_lowercase()
            .contains("content-type: application/grpc-web+proto"),
        "{shown}"
    );
    // The data frame holds HealthCheckResponse{status: SERVING} = 08 01; then trailers.
    assert!(
        answer.windows(7).any(|w| w == [0, 0, 0, 0, 2, 8, 1]),
        "{shown}"
    );
    assert!(shown.contains("grpc-status:0"), "{shown}");

    let wrong = format!(
        "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let refused = text(&http1(server.addr, &wrong, &body).await);
    assert!(
        !refused.starts_with("HTTP/1.1 200") || !refused.contains("grpc-status:0"),
        "{refused}"
    );
    // And the server goes on serving.
    let mut introspection = introspection_client(&server).await;
    let answer = introspection
        .introspect(auth::IntrospectRequest { token: "x".into() })
        .await
        .expect("still serving");
    assert!(!answer.into_inner().active);
}

/// GetPost and ListPosts send their answers as the post cache keeps them, already
/// encoded, through a codec of their own: over gRPC-Web too, the first answer (read from
/// the database) and the kept one are the message a client decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reads_answer_over_grpc_web_from_the_database_and_from_the_cache_alike() {
    use prost::Message as _;
    let auth = spawn_auth_on(Backend::Embedded).await;
    let (server, metrics_addr) = blog_with_metrics(Backend::Embedded, &auth).await;
    let mut client = blog_client(&server).await;
    let (_, tokens) = register_and_login(&mut auth_client(&auth).await, "webreader").await;
    let post = create_post(&mut client, &tokens.access_token, "read over the web").await;
    let expected = grpc_web_frame(
        &blog::GetPostResponse {
            post: Some(post.clone()),
        }
        .encode_to_vec(),
    );
    let body = grpc_web_frame(
        &blog::GetPostRequest {
            id: post.id.clone(),
        }
        .encode_to_vec(),
    );
    let head = format!(
        "POST /blog.v1.BlogService/GetPost HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let hits = |metrics: &str| cache_reads(metrics, "post", "hit");
    // The first read goes to the database; reads go on until one is a hit (the cache
    // serves once its change source is confirmed).
    let deadline = Instant::now() + Duration::from_secs(10);
    for read in 0.. {
        let answer = http1(server.addr, &head, &body).await;
        let shown = text(&answer);
        assert!(shown.starts_with("HTTP/1.1 200"), "read {read}: {shown}");
        assert!(shown.contains("grpc-status:0"), "read {read}: {shown}");
        assert!(
            answer.windows(expected.len()).any(|w| w == expected),
            "read {read}: not the post, framed: {shown}"
        );
        let metrics = scrape(metrics_addr).await;
        if read == 0 {
            assert_eq!(hits(&metrics), 0.0, "the first read is a miss");
        } else if hits(&metrics) >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no read was a hit: {metrics}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop().await;
    auth.stop().await;
}

async fn preflight(addr: SocketAddr, origin: &str) -> String {
    let head = format!(
        "OPTIONS /auth.v1.AuthService/Login HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type,x-grpc-web\r\nConnection: close\r\n\r\n"
    );
    text(&http1(addr, &head, b"").await).to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_grpc_web_is_refused_unless_the_origin_is_configured() {
    let closed = spawn_auth_on(Backend::Embedded).await;
    let answer = preflight(closed.addr, "https://app.example").await;
    assert!(!answer.contains("access-control-allow-origin"), "{answer}");

    let mut config = auth_config_on(Backend::Embedded).await;
    config.cors_allowed_origins = vec!["https://app.example".into()];
    let open = start_auth(config).await;
    let allowed = preflight(open.addr, "https://app.example").await;
    assert!(
        allowed.contains("access-control-allow-origin: https://app.example"),
        "{allowed}"
    );
    let other = preflight(open.addr, "https://evil.example").await;
    assert!(!other.contains("access-control-allow-origin"), "{other}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_reaches_both_services_logs_and_a_malformed_one_is_ignored() {
    let dir = TempDir::new("auth-blog-trace");
    let (auth_addr, blog_addr): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
        format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_auth-blog"))
        .current_dir(&*dir)
        .env_clear()
        .env("AUTH_LISTEN_ADDR", auth_addr.to_string())
        .env("BLOG_LISTEN_ADDR", blog_addr.to_string())
        .env("GATEWAY_LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info,pair_common::observe=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the pair");
    let deadline = Instant::now() + Duration::from_secs(30);
    for addr in [auth_addr, blog_addr] {
        while pair_common::health::check(addr).await.is_err() {
            assert!(Instant::now() < deadline, "pair did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let channel = |addr: SocketAddr| {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("url")
            .connect_lazy()
    };
    let mut auth_client = auth::auth_service_client::AuthServiceClient::new(channel(auth_addr));
    let mut blog_client = blog::blog_service_client::BlogServiceClient::new(channel(blog_addr));
    let (_, tokens) = register_and_login(&mut auth_client, "trace").await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = authed(
        &tokens.access_token,
        blog::CreatePostRequest {
            title: "Traced".into(),
            content: "across both services".into(),
        },
    );
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .expect("ascii"),
    );
    blog_client
        .create_post(request)
        .await
        .expect("create with traceparent");

    let mut malformed = authed(
        &tokens.access_token,
        blog::CreatePostRequest {
            title: "Untraced".into(),
            content: "bad header".into(),
        },
    );
    malformed
        .metadata_mut()
        .insert("traceparent", "00-nonsense".parse().expect("ascii"));
    blog_client
        .create_post(malformed)
        .await
        .expect("a malformed traceparent is ignored");

    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    let output = child.wait_with_output().expect("exit");
    let logs = text(&output.stdout);
    let traced: Vec<&str> = logs.lines().filter(|l| l.contains(trace_id)).collect();
    assert!(
        traced
            .iter()
            .any(|l| l.contains("/blog.v1.BlogService/CreatePost")),
        "{logs}"
    );
    assert!(
        traced
            .iter()
            .any(|l| l.contains("/auth.v1.IntrospectionService/Introspect")),
        "auth-service logs the same trace for the Introspect call: {logs}"
    );
}
