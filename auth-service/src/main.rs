//! auth-service: see `auth-service --help`; `auth-service healthcheck` probes a running one.

fn main() -> std::process::ExitCode {
    pair_common::runtime::block_on(
        "auth-service",
        pair_common::service::main::<auth_service::service::AuthCore>(),
    )
}
