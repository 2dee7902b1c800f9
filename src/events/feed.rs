//! The feed: after every group commit the WAL writer publishes what became
//! durable in that commit, stamped with WAL sequence numbers, to a bounded
//! broadcast ring. Publishing never waits; a subscriber that falls a whole
//! ring behind is told how much it missed and must resynchronise.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::broadcast;

use crate::domain::drop::DropState;
use crate::domain::{DropId, SkuId, TenantId};

/// What a committed change means to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedBody {
    /// A SKU's available units after the change.
    Stock { sku: SkuId, available: u64 },
    /// A drop moved to `state`.
    Drop {
        id: DropId,
        tenant: TenantId,
        state: DropState,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEvent {
    /// The WAL sequence (LSN) of the record, or for a republished state, the
    /// last LSN assigned before it: per entity, never smaller than an earlier one.
    pub seq: u64,
    pub body: FeedBody,
}

/// Everything one commit made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedBatch {
    /// Wall-clock time of the commit, microseconds since the Unix epoch.
    pub committed_at_us: u64,
    pub events: Vec<FeedEvent>,
}

/// The publishing side; clones share one ring.
#[derive(Clone)]
pub struct EventFeed {
    tx: broadcast::Sender<Arc<FeedBatch>>,
}

impl std::fmt::Debug for EventFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventFeed")
            .field("subscribers", &self.tx.receiver_count())
            .finish()
    }
}

impl EventFeed {
    /// A ring of `capacity_batches` commits.
    pub fn new(capacity_batches: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity_batches.max(1));
        Self { tx }
    }

    /// Hands a commit's events to every subscriber; never blocks.
    pub fn publish(&self, batch: FeedBatch) {
        if batch.events.is_empty() {
            return;
        }
        metrics::counter!("flashdrop_feed_events_total").increment(batch.events.len() as u64);
        // No subscriber is not an error: nobody is watching.
        let _ = self.tx.send(Arc::new(batch));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedBatch>> {
        self.tx.subscribe()
    }
}

/// Microseconds since the Unix epoch, by the system clock (commit stamps are
/// for measuring delivery, not for rules, so they do not use the engine clock).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The SKUs somebody follows on the feed (WebSocket watchers, open drops).
/// A SKU nobody follows publishes no stock items, so a sale nobody watches
/// pays nothing for the feed.
#[derive(Debug, Default)]
pub struct Watched {
    /// SKU -> how many followers (the hub counts once per watched SKU, each open drop once).
    skus: DashMap<SkuId, u32>,
}

impl Watched {
    pub fn watch(&self, sku: SkuId) {
        *self.skus.entry(sku).or_insert(0) += 1;
    }

    pub fn unwatch(&self, sku: SkuId) {
        self.skus.remove_if_mut(&sku, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }

    pub fn is_watched(&self, sku: SkuId) -> bool {
        !self.skus.is_empty() && self.skus.contains_key(&sku)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sku_is_watched_while_anyone_follows_it() {
        let watched = Watched::default();
        assert!(!watched.is_watched(SkuId(1)));
        watched.watch(SkuId(1));
        watched.watch(SkuId(1));
        watched.unwatch(SkuId(1));
        assert!(watched.is_watched(SkuId(1)));
        watched.unwatch(SkuId(1));
        assert!(!watched.is_watched(SkuId(1)));
        watched.unwatch(SkuId(1));
        assert!(!watched.is_watched(SkuId(1)), "never below zero");
    }
}
