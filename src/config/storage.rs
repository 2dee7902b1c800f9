//! `[storage]`, `[wal]`, `[snapshots]` and `[retention]`: where state lives, how it is made durable, and when ended things are forgotten.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{invalid, range, ConfigError};
use crate::persistence::store::BATCH_BYTES_HARD_MAX;
use crate::persistence::{SyncMode, WalSettings};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// sled page cache.
    pub cache_capacity_mb: u64,
    /// A data directory another process holds is waited for this long, then refused.
    pub lock_wait_s: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("flashdrop-data"),
            cache_capacity_mb: 128,
            lock_wait_s: 10,
        }
    }
}

impl StorageConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        range(
            "storage.cache_capacity_mb",
            self.cache_capacity_mb,
            8,
            1 << 20,
        )?;
        range("storage.lock_wait_s", self.lock_wait_s, 0, 600)?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("storage.data_dir", "must not be empty"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    pub sync: SyncMode,
    pub commit_window_us: u64,
    pub batch_records_max: usize,
    pub batch_bytes_max: usize,
    pub channel_capacity: usize,
    /// Batches that snapshots already cover are kept while a durable feed
    /// subscriber (the search indexer, ...) has yet to read them, up to this
    /// many MiB; past it the oldest go and that subscriber rebuilds from
    /// current state instead of holding the WAL.
    pub subscriber_retain_max_mb: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        let wal = WalSettings::default();
        Self {
            sync: wal.sync,
            commit_window_us: wal.commit_window_us,
            batch_records_max: wal.batch_records_max,
            batch_bytes_max: wal.batch_bytes_max,
            channel_capacity: wal.channel_capacity,
            subscriber_retain_max_mb: wal.pinned_bytes_max >> 20,
        }
    }
}

impl WalConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let w = self;
        range("wal.commit_window_us", w.commit_window_us, 0, 100_000)?;
        range("wal.batch_records_max", w.batch_records_max, 1, 65_536)?;
        range(
            "wal.batch_bytes_max",
            w.batch_bytes_max,
            4096,
            BATCH_BYTES_HARD_MAX,
        )?;
        range("wal.channel_capacity", w.channel_capacity, 16, 1 << 22)?;
        range(
            "wal.subscriber_retain_max_mb",
            w.subscriber_retain_max_mb,
            1,
            1 << 20,
        )?;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// A SKU writes a snapshot after this many WAL records of its own.
    pub every_records: u64,
    /// A changed SKU writes a snapshot at least this often.
    pub interval_s: u64,
    /// While the WAL holds more than this (MiB of batches that snapshots do
    /// not cover yet), changed SKUs snapshot at their next housekeeping
    /// tick instead of waiting for `interval_s`, so the WAL is a window of
    /// bytes, not of time, whatever the traffic.
    pub wal_max_mb: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            every_records: 50_000,
            interval_s: 60,
            wal_max_mb: 64,
        }
    }
}

impl SnapshotConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        range("snapshots.every_records", self.every_records, 1, 1 << 40)?;
        range("snapshots.interval_s", self.interval_s, 1, 86_400)?;
        range("snapshots.wal_max_mb", self.wal_max_mb, 1, 1 << 20)?;
        Ok(())
    }
}

/// How long ended identity entities stay before a sweep forgets them, in
/// memory and on disk (a `Deleted` WAL record, then their snapshot goes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Seconds between sweeps (of expired carts and of ended identity entities).
    pub sweep_interval_s: u64,
    /// Entities forgotten per batch at most (at most a tenth of `wal.channel_capacity`); a sweep repeats while a batch is full.
    pub sweep_batch_max: usize,
    /// A session this long after it expired or was revoked (at least `auth.access_ttl_s`).
    pub sessions_s: u64,
    /// An invitation this long after it expired, used or not.
    pub invitations_s: u64,
    /// A follow this long after its unfollow.
    pub unfollows_s: u64,
    /// A notification's "already queued" mark this long; a restart announces
    /// again only order states reached more recently than this.
    pub notification_keys_s: u64,
    /// An order's `Idempotency-Key` is honoured this long after the order
    /// was placed; a repeat after that places a new order.
    pub order_keys_s: u64,
    /// Versions kept in each product's history, newest first (older ones
    /// are forgotten as new ones are made; 1..=10,000).
    pub product_versions: u64,
    /// A finished import job, with its row errors, this long after it
    /// finished; then `GET /v1/imports/{id}` answers 404.
    pub import_jobs_s: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            sweep_interval_s: 60,
            sweep_batch_max: 1_000,
            sessions_s: 7 * 86_400,
            invitations_s: 7 * 86_400,
            unfollows_s: 30 * 86_400,
            notification_keys_s: 30 * 86_400,
            order_keys_s: 86_400,
            product_versions: 100,
            import_jobs_s: 30 * 86_400,
        }
    }
}

impl RetentionConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let r = self;
        range("retention.sweep_interval_s", r.sweep_interval_s, 1, 86_400)?;
        range("retention.sweep_batch_max", r.sweep_batch_max, 1, 100_000)?;
        range(
            "retention.invitations_s",
            r.invitations_s,
            0,
            10 * 366 * 86_400,
        )?;
        range("retention.unfollows_s", r.unfollows_s, 0, 10 * 366 * 86_400)?;
        range(
            "retention.notification_keys_s",
            r.notification_keys_s,
            3_600,
            10 * 366 * 86_400,
        )?;
        range(
            "retention.order_keys_s",
            r.order_keys_s,
            60,
            10 * 366 * 86_400,
        )?;
        range("retention.product_versions", r.product_versions, 1, 10_000)?;
        range(
            "retention.import_jobs_s",
            r.import_jobs_s,
            60,
            10 * 366 * 86_400,
        )?;
        Ok(())
    }
}
