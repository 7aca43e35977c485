//! Command-line flags and their validation.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use clap::Parser;

use crate::soak::Mix;

/// A repeatable gRPC load generator for the auth + blog pair.
///
/// Runs each scenario for a fixed duration after a warm-up, with `--concurrency` calls in
/// flight over `--connections` HTTP/2 connections, and reports throughput, latency
/// percentiles and errors by gRPC status code. It only talks to loopback addresses.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
pub struct Args {
    /// auth-service URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:50051", value_parser = parse_loopback_url)]
    pub auth_url: String,

    /// blog-service URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:50052", value_parser = parse_loopback_url)]
    pub blog_url: String,

    /// Scenario to run; repeat the flag or give a comma-separated list; `all` runs every
    /// one but soak and login-under-address-flood. Names: health, introspect, get-post,
    /// list-posts, create-post, login, introspect-under-login-flood, soak,
    /// login-under-address-flood. [default: all]
    ///
    /// login-under-address-flood: one user logs in every 200 ms, alone, then while
    /// --flood-concurrency tasks connected from --flood-source log in with unknown names;
    /// meant for a server with its per-address limits on.
    ///
    /// soak: a mixed load (see --soak-mix) where each task keeps its own session (login,
    /// refresh, logout, log in again) and every answer is checked; loadgen exits with
    /// status 2 when the soak saw any unexpected error (warm-up included).
    #[arg(long = "scenario", value_name = "NAME[,NAME…]", value_parser = parse_scenario_list)]
    pub scenarios: Vec<ScenarioList>,

    /// Calls in flight: this many tasks, each looping one call at a time.
    #[arg(long, default_value_t = 32, value_parser = parse_at_least_one)]
    pub concurrency: usize,

    /// HTTP/2 connections per service; the tasks are spread round-robin over them.
    #[arg(long, default_value_t = 4, value_parser = parse_at_least_one)]
    pub connections: usize,

    /// Worker threads of loadgen's own runtime. One thread drives about 90k calls/s
    /// here; more only take cores from the services when they share the machine, which
    /// shows as scheduler waits in every latency (raise it when loadgen is the
    /// bottleneck, i.e. its one thread is busy all the time).
    #[arg(long, default_value_t = 1, value_parser = parse_at_least_one)]
    pub threads: usize,

    /// How long each scenario is measured (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Load before the measurement of each scenario, not recorded (`0s` for none).
    #[arg(long, default_value = "2s", value_parser = parse_warmup)]
    pub warmup: Duration,

    /// Write all results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Users to register and log in (their tokens feed introspect, create-post, login).
    #[arg(long, default_value_t = 200, value_parser = parse_at_least_one)]
    pub seed_users: usize,

    /// Posts to create before get-post / list-posts (created on every run).
    #[arg(long, default_value_t = 10_000, value_parser = parse_at_least_one)]
    pub seed_posts: usize,

    /// Do not create posts; get-post and list-posts use the posts already there.
    #[arg(long)]
    pub no_seed_posts: bool,

    /// Tasks running Login continuously in introspect-under-login-flood.
    #[arg(long, default_value_t = 16, value_parser = parse_at_least_one)]
    pub login_concurrency: usize,

    /// Tasks flooding Login from --flood-source in login-under-address-flood.
    #[arg(long, default_value_t = 128, value_parser = parse_at_least_one)]
    pub flood_concurrency: usize,

    /// The loopback address login-under-address-flood floods from (the kernel routes
    /// all of 127.0.0.0/8 to this machine).
    #[arg(long, default_value = "127.0.0.2", value_parser = parse_loopback_ip)]
    pub flood_source: IpAddr,

    /// Password hashes the server runs at once, for the login ceiling.
    /// [default: max(1, cores - 1)]
    #[arg(long, value_parser = parse_at_least_one)]
    pub hash_permits: Option<usize>,

    /// First wait up to this long for auth-service, and blog-service when a selected
    /// scenario calls it, to answer health SERVING.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait_ready: Option<Duration>,

    /// Weights of the soak's operations, `op=weight[,…]`; operations not named keep their
    /// default, 0 leaves one out. Operations: introspect, list-posts, get-post,
    /// create-post, refresh, login, logout.
    /// [default: introspect=40,list-posts=15,get-post=20,create-post=10,refresh=8,login=5,logout=2]
    #[arg(long, value_name = "OP=WEIGHT[,…]", value_parser = Mix::parse)]
    pub soak_mix: Option<Mix>,

    /// soak: a shell command (`sh -c`) run this long after the measured window starts,
    /// e.g. `bash tests/cluster/redis-cluster.sh kill-master`. UNAVAILABLE answers to
    /// calls that overlap `--fault-window` from then are expected and counted apart;
    /// every other error still fails the soak.
    #[arg(long, value_name = "COMMAND", requires = "fault_at")]
    pub fault_command: Option<String>,

    /// When `--fault-command` runs, after the start of the measured window.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "fault_command")]
    pub fault_at: Option<Duration>,

    /// How long after `--fault-at` UNAVAILABLE is expected.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub fault_window: Duration,

    /// Deadline of one call; a call past it counts as a CLIENT_TIMEOUT error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub call_timeout: Duration,
}

impl Args {
    /// The scenarios to run, in the order given, each once; every one when none is given.
    pub fn selected_scenarios(&self) -> Vec<Scenario> {
        let mut selected: Vec<Scenario> = Vec::new();
        for scenario in self
            .scenarios
            .iter()
            .flat_map(|list| list.0.iter().copied())
        {
            if !selected.contains(&scenario) {
                selected.push(scenario);
            }
        }
        if selected.is_empty() {
            Scenario::ALL.to_vec()
        } else {
            selected
        }
    }

    /// `--hash-permits`, or max(1, cores − 1) as the server computes its default.
    pub fn hash_permits(&self) -> usize {
        self.hash_permits
            .unwrap_or_else(|| cores().saturating_sub(1).max(1))
    }
}

/// CPU cores available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// One load scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Health,
    Introspect,
    GetPost,
    ListPosts,
    CreatePost,
    Login,
    IntrospectUnderLoginFlood,
    Soak,
    LoginUnderAddressFlood,
}

impl Scenario {
    /// The scenarios of `all` (every one but soak, which is a gate of its own).
    pub const ALL: [Self; 7] = [
        Self::Health,
        Self::Introspect,
        Self::GetPost,
        Self::ListPosts,
        Self::CreatePost,
        Self::Login,
        Self::IntrospectUnderLoginFlood,
    ];

    /// Every scenario that can be named.
    pub const NAMED: [Self; 9] = [
        Self::Health,
        Self::Introspect,
        Self::GetPost,
        Self::ListPosts,
        Self::CreatePost,
        Self::Login,
        Self::IntrospectUnderLoginFlood,
        Self::Soak,
        Self::LoginUnderAddressFlood,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Introspect => "introspect",
            Self::GetPost => "get-post",
            Self::ListPosts => "list-posts",
            Self::CreatePost => "create-post",
            Self::Login => "login",
            Self::IntrospectUnderLoginFlood => "introspect-under-login-flood",
            Self::Soak => "soak",
            Self::LoginUnderAddressFlood => "login-under-address-flood",
        }
    }

    /// Whether the scenario reads posts (seeded unless `--no-seed-posts`).
    pub fn reads_posts(self) -> bool {
        matches!(self, Self::GetPost | Self::ListPosts | Self::Soak)
    }

    /// Whether the scenario needs seeded users (tokens or credentials).
    pub fn needs_users(self) -> bool {
        matches!(
            self,
            Self::Introspect
                | Self::CreatePost
                | Self::Login
                | Self::IntrospectUnderLoginFlood
                | Self::Soak
                | Self::LoginUnderAddressFlood
        )
    }

    /// Whether the scenario calls blog-service.
    pub fn uses_blog(self) -> bool {
        matches!(
            self,
            Self::GetPost | Self::ListPosts | Self::CreatePost | Self::Soak
        )
    }
}

/// The scenarios of one `--scenario` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioList(pub Vec<Scenario>);

/// Parses `name[,name…]`; `all` stands for every scenario.
pub fn parse_scenario_list(text: &str) -> Result<ScenarioList, String> {
    let mut scenarios = Vec::new();
    for name in text.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(format!("`{text}` has an empty scenario name"));
        }
        if name == "all" {
            scenarios.extend(Scenario::ALL);
            continue;
        }
        let scenario = Scenario::NAMED
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let valid: Vec<&str> = Scenario::NAMED.iter().map(|s| s.name()).collect();
                format!(
                    "unknown scenario `{name}`: valid scenarios are {}, or all",
                    valid.join(", ")
                )
            })?;
        scenarios.push(scenario);
    }
    Ok(ScenarioList(scenarios))
}

/// Parses a positive duration written `<whole number><unit>`, unit `ms`, `s`, `m` or `h`
/// (e.g. `500ms`, `2s`, `1m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration_allowing_zero(text)?;
    if duration.is_zero() {
        return Err(format!("`{text}` must be longer than zero"));
    }
    Ok(duration)
}

/// Like [`parse_duration`], but `0s` (no warm-up) is allowed.
pub fn parse_warmup(text: &str) -> Result<Duration, String> {
    parse_duration_allowing_zero(text)
}

fn parse_duration_allowing_zero(text: &str) -> Result<Duration, String> {
    const HINT: &str = "write e.g. 500ms, 2s, 1m";
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit: {HINT}"))?;
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "`{text}` does not start with a whole number: {HINT}"
        ));
    }
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is too long"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("`{text}` has an unknown unit `{unit}`: {HINT}")),
    };
    let millis = number
        .checked_mul(millis_per_unit)
        .ok_or_else(|| format!("`{text}` is too long"))?;
    Ok(Duration::from_millis(millis))
}

/// Parses a whole number of at least 1.
pub fn parse_at_least_one(text: &str) -> Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number"))?;
    if n == 0 {
        return Err("must be at least 1".to_owned());
    }
    Ok(n)
}

/// Accepts a loopback address (127.0.0.0/8, ::1) only.
pub fn parse_loopback_ip(text: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not an IP address"))?;
    if ip.is_loopback() {
        Ok(ip)
    } else {
        Err(format!(
            "`{text}` is not a loopback address (127.0.0.0/8 or ::1)"
        ))
    }
}

/// Accepts an `http://` URL whose host is a loopback address (127.0.0.0/8, ::1) or
/// `localhost`: this tool must never load anything but the local machine.
pub fn parse_loopback_url(text: &str) -> Result<String, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("`{text}` is not a URL ({e}): write e.g. http://127.0.0.1:50051"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "`{text}`: scheme `{other}` is not supported, use http:// (plaintext HTTP/2)"
            ));
        }
        None => {
            return Err(format!(
                "`{text}` has no scheme: write e.g. http://127.0.0.1:50051"
            ));
        }
    }
    let host = uri.host().ok_or_else(|| format!("`{text}` has no host"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(format!(
            "`{text}`: host `{host}` is not a loopback address; loadgen only targets \
             127.0.0.0/8, ::1 or localhost"
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_as_documented() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.auth_url, "http://127.0.0.1:50051");
        assert_eq!(args.blog_url, "http://127.0.0.1:50052");
        assert_eq!(args.concurrency, 32);
        assert_eq!(args.connections, 4);
        assert_eq!(args.threads, 1);
        assert_eq!(args.duration, Duration::from_secs(10));
        assert_eq!(args.warmup, Duration::from_secs(2));
        assert_eq!(args.seed_users, 200);
        assert_eq!(args.seed_posts, 10_000);
        assert_eq!(args.login_concurrency, 16);
        assert!(args.hash_permits() >= 1);
        assert_eq!(args.selected_scenarios(), Scenario::ALL.to_vec());
        assert!(!Scenario::ALL.contains(&Scenario::Soak));
        assert_eq!(args.soak_mix, None);
    }

    #[test]
    fn soak_is_named_alone_or_with_all_and_takes_a_mix() {
        let args = parse(&["--scenario", "all,soak", "--soak-mix", "login=1,logout=1"]).unwrap();
        let mut expected = Scenario::ALL.to_vec();
        expected.push(Scenario::Soak);
        assert_eq!(args.selected_scenarios(), expected);
        let mix = args.soak_mix.unwrap();
        assert_eq!(mix.weight(crate::soak::Op::Login), 1);
        assert_eq!(mix.weight(crate::soak::Op::Introspect), 40);
        assert!(parse(&["--soak-mix", "login"]).is_err());
        assert!(parse(&["--soak-mix", "teleport=3"]).is_err());
        assert!(Scenario::Soak.needs_users() && Scenario::Soak.reads_posts());
        assert!(Scenario::Soak.uses_blog());
    }

    #[test]
    fn durations_take_ms_s_m_h() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 3s "), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn bad_durations_are_refused_with_a_reason() {
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "-1s",
            "10x",
            "10 s",
            "2S",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(
            parse_duration("0s")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn zero_is_refused_for_durations_but_allowed_for_warmup() {
        assert!(parse(&["--duration", "0s"]).is_err());
        assert!(parse(&["--call-timeout", "0ms"]).is_err());
        assert!(parse(&["--wait-ready", "0s"]).is_err());
        assert_eq!(parse(&["--warmup", "0s"]).unwrap().warmup, Duration::ZERO);
        assert!(parse(&["--warmup", "2"]).is_err());
        let args = parse(&["--duration", "500ms", "--warmup", "1m"]).unwrap();
        assert_eq!(args.duration, Duration::from_millis(500));
        assert_eq!(args.warmup, Duration::from_secs(60));
    }

    #[test]
    fn counts_must_be_at_least_one() {
        for flag in [
            "--concurrency",
            "--connections",
            "--threads",
            "--seed-users",
            "--seed-posts",
            "--login-concurrency",
            "--hash-permits",
        ] {
            let error = parse(&[flag, "0"]).unwrap_err().to_string();
            assert!(error.contains("at least 1"), "{flag}: {error}");
            assert!(parse(&[flag, "-3"]).is_err(), "{flag}");
            assert!(parse(&[flag, "many"]).is_err(), "{flag}");
            assert!(parse(&[flag, "1"]).is_ok(), "{flag}");
        }
        assert_eq!(parse(&["--hash-permits", "3"]).unwrap().hash_permits(), 3);
    }

    #[test]
    fn scenarios_are_repeatable_comma_separated_and_deduplicated() {
        let args = parse(&[
            "--scenario",
            "login,health",
            "--scenario",
            "get-post",
            "--scenario",
            "health",
        ])
        .unwrap();
        assert_eq!(
            args.selected_scenarios(),
            vec![Scenario::Login, Scenario::Health, Scenario::GetPost]
        );
        let args = parse(&["--scenario", "all"]).unwrap();
        assert_eq!(args.selected_scenarios(), Scenario::ALL.to_vec());
        for scenario in Scenario::NAMED {
            let args = parse(&["--scenario", scenario.name()]).unwrap();
            assert_eq!(args.selected_scenarios(), vec![scenario]);
        }
    }

    #[test]
    fn an_unknown_scenario_lists_the_valid_ones() {
        let error = parse(&["--scenario", "health,nope"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown scenario `nope`"), "{error}");
        for scenario in Scenario::NAMED {
            assert!(error.contains(scenario.name()), "{error}");
        }
        assert!(parse(&["--scenario", "health,,login"]).is_err());
    }

    #[test]
    fn only_loopback_urls_are_accepted() {
        for good in [
            "http://127.0.0.1:50051",
            "http://127.1.2.3:1",
            "http://localhost:50051",
            "http://LOCALHOST",
            "http://[::1]:50051",
        ] {
            assert_eq!(parse_loopback_url(good).as_deref(), Ok(good));
        }
        for bad in [
            "http://10.0.0.1:50051",
            "http://0.0.0.0:50051",
            "http://example.com:50051",
            "http://localhost.example.com",
            "http://[::2]:50051",
            "http://[::ffff:8.8.8.8]:1",
        ] {
            let error = parse_loopback_url(bad).unwrap_err();
            assert!(error.contains("not a loopback address"), "{bad}: {error}");
        }
        assert!(parse_loopback_url("127.0.0.1:50051").is_err());
        assert!(
            parse_loopback_url("https://127.0.0.1:50051")
                .unwrap_err()
                .contains("http://")
        );
        assert!(parse_loopback_url("not a url").is_err());
        assert!(parse(&["--auth-url", "http://192.168.1.1:50051"]).is_err());
        assert!(parse(&["--blog-url", "http://8.8.8.8:50052"]).is_err());
    }
}
