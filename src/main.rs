//! `cargo run --release`: auth-service, blog-service and the REST api-gateway in one
//! process, configured from the same AUTH_*, BLOG_* and GATEWAY_* variables as their own
//! binaries. With nothing configured they run on SQLite files under ./data/ and an
//! in-process token store. blog-service still checks every token through a real gRPC
//! Introspect call to auth-service, and the gateway calls both over gRPC.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use tokio::sync::watch;

/// mimalloc instead of glibc's malloc, in every binary of the pair: under the REST load
/// glibc's malloc took about a fifth of the process's CPU, much of it waiting on its
/// arena locks; with mimalloc `GET /api/v1/posts` went from 8.8k to 15.4k calls/s
/// (BENCHMARKS.md, "The REST gateway").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs auth-service, blog-service and api-gateway together. Every setting is an
/// environment variable: see `auth-service --help`, `blog-service --help` and
/// `api-gateway --help` (AUTH_*, BLOG_*, GATEWAY_*). When BLOG_AUTH_URL,
/// GATEWAY_AUTH_URL or GATEWAY_BLOG_URL is unset, the servers started here are called.
#[derive(Debug, clap::Parser)]
#[command(name = "auth-blog", version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _ = Cli::parse();
    pair_common::runtime::block_on("auth-blog", async {
        pair_common::telemetry::init();
        match run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("auth-blog: {error:#}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn run() -> anyhow::Result<()> {
    let auth_config =
        auth_service::Config::try_parse_from(["auth-service"]).map_err(config_error)?;
    let mut blog_config =
        blog_service::Config::try_parse_from(["blog-service"]).map_err(config_error)?;
    let mut gateway_config =
        api_gateway::Config::try_parse_from(["api-gateway"]).map_err(config_error)?;
    gateway_config.validate().map_err(anyhow::Error::msg)?;

    let auth = auth_service::Application::build(auth_config)
        .await
        .context("auth-service cannot start")?;
    if std::env::var_os("BLOG_AUTH_URL").is_none() {
        blog_config.auth_url = format!("http://{}", auth.local_addr());
    }
    if std::env::var_os("GATEWAY_AUTH_URL").is_none() {
        gateway_config.auth_url = format!("http://{}", auth.local_addr());
    }
    let blog = blog_service::Application::build(blog_config)
        .await
        .context("blog-service cannot start")?;
    if std::env::var_os("GATEWAY_BLOG_URL").is_none() {
        gateway_config.blog_url = format!("http://{}", blog.local_addr());
    }
    let gateway = api_gateway::Application::build(gateway_config)
        .await
        .context("api-gateway cannot start")?;

    // One signal stops all three; if any server fails, the others are stopped too. They
    // stop in the order calls flow: the gateway's requests in flight still need both
    // services, and blog-service's still need Introspect.
    let (stop, stopped) = watch::channel(false);
    let until = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        pair_common::shutdown::signal().await;
        let _ = signal_stop.send(true);
    });
    let (gateway_done, gateway_finished) = watch::channel(false);
    let (blog_done, blog_finished) = watch::channel(false);
    let gateway_stop = stop.clone();
    let gateway_run = async move {
        let result = gateway.run_until_stopped(until(stopped)).await;
        let _ = gateway_done.send(true);
        let _ = gateway_stop.send(true);
        result.context("api-gateway stopped")
    };
    let blog_stop = stop.clone();
    let blog_run = async move {
        let result = blog.run_until_stopped(until(gateway_finished)).await;
        let _ = blog_done.send(true);
        let _ = blog_stop.send(true);
        result.context("blog-service stopped")
    };
    let auth_run = async move {
        let result = auth.run_until_stopped(until(blog_finished)).await;
        let _ = stop.send(true);
        result.context("auth-service stopped")
    };
    let (auth_result, blog_result, gateway_result) = tokio::join!(auth_run, blog_run, gateway_run);
    auth_result.and(blog_result).and(gateway_result)
}

/// The one line of a configuration error that names the variable and the reason.
fn config_error(error: clap::Error) -> anyhow::Error {
    let rendered = error.to_string();
    let line = rendered.lines().next().unwrap_or_default();
    anyhow::anyhow!("{}", line.trim_start_matches("error: "))
}
