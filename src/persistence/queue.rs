//! A durable job queue beside the WAL, for work that leaves the process
//! (notifications): jobs waiting for delivery, a bounded list of dead
//! letters, and the keys of jobs already queued with when they were, so a
//! repeat is a no-op until the key ages out. Each is a sled tree named
//! after the queue; jobs are stored as JSON (their format since the first
//! release), keyed by a big-endian id.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{Transactional, Tree};

use super::store::{corrupt, Store, StoreError};

pub struct JobQueue<T> {
    pending: Tree,
    dead: Tree,
    /// key → when it was queued (ms, big-endian).
    seen: Tree,
    /// (when queued, ms big-endian) ++ key: the marks in the order they age out.
    seen_by_time: Tree,
    next_id: AtomicU64,
    /// sled counts a tree by reading all of it: these are kept alongside.
    pending_count: AtomicUsize,
    dead_count: AtomicUsize,
    _jobs: PhantomData<fn() -> T>,
}

fn aged_key(at_ms: u64, key: &[u8]) -> Vec<u8> {
    let mut aged = Vec::with_capacity(8 + key.len());
    aged.extend_from_slice(&at_ms.to_be_bytes());
    aged.extend_from_slice(key);
    aged
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes)
        .map_err(|error| tracing::error!(%error, "a stored job does not decode; skipped"))
        .ok()
}

fn transaction_error(error: TransactionError<()>) -> StoreError {
    match error {
        TransactionError::Storage(error) => StoreError::Sled(error),
        TransactionError::Abort(()) => corrupt("job queue", "transaction aborted"),
    }
}

impl<T: Serialize + DeserializeOwned> JobQueue<T> {
    /// Opens the queue `name`. Marks written before they carried a time are
    /// dated `now_ms`, once.
    pub fn open(store: &Store, name: &str, now_ms: u64) -> Result<Self, StoreError> {
        let pending = store.tree(&format!("{name}_pending"))?;
        let dead = store.tree(&format!("{name}_dead"))?;
        let seen = store.tree(&format!("{name}_seen"))?;
        let seen_by_time = store.tree(&format!("{name}_seen_by_time"))?;
        if seen_by_time.is_empty() && !seen.is_empty() {
            for item in seen.iter() {
                let (key, _) = item?;
                seen.insert(&key, &now_ms.to_be_bytes())?;
                seen_by_time.insert(aged_key(now_ms, &key), &[])?;
            }
        }
        let last = |t: &Tree| -> Result<u64, StoreError> {
            Ok(t.last()?
                .and_then(|(k, _)| k.as_ref().try_into().ok().map(u64::from_be_bytes))
                .unwrap_or(0))
        };
        let next = last(&pending)?.max(last(&dead)?) + 1;
        Ok(Self {
            pending_count: AtomicUsize::new(pending.len()),
            dead_count: AtomicUsize::new(dead.len()),
            pending,
            dead,
            seen,
            seen_by_time,
            next_id: AtomicU64::new(next),
            _jobs: PhantomData,
        })
    }

    /// An id for a new job, above every stored one.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn pending_len(&self) -> usize {
        self.pending_count.load(Ordering::Relaxed)
    }

    pub fn dead_len(&self) -> usize {
        self.dead_count.load(Ordering::Relaxed)
    }

    pub fn marked_len(&self) -> usize {
        self.seen.len()
    }

    /// A job with this key was queued (and its mark has not aged out).
    pub fn is_marked(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.seen.contains_key(key)?)
    }

    /// Stores (or replaces) a pending job.
    pub fn put(&self, id: u64, job: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(job).map_err(|e| corrupt("job", e))?;
        if self.pending.insert(id.to_be_bytes(), bytes)?.is_none() {
            self.pending_count.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Marks `key` as queued at `at_ms`.
    pub fn mark(&self, key: &[u8], at_ms: u64) -> Result<(), StoreError> {
        (&self.seen, &self.seen_by_time)
            .transaction(|(seen, by_time)| {
                seen.insert(key, &at_ms.to_be_bytes())?;
                by_time.insert(aged_key(at_ms, key), &[])?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(transaction_error)
    }

    /// Forgets at most `max` marks made at `cutoff_ms` or before; returns how many went.
    pub fn purge_marks(&self, cutoff_ms: u64, max: usize) -> Result<usize, StoreError> {
        let end = (cutoff_ms + 1).to_be_bytes();
        let mut purged = 0;
        for item in self.seen_by_time.range(..&end[..]).take(max) {
            let (aged, _) = item?;
            (&self.seen, &self.seen_by_time)
                .transaction(|(seen, by_time)| {
                    seen.remove(&aged[8..])?;
                    by_time.remove(&aged)?;
                    Ok::<_, ConflictableTransactionError<()>>(())
                })
                .map_err(transaction_error)?;
            purged += 1;
        }
        Ok(purged)
    }

    /// Every pending job, oldest first.
    pub fn pending(&self) -> Vec<T> {
        self.pending
            .iter()
            .values()
            .filter_map(|v| v.ok().and_then(|v| decode(&v)))
            .collect()
    }

    /// Removes a pending job (delivered, or buried).
    pub fn remove(&self, id: u64) -> Result<(), StoreError> {
        if self.pending.remove(id.to_be_bytes())?.is_some() {
            self.pending_count.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Moves job `id` to the dead letters; past `dead_max` the oldest go.
    /// Answers how many were dropped.
    pub fn bury(&self, id: u64, job: &T, dead_max: usize) -> Result<usize, StoreError> {
        let bytes = serde_json::to_vec(job).map_err(|e| corrupt("job", e))?;
        if self.dead.insert(id.to_be_bytes(), bytes)?.is_none() {
            self.dead_count.fetch_add(1, Ordering::Relaxed);
        }
        self.remove(id)?;
        let mut dropped = 0;
        while self.dead_count.load(Ordering::Relaxed) > dead_max {
            if self.dead.pop_min()?.is_none() {
                break;
            }
            self.dead_count.fetch_sub(1, Ordering::Relaxed);
            dropped += 1;
        }
        Ok(dropped)
    }

    /// Dead letters after id `after`, oldest first, at most `limit`, and
    /// whether more follow.
    pub fn dead_page(&self, after: Option<u64>, limit: usize) -> (Vec<T>, bool) {
        let from = after.map_or(0, |id| id.saturating_add(1));
        let mut page: Vec<T> = self
            .dead
            .range(from.to_be_bytes()..)
            .values()
            .filter_map(|v| v.ok().and_then(|v| decode(&v)))
            .take(limit + 1)
            .collect();
        let more = page.len() > limit;
        page.truncate(limit);
        (page, more)
    }

    /// Takes dead letter `id` out of the dead letters (the caller queues it again).
    pub fn unbury(&self, id: u64) -> Result<Option<T>, StoreError> {
        let Some(bytes) = self.dead.remove(id.to_be_bytes())? else {
            return Ok(None);
        };
        self.dead_count.fetch_sub(1, Ordering::Relaxed);
        Ok(decode(&bytes))
    }

    #[cfg(test)]
    pub(crate) fn aged_marks(&self) -> usize {
        self.seen_by_time.len()
    }
}
