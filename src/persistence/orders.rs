//! Orders on disk beyond the WAL: an order's latest snapshot read back on
//! demand once it has left memory, and the indexes that find orders without
//! holding them in memory (by buyer, by seller, by idempotency key), each a
//! sled tree of its own.
//!
//! The buyer and seller indexes keep an owner's order ids in buckets of up
//! to `BUCKET_IDS` sorted ids, one sled key per bucket, not one per order.
//! sled holds memory for every key it stores, whatever its cache size: about
//! 100 to 170 bytes for a small key inserted at a scattered place, as a
//! buyer's orders arrive (measured: 1M such keys grew RSS by 80 MiB per
//! 500k with a 32 MiB cache, 48 MiB with a 4 MiB one; the same ids in
//! per-buyer values grew it by 13 MiB), and about 24 bytes for one inserted
//! in order, as a seller's orders arrive. A settled order's history is
//! three keys (its snapshot, the sandbox ledger's two); with buckets its
//! indexes add a key per 64 orders instead of one per order.
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

/// Most ids a buyer bucket takes before the next id opens a new bucket (a
/// 1 KiB value). An id older than a full bucket's newest still goes into
/// it, so a bucket can exceed this slightly after late filing at start-up.
pub const BUCKET_IDS: usize = 64;

/// The per-order buyer index of data written before buckets.
const LEGACY_BY_BUYER: &str = "orders_by_buyer";
/// The per-order seller index of data written before buckets.
const LEGACY_BY_SELLER: &str = "orders_by_seller";

/// Stripes of the lock that makes a bucket's read-modify-write atomic.
const BUCKET_LOCKS: usize = 64;

/// An owner's order ids in buckets of up to `BUCKET_IDS` ascending ids, one
/// sled key per bucket: owner (16 bytes BE) ++ the bucket's first order id
/// (16 bytes BE) → its order ids, ascending, 16 bytes BE each. A bucket
/// keyed `k` holds the owner's ids from `k` up to the next bucket's key.
struct Buckets {
    tree: Tree,
    /// Serialise changes to one owner's buckets (striped by owner).
    locks: Vec<parking_lot::Mutex<()>>,
}

impl Buckets {
    fn open(store: &Store, name: &str) -> Result<Self, StoreError> {
        Ok(Self {
            tree: store.tree(name)?,
            locks: (0..BUCKET_LOCKS)
                .map(|_| parking_lot::Mutex::new(()))
                .collect(),
        })
    }

    fn lock(&self, owner: u128) -> parking_lot::MutexGuard<'_, ()> {
        let stripe = (owner ^ (owner >> 64)) as usize % BUCKET_LOCKS;
        self.locks[stripe].lock()
    }

    /// The bucket that holds `id` if the owner has it: the one with the
    /// greatest key at or below `id`.
    fn bucket_of(
        &self,
        owner: u128,
        id: OrderId,
    ) -> Result<Option<(sled::IVec, sled::IVec)>, StoreError> {
        Ok(self
            .tree
            .range(pair(owner, OrderId(0))..=pair(owner, id))
            .next_back()
            .transpose()?)
    }

    /// Adds `id` to its owner's buckets; answers false when it was there.
    fn file(&self, owner: u128, id: OrderId) -> Result<bool, StoreError> {
        let _filing = self.lock(owner);
        let Some((key, ids)) = self.bucket_of(owner, id)? else {
            // Older than every bucket: it joins the oldest bucket, re-keyed
            // under it, when that has room, else opens a bucket of its own.
            let first = self
                .tree
                .range(pair(owner, OrderId(0))..=pair(owner, OrderId(u128::MAX)))
                .next()
                .transpose()?;
            let mut batch = sled::Batch::default();
            match first {
                Some((key, ids)) if ids.len() / 16 < BUCKET_IDS => {
                    let mut grown = Vec::with_capacity(ids.len() + 16);
                    grown.extend_from_slice(&id.0.to_be_bytes());
                    grown.extend_from_slice(&ids);
                    batch.remove(key);
                    batch.insert(&pair(owner, id)[..], grown);
                }
                _ => batch.insert(&pair(owner, id)[..], &id.0.to_be_bytes()[..]),
            }
            self.tree.apply_batch(batch)?;
            return Ok(true);
        };
        let at = match find_in(&ids, id)? {
            Ok(_) => return Ok(false),
            Err(at) => at,
        };
        if at == ids.len() / 16 && at >= BUCKET_IDS {
            // Newer than a full bucket's newest: the next bucket opens.
            self.tree.insert(pair(owner, id), &id.0.to_be_bytes())?;
        } else {
            let mut grown = Vec::with_capacity(ids.len() + 16);
            grown.extend_from_slice(&ids[..at * 16]);
            grown.extend_from_slice(&id.0.to_be_bytes());
            grown.extend_from_slice(&ids[at * 16..]);
            self.tree.insert(key, grown)?;
        }
        Ok(true)
    }

    /// Whether `id` is filed under `owner`.
    fn filed(&self, owner: u128, id: OrderId) -> Result<bool, StoreError> {
        match self.bucket_of(owner, id)? {
            Some((_, ids)) => Ok(find_in(&ids, id)?.is_ok()),
            None => Ok(false),
        }
    }

    /// A page: the buckets that start below `before`, newest first, each
    /// read newest first (a bucket starting below `before` may also hold
    /// ids at or above it, which are skipped).
    fn page(
        &self,
        owner: u128,
        before: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<OrderId>, StoreError> {
        let before = before.unwrap_or(OrderId(u128::MAX));
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in self
            .tree
            .range(pair(owner, OrderId(0))..pair(owner, before))
            .rev()
        {
            let (_, ids) = item?;
            check_bucket(&ids)?;
            for index in (0..ids.len() / 16).rev() {
                if out.len() == limit {
                    return Ok(out);
                }
                let id = id_at(&ids, index);
                if id < before {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }
}

pub struct OrderArchive {
    by_buyer: Buckets,
    /// The per-order buyer index of older data directories. Never read:
    /// start-up files every recovered order in the buckets, then
    /// `retire_legacy` empties it and the next start drops it.
    legacy_by_buyer: Option<Tree>,
    by_seller: Buckets,
    /// The per-order seller index of older data directories (seller ++
    /// order id → nothing): `retire_legacy` files its entries in the
    /// buckets, then empties it, and the next start drops it.
    legacy_by_seller: Option<Tree>,
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

/// The `N` bytes of `value` at `at`, or corruption of `what`.
fn field<const N: usize>(
    value: &[u8],
    at: usize,
    what: &'static str,
) -> Result<[u8; N], StoreError> {
    value
        .get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt(what, "short"))
}

fn parse_claim(value: &[u8]) -> Result<(OrderId, u64), StoreError> {
    Ok((
        OrderId(u128::from_be_bytes(field(value, 0, "order key claim")?)),
        u64::from_be_bytes(field(value, 16, "order key claim")?),
    ))
}

fn id_at(ids: &[u8], index: usize) -> OrderId {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&ids[index * 16..index * 16 + 16]);
    OrderId(u128::from_be_bytes(bytes))
}

fn check_bucket(ids: &[u8]) -> Result<(), StoreError> {
    if ids.len().is_multiple_of(16) {
        Ok(())
    } else {
        Err(corrupt("buyer order bucket", "length not a multiple of 16"))
    }
}

/// Where `id` is in a bucket's ascending ids: `Ok` at, `Err` where it goes.
fn find_in(ids: &[u8], id: OrderId) -> Result<Result<usize, usize>, StoreError> {
    check_bucket(ids)?;
    let (mut low, mut high) = (0, ids.len() / 16);
    while low < high {
        let mid = (low + high) / 2;
        match id_at(ids, mid).cmp(&id) {
            std::cmp::Ordering::Less => low = mid + 1,
            std::cmp::Ordering::Greater => high = mid,
            std::cmp::Ordering::Equal => return Ok(Ok(mid)),
        }
    }
    Ok(Err(low))
}

/// The tree `name` of an older layout if it holds anything; an empty one
/// is dropped.
fn legacy(store: &Store, name: &str) -> Result<Option<Tree>, StoreError> {
    match store.existing_tree(name)? {
        Some(tree) if tree.is_empty() => {
            drop(tree);
            store.drop_tree(name)?;
            Ok(None)
        }
        tree => Ok(tree),
    }
}

/// The owner and order id of an index key made by `pair`.
fn unpair(key: &[u8]) -> Result<(u128, OrderId), StoreError> {
    Ok((
        u128::from_be_bytes(field(key, 0, "order index key")?),
        OrderId(u128::from_be_bytes(field(key, 16, "order index key")?)),
    ))
}

impl OrderArchive {
    pub fn open(store: Arc<Store>) -> Result<Self, StoreError> {
        Ok(Self {
            by_buyer: Buckets::open(&store, "orders_by_buyer_buckets")?,
            legacy_by_buyer: legacy(&store, LEGACY_BY_BUYER)?,
            by_seller: Buckets::open(&store, "orders_by_seller_buckets")?,
            legacy_by_seller: legacy(&store, LEGACY_BY_SELLER)?,
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

    /// Files the order under each of its sellers, then its buyer
    /// (idempotent). The buyer's entry comes last: start-up takes it to
    /// mean the order is filed everywhere.
    pub fn index(&self, order: &Order) -> Result<(), StoreError> {
        for seller in order.sellers() {
            self.by_seller.file(seller.0, order.id)?;
        }
        self.by_buyer.file(order.buyer.0, order.id)?;
        Ok(())
    }

    /// Empties the per-order indexes of an older data directory once
    /// start-up has filed every recovered order in the buckets (the seller
    /// index's entries are filed from the index itself); the next start
    /// drops them.
    pub fn retire_legacy(&self) -> Result<(), StoreError> {
        if let Some(legacy) = &self.legacy_by_seller {
            for item in legacy.iter() {
                let (key, _) = item?;
                let (seller, id) = unpair(&key)?;
                self.by_seller.file(seller, id)?;
            }
            self.by_seller.tree.flush()?;
        }
        for legacy in [&self.legacy_by_buyer, &self.legacy_by_seller]
            .into_iter()
            .flatten()
        {
            legacy.clear()?;
            legacy.flush()?;
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
        if self.by_buyer.filed(order.buyer.0, order.id)? {
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
            let id = u128::from_be_bytes(field(&aged, 8, "order key age")?);
            self.forget_claim(&slot, OrderId(id))?;
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
        match index {
            OrderIndex::Buyer(buyer) => self.by_buyer.page(buyer.0, before, limit),
            OrderIndex::Seller(seller) => self.by_seller.page(seller.0, before, limit),
        }
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

    /// Every page of `buyer`, `limit` at a time, following the cursor.
    fn all_pages(archive: &OrderArchive, buyer: UserId, limit: usize) -> Vec<OrderId> {
        let mut out = Vec::new();
        let mut before = None;
        loop {
            let page = archive
                .page(OrderIndex::Buyer(buyer), before, limit)
                .unwrap();
            assert!(page.len() <= limit);
            out.extend(&page);
            if page.len() < limit {
                return out;
            }
            before = page.last().copied();
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Filed in any order, with repeats and other buyers between, a
        /// buyer's pages list each of its ids once, newest first, from any
        /// cursor, and buckets stay near their bound.
        #[test]
        fn buyer_buckets_page_like_a_sorted_set(
            ids in proptest::collection::vec((0u128..3, 1u128..400), 0..400),
            limit in 1usize..70,
            cursor in 0u128..401,
        ) {
            let (_dir, archive) = archive();
            let mut model: std::collections::BTreeMap<u128, std::collections::BTreeSet<u128>> =
                Default::default();
            for (buyer, id) in &ids {
                let fresh = archive.by_buyer.file(*buyer, OrderId(*id)).unwrap();
                proptest::prop_assert_eq!(fresh, model.entry(*buyer).or_default().insert(*id));
            }
            for buyer in 0..3u128 {
                let expected: Vec<OrderId> = model
                    .get(&buyer)
                    .map(|set| set.iter().rev().map(|id| OrderId(*id)).collect())
                    .unwrap_or_default();
                proptest::prop_assert_eq!(&all_pages(&archive, UserId(buyer), limit), &expected);
                let below: Vec<OrderId> = expected
                    .iter()
                    .copied()
                    .filter(|id| id.0 < cursor)
                    .take(limit)
                    .collect();
                let page = archive
                    .page(OrderIndex::Buyer(UserId(buyer)), Some(OrderId(cursor)), limit)
                    .unwrap();
                proptest::prop_assert_eq!(page, below);
                for id in &expected {
                    proptest::prop_assert!(archive.by_buyer.filed(buyer, *id).unwrap());
                }
            }
        }
    }

    fn bucket_sizes(archive: &OrderArchive) -> Vec<usize> {
        archive
            .by_buyer
            .tree
            .iter()
            .map(|item| item.unwrap().1.len() / 16)
            .collect()
    }

    #[test]
    fn ids_filed_newest_first_fill_buckets_too() {
        let (_dir, archive) = archive();
        for id in (1..=(BUCKET_IDS * 2) as u128).rev() {
            assert!(archive.by_buyer.file(9, OrderId(id)).unwrap());
        }
        assert_eq!(bucket_sizes(&archive), vec![BUCKET_IDS, BUCKET_IDS]);
        assert_eq!(all_pages(&archive, UserId(9), 7).len(), BUCKET_IDS * 2);
    }

    #[test]
    fn ids_filed_in_order_fill_buckets_to_the_bound_and_no_further() {
        let (_dir, archive) = archive();
        let total = BUCKET_IDS * 3 + 5;
        for id in 1..=total as u128 {
            assert!(archive.by_buyer.file(9, OrderId(id)).unwrap());
        }
        assert_eq!(
            bucket_sizes(&archive),
            vec![BUCKET_IDS, BUCKET_IDS, BUCKET_IDS, 5]
        );
        let listed = all_pages(&archive, UserId(9), 50);
        assert_eq!(listed.len(), total);
        assert_eq!(listed.first(), Some(&OrderId(total as u128)));
    }

    #[test]
    fn the_per_order_buyer_index_of_older_data_is_emptied_then_dropped() {
        let (_dir, store) = temporary();
        let store = Arc::new(store);
        store
            .tree(LEGACY_BY_BUYER)
            .unwrap()
            .insert(pair(7, OrderId(1)), &[])
            .unwrap();
        let archive = OrderArchive::open(store.clone()).unwrap();
        assert!(archive.legacy_by_buyer.is_some());
        archive.retire_legacy().unwrap();
        drop(archive);
        let archive = OrderArchive::open(store.clone()).unwrap();
        assert!(archive.legacy_by_buyer.is_none());
        assert!(store.existing_tree(LEGACY_BY_BUYER).unwrap().is_none());
    }

    #[test]
    fn the_per_order_seller_index_of_older_data_is_filed_in_buckets_then_dropped() {
        let (_dir, store) = temporary();
        let store = Arc::new(store);
        let legacy = store.tree(LEGACY_BY_SELLER).unwrap();
        let total = BUCKET_IDS as u128 + 3;
        for id in 1..=total {
            legacy.insert(pair(5, OrderId(id)), &[]).unwrap();
        }
        legacy.insert(pair(6, OrderId(99)), &[]).unwrap();
        drop(legacy);
        let archive = OrderArchive::open(store.clone()).unwrap();
        assert!(archive.legacy_by_seller.is_some());
        assert_eq!(
            archive
                .page(OrderIndex::Seller(TenantId(5)), None, 10)
                .unwrap(),
            Vec::<OrderId>::new(),
            "nothing is read from the old index"
        );
        archive.retire_legacy().unwrap();
        let listed = archive
            .page(OrderIndex::Seller(TenantId(5)), None, 1_000)
            .unwrap();
        let expected: Vec<OrderId> = (1..=total).rev().map(OrderId).collect();
        assert_eq!(listed, expected);
        assert_eq!(
            archive
                .page(OrderIndex::Seller(TenantId(6)), None, 10)
                .unwrap(),
            vec![OrderId(99)]
        );
        assert_eq!(archive.by_seller.tree.len(), 3, "two buckets and one");
        drop(archive);
        let archive = OrderArchive::open(store.clone()).unwrap();
        assert!(archive.legacy_by_seller.is_none());
        assert!(store.existing_tree(LEGACY_BY_SELLER).unwrap().is_none());
        assert_eq!(
            archive
                .page(OrderIndex::Seller(TenantId(5)), Some(OrderId(3)), 10)
                .unwrap(),
            vec![OrderId(2), OrderId(1)]
        );
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
