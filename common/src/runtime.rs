//! The Tokio runtime each binary of the pair runs on: multi-threaded, with one worker
//! thread per core (Tokio's default, which follows a container's CPU quota) unless
//! `TOKIO_WORKER_THREADS` says how many. Tokio reads that variable itself but panics on
//! a bad value; here a bad value is a one-line error before anything starts.

use std::{future::Future, process::ExitCode};

use anyhow::Context as _;

/// The variable that sets the number of worker threads (Tokio's own name for it).
pub const WORKER_THREADS_VAR: &str = "TOKIO_WORKER_THREADS";

/// `TOKIO_WORKER_THREADS` read as a count: `None` when unset or empty.
pub fn worker_threads_from_env() -> anyhow::Result<Option<usize>> {
    match std::env::var(WORKER_THREADS_VAR) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => parse_worker_threads(&value).map(Some),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("{WORKER_THREADS_VAR} is not valid UTF-8")
        }
    }
}

fn parse_worker_threads(value: &str) -> anyhow::Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(0) => anyhow::bail!("{WORKER_THREADS_VAR} must be at least 1, not `{value}`"),
        Ok(n) => Ok(n),
        Err(_) => anyhow::bail!("{WORKER_THREADS_VAR} must be a whole number, not `{value}`"),
    }
}

/// A multi-threaded runtime with `worker_threads` workers, or one per core when `None`.
pub fn build(worker_threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    builder.build().context("cannot start the Tokio runtime")
}

/// Runs `main` on the runtime `TOKIO_WORKER_THREADS` asks for; a bad value, or a runtime
/// that cannot start, is a one-line error from `binary` and exit status 1.
pub fn block_on(binary: &str, main: impl Future<Output = ExitCode>) -> ExitCode {
    match worker_threads_from_env().and_then(build) {
        Ok(runtime) => runtime.block_on(main),
        Err(error) => {
            eprintln!("{binary}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_threads_must_be_a_positive_whole_number() {
        assert_eq!(parse_worker_threads("3").unwrap(), 3);
        assert_eq!(parse_worker_threads(" 1 ").unwrap(), 1);
        for bad in ["0", "-1", "two", "1.5"] {
            let error = parse_worker_threads(bad).unwrap_err().to_string();
            assert!(error.contains(WORKER_THREADS_VAR), "{error}");
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn the_runtime_has_the_workers_asked_for() {
        let runtime = build(Some(3)).unwrap();
        assert_eq!(runtime.metrics().num_workers(), 3);
    }
}
