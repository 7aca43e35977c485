//! blog-service: blog posts over gRPC (docs/ARCHITECTURE.md), every write authenticated through
//! auth-service `Introspect`.
//!
//! `Application::build(config)` connects the post store and binds the listener;
//! `run_until_stopped(shutdown)` serves until the shutdown future resolves. `main.rs`
//! and the tests run exactly this.

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod introspect;
pub mod service;
pub mod store;

use std::{net::SocketAddr, path::Path, sync::Arc};

use pair_common::{
    metrics::Metrics,
    server::{MetricsSetup, PreparedServer, ServerSetup},
    sql::SqlPool,
};
use tonic::service::Routes;

pub use config::Config;

use crate::{
    grpc::{BlogGrpc, BlogServer},
    introspect::Introspector,
    service::BlogCore,
    store::{CacheReads, CachedPostStore, MIGRATIONS, PostStore, ReadCache, SqlPostStore},
};

/// The full names of the services this server offers, as health and reflection list them.
pub const SERVICE_NAMES: &[&str] = &["blog.v1.BlogService"];

/// Largest request accepted: 50,000 characters of content are up to 200 KB of UTF-8.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// A built blog-service: post store connected, listener bound, not yet serving.
pub type Application = pair_common::service::Application<BlogCore>;

impl pair_common::service::Service for BlogCore {
    type Config = Config;
    const NAME: &'static str = "blog-service";

    fn listen_addr(config: &Config) -> SocketAddr {
        config.listen_addr
    }

    fn health_addr(config: &Config) -> Option<SocketAddr> {
        config.health_addr
    }

    /// auth-service need not be up: it is first called on the first write.
    async fn build(config: Config) -> anyhow::Result<Application> {
        config.validate().map_err(anyhow::Error::msg)?;
        let metrics = config.metrics_addr.map(|_| Arc::new(Metrics::new()));
        let (posts, kept) = connect_posts(&config, metrics.as_deref()).await?;
        let auth = Introspector::new(&config.auth_url, config.auth_timeout)?;
        let core = BlogCore::new(posts, kept, auth);

        let probe_core = core.clone();
        let server = PreparedServer::build(ServerSetup {
            name: "blog-service",
            services: SERVICE_NAMES,
            listen_addr: config.listen_addr,
            listen_variable: "BLOG_LISTEN_ADDR",
            routes: Routes::new(BlogServer::new(
                BlogGrpc::new(core.clone()),
                MAX_MESSAGE_BYTES,
            )),
            probe: move || {
                let core = probe_core.clone();
                async move { core.ping().await }
            },
            cors_allowed_origins: config.cors_allowed_origins.clone(),
            limits: config.limits(),
            health_addr: config.health_addr.map(|addr| (addr, "BLOG_HEALTH_ADDR")),
            metrics: config
                .metrics_addr
                .zip(metrics)
                .map(|(addr, metrics)| MetricsSetup {
                    addr,
                    variable: "BLOG_METRICS_ADDR",
                    metrics,
                    refresh: None,
                }),
        })
        .await?;
        Ok(Application::new(server, core))
    }
}

/// The post store, and the answers kept of its reads if the post cache is on.
async fn connect_posts(
    config: &Config,
    metrics: Option<&Metrics>,
) -> anyhow::Result<(Arc<dyn PostStore>, Option<ReadCache>)> {
    let pool = SqlPool::connect(
        config.database_url.as_deref(),
        "blog.db",
        "BLOG_DATABASE_URL",
        config.store_timeout,
        &MIGRATIONS,
    )
    .await?;
    tracing::info!(backend = pool.backend(), "post database ready");
    let postgres = matches!(pool, SqlPool::Postgres(_));
    let sqlite_file = pool.sqlite_file().map(Path::to_owned);
    let store = SqlPostStore::new(pool);
    if !config.post_cache {
        return Ok((Arc::new(store), None));
    }
    let budget = usize::try_from(config.post_cache_mb)? << 20;
    let reads = metrics.map(CacheReads::registered).unwrap_or_default();
    let cached = match (config.database_url.as_deref(), sqlite_file) {
        (Some(url), _) if postgres => {
            CachedPostStore::postgres(store, url, config.store_timeout, budget, reads)
        }
        (_, Some(file)) => {
            CachedPostStore::sqlite(store, &file, config.store_timeout, budget, reads)
        }
        // An in-memory SQLite database: no file to watch, so nothing is kept.
        _ => return Ok((Arc::new(store), None)),
    };
    let kept = cached.reads();
    Ok((Arc::new(cached), Some(kept)))
}
