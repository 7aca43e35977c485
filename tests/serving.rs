//! What every auth-service offers besides its API: health of the server and of each
//! service, reflection (v1 and v1alpha) listing every service, and a message size limit
//! that refuses an oversized request before it changes anything.

mod support;

on_every_backend!(
    health_and_reflection_list_every_service,
    an_oversized_request_is_refused_and_changes_nothing,
);

use std::time::Duration;

use pair_proto::auth::v1::{self as pb};
use support::*;
use tonic::Code;

/// The services that reflection `$version` (a module of `tonic_reflection::pb`) lists:
/// v1 and v1alpha are the same protocol in two packages, so one body serves both.
macro_rules! listed_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect(concat!("reflection ", stringify!($version)))
            .into_inner();
        match answers
            .message()
            .await
            .expect("answer")
            .and_then(|a| a.message_response)
        {
            Some(MessageResponse::ListServicesResponse(list)) => list
                .service
                .into_iter()
                .map(|s| s.name)
                .collect::<Vec<String>>(),
            other => panic!("reflection {} answered {other:?}", stringify!($version)),
        }
    }};
}

async fn health_and_reflection_list_every_service(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    for service in ["", "auth.v1.AuthService", "auth.v1.IntrospectionService"] {
        let mut status = 0;
        for _ in 0..50 {
            status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .map(|r| r.into_inner().status)
                .unwrap_or(0);
            if status == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, 1, "{service} is SERVING");
    }
    let channel = server.channel().await;
    let expected = [
        "auth.v1.AuthService",
        "auth.v1.IntrospectionService",
        "grpc.health.v1.Health",
    ];
    for (version, listed) in [
        ("v1", listed_services!(v1, channel.clone())),
        ("v1alpha", listed_services!(v1alpha, channel.clone())),
    ] {
        for service in expected {
            assert!(
                listed.iter().any(|s| s == service),
                "reflection {version} lists {listed:?}, not {service}"
            );
        }
    }
}

async fn an_oversized_request_is_refused_and_changes_nothing(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let name = unique_name("big");
    let status = client
        .register(pb::RegisterRequest {
            username: name.clone(),
            email: format!("{name}@example.com"),
            password: "p".repeat(200_000),
        })
        .await
        .expect_err("too big");
    assert!(status.code() == Code::ResourceExhausted, "{status:?}");
    // Had the refused request made the user, the name and email would now be taken.
    client
        .register(pb::RegisterRequest {
            username: name.clone(),
            email: format!("{name}@example.com"),
            password: PASSWORD.into(),
        })
        .await
        .expect("the name and email are still free");
}
