//! What auth-service and blog-service share: configuration parsing, the way a server is
//! served (reflection, health, graceful shutdown), the store health monitor, and the
//! one way a validation failure becomes a `google.rpc.BadRequest`.

pub mod duration;
pub mod grpc;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod observe;
pub mod runtime;
pub mod service;
pub mod shutdown;
pub mod sql;
pub mod sqlite_read;
pub mod telemetry;
pub mod time;
