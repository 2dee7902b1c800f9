//! Start-up as named steps: open storage, recover, start the WAL writer,
//! snapshot what recovery found only in the WAL, start each service in the
//! order of its dependencies, start the background tasks, then resume what
//! a crash interrupted. Each step is a function of its own.

use std::sync::Arc;
use std::time::Duration;

use actix::{Arbiter, ArbiterHandle};

use crate::actors::carts::Carts;
use crate::actors::drops::{DropDeps, Drops};
use crate::actors::holds::HoldBook;
use crate::actors::orders::{OrderDeps, Orders};
use crate::actors::registry::{Registry, SkuInfo};
use crate::actors::sku::{SkuDeps, SkuHome};
use crate::actors::InStock;
use crate::auth::{PasswordHasher, PasswordParams, TokenKeys};
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::product::Product;
use crate::domain::SkuId;
use crate::events::durable::FeedSource;
use crate::events::hub::HubSettings;
use crate::events::notify::Notifier;
use crate::events::order_news::OrderNews;
use crate::events::outbound::Outbound;
use crate::events::{EventFeed, Hub, Watched};
use crate::payments::SandboxGateway;
use crate::persistence::checkpoints::{Checkpoints, Pins};
use crate::persistence::{
    self, EntityKey, Recovered, RecoveryMode, SnapshotBody, Store, WalHandle, WalSettings,
};
use crate::services::identity::{DirectoryDeps, DirectoryService};
use crate::services::{
    Catalog, CatalogDeps, Categories, ImportDeps, ImportSettings, Imports, Inventory,
    InventoryDeps, OpenLines,
};

use super::{Externals, Node, Runtime, Services, StartError};

type FeedReceiver = tokio::sync::broadcast::Receiver<Arc<crate::events::FeedBatch>>;

pub(super) async fn start(
    config: Config,
    externals: Externals,
    arbiters: Option<Vec<ArbiterHandle>>,
) -> Result<Arc<Node>, StartError> {
    let config = resolve_config(config)?;
    let clock = externals.clock.clone();
    let store = open_storage(&config).await?;
    let mut recovered = recover(&store, &config).await?;
    let stats = recovered.stats.clone();
    let feed = EventFeed::new(config.ws.feed_capacity_batches);
    let hub_feed = feed.subscribe();
    let drops_feed = feed.subscribe();
    let dirty_products = wal_only_products(&recovered);
    let (wal, wal_thread, feed_source) = start_wal_writer(&store, &config, feed, &mut recovered)?;
    snapshot_wal_only_state(&wal, &recovered).await?;
    let mut threads = Threads::new(&config, arbiters);
    let identity = start_identity(&config, &wal, &store, &clock, &mut recovered)?;
    let stock = start_stock(&config, &wal, &store, &clock, &threads, &mut recovered)?;
    let hub = start_hub(&config, &stock, &identity);
    let drops = start_drops(
        &config,
        &wal,
        &store,
        &clock,
        &threads,
        &stock,
        &hub,
        &mut recovered,
    );
    let inventory = Inventory::new(InventoryDeps {
        registry: stock.registry.clone(),
        in_stock: stock.in_stock.clone(),
        holds: stock.holds.clone(),
        drops: drops.clone(),
        directory: identity.clone(),
        wal: wal.clone(),
        clock: clock.clone(),
    });
    let open_orders = Arc::new(OpenLines::default());
    let categories = Categories::new(
        recovered.categories.take_all().into_values().collect(),
        wal.clone(),
    )
    .map_err(|e| StartError::Internal(format!("the category tree: {e}")))?;
    let catalog = Catalog::new(
        stock.products.clone(),
        CatalogDeps {
            inventory: inventory.clone(),
            open_orders: open_orders.clone(),
            retired: persistence::RetiredSkus::open(&store).map_err(StartError::Recovery)?,
            categories: categories.clone(),
            wal: wal.clone(),
            versions: open_histories(&config, &store, &stock, &recovered.products_from_wal)?,
            clock: clock.clone(),
            low_stock_threshold: config.stock.low_stock_threshold,
            browse_scan_max: config.catalog.browse_scan_max,
        },
    );
    let imports = start_imports(
        &config,
        &store,
        &wal,
        &clock,
        &catalog,
        &identity,
        &mut threads,
    )?;
    let sandbox = start_payments(&config, &store, &threads)?;
    let outbound = Outbound::new(
        crate::domain::outbound::OutboundPolicy::new(config.outbound_allowed()),
        externals.resolver,
        Duration::from_millis(config.outbound.resolve_timeout_ms),
    );
    let notifier = start_notifier(&config, &store, &clock, &outbound, &threads)?;
    let archive =
        Arc::new(persistence::OrderArchive::open(store.clone()).map_err(StartError::Recovery)?);
    let orders = Orders::new(
        recovered.orders.take_all().into_values().collect(),
        OrderDeps::new(
            wal.clone(),
            clock.clone(),
            config.clone(),
            externals
                .payments
                .unwrap_or_else(|| Arc::new(sandbox.clone())),
            inventory.clone(),
            Arc::new(OrderNews {
                directory: identity.clone(),
                notifier: notifier.clone(),
                hub: hub.clone(),
            }),
            open_orders,
        )
        .with_pricing(identity.clone()),
        archive,
        threads.placement.clone(),
    )
    .map_err(StartError::Recovery)?;
    let carts = Carts::new(
        recovered.carts.take_all().into_values().collect(),
        wal.clone(),
        clock.clone(),
        config.clone(),
        orders.clone(),
        inventory.clone(),
        threads.placement.clone(),
    );
    let services = Services {
        identity,
        inventory,
        catalog,
        categories,
        imports,
        drops,
        carts,
        orders,
        notifier,
        hub,
        outbound,
        sandbox,
    };
    start_background_tasks(&config, &services, &threads.events, hub_feed, drops_feed);
    // Every durable subscriber of this build is running by now.
    feed_source
        .release_unclaimed()
        .map_err(StartError::Recovery)?;
    checkpoint_products(&wal, &services.catalog, &dirty_products).await?;
    bootstrap_admin(&config, &services.identity).await?;
    let app = Arc::new(Node {
        config,
        clock,
        recovery: stats,
        services,
        runtime: Runtime {
            store,
            wal,
            wal_thread: parking_lot::Mutex::new(Some(wal_thread)),
            arbiters: threads.own,
            placement: threads.placement,
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            shut_down: tokio::sync::watch::Sender::new(false),
        },
    });
    resume(
        &app,
        &stock.registry,
        stock.open_reservations,
        &threads.events,
    )
    .await;
    Ok(app)
}

/// Secrets read from their files, then shared.
fn resolve_config(config: Config) -> Result<Arc<Config>, StartError> {
    let mut config = config;
    config
        .resolve_secrets()
        .map_err(|e| StartError::Internal(e.to_string()))?;
    Ok(Arc::new(config))
}

async fn open_storage(config: &Config) -> Result<Arc<Store>, StartError> {
    let data_dir = config.storage.data_dir.clone();
    let cache_bytes = config.storage.cache_capacity_mb * 1024 * 1024;
    let sync = config.wal.sync;
    let lock_wait = Duration::from_secs(config.storage.lock_wait_s);
    let store = blocking(move || Store::open(&data_dir, cache_bytes, sync, lock_wait))
        .await?
        .map_err(|source| StartError::Open {
            path: config.storage.data_dir.display().to_string(),
            source,
        })?;
    Ok(Arc::new(store))
}

async fn recover(store: &Arc<Store>, config: &Config) -> Result<Recovered, StartError> {
    let recovery_store = store.clone();
    let limits = config.ledger_limits();
    let recovered =
        blocking(move || persistence::recover(&recovery_store, &limits, RecoveryMode::Snapshots))
            .await?
            .map_err(StartError::Recovery)?;
    let stats = &recovered.stats;
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
    Ok(recovered)
}

/// Products recovery found only in the WAL (they get a snapshot once the
/// catalog is up).
fn wal_only_products(recovered: &Recovered) -> Vec<u128> {
    recovered
        .start
        .dirty
        .iter()
        .filter_map(|(entity, _)| match entity {
            EntityKey::Product(id) => Some(*id),
            _ => None,
        })
        .collect()
}

/// The WAL writer thread, publishing what becomes durable to `feed` and
/// keeping the batches durable subscribers still need (their checkpoints
/// pin the WAL from its first commit on, before they start).
fn start_wal_writer(
    store: &Arc<Store>,
    config: &Config,
    feed: EventFeed,
    recovered: &mut Recovered,
) -> Result<(WalHandle, std::thread::JoinHandle<()>, FeedSource), StartError> {
    let checkpoints = Checkpoints::open(store).map_err(StartError::Recovery)?;
    let pins = Arc::new(Pins::from_checkpoints(
        &checkpoints.all().map_err(StartError::Recovery)?,
    ));
    let settings = WalSettings {
        feed: Some(feed),
        pins: Some(pins.clone()),
        ..config.wal_settings()
    };
    let start = std::mem::take(&mut recovered.start);
    let (wal, thread) = persistence::wal::start(store.clone(), settings, start);
    let source = FeedSource::new(store.clone(), wal.stats().clone(), checkpoints, pins);
    Ok((wal, thread, source))
}

/// Entities whose latest state recovery found only in the WAL get a
/// snapshot, so the WAL behind them can go. (SKU ledgers and products are
/// snapshotted where their service starts.)
/// Snapshots what recovery found only in the WAL, and waits until they are
/// durable: an order that is not kept in memory is read back from its
/// snapshot, which must then be its latest state.
async fn snapshot_wal_only_state(wal: &WalHandle, recovered: &Recovered) -> Result<(), StartError> {
    for entity in &recovered.directory_unsnapshotted {
        wal.snapshot(
            EntityKey::of(entity),
            &SnapshotBody::Directory(entity.clone()),
            None,
        )
        .map_err(lost)?;
    }
    recovered.orders.snapshot_wal_only(wal).map_err(lost)?;
    recovered.carts.snapshot_wal_only(wal).map_err(lost)?;
    recovered.drops.snapshot_wal_only(wal).map_err(lost)?;
    recovered.categories.snapshot_wal_only(wal).map_err(lost)?;
    wal.barrier()
        .map_err(lost)?
        .await
        .map_err(|_| StartError::Internal("the WAL writer stopped during start-up".into()))?;
    Ok(())
}

/// The threads actors run on: the HTTP workers' arbiters or arbiters of our
/// own, plus one for events (drops, their scheduler, the WebSocket hub,
/// notifications, sweeps).
struct Threads {
    own: Vec<Arbiter>,
    placement: Vec<ArbiterHandle>,
    events: ArbiterHandle,
}

impl Threads {
    fn new(config: &Config, given: Option<Vec<ArbiterHandle>>) -> Self {
        let (mut own, placement): (Vec<Arbiter>, Vec<ArbiterHandle>) = match given {
            Some(handles) if !handles.is_empty() => (Vec::new(), handles),
            _ => {
                let own: Vec<Arbiter> =
                    (0..config.actor_shards()).map(|_| Arbiter::new()).collect();
                let handles = own.iter().map(Arbiter::handle).collect();
                (own, handles)
            }
        };
        let events = Arbiter::new();
        let handle = events.handle();
        own.push(events);
        Self {
            own,
            placement,
            events: handle,
        }
    }
}

fn start_identity(
    config: &Arc<Config>,
    wal: &WalHandle,
    store: &Arc<Store>,
    clock: &Arc<dyn Clock>,
    recovered: &mut Recovered,
) -> Result<Arc<DirectoryService>, StartError> {
    let hasher = PasswordHasher::new(
        PasswordParams {
            memory_kib: config.auth.argon2_memory_kib,
            iterations: config.auth.argon2_iterations,
            parallelism: config.auth.argon2_parallelism,
        },
        config.hash_concurrency(),
    )
    .map_err(|e| StartError::Internal(e.to_string()))?;
    Ok(Arc::new(DirectoryService::new(
        std::mem::take(&mut recovered.directory),
        recovered.next_audit_seq,
        DirectoryDeps {
            wal: wal.clone(),
            store: store.clone(),
            clock: clock.clone(),
            config: config.clone(),
            keys: Arc::new(token_keys(config)?),
            hasher,
        },
    )))
}

/// The SKU actors' registry with every recovered SKU, and what the rest of
/// start-up needs of it.
struct Stock {
    registry: Arc<Registry>,
    holds: Arc<HoldBook>,
    watched: Arc<Watched>,
    in_stock: Arc<InStock>,
    products: Vec<Arc<Product>>,
    /// SKUs with open holds: their actors start at once, to expire them.
    open_reservations: Vec<SkuId>,
}

/// The products' version histories, started from the current versions for
/// data written before histories, and given back the entries a torn last
/// commit lost of the products replayed from the WAL (`from_wal`).
fn open_histories(
    config: &Config,
    store: &Arc<Store>,
    stock: &Stock,
    from_wal: &[u128],
) -> Result<persistence::ProductVersions, StartError> {
    let versions = persistence::ProductVersions::open(store, config.retention.product_versions)
        .map_err(StartError::Recovery)?;
    let backfilled = versions
        .backfill(stock.products.iter().map(|p| p.as_ref()))
        .map_err(StartError::Recovery)?;
    if backfilled > 0 {
        tracing::info!(
            products = backfilled,
            "product histories started from current versions"
        );
    }
    let from_wal: std::collections::HashSet<u128> = from_wal.iter().copied().collect();
    let repaired = versions
        .repair(
            stock
                .products
                .iter()
                .filter(|p| from_wal.contains(&p.id))
                .map(|p| p.as_ref()),
        )
        .map_err(StartError::Recovery)?;
    if repaired > 0 {
        tracing::warn!(
            products = repaired,
            "product versions whose history entry a crash lost were filed again"
        );
    }
    Ok(versions)
}

/// Registers every SKU; the ones the WAL changed keep their rebuilt ledger in
/// memory until a fresh snapshot of it is durable. Snapshots are encoded one
/// at a time, so recovery never holds two copies of state.
fn start_stock(
    config: &Config,
    wal: &WalHandle,
    store: &Arc<Store>,
    clock: &Arc<dyn Clock>,
    threads: &Threads,
    recovered: &mut Recovered,
) -> Result<Stock, StartError> {
    let watched = Arc::new(Watched::default());
    let in_stock = Arc::new(InStock::default());
    let holds = HoldBook::new();
    for ledger in recovered.ledgers.values() {
        for buyer in ledger.open_buyers() {
            holds.opened(buyer);
        }
    }
    let deps = {
        let (wal, store, clock) = (wal.clone(), store.clone(), clock.clone());
        let (watched, holds, in_stock) = (watched.clone(), holds.clone(), in_stock.clone());
        let limits = config.ledger_limits();
        let snapshots = config.snapshots.clone();
        let idle_timeout = Duration::from_secs(config.actors.idle_timeout_s);
        move |registry| SkuDeps {
            wal,
            store,
            clock,
            limits,
            snapshot_every_records: snapshots.every_records,
            snapshot_interval: Duration::from_secs(snapshots.interval_s),
            wal_retained_max_bytes: snapshots.wal_max_mb << 20,
            idle_timeout,
            registry,
            watched,
            holds,
            in_stock,
        }
    };
    let registry = Registry::new(
        threads.placement.clone(),
        config.actors.mailbox_capacity as u32,
        deps,
    );
    let mut ledgers = std::mem::take(&mut recovered.ledgers);
    let mut open_reservations = Vec::new();
    let mut products = Vec::with_capacity(recovered.products.len());
    for (_, product) in std::mem::take(&mut recovered.products) {
        let product = Arc::new(product);
        for (index, sku) in product.skus.iter().enumerate() {
            let sku_id = SkuId(sku.id);
            let ledger = ledgers.remove(&sku_id);
            if let Some(ledger) = &ledger {
                in_stock.set(sku_id, ledger.available() > 0);
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
        products.push(product);
    }
    // A variant removed just before a crash: its `Deleted` record was not
    // durable yet. Its marker says so; forget its stock now.
    let retired = persistence::RetiredSkus::open(store).map_err(StartError::Recovery)?;
    for sku in retired.all().map_err(StartError::Recovery)? {
        if ledgers.remove(&sku).is_some() {
            wal.forget(EntityKey::Sku(sku.0), None).map_err(lost)?;
            tracing::info!(sku = sku.0, "stock of a removed variant forgotten");
        }
        wal.send(retired.unmarking(sku)).map_err(lost)?;
    }
    if !ledgers.is_empty() {
        return Err(StartError::Internal(format!(
            "the WAL holds stock of {} SKUs that belong to no product",
            ledgers.len()
        )));
    }
    Ok(Stock {
        registry,
        holds,
        watched,
        in_stock,
        products,
        open_reservations,
    })
}

fn start_hub(config: &Config, stock: &Stock, identity: &Arc<DirectoryService>) -> Arc<Hub> {
    Hub::new(
        HubSettings {
            coalesce_ms: config.ws.coalesce_ms,
            max_connections: config.ws.max_connections,
            event_queue_max: config.ws.event_queue_max,
        },
        config.ws.max_subscriptions_per_connection,
        stock.registry.clone(),
        identity.clone(),
        stock.watched.clone(),
    )
}

// Each argument is a service or handle the drops are given; grouping them
// into a struct for this one call would only rename the list.
#[allow(clippy::too_many_arguments)]
fn start_drops(
    config: &Config,
    wal: &WalHandle,
    store: &Arc<Store>,
    clock: &Arc<dyn Clock>,
    threads: &Threads,
    stock: &Stock,
    hub: &Arc<Hub>,
    recovered: &mut Recovered,
) -> Arc<Drops> {
    Drops::new(
        recovered.drops.take_all().into_values().collect(),
        DropDeps {
            wal: wal.clone(),
            clock: clock.clone(),
            registry: stock.registry.clone(),
            hub: hub.clone(),
            watched: stock.watched.clone(),
            snapshots: persistence::Snapshots::new(store.clone()),
            resident_max: config.drops.resident_max,
            limits: config.drops.limits(),
        },
        threads.events.clone(),
        Duration::from_millis(config.drops.room_tick_ms),
    )
}

/// Import jobs, their runner on a thread of its own (reading a file must
/// not delay the event loop) and the jobs a restart interrupted, resumed.
fn start_imports(
    config: &Config,
    store: &Arc<Store>,
    wal: &WalHandle,
    clock: &Arc<dyn Clock>,
    catalog: &Arc<Catalog>,
    identity: &Arc<DirectoryService>,
    threads: &mut Threads,
) -> Result<Arc<Imports>, StartError> {
    let jobs = persistence::ImportJobs::open(store, &config.storage.data_dir)
        .map_err(StartError::Recovery)?;
    let directory = identity.clone();
    let c = &config.catalog;
    let (imports, queue) = Imports::new(ImportDeps {
        catalog: catalog.clone(),
        quota: Arc::new(move |tenant| directory.max_products(tenant)),
        jobs,
        wal: wal.clone(),
        clock: clock.clone(),
        limits: config.edit_limits(),
        settings: ImportSettings {
            max_bytes: c.import_max_bytes,
            errors_kept: c.import_errors_kept,
            batch_products: c.import_batch_products,
            unfinished_per_store: c.imports_per_store,
        },
    })
    .map_err(|e| StartError::Internal(format!("import jobs: {e}")))?;
    let runner = Arbiter::new();
    runner.spawn(imports.clone().run(queue));
    threads.own.push(runner);
    Ok(imports)
}

/// The sandbox payment provider, and the loop that sends its webhooks.
fn start_payments(
    config: &Config,
    store: &Store,
    threads: &Threads,
) -> Result<SandboxGateway, StartError> {
    let (webhook_tx, webhook_rx) =
        tokio::sync::mpsc::channel(config.payments.sandbox_webhook_queue_max);
    let settings = config.sandbox_settings();
    let book = persistence::Book::open(store, "sandbox_psp")
        .map_err(|e| StartError::Internal(format!("sandbox ledger: {e}")))?;
    let sandbox = SandboxGateway::open(settings.clone(), book, Some(webhook_tx))
        .map_err(|e| StartError::Internal(format!("sandbox ledger: {e}")))?;
    let url = config.payments.webhook_url.clone();
    let secret = config.payments.webhook_secret.as_bytes().to_vec();
    if url.is_empty() {
        tracing::warn!("payments.webhook_url is empty: sandbox webhooks are not delivered");
    } else {
        // The HTTP client is single-threaded: build the loop on the arbiter.
        threads.events.spawn_fn(move || {
            actix_rt::spawn(crate::payments::sandbox::deliver_webhooks(
                webhook_rx, url, secret, settings,
            ));
        });
    }
    Ok(sandbox)
}

/// The notification queue and its delivery loop.
fn start_notifier(
    config: &Config,
    store: &Store,
    clock: &Arc<dyn Clock>,
    outbound: &Arc<Outbound>,
    threads: &Threads,
) -> Result<Arc<Notifier>, StartError> {
    let notifier = Notifier::open(
        store,
        config.notify_settings(),
        outbound.clone(),
        clock.clone(),
    )
    .map_err(|e| StartError::Internal(format!("notification queue: {e}")))?;
    let delivering = notifier.clone();
    threads.events.spawn_fn(move || {
        actix_rt::spawn(delivering.run());
    });
    Ok(notifier)
}

/// The retention sweeps, the hub's and the drops' feed readers, and the
/// drop scheduler, all on the events thread.
fn start_background_tasks(
    config: &Config,
    services: &Services,
    events: &ArbiterHandle,
    hub_feed: FeedReceiver,
    drops_feed: FeedReceiver,
) {
    let sweep_every = Duration::from_secs(config.retention.sweep_interval_s);
    let purge_batch = config.retention.sweep_batch_max;
    let sweeping = Arc::downgrade(&services.carts);
    let marks = services.notifier.clone();
    let keyed = Arc::downgrade(&services.orders);
    let marks_keep_ms = config.retention.notification_keys_s * 1000;
    let imported = Arc::downgrade(&services.imports);
    let jobs_keep_ms = config.retention.import_jobs_s * 1000;
    events.spawn(async move {
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
            while let Some(orders) = keyed.upgrade() {
                match orders.purge_keys(purge_batch) {
                    Ok(n) if n >= purge_batch => tokio::task::yield_now().await,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "order idempotency keys not purged");
                        break;
                    }
                }
            }
            while let Some(imports) = imported.upgrade() {
                match imports.purge_finished(jobs_keep_ms, purge_batch) {
                    Ok(n) if n >= purge_batch => tokio::task::yield_now().await,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "finished import jobs not purged");
                        break;
                    }
                }
            }
        }
    });
    let purging = Arc::downgrade(&services.identity);
    events.spawn(async move {
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
    events.spawn(services.hub.clone().run(hub_feed));
    events.spawn(services.drops.clone().watch_levels(drops_feed));
    events.spawn(services.drops.clone().run_scheduler());
}

/// Snapshots the products recovery found only in the WAL, then waits until
/// every recovery snapshot is durable, so the WAL behind them can go.
async fn checkpoint_products(
    wal: &WalHandle,
    catalog: &Catalog,
    products: &[u128],
) -> Result<(), StartError> {
    for id in products {
        if let Some(product) = catalog.product(*id) {
            let body = SnapshotBody::Product(Box::new((*product).clone()));
            wal.snapshot(EntityKey::Product(*id), &body, None)
                .map_err(lost)?;
        }
    }
    let barrier = wal.barrier().map_err(lost)?;
    barrier
        .await
        .map_err(|_| StartError::Internal("the WAL writer stopped".into()))
}

/// The first platform admin, when `auth.bootstrap_admin_email` names one.
async fn bootstrap_admin(config: &Config, identity: &DirectoryService) -> Result<(), StartError> {
    let auth = &config.auth;
    if auth.bootstrap_admin_email.is_empty() {
        return Ok(());
    }
    let created = identity
        .bootstrap_admin(
            &auth.bootstrap_admin_email,
            auth.bootstrap_admin_password.expose(),
        )
        .await
        .map_err(|e| StartError::Internal(format!("auth.bootstrap_admin_email: {e}")))?;
    if created {
        tracing::info!(email = %auth.bootstrap_admin_email, "created the first platform admin");
    }
    Ok(())
}

/// Resumes what a crash interrupted: SKUs with open holds, drops, pending
/// payments, unfinished order sagas.
async fn resume(
    app: &Arc<Node>,
    registry: &Registry,
    open_reservations: Vec<SkuId>,
    events: &ArbiterHandle,
) {
    for sku in open_reservations {
        registry.ensure_active(sku);
    }
    app.drops().reconcile().await;
    let resume = app.clone();
    events.spawn(async move {
        resume.sandbox().resume_pending();
        resume.orders().start();
    });
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

fn lost(error: persistence::WalError) -> StartError {
    StartError::Internal(error.to_string())
}

pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StartError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StartError::Internal(e.to_string()))
}
