//! The load loop: tasks each looping one call at a time, per-task histograms merged at
//! the end (no lock per call).

use std::{collections::BTreeMap, future::Future, time::Duration};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::{task::JoinHandle, time::Instant};

/// Why a call failed: a gRPC status code name (`UNAVAILABLE`, …) or a label of ours
/// (`CLIENT_TIMEOUT`, or an answer that was OK but wrong, e.g. `INACTIVE_TOKEN`).
pub type Failure = &'static str;

/// One kind of call, made repeatedly by one task.
pub trait Caller: Send + 'static {
    fn call(&mut self) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// The time frame shared by every task of a scenario: calls completing before
/// `measure_from` are warm-up, calls completing after `until` are not counted.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub measure_from: Instant,
    pub until: Instant,
    pub call_timeout: Duration,
    /// While a fault is injected (a Redis master killed): UNAVAILABLE is expected of
    /// calls that overlap it.
    pub fault: Option<(Instant, Instant)>,
}

impl Window {
    /// A window starting now.
    pub fn starting_now(warmup: Duration, duration: Duration, call_timeout: Duration) -> Self {
        let measure_from = Instant::now() + warmup;
        Self {
            measure_from,
            until: measure_from + duration,
            call_timeout,
            fault: None,
        }
    }

    /// The same window with a fault from `at` after the measured start, for `length`.
    pub fn with_fault(mut self, at: Duration, length: Duration) -> Self {
        let from = self.measure_from + at;
        self.fault = Some((from, from + length));
        self
    }

    /// Whether a call from `start` to `end` overlaps the fault.
    pub fn overlaps_fault(&self, start: Instant, end: Instant) -> bool {
        self.fault
            .is_some_and(|(from, until)| start <= until && end >= from)
    }

    pub fn measured(&self) -> Duration {
        self.until - self.measure_from
    }
}

/// What the tasks of a scenario recorded.
pub struct Tally {
    /// Latency of successful calls, in microseconds.
    pub latency: Histogram<u64>,
    pub errors: BTreeMap<Failure, u64>,
}

impl Tally {
    pub fn new() -> anyhow::Result<Self> {
        // 1 µs to 1 hour, 3 significant digits.
        let latency = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .context("cannot create a latency histogram")?;
        Ok(Self {
            latency,
            errors: BTreeMap::new(),
        })
    }

    pub fn merge(&mut self, other: &Self) -> anyhow::Result<()> {
        self.latency
            .add(&other.latency)
            .map_err(|e| anyhow::anyhow!("cannot merge histograms: {e:?}"))?;
        for (failure, count) in &other.errors {
            *self.errors.entry(failure).or_default() += count;
        }
        Ok(())
    }

    /// The summary of this tally over a measured `window`.
    pub fn stats(&self, window: Duration) -> Stats {
        let ok = self.latency.len();
        let error_count: u64 = self.errors.values().sum();
        let seconds = window.as_secs_f64();
        let latency = if ok == 0 {
            Latency::default()
        } else {
            Latency {
                p50: self.latency.value_at_quantile(0.50),
                p90: self.latency.value_at_quantile(0.90),
                p99: self.latency.value_at_quantile(0.99),
                max: self.latency.max(),
                mean: self.latency.mean(),
            }
        };
        Stats {
            calls: ok + error_count,
            ok,
            rps: ok as f64 / seconds,
            latency_us: latency,
            error_count,
            errors: self
                .errors
                .iter()
                .map(|(failure, count)| ((*failure).to_owned(), *count))
                .collect(),
        }
    }
}

/// Throughput, latency and errors of one measured load.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    /// Calls completed in the measured window.
    pub calls: u64,
    /// Successful calls in the measured window.
    pub ok: u64,
    /// Successful calls per second.
    pub rps: f64,
    /// Latency of the successful calls, in microseconds.
    pub latency_us: Latency,
    pub error_count: u64,
    /// Errors by gRPC status code (or `CLIENT_TIMEOUT`, or a wrong OK answer).
    pub errors: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

/// Starts one task per caller, each calling in a loop until `window.until`.
pub fn spawn_all<C: Caller>(
    callers: Vec<C>,
    window: Window,
) -> Vec<JoinHandle<anyhow::Result<Tally>>> {
    callers
        .into_iter()
        .map(|caller| tokio::spawn(drive(caller, window)))
        .collect()
}

/// Waits for the tasks and merges what they recorded.
pub async fn join_all(handles: Vec<JoinHandle<anyhow::Result<Tally>>>) -> anyhow::Result<Tally> {
    let mut total = Tally::new()?;
    for handle in handles {
        let tally = handle.await.context("a load task panicked")??;
        total.merge(&tally)?;
    }
    Ok(total)
}

/// Runs `callers` over a new window and returns the merged tally.
pub async fn run<C: Caller>(
    callers: Vec<C>,
    warmup: Duration,
    duration: Duration,
    call_timeout: Duration,
) -> anyhow::Result<Stats> {
    let window = Window::starting_now(warmup, duration, call_timeout);
    let tally = join_all(spawn_all(callers, window)).await?;
    Ok(tally.stats(window.measured()))
}

async fn drive<C: Caller>(mut caller: C, window: Window) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    loop {
        let start = Instant::now();
        if start >= window.until {
            break;
        }
        let outcome = tokio::time::timeout(window.call_timeout, caller.call())
            .await
            .unwrap_or(Err("CLIENT_TIMEOUT"));
        let end = Instant::now();
        if end < window.measure_from || end > window.until {
            continue;
        }
        match outcome {
            Ok(()) => {
                let micros =
                    u64::try_from(end.duration_since(start).as_micros()).unwrap_or(u64::MAX);
                tally.latency.saturating_record(micros.max(1));
            }
            Err(failure) => *tally.errors.entry(failure).or_default() += 1,
        }
    }
    Ok(tally)
}

/// The canonical name of a gRPC status code, as the errors are reported.
pub fn code_name(code: tonic::Code) -> Failure {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Maps a failed call to its status code name.
pub fn failure(status: tonic::Status) -> Failure {
    code_name(status.code())
}

/// A small fast PRNG (SplitMix64): enough to pick ids, no dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` ≥ 1).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleepy;

    impl Caller for Sleepy {
        async fn call(&mut self) -> Result<(), Failure> {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(())
        }
    }

    struct Failing;

    impl Caller for Failing {
        async fn call(&mut self) -> Result<(), Failure> {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Err("UNAVAILABLE")
        }
    }

    struct Stuck;

    impl Caller for Stuck {
        async fn call(&mut self) -> Result<(), Failure> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_run_counts_successes_and_stops_by_itself() {
        let stats = run(
            vec![Sleepy, Sleepy],
            Duration::from_millis(20),
            Duration::from_millis(200),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert!(stats.ok > 20, "{stats:?}");
        assert_eq!(stats.error_count, 0);
        assert!(stats.latency_us.p50 >= 5_000, "{stats:?}");
        assert!(stats.latency_us.max >= stats.latency_us.p99);
    }

    #[tokio::test]
    async fn failures_are_counted_by_code_and_timeouts_end_stuck_calls() {
        let stats = run(
            vec![Failing],
            Duration::ZERO,
            Duration::from_millis(100),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert_eq!(stats.ok, 0);
        assert!(stats.errors["UNAVAILABLE"] > 5, "{stats:?}");

        let started = std::time::Instant::now();
        let stats = run(
            vec![Stuck],
            Duration::ZERO,
            Duration::from_millis(300),
            Duration::from_millis(100),
        )
        .await
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(stats.errors["CLIENT_TIMEOUT"] >= 2, "{stats:?}");
    }

    #[test]
    fn rng_stays_in_range() {
        let mut rng = Rng::new(7);
        assert!((0..1000).all(|_| rng.below(10) < 10));
        assert_eq!(rng.below(1), 0);
    }
}
