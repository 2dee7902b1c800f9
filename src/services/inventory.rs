//! The inventory service: SKU routing and stock. It finds a SKU's actor
//! through the registry, applies what surrounds a reservation (a suspended
//! store, a drop's waiting room and per-buyer limit, a shopper's open holds)
//! and asks the actor. Orders and carts see it through `StockPort`, so a saga
//! can run against a fake.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::actors::drops::{DropEntry, Drops, DropsError};
use crate::actors::holds::{HoldBook, HoldPlace, TooManyHolds};
use crate::actors::registry::{Registry, SendError, SkuInfo};
use crate::actors::sku::{Reply, SkuCommand};
use crate::actors::InStock;
use crate::clock::Clock;
use crate::domain::product::Product;
use crate::domain::stock::{
    CommitOutcome, ReleaseOutcome, ReservationView, ReserveCmd, ReserveOutcome, StockError,
    StockView,
};
use crate::domain::{
    BuyerId, DropId, ReservationId, SkuCode, SkuId, TenantKey, UserId, WarehouseId,
};
use crate::persistence::WalHandle;
use crate::services::identity::DirectoryService;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Stock(#[from] StockError),
    #[error("unknown SKU")]
    UnknownSku,
    #[error("the SKU is overloaded; retry shortly")]
    Overloaded,
    #[error("the engine cannot serve this request now")]
    Unavailable,
    #[error("this store is suspended; its SKUs cannot be reserved or bought")]
    TenantSuspended,
    /// The SKU's product is a draft or archived: no new holds.
    #[error("the product is {0}; its SKUs cannot be reserved")]
    NotOnSale(&'static str),
    #[error("this drop admits shoppers through its waiting room")]
    QueuePassRequired(DropId),
    #[error(transparent)]
    TooManyHolds(#[from] TooManyHolds),
    #[error(transparent)]
    Drops(#[from] DropsError),
}

impl InventoryError {
    /// Worth retrying: the SKU was busy or the engine was stopping.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            InventoryError::Overloaded | InventoryError::Unavailable
        )
    }
}

impl From<SendError> for InventoryError {
    fn from(error: SendError) -> Self {
        match error {
            SendError::UnknownSku => InventoryError::UnknownSku,
            SendError::Overloaded => InventoryError::Overloaded,
            SendError::Unavailable => InventoryError::Unavailable,
        }
    }
}

/// A stock call in flight.
pub type StockFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, InventoryError>> + Send + 'a>>;

/// What orders and carts need of stock. `Inventory` is the real one; a test
/// gives a saga a fake.
pub trait StockPort: Send + Sync {
    /// A SKU by its code.
    fn sku(&self, code: &SkuCode) -> Result<Arc<SkuInfo>, InventoryError>;
    /// A SKU by its id.
    fn sku_info(&self, sku: SkuId) -> Option<Arc<SkuInfo>>;
    /// Whether the SKU is sold in a drop (whose rules bound what a buyer holds).
    fn in_drop(&self, sku: SkuId) -> bool;
    /// Holds units for a buyer; the same idempotency key answers the same hold.
    fn reserve(&self, info: Arc<SkuInfo>, cmd: ReserveCmd) -> StockFuture<'_, ReserveOutcome>;
    /// Sells a buyer's hold.
    fn commit(&self, id: ReservationId, buyer: BuyerId) -> StockFuture<'_, CommitOutcome>;
    /// Gives a buyer's hold back.
    fn release(&self, id: ReservationId, buyer: BuyerId) -> StockFuture<'_, ReleaseOutcome>;
    /// Puts returned units back in the SKU's first warehouse.
    fn restock(
        &self,
        code: SkuCode,
        tenant: TenantKey,
        units: u32,
        reason: String,
    ) -> StockFuture<'_, ()>;
}

/// What the inventory service is built from.
pub struct InventoryDeps {
    pub registry: Arc<Registry>,
    /// Which SKUs have units available (kept by the SKU actors).
    pub in_stock: Arc<InStock>,
    pub holds: Arc<HoldBook>,
    pub drops: Arc<Drops>,
    pub directory: Arc<DirectoryService>,
    /// Only to refuse work while the WAL queue is congested.
    pub wal: WalHandle,
    pub clock: Arc<dyn Clock>,
}

pub struct Inventory {
    registry: Arc<Registry>,
    in_stock: Arc<InStock>,
    holds: Arc<HoldBook>,
    drops: Arc<Drops>,
    directory: Arc<DirectoryService>,
    wal: WalHandle,
    clock: Arc<dyn Clock>,
}

impl Inventory {
    pub fn new(deps: InventoryDeps) -> Arc<Self> {
        Arc::new(Self {
            registry: deps.registry,
            in_stock: deps.in_stock,
            holds: deps.holds,
            drops: deps.drops,
            directory: deps.directory,
            wal: deps.wal,
            clock: deps.clock,
        })
    }

    pub fn sku_info(&self, sku: SkuId) -> Option<Arc<SkuInfo>> {
        self.registry.info(sku)
    }

    /// Whether a SKU code is taken.
    pub fn contains_code(&self, code: &str) -> bool {
        self.registry.contains_code(code)
    }

    /// Makes a new SKU known (the catalog calls it once the product's record
    /// is queued, so every stock record of the SKU comes after it).
    pub fn register(&self, info: SkuInfo) {
        self.registry.insert(info, None);
    }

    /// Points the product's SKUs at its new version (prices, thresholds and
    /// attributes that carts and orders read).
    pub fn update_product(&self, product: &Arc<Product>) {
        for (index, sku) in product.skus.iter().enumerate() {
            self.registry.update_info(SkuInfo {
                id: SkuId(sku.id),
                product: product.clone(),
                index,
            });
        }
    }

    /// Starts removing a SKU from its product: it answers nothing else until
    /// `forget` or `keep`. Refused while it has open holds or sells through
    /// a drop that has not ended (the SKU takes commands again then).
    pub async fn retire(&self, sku: SkuId) -> Result<(), InventoryError> {
        if let Some(drop) = self.drops.drop_of(sku).filter(|d| d.state().is_open()) {
            return Err(StockError::InOpenDrop { drop: drop.id }.into());
        }
        let (tx, rx) = oneshot::channel();
        self.registry.retire(
            sku,
            SkuCommand::Retire {
                retire: true,
                reply: tx,
            },
        )?;
        let answer = match rx.await {
            Ok(answer) => answer.map_err(InventoryError::from),
            Err(_) => Err(InventoryError::Unavailable),
        };
        if answer.is_err() {
            self.keep(sku);
        }
        answer
    }

    /// Abandons a removal `retire` started: the SKU sells again.
    pub fn keep(&self, sku: SkuId) {
        self.registry.keep(sku);
        let (tx, _) = oneshot::channel();
        let _ = self.registry.send(
            sku,
            SkuCommand::Retire {
                retire: false,
                reply: tx,
            },
        );
    }

    /// Ends a SKU `retire` started: its code is free and its actor stops
    /// (the caller logs its `Deleted` record).
    pub fn forget(&self, sku: SkuId) {
        self.registry.remove(sku);
        self.in_stock.set(sku, false);
    }

    /// Whether `sku` had units available at its last durable change (read
    /// without asking its actor).
    pub fn has_stock(&self, sku: SkuId) -> bool {
        self.in_stock.get(sku)
    }

    /// How many SKUs exist.
    pub fn sku_count(&self) -> usize {
        self.registry.len()
    }

    async fn call<T: Send + 'static>(
        &self,
        sku: SkuId,
        command: impl FnOnce(Reply<Result<T, StockError>>) -> SkuCommand,
    ) -> Result<T, InventoryError> {
        if self.wal.congested() {
            // Sending now could block an actor's thread (an HTTP worker's, with
            // `placement = "http_workers"`) until the WAL drains: refuse instead.
            metrics::counter!("flashdrop_wal_congested_total").increment(1);
            return Err(InventoryError::Overloaded);
        }
        let (tx, rx) = oneshot::channel();
        self.registry.send(sku, command(tx))?;
        match rx.await {
            Ok(result) => result.map_err(InventoryError::from),
            // The actor stopped before answering (restart or shutdown): nothing
            // it did for this request is acknowledged.
            Err(_) => Err(InventoryError::Unavailable),
        }
    }

    pub fn sku(&self, code: &SkuCode) -> Result<Arc<SkuInfo>, InventoryError> {
        self.registry
            .id_of(code.as_str())
            .and_then(|id| self.registry.info(id))
            .ok_or(InventoryError::UnknownSku)
    }

    /// A SKU as its seller sees it; another tenant's SKU is unknown.
    fn owned_sku(
        &self,
        code: &SkuCode,
        tenant: &TenantKey,
    ) -> Result<Arc<SkuInfo>, InventoryError> {
        let info = self.sku(code)?;
        if info.tenant() != tenant.as_str() {
            return Err(InventoryError::UnknownSku);
        }
        Ok(info)
    }

    pub async fn reserve(
        &self,
        code: &SkuCode,
        cmd: ReserveCmd,
    ) -> Result<(Arc<SkuInfo>, ReserveOutcome), InventoryError> {
        let info = self.sku(code)?;
        self.reserve_sku(info, cmd).await
    }

    /// A shopper's own reservation (`POST /v1/skus/{sku}/reservations`):
    /// outside a drop it takes one of the shopper's `holds_max` places before
    /// the SKU decides (inside one, the drop's per-buyer limit bounds it).
    pub async fn reserve_as_shopper(
        &self,
        info: Arc<SkuInfo>,
        cmd: ReserveCmd,
        holds_max: u32,
    ) -> Result<(Arc<SkuInfo>, ReserveOutcome), InventoryError> {
        if self.drops.drop_of(info.id).is_some() {
            return self.reserve_sku(info, cmd).await;
        }
        match self.holds.try_take(cmd.buyer.as_str(), holds_max) {
            Ok(place) => self.reserve_with(info, cmd, Some(place)).await,
            // A retry of a request that took a place answers as the first did,
            // even while its siblings fill every place.
            Err(error) if cmd.idempotency.is_some() => {
                match self
                    .call(info.id, |reply| SkuCommand::Replay(cmd, reply))
                    .await?
                {
                    Some(outcome) => {
                        metrics::counter!("flashdrop_reservations_total", "outcome" => "replayed")
                            .increment(1);
                        Ok((info, outcome))
                    }
                    None => {
                        metrics::counter!("flashdrop_reservations_total", "outcome" => "hold_limit")
                            .increment(1);
                        Err(error.into())
                    }
                }
            }
            Err(error) => {
                metrics::counter!("flashdrop_reservations_total", "outcome" => "hold_limit")
                    .increment(1);
                Err(error.into())
            }
        }
    }

    /// Open holds of `buyer` across every SKU.
    pub fn open_holds_of(&self, buyer: &BuyerId) -> u32 {
        self.holds.open_of(buyer.as_str())
    }

    /// `reserve` for a SKU the caller has already looked up.
    pub async fn reserve_sku(
        &self,
        info: Arc<SkuInfo>,
        cmd: ReserveCmd,
    ) -> Result<(Arc<SkuInfo>, ReserveOutcome), InventoryError> {
        self.reserve_with(info, cmd, None).await
    }

    /// `reserve_sku` with the shopper's place in the hold book, if it took one:
    /// the SKU actor turns it into an open hold when the reservation is logged.
    async fn reserve_with(
        &self,
        info: Arc<SkuInfo>,
        cmd: ReserveCmd,
        place: Option<HoldPlace>,
    ) -> Result<(Arc<SkuInfo>, ReserveOutcome), InventoryError> {
        let status = info.product.status;
        let result = if self.directory.tenant_suspended(info.tenant()) {
            Err(InventoryError::TenantSuspended)
        } else if !status.on_sale() {
            Err(InventoryError::NotOnSale(status.as_str()))
        } else if let Some(drop) = self.drops.drop_of(info.id) {
            self.reserve_in_drop(&info, &drop, cmd).await
        } else {
            self.call(info.id, |reply| SkuCommand::Reserve(cmd, place, reply))
                .await
        };
        let outcome = match &result {
            Ok(o) if o.replayed => "replayed",
            Ok(_) => "created",
            Err(InventoryError::Stock(StockError::OutOfStock { .. })) => "out_of_stock",
            Err(InventoryError::Stock(StockError::DropNotLive { .. })) => "drop_not_live",
            Err(InventoryError::Stock(StockError::PurchaseLimitExceeded { .. })) => {
                "purchase_limit"
            }
            Err(InventoryError::Stock(StockError::HoldLimitExceeded { .. })) => "hold_limit",
            Err(InventoryError::QueuePassRequired(_)) => "queue_pass_required",
            Err(InventoryError::Overloaded) => "overloaded",
            Err(InventoryError::Unavailable) => "unavailable",
            Err(InventoryError::NotOnSale(_)) => "not_on_sale",
            Err(_) => "rejected",
        };
        metrics::counter!("flashdrop_reservations_total", "outcome" => outcome).increment(1);
        result.map(|outcome| (info, outcome))
    }

    /// A reservation of a drop SKU: through the waiting room when the drop has
    /// one, and, in a drop of several SKUs with a per-buyer limit, one at a
    /// time per buyer, counting what the buyer holds in the other SKUs.
    async fn reserve_in_drop(
        &self,
        info: &SkuInfo,
        drop: &DropEntry,
        cmd: ReserveCmd,
    ) -> Result<ReserveOutcome, InventoryError> {
        let account = UserId::parse(cmd.buyer.as_str());
        let now = self.clock.now_ms();
        if !account.is_some_and(|buyer| self.drops.admits(drop, buyer, now)) {
            return Err(InventoryError::QueuePassRequired(drop.id));
        }
        let spec = drop.spec();
        if spec.skus.len() < 2 || spec.per_buyer_limit == 0 {
            return self
                .call(info.id, |reply| SkuCommand::Reserve(cmd, None, reply))
                .await;
        }
        let buyer = cmd.buyer.as_str().to_owned();
        let lock = self.drops.buyer_lock(drop.id, &buyer);
        let result = {
            let _one_at_a_time = lock.lock().await;
            match self.drops.usage_elsewhere(drop, &buyer, info.id).await {
                Ok(elsewhere_units) => {
                    self.call(info.id, |reply| SkuCommand::ReserveInDrop {
                        cmd,
                        elsewhere_units,
                        reply,
                    })
                    .await
                }
                Err(error) => Err(error.into()),
            }
        };
        self.drops.release_buyer_lock(drop.id, &buyer, lock);
        result
    }

    pub async fn release(
        &self,
        id: ReservationId,
        buyer: BuyerId,
    ) -> Result<ReleaseOutcome, InventoryError> {
        self.call(id.sku, |reply| SkuCommand::Release {
            seq: id.seq,
            buyer: Some(buyer),
            reply,
        })
        .await
        .map_err(unknown_sku_is_unknown_reservation)
    }

    /// A seller releases any hold on one of the store's SKUs; another store's
    /// reservation is unknown.
    pub async fn release_as_seller(
        &self,
        id: ReservationId,
        tenant: &TenantKey,
    ) -> Result<ReleaseOutcome, InventoryError> {
        self.owned_reservation(id, tenant)?;
        self.call(id.sku, |reply| SkuCommand::Release {
            seq: id.seq,
            buyer: None,
            reply,
        })
        .await
        .map_err(unknown_sku_is_unknown_reservation)
    }

    /// A seller sells any hold on one of the store's SKUs (a till sale).
    pub async fn commit_as_seller(
        &self,
        id: ReservationId,
        tenant: &TenantKey,
    ) -> Result<CommitOutcome, InventoryError> {
        let info = self.owned_reservation(id, tenant)?;
        if self.directory.tenant_suspended(info.tenant()) {
            return Err(InventoryError::TenantSuspended);
        }
        self.call(id.sku, |reply| SkuCommand::Commit {
            seq: id.seq,
            buyer: None,
            reply,
        })
        .await
        .map_err(unknown_sku_is_unknown_reservation)
    }

    /// Open holds of one of the store's SKUs, soonest expiry first.
    pub async fn holds_of(
        &self,
        code: &SkuCode,
        tenant: &TenantKey,
        after: Option<(u64, u64)>,
        limit: usize,
    ) -> Result<(Arc<SkuInfo>, Vec<ReservationView>), InventoryError> {
        let info = self.owned_sku(code, tenant)?;
        let holds = self
            .call(info.id, |reply| SkuCommand::Holds {
                after,
                limit,
                reply,
            })
            .await?;
        Ok((info, holds))
    }

    /// The SKU of a reservation when it belongs to `tenant`.
    fn owned_reservation(
        &self,
        id: ReservationId,
        tenant: &TenantKey,
    ) -> Result<Arc<SkuInfo>, InventoryError> {
        match self.registry.info(id.sku) {
            Some(info) if info.tenant() == tenant.as_str() => Ok(info),
            _ => Err(InventoryError::Stock(StockError::UnknownReservation)),
        }
    }

    pub async fn commit(
        &self,
        id: ReservationId,
        buyer: BuyerId,
    ) -> Result<CommitOutcome, InventoryError> {
        if let Some(info) = self.registry.info(id.sku) {
            if self.directory.tenant_suspended(info.tenant()) {
                return Err(InventoryError::TenantSuspended);
            }
        }
        self.call(id.sku, |reply| SkuCommand::Commit {
            seq: id.seq,
            buyer: Some(buyer),
            reply,
        })
        .await
        .map_err(unknown_sku_is_unknown_reservation)
    }

    /// A reservation as its buyer (`Some`) or its SKU's seller (`None`) sees it.
    pub async fn reservation(
        &self,
        id: ReservationId,
        buyer: Option<BuyerId>,
    ) -> Result<ReservationView, InventoryError> {
        self.call(id.sku, |reply| SkuCommand::Reservation {
            seq: id.seq,
            buyer,
            reply,
        })
        .await
        .map_err(unknown_sku_is_unknown_reservation)
    }

    pub async fn stock(&self, code: &SkuCode) -> Result<(Arc<SkuInfo>, StockView), InventoryError> {
        let info = self.sku(code)?;
        let view = self.call(info.id, SkuCommand::Stock).await?;
        Ok((info, view))
    }

    pub async fn set_stock(
        &self,
        code: &SkuCode,
        tenant: &TenantKey,
        warehouses: Vec<(WarehouseId, u64)>,
        low_stock_threshold: Option<u64>,
    ) -> Result<(Arc<SkuInfo>, StockView), InventoryError> {
        let info = self.owned_sku(code, tenant)?;
        let view = self
            .call(info.id, |reply| SkuCommand::SetStock {
                warehouses,
                low_stock_threshold,
                reply,
            })
            .await?;
        Ok((info, view))
    }

    pub async fn adjust_stock(
        &self,
        code: &SkuCode,
        tenant: &TenantKey,
        warehouse: WarehouseId,
        delta: i64,
        reason: String,
    ) -> Result<(Arc<SkuInfo>, StockView), InventoryError> {
        let info = self.owned_sku(code, tenant)?;
        let view = self
            .call(info.id, |reply| SkuCommand::Adjust {
                warehouse,
                delta,
                reason,
                reply,
            })
            .await?;
        Ok((info, view))
    }

    /// Drops a SKU's memory and rebuilds it from snapshot + WAL (operations).
    pub async fn restart_sku(&self, code: &SkuCode) -> Result<(), InventoryError> {
        let info = self.sku(code)?;
        self.call(info.id, SkuCommand::Restart).await
    }

    /// Live stock of every SKU of a product, in the product's order.
    pub async fn product_stock(&self, product: &Product) -> Result<Vec<StockView>, InventoryError> {
        let calls = product
            .skus
            .iter()
            .map(|sku| self.call(SkuId(sku.id), SkuCommand::Stock));
        futures_util::future::join_all(calls)
            .await
            .into_iter()
            .collect()
    }

    /// SKUs by actor state, for the memory benchmark and operators.
    pub fn census(&self) -> HashMap<&'static str, usize> {
        let (cold, parked, active) = self.registry.census();
        HashMap::from([("cold", cold), ("parked", parked), ("active", active)])
    }

    /// Puts `units` back in the first warehouse of a SKU (a return).
    pub async fn restock(
        &self,
        code: &SkuCode,
        tenant: &TenantKey,
        units: u32,
        reason: String,
    ) -> Result<(), InventoryError> {
        let (_, view) = self.stock(code).await?;
        let Some(warehouse) = view
            .warehouses
            .keys()
            .next()
            .and_then(|w| WarehouseId::parse(w).ok())
        else {
            return Ok(());
        };
        self.adjust_stock(code, tenant, warehouse, i64::from(units), reason)
            .await
            .map(|_| ())
    }
}

impl StockPort for Inventory {
    fn sku(&self, code: &SkuCode) -> Result<Arc<SkuInfo>, InventoryError> {
        Inventory::sku(self, code)
    }

    fn sku_info(&self, sku: SkuId) -> Option<Arc<SkuInfo>> {
        Inventory::sku_info(self, sku)
    }

    fn in_drop(&self, sku: SkuId) -> bool {
        self.drops.drop_of(sku).is_some()
    }

    fn reserve(&self, info: Arc<SkuInfo>, cmd: ReserveCmd) -> StockFuture<'_, ReserveOutcome> {
        Box::pin(async move { self.reserve_sku(info, cmd).await.map(|(_, o)| o) })
    }

    fn commit(&self, id: ReservationId, buyer: BuyerId) -> StockFuture<'_, CommitOutcome> {
        Box::pin(Inventory::commit(self, id, buyer))
    }

    fn release(&self, id: ReservationId, buyer: BuyerId) -> StockFuture<'_, ReleaseOutcome> {
        Box::pin(Inventory::release(self, id, buyer))
    }

    fn restock(
        &self,
        code: SkuCode,
        tenant: TenantKey,
        units: u32,
        reason: String,
    ) -> StockFuture<'_, ()> {
        Box::pin(async move { Inventory::restock(self, &code, &tenant, units, reason).await })
    }
}

fn unknown_sku_is_unknown_reservation(error: InventoryError) -> InventoryError {
    match error {
        InventoryError::UnknownSku => InventoryError::Stock(StockError::UnknownReservation),
        other => other,
    }
}
