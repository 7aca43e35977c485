//! auth-service: see `auth-service --help`; `auth-service healthcheck` probes a running one.

/// mimalloc instead of glibc's malloc: see `src/main.rs` of `auth-blog`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pair_common::runtime::block_on(
        "auth-service",
        pair_common::service::main::<auth_service::service::AuthCore>(),
    )
}
