//! The two services, reached through one shared tonic channel each. The channels connect
//! lazily: the gateway starts while a service is down and answers 503 until it is up.

use std::time::Duration;

use anyhow::Context as _;
use pair_proto::{
    auth::v1::{
        auth_service_client::AuthServiceClient,
        introspection_service_client::IntrospectionServiceClient,
    },
    blog::v1::blog_service_client::BlogServiceClient,
};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::Config;

/// How long `GET /healthz` waits for a service's health answer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// Clients of both services; cloning one is cheap (the channel is shared).
#[derive(Clone)]
pub struct Upstream {
    pub auth: AuthServiceClient<Channel>,
    pub introspection: IntrospectionServiceClient<Channel>,
    pub blog: BlogServiceClient<Channel>,
    auth_health: HealthClient<Channel>,
    blog_health: HealthClient<Channel>,
}

fn channel(url: &str, variable: &str, timeout: Duration) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("{variable} `{url}` is not a URL"))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .connect_lazy())
}

impl Upstream {
    /// Clients of the services `config` names; nothing is connected yet.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let auth = channel(&config.auth_url, "GATEWAY_AUTH_URL", config.request_timeout)?;
        let blog = channel(&config.blog_url, "GATEWAY_BLOG_URL", config.request_timeout)?;
        Ok(Self {
            auth: AuthServiceClient::new(auth.clone()),
            introspection: IntrospectionServiceClient::new(auth.clone()),
            blog: BlogServiceClient::new(blog.clone()),
            auth_health: HealthClient::new(auth),
            blog_health: HealthClient::new(blog),
        })
    }

    /// The health of (auth-service, blog-service), asked concurrently.
    pub async fn health(&self) -> (&'static str, &'static str) {
        tokio::join!(
            health_of(self.auth_health.clone()),
            health_of(self.blog_health.clone())
        )
    }
}

async fn health_of(mut client: HealthClient<Channel>) -> &'static str {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(HEALTH_TIMEOUT);
    match tokio::time::timeout(HEALTH_TIMEOUT, client.check(request)).await {
        Ok(Ok(answer)) if answer.get_ref().status == ServingStatus::Serving as i32 => "SERVING",
        Ok(Ok(_)) => "NOT_SERVING",
        _ => "UNREACHABLE",
    }
}
