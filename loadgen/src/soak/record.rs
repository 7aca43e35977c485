//! What a soak worker records: the outcome of each call, tallied per operation.

use std::{collections::BTreeMap, future::Future};

use tokio::time::Instant;

use crate::harness::{Failure, Tally, Window, code_name};

use super::Op;

/// Distinct error messages kept per operation and label.
const EXAMPLES_PER_LABEL: usize = 3;

/// The result of one call.
#[derive(Debug)]
pub(super) enum Outcome {
    Ok,
    /// Login answered RESOURCE_EXHAUSTED without retry details: the hash queue is full.
    Shed,
    Unexpected {
        label: Failure,
        detail: String,
    },
}

pub(super) fn wrong(label: Failure, detail: impl Into<String>) -> Outcome {
    Outcome::Unexpected {
        label,
        detail: detail.into(),
    }
}

pub(super) fn status_outcome(status: &tonic::Status) -> Outcome {
    wrong(
        code_name(status.code()),
        format!("{}: {}", code_name(status.code()), status.message()),
    )
}

/// How a failed Login is counted: shedding (hash queue full: RESOURCE_EXHAUSTED with no
/// details) is expected; throttling (RESOURCE_EXHAUSTED with RetryInfo details, after
/// failed logins, which the soak never makes) and everything else is not.
pub(super) fn login_failure(status: &tonic::Status) -> Outcome {
    if status.code() == tonic::Code::ResourceExhausted {
        if status.details().is_empty() {
            return Outcome::Shed;
        }
        return wrong(
            "RESOURCE_EXHAUSTED_THROTTLED",
            format!("login throttled: {}", status.message()),
        );
    }
    status_outcome(status)
}

/// What one operation recorded.
pub(super) struct OpTally {
    /// Calls completed in the measured window.
    pub(super) window: Tally,
    /// Sheds in the measured window.
    pub(super) shed: u64,
    /// Sheds during warm-up or drain.
    pub(super) shed_outside: u64,
    /// UNAVAILABLE answers to calls that overlapped an injected fault: expected.
    pub(super) during_fault: u64,
    /// Unexpected errors during warm-up or after the window (calls in flight at its end).
    pub(super) errors_outside: BTreeMap<Failure, u64>,
    /// A few messages per label.
    pub(super) examples: BTreeMap<Failure, Vec<String>>,
}

impl OpTally {
    pub(super) fn new() -> anyhow::Result<Self> {
        Ok(Self {
            window: Tally::new()?,
            shed: 0,
            shed_outside: 0,
            during_fault: 0,
            errors_outside: BTreeMap::new(),
            examples: BTreeMap::new(),
        })
    }

    pub(super) fn merge(&mut self, other: &Self) -> anyhow::Result<()> {
        self.window.merge(&other.window)?;
        self.shed += other.shed;
        self.shed_outside += other.shed_outside;
        self.during_fault += other.during_fault;
        for (label, count) in &other.errors_outside {
            *self.errors_outside.entry(label).or_default() += count;
        }
        for (label, messages) in &other.examples {
            let kept = self.examples.entry(label).or_default();
            for message in messages {
                if kept.len() < EXAMPLES_PER_LABEL && !kept.contains(message) {
                    kept.push(message.clone());
                }
            }
        }
        Ok(())
    }
}

/// What one worker recorded, per operation.
pub(super) struct Recorder {
    pub(super) window: Window,
    pub(super) ops: Vec<OpTally>,
    /// Acknowledged writes checked again after the run (revocations, posts).
    pub(super) verified: u64,
    /// Acknowledged writes found undone after the run, by kind, with examples.
    pub(super) lost: BTreeMap<Failure, u64>,
    pub(super) lost_examples: Vec<String>,
}

impl Recorder {
    pub(super) fn new(window: Window) -> anyhow::Result<Self> {
        Ok(Self {
            window,
            ops: Op::ALL
                .iter()
                .map(|_| OpTally::new())
                .collect::<anyhow::Result<_>>()?,
            verified: 0,
            lost: BTreeMap::new(),
            lost_examples: Vec::new(),
        })
    }

    /// Records the check of one acknowledged write after the run: `Some(kind)` when it
    /// was found undone.
    pub(super) fn verified(&mut self, lost: Option<(Failure, String)>) {
        self.verified += 1;
        if let Some((kind, detail)) = lost {
            *self.lost.entry(kind).or_default() += 1;
            if self.lost_examples.len() < EXAMPLES_PER_LABEL {
                self.lost_examples.push(detail);
            }
        }
    }

    /// Runs `call` under the call deadline and records it; returns whether it succeeded.
    pub(super) async fn time<F>(&mut self, op: Op, call: F) -> Outcome
    where
        F: Future<Output = Outcome>,
    {
        let start = Instant::now();
        let outcome = tokio::time::timeout(self.window.call_timeout, call)
            .await
            .unwrap_or_else(|_| {
                wrong(
                    "CLIENT_TIMEOUT",
                    format!("no answer within {:?}", self.window.call_timeout),
                )
            });
        let end = Instant::now();
        let inside = end >= self.window.measure_from && end <= self.window.until;
        let tally = &mut self.ops[op.index()];
        match &outcome {
            Outcome::Ok if inside => {
                let micros =
                    u64::try_from(end.duration_since(start).as_micros()).unwrap_or(u64::MAX);
                tally.window.latency.saturating_record(micros.max(1));
            }
            Outcome::Ok => {}
            Outcome::Shed if inside => tally.shed += 1,
            Outcome::Shed => tally.shed_outside += 1,
            Outcome::Unexpected { label, .. }
                if *label == "UNAVAILABLE" && self.window.overlaps_fault(start, end) =>
            {
                tally.during_fault += 1;
            }
            Outcome::Unexpected { label, detail } => {
                if inside {
                    *tally.window.errors.entry(label).or_default() += 1;
                } else {
                    *tally.errors_outside.entry(label).or_default() += 1;
                }
                let kept = tally.examples.entry(label).or_default();
                if kept.len() < EXAMPLES_PER_LABEL && !kept.contains(detail) {
                    kept.push(detail.clone());
                }
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_unavailable_overlapping_the_fault_is_expected() {
        use std::time::Duration;
        let window = Window::starting_now(
            Duration::ZERO,
            Duration::from_secs(60),
            Duration::from_secs(5),
        )
        .with_fault(Duration::from_millis(300), Duration::from_secs(1));
        let mut recorder = Recorder::new(window).unwrap();
        let unavailable = || async { status_outcome(&tonic::Status::unavailable("failover")) };
        let internal = || async { status_outcome(&tonic::Status::internal("bug")) };
        // Before the fault: an error like any other.
        recorder.time(Op::Refresh, unavailable()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // During it: UNAVAILABLE is expected, anything else is not.
        recorder.time(Op::Refresh, unavailable()).await;
        recorder.time(Op::Refresh, internal()).await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        // After it: an error again.
        recorder.time(Op::Refresh, unavailable()).await;
        let tally = &recorder.ops[Op::Refresh.index()];
        assert_eq!(tally.during_fault, 1);
        assert_eq!(tally.window.errors.get("UNAVAILABLE"), Some(&2));
        assert_eq!(tally.window.errors.get("INTERNAL"), Some(&1));
    }

    #[test]
    fn shedding_is_expected_but_throttling_and_other_codes_are_not() {
        let shed = tonic::Status::resource_exhausted("the server is busy");
        assert!(matches!(login_failure(&shed), Outcome::Shed));
        let throttled = tonic::Status::with_details(
            tonic::Code::ResourceExhausted,
            "too many failed logins",
            vec![1, 2, 3].into(),
        );
        assert!(matches!(
            login_failure(&throttled),
            Outcome::Unexpected {
                label: "RESOURCE_EXHAUSTED_THROTTLED",
                ..
            }
        ));
        let wrong_password = tonic::Status::unauthenticated("wrong username or password");
        match login_failure(&wrong_password) {
            Outcome::Unexpected { label, detail } => {
                assert_eq!(label, "UNAUTHENTICATED");
                assert!(detail.contains("wrong username or password"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }
}
