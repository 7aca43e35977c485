//! argon2id hashing off the async runtime, with bounded concurrency (DESIGN.md §7): at
//! most `permits` hashes run at once, at most `queue` calls wait, the rest are refused.

use std::sync::Arc;

use anyhow::Context as _;
use argon2::{Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier as _};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::{domain::Password, error::AuthError};

/// Hashes and verifies passwords. `Argon2::default()` is argon2id with m = 19 MiB,
/// t = 2, p = 1: the OWASP recommendation.
#[derive(Clone)]
pub struct PasswordHasher {
    /// Hashes running at once.
    running: Arc<Semaphore>,
    /// Hashes running plus waiting; a call that cannot get one is turned away.
    admitted: Arc<Semaphore>,
    /// Verified against when the user does not exist, so Login takes as long for an
    /// unknown user as for a wrong password.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    pub fn new(permits: usize, queue: usize) -> anyhow::Result<Self> {
        let permits = permits.max(1);
        let dummy_hash = hash_blocking("dummy password for unknown users")?;
        Ok(Self {
            running: Arc::new(Semaphore::new(permits)),
            admitted: Arc::new(Semaphore::new(permits + queue)),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// The PHC string of a new salted hash of `password`.
    pub async fn hash(&self, password: &Password) -> Result<String, AuthError> {
        let password = password.expose().to_owned();
        self.run(move || hash_blocking(&password)).await
    }

    /// Whether `password` matches `hash`; with no hash (unknown user) it checks against
    /// the dummy hash and answers false, taking the same time.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AuthError> {
        let known = hash.is_some();
        let hash = hash.map_or_else(|| self.dummy_hash.to_string(), str::to_owned);
        let password = password.to_owned();
        let matches = self.run(move || verify_blocking(&password, &hash)).await?;
        Ok(known && matches)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, AuthError> {
        let _admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| AuthError::Overloaded)?;
        let _running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| AuthError::Internal(e.into()))?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(work))
            .instrument(tracing::debug_span!("argon2"))
            .await
            .context("password hashing task failed")
            .and_then(|result| result)
            .map_err(AuthError::Internal)
    }
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password failed: {e}"))
}

fn verify_blocking(password: &str, hash: &str) -> anyhow::Result<bool> {
    let parsed =
        PasswordHash::new(hash).map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let hasher = PasswordHasher::new(1, 4).unwrap();
        let password = Password::parse("correct horse battery", None).unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
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
    async fn calls_past_the_queue_are_turned_away() {
        let hasher = PasswordHasher::new(1, 0).unwrap();
        let busy = hasher.clone();
        let first = tokio::spawn(async move { busy.verify("some password", None).await });
        // Wait until the first call holds the only admission permit.
        while hasher.admitted.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let second = hasher.verify("some password", None).await;
        assert!(matches!(second, Err(AuthError::Overloaded)));
        assert!(first.await.unwrap().is_ok());
    }
}
