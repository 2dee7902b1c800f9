//! The catalog service: products, their SKU codes and ids, each store's
//! product quota, and each product's version history. A new product is
//! logged, snapshotted, filed in the history and registered with inventory
//! before it is answered; a change or a rollback is the next version, made
//! the same way. A version may add variants (new SKUs, registered like a
//! new product's) and remove them: a removed SKU must hold nothing and have
//! no unsettled order, and its stock is forgotten once the version is
//! durable.

use std::collections::{BTreeSet, HashSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::oneshot;

use crate::actors::registry::SkuInfo;
use crate::clock::Clock;
use crate::domain::browse::BrowseQuery;
use crate::domain::product::{Product, Sku, ValidProduct};
use crate::domain::product_version::{self, ProductVersion, RollbackError, VersionCause};
use crate::domain::{DropId, SkuCode, SkuId, StockError, TenantKey};
use crate::persistence::{
    self, EntityKey, ProductVersions, RecordBody, RetiredSkus, SnapshotBody, WalHandle, WalRecord,
};

use super::categories::{category_of, Categories};
use super::inventory::{Inventory, InventoryError};
use super::listings::{Listings, Page, Scope};
use super::OpenLines;

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
    /// The version asked for is past the current one, or older than the
    /// versions kept.
    #[error("version {version} is not in the history (kept: {oldest:?} to {current})")]
    NoSuchVersion {
        version: u64,
        oldest: Option<u64>,
        current: u64,
    },
    #[error(transparent)]
    Rollback(#[from] RollbackError),
    /// A variant to remove still has stock in play.
    #[error("variant {sku} cannot be removed: {why}")]
    VariantInUse { sku: String, why: InUse },
    /// The product names a category id the tree does not have.
    #[error("no category {0}")]
    NoSuchCategory(u64),
    #[error("the engine cannot serve this request now")]
    Unavailable,
}

/// What keeps a variant from being removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InUse {
    #[error("{0} open holds")]
    Holds(usize),
    #[error("{0} unsettled orders")]
    UnsettledOrders(u32),
    #[error("it sells through drop {0}, which has not ended")]
    Drop(DropId),
}

/// Who makes a change and in which request.
#[derive(Debug, Clone, Copy)]
pub struct Author<'a> {
    /// An audit actor, e.g. `user:…`.
    pub by: &'a str,
    /// The request's correlation id; empty when unknown.
    pub correlation_id: &'a str,
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
    /// Unsettled orders per SKU (kept by the orders service).
    pub open_orders: Arc<OpenLines>,
    /// Markers of removed SKUs whose stock is not forgotten yet.
    pub retired: RetiredSkus,
    /// The category tree products are filed in.
    pub categories: Arc<Categories>,
    pub wal: WalHandle,
    pub versions: ProductVersions,
    pub clock: Arc<dyn Clock>,
    /// `stock.low_stock_threshold`: a new SKU's first threshold.
    pub low_stock_threshold: u64,
    /// `catalog.browse_scan_max`: products a browsing question looks at.
    pub browse_scan_max: usize,
}

pub struct Catalog {
    deps: CatalogDeps,
    products: DashMap<u128, Arc<Product>>,
    /// Products per store (tenant id text), for the plan's product quota.
    /// Each store's products (tenant id text → product ids, oldest first:
    /// ids are time-ordered UUIDs); its size is the plan's product count.
    by_tenant: DashMap<String, BTreeSet<u128>>,
    /// Durable products as browsing finds them.
    listings: Listings,
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
        let by_tenant: DashMap<String, BTreeSet<u128>> = DashMap::new();
        let listings = Listings::new(deps.browse_scan_max);
        let mut max_sku = 0;
        for product in recovered {
            max_sku = product.skus.iter().map(|s| s.id).fold(max_sku, u64::max);
            if let Err(error) = deps.categories.refile(None, category_of(&product.category)) {
                tracing::warn!(%error, product = %uuid::Uuid::from_u128(product.id), "a product names no category");
            }
            by_tenant
                .entry(product.tenant.clone())
                .or_default()
                .insert(product.id);
            listings.put(product.clone());
            products.insert(product.id, product);
        }
        Arc::new(Self {
            deps,
            products,
            by_tenant,
            listings,
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
        author: Author<'_>,
    ) -> Result<Arc<Product>, CatalogError> {
        let (durable, product) = {
            let _creating = self.create_lock.lock();
            let owned = self.product_count_of(tenant.as_str());
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
            let mut product = product.into_product(
                id,
                tenant,
                &ids,
                self.deps.low_stock_threshold,
                self.deps.clock.now_ms(),
            );
            product.updated_by = author.by.to_owned();
            let entry = ProductVersion::new(
                VersionCause::Created,
                author.correlation_id,
                None,
                product.clone(),
            );
            let product = Arc::new(product);
            let rx = self.filed_and_logged(None, &product, entry, Vec::new())?;
            // Registered after the record is queued, so any stock record of these
            // SKUs is ordered after the product's in the WAL.
            for (index, sku) in ids.iter().enumerate() {
                self.deps.inventory.register(SkuInfo {
                    id: *sku,
                    product: product.clone(),
                    index,
                });
            }
            self.by_tenant
                .entry(tenant.as_str().to_owned())
                .or_default()
                .insert(product.id);
            (rx, product)
        };
        durable.await.map_err(|_| CatalogError::Unavailable)?;
        self.products.insert(product.id, product.clone());
        self.listings.put(product.clone());
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
        author: Author<'_>,
        change: impl FnOnce(&Product) -> Result<Option<Product>, E>,
    ) -> Result<Result<Changed, E>, CatalogError> {
        self.make_version(tenant, id, if_match, author, |before| {
            Ok(change(before).map(|after| after.map(|a| (a, VersionCause::Changed))))
        })
        .await
    }

    /// Makes version `version` of a product of `tenant` current again as its
    /// next version, if it is at `if_match` when given; by `by` at the
    /// catalog's time. The content already current makes no version.
    pub async fn roll_back(
        &self,
        tenant: &TenantKey,
        id: u128,
        if_match: Option<u64>,
        version: u64,
        author: Author<'_>,
    ) -> Result<Changed, CatalogError> {
        let now = self.deps.clock.now_ms();
        let outcome = self
            .make_version(tenant, id, if_match, author, |current| {
                let earlier = self.version_of(current, version)?;
                let next = product_version::rolled_back(current, &earlier.product, author.by, now)?;
                Ok(Ok::<_, std::convert::Infallible>(next.map(|p| {
                    (p, VersionCause::RolledBack { restored: version })
                })))
            })
            .await?;
        Ok(outcome.unwrap_or_else(|never| match never {}))
    }

    /// Version `version` of `current`'s product from its history.
    fn version_of(&self, current: &Product, version: u64) -> Result<ProductVersion, CatalogError> {
        let found = if version == 0 || version > current.version {
            None
        } else {
            self.deps
                .versions
                .get(current.id, version)
                .map_err(|error| {
                    tracing::error!(%error, "reading a product version");
                    CatalogError::Unavailable
                })?
        };
        match found {
            Some(entry) => Ok(entry),
            None => Err(CatalogError::NoSuchVersion {
                version,
                oldest: self.oldest_version_of(current.id)?,
                current: current.version,
            }),
        }
    }

    /// The oldest version of a product still kept, if any.
    pub fn oldest_version_of(&self, id: u128) -> Result<Option<u64>, CatalogError> {
        self.deps.versions.oldest(id).map_err(|error| {
            tracing::error!(%error, "reading a product's history");
            CatalogError::Unavailable
        })
    }

    /// Version `version` of a product, with the product as it is now (the
    /// caller decides who may read it).
    pub fn version(
        &self,
        id: u128,
        version: u64,
    ) -> Result<(Arc<Product>, ProductVersion), CatalogError> {
        let current = self.product(id).ok_or(CatalogError::NotFound)?;
        let entry = self.version_of(&current, version)?;
        Ok((current, entry))
    }

    /// A product's kept versions, newest first, below `before` when given,
    /// at most `limit`; with the product as it is now and its oldest kept
    /// version.
    pub fn versions(
        &self,
        id: u128,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Arc<Product>, Vec<ProductVersion>), CatalogError> {
        let current = self.product(id).ok_or(CatalogError::NotFound)?;
        let page = self
            .deps
            .versions
            .page(id, current.version, before, limit)
            .map_err(|error| {
                tracing::error!(%error, "reading a product's history");
                CatalogError::Unavailable
            })?;
        Ok((current, page))
    }

    /// Versions kept in each product's history.
    pub fn versions_kept(&self) -> u64 {
        self.deps.versions.kept()
    }

    /// The next version of a product of `tenant` from `make` (given the
    /// current version: the next one and why, or `None` for no change), if
    /// it is at `if_match` when given: logged, filed in the history and
    /// published (to readers, carts and orders) once durable.
    async fn make_version<E>(
        &self,
        tenant: &TenantKey,
        id: u128,
        if_match: Option<u64>,
        author: Author<'_>,
        make: impl FnOnce(&Product) -> Result<Result<Option<(Product, VersionCause)>, E>, CatalogError>,
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
        let (mut after, cause) = match make(&before)? {
            Ok(Some(next)) => next,
            Ok(None) => {
                return Ok(Ok(Changed {
                    after: before.clone(),
                    before,
                }))
            }
            Err(e) => return Ok(Err(e)),
        };
        let mut retiring = self.retire_removed(&before, &after).await?;
        let durable = {
            let _creating = self.create_lock.lock();
            let fresh = self.assign_new_skus(&mut after)?;
            let after = Arc::new(after);
            let entry = ProductVersion::new(
                cause,
                author.correlation_id,
                Some(&before),
                (*after).clone(),
            );
            let rx = self.filed_and_logged(Some(&before), &after, entry, retiring.skus.clone())?;
            retiring.logged = true;
            for index in fresh {
                self.deps.inventory.register(SkuInfo {
                    id: SkuId(after.skus[index].id),
                    product: after.clone(),
                    index,
                });
            }
            (rx, after)
        };
        let (rx, after) = durable;
        rx.await.map_err(|_| CatalogError::Unavailable)?;
        self.products.insert(id, after.clone());
        self.listings.put(after.clone());
        self.deps.inventory.update_product(&after);
        for sku in std::mem::take(&mut retiring.skus) {
            self.forget_sku(sku)?;
        }
        metrics::counter!("flashdrop_product_versions_total").increment(1);
        Ok(Ok(Changed { before, after }))
    }

    /// Starts removing each variant of `before` that `after` lacks: none
    /// may have an unsettled order, an open hold or a drop that has not
    /// ended. Each takes no command until the version is logged, or the
    /// returned guard, dropped before that, gives them back.
    async fn retire_removed(
        &self,
        before: &Product,
        after: &Product,
    ) -> Result<Retiring<'_>, CatalogError> {
        let mut retiring = Retiring {
            inventory: &self.deps.inventory,
            skus: Vec::new(),
            logged: false,
        };
        for sku in before
            .skus
            .iter()
            .filter(|s| !after.skus.iter().any(|a| a.id == s.id))
        {
            let in_use = |why| CatalogError::VariantInUse {
                sku: sku.code.clone(),
                why,
            };
            let id = SkuId(sku.id);
            let unsettled = || match self.deps.open_orders.of(id) {
                0 => Ok(()),
                n => Err(in_use(InUse::UnsettledOrders(n))),
            };
            unsettled()?;
            self.deps.inventory.retire(id).await.map_err(|e| match e {
                InventoryError::Stock(StockError::HasHolds { open }) => in_use(InUse::Holds(open)),
                InventoryError::Stock(StockError::InOpenDrop { drop }) => in_use(InUse::Drop(drop)),
                _ => CatalogError::Unavailable,
            })?;
            retiring.skus.push(id);
            // An order placed since the first look holds a reservation (then
            // the retirement was refused) or will not get one; look again to
            // refuse before anything changed rather than fail its saga.
            unsettled()?;
        }
        Ok(retiring)
    }

    /// Gives each variant `after` adds (`Sku::UNASSIGNED`) its id, if no
    /// product uses its code; answers their positions. Called under
    /// `create_lock`, which keeps codes unique until they are registered.
    fn assign_new_skus(&self, after: &mut Product) -> Result<Vec<usize>, CatalogError> {
        let fresh: Vec<usize> = (0..after.skus.len())
            .filter(|&i| after.skus[i].id == Sku::UNASSIGNED)
            .collect();
        let taken: Vec<String> = fresh
            .iter()
            .map(|&i| &after.skus[i].code)
            .filter(|code| self.deps.inventory.contains_code(code))
            .cloned()
            .collect();
        if !taken.is_empty() {
            return Err(CatalogError::SkuExists(taken));
        }
        for &i in &fresh {
            after.skus[i].id = self.next_sku_id.fetch_add(1, Ordering::Relaxed);
        }
        Ok(fresh)
    }

    /// Ends a removed SKU once the version without it is durable: its code
    /// is free, then its `Deleted` record and the end of its marker.
    fn forget_sku(&self, sku: SkuId) -> Result<(), CatalogError> {
        self.deps.inventory.forget(sku);
        self.deps
            .wal
            .forget(EntityKey::Sku(sku.0), None)
            .and_then(|()| self.deps.wal.send(self.deps.retired.unmarking(sku)))
            .map_err(|_| CatalogError::Unavailable)?;
        metrics::counter!("flashdrop_variants_removed_total").increment(1);
        Ok(())
    }

    /// Files the product (as `after`, moved from `before`) under its
    /// category, then logs `entry` (see `log`); a category the tree lacks
    /// is refused before anything is logged, and a failed log files it back.
    fn filed_and_logged(
        &self,
        before: Option<&Product>,
        after: &Product,
        entry: ProductVersion,
        removed: Vec<SkuId>,
    ) -> Result<oneshot::Receiver<()>, CatalogError> {
        let from = before.and_then(|p| category_of(&p.category));
        let to = category_of(&after.category);
        self.deps
            .categories
            .refile(from, to)
            .map_err(|_| CatalogError::NoSuchCategory(to.map_or(0, |c| c.0)))?;
        let logged = self.log(entry, removed);
        if logged.is_err() {
            let _ = self.deps.categories.refile(to, from);
        }
        logged
    }

    /// Queues a product version's record, its snapshot (a record carries
    /// the full state, so the snapshot is the record itself and lets the WAL
    /// be truncated past it) and its history entry, filed in the record's
    /// commit with the markers of the SKUs it `removed`; the receiver fires
    /// once the record is durable.
    fn log(
        &self,
        entry: ProductVersion,
        removed: Vec<SkuId>,
    ) -> Result<oneshot::Receiver<()>, CatalogError> {
        let product = &entry.product;
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
        let filing = self.deps.versions.filing(&entry).map_err(|error| {
            tracing::error!(%error, "encoding a product version");
            CatalogError::Unavailable
        })?;
        self.deps
            .wal
            .send(filing)
            .map_err(|_| CatalogError::Unavailable)?;
        if !removed.is_empty() {
            self.deps
                .wal
                .send(self.deps.retired.marking(removed))
                .map_err(|_| CatalogError::Unavailable)?;
        }
        Ok(rx)
    }

    pub fn product(&self, id: u128) -> Option<Arc<Product>> {
        self.products.get(&id).map(|p| p.clone())
    }

    /// The product a SKU code belongs to, if any (of any store).
    pub fn product_of_code(&self, code: &SkuCode) -> Option<Arc<Product>> {
        let info = self.deps.inventory.sku(code).ok()?;
        self.product(info.product.id)
    }

    pub fn product_count(&self) -> usize {
        self.products.len()
    }

    /// A page of a store's products, oldest first: after the id `after`,
    /// those `shown` keeps, at most `limit` (from the store's index; a
    /// product not durable yet is not shown).
    pub fn products_of(
        &self,
        tenant: &str,
        after: Option<u128>,
        limit: usize,
        shown: impl Fn(&Product) -> bool,
    ) -> Vec<Arc<Product>> {
        let Some(ids) = self.by_tenant.get(tenant) else {
            return Vec::new();
        };
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        ids.range((from, Bound::Unbounded))
            .filter_map(|id| self.product(*id))
            .filter(|p| shown(p))
            .take(limit)
            .collect()
    }

    /// A page of the products that answer `query` and that `visible` shows
    /// the caller, from the browsing index; a category is taken with its
    /// descendants as the tree is now.
    pub fn browse(
        &self,
        query: &BrowseQuery,
        visible: impl Fn(&Product) -> bool,
    ) -> Result<Page, CatalogError> {
        let categories = match query.filters.category {
            Some(id) => Some(
                self.deps
                    .categories
                    .descendants_and_self(id)
                    .map_err(|_| CatalogError::NoSuchCategory(id.0))?
                    .into_iter()
                    .collect::<HashSet<_>>(),
            ),
            None => None,
        };
        let store = query.filters.store.map(TenantKey::of_store);
        let scope = Scope {
            categories: categories.as_ref(),
            store: store.as_ref().map(TenantKey::as_str),
        };
        let inventory = &self.deps.inventory;
        let page = self
            .listings
            .page(query, &scope, visible, |sku| inventory.has_stock(sku));
        metrics::histogram!("flashdrop_browse_scanned").record(page.scanned as f64);
        Ok(page)
    }

    /// How many products a store owns (kept as products are created).
    pub fn product_count_of(&self, tenant: &str) -> u32 {
        self.by_tenant
            .get(tenant)
            .map_or(0, |ids| u32::try_from(ids.len()).unwrap_or(u32::MAX))
    }
}

/// Variants being removed by the version being made: given back to sale
/// when dropped before the version was logged.
struct Retiring<'a> {
    inventory: &'a Inventory,
    skus: Vec<SkuId>,
    logged: bool,
}

impl Drop for Retiring<'_> {
    fn drop(&mut self) {
        if !self.logged {
            for sku in &self.skus {
                self.inventory.keep(*sku);
            }
        }
    }
}
