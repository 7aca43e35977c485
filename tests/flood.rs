//! One address must not lock everyone out of logging in: floods of Login and Register
//! from one client address while a user at another address logs in, with the
//! per-address limits at their defaults. Each test connects from loopback addresses of
//! its own (the kernel routes all of 127.0.0.0/8), drawn at random, so its counters in
//! the shared Redis are its own.

mod support;

on_every_backend!(
    a_login_flood_from_one_address_leaves_another_address_logging_in_promptly,
    a_register_flood_from_one_address_leaves_another_address_logging_in_promptly,
    under_a_flood_a_real_and_an_unknown_name_get_the_same_answer,
    a_forwarded_address_counts_only_from_a_trusted_proxy,
);

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser as _;
use pair_proto::auth::v1::{self as pb, auth_service_client::AuthServiceClient};
use support::*;
use tonic::{Code, Request, Status, transport::Channel};
use tonic_types::StatusExt as _;

/// How many calls the flooding address keeps in flight.
const FLOOD: usize = 128;
/// The user's logins during the flood, one every `LOGIN_EVERY`.
const USER_LOGINS: usize = 15;
const LOGIN_EVERY: Duration = Duration::from_millis(200);

/// auth-service on `backend` with the per-address limits at their defaults.
async fn defended(backend: Backend) -> auth_service::Config {
    let defaults = auth_service::Config::parse_from(["auth-service"]);
    let mut config = auth_config_on(backend).await;
    config.address_hashes_in_flight = defaults.address_hashes_in_flight;
    config.address_hash_limit = defaults.address_hash_limit;
    config.address_hash_window = defaults.address_hash_window;
    config.address_registration_limit = defaults.address_registration_limit;
    config.address_registration_window = defaults.address_registration_window;
    assert!(config.address_hashes_in_flight > 0 && config.address_hash_limit > 0);
    config
}

fn login_request(username: &str, password: &str) -> pb::LoginRequest {
    pb::LoginRequest {
        username: username.into(),
        password: password.into(),
    }
}

fn register_request(username: &str) -> pb::RegisterRequest {
    pb::RegisterRequest {
        username: username.into(),
        email: format!("{username}@example.com"),
        password: PASSWORD.into(),
    }
}

/// What the flooding address got back.
#[derive(Debug, Default)]
struct FloodAnswers {
    /// Answers that cost a hash (UNAUTHENTICATED for a login, OK or ALREADY_EXISTS for a
    /// registration).
    hashed: usize,
    /// RESOURCE_EXHAUSTED answers, and how many of them carried a retry delay.
    refused: usize,
    refused_with_delay: usize,
    other: Vec<Status>,
}

/// A registered user at an address of its own, logging in every `LOGIN_EVERY` while
/// `flood` (a call the flooding address makes over and over from `FLOOD` tasks) runs.
/// Returns the user's login latencies (`None` for a failed login) and the flood's answers.
async fn flood_while_a_user_logs_in<F, Fut>(
    backend: Backend,
    flood: F,
) -> (Vec<Option<Duration>>, FloodAnswers)
where
    F: Fn(AuthServiceClient<Channel>, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), Status>> + Send,
{
    let server = start_auth(defended(backend).await).await;
    let (user_address, flood_address) = (fresh_loopback(), fresh_loopback());
    let mut user = client_from(&server, user_address).await;
    let name = unique_name("victim");
    user.register(register_request(&name))
        .await
        .expect("register");

    let attacker = client_from(&server, flood_address).await;
    let stop = Arc::new(AtomicBool::new(false));
    let flood = Arc::new(flood);
    let tasks: Vec<_> = (0..FLOOD)
        .map(|task| {
            let (client, stop, flood) = (attacker.clone(), stop.clone(), flood.clone());
            tokio::spawn(async move {
                let mut answers = FloodAnswers::default();
                let mut call = 0;
                while !stop.load(Ordering::Relaxed) {
                    call += 1;
                    match flood(client.clone(), task * 1_000_000 + call).await {
                        Ok(()) => answers.hashed += 1,
                        Err(status)
                            if matches!(
                                status.code(),
                                Code::Unauthenticated | Code::AlreadyExists
                            ) =>
                        {
                            answers.hashed += 1;
                        }
                        Err(status) if status.code() == Code::ResourceExhausted => {
                            answers.refused += 1;
                            if status
                                .get_details_retry_info()
                                .and_then(|info| info.retry_delay)
                                .is_some_and(|delay| delay > Duration::ZERO)
                            {
                                answers.refused_with_delay += 1;
                            }
                        }
                        Err(status) => answers.other.push(status),
                    }
                }
                answers
            })
        })
        .collect();

    // Let the flood fill every queue it can, then log in as the user.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut latencies = Vec::with_capacity(USER_LOGINS);
    for _ in 0..USER_LOGINS {
        let began = Instant::now();
        let login = user.login(login_request(&name, PASSWORD)).await;
        latencies.push(login.is_ok().then(|| began.elapsed()));
        if let Err(status) = &login {
            eprintln!("the user's login failed under the flood: {status:?}");
        }
        tokio::time::sleep(LOGIN_EVERY.saturating_sub(began.elapsed())).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = FloodAnswers::default();
    for task in tasks {
        let answers = task.await.expect("flood task");
        total.hashed += answers.hashed;
        total.refused += answers.refused;
        total.refused_with_delay += answers.refused_with_delay;
        total.other.extend(answers.other);
    }
    (latencies, total)
}

/// The user logged in at least 14 times of 15, with a p90 under a second, and the flood
/// was refused with retry delays and cost at most its budget of hashes.
fn assert_the_user_got_in(latencies: &[Option<Duration>], flood: &FloodAnswers, budget: usize) {
    let mut ok: Vec<Duration> = latencies.iter().flatten().copied().collect();
    ok.sort();
    eprintln!(
        "user logins: {} of {}, latencies {ok:?}; flood: {} hashed, {} refused",
        ok.len(),
        latencies.len(),
        flood.hashed,
        flood.refused
    );
    assert!(
        ok.len() >= 14,
        "only {} of {} logins",
        ok.len(),
        latencies.len()
    );
    let p90 = ok[(ok.len() * 9).div_ceil(10) - 1];
    assert!(p90 < Duration::from_secs(1), "p90 {p90:?}");
    assert!(
        flood.other.is_empty(),
        "unexpected answers: {:?}",
        flood.other
    );
    assert!(flood.refused > 0, "the flood was never refused");
    assert_eq!(
        flood.refused_with_delay, flood.refused,
        "a refusal without RetryInfo"
    );
    assert!(
        flood.hashed <= budget,
        "the flood cost {} hashes, more than its budget of {budget}",
        flood.hashed
    );
}

async fn a_login_flood_from_one_address_leaves_another_address_logging_in_promptly(
    backend: Backend,
) {
    let (latencies, flood) = flood_while_a_user_logs_in(backend, |mut client, call| async move {
        let name = format!("nobody{call}");
        client
            .login(login_request(&name, "some guessed password"))
            .await
            .map(drop)
    })
    .await;
    let defaults = auth_service::Config::parse_from(["auth-service"]);
    assert_the_user_got_in(&latencies, &flood, defaults.address_hash_limit as usize);
}

async fn a_register_flood_from_one_address_leaves_another_address_logging_in_promptly(
    backend: Backend,
) {
    let (latencies, flood) = flood_while_a_user_logs_in(backend, |mut client, _| async move {
        client
            .register(register_request(&unique_name("spam")))
            .await
            .map(drop)
    })
    .await;
    let defaults = auth_service::Config::parse_from(["auth-service"]);
    // Every registration that got as far as hashing counts toward the address's
    // registrations; no more accounts than that were made.
    assert_the_user_got_in(
        &latencies,
        &flood,
        defaults.address_registration_limit as usize,
    );
}

/// The code, the message with its numbers taken out, and whether it has a retry delay.
fn answer_shape(status: &Status) -> (Code, String, bool) {
    let message: String = status
        .message()
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect();
    let delay = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .is_some();
    (status.code(), message, delay)
}

async fn under_a_flood_a_real_and_an_unknown_name_get_the_same_answer(backend: Backend) {
    let mut config = defended(backend).await;
    config.address_hash_limit = 5;
    let server = start_auth(config).await;
    let mut client = client_from(&server, fresh_loopback()).await;
    let name = unique_name("real");
    client
        .register(register_request(&name))
        .await
        .expect("register");
    // Spend the address's budget on names that do not exist.
    let mut refused = None;
    for call in 0..20 {
        let status = client
            .login(login_request(&format!("ghost{call}"), "guessing away"))
            .await
            .expect_err("no such user");
        if status.code() == Code::ResourceExhausted {
            refused = Some(status);
            break;
        }
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let refused = refused.expect("the address was never refused");
    let real_wrong = client
        .login(login_request(&name, "not the password"))
        .await
        .expect_err("over budget");
    let real_right = client
        .login(login_request(&name, PASSWORD))
        .await
        .expect_err("over budget, even with the right password");
    let unknown = client
        .login(login_request(&unique_name("ghost"), "whatever it is"))
        .await
        .expect_err("over budget");
    let shape = answer_shape(&refused);
    assert_eq!(shape.0, Code::ResourceExhausted);
    assert!(shape.2, "no retry delay: {refused:?}");
    for other in [&real_wrong, &real_right, &unknown] {
        assert_eq!(answer_shape(other), shape, "{other:?}");
    }
}

/// A login of an unknown name from `client`, as if forwarded for `forwarded`.
async fn guess(client: &mut AuthServiceClient<Channel>, forwarded: Option<&str>) -> Code {
    let mut request = Request::new(login_request(&unique_name("ghost"), "a guess at it"));
    if let Some(forwarded) = forwarded {
        request
            .metadata_mut()
            .insert("x-forwarded-for", forwarded.parse().expect("ascii"));
    }
    match client.login(request).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn a_forwarded_address_counts_only_from_a_trusted_proxy(backend: Backend) {
    const BUDGET: usize = 3;
    let (proxy_address, stranger_address) = (fresh_loopback(), fresh_loopback());
    let mut config = defended(backend).await;
    config.address_hash_limit = BUDGET as u32;
    config.trusted_proxies = vec![proxy_address.to_string()];
    let server = start_auth(config).await;
    let mut proxy = client_from(&server, proxy_address).await;
    let mut stranger = client_from(&server, stranger_address).await;
    let (a, b, c) = (
        fresh_loopback().to_string(),
        fresh_loopback().to_string(),
        fresh_loopback().to_string(),
    );

    // Through the trusted proxy each forwarded client has a budget of its own.
    for _ in 0..BUDGET {
        assert_eq!(guess(&mut proxy, Some(&a)).await, Code::Unauthenticated);
    }
    assert_eq!(guess(&mut proxy, Some(&a)).await, Code::ResourceExhausted);
    assert_eq!(guess(&mut proxy, Some(&b)).await, Code::Unauthenticated);
    // A client that writes its own x-forwarded-for is not believed: the proxy appends
    // the address it saw, and that is what counts.
    assert_eq!(
        guess(&mut proxy, Some(&format!("{b}, {a}"))).await,
        Code::ResourceExhausted
    );

    // Malformed forwarding counts against the proxy itself, never a fresh address.
    for _ in 0..BUDGET {
        assert_eq!(
            guess(&mut proxy, Some("not an address")).await,
            Code::Unauthenticated
        );
    }
    assert_eq!(guess(&mut proxy, None).await, Code::ResourceExhausted);
    assert_eq!(guess(&mut proxy, Some(&c)).await, Code::Unauthenticated);

    // From a peer that is not trusted, x-forwarded-for changes nothing.
    for _ in 0..BUDGET {
        let fresh = fresh_loopback().to_string();
        assert_eq!(
            guess(&mut stranger, Some(&fresh)).await,
            Code::Unauthenticated
        );
    }
    let fresh = fresh_loopback().to_string();
    assert_eq!(
        guess(&mut stranger, Some(&fresh)).await,
        Code::ResourceExhausted
    );
}
