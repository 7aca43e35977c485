//! Live sessions seeded through auth-service's own `TokenStore` and `TokenCodec`, what
//! they cost in Redis, and Introspect over them.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use auth_service::{
    keys::KeySet,
    store::{NewSession, RedisOptions, RedisTarget, RedisTokenStore, TokenStore},
    tokens::{IssuedPair, TokenCodec},
};
use pair_proto::auth::v1::{
    IntrospectRequest, introspection_service_client::IntrospectionServiceClient,
};
use serde::Serialize;
use tokio::time::Instant;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::{
    cli::{Redis, SessionsArgs, Store},
    harness::{self, Caller, Failure, Rng, Stats, failure},
    redis_state::{self, Group, Raw},
    util,
};

/// The user agent of every seeded session.
/// (15 bytes: as short as a gRPC library's own, e.g. `grpc-go/1.64.0`).
pub const USER_AGENT: &str = "loadgen-scale/1";

/// Databases up to this many keys are accounted key by key, larger ones by samples.
const SCAN_LIMIT: u64 = 20_000;
const SAMPLES: usize = 4_000;

/// The token store and codec of the auth-service under test.
pub struct Issuer {
    pub store: Arc<RedisTokenStore>,
    pub codec: Arc<TokenCodec>,
}

impl Issuer {
    pub async fn connect(store: &Store) -> anyhow::Result<Self> {
        let secret = store
            .jwt_secret
            .split(',')
            .next()
            .filter(|s| s.len() >= 32)
            .context("AUTH_JWT_SECRET (--jwt-secret) must hold a secret of at least 32 bytes, as auth-service's")?;
        let codec = TokenCodec::new(
            KeySet::from_secret(secret.as_bytes()),
            &store.issuer,
            store.access_ttl,
            store.refresh_ttl,
        );
        let target = match store.redis() {
            Redis::Node {
                url,
                refresh_db,
                blocklist_db,
            } => RedisTarget::Node {
                url,
                refresh_db,
                blocklist_db,
            },
            Redis::Cluster(urls) => RedisTarget::Cluster { urls },
        };
        let tokens = RedisTokenStore::connect(
            target,
            RedisOptions {
                refresh_ttl: store.refresh_ttl,
                timeout: Duration::from_secs(5),
                cache_answers: false,
                min_replicas: Some(0),
            },
        )
        .await?;
        Ok(Self {
            store: Arc::new(tokens),
            codec: Arc::new(codec),
        })
    }

    /// Opens one session per `(user, username)` of `plan`, `concurrency` at a time,
    /// exactly as Login does after its password check; `keep` picks what to hold of
    /// each pair. Results are in `plan`'s order.
    pub async fn open_sessions<T: Send + 'static>(
        &self,
        plan: Arc<[(Uuid, Arc<str>)]>,
        concurrency: usize,
        keep: fn(IssuedPair) -> T,
    ) -> anyhow::Result<Vec<T>> {
        let tasks = concurrency.min(plan.len()).max(1);
        let mut handles = Vec::with_capacity(tasks);
        for task in 0..tasks {
            let (plan, store, codec) = (plan.clone(), self.store.clone(), self.codec.clone());
            handles.push(tokio::spawn(async move {
                let mut kept = Vec::with_capacity(plan.len() / tasks + 1);
                for (user, username) in plan.iter().skip(task).step_by(tasks) {
                    let pair = codec.issue_pair(*user, Uuid::now_v7())?;
                    store
                        .open_session(NewSession {
                            access: &pair.access,
                            refresh: &pair.refresh,
                            username,
                            user_agent: USER_AGENT,
                        })
                        .await
                        .map_err(|e| anyhow::anyhow!("open_session failed: {e}"))?;
                    kept.push(keep(pair));
                }
                anyhow::Ok(kept)
            }));
        }
        let mut per_task = Vec::with_capacity(tasks);
        for handle in handles {
            per_task.push(
                handle
                    .await
                    .context("a seeding task panicked")??
                    .into_iter(),
            );
        }
        let mut all = Vec::with_capacity(plan.len());
        'outer: loop {
            for task in &mut per_task {
                match task.next() {
                    Some(item) => all.push(item),
                    None => break 'outer,
                }
            }
        }
        for task in per_task {
            all.extend(task);
        }
        Ok(all)
    }
}

/// Refuses to seed into databases (a cluster: masters) that hold keys, unless `--force`.
pub async fn ensure_empty(raw: &Raw, force: bool) -> anyhow::Result<()> {
    for keyspace in &raw.keyspaces {
        let keys = raw.dbsize(keyspace.name).await?.unwrap_or(0);
        if keyspace.name == "cluster" {
            anyhow::ensure!(
                keys == 0 || force,
                "the Redis Cluster holds {keys} keys on its {} masters: seed into an empty one (a private cluster), or pass --force",
                raw.masters.len()
            );
        } else {
            anyhow::ensure!(
                keys == 0 || force,
                "the {} database of Redis holds {keys} keys: seed into an empty one (a private redis-server), or pass --force",
                keyspace.name
            );
        }
    }
    Ok(())
}

#[derive(Serialize)]
pub struct MemoryReport {
    /// `node`, or `cluster` (then memory and keys are summed over `masters`).
    pub redis: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masters: Vec<String>,
    pub sessions: usize,
    pub users: usize,
    pub sessions_per_user: usize,
    pub seed_s: f64,
    pub seed_per_s: f64,
    pub used_memory_before: u64,
    pub used_memory_after: u64,
    /// (after − before) / sessions.
    pub bytes_per_session: f64,
    /// Σ keys × MEMORY USAGE over the groups / sessions: the cross-check.
    pub bytes_per_session_by_keys: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_refresh_db: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_blocklist_db: Option<u64>,
    /// Keys of a Redis Cluster's one keyspace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_cluster: Option<u64>,
    pub groups: Vec<Group>,
}

#[derive(Serialize)]
pub struct BlockedReport {
    pub blocked: usize,
    pub revoke_s: f64,
    pub used_memory_after: u64,
    /// (after revoking − before) / blocked + bytes_per_session: each revocation freed a
    /// session and blocked its access token.
    pub bytes_per_blocked_token: f64,
    pub bytes_per_blocked_token_by_keys: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_blocklist_db: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_cluster: Option<u64>,
    pub groups: Vec<Group>,
}

#[derive(Serialize)]
pub struct IntrospectRun {
    pub scenario: &'static str,
    pub state_size: usize,
    #[serde(flatten)]
    pub stats: Stats,
    /// rps / the mean rate of health measured right before and right after.
    pub ratio_to_health: f64,
    /// 1 − (HMGETs Redis served) / (Introspect calls answered), over the measured window
    /// (HMGETs summed over every master of a cluster).
    pub cache_hit_rate: Option<f64>,
}

#[derive(Serialize)]
pub struct SessionsReport {
    pub kind: &'static str,
    pub backend: String,
    pub memory: MemoryReport,
    pub health: Vec<Stats>,
    pub introspect: Vec<IntrospectRun>,
    pub blocked: Option<BlockedReport>,
    pub cleanup: Option<Cleanup>,
}

#[derive(Serialize)]
pub struct Cleanup {
    pub keys_unlinked: u64,
    pub members_removed: u64,
    pub used_memory_after: u64,
    pub seconds: f64,
}

fn per_session(groups: &[Group], n: usize) -> f64 {
    groups.iter().map(|g| g.total_bytes).sum::<f64>() / n.max(1) as f64
}

pub async fn run(args: SessionsArgs) -> anyhow::Result<()> {
    let raw = Raw::connect(&args.store.redis()).await?;
    if !raw.masters.is_empty() {
        eprintln!(
            "Redis Cluster: {} masters ({}); memory and commands summed over them",
            raw.masters.len(),
            raw.masters.join(", ")
        );
    }
    ensure_empty(&raw, args.store.force).await?;
    let issuer = Issuer::connect(&args.store).await?;

    let n = args.sessions;
    let per_user = args.sessions_per_user.min(n);
    let users: Vec<Uuid> = (0..n.div_ceil(per_user)).map(|_| Uuid::now_v7()).collect();
    let names: Vec<Arc<str>> = (0..users.len())
        .map(|i| format!("scale{i}").into())
        .collect();
    let plan: Arc<[(Uuid, Arc<str>)]> = (0..n)
        .map(|i| (users[i / per_user], names[i / per_user].clone()))
        .collect();
    let seeded_users: HashSet<Uuid> = users.iter().copied().collect();

    let before = raw.used_memory().await?;
    eprintln!(
        "seeding {n} sessions of {} users through the token store …",
        users.len()
    );
    let started = Instant::now();
    let kept: Vec<(String, Uuid)> = issuer
        .open_sessions(plan.clone(), args.store.seed_concurrency, |pair| {
            (pair.access_token, pair.access.sid)
        })
        .await?;
    let seed_s = started.elapsed().as_secs_f64();
    let after = raw.used_memory().await?;
    let mut groups = redis_state::account(&raw, SCAN_LIMIT, SAMPLES).await?;
    groups.extend(redis_state::big_untagged(&raw, SCAN_LIMIT).await?);
    let memory = MemoryReport {
        redis: if raw.masters.is_empty() {
            "node"
        } else {
            "cluster"
        },
        masters: raw.masters.clone(),
        sessions: n,
        users: users.len(),
        sessions_per_user: per_user,
        seed_s,
        seed_per_s: n as f64 / seed_s,
        used_memory_before: before,
        used_memory_after: after,
        bytes_per_session: (after as f64 - before as f64) / n as f64,
        bytes_per_session_by_keys: per_session(&groups, n),
        keys_refresh_db: raw.dbsize("refresh").await?,
        keys_blocklist_db: raw.dbsize("blocklist").await?,
        keys_cluster: raw.dbsize("cluster").await?,
        groups,
    };
    eprintln!(
        "seeded in {seed_s:.1}s ({:.0}/s): used_memory {before} → {after}: {:.0} bytes per session ({:.0} by MEMORY USAGE of the keys)",
        memory.seed_per_s, memory.bytes_per_session, memory.bytes_per_session_by_keys
    );
    for g in &memory.groups {
        eprintln!(
            "  {:<9} {:<24} {:<5} keys {:>10.0}  mean {:>8.1} B  total/session {:>6.1} B",
            g.database,
            g.prefix,
            g.key_type,
            g.keys,
            g.mean_bytes,
            g.total_bytes / n as f64
        );
    }

    let mut report = SessionsReport {
        kind: "sessions",
        backend: args.load.backend.clone(),
        memory,
        health: Vec::new(),
        introspect: Vec::new(),
        blocked: None,
        cleanup: None,
    };

    let tokens: Arc<[String]> = kept.iter().map(|(token, _)| token.clone()).collect();
    if !args.memory_only {
        let channels = util::connect(&args.auth_url, args.load.connections).await?;
        let load = &args.load;
        let health = util::health(&channels, load).await?;
        eprintln!(
            "  health: {:.0}/s p99 {} µs",
            health.rps, health.latency_us.p99
        );
        let hot_tokens = (args.hot_users * per_user).min(n);
        for (scenario, hot) in [
            ("introspect-uniform", None),
            ("introspect-hot", Some((hot_tokens, args.hot_share))),
        ] {
            let calls = Arc::new(AtomicU64::new(0));
            let callers = |seed: u64| -> Vec<Draw> {
                (0..load.concurrency)
                    .map(|i| Draw {
                        client: IntrospectionServiceClient::new(util::pick(&channels, i)),
                        tokens: tokens.clone(),
                        rng: Rng::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9)),
                        hot,
                        answered: calls.clone(),
                    })
                    .collect()
            };
            if !load.warmup.is_zero() {
                harness::run(callers(1), Duration::ZERO, load.warmup, util::CALL_TIMEOUT).await?;
            }
            raw.reset_stats().await?;
            calls.store(0, Ordering::Relaxed);
            let stats = harness::run(
                callers(2),
                Duration::ZERO,
                load.duration,
                util::CALL_TIMEOUT,
            )
            .await?;
            let hmgets = raw.command_calls("hmget").await?;
            let answered = calls.load(Ordering::Relaxed);
            let hit_rate = (answered > 0).then(|| 1.0 - hmgets as f64 / answered as f64);
            eprintln!(
                "  {scenario}: {:.0}/s ({:.2} × health) p99 {} µs, errors {}, cache hit rate {:.3} ({hmgets} HMGET for {answered} answers)",
                stats.rps,
                stats.rps / health.rps,
                stats.latency_us.p99,
                stats.error_count,
                hit_rate.unwrap_or(0.0)
            );
            report.introspect.push(IntrospectRun {
                scenario,
                state_size: n,
                ratio_to_health: stats.rps / health.rps,
                stats,
                cache_hit_rate: hit_rate,
            });
        }
        let health_after = util::health(&channels, load).await?;
        // The machine is shared: the yardstick is health's mean over the two runs that
        // frame the Introspect runs.
        let yardstick = (health.rps + health_after.rps) / 2.0;
        eprintln!(
            "  health again: {:.0}/s; × health against their mean {yardstick:.0}/s:",
            health_after.rps
        );
        for run in &mut report.introspect {
            run.ratio_to_health = run.stats.rps / yardstick;
            eprintln!("    {}: {:.2}", run.scenario, run.ratio_to_health);
        }
        report.health = vec![health, health_after];
    }

    let m = args.blocked.min(n);
    if m > 0 {
        let before = raw.used_memory().await?;
        let started = Instant::now();
        let victims: Arc<[(Uuid, Uuid)]> = (0..m).map(|i| (plan[i].0, kept[i].1)).collect();
        let tasks = args.store.seed_concurrency.min(m);
        let mut handles = Vec::new();
        for task in 0..tasks {
            let (victims, store) = (victims.clone(), issuer.store.clone());
            handles.push(tokio::spawn(async move {
                for (user, sid) in victims.iter().skip(task).step_by(tasks) {
                    store
                        .revoke_session(*user, *sid)
                        .await
                        .map_err(|e| anyhow::anyhow!("revoke_session failed: {e}"))?;
                }
                anyhow::Ok(())
            }));
        }
        for handle in handles {
            handle.await.context("a revoking task panicked")??;
        }
        let revoke_s = started.elapsed().as_secs_f64();
        let after = raw.used_memory().await?;
        let groups: Vec<Group> = redis_state::account(&raw, SCAN_LIMIT, SAMPLES)
            .await?
            .into_iter()
            .filter(|g| g.database != "refresh" && g.prefix.starts_with("auth:blocked"))
            .collect();
        let blocked = BlockedReport {
            blocked: m,
            revoke_s,
            used_memory_after: after,
            bytes_per_blocked_token: (after as f64 - before as f64) / m as f64
                + report.memory.bytes_per_session,
            bytes_per_blocked_token_by_keys: per_session(&groups, m),
            keys_blocklist_db: raw.dbsize("blocklist").await?,
            keys_cluster: raw.dbsize("cluster").await?,
            groups,
        };
        eprintln!(
            "revoked {m} sessions in {revoke_s:.1}s: {:.0} bytes per blocked access token ({:.0} by MEMORY USAGE)",
            blocked.bytes_per_blocked_token, blocked.bytes_per_blocked_token_by_keys
        );
        report.blocked = Some(blocked);
    }

    if !args.store.keep {
        report.cleanup = Some(clean_up(&raw, &seeded_users).await?);
    }
    util::write_json(args.load.json.as_deref(), &report)
}

pub async fn clean_up(raw: &Raw, users: &HashSet<Uuid>) -> anyhow::Result<Cleanup> {
    let started = Instant::now();
    let (keys, members) = redis_state::clean_up(raw, users).await?;
    let after = raw.used_memory().await?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "cleaned up: {keys} keys unlinked, {members} members removed in {seconds:.1}s; used_memory {after}"
    );
    Ok(Cleanup {
        keys_unlinked: keys,
        members_removed: members,
        used_memory_after: after,
        seconds,
    })
}

/// Introspect of a token drawn uniformly, or from the first `hot.0` tokens (the hot
/// users' sessions) with probability `hot.1`.
pub struct Draw {
    pub client: IntrospectionServiceClient<Channel>,
    pub tokens: Arc<[String]>,
    pub rng: Rng,
    pub hot: Option<(usize, f64)>,
    pub answered: Arc<AtomicU64>,
}

impl Caller for Draw {
    async fn call(&mut self) -> Result<(), Failure> {
        let n = self.tokens.len();
        let index = match self.hot {
            Some((hot, share)) if (self.rng.next_u64() as f64 / u64::MAX as f64) < share => {
                self.rng.below(hot)
            }
            _ => self.rng.below(n),
        };
        let token = self.tokens[index].clone();
        let response = self
            .client
            .introspect(IntrospectRequest { token })
            .await
            .map_err(failure)?;
        self.answered.fetch_add(1, Ordering::Relaxed);
        if response.into_inner().active {
            Ok(())
        } else {
            Err("INACTIVE_TOKEN")
        }
    }
}
