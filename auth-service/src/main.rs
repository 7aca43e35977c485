//! auth-service: see `auth-service --help`; `auth-service healthcheck` probes a running one.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    pair_common::service::main::<auth_service::Application>().await
}
