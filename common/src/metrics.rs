//! Prometheus metrics on their own HTTP port (off unless `*_METRICS_ADDR` is set), named
//! as go-grpc-prometheus names them, so existing dashboards work:
//! `grpc_server_started_total`, `grpc_server_handled_total` and
//! `grpc_server_handling_seconds`, labelled by `grpc_type`, `grpc_service`,
//! `grpc_method` (and `grpc_code` for handled). Services add their own metrics to the
//! same registry.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

/// Latency buckets in seconds: go-grpc-prometheus' defaults, with finer ones below 5 ms
/// where token checks live.
const BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The per-call gRPC metrics of one server.
#[derive(Debug)]
pub struct GrpcMetrics {
    started: Family<MethodLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    handling: Family<MethodLabels, Histogram, fn() -> Histogram>,
}

/// The names gRPC gives its status codes, as go-grpc-prometheus reports them.
fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

/// `/package.Service/Method` split into service and method.
fn split_path(path: &str) -> (String, String) {
    let trimmed = path.trim_start_matches('/');
    match trimmed.rsplit_once('/') {
        Some((service, method)) => (service.to_owned(), method.to_owned()),
        None => (trimmed.to_owned(), String::new()),
    }
}

/// Server reflection and health watches are streams; everything else we serve is unary.
fn grpc_type(service: &str, method: &str) -> &'static str {
    if service.starts_with("grpc.reflection.") || method == "Watch" {
        "bidi_stream"
    } else {
        "unary"
    }
}

impl GrpcMetrics {
    fn labels(path: &str) -> MethodLabels {
        let (grpc_service, grpc_method) = split_path(path);
        MethodLabels {
            grpc_type: grpc_type(&grpc_service, &grpc_method),
            grpc_service,
            grpc_method,
        }
    }

    pub fn started(&self, path: &str) {
        self.started.get_or_create(&Self::labels(path)).inc();
    }

    pub fn handled(&self, path: &str, code: i32, elapsed: Duration) {
        let labels = Self::labels(path);
        self.handling
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.handled
            .get_or_create(&HandledLabels {
                grpc_type: labels.grpc_type,
                grpc_service: labels.grpc_service,
                grpc_method: labels.grpc_method,
                grpc_code: code_name(code),
            })
            .inc();
    }
}

/// Updates scrape-time values (e.g. a gauge read from a store) before each scrape.
pub type Refresh = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A registry with the gRPC metrics in it; services register theirs with `register`.
pub struct Metrics {
    registry: Mutex<Registry>,
    grpc: Arc<GrpcMetrics>,
}

impl Metrics {
    pub fn new() -> Self {
        let grpc = Arc::new(GrpcMetrics {
            started: Family::default(),
            handled: Family::default(),
            handling: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        });
        let mut registry = Registry::default();
        registry.register(
            "grpc_server_started",
            "Total number of RPCs started on the server.",
            grpc.started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            grpc.handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            grpc.handling.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            grpc,
        }
    }

    pub fn grpc(&self) -> Arc<GrpcMetrics> {
        self.grpc.clone()
    }

    /// Adds a service metric to the registry.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .register(name, help, metric);
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A bound metrics endpoint, not yet serving.
pub struct MetricsServer {
    listener: TcpListener,
    metrics: Arc<Metrics>,
    refresh: Option<Refresh>,
}

impl MetricsServer {
    /// Binds `addr` (saying which variable named it if that fails).
    pub async fn bind(
        addr: SocketAddr,
        variable: &str,
        metrics: Arc<Metrics>,
        refresh: Option<Refresh>,
    ) -> anyhow::Result<Self> {
        let listener = crate::net::bind(addr, variable).await?;
        Ok(Self {
            listener,
            metrics,
            refresh,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves `GET /metrics` until `shutdown` resolves.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            metrics,
            refresh,
        } = self;
        let scrape = move || {
            let metrics = metrics.clone();
            let refresh = refresh.clone();
            async move {
                if let Some(refresh) = refresh {
                    refresh().await;
                }
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        };
        let app = axum::Router::new().route("/metrics", axum::routing::get(scrape));
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_by_service_method_and_code() {
        let metrics = Metrics::new();
        let grpc = metrics.grpc();
        grpc.started("/auth.v1.IntrospectionService/Introspect");
        grpc.handled(
            "/auth.v1.IntrospectionService/Introspect",
            0,
            Duration::from_micros(300),
        );
        grpc.handled("/auth.v1.AuthService/Login", 16, Duration::from_millis(30));
        let text = metrics.encode();
        assert!(text.contains(
            r#"grpc_server_handled_total{grpc_type="unary",grpc_service="auth.v1.IntrospectionService",grpc_method="Introspect",grpc_code="OK"} 1"#
        ), "{text}");
        assert!(
            text.contains(r#"grpc_method="Login",grpc_code="Unauthenticated"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("grpc_server_handling_seconds_bucket"),
            "{text}"
        );
        assert!(text.contains(r#"grpc_server_started_total{grpc_type="unary",grpc_service="auth.v1.IntrospectionService",grpc_method="Introspect"} 1"#), "{text}");
    }
}
