//! Overload limits (issue 19, part 5; docs/ARCHITECTURE.md, "Overload"): calls over the
//! in-flight limit are answered RESOURCE_EXHAUSTED at once while health still answers,
//! connections over the limit are closed, and HTTP/2 streams over the per-connection
//! limit wait in the client. Calls held open are gRPC reflection streams, which stay in
//! flight for as long as the client keeps them open.

mod support;

on_every_backend!(
    calls_over_the_in_flight_limit_are_shed_and_health_still_answers,
    connections_over_the_limit_are_closed_and_a_freed_place_is_taken_again,
    streams_over_the_per_connection_limit_wait_for_a_free_one,
    a_health_listener_of_its_own_answers_while_the_main_one_is_full,
);

use std::time::Duration;

use pair_proto::auth::v1 as pb;
use support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Code,
    transport::{Channel, Endpoint},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest,
};
use tonic_types::StatusExt as _;

const SERVICES: [&str; 3] = ["", "auth.v1.AuthService", "auth.v1.IntrospectionService"];

/// A call held open: a reflection stream that has answered once and waits for more.
struct Held {
    _requests: mpsc::Sender<ServerReflectionRequest>,
    _responses: tonic::Streaming<tonic_reflection::pb::v1::ServerReflectionResponse>,
}

async fn hold_a_call(channel: &Channel) -> Held {
    let (requests, rx) = mpsc::channel(1);
    requests
        .send(ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        })
        .await
        .expect("send");
    let mut responses = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(ReceiverStream::new(rx))
        .await
        .expect("a reflection stream")
        .into_inner();
    responses
        .message()
        .await
        .expect("a reflection answer")
        .expect("one answer");
    Held {
        _requests: requests,
        _responses: responses,
    }
}

async fn health(channel: &Channel, service: &str) -> Result<ServingStatus, tonic::Status> {
    let answer = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?
        .into_inner();
    Ok(answer.status())
}

async fn introspect(channel: &Channel) -> Result<pb::IntrospectResponse, tonic::Status> {
    pb::introspection_service_client::IntrospectionServiceClient::new(channel.clone())
        .introspect(pb::IntrospectRequest {
            token: "not a token".into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Waits (at most 5 s) until `check` passes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn calls_over_the_in_flight_limit_are_shed_and_health_still_answers(backend: Backend) {
    let mut config = auth_config_on(backend).await;
    config.max_calls_in_flight = 2;
    let server = start_auth(config).await;
    let channel = server.channel().await;
    introspect(&channel).await.expect("a call under the limit");
    eventually("every service is reported SERVING", || async {
        let mut serving = true;
        for service in SERVICES {
            serving &= matches!(health(&channel, service).await, Ok(ServingStatus::Serving));
        }
        serving
    })
    .await;

    let mut held = vec![hold_a_call(&channel).await, hold_a_call(&channel).await];
    for channel in [channel.clone(), server.channel().await] {
        let shed = introspect(&channel)
            .await
            .expect_err("a call over the limit");
        assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
        assert!(
            shed.get_details_retry_info()
                .and_then(|retry| retry.retry_delay)
                .is_some(),
            "{shed:?}"
        );
        let mut auth = pb::auth_service_client::AuthServiceClient::new(channel.clone());
        let shed = auth
            .login(pb::LoginRequest {
                username: "nobody".into(),
                password: PASSWORD.into(),
            })
            .await
            .expect_err("a login over the limit");
        assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
        // Health is never shed: a probe sees the server as it is.
        for service in SERVICES {
            assert_eq!(
                health(&channel, service).await.expect("health answers"),
                ServingStatus::Serving
            );
        }
    }

    held.pop();
    eventually("a call runs again once a place is free", || async {
        introspect(&channel).await.is_ok()
    })
    .await;
    let again = introspect(&channel).await.expect("under the limit again");
    assert!(!again.active);
    drop(held);
}

async fn connections_over_the_limit_are_closed_and_a_freed_place_is_taken_again(backend: Backend) {
    let mut config = auth_config_on(backend).await;
    config.max_connections = 2;
    let server = start_auth(config).await;
    let first = server.channel().await;
    let second = server.channel().await;
    for channel in [&first, &second] {
        assert_eq!(
            health(channel, "").await.expect("health"),
            ServingStatus::Serving
        );
    }

    let endpoint = Endpoint::from_shared(server.url()).expect("url");
    match endpoint.connect().await {
        Err(_) => {}
        Ok(third) => {
            // Closed as soon as accepted: most clients say UNAVAILABLE; tonic reports
            // the broken connection as a transport error, UNKNOWN or CANCELLED.
            let refused = health(&third, "").await.expect_err("a third connection");
            assert!(
                matches!(
                    refused.code(),
                    Code::Unavailable | Code::Unknown | Code::Cancelled
                ),
                "{refused:?}"
            );
        }
    }
    // The connections already held go on serving.
    assert_eq!(
        health(&second, "").await.expect("health"),
        ServingStatus::Serving
    );
    introspect(&second)
        .await
        .expect("a call on a held connection");

    drop(first);
    eventually("a new connection is served once one closed", || async {
        match endpoint.connect().await {
            Ok(channel) => health(&channel, "").await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
}

async fn streams_over_the_per_connection_limit_wait_for_a_free_one(backend: Backend) {
    let mut config = auth_config_on(backend).await;
    config.max_streams_per_connection = 2;
    let server = start_auth(config).await;
    let channel = server.channel().await;
    let mut held = vec![hold_a_call(&channel).await, hold_a_call(&channel).await];

    let third = tokio::spawn({
        let channel = channel.clone();
        async move { health(&channel, "").await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third stream ran on a connection limited to two"
    );
    // Another connection has streams of its own.
    let other = server.channel().await;
    assert_eq!(
        health(&other, "").await.expect("health"),
        ServingStatus::Serving
    );

    held.pop();
    let status = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("the waiting call runs once a stream is free")
        .expect("task")
        .expect("health");
    assert_eq!(status, ServingStatus::Serving);
}

/// With `AUTH_HEALTH_ADDR`, health has a listener (and thread) of its own: with every
/// connection place of the main listener taken, a probe there is refused, and one on
/// the health listener is answered, with the statuses of the main one. The health
/// listener serves nothing else.
async fn a_health_listener_of_its_own_answers_while_the_main_one_is_full(backend: Backend) {
    let mut config = auth_config_on(backend).await;
    config.max_connections = 2;
    config.health_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let app = auth_service::Application::build(config)
        .await
        .expect("build auth-service");
    let health_addr = app.health_addr().expect("a health listener");
    assert_ne!(health_addr, app.local_addr());
    let server = start_built_auth(app);
    let held = [server.channel().await, server.channel().await];
    for channel in &held {
        health(channel, "")
            .await
            .expect("health on a held connection");
    }
    let main = Endpoint::from_shared(server.url()).expect("url");
    if let Ok(third) = main.connect().await {
        health(&third, "")
            .await
            .expect_err("the main listener has no place left");
    }

    let probe = Endpoint::from_shared(format!("http://{health_addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect to the health listener");
    for service in SERVICES {
        assert_eq!(
            health(&probe, service).await.expect("health"),
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    let elsewhere = introspect(&probe)
        .await
        .expect_err("the health listener serves health only");
    assert_eq!(elsewhere.code(), Code::Unimplemented, "{elsewhere:?}");
    drop(held);
    server.stop().await;
}
