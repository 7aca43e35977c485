//! Flags of `scale` and their validation.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// How cost grows with state (BENCHMARKS.md, "How cost grows with state"): seeds
/// sessions through auth-service's own token store, measures Redis memory per session
/// and per blocked token, Introspect past the cache, posts at scale and sessions per
/// user. Loopback only; refuses to seed into a non-empty store unless `--force`, and
/// removes what it seeded unless `--keep`.
#[derive(Debug, Parser)]
#[command(name = "scale", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Seed live sessions in Redis, account their memory, run Introspect over them
    /// (uniform and hot draws, next to health), block some access tokens, clean up.
    Sessions(SessionsArgs),
    /// Read posts of a running blog-service: first pages, deep pages reached by page
    /// tokens, GetPost of random ids (posts are seeded in bulk by bench/scale.sh).
    Posts(PostsArgs),
    /// Login, Refresh, Logout, ListSessions of one user holding 1, 10, 1000 sessions;
    /// LogoutAll of the largest, with Introspect running meanwhile.
    UserSessions(UserSessionsArgs),
}

/// What every subcommand shares.
#[derive(Debug, Args)]
pub struct Load {
    /// Calls in flight.
    #[arg(long, default_value_t = 32, value_parser = parse_count)]
    pub concurrency: usize,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4, value_parser = parse_count)]
    pub connections: usize,
    /// Measured time of each scenario (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unrecorded load before each scenario (`0s` for none).
    #[arg(long, default_value = "2s", value_parser = parse_warmup)]
    pub warmup: Duration,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// A label for the backend set, copied into the JSON (e.g. postgres, sqlite).
    #[arg(long, default_value = "postgres")]
    pub backend: String,
}

/// Where the token store lives and how tokens are signed (as the auth-service under
/// test is configured: AUTH_JWT_SECRET, AUTH_JWT_ISSUER).
#[derive(Debug, Args)]
pub struct Store {
    /// Redis of the auth-service under test (a private one: seeding writes millions of keys).
    #[arg(
        long,
        value_parser = parse_redis_url,
        required_unless_present = "redis_cluster_urls",
        conflicts_with = "redis_cluster_urls"
    )]
    pub redis_url: Option<String>,
    /// Or a Redis Cluster of the auth-service under test (its AUTH_REDIS_CLUSTER_URLS):
    /// comma-separated seed URLs, every master is found from them (a private cluster:
    /// seeding writes millions of keys).
    #[arg(long, value_parser = parse_cluster_urls)]
    pub redis_cluster_urls: Option<ClusterUrls>,
    /// One node only (a Redis Cluster has one keyspace).
    #[arg(long, default_value_t = 1, conflicts_with = "redis_cluster_urls")]
    pub refresh_db: u8,
    /// One node only (a Redis Cluster has one keyspace).
    #[arg(long, default_value_t = 2, conflicts_with = "redis_cluster_urls")]
    pub blocklist_db: u8,
    /// The first of AUTH_JWT_SECRET's comma-separated secrets signs the seeded tokens.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    #[arg(long, env = "AUTH_JWT_ISSUER", default_value = "auth-service")]
    pub issuer: String,
    /// Life of the seeded access tokens: longer than the whole run.
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    pub access_ttl: Duration,
    #[arg(long, default_value = "30d", value_parser = parse_duration)]
    pub refresh_ttl: Duration,
    /// Store operations in flight while seeding.
    #[arg(long, default_value_t = 64, value_parser = parse_count)]
    pub seed_concurrency: usize,
    /// Seed even though the Redis databases are not empty.
    #[arg(long)]
    pub force: bool,
    /// Leave what was seeded in Redis.
    #[arg(long)]
    pub keep: bool,
}

/// Where the seeded state goes: one node (two logical databases) or a Redis Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redis<'a> {
    Node {
        url: &'a str,
        refresh_db: u8,
        blocklist_db: u8,
    },
    Cluster(&'a [String]),
}

impl Store {
    /// `--redis-url` or `--redis-cluster-urls` (clap requires exactly one).
    pub fn redis(&self) -> Redis<'_> {
        match (&self.redis_url, &self.redis_cluster_urls) {
            (_, Some(ClusterUrls(urls))) => Redis::Cluster(urls),
            (Some(url), None) => Redis::Node {
                url,
                refresh_db: self.refresh_db,
                blocklist_db: self.blocklist_db,
            },
            (None, None) => unreachable!("clap requires --redis-url or --redis-cluster-urls"),
        }
    }
}

/// Seed URLs of a Redis Cluster, each loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterUrls(pub Vec<String>);

#[derive(Debug, Args)]
pub struct SessionsArgs {
    #[arg(long, default_value = "http://127.0.0.1:50051", value_parser = parse_loopback_url)]
    pub auth_url: String,
    #[command(flatten)]
    pub store: Store,
    #[command(flatten)]
    pub load: Load,
    /// Live sessions to seed (at most 10,000,000).
    #[arg(long, default_value_t = 1_000_000, value_parser = parse_size)]
    pub sessions: usize,
    /// Sessions of each seeded user.
    #[arg(long, default_value_t = 1, value_parser = parse_count)]
    pub sessions_per_user: usize,
    /// Sessions revoked at the end (their access tokens blocked), for the memory of a
    /// blocked token; 0 for none.
    #[arg(long, default_value_t = 100_000, value_parser = parse_size_or_zero)]
    pub blocked: usize,
    /// Hot draws: this many users get `--hot-share` of the Introspect calls.
    #[arg(long, default_value_t = 100, value_parser = parse_count)]
    pub hot_users: usize,
    /// Hot draws: the share of calls that go to the hot users (0 < share ≤ 1).
    #[arg(long, default_value_t = 0.9, value_parser = parse_share)]
    pub hot_share: f64,
    /// Only seed and account memory (no Introspect load).
    #[arg(long)]
    pub memory_only: bool,
}

#[derive(Debug, Args)]
pub struct PostsArgs {
    #[arg(long, default_value = "http://127.0.0.1:50052", value_parser = parse_loopback_url)]
    pub blog_url: String,
    #[command(flatten)]
    pub load: Load,
    /// How many posts the database holds (checked by walking every page).
    #[arg(long, value_parser = parse_size)]
    pub posts: usize,
    /// Random post ids kept from the walk for GetPost.
    #[arg(long, default_value_t = 50_000, value_parser = parse_count)]
    pub ids: usize,
}

#[derive(Debug, Args)]
pub struct UserSessionsArgs {
    #[arg(long, default_value = "http://127.0.0.1:50051", value_parser = parse_loopback_url)]
    pub auth_url: String,
    #[command(flatten)]
    pub store: Store,
    #[command(flatten)]
    pub load: Load,
    /// Sessions the user holds, comma-separated (each 1 to 100,000).
    #[arg(long, default_value = "1,10,1000", value_parser = parse_levels)]
    pub levels: Levels,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Levels(pub Vec<usize>);

/// Most seeded items: a million sessions take ~0.7 GB of Redis; ten is the sane ceiling.
pub const MAX_SIZE: usize = 10_000_000;

pub fn parse_count(text: &str) -> Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number"))?;
    if n == 0 {
        return Err("must be at least 1".to_owned());
    }
    Ok(n)
}

pub fn parse_size(text: &str) -> Result<usize, String> {
    let n = parse_count(&text.replace('_', ""))?;
    if n > MAX_SIZE {
        return Err(format!("`{text}` is more than {MAX_SIZE}"));
    }
    Ok(n)
}

pub fn parse_size_or_zero(text: &str) -> Result<usize, String> {
    if text.trim() == "0" {
        return Ok(0);
    }
    parse_size(text)
}

pub fn parse_share(text: &str) -> Result<f64, String> {
    let share: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if share.is_finite() && share > 0.0 && share <= 1.0 {
        Ok(share)
    } else {
        Err(format!("`{text}` must be above 0 and at most 1"))
    }
}

pub fn parse_levels(text: &str) -> Result<Levels, String> {
    let mut levels = Vec::new();
    for part in text.split(',') {
        let n = parse_count(part).map_err(|e| format!("`{part}`: {e}"))?;
        if n > 100_000 {
            return Err(format!(
                "`{part}` is more than 100000 sessions for one user"
            ));
        }
        levels.push(n);
    }
    Ok(Levels(levels))
}

/// A positive duration (`500ms`, `2s`, `1m`, `2h`, `30d`), as the services read theirs.
pub use pair_common::duration::parse_duration;
/// The same, zero allowed (no warm-up).
pub use pair_common::duration::parse_duration_or_zero as parse_warmup;

/// `redis://` on a loopback host, without a database number (the flags name them).
pub fn parse_redis_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("redis://")
        .ok_or_else(|| format!("`{text}` must start with redis://"))?
        .trim_end_matches('/');
    let host_port = rest.rsplit('@').next().unwrap_or(rest);
    if host_port.contains('/') {
        return Err(format!(
            "`{text}` names a database: leave it out, --refresh-db and --blocklist-db name them"
        ));
    }
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(format!("`{text}`: only a loopback Redis may be seeded"));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// `URL,URL,…` of `redis://` loopback nodes (as AUTH_REDIS_CLUSTER_URLS; empty entries
/// are dropped, as auth-service drops them), none naming a database, none twice.
pub fn parse_cluster_urls(text: &str) -> Result<ClusterUrls, String> {
    let mut urls: Vec<String> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let url = parse_redis_url(part).map_err(|e| {
            if e.contains("names a database") {
                format!("`{part}` names a database: a Redis Cluster has one keyspace")
            } else {
                e
            }
        })?;
        if urls.contains(&url) {
            return Err(format!("`{part}` is listed twice"));
        }
        urls.push(url);
    }
    if urls.is_empty() {
        return Err(format!(
            "`{text}` lists no URL: write redis://127.0.0.1:<port>,redis://127.0.0.1:<port>,…"
        ));
    }
    Ok(ClusterUrls(urls))
}

pub fn parse_loopback_url(text: &str) -> Result<String, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("`{text}`: write http://127.0.0.1:<port>"));
    }
    let host = uri.host().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    {
        Ok(text.to_owned())
    } else {
        Err(format!("`{text}`: only loopback addresses are loaded"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("scale").chain(args.iter().copied()))
    }

    const STORE: [&str; 4] = ["--redis-url", "redis://127.0.0.1:6390", "--jwt-secret", "s"];

    #[test]
    fn sizes_are_whole_numbers_within_bounds() {
        assert_eq!(parse_size("1_000_000"), Ok(1_000_000));
        assert!(parse_size("0").unwrap_err().contains("at least 1"));
        assert!(parse_size("10000001").unwrap_err().contains("more than"));
        assert!(parse_size("-5").is_err());
        assert!(parse_size("1e6").is_err());
        assert_eq!(parse_size_or_zero("0"), Ok(0));
        let mut args = vec!["sessions", "--sessions", "0"];
        args.extend(STORE);
        assert!(parse(&args).is_err());
        let mut args = vec!["sessions", "--sessions", "1000", "--blocked", "0"];
        args.extend(STORE);
        assert!(parse(&args).is_ok());
    }

    #[test]
    fn durations_shares_and_levels_are_checked() {
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(
            parse_duration("0s")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert_eq!(parse_warmup("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("1w").unwrap_err().contains("unknown unit"));
        assert!(parse_share("0").is_err());
        assert!(parse_share("1.5").is_err());
        assert!(parse_share("NaN").is_err());
        assert_eq!(parse_share("0.9"), Ok(0.9));
        assert_eq!(parse_levels("1,10,1000"), Ok(Levels(vec![1, 10, 1000])));
        assert!(parse_levels("1,,3").is_err());
        assert!(parse_levels("0").is_err());
        assert!(parse_levels("200000").unwrap_err().contains("more than"));
    }

    #[test]
    fn only_a_loopback_redis_without_a_database_is_accepted() {
        assert!(parse_redis_url("redis://127.0.0.1:6390").is_ok());
        assert!(parse_redis_url("redis://localhost:6390/").is_ok());
        assert!(parse_redis_url("redis://10.0.0.1:6379").is_err());
        assert!(
            parse_redis_url("redis://127.0.0.1:6379/1")
                .unwrap_err()
                .contains("database")
        );
        assert!(parse_redis_url("http://127.0.0.1:6379").is_err());
        assert!(parse_loopback_url("http://127.0.0.1:1").is_ok());
        assert!(parse_loopback_url("http://8.8.8.8:1").is_err());
    }

    #[test]
    fn subcommands_take_their_flags() {
        assert!(parse(&["posts", "--posts", "10000"]).is_ok());
        assert!(parse(&["posts"]).is_err(), "--posts is required");
        assert!(parse(&["posts", "--posts", "10", "--duration", "0s"]).is_err());
        let mut args = vec!["user-sessions", "--levels", "1,10"];
        args.extend(STORE);
        assert!(parse(&args).is_ok());
        assert!(parse(&["sessions"]).is_err(), "--redis-url is required");
    }

    const CLUSTER: &str = "redis://127.0.0.1:7001,redis://127.0.0.1:7002";

    #[test]
    fn a_loopback_cluster_is_accepted_instead_of_a_node() {
        assert_eq!(
            parse_cluster_urls(" redis://127.0.0.1:7001/ ,, redis://localhost:7002,"),
            Ok(ClusterUrls(vec![
                "redis://127.0.0.1:7001".to_owned(),
                "redis://localhost:7002".to_owned()
            ]))
        );
        assert!(parse_cluster_urls("").unwrap_err().contains("lists no URL"));
        assert!(
            parse_cluster_urls(" , ")
                .unwrap_err()
                .contains("lists no URL")
        );
        assert!(
            parse_cluster_urls("redis://127.0.0.1:7001,redis://10.0.0.1:7002")
                .unwrap_err()
                .contains("only a loopback Redis")
        );
        assert!(
            parse_cluster_urls("redis://127.0.0.1:7001/0")
                .unwrap_err()
                .contains("one keyspace")
        );
        assert!(
            parse_cluster_urls("redis://127.0.0.1:7001,redis://127.0.0.1:7001")
                .unwrap_err()
                .contains("twice")
        );
        assert!(parse_cluster_urls("127.0.0.1:7001").is_err());

        let cli = parse(&[
            "sessions",
            "--redis-cluster-urls",
            CLUSTER,
            "--jwt-secret",
            "s",
        ])
        .expect("a cluster alone is enough");
        let Command::Sessions(args) = cli.command else {
            panic!("sessions")
        };
        assert_eq!(
            args.store.redis(),
            Redis::Cluster(&[
                "redis://127.0.0.1:7001".to_owned(),
                "redis://127.0.0.1:7002".to_owned()
            ])
        );
        let mut args = vec!["user-sessions", "--redis-cluster-urls", CLUSTER];
        args.extend(["--jwt-secret", "s"]);
        assert!(parse(&args).is_ok());
    }

    #[test]
    fn a_node_and_a_cluster_are_mutually_exclusive() {
        let mut args = vec!["sessions", "--redis-cluster-urls", CLUSTER];
        args.extend(STORE);
        let error = parse(&args).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
        // Database numbers are one node's: refused with a cluster, defaulted without one.
        for flag in ["--refresh-db", "--blocklist-db"] {
            let args = [
                "sessions",
                "--redis-cluster-urls",
                CLUSTER,
                flag,
                "3",
                "--jwt-secret",
                "s",
            ];
            let error = parse(&args).unwrap_err();
            assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
        }
        let cli = parse(&{
            let mut args = vec!["sessions"];
            args.extend(STORE);
            args
        })
        .unwrap();
        let Command::Sessions(args) = cli.command else {
            panic!("sessions")
        };
        assert_eq!(
            args.store.redis(),
            Redis::Node {
                url: "redis://127.0.0.1:6390",
                refresh_db: 1,
                blocklist_db: 2
            }
        );
        let error = parse(&["sessions", "--jwt-secret", "s"]).unwrap_err();
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert!(error.to_string().contains("--redis-url"));
        assert!(
            parse(&[
                "sessions",
                "--redis-cluster-urls",
                "redis://10.1.1.1:7001",
                "--jwt-secret",
                "s"
            ])
            .is_err()
        );
    }
}
