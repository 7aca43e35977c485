//! `cargo run --release`: auth-service and blog-service in one process, configured from
//! the same AUTH_* and BLOG_* variables as their own binaries. With nothing configured
//! they run on SQLite files under ./data/ and an in-process token store. blog-service
//! still checks every token through a real gRPC Introspect call to auth-service.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use tokio::sync::watch;

/// Runs auth-service and blog-service together. Every setting is an environment
/// variable: see `auth-service --help` and `blog-service --help` (AUTH_*, BLOG_*).
/// When BLOG_AUTH_URL is unset, blog-service calls the auth-service started here.
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

    let auth = auth_service::Application::build(auth_config)
        .await
        .context("auth-service cannot start")?;
    if std::env::var_os("BLOG_AUTH_URL").is_none() {
        blog_config.auth_url = format!("http://{}", auth.local_addr());
    }
    let blog = blog_service::Application::build(blog_config)
        .await
        .context("blog-service cannot start")?;

    // One signal stops both; if either server fails, the other is stopped too.
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        pair_common::shutdown::signal().await;
        let _ = signal_stop.send(true);
    });
    // blog-service's calls in flight still need Introspect: auth-service stops only
    // once blog-service has finished them.
    let (blog_done, blog_finished) = watch::channel(false);
    let auth_stop = stop.clone();
    let auth_run = async move {
        let result = auth.run_until_stopped(until_stopped(blog_finished)).await;
        let _ = auth_stop.send(true);
        result.context("auth-service stopped")
    };
    let blog_run = async move {
        let result = blog.run_until_stopped(until_stopped(stopped)).await;
        let _ = blog_done.send(true);
        let _ = stop.send(true);
        result.context("blog-service stopped")
    };
    let (auth_result, blog_result) = tokio::join!(auth_run, blog_run);
    auth_result.and(blog_result)
}

/// The one line of a configuration error that names the variable and the reason.
fn config_error(error: clap::Error) -> anyhow::Error {
    let rendered = error.to_string();
    let line = rendered.lines().next().unwrap_or_default();
    anyhow::anyhow!("{}", line.trim_start_matches("error: "))
}
