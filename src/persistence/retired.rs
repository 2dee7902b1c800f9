//! SKUs removed from their product whose stock is not forgotten yet. A
//! marker is filed in the commit of the product version without the SKU,
//! and dropped in the commit of the SKU's `Deleted` record, so recovery can
//! tell a removed variant's leftover stock (forgotten then) from stock that
//! belongs to no product (an error).

use sled::Tree;

use super::store::{corrupt, Store, StoreError};
use super::wal::WalOp;
use crate::domain::SkuId;

const TREE: &str = "retired_skus";

/// SKU id (8 bytes BE) → nothing.
#[derive(Clone)]
pub struct RetiredSkus {
    tree: Tree,
}

impl RetiredSkus {
    pub fn open(store: &Store) -> Result<Self, StoreError> {
        Ok(Self {
            tree: store.tree(TREE)?,
        })
    }

    /// The op that marks `skus` removed, in the commit of the records sent
    /// before it.
    pub fn marking(&self, skus: Vec<SkuId>) -> WalOp {
        let tree = self.tree.clone();
        WalOp::File(Box::new(move || {
            for sku in skus {
                tree.insert(sku.0.to_be_bytes(), &[])?;
            }
            Ok(())
        }))
    }

    /// The op that drops `sku`'s marker, in the commit of its `Deleted` record
    /// (sent before it).
    pub fn unmarking(&self, sku: SkuId) -> WalOp {
        let tree = self.tree.clone();
        WalOp::File(Box::new(move || {
            tree.remove(sku.0.to_be_bytes()).map(|_| ())
        }))
    }

    /// Every marked SKU.
    pub fn all(&self) -> Result<Vec<SkuId>, StoreError> {
        self.tree
            .iter()
            .keys()
            .map(|key| {
                let key = key?;
                let id: [u8; 8] = key
                    .as_ref()
                    .try_into()
                    .map_err(|_| corrupt("retired SKU", "a key of 8 bytes"))?;
                Ok(SkuId(u64::from_be_bytes(id)))
            })
            .collect()
    }
}
