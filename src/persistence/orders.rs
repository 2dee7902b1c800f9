//! Orders on disk beyond the WAL: an order's latest snapshot read back on
//! demand once it has left memory, and the indexes that find orders without
//! holding them in memory (by buyer, by seller, by idempotency key), each a
//! sled tree of its own.
//!
//! Index entries are written once the order's first WAL record is durable,
//! so they never name a lost order. Start-up indexes every order it
//! recovered that has no entry (orders written before the indexes existed,
//! or a crash between the record and its entries), so an index never
//! misses a durable order either. Idempotency keys are honoured for
//! `retention.order_keys_s`; `purge_keys` forgets older claims, oldest first.

use std::sync::Arc;

use sled::{CompareAndSwapError, Tree};

use super::kinds::Snapshots;
use super::store::{corrupt, Store, StoreError};
use crate::domain::order::Order;
use crate::domain::{OrderId, TenantId, UserId};

/// Whose orders a page is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderIndex {
    Buyer(UserId),
    Seller(TenantId),
}

pub struct OrderArchive {
    /// buyer (16 bytes BE) ++ order id (16 bytes BE) → nothing
    by_buyer: Tree,
    /// seller ++ order id → nothing
    by_seller: Tree,
    /// buyer ++ Idempotency-Key → order id ++ request fingerprint (8 bytes BE)
    keys: Tree,
    /// placed at (ms, 8 bytes BE) ++ order id → buyer ++ Idempotency-Key:
    /// the claims in the order they expire.
    key_ages: Tree,
    snapshots: Snapshots,
}

fn age_key(placed_at_ms: u64, id: OrderId) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&placed_at_ms.to_be_bytes());
    key[8..].copy_from_slice(&id.0.to_be_bytes());
    key
}

/// An index key: the owner (a buyer's or a seller's id), then the order id.
fn pair(owner: u128, id: OrderId) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(&owner.to_be_bytes());
    key[16..].copy_from_slice(&id.0.to_be_bytes());
    key
}

fn key_of(buyer: UserId, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + key.len());
    out.extend_from_slice(&buyer.0.to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

fn claim_value(id: OrderId, fingerprint: u64) -> [u8; 24] {
    let mut value = [0u8; 24];
    value[..16].copy_from_slice(&id.0.to_be_bytes());
    value[16..].copy_from_slice(&fingerprint.to_be_bytes());
    value
}

fn parse_claim(value: &[u8]) -> Result<(OrderId, u64), StoreError> {
    let id: [u8; 16] = value
        .get(..16)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("order key claim", "short"))?;
    let fingerprint: [u8; 8] = value
        .get(16..24)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("order key claim", "short"))?;
    Ok((
        OrderId(u128::from_be_bytes(id)),
        u64::from_be_bytes(fingerprint),
    ))
}

impl OrderArchive {
    pub fn open(store: Arc<Store>) -> Result<Self, StoreError> {
        Ok(Self {
            by_buyer: store.tree("orders_by_buyer")?,
            by_seller: store.tree("orders_by_seller")?,
            keys: store.tree("order_idempotency_keys")?,
            key_ages: store.tree("order_idempotency_key_ages")?,
            snapshots: Snapshots::new(store),
        })
    }

    /// The order's latest snapshot. An order that left memory has one: it
    /// leaves only once its last state is snapshotted.
    pub fn load(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        self.snapshots.load::<Order>(id)
    }

    /// Files the order under its buyer and each of its sellers.
    pub fn index(&self, order: &Order) -> Result<(), StoreError> {
        self.by_buyer.insert(pair(order.buyer.0, order.id), &[])?;
        for seller in order.sellers() {
            self.by_seller.insert(pair(seller.0, order.id), &[])?;
        }
        Ok(())
    }

    /// Files a recovered order that has no entry yet (idempotent), and its
    /// key's claim with its age (unless another order holds the key), or
    /// forgets the claim if the key's retention (`keys_keep_ms`) has passed.
    pub fn ensure_indexed(
        &self,
        order: &Order,
        now_ms: u64,
        keys_keep_ms: u64,
    ) -> Result<bool, StoreError> {
        let aged = age_key(order.created_at_ms, order.id);
        let mut filed = false;
        if let Some((key, fingerprint)) = &order.idempotency {
            let slot = key_of(order.buyer, key);
            if order.created_at_ms.saturating_add(keys_keep_ms) > now_ms {
                if !self.key_ages.contains_key(aged)? {
                    let _ = self.keys.compare_and_swap(
                        &slot,
                        None as Option<&[u8]>,
                        Some(&claim_value(order.id, *fingerprint)[..]),
                    )?;
                    self.key_ages.insert(aged, slot)?;
                    filed = true;
                }
            } else {
                // Past its retention (a claim filed before claims had ages,
                // or a crash during a purge): it goes now.
                self.forget_claim(&slot, order.id)?;
                self.key_ages.remove(aged)?;
            }
        }
        if self.by_buyer.contains_key(pair(order.buyer.0, order.id))? {
            return Ok(filed);
        }
        self.index(order)?;
        Ok(true)
    }

    /// Claims `key` of `buyer` for order `id`. `Ok(None)`: claimed; otherwise
    /// the order (and request fingerprint) that holds it already.
    pub fn claim_key(
        &self,
        buyer: UserId,
        key: &str,
        id: OrderId,
        fingerprint: u64,
        placed_at_ms: u64,
    ) -> Result<Option<(OrderId, u64)>, StoreError> {
        let value = claim_value(id, fingerprint);
        let slot = key_of(buyer, key);
        match self
            .keys
            .compare_and_swap(&slot, None as Option<&[u8]>, Some(&value[..]))?
        {
            Ok(()) => {
                self.key_ages.insert(age_key(placed_at_ms, id), slot)?;
                Ok(None)
            }
            Err(CompareAndSwapError {
                current: Some(held),
                ..
            }) => parse_claim(&held).map(Some),
            Err(CompareAndSwapError { current: None, .. }) => {
                Err(corrupt("order key claim", "vanished while claimed"))
            }
        }
    }

    /// Forgets the claims of orders placed at `cutoff_ms` or before, oldest first
    /// and at most `max`; answers how many went. A key claimed again since
    /// (by a newer order) keeps its newer claim.
    pub fn purge_keys(&self, cutoff_ms: u64, max: usize) -> Result<usize, StoreError> {
        let mut purged = 0;
        for item in self
            .key_ages
            .range(..age_key(cutoff_ms.saturating_add(1), OrderId(0)))
            .take(max)
        {
            let (aged, slot) = item?;
            let id: [u8; 16] = aged
                .get(8..24)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| corrupt("order key age", "short"))?;
            self.forget_claim(&slot, OrderId(u128::from_be_bytes(id)))?;
            self.key_ages.remove(aged)?;
            purged += 1;
        }
        Ok(purged)
    }

    /// Removes the claim of `slot` if order `id` holds it.
    fn forget_claim(&self, slot: &[u8], id: OrderId) -> Result<(), StoreError> {
        if let Some(held) = self.keys.get(slot)? {
            if parse_claim(&held)?.0 == id {
                let _ = self
                    .keys
                    .compare_and_swap(slot, Some(held), None as Option<&[u8]>)?;
            }
        }
        Ok(())
    }

    /// The order (and request fingerprint) `buyer` placed with `key`.
    pub fn claimed(&self, buyer: UserId, key: &str) -> Result<Option<(OrderId, u64)>, StoreError> {
        self.keys
            .get(key_of(buyer, key))?
            .map(|v| parse_claim(&v))
            .transpose()
    }

    /// Up to `limit` order ids of the index's owner, newest first, older than
    /// `before` when given. Order ids are UUIDv7: their order is creation order.
    pub fn page(
        &self,
        index: OrderIndex,
        before: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<OrderId>, StoreError> {
        let (tree, owner) = match index {
            OrderIndex::Buyer(buyer) => (&self.by_buyer, buyer.0),
            OrderIndex::Seller(seller) => (&self.by_seller, seller.0),
        };
        let start = pair(owner, OrderId(0));
        let end = pair(owner, before.unwrap_or(OrderId(u128::MAX)));
        let mut ids = Vec::with_capacity(limit.min(1024));
        for item in tree.range(start..end).rev().take(limit) {
            let (key, _) = item?;
            let id: [u8; 16] = key
                .get(16..32)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| corrupt("order index key", "short"))?;
            ids.push(OrderId(u128::from_be_bytes(id)));
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistence::store::temporary;

    fn archive() -> (tempfile::TempDir, OrderArchive) {
        let (dir, store) = temporary();
        (dir, OrderArchive::open(Arc::new(store)).unwrap())
    }

    #[test]
    fn keys_older_than_the_cutoff_go_oldest_first_and_younger_stay() {
        let (_dir, archive) = archive();
        for (n, placed_at) in [(1u128, 1_000u64), (2, 2_000), (3, 3_000)] {
            let held =
                archive.claim_key(UserId(7), &format!("k{n}"), OrderId(n), n as u64, placed_at);
            assert_eq!(held.unwrap(), None);
        }
        assert_eq!(
            archive.purge_keys(999, 10).unwrap(),
            0,
            "younger than the cutoff"
        );
        assert_eq!(archive.purge_keys(2_500, 1).unwrap(), 1, "at most max");
        assert_eq!(archive.claimed(UserId(7), "k1").unwrap(), None);
        assert_eq!(
            archive.claimed(UserId(7), "k2").unwrap(),
            Some((OrderId(2), 2))
        );
        assert_eq!(archive.purge_keys(2_500, 10).unwrap(), 1);
        assert_eq!(archive.claimed(UserId(7), "k2").unwrap(), None);
        assert_eq!(
            archive.claimed(UserId(7), "k3").unwrap(),
            Some((OrderId(3), 3))
        );
        assert_eq!(archive.purge_keys(2_500, 10).unwrap(), 0);
    }

    #[test]
    fn a_key_claimed_again_after_its_purge_keeps_the_new_claim() {
        let (_dir, archive) = archive();
        archive
            .claim_key(UserId(7), "k", OrderId(1), 1, 1_000)
            .unwrap();
        assert_eq!(archive.purge_keys(5_000, 10).unwrap(), 1);
        archive
            .claim_key(UserId(7), "k", OrderId(2), 2, 6_000)
            .unwrap();
        assert_eq!(archive.purge_keys(5_000, 10).unwrap(), 0);
        assert_eq!(
            archive.claimed(UserId(7), "k").unwrap(),
            Some((OrderId(2), 2))
        );
        // A claim a purge missed (a crash between its two removals) names
        // an older order: it does not take the newer claim with it.
        archive
            .key_ages
            .insert(age_key(500, OrderId(1)), key_of(UserId(7), "k"))
            .unwrap();
        assert_eq!(archive.purge_keys(5_000, 10).unwrap(), 1);
        assert_eq!(
            archive.claimed(UserId(7), "k").unwrap(),
            Some((OrderId(2), 2))
        );
    }
}
