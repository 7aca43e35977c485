//! `loadgen`: a repeatable gRPC load generator for the auth + blog pair.
//!
//! Each scenario runs `--concurrency` tasks over `--connections` HTTP/2 connections for
//! `--warmup` (not recorded) then `--duration`, and reports requests per second, latency
//! percentiles and errors by gRPC status code; `--json` writes every result. The `soak`
//! scenario is a checked mixed load: loadgen exits with status 2 when it saw any
//! unexpected error.

mod address_flood;
mod cli;
mod harness;
mod scenarios;
mod seed;
mod soak;

use std::{
    fmt::Write as _,
    path::Path,
    process::ExitCode,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use clap::Parser as _;
use pair_proto::{
    auth::v1::{
        auth_service_client::AuthServiceClient,
        introspection_service_client::IntrospectionServiceClient,
    },
    blog::v1::blog_service_client::BlogServiceClient,
};
use serde::Serialize;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    cli::{Args, Scenario},
    harness::{Rng, Stats, Window},
};

/// Users registered + logged in at once while seeding (each costs two argon2 hashes).
const SEED_USER_CONCURRENCY: usize = 16;
/// CreatePost calls in flight while seeding.
const SEED_POST_CONCURRENCY: usize = 32;
/// Post ids collected with `--no-seed-posts`.
const MAX_EXISTING_POST_IDS: usize = 5_000;
/// Local argon2id hashes timed for the login ceiling.
const HASH_SAMPLES: usize = 10;

/// The exit status when a soak saw unexpected errors (1 is loadgen failing to run).
const EXIT_UNEXPECTED_ERRORS: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadgen: cannot start the Tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(unexpected) => {
            eprintln!("loadgen: FAILED: the soak saw {unexpected} unexpected error(s)");
            ExitCode::from(EXIT_UNEXPECTED_ERRORS)
        }
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Serialize)]
struct Report {
    run_id: String,
    unix_time: u64,
    config: Config,
    seeding: Seeding,
    #[serde(skip_serializing_if = "Option::is_none")]
    argon2: Option<HashTiming>,
    scenarios: Vec<ScenarioResult>,
}

#[derive(Serialize)]
struct Config {
    auth_url: String,
    blog_url: String,
    concurrency: usize,
    connections: usize,
    threads: usize,
    warmup_s: f64,
    duration_s: f64,
    login_concurrency: usize,
    hash_permits: usize,
    cores: usize,
    seed_users: usize,
    seed_posts: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    soak_mix: Option<String>,
}

#[derive(Default, Serialize)]
struct Seeding {
    users: usize,
    users_s: f64,
    posts: usize,
    posts_s: f64,
    /// Post ids get-post picks from.
    post_ids: usize,
}

#[derive(Clone, Copy, Serialize)]
struct HashTiming {
    /// Median time of one local argon2id hash (m = 19456 KiB, t = 2, p = 1).
    hash_ms_median: f64,
    samples: usize,
    /// Hashes the server runs at once (`--hash-permits`).
    permits: usize,
    /// permits / hash time: the most logins per second the server can verify.
    login_ceiling_rps: f64,
}

#[derive(Serialize)]
struct ScenarioResult {
    scenario: &'static str,
    concurrency: usize,
    #[serde(flatten)]
    stats: Stats,
    /// rps / rps of `health` in the same run, when health ran.
    ratio_to_health: Option<f64>,
    /// login: rps / login_ceiling_rps.
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_login_ceiling: Option<f64>,
    /// introspect-under-login-flood: the logins running alongside.
    #[serde(skip_serializing_if = "Option::is_none")]
    login_flood: Option<Flood>,
    /// soak: per-operation results, sheds and the unexpected errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    soak: Option<soak::SoakReport>,
    /// login-under-address-flood: the idle logins and the flood (`stats` is the user's
    /// logins under the flood).
    #[serde(skip_serializing_if = "Option::is_none")]
    address_flood: Option<address_flood::AddressFlood>,
}

#[derive(Serialize)]
struct Flood {
    login_concurrency: usize,
    login: Stats,
    resource_exhausted: u64,
}

/// What the scenarios work on.
struct Fixtures {
    users: Vec<seed::User>,
    post_ids: Arc<[String]>,
}

/// Runs the selected scenarios; returns the soak's unexpected errors (0 without soak).
async fn run(args: Args) -> anyhow::Result<u64> {
    let selected = args.selected_scenarios();
    anyhow::ensure!(
        args.fault_command.is_none() || selected == [Scenario::Soak],
        "--fault-command is for the soak alone: give --scenario soak"
    );
    if let Some(at) = args.fault_at {
        anyhow::ensure!(
            at + args.fault_window <= args.duration,
            "--fault-at {at:?} + --fault-window {:?} must end within --duration {:?}",
            args.fault_window,
            args.duration
        );
    }
    let uses_blog = selected.iter().any(|s| s.uses_blog());
    let reads_posts = selected.iter().any(|s| s.reads_posts());
    let seeds_posts = reads_posts && !args.no_seed_posts;
    let needs_users = seeds_posts || selected.iter().any(|s| s.needs_users());
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let seed_base = u64::from_str_radix(&run_id, 16).unwrap_or(42);

    if let Some(limit) = args.wait_ready {
        let urls: &[&str] = if uses_blog {
            &[&args.auth_url, &args.blog_url]
        } else {
            &[&args.auth_url]
        };
        wait_ready(urls, limit).await?;
    }

    let auth = connect(&args.auth_url, None, args.connections, args.call_timeout).await?;
    let blog = if uses_blog {
        connect(&args.blog_url, None, args.connections, args.call_timeout).await?
    } else {
        Vec::new()
    };
    let names: Vec<&str> = selected.iter().map(|s| s.name()).collect();
    eprintln!(
        "loadgen run {run_id}: {} | {} in flight over {} connection(s), {} thread(s), {:?} warm-up + {:?} each",
        names.join(", "),
        args.concurrency,
        args.connections,
        args.threads,
        args.warmup,
        args.duration,
    );

    let mut seeding = Seeding::default();
    let mut fixtures = Fixtures {
        users: Vec::new(),
        post_ids: Arc::from(Vec::new()),
    };
    if needs_users {
        let started = Instant::now();
        fixtures.users =
            seed::users(&auth, &run_id, args.seed_users, SEED_USER_CONCURRENCY).await?;
        seeding.users = fixtures.users.len();
        seeding.users_s = started.elapsed().as_secs_f64();
        eprintln!(
            "seeded {} users (register + login) in {:.2}s",
            seeding.users, seeding.users_s
        );
    }
    if seeds_posts {
        let started = Instant::now();
        let ids = seed::posts(
            &blog,
            &fixtures.users,
            &run_id,
            args.seed_posts,
            SEED_POST_CONCURRENCY,
        )
        .await?;
        seeding.posts = ids.len();
        seeding.posts_s = started.elapsed().as_secs_f64();
        eprintln!(
            "seeded {} posts in {:.2}s ({:.0} posts/s)",
            seeding.posts,
            seeding.posts_s,
            seeding.posts as f64 / seeding.posts_s
        );
        fixtures.post_ids = ids.into();
    } else if reads_posts {
        let ids = seed::existing_post_ids(pick(&blog, 0), MAX_EXISTING_POST_IDS).await?;
        anyhow::ensure!(
            !ids.is_empty(),
            "get-post / list-posts need posts, and there are none: drop --no-seed-posts"
        );
        eprintln!("using {} existing posts", ids.len());
        fixtures.post_ids = ids.into();
    }
    seeding.post_ids = fixtures.post_ids.len();

    let mut hash_timing = None;
    let mut results = Vec::new();
    for (index, scenario) in selected.iter().copied().enumerate() {
        let seed = seed_base.wrapping_mul(31).wrapping_add(index as u64);
        if scenario == Scenario::Login && hash_timing.is_none() {
            hash_timing = Some(time_hashes(args.hash_permits()).await?);
        }
        eprintln!("running {} ...", scenario.name());
        let result = run_scenario(scenario, &args, &auth, &blog, &fixtures, seed, hash_timing)
            .await
            .with_context(|| format!("scenario {} failed", scenario.name()))?;
        eprintln!("  {}", row(&result));
        results.push(result);
    }

    let health_rps = results
        .iter()
        .find(|r| r.scenario == Scenario::Health.name())
        .map(|r| r.stats.rps)
        .filter(|rps| *rps > 0.0);
    for result in &mut results {
        result.ratio_to_health = health_rps.map(|health| result.stats.rps / health);
    }

    print!("{}", table(&results, hash_timing));
    let unexpected: u64 = results
        .iter()
        .filter_map(|r| r.soak.as_ref())
        .map(|soak| soak.unexpected_errors)
        .sum();

    if let Some(path) = &args.json {
        let report = Report {
            run_id,
            unix_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            config: Config {
                auth_url: args.auth_url.clone(),
                blog_url: args.blog_url.clone(),
                concurrency: args.concurrency,
                connections: args.connections,
                threads: args.threads,
                warmup_s: args.warmup.as_secs_f64(),
                duration_s: args.duration.as_secs_f64(),
                login_concurrency: args.login_concurrency,
                hash_permits: args.hash_permits(),
                cores: cli::cores(),
                seed_users: if needs_users { args.seed_users } else { 0 },
                seed_posts: if seeds_posts { args.seed_posts } else { 0 },
                soak_mix: selected
                    .contains(&Scenario::Soak)
                    .then(|| args.soak_mix.clone().unwrap_or_default().describe()),
            },
            seeding,
            argon2: hash_timing,
            scenarios: results,
        };
        write_json(path, &report)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(unexpected)
}

async fn run_scenario(
    scenario: Scenario,
    args: &Args,
    auth: &[Channel],
    blog: &[Channel],
    fixtures: &Fixtures,
    seed: u64,
    hash_timing: Option<HashTiming>,
) -> anyhow::Result<ScenarioResult> {
    let n = args.concurrency;
    let (warmup, duration, timeout) = (args.warmup, args.duration, args.call_timeout);
    let tokens: Arc<[String]> = fixtures
        .users
        .iter()
        .map(|u| u.access_token.clone())
        .collect();
    let usernames: Arc<[String]> = fixtures.users.iter().map(|u| u.username.clone()).collect();
    let introspect_callers = |offset: usize| -> Vec<scenarios::Introspect> {
        (0..n)
            .map(|i| scenarios::Introspect {
                client: IntrospectionServiceClient::new(pick(auth, offset + i)),
                tokens: Arc::clone(&tokens),
                next: i,
            })
            .collect()
    };
    let login_callers = |count: usize, offset: usize| -> Vec<scenarios::Login> {
        (0..count)
            .map(|i| scenarios::Login {
                client: AuthServiceClient::new(pick(auth, offset + i)),
                usernames: Arc::clone(&usernames),
                next: i,
            })
            .collect()
    };
    let mut result = ScenarioResult {
        scenario: scenario.name(),
        concurrency: n,
        stats: Stats {
            calls: 0,
            ok: 0,
            rps: 0.0,
            latency_us: harness::Latency::default(),
            error_count: 0,
            errors: Default::default(),
        },
        ratio_to_health: None,
        ratio_to_login_ceiling: None,
        login_flood: None,
        soak: None,
        address_flood: None,
    };
    result.stats = match scenario {
        Scenario::Health => {
            let callers = (0..n)
                .map(|i| scenarios::Health(HealthClient::new(pick(auth, i))))
                .collect();
            harness::run(callers, warmup, duration, timeout).await?
        }
        Scenario::Introspect => {
            harness::run(introspect_callers(0), warmup, duration, timeout).await?
        }
        Scenario::GetPost => {
            let callers = (0..n)
                .map(|i| scenarios::GetPost {
                    client: BlogServiceClient::new(pick(blog, i)),
                    ids: Arc::clone(&fixtures.post_ids),
                    rng: Rng::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9)),
                })
                .collect();
            harness::run(callers, warmup, duration, timeout).await?
        }
        Scenario::ListPosts => {
            let callers = (0..n)
                .map(|i| {
                    scenarios::ListPosts::new(
                        BlogServiceClient::new(pick(blog, i)),
                        Rng::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9)),
                    )
                })
                .collect();
            harness::run(callers, warmup, duration, timeout).await?
        }
        Scenario::CreatePost => {
            let authorizations: Arc<[_]> = fixtures
                .users
                .iter()
                .map(|u| u.authorization.clone())
                .collect();
            let content: Arc<str> = seed::post_content(0).into();
            let callers = (0..n)
                .map(|i| scenarios::CreatePost {
                    client: BlogServiceClient::new(pick(blog, i)),
                    authorizations: Arc::clone(&authorizations),
                    content: Arc::clone(&content),
                    task: i,
                    next: i,
                })
                .collect();
            harness::run(callers, warmup, duration, timeout).await?
        }
        Scenario::Login => {
            let stats = harness::run(login_callers(n, 0), warmup, duration, timeout).await?;
            result.ratio_to_login_ceiling =
                hash_timing.map(|timing| stats.rps / timing.login_ceiling_rps);
            stats
        }
        Scenario::IntrospectUnderLoginFlood => {
            let window = Window::starting_now(warmup, duration, timeout);
            let introspecting = harness::spawn_all(introspect_callers(0), window);
            let logging_in = harness::spawn_all(login_callers(args.login_concurrency, n), window);
            let introspect = harness::join_all(introspecting).await?;
            let login = harness::join_all(logging_in).await?;
            let login = login.stats(window.measured());
            result.login_flood = Some(Flood {
                login_concurrency: args.login_concurrency,
                resource_exhausted: login.errors.get("RESOURCE_EXHAUSTED").copied().unwrap_or(0),
                login,
            });
            introspect.stats(window.measured())
        }
        Scenario::LoginUnderAddressFlood => {
            let username = usernames.first().context("the flood needs a seeded user")?;
            let (user, report) = address_flood::run(address_flood::Setup {
                auth_url: &args.auth_url,
                username,
                flood_source: args.flood_source,
                flood_concurrency: args.flood_concurrency,
                connections: args.connections,
                warmup,
                duration,
                call_timeout: timeout,
            })
            .await?;
            result.address_flood = Some(report);
            user
        }
        Scenario::Soak => {
            anyhow::ensure!(!usernames.is_empty(), "soak needs seeded users");
            let mix = Arc::new(args.soak_mix.clone().unwrap_or_default());
            let content: Arc<str> = seed::post_content(0).into();
            let workers = (0..n)
                .map(|i| {
                    soak::Worker::new(soak::WorkerSetup {
                        auth: pick(auth, i),
                        blog: pick(blog, i),
                        username: usernames[i % usernames.len()].clone(),
                        seeded_posts: Arc::clone(&fixtures.post_ids),
                        content: Arc::clone(&content),
                        mix: Arc::clone(&mix),
                        seed: seed ^ (i as u64).wrapping_mul(0x9E37_79B9),
                        task: i,
                    })
                })
                .collect();
            let mut window = Window::starting_now(warmup, duration, timeout);
            let fault = match (&args.fault_command, args.fault_at) {
                (Some(command), Some(at)) => {
                    window = window.with_fault(at, args.fault_window);
                    Some(tokio::spawn(inject_fault(
                        command.clone(),
                        window.measure_from + at,
                    )))
                }
                _ => None,
            };
            let report = soak::run(workers, usernames.len().min(n), window).await?;
            if let Some(fault) = fault {
                fault.await.context("the fault task panicked")??;
            }
            let stats = report.total.clone();
            result.soak = Some(report);
            stats
        }
    };
    Ok(result)
}

/// Runs `command` through `sh -c` at `at`; its output goes to stderr. A command that
/// fails fails the run (a soak "across a failover" without the failover proves nothing).
async fn inject_fault(command: String, at: tokio::time::Instant) -> anyhow::Result<()> {
    tokio::time::sleep_until(at).await;
    eprintln!("loadgen: injecting the fault: {command}");
    let run = command.clone();
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .args(["-c", &run])
            .stdout(std::process::Stdio::inherit())
            .status()
    })
    .await
    .context("the fault command's thread panicked")?
    .with_context(|| format!("cannot run the fault command `{command}`"))?;
    anyhow::ensure!(
        status.success(),
        "the fault command `{command}` failed: {status}"
    );
    eprintln!("loadgen: the fault command finished");
    Ok(())
}

/// The `i`-th channel, round-robin.
fn pick(channels: &[Channel], i: usize) -> Channel {
    channels[i % channels.len()].clone()
}

/// Opens `count` separate HTTP/2 connections to `url`, from `source` when given (a
/// loopback address of this machine) or the system's choice.
async fn connect(
    url: &str,
    source: Option<std::net::IpAddr>,
    count: usize,
    call_timeout: Duration,
) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("`{url}` is not a valid endpoint"))?
        .local_address(source)
        .connect_timeout(Duration::from_secs(5))
        // A backstop for seeding calls; the load loop has its own deadline.
        .timeout(call_timeout + Duration::from_secs(1))
        .tcp_nodelay(true);
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        channels.push(endpoint.connect().await.with_context(|| match source {
            Some(source) => format!("cannot connect to {url} from {source}"),
            None => format!("cannot connect to {url}"),
        })?);
    }
    Ok(channels)
}

/// Waits until every URL answers health SERVING, or fails after `limit`.
async fn wait_ready(urls: &[&str], limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    for url in urls {
        loop {
            let error = match serving(url).await {
                Ok(()) => break,
                Err(error) => error,
            };
            if Instant::now() >= deadline {
                anyhow::bail!("{url} is not ready after {limit:?}: {error:#}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("{url} is serving");
    }
    Ok(())
}

async fn serving(url: &str) -> anyhow::Result<()> {
    let channel = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(1))
        .connect()
        .await?;
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner()
        .status;
    anyhow::ensure!(
        status == ServingStatus::Serving as i32,
        "health status is {}",
        ServingStatus::try_from(status).map_or("unknown", |s| s.as_str_name())
    );
    Ok(())
}

/// Times argon2id hashes here, with the server's parameters, for the login ceiling.
/// Like the server's hashing threads, it reuses one block buffer: a fresh 19 MiB buffer
/// per hash would add its page faults (several ms) to every measurement.
async fn time_hashes(permits: usize) -> anyhow::Result<HashTiming> {
    let median = tokio::task::spawn_blocking(|| -> anyhow::Result<Duration> {
        let argon2 = argon2::Argon2::default();
        let mut memory = vec![argon2::Block::default(); argon2::Params::DEFAULT.block_count()];
        let mut hash = |password: &[u8]| {
            let mut out = [0u8; argon2::Params::DEFAULT_OUTPUT_LEN];
            argon2
                .hash_password_into_with_memory(
                    password,
                    b"loadgen salt 16b",
                    &mut out,
                    &mut memory,
                )
                .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
        };
        hash(b"warm up the allocator")?;
        let mut times = Vec::with_capacity(HASH_SAMPLES);
        for _ in 0..HASH_SAMPLES {
            let started = std::time::Instant::now();
            hash(seed::PASSWORD.as_bytes())?;
            times.push(started.elapsed());
        }
        times.sort();
        Ok(times[HASH_SAMPLES / 2])
    })
    .await
    .context("the hashing task panicked")??;
    let hash_s = median.as_secs_f64();
    let timing = HashTiming {
        hash_ms_median: hash_s * 1e3,
        samples: HASH_SAMPLES,
        permits,
        login_ceiling_rps: permits as f64 / hash_s,
    };
    eprintln!(
        "argon2id: {:.1} ms per hash (median of {HASH_SAMPLES}); {permits} permit(s) → login ceiling {:.1}/s",
        timing.hash_ms_median, timing.login_ceiling_rps
    );
    Ok(timing)
}

fn write_json(path: &Path, report: &Report) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut json = serde_json::to_string_pretty(report).context("cannot encode the results")?;
    json.push('\n');
    std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))
}

/// A latency in microseconds, in a readable unit.
fn format_us(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{:.2}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

fn row(result: &ScenarioResult) -> String {
    let stats = &result.stats;
    let ratio = result
        .ratio_to_health
        .map_or_else(|| "-".to_owned(), |r| format!("{r:.3}"));
    format!(
        "{:<28} {:>9.1} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        result.scenario,
        stats.rps,
        format_us(stats.latency_us.p50),
        format_us(stats.latency_us.p90),
        format_us(stats.latency_us.p99),
        format_us(stats.latency_us.max),
        stats.error_count,
        ratio,
    )
}

fn error_list(stats: &Stats) -> String {
    stats
        .errors
        .iter()
        .map(|(code, count)| format!("{code}={count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn table(results: &[ScenarioResult], hash_timing: Option<HashTiming>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "scenario", "rps", "p50", "p90", "p99", "max", "errors", "×health"
    );
    for result in results {
        let _ = writeln!(out, "{}", row(result));
    }
    for result in results {
        if result.stats.error_count > 0 {
            let _ = writeln!(
                out,
                "  {} errors: {}",
                result.scenario,
                error_list(&result.stats)
            );
        }
        if let (Some(ratio), Some(timing)) = (result.ratio_to_login_ceiling, hash_timing) {
            let _ = writeln!(
                out,
                "  login: argon2id {:.1} ms/hash (local median of {}), {} permit(s) → ceiling {:.1} logins/s; measured {:.1}/s = {:.0}% of ceiling",
                timing.hash_ms_median,
                timing.samples,
                timing.permits,
                timing.login_ceiling_rps,
                result.stats.rps,
                ratio * 100.0
            );
        }
        if let Some(soak) = &result.soak {
            soak_table(&mut out, soak);
        }
        if let Some(flood) = &result.address_flood {
            let _ = writeln!(
                out,
                "  {}: user every 200 ms: idle {}/{} ok (p50 {}, p99 {}); under the flood {}/{} ok (p50 {}, p99 {})\n  flood: {} tasks from {}: {:.1} hashes/s cost, answers {}",
                result.scenario,
                flood.idle.ok,
                flood.idle.calls,
                format_us(flood.idle.latency_us.p50),
                format_us(flood.idle.latency_us.p99),
                result.stats.ok,
                result.stats.calls,
                format_us(result.stats.latency_us.p50),
                format_us(result.stats.latency_us.p99),
                flood.flood_concurrency,
                flood.flood_source,
                flood.flood_hashes_per_s,
                error_list(&flood.flood),
            );
        }
        if let Some(flood) = &result.login_flood {
            let _ = writeln!(
                out,
                "  {}: {} login tasks alongside: {:.1} logins/s (p50 {}, p99 {}), RESOURCE_EXHAUSTED {}{}",
                result.scenario,
                flood.login_concurrency,
                flood.login.rps,
                format_us(flood.login.latency_us.p50),
                format_us(flood.login.latency_us.p99),
                flood.resource_exhausted,
                if flood.login.error_count > flood.resource_exhausted {
                    format!(", all login errors: {}", error_list(&flood.login))
                } else {
                    String::new()
                }
            );
        }
    }
    out
}

/// The per-operation table of a soak, its sheds and its unexpected errors with examples.
fn soak_table(out: &mut String, soak: &soak::SoakReport) {
    let _ = writeln!(
        out,
        "\nsoak: {} tasks, each its own session of one of {} users; mix {}",
        soak.workers, soak.users, soak.mix
    );
    let _ = writeln!(
        out,
        "  {:<20} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>6}",
        "op", "weight", "calls", "ok", "rps", "p50", "p99", "max", "errors", "shed"
    );
    let line = |out: &mut String, name: &str, weight: Option<u32>, stats: &Stats, shed: u64| {
        let _ = writeln!(
            out,
            "  {:<20} {:>6} {:>9} {:>9} {:>9.1} {:>9} {:>9} {:>9} {:>7} {:>6}",
            name,
            weight.map_or_else(|| "-".to_owned(), |w| w.to_string()),
            stats.calls,
            stats.ok,
            stats.rps,
            format_us(stats.latency_us.p50),
            format_us(stats.latency_us.p99),
            format_us(stats.latency_us.max),
            stats.error_count,
            shed,
        );
    };
    for op in &soak.ops {
        line(out, op.op, op.weight, &op.stats, op.shed);
    }
    let shed_in_window = soak.ops.iter().map(|op| op.shed).sum();
    line(out, "total", None, &soak.total, shed_in_window);
    let _ = writeln!(
        out,
        "  logins shed (RESOURCE_EXHAUSTED, expected): {} in the window, {} in all",
        shed_in_window, soak.shed_total
    );
    if soak.during_fault_total > 0 {
        let _ = writeln!(
            out,
            "  UNAVAILABLE while the fault was injected (expected): {}",
            soak.during_fault_total
        );
    }
    let lost: Vec<String> = soak
        .lost_writes
        .iter()
        .map(|(kind, count)| format!("{kind}={count}"))
        .collect();
    let _ = writeln!(
        out,
        "  acknowledged writes checked after the run: {}, lost: {}",
        soak.verified_writes,
        if lost.is_empty() {
            "none".to_owned()
        } else {
            lost.join(", ")
        }
    );
    for example in &soak.lost_examples {
        let _ = writeln!(out, "      {example}");
    }
    let verdict = if soak.unexpected_errors == 0 {
        "PASS"
    } else {
        "FAIL"
    };
    let _ = writeln!(
        out,
        "  unexpected errors (warm-up and drain included): {} -> {verdict}",
        soak.unexpected_errors
    );
    for op in &soak.ops {
        if op.stats.error_count > 0 {
            let _ = writeln!(out, "    {}: {}", op.op, error_list(&op.stats));
        }
        if !op.errors_outside_window.is_empty() {
            let outside: Vec<String> = op
                .errors_outside_window
                .iter()
                .map(|(label, count)| format!("{label}={count}"))
                .collect();
            let _ = writeln!(out, "    {} (warm-up/drain): {}", op.op, outside.join(", "));
        }
        for (label, messages) in &op.error_examples {
            for message in messages {
                let _ = writeln!(out, "      {} {label}: {message}", op.op);
            }
        }
    }
}
