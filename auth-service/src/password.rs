//! argon2id hashing on dedicated threads, with bounded concurrency (DESIGN.md §7):
//! `permits` worker threads hash (so at most that many cores go to hashing and the
//! async runtime keeps the rest for token checks), at most `queue` calls wait, and the
//! rest are turned away at once. Each worker reuses one 19 MiB block buffer, so memory
//! stays at permits × 19 MiB instead of growing with every thread that ever hashed.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::phc::{Output, ParamsString, Salt},
};
use tokio::sync::{mpsc, oneshot};

use crate::{domain::Password, error::AuthError};

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

/// Hashes and verifies passwords. `Argon2::default()` is argon2id with m = 19 MiB,
/// t = 2, p = 1: the OWASP recommendation.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: mpsc::Sender<Job>,
    /// Verified against when the user does not exist, so Login takes as long for an
    /// unknown user as for a wrong password.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// Starts `permits` hashing threads; `queue` calls (at least 1) may wait for one.
    /// The threads end when the last clone of the hasher is dropped.
    pub fn new(permits: usize, queue: usize) -> anyhow::Result<Self> {
        let (jobs, receiver) = mpsc::channel::<Job>(queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        for worker in 0..permits.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{worker}"))
                .spawn(move || work(&receiver))
                .context("cannot start a password hashing thread")?;
        }
        let mut memory = vec![Block::default(); Params::DEFAULT.block_count()];
        let dummy_hash = hash_with(&mut memory, "dummy password for unknown users")?;
        Ok(Self {
            jobs,
            dummy_hash: dummy_hash.into(),
        })
    }

    /// The PHC string of a new salted hash of `password`.
    pub async fn hash(&self, password: &Password) -> Result<String, AuthError> {
        let password = password.expose().to_owned();
        match self.run(Work::Hash { password }).await? {
            Answer::Hashed(hash) => Ok(hash),
            Answer::Verified(_) => Err(AuthError::Internal(anyhow::anyhow!(
                "hasher mixed up a job"
            ))),
        }
    }

    /// Whether `password` matches `hash`; with no hash (unknown user) it checks against
    /// the dummy hash and answers false, taking the same time.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AuthError> {
        let known = hash.is_some();
        let hash: Arc<str> = hash.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let password = password.to_owned();
        match self.run(Work::Verify { password, hash }).await? {
            Answer::Verified(matches) => Ok(known && matches),
            Answer::Hashed(_) => Err(AuthError::Internal(anyhow::anyhow!(
                "hasher mixed up a job"
            ))),
        }
    }

    async fn run(&self, work: Work) -> Result<Answer, AuthError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work,
            span: tracing::Span::current(),
            reply,
        };
        self.jobs.try_send(job).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => AuthError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => {
                AuthError::Internal(anyhow::anyhow!("the password hashing threads are gone"))
            }
        })?;
        answer
            .await
            .context("a password hashing thread stopped")
            .and_then(|answer| answer)
            .map_err(AuthError::Internal)
    }
}

/// A worker thread: takes jobs until the hasher is dropped, reusing one buffer.
fn work(receiver: &Mutex<mpsc::Receiver<Job>>) {
    let mut memory = vec![Block::default(); Params::DEFAULT.block_count()];
    loop {
        let job = {
            let mut receiver = receiver
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            receiver.blocking_recv()
        };
        let Some(job) = job else { break };
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

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let hasher = PasswordHasher::new(1, 4).unwrap();
        let password = Password::parse("correct horse battery", None).unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            hasher
                .verify("correct horse battery", Some(&hash))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("wrong horse battery", Some(&hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn our_hashes_and_the_argon2_crates_agree_both_ways() {
        let hasher = PasswordHasher::new(1, 4).unwrap();
        let ours = hasher
            .hash(&Password::parse("interop passphrase", None).unwrap())
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
                .verify("interop passphrase", Some(&theirs))
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
                .verify("interop passphrase", Some(&cheap))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let hasher = PasswordHasher::new(1, 4).unwrap();
        assert!(
            !hasher
                .verify("dummy password for unknown users", None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn an_unreadable_stored_hash_is_an_error_not_a_match() {
        let hasher = PasswordHasher::new(1, 4).unwrap();
        assert!(
            hasher
                .verify("anything", Some("not a phc string"))
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
                tokio::spawn(async move { hasher.verify("some password", None).await })
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
}
