//! `login-under-address-flood`: can one address lock everyone else out of logging in?
//! One seeded user logs in every `USER_PERIOD`, first alone (idle), then while
//! `--flood-concurrency` tasks connected from `--flood-source` log in with names that do
//! not exist, as fast as they are answered. Reported: the user's success rate and latency
//! in both phases, and what the flood got (each UNAUTHENTICATED answer cost the server
//! one hash; RESOURCE_EXHAUSTED ones cost none).
//!
//! The user logs in far more often than a person does (50 times in a 10 s phase), so each
//! phase's user connects from an address of its own (`USER_SOURCES`): its logins then
//! stay within one address's budget (60 hashes a minute by default) and measure the
//! flood, not the user's own limit. Two runs on one Redis within a minute share those
//! budgets.

use std::{net::IpAddr, time::Duration};

use pair_proto::auth::v1::{LoginRequest, auth_service_client::AuthServiceClient};
use serde::Serialize;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::{
    harness::{self, Caller, Failure, Stats, Tally, Window, failure},
    seed,
};

/// How often the user logs in: a person retrying, not a load.
const USER_PERIOD: Duration = Duration::from_millis(200);
/// Where the user connects from: idle, then under the flood.
const USER_SOURCES: [[u8; 4]; 2] = [[127, 0, 0, 3], [127, 0, 0, 4]];

/// What the scenario measured besides the user's logins under the flood.
#[derive(Clone, Debug, Serialize)]
pub struct AddressFlood {
    pub flood_source: IpAddr,
    pub flood_concurrency: usize,
    /// The user's logins with no flood.
    pub idle: Stats,
    /// The flood's own calls (errors by code: UNAUTHENTICATED, RESOURCE_EXHAUSTED).
    pub flood: Stats,
    /// Hashes the flood cost the server per second (its UNAUTHENTICATED answers).
    pub flood_hashes_per_s: f64,
    /// Share of the user's logins under the flood that succeeded.
    pub user_success_under_flood: f64,
}

/// One flooding task: a login of a new unknown name per call.
struct Guess {
    client: AuthServiceClient<Channel>,
    task: usize,
    next: u64,
}

impl Caller for Guess {
    async fn call(&mut self) -> Result<(), Failure> {
        self.next += 1;
        let username = format!("flood{}x{}", self.task, self.next);
        self.client
            .login(LoginRequest {
                username,
                password: "a guessed password".to_owned(),
            })
            .await
            .map(drop)
            .map_err(failure)
    }
}

/// The user logs in every `USER_PERIOD` until `until`.
async fn paced_logins(
    mut client: AuthServiceClient<Channel>,
    username: &str,
    until: Instant,
    call_timeout: Duration,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    while Instant::now() < until {
        let start = Instant::now();
        let login = client.login(LoginRequest {
            username: username.to_owned(),
            password: seed::PASSWORD.to_owned(),
        });
        match tokio::time::timeout(call_timeout, login).await {
            Ok(Ok(_)) => {
                let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                tally.latency.saturating_record(micros.max(1));
            }
            Ok(Err(status)) => *tally.errors.entry(failure(status)).or_default() += 1,
            Err(_) => *tally.errors.entry("CLIENT_TIMEOUT").or_default() += 1,
        }
        tokio::time::sleep_until(start + USER_PERIOD).await;
    }
    Ok(tally)
}

/// What one run needs.
pub struct Setup<'a> {
    pub auth_url: &'a str,
    pub username: &'a str,
    pub flood_source: IpAddr,
    pub flood_concurrency: usize,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub call_timeout: Duration,
}

/// Runs both phases; returns the user's logins under the flood and the rest.
pub async fn run(setup: Setup<'_>) -> anyhow::Result<(Stats, AddressFlood)> {
    let user = |source: [u8; 4]| async move {
        let channels =
            crate::connect(setup.auth_url, Some(source.into()), 1, setup.call_timeout).await?;
        anyhow::Ok(AuthServiceClient::new(channels[0].clone()))
    };
    let idle_started = Instant::now();
    let idle = paced_logins(
        user(USER_SOURCES[0]).await?,
        setup.username,
        idle_started + setup.duration,
        setup.call_timeout,
    )
    .await?
    .stats(setup.duration);

    let flood_channels = crate::connect(
        setup.auth_url,
        Some(setup.flood_source),
        setup.connections,
        setup.call_timeout,
    )
    .await?;
    let guesses = (0..setup.flood_concurrency)
        .map(|task| Guess {
            client: AuthServiceClient::new(flood_channels[task % flood_channels.len()].clone()),
            task,
            next: 0,
        })
        .collect();
    let user = user(USER_SOURCES[1]).await?;
    let window = Window::starting_now(setup.warmup, setup.duration, setup.call_timeout);
    let flooding = harness::spawn_all(guesses, window);
    tokio::time::sleep_until(window.measure_from).await;
    let user = paced_logins(user, setup.username, window.until, setup.call_timeout)
        .await?
        .stats(window.measured());
    let flood = harness::join_all(flooding).await?.stats(window.measured());

    let hashed = flood.errors.get("UNAUTHENTICATED").copied().unwrap_or(0);
    let report = AddressFlood {
        flood_source: setup.flood_source,
        flood_concurrency: setup.flood_concurrency,
        flood_hashes_per_s: hashed as f64 / window.measured().as_secs_f64(),
        user_success_under_flood: if user.calls == 0 {
            0.0
        } else {
            user.ok as f64 / user.calls as f64
        },
        idle,
        flood,
    };
    Ok((user, report))
}
