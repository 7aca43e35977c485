//! A service as its binary and its tests run it: `Application::build(config)` validates
//! the configuration, connects the stores and binds the listener; `run_until_stopped`
//! serves until the shutdown future resolves. [`main`] is the `main` of each service
//! binary: parse the configuration (environment + flags), build, serve until
//! SIGINT/SIGTERM. `<binary> healthcheck` instead asks the running server's health
//! service and exits 0 only if it is SERVING (for container healthchecks).

use std::{ffi::OsString, future::Future, net::SocketAddr, process::ExitCode};

use clap::Parser;

use crate::server::PreparedServer;

/// What the binary needs to know about a service; implemented by the service's
/// transport-free core.
pub trait Service: Sized {
    type Config: Parser;
    /// The binary's name, for messages.
    const NAME: &'static str;

    fn listen_addr(config: &Self::Config) -> SocketAddr;
    /// Where health is served on a listener of its own, if it is (`*_HEALTH_ADDR`).
    fn health_addr(config: &Self::Config) -> Option<SocketAddr>;
    /// Validates `config`, connects the stores (applying migrations) and binds the
    /// listener (port 0 picks a free port).
    fn build(config: Self::Config) -> impl Future<Output = anyhow::Result<Application<Self>>>;
}

/// A built service: stores connected, listener bound, not yet serving.
pub struct Application<C> {
    server: PreparedServer,
    core: C,
}

impl<C: Service> Application<C> {
    /// See [`Service::build`].
    pub async fn build(config: C::Config) -> anyhow::Result<Self> {
        C::build(config).await
    }
}

impl<C> Application<C> {
    pub fn new(server: PreparedServer, core: C) -> Self {
        Self { server, core }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Where `grpc.health.v1` is served on a listener of its own, if it is.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.server.health_addr()
    }

    /// Where `GET /metrics` is served, if the metrics address is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.metrics_addr()
    }

    /// The transport-free service, for in-process callers.
    pub fn core(&self) -> &C {
        &self.core
    }

    /// Serves until `shutdown` resolves, then finishes the calls in flight.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        self.server.run_until_stopped(shutdown).await
    }
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
        let addr = S::health_addr(&config).unwrap_or_else(|| S::listen_addr(&config));
        return match crate::health::check(addr).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("{} healthcheck: {error:#}", S::NAME);
                ExitCode::FAILURE
            }
        };
    }
    crate::telemetry::init();
    let app = match Application::<S>::build(config).await {
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
