//! Orders on disk beyond the WAL: an order's latest snapshot read back on
//! demand once it has left memory, and the indexes that find orders without
//! holding them in memory (by buyer, by seller, by idempotency key), each a
//! sled tree of its own.
//!
//! Index entries are written once the order's first WAL record is durable,
//! so they never name a lost order. Start-up indexes every order it
//! recovered that has no entry (orders written before the indexes existed,
//! or a crash between the record and its entries), so an index never
//! misses a durable order either.

use std::sync::Arc;

use sled::{CompareAndSwapError, Tree};

use super::record::{EntityKey, SnapshotBody};
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
    store: Arc<Store>,
    /// buyer (16 bytes BE) ++ order id (16 bytes BE) → nothing
    by_buyer: Tree,
    /// seller ++ order id → nothing
    by_seller: Tree,
    /// buyer ++ Idempotency-Key → order id ++ request fingerprint (8 bytes BE)
    keys: Tree,
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
            store,
        })
    }

    /// The order's latest snapshot. An order that left memory has one: it
    /// leaves only once its last state is snapshotted.
    pub fn load(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        match self.store.read_snapshot(EntityKey::Order(id))? {
            None => Ok(None),
            Some((_, SnapshotBody::Order(order))) => Ok(Some(order)),
            Some(_) => Err(corrupt("order snapshot", "holds another kind")),
        }
    }

    /// Files the order under its buyer and each of its sellers.
    pub fn index(&self, order: &Order) -> Result<(), StoreError> {
        self.by_buyer.insert(pair(order.buyer.0, order.id), &[])?;
        for seller in order.sellers() {
            self.by_seller.insert(pair(seller.0, order.id), &[])?;
        }
        Ok(())
    }

    /// Files a recovered order that has no entry yet (idempotent).
    pub fn ensure_indexed(&self, order: &Order) -> Result<bool, StoreError> {
        if self.by_buyer.contains_key(pair(order.buyer.0, order.id))? {
            return Ok(false);
        }
        self.index(order)?;
        if let Some((key, fingerprint)) = &order.idempotency {
            let slot = key_of(order.buyer, key);
            let _ = self.keys.compare_and_swap(
                slot,
                None as Option<&[u8]>,
                Some(&claim_value(order.id, *fingerprint)[..]),
            )?;
        }
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
    ) -> Result<Option<(OrderId, u64)>, StoreError> {
        let value = claim_value(id, fingerprint);
        match self.keys.compare_and_swap(
            key_of(buyer, key),
            None as Option<&[u8]>,
            Some(&value[..]),
        )? {
            Ok(()) => Ok(None),
            Err(CompareAndSwapError {
                current: Some(held),
                ..
            }) => parse_claim(&held).map(Some),
            Err(CompareAndSwapError { current: None, .. }) => {
                Err(corrupt("order key claim", "vanished while claimed"))
            }
        }
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
