//! auth-service configuration: every setting is an environment variable and a flag
//! (`auth-service --help`), validated before anything starts.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use ipnet::IpNet;
use pair_common::duration::{parse_duration, parse_duration_or_zero};

use crate::{
    admission::{AdmissionLimits, Budget},
    client::parse_trusted_proxy,
};

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

    /// Token store on a Redis Cluster: comma-separated `redis://` URLs of some of its
    /// nodes (the client finds the rest). Instead of AUTH_REDIS_URL, not with it.
    #[arg(
        long,
        env = "AUTH_REDIS_CLUSTER_URLS",
        value_name = "AUTH_REDIS_CLUSTER_URLS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub redis_cluster_urls: Vec<String>,

    /// Redis logical database holding the active refresh tokens of each user [default:
    /// 1]. One node only: a cluster has one keyspace.
    #[arg(
        long,
        env = "AUTH_REDIS_REFRESH_DB",
        value_name = "AUTH_REDIS_REFRESH_DB"
    )]
    pub redis_refresh_db: Option<u8>,

    /// Redis logical database holding the blocked access tokens [default: 2]. One node
    /// only.
    #[arg(
        long,
        env = "AUTH_REDIS_BLOCKLIST_DB",
        value_name = "AUTH_REDIS_BLOCKLIST_DB"
    )]
    pub redis_blocklist_db: Option<u8>,

    /// Replicas that must confirm every revocation and rotation (Redis `WAIT`) before it
    /// is acknowledged; UNAVAILABLE if they do not within AUTH_STORE_TIMEOUT [default: 1
    /// on a cluster whose every shard has a replica, 0 otherwise].
    #[arg(
        long,
        env = "AUTH_REDIS_MIN_REPLICAS",
        value_name = "AUTH_REDIS_MIN_REPLICAS"
    )]
    pub redis_min_replicas: Option<u32>,

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

    /// Calls of one client address that may wait for or hold a password hash at once in
    /// this process (Login, Register, ChangePassword); past that RESOURCE_EXHAUSTED,
    /// before anything is looked up. 0 means no limit.
    #[arg(
        long,
        env = "AUTH_ADDRESS_HASHES_IN_FLIGHT",
        value_name = "AUTH_ADDRESS_HASHES_IN_FLIGHT",
        default_value_t = 4
    )]
    pub address_hashes_in_flight: u32,

    /// Password hashes one client address may cost per AUTH_ADDRESS_HASH_WINDOW, counted
    /// in the token store (shared by every replica). 0 means no limit.
    #[arg(
        long,
        env = "AUTH_ADDRESS_HASH_LIMIT",
        value_name = "AUTH_ADDRESS_HASH_LIMIT",
        default_value_t = 60
    )]
    pub address_hash_limit: u32,

    /// The window of AUTH_ADDRESS_HASH_LIMIT.
    #[arg(long, env = "AUTH_ADDRESS_HASH_WINDOW", value_name = "AUTH_ADDRESS_HASH_WINDOW", default_value = "1m", value_parser = parse_duration)]
    pub address_hash_window: Duration,

    /// Registrations one client address may attempt per AUTH_ADDRESS_REGISTRATION_WINDOW
    /// (each that gets as far as hashing counts), shared by every replica. 0 means no
    /// limit.
    #[arg(
        long,
        env = "AUTH_ADDRESS_REGISTRATION_LIMIT",
        value_name = "AUTH_ADDRESS_REGISTRATION_LIMIT",
        default_value_t = 20
    )]
    pub address_registration_limit: u32,

    /// The window of AUTH_ADDRESS_REGISTRATION_LIMIT.
    #[arg(long, env = "AUTH_ADDRESS_REGISTRATION_WINDOW", value_name = "AUTH_ADDRESS_REGISTRATION_WINDOW", default_value = "1h", value_parser = parse_duration)]
    pub address_registration_window: Duration,

    /// Peers whose `x-forwarded-for` metadata names the client (load balancers, the HTTP
    /// gateway): addresses or CIDR ranges, comma-separated. Unset means none: every
    /// client is counted by its own connection's address.
    #[arg(
        long,
        env = "AUTH_TRUSTED_PROXIES",
        value_name = "AUTH_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,

    /// Deadline for a store (database, Redis) to answer one operation.
    #[arg(long, env = "AUTH_STORE_TIMEOUT", value_name = "AUTH_STORE_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub store_timeout: Duration,

    /// Address of the Prometheus metrics endpoint (`GET /metrics`); unset means off.
    #[arg(long, env = "AUTH_METRICS_ADDR", value_name = "AUTH_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// A listener of its own for `grpc.health.v1` alone, served by a thread of its own,
    /// for probes that must be answered under any load (point liveness and readiness
    /// probes, and `auth-service healthcheck`, there); unset means health is served on
    /// the main listener only.
    #[arg(long, env = "AUTH_HEALTH_ADDR", value_name = "AUTH_HEALTH_ADDR")]
    pub health_addr: Option<SocketAddr>,

    /// Browser origins allowed to call through gRPC-Web, comma-separated (`*` for any);
    /// unset means no cross-origin access.
    #[arg(
        long,
        env = "AUTH_CORS_ALLOWED_ORIGINS",
        value_name = "AUTH_CORS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_allowed_origins: Vec<String>,

    /// Connections this process holds open at once; past it a new connection is closed
    /// as soon as it is accepted (the call fails at once: UNAVAILABLE). 0 means no limit.
    #[arg(
        long,
        env = "AUTH_MAX_CONNECTIONS",
        value_name = "AUTH_MAX_CONNECTIONS",
        default_value_t = pair_common::limits::Limits::DEFAULT.max_connections
    )]
    pub max_connections: usize,

    /// Calls one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS:
    /// a client waits for a free stream before it sends more). At least 1.
    #[arg(
        long,
        env = "AUTH_MAX_STREAMS_PER_CONNECTION",
        value_name = "AUTH_MAX_STREAMS_PER_CONNECTION",
        default_value_t = pair_common::limits::Limits::DEFAULT.max_streams_per_connection
    )]
    pub max_streams_per_connection: u32,

    /// Calls this process runs at once, health checks aside; past it a call is answered
    /// RESOURCE_EXHAUSTED (with RetryInfo) at once, never queued. 0 means no limit.
    #[arg(
        long,
        env = "AUTH_MAX_CALLS_IN_FLIGHT",
        value_name = "AUTH_MAX_CALLS_IN_FLIGHT",
        default_value_t = pair_common::limits::Limits::DEFAULT.max_calls_in_flight
    )]
    pub max_calls_in_flight: usize,
}

impl Config {
    /// Checks what clap cannot: relations between settings. (The signing keys are
    /// checked as they are loaded: `keys::KeySet::load`.)
    pub fn validate(&self) -> Result<(), String> {
        pair_common::server::check_cors_origins(&self.cors_allowed_origins)
            .map_err(|why| format!("AUTH_CORS_ALLOWED_ORIGINS: {why}"))?;
        if self.refresh_retry_window >= self.refresh_token_ttl {
            return Err(
                "AUTH_REFRESH_RETRY_WINDOW must be shorter than AUTH_REFRESH_TOKEN_TTL".into(),
            );
        }
        if self.access_token_ttl >= self.refresh_token_ttl {
            return Err("AUTH_ACCESS_TOKEN_TTL must be shorter than AUTH_REFRESH_TOKEN_TTL".into());
        }
        if self.refresh_db() == self.blocklist_db() {
            return Err(
                "AUTH_REDIS_REFRESH_DB and AUTH_REDIS_BLOCKLIST_DB must name different databases"
                    .into(),
            );
        }
        let cluster_urls = self.cluster_urls();
        if !self.redis_cluster_urls.is_empty() && cluster_urls.is_empty() {
            return Err("AUTH_REDIS_CLUSTER_URLS lists no URL".into());
        }
        if !cluster_urls.is_empty() {
            if self.redis_url.is_some() {
                return Err(
                    "AUTH_REDIS_URL and AUTH_REDIS_CLUSTER_URLS are both set: choose one node or a cluster"
                        .into(),
                );
            }
            if self.redis_refresh_db.is_some() || self.redis_blocklist_db.is_some() {
                return Err(
                    "AUTH_REDIS_REFRESH_DB and AUTH_REDIS_BLOCKLIST_DB apply to one node only, not with AUTH_REDIS_CLUSTER_URLS: a Redis Cluster has one keyspace"
                        .into(),
                );
            }
            if let Some(url) = cluster_urls
                .iter()
                .find(|url| !url.starts_with("redis://") && !url.starts_with("rediss://"))
            {
                return Err(format!(
                    "AUTH_REDIS_CLUSTER_URLS: `{}` is not a redis:// or rediss:// URL",
                    url.split(':').next().unwrap_or_default()
                ));
            }
        } else if self.redis_min_replicas.is_some() && self.redis_url.is_none() {
            return Err(
                "AUTH_REDIS_MIN_REPLICAS needs Redis (AUTH_REDIS_URL or AUTH_REDIS_CLUSTER_URLS)"
                    .into(),
            );
        }
        if self.hash_queue == 0 {
            return Err("AUTH_HASH_QUEUE must be at least 1".into());
        }
        if self.max_streams_per_connection == 0 {
            return Err("AUTH_MAX_STREAMS_PER_CONNECTION must be at least 1".into());
        }
        if self.hash_concurrency == Some(0) {
            return Err("AUTH_HASH_CONCURRENCY must be at least 1".into());
        }
        self.trusted_proxy_ranges()?;
        Ok(())
    }

    /// The logical database of refresh tokens on one Redis node.
    pub fn refresh_db(&self) -> u8 {
        self.redis_refresh_db.unwrap_or(1)
    }

    /// The logical database of blocked access tokens on one Redis node.
    pub fn blocklist_db(&self) -> u8 {
        self.redis_blocklist_db.unwrap_or(2)
    }

    /// The URLs of AUTH_REDIS_CLUSTER_URLS, empty entries dropped.
    pub fn cluster_urls(&self) -> Vec<String> {
        self.redis_cluster_urls
            .iter()
            .map(|url| url.trim())
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Connections, streams and calls in flight (docs/ARCHITECTURE.md, "Overload").
    pub fn limits(&self) -> pair_common::limits::Limits {
        pair_common::limits::Limits {
            max_connections: self.max_connections,
            max_streams_per_connection: self.max_streams_per_connection,
            max_calls_in_flight: self.max_calls_in_flight,
        }
    }

    /// AUTH_TRUSTED_PROXIES parsed; empty entries (`AUTH_TRUSTED_PROXIES=` from a
    /// template, a trailing comma) are nothing.
    pub fn trusted_proxy_ranges(&self) -> Result<Vec<IpNet>, String> {
        self.trusted_proxies
            .iter()
            .filter(|entry| !entry.trim().is_empty())
            .map(|entry| {
                parse_trusted_proxy(entry).map_err(|why| format!("AUTH_TRUSTED_PROXIES: {why}"))
            })
            .collect()
    }

    /// The per-address limits in front of password hashing.
    pub fn admission_limits(&self) -> AdmissionLimits {
        AdmissionLimits {
            in_flight_per_address: self.address_hashes_in_flight,
            hashes: Budget {
                limit: self.address_hash_limit,
                window: self.address_hash_window,
            },
            registrations: Budget {
                limit: self.address_registration_limit,
                window: self.address_registration_window,
            },
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_proxies(value: &str) -> Config {
        Config::parse_from(["auth-service", "--trusted-proxies", value])
    }

    #[test]
    fn empty_trusted_proxy_entries_trust_no_one_and_bad_ones_name_the_variable() {
        assert_eq!(with_proxies("").trusted_proxy_ranges(), Ok(Vec::new()));
        assert_eq!(
            with_proxies("10.0.0.1, ,10.1.0.0/16,").trusted_proxy_ranges(),
            Ok(vec![
                "10.0.0.1/32".parse().unwrap(),
                "10.1.0.0/16".parse().unwrap()
            ])
        );
        let error = with_proxies("10.0.0.1,nope").validate().unwrap_err();
        assert!(
            error.starts_with("AUTH_TRUSTED_PROXIES:") && error.contains("nope"),
            "{error}"
        );
    }
}
