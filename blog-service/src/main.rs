//! blog-service: see `blog-service --help`; `blog-service healthcheck` probes a running one.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    pair_common::service::main::<blog_service::Application>().await
}
