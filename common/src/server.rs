//! Serving a tonic router the same way in both services: health, reflection, gRPC-Web
//! and its CORS policy, the per-call layers, graceful shutdown and the metrics endpoint.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use http::HeaderName;
use tower_http::cors::{AllowHeaders, CorsLayer, ExposeHeaders};

use tokio::net::TcpListener;
use tonic::{
    service::Routes,
    transport::{Server, server::TcpIncoming},
};

use tokio::task::JoinHandle;

use crate::{
    limits::{ConnectionLimit, InFlightLayer, Limits},
    metrics::{GrpcMetrics, Metrics, MetricsServer, Refresh},
    net::{allowed_origins, bind},
    observe::CallLayer,
    oversize::OversizeLayer,
};

/// Adds gRPC reflection (v1 and v1alpha, both in use by clients) advertising exactly
/// `services`, the health service and reflection itself.
pub fn with_reflection(routes: Routes, services: &[&str]) -> anyhow::Result<Routes> {
    let names = services
        .iter()
        .copied()
        .chain(["grpc.health.v1.Health"])
        .chain([
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]);
    let configure = || {
        names.clone().fold(
            // Both reflection versions are listed by both servers, so each must be able
            // to describe both.
            tonic_reflection::server::Builder::configure()
                .include_reflection_service(false)
                .register_encoded_file_descriptor_set(pair_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                ),
            |builder, name| builder.with_service_name(name),
        )
    };
    Ok(routes
        .add_service(configure().build_v1()?)
        .add_service(configure().build_v1alpha()?))
}

/// How a server is exposed beyond plain gRPC.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Browser origins allowed to call through gRPC-Web (`*` for any); empty means no
    /// cross-origin access.
    pub cors_allowed_origins: Vec<String>,
    /// Per-call Prometheus metrics, when on.
    pub metrics: Option<Arc<GrpcMetrics>>,
    /// Connections, streams and calls in flight (docs/ARCHITECTURE.md, "Overload").
    pub limits: Limits,
}

/// The CORS policy for gRPC-Web callers in browsers.
fn cors(origins: &[String]) -> anyhow::Result<CorsLayer> {
    let allow_origin = allowed_origins(origins)?;
    Ok(CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([http::Method::POST])
        .allow_headers(AllowHeaders::list(
            [
                "authorization",
                "content-type",
                "grpc-timeout",
                "traceparent",
                "x-grpc-web",
                "x-user-agent",
            ]
            .map(HeaderName::from_static),
        ))
        .expose_headers(ExposeHeaders::list(
            ["grpc-status", "grpc-message", "grpc-status-details-bin"].map(HeaderName::from_static),
        ))
        .max_age(Duration::from_secs(86_400)))
}

/// Checks CORS origins at start, so a bad one is a configuration error.
pub fn check_cors_origins(origins: &[String]) -> Result<(), String> {
    cors(origins).map(drop).map_err(|e| e.to_string())
}

/// Serves `routes` on `listener` (gRPC over HTTP/2, and gRPC-Web over HTTP/1.1 or 2)
/// until `shutdown` resolves, then stops accepting connections and lets the calls in
/// flight finish.
pub async fn serve(
    routes: Routes,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    use tokio_stream::StreamExt as _;
    let limits = options.limits;
    let connections = ConnectionLimit::new(limits.max_connections);
    // TCP_NODELAY: a response's trailers are a second small write, which Nagle would
    // hold until the client's delayed ACK (~40 ms per call).
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .filter_map(move |accepted| match accepted {
            Ok(stream) => connections.admit(stream).map(Ok),
            Err(error) => Some(Err(error)),
        });
    Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(limits.max_streams_per_connection)
        .layer(cors(&options.cors_allowed_origins)?)
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(CallLayer::new(options.metrics))
        .layer(InFlightLayer::new(limits.max_calls_in_flight))
        .layer(OversizeLayer)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

/// Everything a service tells [`PreparedServer::build`].
pub struct ServerSetup<P> {
    /// The binary's name, for the log.
    pub name: &'static str,
    /// Full names of the services in `routes`, for health and reflection.
    pub services: &'static [&'static str],
    pub listen_addr: SocketAddr,
    /// The setting that names `listen_addr`, for errors.
    pub listen_variable: &'static str,
    /// The service's own gRPC services; health and reflection are added here.
    pub routes: Routes,
    /// Succeeds while the service's stores answer (drives the health status).
    pub probe: P,
    pub cors_allowed_origins: Vec<String>,
    pub metrics: Option<MetricsSetup>,
    pub limits: Limits,
    /// A listener of its own for `grpc.health.v1` alone, and the setting that names it.
    pub health_addr: Option<(SocketAddr, &'static str)>,
}

/// What the health listener may hold: enough for a few probes and orchestrators, never
/// enough for a flood to matter.
const HEALTH_LIMITS: Limits = Limits {
    max_connections: 64,
    max_streams_per_connection: 8,
    max_calls_in_flight: 64,
};

/// `grpc.health.v1` on a listener of its own, served by a thread of its own (a
/// single-threaded runtime), so that a probe is answered however busy the main listener
/// and its runtime are: a flood can take every connection place and keep every worker
/// thread busy there, and the operating system still gives this thread its turn. The
/// statuses are the same ones (one reporter, two servers of it).
struct HealthListener {
    listener: std::net::TcpListener,
    routes: Routes,
}

impl HealthListener {
    /// Serves on its own thread until `stop` fires.
    fn spawn(
        self,
        name: &'static str,
        stop: tokio::sync::oneshot::Receiver<()>,
    ) -> anyhow::Result<std::thread::JoinHandle<()>> {
        let Self { listener, routes } = self;
        std::thread::Builder::new()
            .name(format!("{name}-health"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!("health listener: no runtime: {error}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let served = match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let options = ServeOptions {
                                limits: HEALTH_LIMITS,
                                ..ServeOptions::default()
                            };
                            serve(routes, listener, options, async {
                                let _ = stop.await;
                            })
                            .await
                        }
                        Err(error) => Err(error.into()),
                    };
                    if let Err(error) = served {
                        tracing::error!("health listener stopped: {error:#}");
                    }
                });
            })
            .map_err(|error| anyhow::anyhow!("cannot start the health listener's thread: {error}"))
    }
}

/// Where and what the metrics endpoint serves.
pub struct MetricsSetup {
    pub addr: SocketAddr,
    pub variable: &'static str,
    pub metrics: Arc<Metrics>,
    pub refresh: Option<Refresh>,
}

/// A server ready to serve: listener bound, routes built, background tasks (the health
/// monitor) running, the metrics endpoint bound if configured.
pub struct PreparedServer {
    name: &'static str,
    listener: TcpListener,
    routes: Routes,
    options: ServeOptions,
    metrics: Option<MetricsServer>,
    health: Option<HealthListener>,
    background: Vec<JoinHandle<()>>,
}

impl PreparedServer {
    /// Adds health and reflection to the routes, binds the listeners, and starts the
    /// health monitor.
    pub async fn build<P, F>(setup: ServerSetup<P>) -> anyhow::Result<Self>
    where
        P: Fn() -> F + Send + 'static,
        F: Future<Output = Result<(), String>> + Send,
    {
        let (reporter, health) = tonic_health::server::health_reporter();
        let health_listener = match setup.health_addr {
            Some((addr, variable)) => Some(HealthListener {
                listener: bind(addr, variable).await?.into_std()?,
                routes: Routes::new(health.clone()),
            }),
            None => None,
        };
        let routes = with_reflection(setup.routes.add_service(health), setup.services)?;
        let listener = bind(setup.listen_addr, setup.listen_variable).await?;
        let (metrics, grpc_metrics) = match setup.metrics {
            Some(m) => (
                Some(MetricsServer::bind(m.addr, m.variable, m.metrics.clone(), m.refresh).await?),
                Some(m.metrics.grpc()),
            ),
            None => (None, None),
        };
        let monitor = crate::health::spawn_monitor(reporter, setup.services, setup.probe);
        Ok(Self {
            name: setup.name,
            listener,
            routes,
            options: ServeOptions {
                cors_allowed_origins: setup.cors_allowed_origins,
                metrics: grpc_metrics,
                limits: setup.limits,
            },
            metrics,
            health: health_listener,
            background: vec![monitor],
        })
    }

    /// Where `grpc.health.v1` is served on a listener of its own, if it is.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health
            .as_ref()
            .and_then(|health| health.listener.local_addr().ok())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Where `GET /metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(MetricsServer::local_addr)
    }

    /// Serves until `shutdown` resolves and the calls in flight have finished; then
    /// stops the background tasks and the metrics endpoint.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), metrics = ?self.metrics_addr(), health = ?self.health_addr(), "{} listening", self.name);
        let (stop_health, health_stopped) = tokio::sync::oneshot::channel();
        let health = match self.health {
            Some(health) => Some(health.spawn(self.name, health_stopped)?),
            None => None,
        };
        let metrics = self.metrics.map(|server| {
            tokio::spawn(async move {
                if let Err(error) = server.serve(std::future::pending()).await {
                    tracing::error!("metrics endpoint stopped: {error:#}");
                }
            })
        });
        let served = serve(self.routes, self.listener, self.options, shutdown).await;
        for task in self.background.iter().chain(metrics.as_ref()) {
            task.abort();
        }
        let _ = stop_health.send(());
        if let Some(thread) = health {
            // It stops at once (its calls are health checks); joined off the runtime.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        served
    }
}
