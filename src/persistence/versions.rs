//! Products' version histories on disk: one entry per version (the whole
//! product as it was, with its cause, correlation id and diff), keyed by
//! product id then version, in a sled tree of its own.
//!
//! An entry is filed by the WAL writer in the commit of the product's record,
//! after its batch (`WalOp::File`), so the history holds a version exactly
//! when the catalog does. Only the newest `kept` versions of each product are
//! kept (`retention.product_versions`): filing version n forgets every
//! version up to n - kept. Data written before histories existed has no
//! entries; `backfill` files each product's current version once.

use rkyv::rancor;
use sled::Tree;

use super::store::{corrupt, Store, StoreError};
use super::wal::WalOp;
use crate::domain::product::Product;
use crate::domain::product_version::{ProductVersion, VersionCause};

/// The layout of an entry's value, its first byte.
const FORMAT: u8 = 1;
const TREE: &str = "product_versions";
/// In `meta`: present once every product recovered had its current version filed.
const BACKFILLED: &[u8] = b"product_versions_backfilled";
/// The correlation id of an entry filed at start-up for a version whose
/// own entry a crash lost (see `repair`).
pub const RECOVERED: &str = "recovered";

fn key(product: u128, version: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&product.to_be_bytes());
    key[16..].copy_from_slice(&version.to_be_bytes());
    key
}

fn encode(entry: &ProductVersion) -> Result<Vec<u8>, StoreError> {
    let bytes = rkyv::to_bytes::<rancor::Error>(entry)
        .map_err(|e| corrupt("product version", e.to_string()))?;
    let mut value = Vec::with_capacity(bytes.len() + 1);
    value.push(FORMAT);
    value.extend_from_slice(&bytes);
    Ok(value)
}

fn decode(value: &[u8]) -> Result<ProductVersion, StoreError> {
    match value.split_first() {
        Some((&FORMAT, bytes)) => rkyv::from_bytes::<ProductVersion, rancor::Error>(bytes)
            .map_err(|e| corrupt("product version", e.to_string())),
        _ => Err(corrupt("product version", "unknown format")),
    }
}

pub struct ProductVersions {
    /// product id (16 bytes BE) ++ version (8 bytes BE) → FORMAT ++ rkyv entry
    tree: Tree,
    meta: Tree,
    /// Versions kept per product, at least 1.
    kept: u64,
}

impl ProductVersions {
    pub fn open(store: &Store, kept: u64) -> Result<Self, StoreError> {
        Ok(Self {
            tree: store.tree(TREE)?,
            meta: store.meta.clone(),
            kept: kept.max(1),
        })
    }

    /// Versions kept per product.
    pub fn kept(&self) -> u64 {
        self.kept
    }

    /// The op that files `entry` (after the product's record, in its commit)
    /// and forgets the versions of the product older than the kept ones.
    pub fn filing(&self, entry: &ProductVersion) -> Result<WalOp, StoreError> {
        let value = encode(entry)?;
        let (product, version) = (entry.product.id, entry.product.version);
        let tree = self.tree.clone();
        let kept = self.kept;
        Ok(WalOp::File(Box::new(move || {
            tree.insert(key(product, version), value)?;
            if version > kept {
                let stale = key(product, 0)..=key(product, version - kept);
                for old in tree.range(stale).keys() {
                    tree.remove(old?)?;
                }
            }
            Ok(())
        })))
    }

    /// Files the current version of each product that has no entry for it
    /// (a data directory written before histories existed), once: later
    /// starts skip it. Answers how many were filed.
    pub fn backfill<'a>(
        &self,
        products: impl Iterator<Item = &'a Product>,
    ) -> Result<usize, StoreError> {
        if self.meta.get(BACKFILLED)?.is_some() {
            return Ok(0);
        }
        let filed = self.file_missing(products, "")?;
        self.tree.flush()?;
        self.meta.insert(BACKFILLED, &[])?;
        self.meta.flush()?;
        Ok(filed)
    }

    /// Files the current version of each of `products` whose history
    /// lacks it: the products a torn last commit left with their record
    /// durable and the entry filed after it not (a crash inside the WAL
    /// writer's commit; nothing of it was acknowledged). The entry's
    /// correlation id is `RECOVERED`; its diff is from the version before
    /// when that one is kept. Answers how many were filed.
    pub fn repair<'a>(
        &self,
        products: impl Iterator<Item = &'a Product>,
    ) -> Result<usize, StoreError> {
        let filed = self.file_missing(products, RECOVERED)?;
        if filed > 0 {
            self.tree.flush()?;
        }
        Ok(filed)
    }

    fn file_missing<'a>(
        &self,
        products: impl Iterator<Item = &'a Product>,
        correlation_id: &str,
    ) -> Result<usize, StoreError> {
        let mut filed = 0;
        for product in products {
            let at = key(product.id, product.version);
            if self.tree.get(at)?.is_some() {
                continue;
            }
            let cause = if product.version == 1 {
                VersionCause::Created
            } else {
                VersionCause::Changed
            };
            let before = match product.version {
                0 | 1 => None,
                n => self.get(product.id, n - 1)?.map(|e| e.product),
            };
            let entry =
                ProductVersion::new(cause, correlation_id, before.as_ref(), product.clone());
            self.tree.insert(at, encode(&entry)?)?;
            filed += 1;
        }
        Ok(filed)
    }

    /// Version `version` of `product`, if it is kept.
    pub fn get(&self, product: u128, version: u64) -> Result<Option<ProductVersion>, StoreError> {
        self.tree
            .get(key(product, version))?
            .map(|value| decode(&value))
            .transpose()
    }

    /// The kept versions of `product` up to `current`, newest first, those
    /// below `before` when given, at most `limit`.
    pub fn page(
        &self,
        product: u128,
        current: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ProductVersion>, StoreError> {
        let end = before.map_or(current, |b| b.saturating_sub(1).min(current));
        if end == 0 {
            return Ok(Vec::new());
        }
        self.tree
            .range(key(product, 0)..=key(product, end))
            .values()
            .rev()
            .take(limit)
            .map(|value| decode(&value?))
            .collect()
    }

    /// The oldest version of `product` still kept, if any.
    pub fn oldest(&self, product: u128) -> Result<Option<u64>, StoreError> {
        let Some((found, _)) = self
            .tree
            .range(key(product, 0)..=key(product, u64::MAX))
            .next()
            .transpose()?
        else {
            return Ok(None);
        };
        let bytes: [u8; 8] = found[16..]
            .try_into()
            .map_err(|_| corrupt("product version key", "bad length"))?;
        Ok(Some(u64::from_be_bytes(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::product::{Money, ProductStatus, Sku};

    fn product(id: u128, version: u64, title: &str) -> Product {
        Product {
            id,
            tenant: "t".into(),
            version,
            status: ProductStatus::Active,
            title: title.into(),
            description: String::new(),
            brand: String::new(),
            category: String::new(),
            attributes: vec![],
            images: vec![],
            options: vec![],
            skus: vec![Sku {
                id: 1,
                code: "A".into(),
                price: Money {
                    amount: 1,
                    currency: "EUR".into(),
                },
                compare_at: None,
                options: vec![],
                attributes: vec![],
                low_stock_threshold: 0,
            }],
            created_at_ms: 1,
            updated_at_ms: version,
            updated_by: "user:1".into(),
        }
    }

    fn file(versions: &ProductVersions, entry: &ProductVersion) {
        match versions.filing(entry).unwrap() {
            WalOp::File(filing) => filing().unwrap(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn pages_run_newest_first_and_only_the_newest_kept_versions_remain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path(),
            1 << 20,
            super::super::SyncMode::None,
            std::time::Duration::from_secs(1),
        )
        .unwrap();
        let versions = ProductVersions::open(&store, 3).unwrap();
        let mut before: Option<Product> = None;
        for v in 1..=5 {
            let now = product(7, v, &format!("v{v}"));
            let cause = if v == 1 {
                VersionCause::Created
            } else {
                VersionCause::Changed
            };
            file(
                &versions,
                &ProductVersion::new(cause, "req", before.as_ref(), now.clone()),
            );
            before = Some(now);
        }
        // Another product's history is its own.
        file(
            &versions,
            &ProductVersion::new(VersionCause::Created, "", None, product(8, 1, "x")),
        );
        assert_eq!(versions.oldest(7).unwrap(), Some(3));
        assert!(versions.get(7, 2).unwrap().is_none());
        let fifth = versions.get(7, 5).unwrap().unwrap();
        assert_eq!(fifth.changes[0].field, "title");
        assert_eq!(fifth.changes[0].before.as_deref(), Some("\"v4\""));

        let page = |current, before, limit| -> Vec<u64> {
            versions
                .page(7, current, before, limit)
                .unwrap()
                .iter()
                .map(|e| e.product.version)
                .collect()
        };
        assert_eq!(page(5, None, 10), [5, 4, 3]);
        assert_eq!(page(5, None, 2), [5, 4]);
        assert_eq!(page(5, Some(4), 2), [3]);
        assert_eq!(page(5, Some(3), 2), Vec::<u64>::new());
        // A version past the product's current one is never listed.
        assert_eq!(page(4, None, 10), [4, 3]);
    }

    #[test]
    fn backfill_files_each_current_version_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path(),
            1 << 20,
            super::super::SyncMode::None,
            std::time::Duration::from_secs(1),
        )
        .unwrap();
        let versions = ProductVersions::open(&store, 10).unwrap();
        let products = [product(1, 1, "a"), product(2, 4, "b")];
        assert_eq!(versions.backfill(products.iter()).unwrap(), 2);
        let second = versions.get(2, 4).unwrap().unwrap();
        assert_eq!(second.cause, VersionCause::Changed);
        assert!(second.changes.is_empty());
        assert_eq!(
            versions.get(1, 1).unwrap().unwrap().cause,
            VersionCause::Created
        );
        // Done once: a later start files nothing.
        assert_eq!(versions.backfill(products.iter()).unwrap(), 0);
    }

    #[test]
    fn repair_files_only_the_current_versions_a_crash_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path(),
            1 << 20,
            super::super::SyncMode::None,
            std::time::Duration::from_secs(1),
        )
        .unwrap();
        let versions = ProductVersions::open(&store, 10).unwrap();
        // Product 1 has its version 1; product 2's version 2 and product 3's
        // version 1 were lost after their records.
        let first = product(2, 1, "old");
        file(
            &versions,
            &ProductVersion::new(VersionCause::Created, "req-1", None, product(1, 1, "a")),
        );
        file(
            &versions,
            &ProductVersion::new(VersionCause::Created, "req-2", None, first),
        );
        let replayed = [product(1, 1, "a"), product(2, 2, "new"), product(3, 1, "c")];
        assert_eq!(versions.repair(replayed.iter()).unwrap(), 2);
        assert_eq!(versions.get(1, 1).unwrap().unwrap().correlation_id, "req-1");
        let second = versions.get(2, 2).unwrap().unwrap();
        assert_eq!(
            (second.cause, second.correlation_id.as_str()),
            (VersionCause::Changed, RECOVERED)
        );
        assert_eq!(
            second.changes[0].field, "title",
            "a diff from the kept version 1"
        );
        let third = versions.get(3, 1).unwrap().unwrap();
        assert_eq!(third.cause, VersionCause::Created);
        assert!(third.changes.is_empty());
        // Nothing is missing any more.
        assert_eq!(versions.repair(replayed.iter()).unwrap(), 0);
    }
}
