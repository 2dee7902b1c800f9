//! Password hashing with argon2id. Hashes run on tokio's blocking pool, at most
//! `concurrency` at once, so a login flood cannot starve the HTTP workers or
//! allocate unbounded memory (`memory_kib` per hash).

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2: {0}")]
    Argon(String),
    #[error("the hashing pool is gone")]
    Closed,
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of a random password: unknown accounts are verified against it,
    /// so a miss costs what a hit costs (no enumeration by timing).
    decoy: Arc<String>,
    /// Verifications run, known account or not (the anti-enumeration test reads it).
    verifications: Arc<std::sync::atomic::AtomicU64>,
}

impl PasswordHasher {
    pub fn new(params: PasswordParams, concurrency: usize) -> Result<Self, HashError> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| HashError::Argon(e.to_string()))?;
        let mut random = [0u8; 24];
        getrandom::fill(&mut random).map_err(|e| HashError::Argon(e.to_string()))?;
        let decoy = hash_with(&params, &random)?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            decoy: Arc::new(decoy),
            verifications: Arc::default(),
        })
    }

    /// A PHC string for `password`.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let params = self.params.clone();
        self.off_thread(move || hash_with(&params, password.as_bytes()))
            .await?
    }

    /// Whether `password` matches `phc`; with `None`, checks against the decoy
    /// and answers false, taking the same time.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, HashError> {
        let known = phc.is_some();
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("flashdrop_password_verifications_total").increment(1);
        let phc = phc.unwrap_or_else(|| (*self.decoy).clone());
        let matched = self
            .off_thread(move || {
                let parsed =
                    PasswordHash::new(&phc).map_err(|e| HashError::Argon(e.to_string()))?;
                Ok::<bool, HashError>(
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok(),
                )
            })
            .await??;
        Ok(known && matched)
    }

    pub fn verifications(&self) -> u64 {
        self.verifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn off_thread<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| HashError::Closed)?;
        metrics::gauge!("flashdrop_password_hashes_in_flight").increment(1.0);
        let result = tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| HashError::Closed);
        metrics::gauge!("flashdrop_password_hashes_in_flight").decrement(1.0);
        result
    }
}

fn hash_with(params: &Params, password: &[u8]) -> Result<String, HashError> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Argon(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(
            PasswordParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            2,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = hasher();
        let phc = hasher.hash("tangerine-Orbit-42".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(hasher
            .verify("tangerine-Orbit-42".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!hasher
            .verify("tangerine-Orbit-43".into(), Some(phc))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        let hasher = hasher();
        assert!(!hasher.verify("anything-at-all".into(), None).await.unwrap());
    }
}
