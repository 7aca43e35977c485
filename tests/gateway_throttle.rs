//! Login throttling through api-gateway, black-box: failed logins answered 429 with
//! `Retry-After`, and the client address a gateway forwards counted only when
//! auth-service trusts the gateway. On both backend sets.

mod support;

use http::{Method, StatusCode, header};
use serde_json::json;
use support::{gateway::*, *};

on_every_backend!(
    repeated_failed_logins_are_429_with_retry_after,
    behind_a_trusted_gateway_each_client_is_throttled_by_its_own_address,
    an_untrusted_gateway_cannot_vouch_for_the_address_it_forwards,
);

async fn repeated_failed_logins_are_429_with_retry_after(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let http = &stack.http;
    let (username, _) = http.signup_and_login("throttled").await;
    let mut last = None;
    // The test configuration allows 5 free failures per username.
    for _ in 0..7 {
        let answer = http
            .post(
                "/api/v1/login",
                None,
                json!({"username": username, "password": "wrong wrong wrong"}),
            )
            .await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            last = Some(answer);
            break;
        }
        assert_unauthenticated(&answer);
    }
    let throttled = last.expect("a 429 after the free failures");
    let retry_after: u64 = throttled.headers[header::RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("whole seconds");
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    assert!(throttled.json["detail"].is_string());
}

/// A client address no other test or run uses: a random /64 of the documentation prefix
/// (auth-service counts IPv6 clients by /64; the counts live in the shared Redis).
fn fresh_client_address() -> String {
    let id = uuid::Uuid::new_v4().as_u128();
    format!("2001:db8:{:x}:{:x}::1", id as u16, (id >> 16) as u16)
}

/// auth-service where the per-address login throttle bites after two failures against
/// real accounts (and the per-username one much later), trusting `proxies`.
/// The private cluster, if any, lives as long as the stack.
async fn stack_with_address_throttle(
    backend: Backend,
    proxies: Vec<std::net::IpAddr>,
) -> (Stack, Option<stores::PrivateCluster>) {
    let mut config = auth_config_on(backend).await;
    config.login_address_free_failures = 2;
    config.login_free_failures = 100;
    config.trusted_proxies = proxies.iter().map(ToString::to_string).collect();
    // Failures from 127.0.0.1 are counted too, and lock 127.0.0.1 out: keep them away
    // from other tests' Redis (databases of their own on one node, a cluster of its own).
    let mut cluster = None;
    match backend {
        Backend::PostgresRedis => {
            config.redis_refresh_db = Some(5);
            config.redis_blocklist_db = Some(6);
        }
        Backend::PostgresRedisCluster => {
            let private = stores::PrivateCluster::start().await;
            config.redis_cluster_urls = private.urls();
            cluster = Some(private);
        }
        Backend::Embedded => {}
    }
    (spawn_stack_with(backend, config).await, cluster)
}

/// A login sent as a client behind the gateway's own proxy would say: from `address`.
async fn login_from(http: &Http, address: &str, username: &str, password: &str) -> Answer {
    let request = http
        .request(Method::POST, "/api/v1/login")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-forwarded-for", address)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            json!({"username": username, "password": password}).to_string(),
        )))
        .expect("request");
    http.send(request).await
}

/// Fails logins from `address` until the address throttle answers 429.
async fn throttle_address(http: &Http, address: &str, username: &str) {
    for _ in 0..5 {
        let answer = login_from(http, address, username, "wrong wrong wrong").await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            return;
        }
        assert_unauthenticated(&answer);
    }
    panic!("{address} was never throttled");
}

async fn behind_a_trusted_gateway_each_client_is_throttled_by_its_own_address(backend: Backend) {
    // The gateway calls auth-service from 127.0.0.1, which is trusted here.
    let (stack, _cluster) = stack_with_address_throttle(backend, vec![[127, 0, 0, 1].into()]).await;
    let http = &stack.http;
    // Every login comes from a forwarded address: 127.0.0.1's own count is never used.
    let username = http.signup("xff").await;
    let (noisy, quiet) = (fresh_client_address(), fresh_client_address());
    throttle_address(http, &noisy, &username).await;
    let other = login_from(http, &quiet, &username, PASSWORD).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text);
    let again = login_from(http, &noisy, &username, PASSWORD).await;
    assert_eq!(
        again.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        again.text
    );
}

async fn an_untrusted_gateway_cannot_vouch_for_the_address_it_forwards(backend: Backend) {
    let (stack, _cluster) = stack_with_address_throttle(backend, Vec::new()).await;
    let http = &stack.http;
    let username = http.signup("noxff").await;
    let (noisy, quiet) = (fresh_client_address(), fresh_client_address());
    // 127.0.0.1 may already be throttled by an earlier run (the window is 15 minutes).
    throttle_address(http, &noisy, &username).await;
    // Both count as the gateway's own address: the forwarded one is not believed.
    let other = login_from(http, &quiet, &username, PASSWORD).await;
    assert_eq!(
        other.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        other.text
    );
}
