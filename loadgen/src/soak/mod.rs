//! The soak scenario: a mixed, stateful load that checks every answer.
//!
//! Each of `--concurrency` workers plays one client of a seeded user: it logs in, uses
//! its access token (Introspect, CreatePost), reads posts (ListPosts, GetPost of seeded
//! posts and of its own), rotates its pair with Refresh (keeping the new pair), logs out
//! and then logs in again. The operation of each step is drawn from `--soak-mix`.
//!
//! Every answer is checked: an unexpected status, or an OK answer that is wrong (an
//! inactive current token, a post of someone else, a page out of order, …), counts as an
//! unexpected error under its status code or label. The only expected failure is
//! RESOURCE_EXHAUSTED from Login without retry details: the server shedding logins when
//! its hash queue is full; it is counted apart ("shed"). After a successful Refresh or
//! Logout the worker introspects the access token it just gave up, which must be inactive
//! (`introspect-revoked`, an operation outside the mix).
//!
//! Unexpected errors are counted over the whole run, warm-up and drain included.

mod record;
mod worker;

use std::{collections::BTreeMap, sync::Arc};

use anyhow::Context as _;
use serde::Serialize;

use crate::harness::{Rng, Stats, Tally, Window};

use self::record::OpTally;
pub use self::worker::{Worker, WorkerSetup};

/// One kind of call of the soak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Introspect,
    ListPosts,
    GetPost,
    CreatePost,
    Refresh,
    Login,
    Logout,
    /// Introspect of the access token given up by a Refresh or Logout: must be inactive.
    IntrospectRevoked,
}

impl Op {
    /// The operations `--soak-mix` draws from.
    pub const MIX: [Self; 7] = [
        Self::Introspect,
        Self::ListPosts,
        Self::GetPost,
        Self::CreatePost,
        Self::Refresh,
        Self::Login,
        Self::Logout,
    ];

    /// Every operation, in report order.
    pub const ALL: [Self; 8] = [
        Self::Introspect,
        Self::ListPosts,
        Self::GetPost,
        Self::CreatePost,
        Self::Refresh,
        Self::Login,
        Self::Logout,
        Self::IntrospectRevoked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Introspect => "introspect",
            Self::ListPosts => "list-posts",
            Self::GetPost => "get-post",
            Self::CreatePost => "create-post",
            Self::Refresh => "refresh",
            Self::Login => "login",
            Self::Logout => "logout",
            Self::IntrospectRevoked => "introspect-revoked",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The weights of the soak's operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    /// The weight of each of [`Op::MIX`], in that order.
    weights: [u32; 7],
}

impl Default for Mix {
    /// introspect 40, list-posts 15, get-post 20, create-post 10, refresh 8, login 5,
    /// logout 2.
    fn default() -> Self {
        Self {
            weights: [40, 15, 20, 10, 8, 5, 2],
        }
    }
}

impl Mix {
    /// Parses `op=weight[,op=weight…]`; operations not named keep their default weight.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut mix = Self::default();
        for part in text.split(',').map(str::trim) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not op=weight (e.g. login=5)"))?;
            let (name, weight) = (name.trim(), weight.trim());
            let position = Op::MIX
                .iter()
                .position(|op| op.name() == name)
                .ok_or_else(|| {
                    let valid: Vec<&str> = Op::MIX.iter().map(|op| op.name()).collect();
                    format!(
                        "unknown soak operation `{name}`: valid operations are {}",
                        valid.join(", ")
                    )
                })?;
            mix.weights[position] = weight
                .parse()
                .map_err(|_| format!("the weight of {name}, `{weight}`, is not a whole number"))?;
        }
        if mix.weights.iter().all(|w| *w == 0) {
            return Err("every soak weight is 0".to_owned());
        }
        Ok(mix)
    }

    pub fn weight(&self, op: Op) -> u32 {
        Op::MIX
            .iter()
            .position(|o| *o == op)
            .map_or(0, |i| self.weights[i])
    }

    fn total(&self) -> u64 {
        self.weights.iter().map(|w| u64::from(*w)).sum()
    }

    /// An operation drawn with probability weight / total.
    pub fn pick(&self, rng: &mut Rng) -> Op {
        let total = self.total().max(1);
        let mut draw = rng.next_u64() % total;
        for (op, weight) in Op::MIX.iter().zip(self.weights) {
            let weight = u64::from(weight);
            if draw < weight {
                return *op;
            }
            draw -= weight;
        }
        Op::Introspect
    }

    /// `op=weight,…` of every operation.
    pub fn describe(&self) -> String {
        Op::MIX
            .iter()
            .zip(self.weights)
            .map(|(op, weight)| format!("{}={weight}", op.name()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One operation's results.
#[derive(Serialize)]
pub struct OpReport {
    pub op: &'static str,
    /// Its weight in the mix (none for introspect-revoked, which follows Refresh/Logout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// In the measured window: calls (ok + unexpected errors; sheds are apart), rps of
    /// successful calls, latency of the successful calls, unexpected errors by label.
    #[serde(flatten)]
    pub stats: Stats,
    /// Logins shed with RESOURCE_EXHAUSTED (hash queue full), in the window: expected.
    pub shed: u64,
    /// UNAVAILABLE answers to calls overlapping an injected fault: expected.
    pub during_fault: u64,
    /// Unexpected errors during warm-up or drain (calls in flight when the window ended).
    pub errors_outside_window: BTreeMap<String, u64>,
    /// A few messages of each unexpected error label (status code + message, or what
    /// was wrong with an OK answer).
    pub error_examples: BTreeMap<String, Vec<String>>,
}

/// The soak's report.
#[derive(Serialize)]
pub struct SoakReport {
    pub mix: String,
    pub workers: usize,
    pub users: usize,
    pub ops: Vec<OpReport>,
    /// Every operation in the measured window (sheds apart).
    pub total: Stats,
    /// Logins shed, window + warm-up + drain.
    pub shed_total: u64,
    /// UNAVAILABLE answers to calls overlapping an injected fault (`--fault-command`).
    pub during_fault_total: u64,
    /// Acknowledged writes (revocations, posts) checked again after the run.
    pub verified_writes: u64,
    /// Acknowledged writes found undone after the run, by kind (counted as unexpected).
    pub lost_writes: BTreeMap<String, u64>,
    pub lost_examples: Vec<String>,
    /// Unexpected errors, window + warm-up + drain, and lost writes: the gate (must be
    /// 0).
    pub unexpected_errors: u64,
}

/// Runs the soak: one worker per `workers`, over a new window.
pub async fn run(workers: Vec<Worker>, users: usize, window: Window) -> anyhow::Result<SoakReport> {
    let count = workers.len();
    let mix = workers
        .first()
        .map_or_else(|| Mix::default().describe(), |w| w.mix.describe());
    let weights = workers.first().map(|w| Arc::clone(&w.mix));
    let handles: Vec<_> = workers
        .into_iter()
        .map(|worker| tokio::spawn(worker.run(window)))
        .collect();
    let mut merged: Vec<OpTally> = Op::ALL
        .iter()
        .map(|_| OpTally::new())
        .collect::<anyhow::Result<_>>()?;
    let (mut verified_writes, mut lost_writes, mut lost_examples) =
        (0, BTreeMap::<String, u64>::new(), Vec::new());
    for handle in handles {
        let recorder = handle.await.context("a soak worker panicked")??;
        for (total, tally) in merged.iter_mut().zip(&recorder.ops) {
            total.merge(tally)?;
        }
        verified_writes += recorder.verified;
        for (kind, count) in &recorder.lost {
            *lost_writes.entry((*kind).to_owned()).or_default() += count;
        }
        for example in recorder.lost_examples {
            if lost_examples.len() < 5 {
                lost_examples.push(example);
            }
        }
    }
    let measured = window.measured();
    let mut all = Tally::new()?;
    let mut ops = Vec::with_capacity(Op::ALL.len());
    let (mut shed_total, mut during_fault_total) = (0, 0);
    let mut unexpected: u64 = lost_writes.values().sum();
    for (op, tally) in Op::ALL.iter().zip(&merged) {
        all.merge(&tally.window)?;
        let stats = tally.window.stats(measured);
        shed_total += tally.shed + tally.shed_outside;
        during_fault_total += tally.during_fault;
        unexpected += stats.error_count + tally.errors_outside.values().sum::<u64>();
        ops.push(OpReport {
            op: op.name(),
            weight: weights
                .as_ref()
                .filter(|_| Op::MIX.contains(op))
                .map(|mix| mix.weight(*op)),
            stats,
            shed: tally.shed,
            during_fault: tally.during_fault,
            errors_outside_window: tally
                .errors_outside
                .iter()
                .map(|(label, count)| ((*label).to_owned(), *count))
                .collect(),
            error_examples: tally
                .examples
                .iter()
                .map(|(label, messages)| ((*label).to_owned(), messages.clone()))
                .collect(),
        });
    }
    Ok(SoakReport {
        mix,
        workers: count,
        users,
        ops,
        total: all.stats(measured),
        shed_total,
        during_fault_total,
        verified_writes,
        lost_writes,
        lost_examples,
        unexpected_errors: unexpected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mix_is_the_documented_one() {
        let mix = Mix::default();
        assert_eq!(
            mix.describe(),
            "introspect=40,list-posts=15,get-post=20,create-post=10,refresh=8,login=5,logout=2"
        );
        assert_eq!(mix.total(), 100);
        assert_eq!(mix.weight(Op::Login), 5);
        assert_eq!(mix.weight(Op::IntrospectRevoked), 0);
    }

    #[test]
    fn a_mix_overrides_only_the_named_weights() {
        let mix = Mix::parse("login=1, logout = 0").unwrap();
        assert_eq!(mix.weight(Op::Login), 1);
        assert_eq!(mix.weight(Op::Logout), 0);
        assert_eq!(mix.weight(Op::Introspect), 40);
        assert!(Mix::parse("login").unwrap_err().contains("op=weight"));
        assert!(
            Mix::parse("nope=3")
                .unwrap_err()
                .contains("unknown soak operation")
        );
        assert!(Mix::parse("login=-1").is_err());
        assert!(Mix::parse("introspect-revoked=3").is_err());
        let all_zero = Op::MIX
            .iter()
            .map(|op| format!("{}=0", op.name()))
            .collect::<Vec<_>>()
            .join(",");
        assert!(
            Mix::parse(&all_zero)
                .unwrap_err()
                .contains("every soak weight is 0")
        );
    }

    #[test]
    fn picks_follow_the_weights() {
        let mix = Mix::default();
        let mut rng = Rng::new(11);
        let mut counts = BTreeMap::new();
        let draws = 100_000;
        for _ in 0..draws {
            *counts.entry(mix.pick(&mut rng)).or_insert(0u32) += 1;
        }
        for op in Op::MIX {
            let share = f64::from(counts.get(&op).copied().unwrap_or(0)) / f64::from(draws);
            let expected = f64::from(mix.weight(op)) / 100.0;
            assert!(
                (share - expected).abs() < 0.01,
                "{op:?}: {share} vs {expected}"
            );
        }
        let only_login =
            Mix::parse("introspect=0,list-posts=0,get-post=0,create-post=0,refresh=0,logout=0")
                .unwrap();
        assert!((0..100).all(|_| only_login.pick(&mut rng) == Op::Login));
    }
}
