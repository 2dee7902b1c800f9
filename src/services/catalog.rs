//! The catalog service: products, their SKU codes and ids, and each store's
//! product quota. A new product is logged, snapshotted and registered with
//! inventory before it is answered.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::oneshot;

use crate::actors::registry::SkuInfo;
use crate::clock::Clock;
use crate::domain::product::{Product, ValidProduct};
use crate::domain::{SkuId, TenantKey};
use crate::persistence::{self, EntityKey, RecordBody, SnapshotBody, WalHandle, WalRecord};

use super::inventory::Inventory;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("SKU codes already in use: {}", .0.join(", "))]
    SkuExists(Vec<String>),
    #[error("the store's plan allows at most {0} products")]
    ProductQuota(u32),
    #[error("no such product")]
    NotFound,
    /// `If-Match` named another version than the current one.
    #[error("the product is at version {current}")]
    StaleVersion { current: u64 },
    #[error("the engine cannot serve this request now")]
    Unavailable,
}

/// What a change did.
#[derive(Debug, Clone)]
pub struct Changed {
    pub before: Arc<Product>,
    /// The same product as `before` when the change changed nothing.
    pub after: Arc<Product>,
}

/// What the catalog is built from.
pub struct CatalogDeps {
    pub inventory: Arc<Inventory>,
    pub wal: WalHandle,
    pub clock: Arc<dyn Clock>,
    /// `stock.low_stock_threshold`: a new SKU's first threshold.
    pub low_stock_threshold: u64,
}

pub struct Catalog {
    deps: CatalogDeps,
    products: DashMap<u128, Arc<Product>>,
    /// Products per store (tenant id text), for the plan's product quota.
    tenant_products: DashMap<String, u32>,
    /// Serialises product creation so SKU codes stay unique.
    create_lock: parking_lot::Mutex<()>,
    /// Serialises product changes from version check to publication, which
    /// spans the WAL commit (one at a time across the catalog; a lock per
    /// product is the step when edits need more than one WAL commit at once).
    edit_lock: tokio::sync::Mutex<()>,
    next_sku_id: AtomicU64,
}

impl Catalog {
    /// The catalog over the recovered products (their SKUs are registered
    /// already); new SKU ids continue after the highest one.
    pub fn new(recovered: Vec<Arc<Product>>, deps: CatalogDeps) -> Arc<Self> {
        let products = DashMap::new();
        let tenant_products: DashMap<String, u32> = DashMap::new();
        let mut max_sku = 0;
        for product in recovered {
            max_sku = product.skus.iter().map(|s| s.id).fold(max_sku, u64::max);
            *tenant_products.entry(product.tenant.clone()).or_default() += 1;
            products.insert(product.id, product);
        }
        Arc::new(Self {
            deps,
            products,
            tenant_products,
            create_lock: parking_lot::Mutex::new(()),
            edit_lock: tokio::sync::Mutex::new(()),
            next_sku_id: AtomicU64::new(max_sku + 1),
        })
    }

    /// Stores a product and registers its SKUs, within the store's quota of
    /// `max_products`; answers once it is durable.
    pub async fn create_product(
        &self,
        tenant: &TenantKey,
        product: ValidProduct,
        max_products: u32,
    ) -> Result<Arc<Product>, CatalogError> {
        let (durable, product) = {
            let _creating = self.create_lock.lock();
            let owned = self.tenant_products.get(tenant.as_str()).map_or(0, |n| *n);
            if owned >= max_products {
                return Err(CatalogError::ProductQuota(max_products));
            }
            // In use already, or listed twice in this product.
            let mut listed = HashSet::new();
            let mut taken: Vec<String> = product
                .skus
                .iter()
                .filter(|sku| {
                    !listed.insert(sku.code.as_str())
                        || self.deps.inventory.contains_code(sku.code.as_str())
                })
                .map(|sku| sku.code.to_string())
                .collect();
            taken.dedup();
            if !taken.is_empty() {
                return Err(CatalogError::SkuExists(taken));
            }
            let ids: Vec<SkuId> = product
                .skus
                .iter()
                .map(|_| SkuId(self.next_sku_id.fetch_add(1, Ordering::Relaxed)))
                .collect();
            let id = uuid::Uuid::now_v7().as_u128();
            let product = Arc::new(product.into_product(
                id,
                tenant,
                &ids,
                self.deps.low_stock_threshold,
                self.deps.clock.now_ms(),
            ));
            let rx = self.log(&product)?;
            // Registered after the record is queued, so any stock record of these
            // SKUs is ordered after the product's in the WAL.
            for (index, sku) in ids.iter().enumerate() {
                self.deps.inventory.register(SkuInfo {
                    id: *sku,
                    product: product.clone(),
                    index,
                });
            }
            *self
                .tenant_products
                .entry(tenant.as_str().to_owned())
                .or_default() += 1;
            (rx, product)
        };
        durable.await.map_err(|_| CatalogError::Unavailable)?;
        self.products.insert(product.id, product.clone());
        metrics::counter!("flashdrop_products_created_total").increment(1);
        Ok(product)
    }

    /// Changes a product of `tenant` with `change` (given the current
    /// version, it answers the next one, or `None` for no change), if it is
    /// at `if_match` when given. The new version is published (to readers,
    /// carts and orders) once durable.
    pub async fn change_product<E>(
        &self,
        tenant: &TenantKey,
        id: u128,
        if_match: Option<u64>,
        change: impl FnOnce(&Product) -> Result<Option<Product>, E>,
    ) -> Result<Result<Changed, E>, CatalogError> {
        let _editing = self.edit_lock.lock().await;
        let before = self
            .product(id)
            .filter(|p| p.tenant == tenant.as_str())
            .ok_or(CatalogError::NotFound)?;
        if if_match.is_some_and(|v| v != before.version) {
            return Err(CatalogError::StaleVersion {
                current: before.version,
            });
        }
        let after = match change(&before) {
            Ok(Some(after)) => Arc::new(after),
            Ok(None) => {
                return Ok(Ok(Changed {
                    after: before.clone(),
                    before,
                }))
            }
            Err(e) => return Ok(Err(e)),
        };
        self.log(&after)?
            .await
            .map_err(|_| CatalogError::Unavailable)?;
        self.products.insert(id, after.clone());
        self.deps.inventory.update_product(&after);
        metrics::counter!("flashdrop_product_versions_total").increment(1);
        Ok(Ok(Changed { before, after }))
    }

    /// Queues a product version's record and its snapshot (a record carries
    /// the full state, so the snapshot is the record itself and lets the WAL
    /// be truncated past it); the receiver fires once the record is durable.
    fn log(&self, product: &Product) -> Result<oneshot::Receiver<()>, CatalogError> {
        let (tx, rx) = oneshot::channel();
        let entity = EntityKey::Product(product.id);
        let record = WalRecord {
            entity,
            body: RecordBody::Product(Box::new(product.clone())),
        };
        let ack: persistence::Ack = Box::new(move || {
            let _ = tx.send(());
        });
        self.deps
            .wal
            .append(&record, Some(ack))
            .map_err(|_| CatalogError::Unavailable)?;
        self.deps
            .wal
            .snapshot(
                entity,
                &SnapshotBody::Product(Box::new(product.clone())),
                None,
            )
            .map_err(|_| CatalogError::Unavailable)?;
        Ok(rx)
    }

    pub fn product(&self, id: u128) -> Option<Arc<Product>> {
        self.products.get(&id).map(|p| p.clone())
    }

    pub fn product_count(&self) -> usize {
        self.products.len()
    }

    /// A store's products, oldest first (a scan of every product: fine for
    /// creator pages today, an index once catalogs grow).
    pub fn products_of(&self, tenant: &str) -> Vec<Arc<Product>> {
        let mut out: Vec<Arc<Product>> = self
            .products
            .iter()
            .filter(|p| p.tenant == tenant)
            .map(|p| p.clone())
            .collect();
        out.sort_unstable_by_key(|p| p.id);
        out
    }

    /// How many products a store owns (kept as products are created).
    pub fn product_count_of(&self, tenant: &str) -> u32 {
        self.tenant_products.get(tenant).map_or(0, |n| *n)
    }
}
