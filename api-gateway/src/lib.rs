//! api-gateway: the homework's REST API (README: "The REST API by example") over auth-service and
//! blog-service. It owns no data: each route is one gRPC call.
//!
//! `Application::build(config)` binds the listener; `run_until_stopped(shutdown)` serves
//! until the shutdown future resolves. `main.rs`, the pair's binary and the tests run
//! exactly this.

pub mod config;
pub mod error;
pub mod extract;
pub mod model;
pub mod openapi;
pub mod routes;
pub mod upstream;

use std::{future::Future, net::SocketAddr, time::Duration};

use axum::{Router, body::Bytes, serve::ListenerExt as _};
use http::{HeaderName, Method};
use tokio::net::TcpListener;
use tower_http::cors::{AllowHeaders, CorsLayer, ExposeHeaders};

pub use config::Config;

use crate::upstream::Upstream;

/// What every handler reads.
#[derive(Clone)]
pub struct AppState {
    pub upstream: Upstream,
    /// The OpenAPI document, written once.
    pub openapi: Bytes,
}

/// A built gateway: listener bound, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    /// Validates `config` and binds the listener (port 0 picks a free port). The services
    /// need not be up: they are connected on the first call.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let state = AppState {
            upstream: Upstream::new(&config)?,
            openapi: Bytes::from(openapi::document()?),
        };
        let router = routes::router(state).layer(cors(&config.cors_allowed_origins)?);
        let listener = pair_common::net::bind(config.listen_addr, "GATEWAY_LISTEN_ADDR").await?;
        Ok(Self { listener, router })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "api-gateway listening");
        // TCP_NODELAY: small JSON answers are not held back for the client's ACK.
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(
            listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await?;
        Ok(())
    }
}

/// The CORS policy for browser callers.
fn cors(origins: &[String]) -> anyhow::Result<CorsLayer> {
    let allow_origin = pair_common::net::allowed_origins(origins)?;
    Ok(CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers(AllowHeaders::list(
            ["authorization", "content-type", "traceparent"].map(HeaderName::from_static),
        ))
        .expose_headers(ExposeHeaders::list(
            ["www-authenticate", "retry-after"].map(HeaderName::from_static),
        ))
        .max_age(Duration::from_secs(86_400)))
}
