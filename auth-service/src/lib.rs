//! auth-service: users, sessions and JWT token pairs over gRPC (docs/ARCHITECTURE.md).
//!
//! `Application::build(config)` connects the stores and binds the listener;
//! `run_until_stopped(shutdown)` serves until the shutdown future resolves. `main.rs`
//! and the tests run exactly this.

pub mod admission;
pub mod client;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod keys;
pub mod metrics;
pub mod password;
pub mod service;
pub mod store;
pub mod tokens;

use std::{net::SocketAddr, sync::Arc};

use pair_common::{
    metrics::Metrics,
    server::{MetricsSetup, PreparedServer, ServerSetup},
    sql::SqlPool,
};
use pair_proto::auth::v1::{
    auth_service_server::AuthServiceServer,
    introspection_service_server::IntrospectionServiceServer,
};
use tonic::service::Routes;

pub use config::Config;

use crate::{
    admission::Admission,
    client::TrustedProxies,
    grpc::AuthGrpc,
    keys::KeySet,
    metrics::AuthMetrics,
    password::PasswordHasher,
    service::{AuthCore, LoginThrottle},
    store::{
        MIGRATIONS, MemoryTokenStore, RedisOptions, RedisTarget, RedisTokenStore, SqlUserStore,
        TokenStore, UserStore,
    },
    tokens::TokenCodec,
};

/// The full names of the services this server offers, as health and reflection list them.
pub const SERVICE_NAMES: &[&str] = &["auth.v1.AuthService", "auth.v1.IntrospectionService"];

/// Largest request accepted: Register with a 1024-character password is far below it.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A built auth-service: stores connected, listener bound, not yet serving.
pub type Application = pair_common::service::Application<AuthCore>;

impl pair_common::service::Service for AuthCore {
    type Config = Config;
    const NAME: &'static str = "auth-service";

    fn listen_addr(config: &Config) -> SocketAddr {
        config.listen_addr
    }

    fn health_addr(config: &Config) -> Option<SocketAddr> {
        config.health_addr
    }

    async fn build(config: Config) -> anyhow::Result<Application> {
        config.validate().map_err(anyhow::Error::msg)?;
        let keys = signing_keys(&config).await?;
        let codec = TokenCodec::new(
            keys,
            &config.jwt_issuer,
            config.access_token_ttl,
            config.refresh_token_ttl,
        );
        let users = connect_users(&config).await?;
        let tokens = connect_tokens(&config).await?;
        let hasher = PasswordHasher::new(config.hash_permits(), config.hash_queue)?;
        let throttle = LoginThrottle {
            enabled: config.login_throttle,
            free_per_username: config.login_free_failures,
            free_per_address: config.login_address_free_failures,
            window: config.login_failure_window,
            max_delay: config.login_max_delay,
        };
        let admission = Admission::new(config.admission_limits());
        let core = AuthCore::new(
            users,
            tokens.clone(),
            hasher,
            codec,
            throttle,
            admission,
            config.refresh_retry_window,
        );

        let metrics = config.metrics_addr.map(|_| Arc::new(Metrics::new()));
        // Only the in-process store counts its sessions (without a key shared by all).
        let in_process_tokens = config.redis_url.is_none() && config.cluster_urls().is_empty();
        let auth_metrics = metrics
            .as_deref()
            .map(|metrics| AuthMetrics::register(metrics, in_process_tokens));
        let proxies =
            TrustedProxies::new(config.trusted_proxy_ranges().map_err(anyhow::Error::msg)?);
        let grpc = AuthGrpc::new(core.clone(), auth_metrics.clone(), proxies);
        let probe_core = core.clone();
        let server = PreparedServer::build(ServerSetup {
            name: "auth-service",
            services: SERVICE_NAMES,
            listen_addr: config.listen_addr,
            listen_variable: "AUTH_LISTEN_ADDR",
            routes: Routes::new(
                AuthServiceServer::new(grpc.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(
                IntrospectionServiceServer::new(grpc).max_decoding_message_size(MAX_MESSAGE_BYTES),
            ),
            probe: move || {
                let core = probe_core.clone();
                async move { core.ping().await }
            },
            cors_allowed_origins: config.cors_allowed_origins.clone(),
            limits: config.limits(),
            health_addr: config.health_addr.map(|addr| (addr, "AUTH_HEALTH_ADDR")),
            metrics: config
                .metrics_addr
                .zip(metrics)
                .map(|(addr, metrics)| MetricsSetup {
                    addr,
                    variable: "AUTH_METRICS_ADDR",
                    metrics,
                    refresh: auth_metrics.map(|m| m.refresh_from(tokens)),
                }),
        })
        .await?;
        Ok(Application::new(server, core))
    }
}

async fn connect_users(config: &Config) -> anyhow::Result<Arc<dyn UserStore>> {
    let pool = SqlPool::connect(
        config.database_url.as_deref(),
        "auth.db",
        "AUTH_DATABASE_URL",
        config.store_timeout,
        &MIGRATIONS,
    )
    .await?;
    tracing::info!(backend = pool.backend(), "user database ready");
    Ok(Arc::new(SqlUserStore::new(pool)))
}

async fn connect_tokens(config: &Config) -> anyhow::Result<Arc<dyn TokenStore>> {
    let options = RedisOptions {
        refresh_ttl: config.refresh_token_ttl,
        timeout: config.store_timeout,
        cache_answers: config.introspect_cache,
        min_replicas: config.redis_min_replicas,
    };
    let cluster_urls = config.cluster_urls();
    let target = match config.redis_url.as_deref() {
        _ if !cluster_urls.is_empty() => RedisTarget::Cluster {
            urls: &cluster_urls,
        },
        Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
            RedisTarget::Node {
                url,
                refresh_db: config.refresh_db(),
                blocklist_db: config.blocklist_db(),
            }
        }
        Some(url) => anyhow::bail!(
            "AUTH_REDIS_URL has an unsupported scheme `{}`: use redis:// or rediss://, or leave it unset",
            url.split(':').next().unwrap_or_default()
        ),
        None => {
            tracing::warn!(
                "AUTH_REDIS_URL is unset: tokens are kept in process memory, so every session ends when auth-service stops"
            );
            return Ok(Arc::new(MemoryTokenStore::new(config.refresh_token_ttl)));
        }
    };
    let store = RedisTokenStore::connect(target, options).await?;
    tracing::info!(
        introspect_cache = config.introspect_cache,
        cluster = !cluster_urls.is_empty(),
        min_replicas = store.min_replicas(),
        "token store: Redis"
    );
    Ok(Arc::new(store))
}

/// The keys of AUTH_JWT_PRIVATE_KEYS and AUTH_JWT_SECRET, or a random secret if neither
/// is set. Key files are read off the async runtime.
async fn signing_keys(config: &Config) -> anyhow::Result<KeySet> {
    let secrets: Vec<Vec<u8>> = config
        .jwt_secrets()
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let files = config.jwt_key_files();
    if secrets.is_empty() && files.is_empty() {
        tracing::warn!(
            "AUTH_JWT_SECRET and AUTH_JWT_PRIVATE_KEYS are unset: using a random secret, so every token dies with this process"
        );
        return Ok(KeySet::from_secret(&random_secret()?));
    }
    let keys = tokio::task::spawn_blocking(move || {
        let secrets: Vec<&[u8]> = secrets.iter().map(Vec::as_slice).collect();
        KeySet::load(&secrets, &files)
    })
    .await?
    .map_err(anyhow::Error::msg)?;
    tracing::info!(
        algorithm = ?keys.signer().algorithm(),
        kid = keys.signer().kid(),
        "signing key ready"
    );
    Ok(keys)
}

fn random_secret() -> anyhow::Result<Vec<u8>> {
    let mut secret = vec![0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| anyhow::anyhow!("no operating system randomness for the JWT secret: {e}"))?;
    Ok(secret)
}
