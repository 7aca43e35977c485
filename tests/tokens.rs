//! Black-box tests of the token contract that issue 17 added (docs/ARCHITECTURE.md, "Tokens and sessions"): the refresh
//! retry window, several signing keys with a `kid` on every token, EdDSA and the JWK Set
//! of ListKeys, and forged tokens. Real servers, real PostgreSQL and Redis.

mod support;

on_every_backend!(
    of_eight_concurrent_refreshes_of_one_token_all_get_one_pair_and_nothing_is_revoked,
    a_retry_within_the_window_answers_the_same_pair_again,
    a_retry_after_the_window_revokes_the_session,
    a_retry_after_the_new_pair_moved_on_revokes_the_session,
    a_retry_after_logout_is_refused_and_revives_nothing,
    with_a_zero_window_a_refresh_token_is_strictly_single_use,
    tokens_are_signed_by_the_first_ed25519_key_and_list_keys_publishes_it,
    with_secrets_only_list_keys_is_empty_and_tokens_carry_the_first_secrets_kid,
    forged_tokens_are_not_active_and_authenticate_nothing,
);

use std::{path::PathBuf, process::Command, time::Duration};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use pair_proto::auth::v1::{self as pb};
use redis::AsyncCommands as _;
use support::*;
use tonic::Code;

const SECRET_A: &str = "secret-a-secret-a-secret-a-secret-a-secret-a";
const SECRET_B: &str = "secret-b-secret-b-secret-b-secret-b-secret-b";

async fn with_window(backend: Backend, window: Duration) -> Running {
    let mut config = auth_config_on(backend).await;
    config.refresh_retry_window = window;
    start_auth(config).await
}

/// Whether `pair` is live: its access token is active and it can itself be refreshed.
async fn assert_live(server: &Running, pair: &pb::TokenPair) {
    assert!(is_active(server, &pair.access_token).await);
    let mut client = auth_client(server).await;
    client
        .get_profile(authed(&pair.access_token, pb::GetProfileRequest {}))
        .await
        .expect("the pair authenticates");
}

/// The session of `pair` is revoked: nothing of it is active or refreshable.
async fn assert_revoked(server: &Running, pair: &pb::TokenPair) {
    assert!(!is_active(server, &pair.access_token).await);
    assert_refresh_refused(server, &pair.refresh_token, "the session is revoked").await;
}

async fn of_eight_concurrent_refreshes_of_one_token_all_get_one_pair_and_nothing_is_revoked(
    backend: Backend,
) {
    let server = with_window(backend, Duration::from_secs(10)).await;
    let mut client = auth_client(&server).await;
    let (_, tokens) = register_and_login(&mut client, "tabs").await;
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let mut client = client.clone();
            let refresh_token = tokens.refresh_token.clone();
            tokio::spawn(async move { client.refresh(pb::RefreshRequest { refresh_token }).await })
        })
        .collect();
    let mut pairs = Vec::new();
    for call in calls {
        let pair = call
            .await
            .expect("task")
            .expect("every tab gets a pair")
            .into_inner()
            .tokens
            .expect("tokens");
        pairs.push(pair);
    }
    assert!(pairs.iter().all(|pair| *pair == pairs[0]), "{pairs:#?}");
    assert_ne!(pairs[0].refresh_token, tokens.refresh_token);
    assert!(!is_active(&server, &tokens.access_token).await);
    assert_live(&server, &pairs[0]).await;
    let next = refresh(&server, &pairs[0].refresh_token)
        .await
        .expect("the one pair refreshes");
    assert_live(&server, &next).await;
}

async fn a_retry_within_the_window_answers_the_same_pair_again(backend: Backend) {
    let server = with_window(backend, Duration::from_secs(10)).await;
    let mut client = auth_client(&server).await;
    let (_, tokens) = register_and_login(&mut client, "retry").await;
    let first = refresh(&server, &tokens.refresh_token)
        .await
        .expect("refresh");
    for _ in 0..2 {
        let again = refresh(&server, &tokens.refresh_token)
            .await
            .expect("a retry within the window");
        assert_eq!(again, first, "byte-identical tokens");
    }
    assert_live(&server, &first).await;
    assert!(!is_active(&server, &tokens.access_token).await);
}

async fn a_retry_after_the_window_revokes_the_session(backend: Backend) {
    let server = with_window(backend, Duration::from_secs(1)).await;
    let mut client = auth_client(&server).await;
    let (_, tokens) = register_and_login(&mut client, "late").await;
    let first = refresh(&server, &tokens.refresh_token)
        .await
        .expect("refresh");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_live(&server, &first).await;
    assert_refresh_refused(
        &server,
        &tokens.refresh_token,
        "past the window it is theft",
    )
    .await;
    assert_revoked(&server, &first).await;
}

async fn a_retry_after_the_new_pair_moved_on_revokes_the_session(backend: Backend) {
    let server = with_window(backend, Duration::from_secs(10)).await;
    let mut client = auth_client(&server).await;
    // Rotated again by Refresh.
    let (user, tokens) = register_and_login(&mut client, "moved").await;
    let first = refresh(&server, &tokens.refresh_token)
        .await
        .expect("refresh");
    let second = refresh(&server, &first.refresh_token)
        .await
        .expect("refresh the new pair");
    assert_refresh_refused(
        &server,
        &tokens.refresh_token,
        "the pair it would answer moved on",
    )
    .await;
    assert_revoked(&server, &second).await;

    // Rotated again by UpdateProfile.
    let other = client
        .login(pb::LoginRequest {
            username: user.username.clone(),
            password: PASSWORD.into(),
        })
        .await
        .expect("login")
        .into_inner()
        .tokens
        .expect("tokens");
    let first = refresh(&server, &other.refresh_token)
        .await
        .expect("refresh");
    let updated = client
        .update_profile(authed(
            &first.access_token,
            pb::UpdateProfileRequest {
                username: None,
                email: Some(format!("moved-{}@example.com", unique_name("e"))),
            },
        ))
        .await
        .expect("update profile")
        .into_inner()
        .tokens
        .expect("tokens");
    assert_refresh_refused(
        &server,
        &other.refresh_token,
        "the pair it would answer was rotated by UpdateProfile",
    )
    .await;
    assert_revoked(&server, &updated).await;
}

async fn a_retry_after_logout_is_refused_and_revives_nothing(backend: Backend) {
    let server = with_window(backend, Duration::from_secs(10)).await;
    let mut client = auth_client(&server).await;
    let (_, tokens) = register_and_login(&mut client, "gone").await;
    let first = refresh(&server, &tokens.refresh_token)
        .await
        .expect("refresh");
    client
        .logout(authed(&first.access_token, pb::LogoutRequest {}))
        .await
        .expect("logout");
    assert_refresh_refused(
        &server,
        &tokens.refresh_token,
        "the pair it would answer was logged out",
    )
    .await;
    assert_revoked(&server, &first).await;
}

async fn with_a_zero_window_a_refresh_token_is_strictly_single_use(backend: Backend) {
    let server = with_window(backend, Duration::ZERO).await;
    let mut client = auth_client(&server).await;
    let (_, tokens) = register_and_login(&mut client, "once").await;
    let first = refresh(&server, &tokens.refresh_token)
        .await
        .expect("refresh");
    assert_refresh_refused(
        &server,
        &tokens.refresh_token,
        "an immediate retry is theft",
    )
    .await;
    assert_revoked(&server, &first).await;
}

// ---- signing keys ------------------------------------------------------------------

/// A new Ed25519 private key in PEM (PKCS#8), as an operator makes one.
fn ed25519_key(dir: &TempDir, name: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&path)
        .status()
        .expect("openssl is required to make Ed25519 keys");
    assert!(status.success(), "openssl genpkey failed");
    path
}

fn header_of(token: &str) -> serde_json::Value {
    let header = token.split('.').next().expect("header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json")
}

fn kid_of(token: &str) -> String {
    header_of(token)["kid"]
        .as_str()
        .expect("every token has a kid")
        .to_owned()
}

/// The `kid` auth-service gives `secret`.
fn secret_kid(secret: &str) -> String {
    auth_service::keys::KeySet::load(&[secret.as_bytes()], &[])
        .expect("key")
        .signer()
        .kid()
        .to_owned()
}

async fn list_keys(server: &Running) -> serde_json::Value {
    let jwks = introspection_client(server)
        .await
        .list_keys(pb::ListKeysRequest {})
        .await
        .expect("list keys")
        .into_inner()
        .jwks;
    serde_json::from_str(&jwks).expect("a JWK Set is JSON")
}

async fn tokens_are_signed_by_the_first_ed25519_key_and_list_keys_publishes_it(backend: Backend) {
    let dir = TempDir::new("ed25519");
    let (first, second) = (
        ed25519_key(&dir, "first.pem"),
        ed25519_key(&dir, "second.pem"),
    );
    let mut config = auth_config_on(backend).await;
    config.jwt_secret = Some(SECRET_A.into());
    config.jwt_private_keys = Some(format!("{},{}", first.display(), second.display()));
    let server = start_auth(config).await;
    let mut client = auth_client(&server).await;
    let (_, tokens) = register_and_login(&mut client, "eddsa").await;

    let jwks = list_keys(&server).await;
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "both key files, never the secret: {jwks}");
    for key in keys {
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert!(key.get("d").is_none(), "never the private half");
        // RFC 7638 thumbprint of the public key.
        let x = key["x"].as_str().expect("x");
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let digest = sha256(canonical.as_bytes());
        assert_eq!(key["kid"], URL_SAFE_NO_PAD.encode(digest));
    }
    assert!(!jwks.to_string().contains(&secret_kid(SECRET_A)));

    let header = header_of(&tokens.access_token);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], keys[0]["kid"]);
    // The published key checks the token.
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(keys[0].clone()).expect("jwk");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_issuer(&["auth-service"]);
    jsonwebtoken::decode::<serde_json::Value>(
        &tokens.access_token,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("key"),
        &validation,
    )
    .expect("the token verifies with the published key");
    assert!(is_active(&server, &tokens.access_token).await);
}

/// SHA-256 by openssl, apart from the code under test.
fn sha256(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-binary"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("write");
    child.wait_with_output().expect("digest").stdout
}

async fn with_secrets_only_list_keys_is_empty_and_tokens_carry_the_first_secrets_kid(
    backend: Backend,
) {
    let mut config = auth_config_on(backend).await;
    config.jwt_secret = Some(format!("{SECRET_A},{SECRET_B}"));
    let server = start_auth(config).await;
    let mut client = auth_client(&server).await;
    let (_, tokens) = register_and_login(&mut client, "hs").await;
    assert_eq!(list_keys(&server).await, serde_json::json!({ "keys": [] }));
    let header = header_of(&tokens.access_token);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["kid"], secret_kid(SECRET_A));
    assert_ne!(secret_kid(SECRET_A), secret_kid(SECRET_B));
}

// ---- forgeries -----------------------------------------------------------------------

/// The token `token` would be with header `header` and an `alg`-signature by `key`.
fn resign(token: &str, header: &serde_json::Value, key: &Signer) -> String {
    let payload = token.split('.').nth(1).expect("payload");
    let message = format!(
        "{}.{payload}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).expect("json"))
    );
    let signature = match key {
        Signer::None => String::new(),
        Signer::Hs256(secret) => jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(secret),
            jsonwebtoken::Algorithm::HS256,
        )
        .expect("sign"),
        Signer::Ed25519(der) => jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &jsonwebtoken::EncodingKey::from_ed_der(der),
            jsonwebtoken::Algorithm::EdDSA,
        )
        .expect("sign"),
    };
    format!("{message}.{signature}")
}

enum Signer {
    None,
    Hs256(Vec<u8>),
    /// A PKCS#8 DER private key.
    Ed25519(Vec<u8>),
}

fn der_of(pem_file: &PathBuf) -> Vec<u8> {
    let pem = std::fs::read_to_string(pem_file).expect("pem");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("pem body")
}

async fn forged_tokens_are_not_active_and_authenticate_nothing(backend: Backend) {
    let dir = TempDir::new("forge");
    let (ours, theirs) = (
        ed25519_key(&dir, "ours.pem"),
        ed25519_key(&dir, "theirs.pem"),
    );
    let mut config = auth_config_on(backend).await;
    config.jwt_secret = Some(SECRET_A.into());
    config.jwt_private_keys = Some(ours.display().to_string());
    let server = start_auth(config).await;
    let mut client = auth_client(&server).await;
    let (_, tokens) = register_and_login(&mut client, "forge").await;
    let token = &tokens.access_token;
    let ed_kid = kid_of(token);
    let hs_kid = secret_kid(SECRET_A);
    let x = list_keys(&server).await["keys"][0]["x"]
        .as_str()
        .expect("x")
        .to_owned();
    let public = URL_SAFE_NO_PAD.decode(&x).expect("x");
    let header = |alg: &str, kid: Option<&str>| {
        let mut header = serde_json::json!({ "alg": alg, "typ": "at+jwt" });
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        header
    };

    // Controls: the same construction with our own keys and the right kids is active, so
    // each refusal below is for the one thing that differs.
    let controls = [
        resign(
            token,
            &header("EdDSA", Some(&ed_kid)),
            &Signer::Ed25519(der_of(&ours)),
        ),
        resign(
            token,
            &header("HS256", Some(&hs_kid)),
            &Signer::Hs256(SECRET_A.into()),
        ),
    ];
    for control in &controls {
        assert!(is_active(&server, control).await, "control {control}");
    }

    let forged = [
        (
            "alg none",
            resign(token, &header("none", Some(&ed_kid)), &Signer::None),
        ),
        (
            "alg none, no kid",
            resign(token, &header("none", None), &Signer::None),
        ),
        (
            "HS256 keyed with the public key",
            resign(
                token,
                &header("HS256", Some(&ed_kid)),
                &Signer::Hs256(public.clone()),
            ),
        ),
        (
            "HS256 keyed with the public key's x",
            resign(
                token,
                &header("HS256", Some(&ed_kid)),
                &Signer::Hs256(x.clone().into()),
            ),
        ),
        (
            "EdDSA under a secret's kid",
            resign(
                token,
                &header("EdDSA", Some(&hs_kid)),
                &Signer::Ed25519(der_of(&ours)),
            ),
        ),
        (
            "another key under a known kid",
            resign(
                token,
                &header("EdDSA", Some(&ed_kid)),
                &Signer::Ed25519(der_of(&theirs)),
            ),
        ),
        (
            "no kid (EdDSA, our key)",
            resign(
                token,
                &header("EdDSA", None),
                &Signer::Ed25519(der_of(&ours)),
            ),
        ),
        (
            "no kid (HS256, our secret)",
            resign(
                token,
                &header("HS256", None),
                &Signer::Hs256(SECRET_A.into()),
            ),
        ),
        (
            "unknown kid",
            resign(
                token,
                &header("EdDSA", Some("not-a-key-of-ours")),
                &Signer::Ed25519(der_of(&ours)),
            ),
        ),
    ];
    for (what, forged) in &forged {
        let answer = introspection_client(&server)
            .await
            .introspect(pb::IntrospectRequest {
                token: forged.clone(),
            })
            .await
            .expect("introspect answers")
            .into_inner();
        assert_eq!(answer, pb::IntrospectResponse::default(), "{what}");
        let status = client
            .get_profile(authed(forged, pb::GetProfileRequest {}))
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}");
    }
    assert!(is_active(&server, token).await, "forgeries revoke nothing");
}

// ---- rotation across restarts ----------------------------------------------------------

/// Restarts auth-service on the same databases with another `AUTH_JWT_SECRET`.
async fn restart(server: Running, config: &auth_service::Config, secrets: &str) -> Running {
    server.stop().await;
    let mut config = config.clone();
    config.jwt_secret = Some(secrets.into());
    start_auth(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_secrets_across_restarts_keeps_sessions_until_their_key_is_dropped() {
    let mut config = auth_config_on(Backend::PostgresRedis).await;
    config.jwt_secret = Some(SECRET_A.into());
    let server = start_auth(config.clone()).await;
    let mut client = auth_client(&server).await;
    let (user, under_a) = register_and_login(&mut client, "rot").await;
    let untouched = client
        .login(pb::LoginRequest {
            username: user.username.clone(),
            password: PASSWORD.into(),
        })
        .await
        .expect("login")
        .into_inner()
        .tokens
        .expect("tokens");
    assert_eq!(kid_of(&under_a.access_token), secret_kid(SECRET_A));

    // B first, A still verifies: nobody is logged out, new tokens are B's.
    let server = restart(server, &config, &format!("{SECRET_B},{SECRET_A}")).await;
    assert!(is_active(&server, &under_a.access_token).await);
    assert!(is_active(&server, &untouched.access_token).await);
    let under_b = refresh(&server, &under_a.refresh_token)
        .await
        .expect("a session made under A refreshes");
    assert_eq!(kid_of(&under_b.access_token), secret_kid(SECRET_B));
    assert_eq!(kid_of(&under_b.refresh_token), secret_kid(SECRET_B));
    assert!(is_active(&server, &under_b.access_token).await);

    // A dropped: what A signed is dead, what B signed lives.
    let server = restart(server, &config, SECRET_B).await;
    assert!(is_active(&server, &under_b.access_token).await);
    assert!(!is_active(&server, &untouched.access_token).await);
    assert_refresh_refused(&server, &untouched.refresh_token, "A's refresh token").await;
    refresh(&server, &under_b.refresh_token)
        .await
        .expect("B's refresh token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_pair_is_one_key_in_the_users_slot_that_expires_with_the_window() {
    use redis::AsyncCommands as _;
    let server = with_window(Backend::PostgresRedis, Duration::from_secs(3)).await;
    let mut client = auth_client(&server).await;
    let (user, tokens) = register_and_login(&mut client, "slot").await;
    let next = refresh(&server, &tokens.refresh_token)
        .await
        .expect("refresh");
    let old_jti = claims_jti(&tokens.refresh_token);
    let key = format!("auth:retry:{{{}}}:{old_jti}", user.id);
    let redis_client = redis::Client::open(redis_url()).expect("redis url");
    let mut refresh_db = redis_client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    redis::cmd("SELECT")
        .arg(1)
        .query_async::<()>(&mut refresh_db)
        .await
        .expect("select 1");
    let ttl: i64 = refresh_db.pttl(&key).await.expect("pttl");
    assert!(ttl > 0 && ttl <= 3000, "{key}: TTL {ttl}");
    let kept: (String, String) = redis::cmd("HMGET")
        .arg(&key)
        .arg("access")
        .arg("refresh")
        .query_async(&mut refresh_db)
        .await
        .expect("hmget");
    assert_eq!(kept, (next.access_token, next.refresh_token));
}

fn claims_jti(token: &str) -> String {
    claims_of(token)["jti"].as_str().expect("jti").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_live_in_two_redis_databases_with_bounded_ttls() {
    let server = spawn_auth().await;
    let mut client = auth_client(&server).await;
    let (user, old) = register_and_login(&mut client, "keys").await;
    let redis_client = redis::Client::open(redis_url()).expect("redis url");
    let mut refresh_db = redis_client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    redis::cmd("SELECT")
        .arg(1)
        .query_async::<()>(&mut refresh_db)
        .await
        .expect("select 1");
    let mut blocklist_db = redis_client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    redis::cmd("SELECT")
        .arg(2)
        .query_async::<()>(&mut blocklist_db)
        .await
        .expect("select 2");

    // One hash per user: a field per session (its id, 16 bytes), its value starting
    // with the current refresh token's id and its access twin's (16 bytes each), and
    // the field `name`.
    let old_claims = claims_of(&old.refresh_token);
    let jti_bytes = |claims: &serde_json::Value| {
        claims["jti"]
            .as_str()
            .and_then(|jti| jti.parse::<uuid::Uuid>().ok())
            .expect("jti")
            .as_bytes()
            .to_vec()
    };
    let sid = old_claims["sid"]
        .as_str()
        .and_then(|sid| sid.parse::<uuid::Uuid>().ok())
        .expect("sid");
    let sessions_key = format!("auth:sessions:{{{}}}", user.id);
    let month_ms = 30 * 86_400 * 1000;
    let ttl: i64 = refresh_db.pttl(&sessions_key).await.expect("pttl");
    assert!(ttl > 0 && ttl <= month_ms, "{sessions_key}: {ttl}");
    let stored_name: String = refresh_db.hget(&sessions_key, "name").await.expect("name");
    assert_eq!(
        stored_name, user.username,
        "Introspect reads the name with the session"
    );
    let session: Vec<u8> = refresh_db
        .hget(&sessions_key, sid.as_bytes().as_slice())
        .await
        .expect("session");
    assert_eq!(
        session[..16],
        jti_bytes(&old_claims)[..],
        "the refresh token"
    );
    assert_eq!(
        session[16..32],
        jti_bytes(&claims_of(&old.access_token))[..],
        "its access twin"
    );
    let sessions_in_blocklist: Vec<String> = blocklist_db
        .keys(format!("auth:sessions:{{{}}}*", user.id))
        .await
        .expect("keys");
    assert!(
        sessions_in_blocklist.is_empty(),
        "the two stores stay apart"
    );

    let next = client
        .refresh(pb::RefreshRequest {
            refresh_token: old.refresh_token.clone(),
        })
        .await
        .expect("refresh")
        .into_inner()
        .tokens
        .expect("tokens");
    let session: Vec<u8> = refresh_db
        .hget(&sessions_key, sid.as_bytes().as_slice())
        .await
        .expect("session");
    assert_eq!(
        session[..16],
        jti_bytes(&claims_of(&next.refresh_token))[..],
        "the used refresh token is replaced by the new one"
    );
    let old_access_jti = claims_of(&old.access_token)["jti"]
        .as_str()
        .expect("jti")
        .to_owned();
    let blocked_key = format!("auth:blocked:{{{}}}:{old_access_jti}", user.id);
    let ttl: i64 = blocklist_db.pttl(&blocked_key).await.expect("pttl");
    assert!(ttl > 0 && ttl <= 900_000, "blocked access key TTL {ttl}");
    let fields: Vec<Vec<u8>> = refresh_db.hkeys(&sessions_key).await.expect("fields");
    assert_eq!(fields.len(), 2, "one session and the name");
}

/// Every key a request writes, on a Redis of our own after every kind of request:
/// its name and TTL.
async fn every_key(url: &str) -> Vec<(String, i64)> {
    let mut conn = redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let mut keys = Vec::new();
    for db in [1, 2] {
        redis::cmd("SELECT")
            .arg(db)
            .query_async::<()>(&mut conn)
            .await
            .expect("select");
        let names: Vec<String> = conn.keys("*").await.expect("keys");
        for name in names {
            let ttl: i64 = conn.pttl(&name).await.expect("pttl");
            keys.push((name, ttl));
        }
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_writes_a_key_shared_by_every_user_or_a_key_without_a_ttl() {
    let redis = stores::PrivateRedis::start().await;
    let mut config = auth_config_on(Backend::PostgresRedis).await;
    config.redis_url = Some(redis.url());
    config.address_hash_limit = 100;
    config.address_registration_limit = 100;
    let server = start_auth(config).await;
    let mut client = auth_client(&server).await;
    let (user, first) = register_and_login(&mut client, "nokey").await;
    let (other, _) = register_and_login(&mut client, "nokey").await;
    let second = login(&mut client, &user.username, PASSWORD)
        .await
        .expect("login")
        .tokens
        .expect("tokens");
    let next = refresh(&server, &first.refresh_token)
        .await
        .expect("refresh");
    login(&mut client, &other.username, "wrong guess!")
        .await
        .expect_err("a failed login");
    let renamed = client
        .update_profile(authed(
            &next.access_token,
            pb::UpdateProfileRequest {
                username: Some(unique_name("renamed")),
                email: None,
            },
        ))
        .await
        .expect("rename")
        .into_inner()
        .tokens
        .expect("tokens");
    client
        .logout(authed(&second.access_token, pb::LogoutRequest {}))
        .await
        .expect("logout");
    client
        .logout_all(authed(&renamed.access_token, pb::LogoutAllRequest {}))
        .await
        .expect("logout all");

    let keys = every_key(&redis.url()).await;
    assert!(
        keys.iter()
            .any(|(name, _)| name.starts_with("auth:blocked:")),
        "the revocations wrote blocklist keys: {keys:?}"
    );
    for (name, ttl) in &keys {
        assert!(*ttl > 0, "{name} has no TTL ({ttl})");
        // A hash tag names the owner: a user id, a username or a client address.
        let tag = name
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(tag, _)| tag);
        assert!(
            tag.is_some_and(|tag| !tag.is_empty()),
            "{name} belongs to no one"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_leaves_its_users_hash_once_logins_have_grown_it() {
    let mut config = auth_config_on(Backend::PostgresRedis).await;
    config.access_token_ttl = Duration::from_secs(1);
    config.refresh_token_ttl = Duration::from_secs(2);
    config.refresh_retry_window = Duration::from_millis(500);
    let server = start_auth(config).await;
    let mut client = auth_client(&server).await;
    let (user, first) = register_and_login(&mut client, "sweep").await;
    let sid = claims_of(&first.refresh_token)["sid"]
        .as_str()
        .and_then(|sid| sid.parse::<uuid::Uuid>().ok())
        .expect("sid");
    let mut refresh_db = redis::Client::open(redis_url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    redis::cmd("SELECT")
        .arg(1)
        .query_async::<()>(&mut refresh_db)
        .await
        .expect("select 1");
    let sessions_key = format!("auth:sessions:{{{}}}", user.id);
    let held = |fields: &[Vec<u8>]| fields.iter().any(|field| field == sid.as_bytes());
    // A second session keeps the key alive past the first one's refresh expiry (at most
    // 2 s after the first login), while logins go on.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    login(&mut client, &user.username, PASSWORD)
        .await
        .expect("login");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for _ in 0..5 {
        login(&mut client, &user.username, PASSWORD)
            .await
            .expect("login");
    }
    let fields: Vec<Vec<u8>> = refresh_db.hkeys(&sessions_key).await.expect("fields");
    assert!(
        held(&fields),
        "below 8 fields no login reads the whole hash: {} fields",
        fields.len()
    );
    assert_eq!(fields.len(), 8, "7 sessions and the name");
    login(&mut client, &user.username, PASSWORD)
        .await
        .expect("login");
    let fields: Vec<Vec<u8>> = refresh_db.hkeys(&sessions_key).await.expect("fields");
    assert!(
        !held(&fields),
        "the login that found 8 fields dropped the expired session"
    );
    assert!(
        fields.iter().filter(|field| field.len() == 16).count() <= 7,
        "{} fields",
        fields.len()
    );
    server.stop().await;
}
