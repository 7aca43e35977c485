//! auth-service configuration: every setting is an environment variable and a flag
//! (`auth-service --help`), validated before anything starts.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use pair_common::duration::{parse_duration, parse_duration_or_zero};

/// Users, sessions and JWT token pairs over gRPC.
#[derive(Debug, Clone, Parser)]
#[command(name = "auth-service", version, about)]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(
        long,
        env = "AUTH_LISTEN_ADDR",
        value_name = "AUTH_LISTEN_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub listen_addr: SocketAddr,

    /// User database: `postgres://…`, or `sqlite://…`; unset means an embedded SQLite
    /// file under ./data/.
    #[arg(
        long,
        env = "AUTH_DATABASE_URL",
        value_name = "AUTH_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Token store: `redis://…`; unset means an in-process token store.
    #[arg(
        long,
        env = "AUTH_REDIS_URL",
        value_name = "AUTH_REDIS_URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,

    /// Redis logical database holding the active refresh tokens of each user.
    #[arg(
        long,
        env = "AUTH_REDIS_REFRESH_DB",
        value_name = "AUTH_REDIS_REFRESH_DB",
        default_value_t = 1
    )]
    pub redis_refresh_db: u8,

    /// Redis logical database holding the blocked access tokens.
    #[arg(
        long,
        env = "AUTH_REDIS_BLOCKLIST_DB",
        value_name = "AUTH_REDIS_BLOCKLIST_DB",
        default_value_t = 2
    )]
    pub redis_blocklist_db: u8,

    /// Keep Introspect answers of live tokens in process, dropped the moment Redis
    /// reports a change to their keys (`CLIENT TRACKING`). Only with Redis.
    #[arg(long, env = "AUTH_INTROSPECT_CACHE", value_name = "AUTH_INTROSPECT_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub introspect_cache: bool,

    /// HS256 secrets, comma-separated, each at least 32 bytes: the first signs (unless
    /// AUTH_JWT_PRIVATE_KEYS is set), every one verifies. Unset, and no private keys,
    /// means a random secret per start (every token dies with the process).
    #[arg(
        long,
        env = "AUTH_JWT_SECRET",
        value_name = "AUTH_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,

    /// PEM files of Ed25519 private keys (PKCS#8), comma-separated: when set, the first
    /// signs (EdDSA) and every key verifies, with the secrets of AUTH_JWT_SECRET.
    #[arg(
        long,
        env = "AUTH_JWT_PRIVATE_KEYS",
        value_name = "AUTH_JWT_PRIVATE_KEYS"
    )]
    pub jwt_private_keys: Option<String>,

    /// The `iss` claim of issued tokens, checked on every token presented.
    #[arg(
        long,
        env = "AUTH_JWT_ISSUER",
        value_name = "AUTH_JWT_ISSUER",
        default_value = "auth-service"
    )]
    pub jwt_issuer: String,

    /// Lifetime of access tokens.
    #[arg(long, env = "AUTH_ACCESS_TOKEN_TTL", value_name = "AUTH_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = parse_duration)]
    pub access_token_ttl: Duration,

    /// Lifetime of refresh tokens; a session ends after this long without a refresh.
    #[arg(long, env = "AUTH_REFRESH_TOKEN_TTL", value_name = "AUTH_REFRESH_TOKEN_TTL", default_value = "30d", value_parser = parse_duration)]
    pub refresh_token_ttl: Duration,

    /// How long after a rotation the old refresh token, presented again, answers the
    /// same new pair instead of revoking the session (retries, several tabs); `0s`
    /// makes a refresh token strictly single-use.
    #[arg(long, env = "AUTH_REFRESH_RETRY_WINDOW", value_name = "AUTH_REFRESH_RETRY_WINDOW", default_value = "10s", value_parser = parse_duration_or_zero)]
    pub refresh_retry_window: Duration,

    /// Password hashes computed at once; unset means max(1, cores - 1), leaving a core
    /// for token checks during a flood of logins.
    #[arg(
        long,
        env = "AUTH_HASH_CONCURRENCY",
        value_name = "AUTH_HASH_CONCURRENCY"
    )]
    pub hash_concurrency: Option<usize>,

    /// Calls that may wait for a hashing slot; past that they get RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "AUTH_HASH_QUEUE",
        value_name = "AUTH_HASH_QUEUE",
        default_value_t = 64
    )]
    pub hash_queue: usize,

    /// Throttle logins after repeated failures (per username and per client address).
    #[arg(long, env = "AUTH_LOGIN_THROTTLE", value_name = "AUTH_LOGIN_THROTTLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub login_throttle: bool,

    /// Failed logins of one username allowed per window before each further attempt
    /// must wait (1 s, then doubling).
    #[arg(
        long,
        env = "AUTH_LOGIN_FREE_FAILURES",
        value_name = "AUTH_LOGIN_FREE_FAILURES",
        default_value_t = 10
    )]
    pub login_free_failures: u32,

    /// Failed logins from one client address allowed per window before that address
    /// must wait; bounds how many users one address can slow down.
    #[arg(
        long,
        env = "AUTH_LOGIN_ADDRESS_FREE_FAILURES",
        value_name = "AUTH_LOGIN_ADDRESS_FREE_FAILURES",
        default_value_t = 100
    )]
    pub login_address_free_failures: u32,

    /// How long failed logins are remembered.
    #[arg(long, env = "AUTH_LOGIN_FAILURE_WINDOW", value_name = "AUTH_LOGIN_FAILURE_WINDOW", default_value = "15m", value_parser = parse_duration)]
    pub login_failure_window: Duration,

    /// The longest wait a throttled login is given.
    #[arg(long, env = "AUTH_LOGIN_MAX_DELAY", value_name = "AUTH_LOGIN_MAX_DELAY", default_value = "5m", value_parser = parse_duration)]
    pub login_max_delay: Duration,

    /// Deadline for a store (database, Redis) to answer one operation.
    #[arg(long, env = "AUTH_STORE_TIMEOUT", value_name = "AUTH_STORE_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub store_timeout: Duration,

    /// Address of the Prometheus metrics endpoint (`GET /metrics`); unset means off.
    #[arg(long, env = "AUTH_METRICS_ADDR", value_name = "AUTH_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Browser origins allowed to call through gRPC-Web, comma-separated (`*` for any);
    /// unset means no cross-origin access.
    #[arg(
        long,
        env = "AUTH_CORS_ALLOWED_ORIGINS",
        value_name = "AUTH_CORS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_allowed_origins: Vec<String>,
}

impl Config {
    /// Checks what clap cannot: relations between settings. (The signing keys are
    /// checked as they are loaded: `keys::KeySet::load`.)
    pub fn validate(&self) -> Result<(), String> {
        pair_common::grpc::check_cors_origins(&self.cors_allowed_origins)
            .map_err(|why| format!("AUTH_CORS_ALLOWED_ORIGINS: {why}"))?;
        if self.refresh_retry_window >= self.refresh_token_ttl {
            return Err(
                "AUTH_REFRESH_RETRY_WINDOW must be shorter than AUTH_REFRESH_TOKEN_TTL".into(),
            );
        }
        if self.access_token_ttl >= self.refresh_token_ttl {
            return Err("AUTH_ACCESS_TOKEN_TTL must be shorter than AUTH_REFRESH_TOKEN_TTL".into());
        }
        if self.redis_refresh_db == self.redis_blocklist_db {
            return Err(
                "AUTH_REDIS_REFRESH_DB and AUTH_REDIS_BLOCKLIST_DB must name different databases"
                    .into(),
            );
        }
        if self.hash_queue == 0 {
            return Err("AUTH_HASH_QUEUE must be at least 1".into());
        }
        if self.hash_concurrency == Some(0) {
            return Err("AUTH_HASH_CONCURRENCY must be at least 1".into());
        }
        Ok(())
    }

    /// The secrets of AUTH_JWT_SECRET, byte for byte; none when it is unset or empty (an
    /// empty value, e.g. `AUTH_JWT_SECRET=` from a template, counts as unset).
    pub fn jwt_secrets(&self) -> Vec<&[u8]> {
        match self.jwt_secret.as_deref() {
            None | Some("") => Vec::new(),
            Some(list) => list.split(',').map(str::as_bytes).collect(),
        }
    }

    /// The files of AUTH_JWT_PRIVATE_KEYS; none when it is unset or empty.
    pub fn jwt_key_files(&self) -> Vec<PathBuf> {
        match self.jwt_private_keys.as_deref() {
            None | Some("") => Vec::new(),
            Some(list) => list.split(',').map(PathBuf::from).collect(),
        }
    }

    /// Hashing permits: the configured number, else max(1, cores - 1).
    pub fn hash_permits(&self) -> usize {
        self.hash_concurrency.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            cores.saturating_sub(1).max(1)
        })
    }
}
