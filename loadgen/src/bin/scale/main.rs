//! `scale`: how cost grows with state (issue 20; BENCHMARKS.md, "How cost grows with
//! state"). `bench/scale.sh` runs it against private Redis and PostgreSQL servers.

mod cli;
#[allow(dead_code)]
#[path = "../../harness.rs"]
mod harness;
mod per_user;
mod posts;
mod redis_state;
mod sessions;
mod util;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("scale: cannot start the Tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            cli::Command::Sessions(args) => sessions::run(args).await,
            cli::Command::Posts(args) => posts::run(args).await,
            cli::Command::UserSessions(args) => per_user::run(args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("scale: {error:#}");
            ExitCode::FAILURE
        }
    }
}
