//! `grpc.health.v1.Health` that follows the stores: a probe runs every 500 ms, so the
//! status flips within 2 s of a store going away or coming back (docs/ARCHITECTURE.md, "Failure behaviour").

use std::{future::Future, time::Duration};

use tonic_health::{ServingStatus, server::HealthReporter};

const PROBE_INTERVAL: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Reports `""` and each of `services` as SERVING while `probe` succeeds, NOT_SERVING
/// otherwise, until the returned task is aborted.
pub fn spawn_monitor<P, F>(
    reporter: HealthReporter,
    services: &'static [&'static str],
    probe: P,
) -> tokio::task::JoinHandle<()>
where
    P: Fn() -> F + Send + 'static,
    F: Future<Output = Result<(), String>> + Send,
{
    tokio::spawn(async move {
        let mut last: Option<bool> = None;
        let mut ticker = tokio::time::interval(PROBE_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let healthy = match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
                Ok(Ok(())) => true,
                Ok(Err(reason)) => {
                    if last != Some(false) {
                        tracing::warn!(%reason, "a store is unreachable: NOT_SERVING");
                    }
                    false
                }
                Err(_) => {
                    if last != Some(false) {
                        tracing::warn!("a store did not answer in time: NOT_SERVING");
                    }
                    false
                }
            };
            if last == Some(healthy) {
                continue;
            }
            if healthy && last.is_some() {
                tracing::info!("stores reachable again: SERVING");
            }
            let status = if healthy {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for name in std::iter::once("").chain(services.iter().copied()) {
                reporter.set_service_status(name, status).await;
            }
            last = Some(healthy);
        }
    })
}

/// The `healthcheck` subcommand of each binary (for container healthchecks): asks the
/// server listening on `listen_addr` for the overall (`""`) status. An unspecified
/// listen address (`0.0.0.0`, `::`) is reached through loopback.
pub async fn check(listen_addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus as Wire,
        health_client::HealthClient,
    };
    let mut addr = listen_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {addr}: {e}"))?;
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner()
        .status;
    anyhow::ensure!(
        status == Wire::Serving as i32,
        "{addr} is not serving (status {status})"
    );
    Ok(())
}
