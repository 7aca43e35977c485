//! Connections, health as the yardstick, JSON output.

use std::{path::Path, time::Duration};

use anyhow::Context as _;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    cli::Load,
    harness::{self, Caller, Failure, Stats, failure},
};

pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn connect(url: &str, count: usize) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .tcp_nodelay(true);
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        channels.push(
            endpoint
                .connect()
                .await
                .with_context(|| format!("cannot connect to {url}"))?,
        );
    }
    // Waits for SERVING (a service that just started may still be connecting its stores).
    let mut client = HealthClient::new(channels[0].clone());
    for _ in 0..100 {
        let status = client
            .check(HealthCheckRequest::default())
            .await
            .map(|r| r.into_inner().status);
        if status.is_ok_and(|s| s == ServingStatus::Serving as i32) {
            return Ok(channels);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{url} is not SERVING after 10 s")
}

pub fn pick(channels: &[Channel], i: usize) -> Channel {
    channels[i % channels.len()].clone()
}

pub struct Health(pub HealthClient<Channel>);

impl Caller for Health {
    async fn call(&mut self) -> Result<(), Failure> {
        let response = self
            .0
            .check(HealthCheckRequest::default())
            .await
            .map_err(failure)?;
        if response.into_inner().status == ServingStatus::Serving as i32 {
            Ok(())
        } else {
            Err("NOT_SERVING")
        }
    }
}

/// `grpc.health.v1.Health/Check` at the load's concurrency: the yardstick of the run.
pub async fn health(channels: &[Channel], load: &Load) -> anyhow::Result<Stats> {
    let callers = (0..load.concurrency)
        .map(|i| Health(HealthClient::new(pick(channels, i))))
        .collect();
    harness::run(callers, load.warmup, load.duration, CALL_TIMEOUT).await
}

pub fn write_json(path: Option<&Path>, report: &impl Serialize) -> anyhow::Result<()> {
    let Some(path) = path else { return Ok(()) };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut json = serde_json::to_string_pretty(report)?;
    json.push('\n');
    std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
