//! What auth-service, blog-service and the HTTP gateway share, one module per subject;
//! each is usable without the others (none imports another in a circle).
//!
//! - [`status`]: field violations as a `google.rpc.BadRequest`, and the bearer token of a
//!   call: the words a domain and an adapter use to say what was wrong with a request.
//! - [`server`]: serving a tonic router: health, reflection, gRPC-Web and CORS, the
//!   per-call layers, graceful shutdown, the metrics endpoint beside it.
//! - [`net`]: binding a listener (errors name the setting) and CORS origins.
//! - [`observe`]: the per-call layer: W3C trace context in every log line and outgoing
//!   call, and the call's Prometheus metrics.
//! - [`oversize`]: the layer that answers RESOURCE_EXHAUSTED to a request over the size
//!   limit, where tonic says OUT_OF_RANGE.
//! - [`metrics`]: the Prometheus registry, the go-grpc-prometheus names, `GET /metrics`.
//! - [`health`]: `grpc.health.v1` following the stores, and the `healthcheck` command.
//! - [`sql`]: the SQL backends (PostgreSQL, SQLite), our pool, `with_pool!`.
//! - [`service`]: the `main` of a service binary; [`runtime`]: its Tokio runtime;
//!   [`shutdown`]: the signal that stops it; [`telemetry`]: its logs.
//! - [`cache`]: the change-driven cache both services keep answers in (live flag,
//!   generation tickets, keepalive and reconnect, a budget), over a change source each.
//! - [`duration`]: durations in settings (`2s`, `15m`); [`time`]: times at the
//!   precision the stores keep.

pub mod cache;
pub mod duration;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod observe;
pub mod oversize;
pub mod runtime;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod sql;
pub mod status;
pub mod telemetry;
pub mod time;
