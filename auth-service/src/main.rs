use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    pair_common::telemetry::init();
    let config = auth_service::Config::parse();
    match auth_service::Application::build(config).await {
        Ok(app) => match app.run_until_stopped(pair_common::shutdown::signal()).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("auth-service stopped: {error:#}");
                std::process::ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("auth-service cannot start: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
