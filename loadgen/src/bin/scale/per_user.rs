//! One user holding 1, 10, 1,000 sessions: Login, Refresh, Logout and ListSessions,
//! each timed one call at a time with the number of sessions held constant (what a call
//! adds or removes is undone through the token store, untimed); then LogoutAll, timed,
//! while Introspect of other users' tokens runs.

use std::{collections::HashSet, sync::Arc, time::Duration};

use anyhow::Context as _;
use auth_service::{
    store::TokenStore as _,
    tokens::{IssuedPair, TokenUse},
};
use hdrhistogram::Histogram;
use pair_proto::auth::v1::{
    IntrospectRequest, ListSessionsRequest, LoginRequest, LogoutAllRequest, LogoutRequest,
    RefreshRequest, RegisterRequest, auth_service_client::AuthServiceClient,
    introspection_service_client::IntrospectionServiceClient,
};
use serde::Serialize;
use tokio::time::Instant;
use tonic::{Request, transport::Channel};
use uuid::Uuid;

use crate::{
    cli::UserSessionsArgs,
    harness::Rng,
    redis_state::Raw,
    sessions::{self, Issuer},
    util,
};

const PASSWORD: &str = "scale passphrase 42";
/// Other users' sessions Introspect draws from during LogoutAll.
const BYSTANDER_SESSIONS: usize = 1_000;

#[derive(Serialize)]
struct OpRun {
    op: &'static str,
    sessions: usize,
    calls: u64,
    rps: f64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    mean_us: f64,
}

#[derive(Serialize)]
struct LogoutAllRun {
    sessions: usize,
    revoked: i32,
    logout_all_us: u64,
    introspect_calls_before: u64,
    introspect_p99_before_us: u64,
    introspect_max_before_us: u64,
    introspect_calls_during: u64,
    introspect_max_during_us: u64,
    introspect_errors: u64,
    /// A revoked session's access token, introspected right after: must be false.
    revoked_token_active_after: bool,
}

#[derive(Serialize)]
struct Report {
    kind: &'static str,
    backend: String,
    ops: Vec<OpRun>,
    logout_all: Vec<LogoutAllRun>,
}

fn authorized<T>(message: T, access_token: &str) -> anyhow::Result<Request<T>> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {access_token}").parse()?);
    Ok(request)
}

struct Timer(Histogram<u64>, Instant);

impl Timer {
    fn new() -> anyhow::Result<Self> {
        Ok(Self(
            Histogram::new_with_bounds(1, 3_600_000_000, 3)?,
            Instant::now(),
        ))
    }
    fn record(&mut self, since: Instant) {
        let us = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(us.max(1));
    }
    fn run(&self, op: &'static str, sessions: usize) -> OpRun {
        let h = &self.0;
        let row = OpRun {
            op,
            sessions,
            calls: h.len(),
            rps: h.len() as f64 / self.1.elapsed().as_secs_f64(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
            mean_us: h.mean(),
        };
        eprintln!(
            "  {op:<13} {sessions:>6} sessions: {:>6} calls {:>8.1}/s p50 {:>6} µs p99 {:>7} µs",
            row.calls, row.rps, row.p50_us, row.p99_us
        );
        row
    }
}

pub async fn run(args: UserSessionsArgs) -> anyhow::Result<()> {
    let raw = Raw::connect(&args.store.redis()).await?;
    sessions::ensure_empty(&raw, args.store.force).await?;
    let issuer = Issuer::connect(&args.store).await?;
    let channels = util::connect(&args.auth_url, args.load.connections).await?;
    let mut auth = AuthServiceClient::new(channels[0].clone());
    let mut seeded_users = HashSet::new();
    let run_id = &Uuid::new_v4().simple().to_string()[..6];

    // Bystanders: other users whose tokens Introspect checks during LogoutAll.
    let bystanders: Arc<[(Uuid, Arc<str>)]> = (0..BYSTANDER_SESSIONS)
        .map(|i| (Uuid::now_v7(), Arc::from(format!("bystander{i}"))))
        .collect();
    seeded_users.extend(bystanders.iter().map(|(u, _)| *u));
    let bystander_tokens: Arc<[String]> = issuer
        .open_sessions(bystanders, args.store.seed_concurrency, |p| p.access_token)
        .await?
        .into();

    let mut report = Report {
        kind: "user-sessions",
        backend: args.load.backend.clone(),
        ops: Vec::new(),
        logout_all: Vec::new(),
    };
    let budget = args.load.duration;
    for &level in &args.levels.0 {
        let username = format!("scale{run_id}n{level}");
        auth.register(RegisterRequest {
            username: username.clone(),
            email: format!("{username}@scale.example.com"),
            password: PASSWORD.to_owned(),
        })
        .await
        .with_context(|| format!("Register of {username} failed"))?;
        let login = auth
            .login(LoginRequest {
                username: username.clone(),
                password: PASSWORD.to_owned(),
            })
            .await
            .context("Login failed")?
            .into_inner();
        let user: Uuid = login.user.context("no user")?.id.parse()?;
        seeded_users.insert(user);
        let first = login.tokens.context("no tokens")?;
        let name: Arc<str> = username.clone().into();
        let plan: Arc<[(Uuid, Arc<str>)]> = (1..level).map(|_| (user, name.clone())).collect();
        let mut pairs: Vec<(String, String)> = vec![(first.access_token, first.refresh_token)];
        pairs.extend(
            issuer
                .open_sessions(plan, args.store.seed_concurrency, |p: IssuedPair| {
                    (p.access_token, p.refresh_token)
                })
                .await?,
        );
        eprintln!("{username} holds {level} session(s)");

        // ListSessions.
        let mut timer = Timer::new()?;
        while timer.1.elapsed() < budget {
            let started = Instant::now();
            let listed = auth
                .list_sessions(authorized(ListSessionsRequest {}, &pairs[0].0)?)
                .await?
                .into_inner()
                .sessions
                .len();
            timer.record(started);
            anyhow::ensure!(listed == level, "ListSessions listed {listed}, not {level}");
        }
        report.ops.push(timer.run("ListSessions", level));

        // Refresh: rotates the sessions in turn.
        let mut timer = Timer::new()?;
        let mut next = 0;
        while timer.1.elapsed() < budget {
            let i = next % pairs.len();
            next += 1;
            let started = Instant::now();
            let tokens = auth
                .refresh(RefreshRequest {
                    refresh_token: pairs[i].1.clone(),
                })
                .await?
                .into_inner()
                .tokens
                .context("no tokens")?;
            timer.record(started);
            pairs[i] = (tokens.access_token, tokens.refresh_token);
        }
        report.ops.push(timer.run("Refresh", level));

        // Logout: ends a session, which a store write (untimed) replaces.
        let mut timer = Timer::new()?;
        let mut next = 0;
        while timer.1.elapsed() < budget {
            let i = next % pairs.len();
            next += 1;
            let started = Instant::now();
            auth.logout(authorized(LogoutRequest {}, &pairs[i].0)?)
                .await?;
            timer.record(started);
            let one: Arc<[(Uuid, Arc<str>)]> = Arc::from(vec![(user, name.clone())]);
            pairs[i] = issuer
                .open_sessions(one, 1, |p: IssuedPair| (p.access_token, p.refresh_token))
                .await?
                .pop()
                .context("no session")?;
        }
        report.ops.push(timer.run("Logout", level));

        // Login: opens a session, which the store (untimed) revokes again.
        let mut timer = Timer::new()?;
        while timer.1.elapsed() < budget {
            let started = Instant::now();
            let tokens = auth
                .login(LoginRequest {
                    username: username.clone(),
                    password: PASSWORD.to_owned(),
                })
                .await?
                .into_inner()
                .tokens
                .context("no tokens")?;
            timer.record(started);
            let claims = issuer
                .codec
                .verify(&tokens.access_token, TokenUse::Access)
                .context("Login answered a token the seeding codec cannot verify: is AUTH_JWT_SECRET the same?")?;
            issuer
                .store
                .revoke_session(user, claims.sid)
                .await
                .map_err(|e| anyhow::anyhow!("revoke_session failed: {e}"))?;
        }
        report.ops.push(timer.run("Login", level));

        report.logout_all.push(
            logout_all(
                &channels,
                &mut auth,
                &pairs,
                &bystander_tokens,
                level,
                &args,
            )
            .await?,
        );
    }

    if !args.store.keep {
        sessions::clean_up(&raw, &seeded_users).await?;
    }
    util::write_json(args.load.json.as_deref(), &report)
}

/// LogoutAll of the user's `level` sessions, one second into an Introspect load on the
/// bystanders' tokens; the load goes on for another second.
async fn logout_all(
    channels: &[Channel],
    auth: &mut AuthServiceClient<Channel>,
    pairs: &[(String, String)],
    bystanders: &Arc<[String]>,
    level: usize,
    args: &UserSessionsArgs,
) -> anyhow::Result<LogoutAllRun> {
    let stop = Instant::now() + Duration::from_secs(2) + args.load.warmup;
    let mut tasks = Vec::new();
    for i in 0..args.load.concurrency {
        let mut client = IntrospectionServiceClient::new(util::pick(channels, i));
        let tokens = bystanders.clone();
        let mut rng = Rng::new(i as u64 + 1);
        tasks.push(tokio::spawn(async move {
            let mut samples: Vec<(Instant, u64)> = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < stop {
                let token = tokens[rng.below(tokens.len())].clone();
                let started = Instant::now();
                match client.introspect(IntrospectRequest { token }).await {
                    Ok(r) if r.get_ref().active => samples.push((
                        started,
                        u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                    )),
                    _ => errors += 1,
                }
            }
            (samples, errors)
        }));
    }
    tokio::time::sleep(args.load.warmup + Duration::from_secs(1)).await;
    let started = Instant::now();
    let revoked = auth
        .logout_all(authorized(LogoutAllRequest {}, &pairs[0].0)?)
        .await?
        .into_inner()
        .revoked_sessions;
    let ended = Instant::now();
    let took = u64::try_from((ended - started).as_micros()).unwrap_or(u64::MAX);
    let measure_from = started - Duration::from_secs(1);
    let (mut before, mut during) = (Vec::new(), Vec::new());
    let mut errors = 0;
    for task in tasks {
        let (samples, e) = task.await?;
        errors += e;
        for (at, us) in samples {
            let end = at + Duration::from_micros(us);
            if end >= started && at <= ended {
                during.push(us);
            } else if at >= measure_from && end < started {
                before.push(us);
            }
        }
    }
    before.sort_unstable();
    let p99 = before.get(before.len() * 99 / 100).copied().unwrap_or(0);
    let active_after = IntrospectionServiceClient::new(channels[0].clone())
        .introspect(IntrospectRequest {
            token: pairs[pairs.len() - 1].0.clone(),
        })
        .await?
        .into_inner()
        .active;
    let run = LogoutAllRun {
        sessions: level,
        revoked,
        logout_all_us: took,
        introspect_calls_before: before.len() as u64,
        introspect_p99_before_us: p99,
        introspect_max_before_us: before.last().copied().unwrap_or(0),
        introspect_calls_during: during.len() as u64,
        introspect_max_during_us: during.iter().copied().max().unwrap_or(0),
        introspect_errors: errors,
        revoked_token_active_after: active_after,
    };
    eprintln!(
        "  LogoutAll of {level}: {took} µs, {revoked} revoked; Introspect before: p99 {} µs max {} µs; during: {} calls, max {} µs; revoked token active after: {active_after}",
        run.introspect_p99_before_us,
        run.introspect_max_before_us,
        run.introspect_calls_during,
        run.introspect_max_during_us
    );
    Ok(run)
}
