//! `api-gateway`: the homework's REST API over the pair. Every setting is a `GATEWAY_*`
//! variable and a flag (`api-gateway --help`).

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc instead of glibc's malloc: see `src/main.rs` of `auth-blog`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = api_gateway::Config::parse();
    pair_common::runtime::block_on("api-gateway", async move {
        pair_common::telemetry::init();
        let app = match api_gateway::Application::build(config).await {
            Ok(app) => app,
            Err(error) => {
                eprintln!("api-gateway cannot start: {error:#}");
                return ExitCode::FAILURE;
            }
        };
        match app.run_until_stopped(pair_common::shutdown::signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("api-gateway stopped: {error:#}");
                ExitCode::FAILURE
            }
        }
    })
}
