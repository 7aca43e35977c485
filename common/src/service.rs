//! The `main` of each service binary: parse the configuration (environment + flags),
//! build, serve until SIGINT/SIGTERM. `<binary> healthcheck` instead asks the running
//! server's health service and exits 0 only if it is SERVING (for container
//! healthchecks).

use std::{ffi::OsString, future::Future, net::SocketAddr, process::ExitCode};

use clap::Parser;

/// What a service binary needs to know about its service.
pub trait Service: Sized {
    type Config: Parser;
    /// The binary's name, for messages.
    const NAME: &'static str;

    fn listen_addr(config: &Self::Config) -> SocketAddr;
    fn build(config: Self::Config) -> impl Future<Output = anyhow::Result<Self>>;
    fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> impl Future<Output = anyhow::Result<()>>;
}

/// Runs service `S` as a process.
pub async fn main<S: Service>() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let healthcheck = args.get(1).is_some_and(|arg| arg == "healthcheck");
    if healthcheck {
        args.remove(1);
    }
    let config = S::Config::parse_from(args);
    if healthcheck {
        return match crate::health::check(S::listen_addr(&config)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("{} healthcheck: {error:#}", S::NAME);
                ExitCode::FAILURE
            }
        };
    }
    crate::telemetry::init();
    let app = match S::build(config).await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("{} cannot start: {error:#}", S::NAME);
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped(crate::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{} stopped: {error:#}", S::NAME);
            ExitCode::FAILURE
        }
    }
}
