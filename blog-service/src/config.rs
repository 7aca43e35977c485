//! blog-service configuration: every setting is an environment variable and a flag
//! (`blog-service --help`), validated before anything starts.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use pair_common::duration::parse_duration;

/// Blog posts over gRPC; writes are authenticated through auth-service Introspect.
#[derive(Debug, Clone, Parser)]
#[command(name = "blog-service", version, about)]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(
        long,
        env = "BLOG_LISTEN_ADDR",
        value_name = "BLOG_LISTEN_ADDR",
        default_value = "127.0.0.1:50052"
    )]
    pub listen_addr: SocketAddr,

    /// Post database: `postgres://…`, a database of its own (never auth-service's).
    #[arg(
        long,
        env = "BLOG_DATABASE_URL",
        value_name = "BLOG_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// auth-service, whose Introspect checks the bearer token of every write.
    #[arg(
        long,
        env = "BLOG_AUTH_URL",
        value_name = "BLOG_AUTH_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub auth_url: String,

    /// Deadline of each Introspect call, connecting included; past it a write is
    /// UNAVAILABLE.
    #[arg(long, env = "BLOG_AUTH_TIMEOUT", value_name = "BLOG_AUTH_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub auth_timeout: Duration,

    /// How long a call waits for a database connection; past it the call is UNAVAILABLE.
    #[arg(long, env = "BLOG_STORE_TIMEOUT", value_name = "BLOG_STORE_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub store_timeout: Duration,

    /// Keep posts and pages read in memory, dropped when the database says they changed:
    /// on PostgreSQL when it announces a change (`LISTEN blog_posts`), on a SQLite file
    /// when its data version moves (checked every 25 ms).
    #[arg(long, env = "BLOG_POST_CACHE", value_name = "BLOG_POST_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub post_cache: bool,

    /// Megabytes of answers (encoded GetPost and ListPosts responses) the post cache keeps
    /// at most, posts and pages together; past it, deeper pages go first, first pages last.
    /// Size it to what readers ask for: a reader that wanders over more than the budget
    /// pays a database read per page (BENCHMARKS.md, "Posts at scale").
    #[arg(long, env = "BLOG_POST_CACHE_MB", value_name = "BLOG_POST_CACHE_MB", default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub post_cache_mb: u32,

    /// Address of the Prometheus metrics endpoint (`GET /metrics`); unset means off.
    #[arg(long, env = "BLOG_METRICS_ADDR", value_name = "BLOG_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// A listener of its own for `grpc.health.v1` alone, served by a thread of its own,
    /// for probes that must be answered under any load (point liveness and readiness
    /// probes, and `blog-service healthcheck`, there); unset means health is served on
    /// the main listener only.
    #[arg(long, env = "BLOG_HEALTH_ADDR", value_name = "BLOG_HEALTH_ADDR")]
    pub health_addr: Option<SocketAddr>,

    /// Browser origins allowed to call through gRPC-Web, comma-separated (`*` for any);
    /// unset means no cross-origin access.
    #[arg(
        long,
        env = "BLOG_CORS_ALLOWED_ORIGINS",
        value_name = "BLOG_CORS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_allowed_origins: Vec<String>,

    /// Connections this process holds open at once; past it a new connection is closed
    /// as soon as it is accepted (the call fails at once: UNAVAILABLE). 0 means no limit.
    #[arg(
        long,
        env = "BLOG_MAX_CONNECTIONS",
        value_name = "BLOG_MAX_CONNECTIONS",
        default_value_t = pair_common::limits::Limits::DEFAULT.max_connections
    )]
    pub max_connections: usize,

    /// Calls one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS:
    /// a client waits for a free stream before it sends more). At least 1.
    #[arg(
        long,
        env = "BLOG_MAX_STREAMS_PER_CONNECTION",
        value_name = "BLOG_MAX_STREAMS_PER_CONNECTION",
        default_value_t = pair_common::limits::Limits::DEFAULT.max_streams_per_connection
    )]
    pub max_streams_per_connection: u32,

    /// Calls this process runs at once, health checks aside; past it a call is answered
    /// RESOURCE_EXHAUSTED (with RetryInfo) at once, never queued. 0 means no limit.
    #[arg(
        long,
        env = "BLOG_MAX_CALLS_IN_FLIGHT",
        value_name = "BLOG_MAX_CALLS_IN_FLIGHT",
        default_value_t = pair_common::limits::Limits::DEFAULT.max_calls_in_flight
    )]
    pub max_calls_in_flight: usize,
}

impl Config {
    /// Connections, streams and calls in flight (docs/ARCHITECTURE.md, "Overload").
    pub fn limits(&self) -> pair_common::limits::Limits {
        pair_common::limits::Limits {
            max_connections: self.max_connections,
            max_streams_per_connection: self.max_streams_per_connection,
            max_calls_in_flight: self.max_calls_in_flight,
        }
    }

    /// Checks what clap cannot: that auth-service's address is one we can reach.
    pub fn validate(&self) -> Result<(), String> {
        pair_common::server::check_cors_origins(&self.cors_allowed_origins)
            .map_err(|why| format!("BLOG_CORS_ALLOWED_ORIGINS: {why}"))?;
        if self.max_streams_per_connection == 0 {
            return Err("BLOG_MAX_STREAMS_PER_CONNECTION must be at least 1".into());
        }
        let uri: tonic::transport::Uri = self.auth_url.parse().map_err(|_| {
            format!(
                "BLOG_AUTH_URL `{}` is not a URL: write e.g. http://127.0.0.1:50051",
                self.auth_url
            )
        })?;
        // TLS is not built in: an https:// URL would only fail on the first write.
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!(
                "BLOG_AUTH_URL `{}` must be an http:// URL with a host, e.g. http://127.0.0.1:50051",
                self.auth_url
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(auth_url: &str) -> Config {
        Config::try_parse_from(["blog-service", "--auth-url", auth_url]).unwrap()
    }

    #[test]
    fn the_defaults_are_valid() {
        let config = Config::try_parse_from(["blog-service"]).unwrap();
        assert_eq!(config.auth_timeout, Duration::from_secs(2));
        assert_eq!(config.store_timeout, Duration::from_secs(2));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn a_post_cache_budget_outside_1_to_65536_megabytes_is_refused() {
        let parse = |mb: &str| Config::try_parse_from(["blog-service", "--post-cache-mb", mb]);
        assert_eq!(parse("256").unwrap().post_cache_mb, 256);
        assert_eq!(
            Config::try_parse_from(["blog-service"])
                .unwrap()
                .post_cache_mb,
            24
        );
        for bad in ["0", "65537", "-1", "24MB", ""] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn an_auth_url_that_is_not_plain_http_is_refused() {
        for bad in [
            "127.0.0.1:50051",
            "https://auth:50051",
            "not a url",
            "http://",
        ] {
            assert!(config(bad).validate().is_err(), "{bad} was accepted");
        }
        assert!(config("http://auth-service:50051").validate().is_ok());
    }

    #[test]
    fn durations_are_written_with_a_unit() {
        assert!(Config::try_parse_from(["blog-service", "--auth-timeout", "2"]).is_err());
        let config = Config::try_parse_from(["blog-service", "--auth-timeout", "500ms"]).unwrap();
        assert_eq!(config.auth_timeout, Duration::from_millis(500));
    }
}
