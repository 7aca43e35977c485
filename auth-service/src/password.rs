//! argon2id hashing on dedicated threads, with bounded concurrency (docs: README,
//! "Password hashing"): `permits` worker threads hash (so at most that many cores go to
//! hashing and the async runtime keeps the rest for token checks), at most `queue` calls
//! wait, and the rest are turned away at once. Each worker reuses one 19 MiB block
//! buffer, so memory stays at permits × 19 MiB instead of growing with every thread that
//! ever hashed.
//!
//! The waiting calls are served round-robin by client address, not first come first
//! served: with one address's calls queued four deep (its share, see `admission`), a
//! call from another address waits for at most the hash in progress and one of each
//! other waiting address, instead of behind all of the flood's. A call whose caller has
//! gone away by the time its turn comes is skipped, not hashed.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::{Arc, Condvar, Mutex, MutexGuard},
};

use anyhow::Context as _;
use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::phc::{Output, ParamsString, Salt},
};
use tokio::sync::oneshot;

use crate::{admission::Ticket, domain::Password, error::AuthError};

const SALT_LEN: usize = 16;

/// What a worker is asked to do.
enum Work {
    Hash { password: String },
    Verify { password: String, hash: Arc<str> },
}

enum Answer {
    Hashed(String),
    Verified(bool),
}

struct Job {
    work: Work,
    span: tracing::Span,
    reply: oneshot::Sender<anyhow::Result<Answer>>,
}

/// The waiting jobs, one line per client address, served in turn.
#[derive(Default)]
struct FairQueue {
    lines: HashMap<Option<IpAddr>, VecDeque<Job>>,
    /// Addresses with waiting jobs, in the order they are served next.
    turns: VecDeque<Option<IpAddr>>,
    waiting: usize,
    closed: bool,
    /// Tests hold the workers back until the jobs they need are all waiting.
    #[cfg(test)]
    held: bool,
}

impl FairQueue {
    fn push(&mut self, address: Option<IpAddr>, job: Job) {
        let line = self.lines.entry(address).or_default();
        if line.is_empty() {
            self.turns.push_back(address);
        }
        line.push_back(job);
        self.waiting += 1;
    }

    fn pop(&mut self) -> Option<Job> {
        #[cfg(test)]
        if self.held {
            return None;
        }
        let address = self.turns.pop_front()?;
        let line = self.lines.get_mut(&address)?;
        let job = line.pop_front();
        if line.is_empty() {
            self.lines.remove(&address);
        } else {
            self.turns.push_back(address);
        }
        self.waiting -= usize::from(job.is_some());
        job
    }
}

/// The queue and the signal the workers wait on.
#[derive(Default)]
struct Shared {
    queue: Mutex<FairQueue>,
    ready: Condvar,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, FairQueue> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Ends the worker threads when the last clone of the hasher is dropped.
struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.queue().closed = true;
        self.0.ready.notify_all();
    }
}

/// Hashes and verifies passwords. `Argon2::default()` is argon2id with m = 19 MiB,
/// t = 2, p = 1: the OWASP recommendation.
#[derive(Clone)]
pub struct PasswordHasher {
    shared: Arc<Shared>,
    queue_limit: usize,
    _closer: Arc<Closer>,
    /// Verified against when the user does not exist, so Login takes as long for an
    /// unknown user as for a wrong password.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// Starts `permits` hashing threads; `queue` calls (at least 1) may wait for one.
    /// The threads end when the last clone of the hasher is dropped.
    pub fn new(permits: usize, queue: usize) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared::default());
        for worker in 0..permits.max(1) {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{worker}"))
                .spawn(move || work(&shared))
                .context("cannot start a password hashing thread")?;
        }
        let mut memory = vec![Block::default(); Params::DEFAULT.block_count()];
        let dummy_hash = hash_with(&mut memory, "dummy password for unknown users")?;
        Ok(Self {
            _closer: Arc::new(Closer(shared.clone())),
            shared,
            queue_limit: queue.max(1),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// The PHC string of a new salted hash of `password`, for the holder of `ticket`.
    pub async fn hash(&self, password: &Password, ticket: &Ticket) -> Result<String, AuthError> {
        let password = password.expose().to_owned();
        match self.run(Work::Hash { password }, ticket).await? {
            Answer::Hashed(hash) => Ok(hash),
            Answer::Verified(_) => Err(AuthError::Internal(anyhow::anyhow!(
                "hasher mixed up a job"
            ))),
        }
    }

    /// Whether `password` matches `hash`; with no hash (unknown user) it checks against
    /// the dummy hash and answers false, taking the same time.
    pub async fn verify(
        &self,
        password: &str,
        hash: Option<&str>,
        ticket: &Ticket,
    ) -> Result<bool, AuthError> {
        let known = hash.is_some();
        let hash: Arc<str> = hash.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let password = password.to_owned();
        match self.run(Work::Verify { password, hash }, ticket).await? {
            Answer::Verified(matches) => Ok(known && matches),
            Answer::Hashed(_) => Err(AuthError::Internal(anyhow::anyhow!(
                "hasher mixed up a job"
            ))),
        }
    }

    async fn run(&self, work: Work, ticket: &Ticket) -> Result<Answer, AuthError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work,
            span: tracing::Span::current(),
            reply,
        };
        {
            let mut queue = self.shared.queue();
            if queue.waiting >= self.queue_limit {
                return Err(AuthError::Overloaded);
            }
            queue.push(ticket.address(), job);
        }
        self.shared.ready.notify_one();
        answer
            .await
            .context("a password hashing thread stopped")
            .and_then(|answer| answer)
            .map_err(AuthError::Internal)
    }
}

/// A worker thread: takes jobs until the hasher is dropped, reusing one buffer.
fn work(shared: &Shared) {
    let mut memory = vec![Block::default(); Params::DEFAULT.block_count()];
    loop {
        let job = {
            let mut queue = shared.queue();
            loop {
                if let Some(job) = queue.pop() {
                    break job;
                }
                if queue.closed {
                    return;
                }
                queue = shared
                    .ready
                    .wait(queue)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        if job.reply.is_closed() {
            // The call was cancelled while it waited: nobody wants this hash.
            continue;
        }
        let _entered = job.span.enter();
        let _argon2 = tracing::debug_span!("argon2").entered();
        let answer = match &job.work {
            Work::Hash { password } => hash_with(&mut memory, password).map(Answer::Hashed),
            Work::Verify { password, hash } => {
                verify_with(&mut memory, password, hash).map(Answer::Verified)
            }
        };
        // The caller may have gone away (its call was cancelled): nothing to do.
        let _ = job.reply.send(answer);
    }
}

fn hash_with(memory: &mut [Block], password: &str) -> anyhow::Result<String> {
    let params = Params::DEFAULT;
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness for a salt: {e}"))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            password.as_bytes(),
            &salt,
            &mut out,
            &mut memory[..params.block_count()],
        )
        .map_err(|e| anyhow::anyhow!("hashing a password failed: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?,
        salt: Some(Salt::new(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("hash output: {e}"))?),
    };
    Ok(phc.to_string())
}

fn verify_with(memory: &mut Vec<Block>, password: &str, hash: &str) -> anyhow::Result<bool> {
    let parsed =
        PasswordHash::new(hash).map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str())
        .map_err(|e| anyhow::anyhow!("stored hash is not argon2: {e}"))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| anyhow::anyhow!("stored hash version: {e}"))?
        .unwrap_or_default();
    let params =
        Params::try_from(&parsed).map_err(|e| anyhow::anyhow!("stored hash parameters: {e}"))?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        anyhow::bail!("stored hash has no salt or output");
    };
    if memory.len() < params.block_count() {
        // Hashed with more memory than today's parameters: grow this worker's buffer.
        memory.resize(params.block_count(), Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            &mut memory[..params.block_count()],
        )
        .map_err(|e| anyhow::anyhow!("verifying a password failed: {e}"))?;
    Ok(constant_time_eq(&out, expected.as_bytes()))
}

/// Compares without an early exit, so timing says nothing about where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher as _, PasswordVerifier as _};

    use super::*;

    fn anyone() -> Ticket {
        Ticket::untracked(None)
    }

    fn from(address: &str) -> Ticket {
        Ticket::untracked(Some(address.parse().unwrap()))
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let hasher = PasswordHasher::new(1, 4).unwrap();
        let password = Password::parse("correct horse battery", None).unwrap();
        let hash = hasher.hash(&password, &anyone()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            hasher
                .verify("correct horse battery", Some(&hash), &anyone())
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("wrong horse battery", Some(&hash), &anyone())
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn our_hashes_and_the_argon2_crates_agree_both_ways() {
        let hasher = PasswordHasher::new(1, 4).unwrap();
        let ours = hasher
            .hash(
                &Password::parse("interop passphrase", None).unwrap(),
                &anyone(),
            )
            .await
            .unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"interop passphrase", &parsed)
                .is_ok()
        );
        let theirs = Argon2::default()
            .hash_password(b"interop passphrase")
            .unwrap()
            .to_string();
        assert!(
            hasher
                .verify("interop passphrase", Some(&theirs), &anyone())
                .await
                .unwrap()
        );
        // A hash made with other (cheaper) parameters still verifies.
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 1, 1, None).unwrap(),
        )
        .hash_password(b"interop passphrase")
        .unwrap()
        .to_string();
        assert!(
            hasher
                .verify("interop passphrase", Some(&cheap), &anyone())
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let hasher = PasswordHasher::new(1, 4).unwrap();
        assert!(
            !hasher
                .verify("dummy password for unknown users", None, &anyone())
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn an_unreadable_stored_hash_is_an_error_not_a_match() {
        let hasher = PasswordHasher::new(1, 4).unwrap();
        assert!(
            hasher
                .verify("anything", Some("not a phc string"), &anyone())
                .await
                .is_err()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_past_the_queue_are_turned_away() {
        let hasher = PasswordHasher::new(1, 1).unwrap();
        // One running and one waiting fill the hasher; with 8 at once some must be
        // turned away, and the others still succeed.
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.verify("some password", None, &anyone()).await })
            })
            .collect();
        let mut turned_away = 0;
        for call in calls {
            match call.await.unwrap() {
                Err(AuthError::Overloaded) => turned_away += 1,
                Ok(false) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(turned_away >= 1, "no call was turned away");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queue_of_one_address_does_not_hold_back_another_address() {
        let hasher = PasswordHasher::new(1, 16).unwrap();
        let (done, mut order) = tokio::sync::mpsc::unbounded_channel();
        let call = |label: &'static str, address: &'static str| {
            let (hasher, done) = (hasher.clone(), done.clone());
            tokio::spawn(async move {
                hasher
                    .verify("some password", None, &from(address))
                    .await
                    .unwrap();
                done.send(label).unwrap();
            })
        };
        // The workers wait until all six calls are queued, so the order they are
        // served in depends on the queue alone, not on how busy the machine is.
        hasher.shared.queue().held = true;
        let mut calls = Vec::new();
        for label in ["flood 1", "flood 2", "flood 3", "flood 4", "flood 5"] {
            calls.push(call(label, "192.0.2.66"));
            while hasher.shared.queue().waiting < calls.len() {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        calls.push(call("user", "192.0.2.1"));
        while hasher.shared.queue().waiting < calls.len() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        hasher.shared.queue().held = false;
        hasher.shared.ready.notify_all();
        for call in calls {
            call.await.unwrap();
        }
        drop(done);
        let mut finished = Vec::new();
        while let Some(label) = order.recv().await {
            finished.push(label);
        }
        let user = finished.iter().position(|l| *l == "user").unwrap();
        // First come, first served would put the user last (index 5). Round-robin
        // serves it right after the flood's first call (index 1; one place of slack
        // for the order the finished tasks report in).
        assert!(user <= 2, "served in the order {finished:?}");
    }
}
