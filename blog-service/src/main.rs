//! blog-service: see `blog-service --help`; `blog-service healthcheck` probes a running one.

fn main() -> std::process::ExitCode {
    pair_common::runtime::block_on(
        "blog-service",
        pair_common::service::main::<blog_service::service::BlogCore>(),
    )
}
