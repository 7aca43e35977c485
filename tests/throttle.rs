//! Login throttling: repeated failed logins of one username, and of one address across
//! many usernames, wait (RESOURCE_EXHAUSTED with RetryInfo), and a name that does not
//! exist is throttled like a real one.

mod support;

on_every_backend!(
    an_unknown_username_is_throttled_like_a_real_one,
    repeated_failed_logins_of_a_username_are_throttled_with_retry_info,
    one_address_failing_many_usernames_is_throttled_itself,
);

use std::time::Duration;

use support::*;
use tonic::Code;

fn retry_delay(status: &tonic::Status) -> Option<Duration> {
    use tonic_types::StatusExt as _;
    status.get_details_retry_info()?.retry_delay
}

async fn repeated_failed_logins_of_a_username_are_throttled_with_retry_info(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let (user, _) = register_and_login(&mut client, "brute").await;
    // Five free failures, and the sixth is still answered (and arms a 1 s wait).
    for _ in 0..6 {
        let status = login(&mut client, &user.username, "wrong guess!")
            .await
            .expect_err("wrong");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let throttled = login(&mut client, &user.username, PASSWORD)
        .await
        .expect_err("throttled");
    assert_eq!(
        throttled.code(),
        Code::ResourceExhausted,
        "even the right password waits"
    );
    let delay = retry_delay(&throttled).expect("RetryInfo");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(1),
        "{delay:?}"
    );
    // Other users are not affected.
    let (other, _) = register_and_login(&mut client, "bystander").await;
    login(&mut client, &other.username, PASSWORD)
        .await
        .expect("another user logs in");

    tokio::time::sleep(delay + Duration::from_millis(100)).await;
    login(&mut client, &user.username.to_uppercase(), PASSWORD)
        .await
        .expect("after the wait");
    // The success reset the username's count: the next failures are free again.
    for _ in 0..5 {
        let status = login(&mut client, &user.username, "wrong guess!")
            .await
            .expect_err("wrong");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
}

async fn one_address_failing_many_usernames_is_throttled_itself(backend: Backend) {
    let mut config = auth_config_on(backend).await;
    config.login_free_failures = 100;
    config.login_address_free_failures = 3;
    // The address counter is shared by everything from 127.0.0.1: call from an address
    // of our own, which starts from zero.
    let server = start_auth(config).await;
    let mut client = client_from(&server, fresh_loopback()).await;
    let (user, _) = register_and_login(&mut client, "victim").await;
    // Guesses at names that do not exist slow down no one: they do not count.
    for _ in 0..5 {
        let status = login(&mut client, &unique_name("nobody"), "wrong guess!")
            .await
            .expect_err("no");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // Failures against real accounts do.
    let mut targets = Vec::new();
    for _ in 0..4 {
        targets.push(register_and_login(&mut client, "target").await.0);
    }
    for target in &targets {
        let status = login(&mut client, &target.username, "wrong guess!")
            .await
            .expect_err("no");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let throttled = login(&mut client, &user.username, PASSWORD)
        .await
        .expect_err("address waits");
    assert_eq!(throttled.code(), Code::ResourceExhausted);
    assert!(retry_delay(&throttled).is_some());
}

async fn an_unknown_username_is_throttled_like_a_real_one(backend: Backend) {
    let server = spawn_auth_on(backend).await;
    let mut client = auth_client(&server).await;
    let nobody = unique_name("ghost");
    for _ in 0..6 {
        let status = login(&mut client, &nobody, "wrong guess!")
            .await
            .expect_err("no such user");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let throttled = login(&mut client, &nobody, "wrong guess!")
        .await
        .expect_err("throttled");
    assert_eq!(
        throttled.code(),
        Code::ResourceExhausted,
        "so throttling does not reveal which names exist"
    );
    assert!(retry_delay(&throttled).is_some());
}
