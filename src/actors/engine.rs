//! `Engine`: what the HTTP layer calls. It starts everything (store, recovery,
//! WAL writer, arbiters, registry), routes each request to the right actor and
//! owns product creation. It holds no rules of its own: those are in `domain`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix::{Arbiter, ArbiterHandle};
use dashmap::DashMap;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::product::{Product, ValidProduct};
use crate::domain::stock::{
    CommitOutcome, ReleaseOutcome, ReservationView, ReserveCmd, ReserveOutcome, StockError,
    StockView,
};
use crate::domain::{BuyerId, ReservationId, SkuCode, SkuId, TenantId, WarehouseId};
use crate::persistence::{
    self, EntityKey, RecordBody, RecoveryMode, RecoveryStats, SnapshotBody, Store, WalHandle,
    WalOp, WalRecord,
};

use super::carts::Carts;
use super::directory::{DirectoryDeps, DirectoryService};
use super::drops::{DropDeps, Drops, DropsError};
use super::holds::{HoldBook, HoldPlace, TooManyHolds};
use super::orders::{OrderDeps, Orders};
use super::registry::{Registry, SendError, SkuInfo};
use super::sku::{Reply, SkuCommand, SkuDeps};
use crate::auth::{PasswordHasher, PasswordParams, TokenKeys};
use crate::events::hub::HubSettings;
use crate::events::notify::Notifier;
use crate::events::outbound::{HostResolver, Outbound, SystemResolver};
use crate::events::{EventFeed, Hub};
use crate::payments::SandboxGateway;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Stock(#[from] StockError),
    #[error("unknown SKU")]
    UnknownSku,
    #[error("SKU codes already in use: {}", .0.join(", "))]
    SkuExists(Vec<String>),
    #[error("the SKU is overloaded; retry shortly")]
    Overloaded,
    #[error("the engine cannot serve this request now")]
    Unavailable,
    #[error("this store is suspended; its SKUs cannot be reserved or bought")]
    TenantSuspended,
    #[error("the store's plan allows at most {0} products")]
    ProductQuota(u32),
    #[error("this drop admits shoppers through its waiting room")]
    QueuePassRequired(u128),
    #[error(transparent)]
    TooManyHolds(#[from] TooManyHolds),
    #[error(transparent)]
    Drops(#[from] DropsError),
}

impl From<SendError> for EngineError {
    fn from(error: SendError) -> Self {
        match error {
            SendError::UnknownSku => EngineError::UnknownSku,
            SendError::Overloaded => EngineError::Overloaded,
            SendError::Unavailable => EngineError::Unavailable,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the data directory {path}: {source}")]
    Open {
        path: String,
        source: persistence::StoreError,
    },
    #[error("recovery failed: {0}")]
    Recovery(persistence::StoreError),
    #[error("{0}")]
    Internal(String),
}

/// What the engine takes from outside the process, so a test can swap it.
#[derive(Clone)]
pub struct Externals {
    pub clock: Arc<dyn Clock>,
    /// Resolves the host names of outbound requests (store webhooks).
    pub resolver: Arc<dyn HostResolver>,
}

impl Externals {
    /// The system clock and the system resolver.
    pub fn system() -> Self {
        Self::with_clock(Arc::new(crate::clock::SystemClock))
    }

    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            resolver: Arc::new(SystemResolver),
        }
    }
}

pub struct Engine {
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    store: Arc<Store>,
    wal: WalHandle,
    wal_thread: parking_lot::Mutex<Option<JoinHandle<()>>>,
    /// `shutdown` has begun / has finished.
    shutting_down: std::sync::atomic::AtomicBool,
    shut_down: tokio::sync::watch::Sender<bool>,
    registry: Arc<Registry>,
    products: DashMap<u128, Arc<Product>>,
    /// Serialises product creation so SKU codes stay unique.
    create_lock: parking_lot::Mutex<()>,
    next_sku_id: AtomicU64,
    /// Arbiters the engine started itself (none when actors live on HTTP workers).
    arbiters: Vec<Arbiter>,
    placement: Vec<ArbiterHandle>,
    recovery: RecoveryStats,
    directory: Arc<DirectoryService>,
    /// Products per store (tenant id text), for the plan's product quota.
    tenant_products: DashMap<String, u32>,
    drops: Arc<Drops>,
    holds: Arc<HoldBook>,
    outbound: Arc<Outbound>,
    hub: Arc<Hub>,
    orders: Arc<Orders>,
    carts: Arc<Carts>,
    notifier: Arc<Notifier>,
    sandbox: SandboxGateway,
}

impl Engine {
    /// Opens the store, recovers, and starts the WAL writer and the arbiters.
    /// Must run inside an actix `System`.
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Arc<Self>, StartError> {
        Self::start_on(config, Externals::with_clock(clock), None).await
    }

    /// Like `start`, with SKU actors placed on `arbiters` (the HTTP workers')
    /// instead of arbiters of the engine's own.
    pub async fn start_on(
        config: Config,
        externals: Externals,
        arbiters: Option<Vec<ArbiterHandle>>,
    ) -> Result<Arc<Self>, StartError> {
        let clock = externals.clock;
        let mut config = config;
        config
            .resolve_secrets()
            .map_err(|e| StartError::Internal(e.to_string()))?;
        let config = Arc::new(config);
        let limits = config.ledger_limits();
        let data_dir = config.storage.data_dir.clone();
        let cache_bytes = config.storage.cache_capacity_mb * 1024 * 1024;
        let sync = config.wal.sync;
        let store = blocking(move || Store::open(&data_dir, cache_bytes, sync))
            .await?
            .map_err(|source| StartError::Open {
                path: config.storage.data_dir.display().to_string(),
                source,
            })?;
        let store = Arc::new(store);

        let recovery_store = store.clone();
        let recovery_limits = limits.clone();
        let recovered = blocking(move || {
            persistence::recover(&recovery_store, &recovery_limits, RecoveryMode::Snapshots)
        })
        .await?
        .map_err(StartError::Recovery)?;
        let stats = recovered.stats.clone();
        tracing::info!(
            batches = stats.batches,
            records = stats.records,
            applied = stats.applied,
            products = recovered.products.len(),
            ms = stats.elapsed.as_millis() as u64,
            "recovered from snapshots + WAL"
        );
        metrics::gauge!("flashdrop_recovery_seconds").set(stats.elapsed.as_secs_f64());
        metrics::counter!("flashdrop_recovery_records_total").increment(stats.records);

        let dirty_products: Vec<u128> = recovered
            .start
            .dirty
            .iter()
            .filter_map(|(entity, _)| match entity {
                EntityKey::Product(id) => Some(*id),
                _ => None,
            })
            .collect();
        let feed = EventFeed::new(config.ws.feed_capacity_batches);
        let hub_feed = feed.subscribe();
        let drops_feed = feed.subscribe();
        let mut wal_settings = config.wal_settings();
        wal_settings.feed = Some(feed);
        let (wal, wal_thread) =
            persistence::wal::start(store.clone(), wal_settings, recovered.start);
        let directory = Arc::new(DirectoryService::new(
            recovered.directory,
            recovered.next_audit_seq,
            DirectoryDeps {
                wal: wal.clone(),
                store: store.clone(),
                clock: clock.clone(),
                config: config.clone(),
                keys: Arc::new(token_keys(&config)?),
                hasher: PasswordHasher::new(
                    PasswordParams {
                        memory_kib: config.auth.argon2_memory_kib,
                        iterations: config.auth.argon2_iterations,
                        parallelism: config.auth.argon2_parallelism,
                    },
                    config.hash_concurrency(),
                )
                .map_err(|e| StartError::Internal(e.to_string()))?,
            },
        ));
        let lost_directory = |e: persistence::WalError| StartError::Internal(e.to_string());
        for entity in recovered.directory_unsnapshotted {
            wal.snapshot(
                EntityKey::of(&entity),
                &SnapshotBody::Directory(entity),
                None,
            )
            .map_err(lost_directory)?;
        }

        for id in &recovered.orders_unsnapshotted {
            if let Some(order) = recovered.orders.get(id) {
                wal.snapshot(
                    EntityKey::Order(*id),
                    &SnapshotBody::Order(order.clone()),
                    None,
                )
                .map_err(lost_directory)?;
            }
        }
        for id in &recovered.carts_unsnapshotted {
            if let Some(cart) = recovered.carts.get(id) {
                wal.snapshot(
                    EntityKey::Cart(*id),
                    &SnapshotBody::Cart(cart.clone()),
                    None,
                )
                .map_err(lost_directory)?;
            }
        }
        for id in &recovered.drops_unsnapshotted {
            if let Some(drop) = recovered.drops.get(id) {
                wal.snapshot(
                    EntityKey::Drop(*id),
                    &SnapshotBody::Drop(drop.clone()),
                    None,
                )
                .map_err(lost_directory)?;
            }
        }
        let (mut arbiters, handles): (Vec<Arbiter>, Vec<ArbiterHandle>) = match arbiters {
            Some(handles) if !handles.is_empty() => (Vec::new(), handles),
            _ => {
                let own: Vec<Arbiter> =
                    (0..config.actor_shards()).map(|_| Arbiter::new()).collect();
                let handles = own.iter().map(Arbiter::handle).collect();
                (own, handles)
            }
        };
        // Drops, their scheduler and the WebSocket hub share a thread of their own.
        let events_arbiter = Arbiter::new();
        let events_handle = events_arbiter.handle();
        arbiters.push(events_arbiter);
        let deps_wal = wal.clone();
        let deps_store = store.clone();
        let deps_clock = clock.clone();
        let snapshots = config.snapshots.clone();
        let idle_timeout = Duration::from_secs(config.actors.idle_timeout_s);
        let handles_for_engine = handles.clone();
        let watched = Arc::new(crate::events::Watched::default());
        let sku_watched = watched.clone();
        let holds = HoldBook::new();
        for ledger in recovered.ledgers.values() {
            for buyer in ledger.open_buyers() {
                holds.opened(buyer);
            }
        }
        let sku_holds = holds.clone();
        let registry = Registry::new(
            handles,
            config.actors.mailbox_capacity as u32,
            move |registry| SkuDeps {
                wal: deps_wal,
                store: deps_store,
                clock: deps_clock,
                limits,
                snapshot_every_records: snapshots.every_records,
                snapshot_interval: Duration::from_secs(snapshots.interval_s),
                idle_timeout,
                registry,
                watched: sku_watched,
                holds: sku_holds,
            },
        );

        // Every SKU is registered; the ones the WAL changed keep their rebuilt
        // ledger in memory until a fresh snapshot of it is durable. Snapshots
        // are encoded one at a time, so recovery never holds two copies of state.
        let mut ledgers = recovered.ledgers;
        let mut max_sku = 0;
        let mut open_reservations = Vec::new();
        let products = DashMap::new();
        let tenant_products: DashMap<String, u32> = DashMap::new();
        let lost = |e: persistence::WalError| StartError::Internal(e.to_string());
        for (id, product) in recovered.products {
            let product = Arc::new(product);
            for (index, sku) in product.skus.iter().enumerate() {
                let sku_id = SkuId(sku.id);
                max_sku = max_sku.max(sku.id);
                let ledger = ledgers.remove(&sku_id);
                if let Some(ledger) = &ledger {
                    let weak = Arc::downgrade(&registry);
                    let ack: persistence::Ack = Box::new(move || {
                        if let Some(registry) = weak.upgrade() {
                            registry.parked_durable(sku_id, 0);
                        }
                    });
                    store
                        .mark_holding(sku.id, ledger.open_reservations() > 0)
                        .map_err(|e| StartError::Internal(e.to_string()))?;
                    let body = SnapshotBody::Ledger(ledger.snapshot());
                    wal.snapshot(EntityKey::Sku(sku.id), &body, Some(ack))
                        .map_err(lost)?;
                    if ledger.open_reservations() > 0 {
                        open_reservations.push(sku_id);
                    }
                }
                registry.insert(
                    SkuInfo {
                        id: sku_id,
                        product: product.clone(),
                        index,
                    },
                    ledger,
                );
            }
            *tenant_products.entry(product.tenant.clone()).or_default() += 1;
            products.insert(id, product);
        }
        if !ledgers.is_empty() {
            return Err(StartError::Internal(format!(
                "the WAL holds stock of {} SKUs that belong to no product",
                ledgers.len()
            )));
        }

        let hub = Hub::new(
            HubSettings {
                coalesce_ms: config.ws.coalesce_ms,
                max_connections: config.ws.max_connections,
                event_queue_max: config.ws.event_queue_max,
            },
            config.ws.max_subscriptions_per_connection,
            registry.clone(),
            directory.clone(),
            watched.clone(),
        );
        let drops = Drops::new(
            recovered.drops.into_values().collect(),
            DropDeps {
                wal: wal.clone(),
                clock: clock.clone(),
                registry: registry.clone(),
                hub: hub.clone(),
                watched,
            },
            events_handle.clone(),
            Duration::from_millis(config.drops.room_tick_ms),
        );
        let (webhook_tx, webhook_rx) =
            tokio::sync::mpsc::channel(config.payments.sandbox_webhook_queue_max);
        let sandbox_settings = config.sandbox_settings();
        let psp_tree = store
            .db
            .open_tree("sandbox_psp")
            .map_err(|e| StartError::Internal(format!("sandbox ledger: {e}")))?;
        let sandbox = SandboxGateway::open(sandbox_settings.clone(), psp_tree, Some(webhook_tx))
            .map_err(|e| StartError::Internal(format!("sandbox ledger: {e}")))?;
        let webhook_url = config.payments.webhook_url.clone();
        let webhook_secret = config.payments.webhook_secret.as_bytes().to_vec();
        if webhook_url.is_empty() {
            tracing::warn!("payments.webhook_url is empty: sandbox webhooks are not delivered");
        } else {
            // The HTTP client is single-threaded: build the loop on the arbiter.
            events_handle.spawn_fn(move || {
                actix_rt::spawn(crate::payments::sandbox::deliver_webhooks(
                    webhook_rx,
                    webhook_url,
                    webhook_secret,
                    sandbox_settings,
                ));
            });
        }
        let outbound = Outbound::new(
            crate::domain::outbound::OutboundPolicy::new(config.outbound_allowed()),
            externals.resolver,
        );
        let notifier = Notifier::open(
            &store.db,
            config.notify_settings(),
            outbound.clone(),
            clock.clone(),
        )
        .map_err(|e| StartError::Internal(format!("notification queue: {e}")))?;
        let delivering = notifier.clone();
        events_handle.spawn_fn(move || {
            actix_rt::spawn(delivering.run());
        });
        let orders = Orders::new(
            recovered.orders.into_values().collect(),
            OrderDeps::new(
                wal.clone(),
                clock.clone(),
                config.clone(),
                Arc::new(sandbox.clone()),
                hub.clone(),
                notifier.clone(),
                directory.clone(),
            ),
            handles_for_engine.clone(),
        );
        let carts = Carts::new(
            recovered.carts.into_values().collect(),
            wal.clone(),
            clock.clone(),
            config.clone(),
            orders.clone(),
            handles_for_engine.clone(),
        );
        let sweeping = Arc::downgrade(&carts);
        let sweep_every = Duration::from_secs(config.retention.sweep_interval_s);
        let purge_batch = config.retention.sweep_batch_max;
        let marks = notifier.clone();
        let marks_keep_ms = config.retention.notification_keys_s * 1000;
        events_handle.spawn(async move {
            let mut every = tokio::time::interval(sweep_every);
            loop {
                every.tick().await;
                let Some(carts) = sweeping.upgrade() else {
                    break;
                };
                // Batch by batch, so a mass expiry never floods the WAL.
                loop {
                    let forgotten = carts.sweep(purge_batch);
                    metrics::counter!("flashdrop_carts_expired_total").increment(forgotten as u64);
                    if forgotten < purge_batch {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                metrics::gauge!("flashdrop_carts").set(carts.count() as f64);
                loop {
                    match marks.purge_keys(marks_keep_ms, purge_batch) {
                        Ok(n) if n >= purge_batch => tokio::task::yield_now().await,
                        Ok(_) => break,
                        Err(error) => {
                            tracing::warn!(%error, "notification keys not purged");
                            break;
                        }
                    }
                }
            }
        });
        let purging = Arc::downgrade(&directory);
        events_handle.spawn(async move {
            let mut every = tokio::time::interval(sweep_every);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(directory) = purging.upgrade() else {
                    break;
                };
                // Batch by batch, each awaited, so the WAL never sees a flood.
                loop {
                    match directory.purge_ended().await {
                        Ok(n) if n >= purge_batch => continue,
                        Ok(_) => break,
                        Err(e) => {
                            tracing::debug!(error = %e, "identity purge deferred");
                            break;
                        }
                    }
                }
            }
        });
        events_handle.spawn(hub.clone().run(hub_feed));
        events_handle.spawn(drops.clone().watch_levels(drops_feed));
        events_handle.spawn(drops.clone().run_scheduler());
        let engine = Arc::new(Self {
            drops,
            holds,
            outbound,
            hub,
            orders,
            carts,
            notifier,
            sandbox,
            config,
            clock,
            store,
            wal,
            wal_thread: parking_lot::Mutex::new(Some(wal_thread)),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            shut_down: tokio::sync::watch::Sender::new(false),
            registry,
            products,
            create_lock: parking_lot::Mutex::new(()),
            next_sku_id: AtomicU64::new(max_sku + 1),
            arbiters,
            placement: handles_for_engine,
            recovery: stats,
            directory,
            tenant_products,
        });
        engine.checkpoint_products(dirty_products).await?;
        let auth = &engine.config.auth;
        if !auth.bootstrap_admin_email.is_empty() {
            let created = engine
                .directory
                .bootstrap_admin(
                    &auth.bootstrap_admin_email,
                    auth.bootstrap_admin_password.expose(),
                )
                .await
                .map_err(|e| StartError::Internal(format!("auth.bootstrap_admin_email: {e}")))?;
            if created {
                tracing::info!(email = %auth.bootstrap_admin_email, "created the first platform admin");
            }
        }
        for sku in open_reservations {
            engine.registry.ensure_active(sku);
        }
        engine.drops.reconcile().await;
        let resume = engine.clone();
        events_handle.spawn(async move {
            resume.sandbox.resume_pending();
            resume.orders.start(&resume);
            resume.carts.start(&resume);
        });
        Ok(engine)
    }

    /// Snapshots the products recovery found only in the WAL, then waits until
    /// every recovery snapshot is durable, so the WAL behind them can go.
    async fn checkpoint_products(&self, products: Vec<u128>) -> Result<(), StartError> {
        let lost = |e: persistence::WalError| StartError::Internal(e.to_string());
        for id in products {
            if let Some(product) = self.product(id) {
                let body = SnapshotBody::Product((*product).clone());
                self.wal
                    .snapshot(EntityKey::Product(id), &body, None)
                    .map_err(lost)?;
            }
        }
        let barrier = self.wal.barrier().map_err(lost)?;
        barrier
            .await
            .map_err(|_| StartError::Internal("the WAL writer stopped".into()))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn recovery_stats(&self) -> &RecoveryStats {
        &self.recovery
    }

    pub fn directory(&self) -> &Arc<DirectoryService> {
        &self.directory
    }

    pub fn drops(&self) -> &Arc<Drops> {
        &self.drops
    }

    /// Where outbound requests on a store's behalf may go.
    pub fn outbound(&self) -> &Arc<Outbound> {
        &self.outbound
    }

    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    pub fn carts(&self) -> &Arc<Carts> {
        &self.carts
    }

    pub fn orders(&self) -> &Arc<Orders> {
        &self.orders
    }

    /// The sandbox payment provider (its ledger, for tests and operators).
    pub fn sandbox(&self) -> &SandboxGateway {
        &self.sandbox
    }

    pub fn sku_info(&self, sku: SkuId) -> Option<Arc<SkuInfo>> {
        self.registry.info(sku)
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn wal(&self) -> &WalHandle {
        &self.wal
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The arbiters SKU actors run on (placement is a hash of the SKU id).
    pub fn arbiter_handles(&self) -> Vec<ArbiterHandle> {
        self.placement.clone()
    }

    async fn call<T: Send + 'static>(
        &self,
        sku: SkuId,
        command: impl FnOnce(Reply<Result<T, StockError>>) -> SkuCommand,
    ) -> Result<T, EngineError> {
        if self.wal.congested() {
            // Sending now could block an actor's thread (an HTTP worker's, with
            // `placement = "http_workers"`) until the WAL drains: refuse instead.
            metrics::counter!("flashdrop_wal_congested_total").increment(1);
            return Err(EngineError::Overloaded);
        }
        let (tx, rx) = oneshot::channel();
        self.registry.send(sku, command(tx))?;
        match rx.await {
            Ok(result) => result.map_err(EngineError::from),
            // The actor stopped before answering (restart or shutdown): nothing
            // it did for this request is acknowledged.
            Err(_) => Err(EngineError::Unavailable),
        }
    }

    pub fn sku(&self, code: &SkuCode) -> Result<Arc<SkuInfo>, EngineError> {
        self.registry
            .id_of(code.as_str())
            .and_then(|id| self.registry.info(id))
            .ok_or(EngineError::UnknownSku)
    }

    /// A SKU as its seller sees it; another tenant's SKU is unknown.
    fn owned_sku(&self, code: &SkuCode, tenant: &TenantId) -> Result<Arc<SkuInfo>, EngineError> {
        let info = self.sku(code)?;
        if info.tenant() != tenant.as_str() {
            return Err(EngineError::UnknownSku);
        }
        Ok(info)
    }

    pub async fn reserve(
        &self,
        code: &SkuCode,
        cmd: ReserveCmd,
    ) -> Result<(Arc<SkuInfo>, ReserveOutcome), EngineError> {
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
    ) -> Result<(Arc<SkuInfo>, ReserveOutcome), EngineError> {
        if self.drops.drop_of(info.id).is_some() {
            return self.reserve_sku(info, cmd).await;
        }
        match self.holds.try_take(cmd.buyer.as_str(), holds_max) {
            Ok(place) => self.reserve_with(info, cmd, Some(place)).await,
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
    ) -> Result<(Arc<SkuInfo>, ReserveOutcome), EngineError> {
        self.reserve_with(info, cmd, None).await
    }

    /// `reserve_sku` with the shopper's place in the hold book, if it took one:
    /// the SKU actor turns it into an open hold when the reservation is logged.
    async fn reserve_with(
        &self,
        info: Arc<SkuInfo>,
        cmd: ReserveCmd,
        place: Option<HoldPlace>,
    ) -> Result<(Arc<SkuInfo>, ReserveOutcome), EngineError> {
        let result = if self.directory.tenant_suspended(info.tenant()) {
            Err(EngineError::TenantSuspended)
        } else if let Some(drop) = self.drops.drop_of(info.id) {
            self.reserve_in_drop(&info, &drop, cmd).await
        } else {
            self.call(info.id, |reply| SkuCommand::Reserve(cmd, place, reply))
                .await
        };
        let outcome = match &result {
            Ok(o) if o.replayed => "replayed",
            Ok(_) => "created",
            Err(EngineError::Stock(StockError::OutOfStock { .. })) => "out_of_stock",
            Err(EngineError::Stock(StockError::DropNotLive { .. })) => "drop_not_live",
            Err(EngineError::Stock(StockError::PurchaseLimitExceeded { .. })) => "purchase_limit",
            Err(EngineError::Stock(StockError::HoldLimitExceeded { .. })) => "hold_limit",
            Err(EngineError::QueuePassRequired(_)) => "queue_pass_required",
            Err(EngineError::Overloaded) => "overloaded",
            Err(EngineError::Unavailable) => "unavailable",
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
        drop: &super::drops::DropEntry,
        cmd: ReserveCmd,
    ) -> Result<ReserveOutcome, EngineError> {
        let account = crate::domain::identity::parse_id(cmd.buyer.as_str());
        let now = self.clock.now_ms();
        if !account.is_some_and(|buyer| self.drops.admits(drop, buyer, now)) {
            return Err(EngineError::QueuePassRequired(drop.spec.id));
        }
        if drop.spec.skus.len() < 2 || drop.spec.per_buyer_limit == 0 {
            return self
                .call(info.id, |reply| SkuCommand::Reserve(cmd, None, reply))
                .await;
        }
        let buyer = cmd.buyer.as_str().to_owned();
        let lock = self.drops.buyer_lock(drop.spec.id, &buyer);
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
        self.drops.release_buyer_lock(drop.spec.id, &buyer, lock);
        result
    }

    pub async fn release(
        &self,
        id: ReservationId,
        buyer: BuyerId,
    ) -> Result<ReleaseOutcome, EngineError> {
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
        tenant: &TenantId,
    ) -> Result<ReleaseOutcome, EngineError> {
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
        tenant: &TenantId,
    ) -> Result<CommitOutcome, EngineError> {
        let info = self.owned_reservation(id, tenant)?;
        if self.directory.tenant_suspended(info.tenant()) {
            return Err(EngineError::TenantSuspended);
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
        tenant: &TenantId,
        after: Option<(u64, u64)>,
        limit: usize,
    ) -> Result<(Arc<SkuInfo>, Vec<ReservationView>), EngineError> {
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
        tenant: &TenantId,
    ) -> Result<Arc<SkuInfo>, EngineError> {
        match self.registry.info(id.sku) {
            Some(info) if info.tenant() == tenant.as_str() => Ok(info),
            _ => Err(EngineError::Stock(StockError::UnknownReservation)),
        }
    }

    pub async fn commit(
        &self,
        id: ReservationId,
        buyer: BuyerId,
    ) -> Result<CommitOutcome, EngineError> {
        if let Some(info) = self.registry.info(id.sku) {
            if self.directory.tenant_suspended(info.tenant()) {
                return Err(EngineError::TenantSuspended);
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
    ) -> Result<ReservationView, EngineError> {
        self.call(id.sku, |reply| SkuCommand::Reservation {
            seq: id.seq,
            buyer,
            reply,
        })
        .await
        .map_err(unknown_sku_is_unknown_reservation)
    }

    pub async fn stock(&self, code: &SkuCode) -> Result<(Arc<SkuInfo>, StockView), EngineError> {
        let info = self.sku(code)?;
        let view = self.call(info.id, SkuCommand::Stock).await?;
        Ok((info, view))
    }

    pub async fn set_stock(
        &self,
        code: &SkuCode,
        tenant: &TenantId,
        warehouses: Vec<(WarehouseId, u64)>,
        low_stock_threshold: Option<u64>,
    ) -> Result<(Arc<SkuInfo>, StockView), EngineError> {
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
        tenant: &TenantId,
        warehouse: WarehouseId,
        delta: i64,
        reason: String,
    ) -> Result<(Arc<SkuInfo>, StockView), EngineError> {
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
    pub async fn restart_sku(&self, code: &SkuCode) -> Result<(), EngineError> {
        let info = self.sku(code)?;
        self.call(info.id, SkuCommand::Restart).await
    }

    /// Stores a product and registers its SKUs, within the store's quota of
    /// `max_products`; answers once it is durable.
    pub async fn create_product(
        &self,
        tenant: &TenantId,
        product: ValidProduct,
        max_products: u32,
    ) -> Result<Arc<Product>, EngineError> {
        let (durable, product) = {
            let _creating = self.create_lock.lock();
            let owned = self.tenant_products.get(tenant.as_str()).map_or(0, |n| *n);
            if owned >= max_products {
                return Err(EngineError::ProductQuota(max_products));
            }
            // In use already, or listed twice in this product.
            let mut listed = std::collections::HashSet::new();
            let mut taken: Vec<String> = product
                .skus
                .iter()
                .filter(|sku| {
                    !listed.insert(sku.code.as_str())
                        || self.registry.contains_code(sku.code.as_str())
                })
                .map(|sku| sku.code.to_string())
                .collect();
            taken.dedup();
            if !taken.is_empty() {
                return Err(EngineError::SkuExists(taken));
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
                self.config.stock.low_stock_threshold,
                self.clock.now_ms(),
            ));
            let (tx, rx) = oneshot::channel();
            let entity = EntityKey::Product(id);
            let record = WalRecord {
                entity,
                body: RecordBody::ProductCreated(Box::new((*product).clone())),
            };
            let ack: persistence::Ack = Box::new(move || {
                let _ = tx.send(());
            });
            self.wal
                .append(&record, Some(ack))
                .map_err(|_| EngineError::Unavailable)?;
            // Products never change here, so their snapshot is the record itself;
            // it lets the WAL be truncated past the creation.
            self.wal
                .snapshot(entity, &SnapshotBody::Product((*product).clone()), None)
                .map_err(|_| EngineError::Unavailable)?;
            // Registered after the record is queued, so any stock record of these
            // SKUs is ordered after the product's in the WAL.
            for (index, sku) in ids.iter().enumerate() {
                self.registry.insert(
                    SkuInfo {
                        id: *sku,
                        product: product.clone(),
                        index,
                    },
                    None,
                );
            }
            *self
                .tenant_products
                .entry(tenant.as_str().to_owned())
                .or_default() += 1;
            (rx, product)
        };
        durable.await.map_err(|_| EngineError::Unavailable)?;
        self.products.insert(product.id, product.clone());
        metrics::counter!("flashdrop_products_created_total").increment(1);
        Ok(product)
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

    /// Live stock of every SKU of a product, in the product's order.
    pub async fn product_stock(&self, product: &Product) -> Result<Vec<StockView>, EngineError> {
        let calls = product
            .skus
            .iter()
            .map(|sku| self.call(SkuId(sku.id), SkuCommand::Stock));
        futures_util::future::join_all(calls)
            .await
            .into_iter()
            .collect()
    }

    /// Commits everything queued, completes pending snapshots, stops the WAL
    /// writer and the arbiters. Requests after this fail with `Unavailable`.
    /// Safe to call more than once (the server's own stop and a test's may
    /// race): later callers wait for the first one to finish. A second
    /// `Shutdown` sent to a writer that has already stopped would sit in its
    /// channel forever, and its caller with it.
    pub async fn shutdown(&self) {
        let mut done = self.shut_down.subscribe();
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            let _ = done.wait_for(|finished| *finished).await;
            return;
        }
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        let ack: persistence::Ack = Box::new(move || {
            let _ = tx.send(());
        });
        if self.wal.send(WalOp::Shutdown { ack }).is_ok() {
            let _ = rx.await;
        }
        // Taken in its own statement: the guard must not live across the await.
        let thread = self.wal_thread.lock().take();
        if let Some(thread) = thread {
            let _ = blocking(move || thread.join()).await;
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "WAL flushed and closed"
        );
        self.shut_down.send_replace(true);
    }

    /// SKUs by actor state, for the memory benchmark and operators.
    pub fn census(&self) -> HashMap<&'static str, usize> {
        let (cold, parked, active) = self.registry.census();
        HashMap::from([("cold", cold), ("parked", parked), ("active", active)])
    }
}

/// The token keys from `auth.*` (secrets already resolved).
fn token_keys(config: &Config) -> Result<TokenKeys, StartError> {
    let secret = config
        .jwt_secret()
        .map_err(|e| StartError::Internal(e.to_string()))?
        .ok_or_else(|| StartError::Internal("auth.jwt_secret is not resolved".into()))?;
    let a = &config.auth;
    Ok(TokenKeys::new(
        &secret,
        &a.issuer,
        &a.audience,
        a.access_ttl_s,
        a.refresh_ttl_s,
    )
    .with_cache(a.token_cache_entries))
}

fn unknown_sku_is_unknown_reservation(error: EngineError) -> EngineError {
    match error {
        EngineError::UnknownSku => EngineError::Stock(StockError::UnknownReservation),
        other => other,
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StartError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StartError::Internal(e.to_string()))
}
