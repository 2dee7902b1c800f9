//! Orders: one `OrderActor` per order runs its checkout saga (reserve, pay,
//! commit, or the compensations), logging the order to the WAL before and
//! after every step; `Orders` is their registry: placement with
//! idempotency, the buyer's and the sellers' indexes, webhook reconciliation
//! and the notifications each move sends.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use actix::prelude::*;
use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::identity::{id_text, ShippingSettings, TaxSettings};
use crate::domain::order::{
    FulfilError, Order, OrderLine, OrderState, PaymentStatus, SagaStep, TransitionError,
};
use crate::domain::pricing::{self, PricingError, SellerCharges};
use crate::domain::{
    BuyerId, CommitOutcome, IdempotencyKey, OrderId, ReservationId, ReserveCmd, SkuCode, SkuId,
    StockError, TenantId, TenantKey, UserId,
};
use crate::payments::{ChargeRequest, GatewayError, PaymentGateway, PaymentView, PspStatus};
use crate::persistence::{
    EntityKey, OrderArchive, OrderIndex, RecordBody, SnapshotBody, StoreError, WalHandle, WalRecord,
};

use super::host::{EntityHost, Hosted};

use crate::services::inventory::{InventoryError, StockPort};
use crate::services::OpenLines;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrdersError {
    #[error("no such order")]
    NotFound,
    #[error("unknown SKUs: {}", .0.join(", "))]
    UnknownSkus(Vec<String>),
    #[error("every line of an order must be priced in one currency")]
    MixedCurrencies,
    #[error("the Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("this order has no part sold by your store")]
    NotYours,
    #[error("too many orders are being placed; retry shortly")]
    Overloaded,
    #[error("the engine cannot serve this request now")]
    Unavailable,
    /// A shipping choice the order cannot take: a method its store does
    /// not list, or a store with no line in the order.
    #[error("shipping for store {store}: {reason}")]
    Shipping { store: TenantId, reason: String },
}

impl From<FulfilError> for OrdersError {
    fn from(error: FulfilError) -> Self {
        match error {
            FulfilError::NotYours => OrdersError::NotYours,
            FulfilError::Transition(t) => OrdersError::Transition(t),
        }
    }
}

/// A line as the buyer asks for it.
#[derive(Debug, Clone)]
pub struct ItemRequest {
    pub sku: SkuCode,
    pub quantity: u32,
    /// Holds the buyer already has for it (a cart's reserve-on-add).
    pub reservations: Vec<u64>,
}

/// An order to place.
#[derive(Debug, Clone)]
pub struct OrderDraft {
    pub buyer: UserId,
    pub items: Vec<ItemRequest>,
    pub shipping_address: String,
    pub payment_method: String,
    /// `(key, fingerprint of the request)`.
    pub idempotency: Option<(String, u64)>,
    /// The shipping method picked per store (a store left out gets its
    /// default, the first it lists).
    pub shipping: Vec<(TenantId, String)>,
}

/// A store's checkout settings, as the saga prices an order with them. An
/// interface, so a saga runs in a test without the identity service.
pub trait StorePricing: Send + Sync {
    /// The store's shipping methods and tax; `None` for an unknown store
    /// (its lines are charged as they are).
    fn pricing(&self, store: TenantId) -> Option<(ShippingSettings, TaxSettings)>;
}

/// No store prices anything: orders cost their lines.
pub struct LinesOnly;

impl StorePricing for LinesOnly {
    fn pricing(&self, _: TenantId) -> Option<(ShippingSettings, TaxSettings)> {
        None
    }
}

/// Who hears of an order's moves: the buyer's live connections, the e-mail
/// and webhooks that announce a state. An interface, so a saga runs in a
/// test without a notifier.
pub trait OrderListener: Send + Sync {
    /// `state`, reached at `at_ms`, is durable. Called again for the same
    /// state after a restart: what it sends must be keyed so a repeat is a
    /// no-op.
    fn reached(&self, order: &Order, state: OrderState, at_ms: u64);
    /// The order changed and the change is durable.
    fn changed(&self, order: &Order);
}

/// What every order actor shares.
pub struct OrderDeps {
    pub wal: WalHandle,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Config>,
    pub gateway: Arc<dyn PaymentGateway>,
    pub stock: Arc<dyn StockPort>,
    pub listener: Arc<dyn OrderListener>,
    /// Unsettled orders, in all and per SKU (the catalog reads them too).
    pub open: Arc<OpenLines>,
    /// Shipping and tax per store (`LinesOnly` until `with_pricing`).
    pub stores: Arc<dyn StorePricing>,
    /// Sagas wait (as a transient failure) until `Orders::start` has
    /// announced again what a crash may have lost.
    started: AtomicBool,
}

impl OrderDeps {
    /// Prices checkouts with each store's shipping methods and tax.
    pub fn with_pricing(mut self, stores: Arc<dyn StorePricing>) -> Self {
        self.stores = stores;
        self
    }

    pub fn new(
        wal: WalHandle,
        clock: Arc<dyn Clock>,
        config: Arc<Config>,
        gateway: Arc<dyn PaymentGateway>,
        stock: Arc<dyn StockPort>,
        listener: Arc<dyn OrderListener>,
        open: Arc<OpenLines>,
    ) -> Self {
        Self {
            wal,
            clock,
            config,
            gateway,
            stock,
            listener,
            open,
            stores: Arc::new(LinesOnly),
            started: AtomicBool::new(false),
        }
    }

    fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }
}

/// An order as the rest of the engine sees it, without asking its actor.
pub struct OrderEntry {
    /// The order as of its last durable change.
    view: RwLock<Order>,
    addr: Mutex<Option<Addr<OrderActor>>>,
    /// Changes sent to the WAL, and the last of them a durable snapshot
    /// covers: the order may leave memory only when the two are equal.
    writes: AtomicU64,
    snapshotted: AtomicU64,
    /// It left memory: an actor must not start on this copy (set under `addr`).
    gone: AtomicBool,
}

impl OrderEntry {
    /// An order as its snapshot has it.
    fn durable(order: Order) -> Self {
        Self {
            view: RwLock::new(order),
            addr: Mutex::new(None),
            writes: AtomicU64::new(0),
            snapshotted: AtomicU64::new(0),
            gone: AtomicBool::new(false),
        }
    }

    pub fn view(&self) -> Order {
        self.view.read().clone()
    }
}

impl Hosted for OrderEntry {
    fn can_leave(&self) -> bool {
        let addr = self.addr.lock();
        addr.as_ref().is_none_or(|a| !a.connected())
            && self.snapshotted.load(Ordering::Acquire) >= self.writes.load(Ordering::Acquire)
            && !needs_actor(&self.view.read())
    }

    fn left(&self) {
        let _addr = self.addr.lock();
        self.gone.store(true, Ordering::Release);
    }
}

/// Bounded set of webhook event ids already handled.
#[derive(Default)]
struct SeenEvents {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

/// Every order, of which only those active or recently used are in memory
/// (the `host`); the rest are read back from their snapshots. The buyer,
/// seller and idempotency indexes live on disk (`archive`).
pub struct Orders {
    deps: Arc<OrderDeps>,
    host: EntityHost<OrderId, OrderEntry>,
    archive: Arc<OrderArchive>,
    seen_events: Mutex<SeenEvents>,
    /// Recovered orders with a state young enough to announce again; `start` takes them.
    to_announce: Mutex<Vec<Order>>,
    /// `(buyer, Idempotency-Key)` of orders being placed (bounded by the
    /// requests in flight).
    placing: DashMap<(UserId, String), ()>,
}

impl Orders {
    /// Files every recovered order in the indexes and keeps in memory those
    /// that still need an actor; `start` resumes them.
    pub fn new(
        recovered: Vec<Order>,
        deps: OrderDeps,
        archive: Arc<OrderArchive>,
        arbiters: Vec<ArbiterHandle>,
    ) -> Result<Arc<Self>, StoreError> {
        let mut recovered = recovered;
        recovered.sort_by_key(|o| (o.created_at_ms, o.id));
        let keep_ms = deps.config.retention.notification_keys_s * 1000;
        let now = deps.clock.now_ms();
        let host = EntityHost::new("order", deps.config.orders.resident_max, arbiters);
        let mut to_announce = Vec::new();
        let mut indexed = 0usize;
        let keys_keep_ms = deps.config.retention.order_keys_s * 1000;
        for order in recovered {
            if archive.ensure_indexed(&order, now, keys_keep_ms)? {
                indexed += 1;
            }
            if !order.settled() {
                deps.open.opened(&order);
            }
            if order
                .history
                .iter()
                .any(|(_, at)| at.saturating_add(keep_ms) > now)
            {
                to_announce.push(order.clone());
            }
            if needs_actor(&order) {
                host.insert_if_absent(order.id, Arc::new(OrderEntry::durable(order)));
            }
        }
        archive.retire_legacy()?;
        if indexed > 0 {
            tracing::info!(orders = indexed, "recovered orders added to the indexes");
        }
        Ok(Arc::new(Self {
            deps: Arc::new(deps),
            host,
            archive,
            seen_events: Mutex::new(SeenEvents::default()),
            to_announce: Mutex::new(to_announce),
            placing: DashMap::new(),
        }))
    }

    /// Announces again what a crash may have lost, then lets the sagas run
    /// and resumes every unfinished one.
    pub fn start(self: &Arc<Self>) {
        let unfinished: Vec<Arc<OrderEntry>> = self
            .host
            .residents()
            .into_iter()
            .map(|(_, entry)| entry)
            .filter(|e| needs_actor(&e.view.read()))
            .collect();
        tracing::info!(orders = unfinished.len(), "resuming unfinished orders");
        // Announcements are queued after a change is durable: a crash in
        // between would lose one. Every state an order reached within
        // `retention.notification_keys_s` is announced again here; messages
        // already queued or sent are skipped, since their marks are that
        // young at least. Older states were announced long ago.
        let keep_ms = self.deps.config.retention.notification_keys_s * 1000;
        let now = self.deps.clock.now_ms();
        for order in std::mem::take(&mut *self.to_announce.lock()) {
            for (state, at) in &order.history {
                if at.saturating_add(keep_ms) > now {
                    self.deps.listener.reached(&order, *state, *at);
                }
            }
        }
        // Only now can a saga run: whatever it announces comes after these.
        self.deps.started.store(true, Ordering::Release);
        for entry in unfinished {
            self.spawn_actor(&entry);
        }
    }

    /// The entry's actor, started if it has none. `None`: the entry left
    /// memory meanwhile (activate it again).
    fn spawn_actor(self: &Arc<Self>, entry: &Arc<OrderEntry>) -> Option<Addr<OrderActor>> {
        let mut slot = entry.addr.lock();
        if entry.gone.load(Ordering::Acquire) {
            return None;
        }
        if let Some(addr) = slot.as_ref().filter(|a| a.connected()) {
            return Some(addr.clone());
        }
        let order = entry.view();
        let actor = OrderActor {
            entry: entry.clone(),
            was_settled: order.settled(),
            resumed: order.pending,
            order,
            deps: self.deps.clone(),
            orders: Arc::downgrade(self),
            waiters: Vec::new(),
            timer: None,
        };
        let addr = match self.host.arbiter() {
            Some(arbiter) => OrderActor::start_in_arbiter(arbiter, move |_| actor),
            None => actor.start(),
        };
        *slot = Some(addr.clone());
        Some(addr)
    }

    /// The order's actor, the order activated from its snapshot if it is
    /// not in memory.
    fn actor(self: &Arc<Self>, id: OrderId) -> Result<Addr<OrderActor>, OrdersError> {
        // An entry leaves only when idle: a second activation finds it home.
        for _ in 0..3 {
            if let Some(addr) = self.spawn_actor(&self.entry(id)?) {
                return Ok(addr);
            }
        }
        Err(OrdersError::Unavailable)
    }

    fn entry(&self, id: OrderId) -> Result<Arc<OrderEntry>, OrdersError> {
        self.host
            .get_or_activate(id, || {
                self.archive
                    .load(id)
                    .map(|order| order.map(OrderEntry::durable))
            })
            .map_err(|error| {
                tracing::error!(order = %id_text(id), %error, "order not read back");
                OrdersError::Unavailable
            })?
            .ok_or(OrdersError::NotFound)
    }

    /// Forgets up to `max` idempotency keys older than
    /// `retention.order_keys_s`; answers how many went.
    pub fn purge_keys(&self, max: usize) -> Result<usize, StoreError> {
        let keep_ms = self.deps.config.retention.order_keys_s * 1000;
        let cutoff = self.deps.clock.now_ms().saturating_sub(keep_ms);
        let purged = self.archive.purge_keys(cutoff, max)?;
        metrics::counter!("flashdrop_order_keys_purged_total").increment(purged as u64);
        Ok(purged)
    }

    /// The order as of its last durable change, from memory or its snapshot.
    pub fn get(&self, id: OrderId) -> Option<Order> {
        if let Some(entry) = self.host.get(id) {
            return Some(entry.view());
        }
        self.archive.load(id).unwrap_or_else(|error| {
            tracing::error!(order = %id_text(id), %error, "order not read back");
            None
        })
    }

    /// Orders in memory.
    pub fn count(&self) -> usize {
        self.host.len()
    }

    /// Unsettled orders.
    pub fn active(&self) -> usize {
        self.deps.open.orders()
    }

    /// A page of a buyer's (or a seller's) orders, newest first, after `before`.
    pub fn page(
        &self,
        buyer: Option<UserId>,
        seller: Option<TenantId>,
        before: Option<OrderId>,
        limit: usize,
    ) -> Vec<Order> {
        let index = match (buyer, seller) {
            (Some(b), _) => OrderIndex::Buyer(b),
            (None, Some(s)) => OrderIndex::Seller(s),
            (None, None) => return Vec::new(),
        };
        // An order that cannot be read back (logged) is passed over.
        let mut orders = Vec::with_capacity(limit.min(1024));
        let mut cursor = before;
        while orders.len() < limit {
            let ids = match self.archive.page(index, cursor, limit - orders.len()) {
                Ok(ids) => ids,
                Err(error) => {
                    tracing::error!(%error, "order index not read");
                    break;
                }
            };
            let Some(last) = ids.last().copied() else {
                break;
            };
            cursor = Some(last);
            orders.extend(ids.into_iter().filter_map(|id| self.get(id)));
        }
        orders
    }

    /// The order a buyer already placed with this key: the same request
    /// answers it again; another request with the key is refused.
    pub fn replay(
        &self,
        buyer: UserId,
        key: &str,
        fingerprint: u64,
    ) -> Option<Result<Order, OrdersError>> {
        let claimed = match self.archive.claimed(buyer, key) {
            Ok(claimed) => claimed,
            Err(_) => return Some(Err(OrdersError::Unavailable)),
        };
        let (id, seen) = claimed?;
        if seen != fingerprint {
            return Some(Err(OrdersError::IdempotencyKeyReused));
        }
        Some(self.get(id).ok_or(OrdersError::Unavailable))
    }

    /// Each seller's charges for `lines`, with the shipping methods the
    /// buyer picked (`domain::pricing::price`).
    fn price(
        &self,
        lines: &[OrderLine],
        chosen: &[(TenantId, String)],
    ) -> Result<Vec<(TenantId, SellerCharges)>, OrdersError> {
        if let Some((store, _)) = chosen
            .iter()
            .find(|(store, _)| !lines.iter().any(|l| l.seller == *store))
        {
            return Err(OrdersError::Shipping {
                store: *store,
                reason: "the order has no line of this store".into(),
            });
        }
        let mut charges: Vec<(TenantId, SellerCharges)> = Vec::new();
        for line in lines {
            if charges.iter().any(|(seller, _)| *seller == line.seller) {
                continue;
            }
            let seller = line.seller;
            let subtotal = lines
                .iter()
                .filter(|l| l.seller == seller)
                .map(OrderLine::total_minor)
                .sum();
            let picked = chosen
                .iter()
                .find(|(store, _)| *store == seller)
                .map(|(_, code)| code.as_str());
            let priced = match self.deps.stores.pricing(seller) {
                Some((shipping, tax)) => pricing::price(subtotal, &shipping, &tax, picked)
                    .map_err(|error| OrdersError::Shipping {
                        store: seller,
                        reason: match error {
                            PricingError::UnknownMethod { chosen, available } => format!(
                                "no method {chosen:?}; the store ships by {}",
                                if available.is_empty() {
                                    "none (shipping is free)".to_owned()
                                } else {
                                    available.join(", ")
                                }
                            ),
                        },
                    })?,
                None => match picked {
                    // A store the directory does not know has no methods.
                    Some(code) => {
                        return Err(OrdersError::Shipping {
                            store: seller,
                            reason: format!(
                                "no method {code:?}; the store ships by none (shipping is free)"
                            ),
                        })
                    }
                    None => SellerCharges::lines_only(subtotal),
                },
            };
            charges.push((seller, priced));
        }
        Ok(charges)
    }

    /// Places an order: checks its lines, logs it, starts its saga. Answers
    /// once the order is durable (the saga runs on); the same key and body
    /// answer the same order again.
    pub async fn place(self: &Arc<Self>, draft: OrderDraft) -> Result<(Order, bool), OrdersError> {
        if let Some((key, fingerprint)) = &draft.idempotency {
            if let Some(replayed) = self.replay(draft.buyer, key, *fingerprint) {
                return replayed.map(|o| (o, true));
            }
        }
        if self.active() >= self.deps.config.orders.active_max {
            return Err(OrdersError::Overloaded);
        }
        if !self.deps.started() {
            return Err(OrdersError::Unavailable);
        }
        let mut lines = Vec::with_capacity(draft.items.len());
        let mut unknown = Vec::new();
        let mut currency: Option<String> = None;
        for item in &draft.items {
            let Ok(info) = self.deps.stock.sku(&item.sku) else {
                unknown.push(item.sku.as_str().to_owned());
                continue;
            };
            let price = info.price();
            if currency.get_or_insert_with(|| price.currency.clone()) != &price.currency {
                return Err(OrdersError::MixedCurrencies);
            }
            let seller = TenantId::parse(info.tenant()).unwrap_or(TenantId(0));
            lines.push(OrderLine {
                sku: info.id.0,
                code: info.code().to_owned(),
                seller,
                quantity: item.quantity,
                unit_price_minor: price.amount,
                adopted: !item.reservations.is_empty(),
                reservations: item.reservations.clone(),
            });
        }
        if !unknown.is_empty() {
            return Err(OrdersError::UnknownSkus(unknown));
        }
        let charges = self.price(&lines, &draft.shipping)?;
        let now = self.deps.clock.now_ms();
        let cfg = &self.deps.config.orders;
        let id = OrderId(uuid::Uuid::now_v7().as_u128());
        let order = Order::new(crate::domain::order::NewOrder {
            id,
            buyer: draft.buyer,
            currency: currency.unwrap_or_default(),
            lines,
            shipping_address: draft.shipping_address,
            payment_method: draft.payment_method,
            now_ms: now,
            payment_deadline_ms: now + cfg.payment_deadline_s * 1000,
            idempotency: draft.idempotency.clone(),
            charges,
        });
        // The creation record also starts the first step.
        let mut order = order;
        order.begin(SagaStep::Reserve, now);
        // Two concurrent requests with one key: the first to claim it places
        // the order; the other is told to retry, and its retry is answered
        // from the disk index once the first is durable.
        let claim = draft
            .idempotency
            .as_ref()
            .map(|(key, _)| (draft.buyer, key.clone()));
        if let Some(claim) = &claim {
            use dashmap::mapref::entry::Entry;
            match self.placing.entry(claim.clone()) {
                Entry::Occupied(_) => return Err(OrdersError::Unavailable),
                Entry::Vacant(slot) => {
                    slot.insert(());
                }
            }
            if let Some((key, fingerprint)) = &draft.idempotency {
                if let Some(replayed) = self.replay(draft.buyer, key, *fingerprint) {
                    self.placing.remove(claim);
                    return replayed.map(|o| (o, true));
                }
            }
        }
        let entry = Arc::new(OrderEntry::durable(order.clone()));
        let logged = persist(&entry, &self.deps.wal, &order).await;
        if logged.is_ok() {
            // Filed only once durable: an index never names a lost order. A
            // crash before this line is mended by start-up (`ensure_indexed`).
            if let Err(error) = self
                .archive
                .index(&order)
                .and_then(|()| match &order.idempotency {
                    Some((key, fingerprint)) => self
                        .archive
                        .claim_key(order.buyer, key, id, *fingerprint, order.created_at_ms)
                        .map(|_| ()),
                    None => Ok(()),
                })
            {
                tracing::error!(order = %id_text(id), %error, "order not indexed until restart");
            }
        }
        if let Some(claim) = &claim {
            self.placing.remove(claim);
        }
        if logged.is_err() {
            return Err(OrdersError::Unavailable);
        }
        self.deps.open.opened(&order);
        metrics::counter!("flashdrop_orders_placed_total").increment(1);
        let entry = self.host.insert_if_absent(id, entry);
        if let Some(addr) = self.spawn_actor(&entry) {
            addr.do_send(OrderMsg::Drive);
        }
        Ok((order, false))
    }

    /// Sends `command` to the order's actor. An actor that was stopping
    /// (idle, or making room under the resident cap) drops what reached its
    /// mailbox unread: the command is sent again to a new actor, which
    /// checks it against the order's durable state.
    async fn ask(self: &Arc<Self>, id: OrderId, command: Command) -> Result<Order, OrdersError> {
        for _ in 0..ASK_ATTEMPTS_MAX {
            let addr = self.actor(id)?;
            let (tx, rx) = oneshot::channel();
            match addr.try_send(OrderMsg::Command(command.clone(), tx)) {
                Ok(()) => {}
                Err(actix::dev::SendError::Closed(_)) => continue,
                Err(actix::dev::SendError::Full(_)) => return Err(OrdersError::Unavailable),
            }
            if let Ok(answer) = rx.await {
                return answer;
            }
        }
        Err(OrdersError::Unavailable)
    }

    /// Waits (up to `wait`) until the saga has nothing to do, then the order.
    pub async fn settle(
        self: &Arc<Self>,
        id: OrderId,
        wait: Duration,
    ) -> Result<Order, OrdersError> {
        let Some(entry) = self.host.get(id) else {
            return self.get(id).ok_or(OrdersError::NotFound);
        };
        let addr = entry.addr.lock().clone().filter(|a| a.connected());
        let Some(addr) = addr else {
            return Ok(entry.view());
        };
        let (tx, rx) = oneshot::channel();
        if addr.try_send(OrderMsg::Wait(tx)).is_ok() {
            let _ = tokio::time::timeout(wait, rx).await;
        }
        Ok(entry.view())
    }

    pub async fn cancel(
        self: &Arc<Self>,
        id: OrderId,
        buyer: UserId,
    ) -> Result<Order, OrdersError> {
        self.owned_by(id, buyer)?;
        self.ask(id, Command::Cancel).await
    }

    pub async fn pay(
        self: &Arc<Self>,
        id: OrderId,
        buyer: UserId,
        method: String,
    ) -> Result<Order, OrdersError> {
        self.owned_by(id, buyer)?;
        self.ask(id, Command::Pay(method)).await
    }

    pub async fn request_return(
        self: &Arc<Self>,
        id: OrderId,
        buyer: UserId,
        reason: String,
    ) -> Result<Order, OrdersError> {
        self.owned_by(id, buyer)?;
        self.ask(id, Command::Return(reason)).await
    }

    pub async fn fulfil(
        self: &Arc<Self>,
        id: OrderId,
        seller: TenantId,
        to: OrderState,
        tracking: Option<String>,
        restock: bool,
    ) -> Result<Order, OrdersError> {
        let order = self.get(id).ok_or(OrdersError::NotFound)?;
        if !order.sellers().any(|s| s == seller) {
            return Err(OrdersError::NotFound);
        }
        self.ask(
            id,
            Command::Fulfil {
                seller,
                to,
                tracking,
                restock,
            },
        )
        .await
    }

    fn owned_by(&self, id: OrderId, buyer: UserId) -> Result<(), OrdersError> {
        match self.get(id) {
            Some(order) if order.buyer == buyer => Ok(()),
            _ => Err(OrdersError::NotFound),
        }
    }

    /// A verified payment webhook: drops repeats by event id, then has the
    /// order ask the provider what its payment now is. Answers whether the
    /// event was new.
    pub fn payment_event(self: &Arc<Self>, event_id: &str, reference: &str) -> bool {
        {
            let mut seen = self.seen_events.lock();
            if !seen.ids.insert(event_id.to_owned()) {
                metrics::counter!("flashdrop_payment_webhooks_total", "outcome" => "duplicate")
                    .increment(1);
                return false;
            }
            seen.order.push_back(event_id.to_owned());
            while seen.order.len() > self.deps.config.orders.webhook_dedupe_max {
                if let Some(old) = seen.order.pop_front() {
                    seen.ids.remove(&old);
                }
            }
        }
        let addr = OrderId::parse(reference).map(|id| self.actor(id));
        let outcome = match addr {
            Some(Ok(addr)) => {
                addr.do_send(OrderMsg::Reconcile);
                "accepted"
            }
            Some(Err(OrdersError::Unavailable)) => "unavailable",
            _ => "unknown_order",
        };
        metrics::counter!("flashdrop_payment_webhooks_total", "outcome" => outcome).increment(1);
        true
    }
}

/// The order still has saga work, or may be moved (so it keeps an actor).
fn needs_actor(order: &Order) -> bool {
    !order.settled()
        || matches!(
            order.state,
            OrderState::ReturnRequested | OrderState::Delivered
        )
}

/// Logs the order's full state and waits until it is durable. A snapshot
/// follows once the saga has nothing running (each record is a full state,
/// so the records of a running saga need none; the WAL behind them goes
/// once the settled state is snapshotted).
async fn persist(entry: &Arc<OrderEntry>, wal: &WalHandle, order: &Order) -> Result<(), ()> {
    let write = entry.writes.fetch_add(1, Ordering::AcqRel) + 1;
    let (tx, rx) = oneshot::channel();
    let record = WalRecord {
        entity: EntityKey::Order(order.id),
        body: RecordBody::Order(Box::new(order.clone())),
    };
    let ack: crate::persistence::Ack = Box::new(move || {
        let _ = tx.send(());
    });
    wal.append(&record, Some(ack)).map_err(|_| ())?;
    if order.pending.is_none() {
        let snapshot = SnapshotBody::Order(Box::new(order.clone()));
        let covered = Arc::downgrade(entry);
        let ack: crate::persistence::Ack = Box::new(move || {
            if let Some(entry) = covered.upgrade() {
                entry.snapshotted.fetch_max(write, Ordering::AcqRel);
            }
        });
        if let Err(error) = wal.snapshot(EntityKey::Order(order.id), &snapshot, Some(ack)) {
            tracing::warn!(order = %id_text(order.id), %error, "order snapshot not written");
        }
    }
    rx.await.map_err(|_| ())
}

/// Attempts at a command whose actor stopped before reading it.
const ASK_ATTEMPTS_MAX: usize = 3;

#[derive(Clone)]
enum Command {
    Cancel,
    Pay(String),
    Return(String),
    Fulfil {
        seller: TenantId,
        to: OrderState,
        tracking: Option<String>,
        restock: bool,
    },
}

enum OrderMsg {
    /// Run the saga's next step, if any.
    Drive,
    /// Ask the provider what the payment is now (a webhook or a poll).
    Reconcile,
    Command(Command, oneshot::Sender<Result<Order, OrdersError>>),
    /// Answer once the saga has nothing to do.
    Wait(oneshot::Sender<()>),
}

impl Message for OrderMsg {
    type Result = ();
}

pub struct OrderActor {
    entry: Arc<OrderEntry>,
    order: Order,
    was_settled: bool,
    deps: Arc<OrderDeps>,
    orders: Weak<Orders>,
    waiters: Vec<oneshot::Sender<()>>,
    timer: Option<SpawnHandle>,
    /// The step pending when this actor started (begun by an earlier process).
    resumed: Option<SagaStep>,
}

impl Actor for OrderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        ctx.notify(OrderMsg::Drive);
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        // The order may leave memory now that no actor runs for it. Only
        // this actor's own address is cleared: one started since (after
        // this one stopped taking messages) must stay the order's only actor.
        {
            let me = ctx.address();
            let mut slot = self.entry.addr.lock();
            if slot.as_ref() == Some(&me) {
                *slot = None;
            }
        }
        if let Some(orders) = self.orders.upgrade() {
            orders.host.trim();
        }
    }
}

impl Handler<OrderMsg> for OrderActor {
    type Result = ();

    fn handle(&mut self, msg: OrderMsg, ctx: &mut Context<Self>) {
        match msg {
            OrderMsg::Drive => self.drive(ctx),
            OrderMsg::Wait(tx) => {
                if self.idle() {
                    let _ = tx.send(());
                } else {
                    self.waiters.push(tx);
                }
            }
            OrderMsg::Reconcile => self.reconcile(ctx),
            OrderMsg::Command(command, reply) => self.command(command, reply, ctx),
        }
    }
}

/// What a step did to the order.
type StepResult = Result<Order, ()>;

impl OrderActor {
    fn now(&self) -> u64 {
        self.deps.clock.now_ms()
    }

    /// Nothing to do now and nothing half done (a step backing off after a
    /// transient failure is still under way).
    fn idle(&self) -> bool {
        self.order.pending.is_none() && self.order.next_step(self.now()).is_none()
    }

    /// Runs `work` on a copy of the order with the mailbox paused, then makes
    /// its (durable) result the order's state and drives on.
    fn run(
        &mut self,
        ctx: &mut Context<Self>,
        work: impl std::future::Future<Output = StepResult> + 'static,
    ) {
        ctx.wait(work.into_actor(self).map(|result, act, ctx| match result {
            Ok(order) => {
                act.adopt(order);
                ctx.notify(OrderMsg::Drive);
            }
            Err(()) => {
                tracing::error!(order = %id_text(act.order.id), "order change not logged; stopping its actor");
                ctx.stop();
            }
        }));
    }

    /// A durable new state: shown to readers, announced, counted.
    fn adopt(&mut self, order: Order) {
        let before = self.order.state;
        self.order = order;
        *self.entry.view.write() = self.order.clone();
        if self.order.state != before {
            metrics::counter!("flashdrop_order_moves_total", "to" => self.order.state.as_str())
                .increment(1);
            self.notify_buyer();
            self.notify_out(before);
        }
        let settled = self.order.settled();
        if settled != self.was_settled {
            if settled {
                self.deps.open.settled(&self.order);
            } else {
                self.deps.open.opened(&self.order);
            }
            self.was_settled = settled;
        }
    }

    fn notify_out(&self, before: OrderState) {
        if let Some((state, at)) = self.order.history.last() {
            if *state != OrderState::PaymentPending || before < OrderState::PaymentPending {
                self.deps.listener.reached(&self.order, *state, *at);
            }
        }
    }

    fn notify_buyer(&self) {
        self.deps.listener.changed(&self.order);
    }

    fn drive(&mut self, ctx: &mut Context<Self>) {
        let now = self.now();
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        let Some(step) = self.order.next_step(now) else {
            if self.order.pending.is_none() {
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.send(());
                }
            }
            self.schedule_wake(ctx, now);
            return;
        };
        let mut order = self.order.clone();
        let logged_before = order.pending == Some(step);
        // A step this actor found pending when it started was begun by an
        // earlier process: only the restock step cares (it is not repeated).
        let resumed = self.resumed.take() == Some(step);
        order.begin(step, now);
        let deps = self.deps.clone();
        let entry = self.entry.clone();
        self.run(ctx, async move {
            if !logged_before {
                persist(&entry, &deps.wal, &order).await?;
            }
            let mut order = run_step(&deps, order, step, resumed).await;
            // One record says both "this step completed" and "the next one
            // starts": half the durable writes, and the log still shows every
            // step as started before it runs.
            let now = deps.clock.now_ms();
            if let Some(next) = order.next_step(now) {
                order.begin(next, now);
            }
            persist(&entry, &deps.wal, &order).await?;
            Ok(order)
        });
    }

    /// Nothing to do now: wake at the next deadline, retry or poll.
    fn schedule_wake(&mut self, ctx: &mut Context<Self>, now: u64) {
        let o = &self.order;
        let cfg = &self.deps.config;
        let mut at: Option<u64> = None;
        let mut soonest = |t: u64| at = Some(at.map_or(t, |a| a.min(t)));
        if o.retry_at_ms > now {
            soonest(o.retry_at_ms);
        }
        let mut poll = false;
        if matches!(o.state, OrderState::Reserved | OrderState::PaymentPending) {
            soonest(o.payment_deadline_ms);
            if o.payment.status == PaymentStatus::Pending {
                soonest(now + cfg.payments.poll_interval_ms);
                poll = true;
            }
        }
        if o.state == OrderState::Delivered {
            let window = cfg.orders.return_window_s * 1000;
            if let Some(at) = o
                .sub_orders
                .iter()
                .filter_map(|s| {
                    s.history
                        .last()
                        .filter(|(st, _)| *st == OrderState::Delivered)
                })
                .map(|(_, t)| t + window + 1)
                .min()
            {
                soonest(at);
            }
        }
        if !needs_actor(o) {
            // A settled order needs no actor: it is started again on demand
            // (a command, a late webhook). While the host is over its cap it
            // stops at once, so the order may leave memory; otherwise after
            // `orders.actor_idle_s` without messages.
            if self
                .orders
                .upgrade()
                .is_some_and(|orders| orders.host.over_cap())
            {
                ctx.stop();
                return;
            }
            let idle = Duration::from_secs(self.deps.config.orders.actor_idle_s);
            self.timer = Some(ctx.run_later(idle, |act, ctx| {
                if !needs_actor(&act.order) {
                    ctx.stop();
                }
            }));
            return;
        }
        if let Some(at) = at {
            let delay = Duration::from_millis(at.saturating_sub(now).max(1));
            self.timer = Some(ctx.run_later(delay, move |act, ctx| {
                act.timer = None;
                let now = act.now();
                let window = act.deps.config.orders.return_window_s * 1000;
                if act.order.state == OrderState::Delivered {
                    let mut order = act.order.clone();
                    if order.close_expired_returns(window, now) {
                        let wal = act.deps.wal.clone();
                        let entry = act.entry.clone();
                        act.run(ctx, async move {
                            persist(&entry, &wal, &order).await?;
                            Ok(order)
                        });
                        return;
                    }
                }
                // A step backing off is repeated first; the provider is
                // asked once no step is under way.
                if poll && act.order.pending.is_none() {
                    act.reconcile(ctx);
                } else {
                    ctx.notify(OrderMsg::Drive);
                }
            }));
        }
    }

    /// Asks the provider about the payment and takes what it says: this is
    /// how webhooks (late, repeated, out of order) and polls are reconciled.
    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let Some(payment_id) = self.order.payment.payment_id.clone() else {
            ctx.notify(OrderMsg::Drive);
            return;
        };
        if self.order.pending.is_some() {
            // A step is under way (or backing off): it decides first.
            ctx.notify(OrderMsg::Drive);
            return;
        }
        let deps = self.deps.clone();
        let order = self.order.clone();
        let entry = self.entry.clone();
        self.run(ctx, async move {
            let Ok(view) = deps.gateway.status(payment_id).await else {
                return Ok(order);
            };
            let seen = take_status(&deps, order.clone(), &view).await;
            if seen != order {
                persist(&entry, &deps.wal, &seen).await?;
            }
            Ok(seen)
        });
    }

    fn command(
        &mut self,
        command: Command,
        reply: oneshot::Sender<Result<Order, OrdersError>>,
        ctx: &mut Context<Self>,
    ) {
        let now = self.now();
        let mut order = self.order.clone();
        let cfg = &self.deps.config.orders;
        let outcome: Result<(), OrdersError> = match command {
            Command::Cancel => order.request_cancel().map_err(Into::into),
            Command::Pay(method) => order.retry_payment(method, now).map_err(Into::into),
            Command::Return(reason) => order
                .request_return(reason, cfg.return_window_s * 1000, now)
                .map(|_| ())
                .map_err(Into::into),
            Command::Fulfil {
                seller,
                to,
                tracking,
                restock,
            } => order
                .fulfil(seller, to, tracking, restock, now)
                .map_err(Into::into),
        };
        if let Err(error) = outcome {
            let _ = reply.send(Err(error));
            return;
        }
        let wal = self.deps.wal.clone();
        let wait = Duration::from_millis(cfg.reply_wait_ms);
        let entry = self.entry.clone();
        ctx.wait(
            async move { persist(&entry, &wal, &order).await.map(|_| order) }
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(order) => {
                        act.adopt(order);
                        // Answer once the saga has done what the command started.
                        let (tx, rx) = oneshot::channel();
                        act.waiters.push(tx);
                        ctx.notify(OrderMsg::Drive);
                        let entry = act.entry.clone();
                        actix::spawn(async move {
                            let _ = tokio::time::timeout(wait, rx).await;
                            let _ = reply.send(Ok(entry.view()));
                        });
                    }
                    Err(()) => {
                        let _ = reply.send(Err(OrdersError::Unavailable));
                        ctx.stop();
                    }
                }),
        );
    }
}

fn psp_status(status: PspStatus) -> PaymentStatus {
    match status {
        PspStatus::Pending => PaymentStatus::Pending,
        PspStatus::Authorized => PaymentStatus::Authorized,
        PspStatus::Declined => PaymentStatus::Declined,
        PspStatus::Captured => PaymentStatus::Captured,
        PspStatus::Voided => PaymentStatus::Voided,
        PspStatus::Refunded => PaymentStatus::Refunded,
    }
}

/// Takes what the provider says about the payment. A payment that turns up
/// authorised (or captured) after its order was cancelled is given back.
async fn take_status(deps: &OrderDeps, mut order: Order, view: &PaymentView) -> Order {
    let now = deps.clock.now_ms();
    let status = psp_status(view.status);
    if order.state == OrderState::Cancelled {
        let key = |op: &str| order.payment.key(order.id, op);
        let undo = match view.status {
            PspStatus::Authorized | PspStatus::Pending => {
                deps.gateway.void(view.id.clone(), key("late-void")).await
            }
            PspStatus::Captured => {
                deps.gateway
                    .refund(
                        view.id.clone(),
                        view.captured_minor - view.refunded_minor,
                        key("late-refund"),
                    )
                    .await
            }
            _ => return order,
        };
        if let Ok(after) = undo {
            metrics::counter!("flashdrop_order_late_payments_undone_total").increment(1);
            order.payment.status = psp_status(after.status);
        }
        return order;
    }
    let waiting = matches!(
        order.payment.status,
        PaymentStatus::Pending | PaymentStatus::Unknown | PaymentStatus::None
    );
    if waiting && status != order.payment.status && !order.state.is_paid() {
        order.payment_seen(
            status,
            Some(view.id.clone()),
            view.decline_code.clone(),
            now,
        );
    }
    order
}

fn backoff(deps: &OrderDeps, order: &Order) -> u64 {
    deps.config.orders.retry_backoff_ms << order.payment.failures.min(5)
}

fn transient(deps: &OrderDeps, mut order: Order, why: &str) -> Order {
    let now = deps.clock.now_ms();
    let wait = backoff(deps, &order);
    order.step_failed_transiently(now, wait, why);
    order
}

/// The code an order's `rejection` names for a permanent refusal: one of the
/// API's error codes, never an error's prose (which may change wording).
fn error_code(error: &InventoryError) -> &'static str {
    match error {
        InventoryError::Stock(StockError::OutOfStock { .. }) => "out_of_stock",
        InventoryError::Stock(StockError::DropNotLive { .. }) => "drop_not_live",
        InventoryError::Stock(StockError::PurchaseLimitExceeded { .. }) => {
            "purchase_limit_exceeded"
        }
        InventoryError::Stock(StockError::TooManyReservations { .. }) => "too_many_reservations",
        InventoryError::Stock(StockError::HoldLimitExceeded { .. }) => "hold_limit_exceeded",
        InventoryError::Stock(StockError::IdempotencyKeyReused) => "idempotency_key_reused",
        InventoryError::Stock(StockError::TooManyUnits { .. })
        | InventoryError::Stock(StockError::TooManyWarehouses { .. }) => "limit_exceeded",
        InventoryError::TooManyHolds(_) => "too_many_holds",
        InventoryError::QueuePassRequired(_) => "queue_pass_required",
        InventoryError::TenantSuspended => "tenant_suspended",
        InventoryError::NotOnSale(_) => "product_not_on_sale",
        InventoryError::UnknownSku => "sku_not_found",
        _ => "reservation_refused",
    }
}

/// Runs one saga step on `order` (already marked as started) and returns the
/// order with its outcome applied. Every call repeats safely: holds carry
/// idempotency keys, the provider's calls carry keys from the order.
async fn run_step(deps: &OrderDeps, order: Order, step: SagaStep, resumed: bool) -> Order {
    if !deps.started() {
        return transient(deps, order, "engine starting");
    }
    let stock = &deps.stock;
    let buyer = BuyerId::of_account(order.buyer);
    match step {
        SagaStep::Reserve => reserve(deps, order, buyer).await,
        SagaStep::Authorize => {
            let payment = &order.payment;
            let request = ChargeRequest {
                key: payment.key(order.id, "authorize"),
                reference: id_text(order.id),
                amount_minor: order.total_minor(),
                currency: order.currency.clone(),
                method: payment.method.clone(),
            };
            match deps.gateway.authorize(request).await {
                Ok(view) => {
                    let mut order = order;
                    let now = deps.clock.now_ms();
                    order.payment_seen(
                        psp_status(view.status),
                        Some(view.id),
                        view.decline_code,
                        now,
                    );
                    order
                }
                Err(GatewayError::Unavailable(why)) => {
                    let mut order = transient(deps, order, &why);
                    order.payment.status = PaymentStatus::Unknown;
                    order
                }
                Err(other) => {
                    let mut order = order;
                    let now = deps.clock.now_ms();
                    order.payment_seen(
                        PaymentStatus::Declined,
                        None,
                        Some(format!("refused: {other}")),
                        now,
                    );
                    order
                }
            }
        }
        SagaStep::Capture => {
            let Some(id) = order.payment.payment_id.clone() else {
                return transient(deps, order, "no payment id to capture");
            };
            let key = order.payment.key(order.id, "capture");
            match deps.gateway.capture(id, key).await {
                Ok(view) if view.status == PspStatus::Captured => {
                    let mut order = order;
                    order.captured(deps.clock.now_ms());
                    order
                }
                Err(GatewayError::Unavailable(why)) => transient(deps, order, &why),
                Ok(view) => finish_with_status(deps, order, step, &view),
                Err(other) => {
                    let mut order = order;
                    let now = deps.clock.now_ms();
                    order.payment.status = PaymentStatus::Declined;
                    order.payment.decline_code = Some(format!("capture refused: {other}"));
                    order.finish(step, now, "capture refused");
                    order
                }
            }
        }
        SagaStep::Commit => {
            let mut lost = None;
            'lines: for line in &order.lines {
                if line.reservations.is_empty() {
                    lost = Some(format!("{}: no hold", line.code));
                    break;
                }
                for seq in &line.reservations {
                    let id = ReservationId {
                        sku: SkuId(line.sku),
                        seq: *seq,
                    };
                    match stock.commit(id, buyer.clone()).await {
                        Ok(CommitOutcome::Committed(_) | CommitOutcome::AlreadyCommitted(_)) => {}
                        Err(e) if e.is_transient() => {
                            return transient(deps, order, &e.to_string())
                        }
                        Err(e) => {
                            lost = Some(format!("{}: {e}", line.code));
                            break 'lines;
                        }
                    }
                }
            }
            let mut order = order;
            let now = deps.clock.now_ms();
            match lost {
                None => order.committed(now),
                Some(why) => order.commit_failed(why, now),
            }
            order
        }
        SagaStep::Void => {
            let key = order.payment.key(order.id, "void");
            let payment_id = match order.payment.payment_id.clone() {
                Some(id) => Some(id),
                None => match deps
                    .gateway
                    .find(order.payment.key(order.id, "authorize"))
                    .await
                {
                    Ok(found) => found.map(|p| p.id),
                    Err(GatewayError::Unavailable(why)) => return transient(deps, order, &why),
                    Err(_) => None,
                },
            };
            let mut order = order;
            let now = deps.clock.now_ms();
            let Some(payment_id) = payment_id else {
                // The provider never saw the attempt: nothing to void.
                order.voided(now);
                return order;
            };
            match deps.gateway.void(payment_id, key).await {
                Ok(view)
                    if view.status == PspStatus::Voided || view.status == PspStatus::Declined =>
                {
                    order.voided(now);
                    order
                }
                Err(GatewayError::Unavailable(why)) => transient(deps, order, &why),
                Ok(view) => finish_with_status(deps, order, step, &view),
                Err(_) => match deps
                    .gateway
                    .status(order.payment.payment_id.clone().unwrap_or_default())
                    .await
                {
                    Ok(view) => finish_with_status(deps, order, step, &view),
                    Err(_) => transient(deps, order, "void refused; status unknown"),
                },
            }
        }
        SagaStep::Release => {
            let holds = order
                .lines
                .iter()
                .flat_map(|l| l.reservations.iter().map(move |seq| (l.sku, *seq)));
            for (sku, seq) in holds {
                let id = ReservationId {
                    sku: SkuId(sku),
                    seq,
                };
                match stock.release(id, buyer.clone()).await {
                    Ok(_) => {}
                    Err(e) if e.is_transient() => return transient(deps, order, &e.to_string()),
                    // Expired, or already gone: nothing is held.
                    Err(e) => {
                        tracing::debug!(order = %id_text(order.id), error = %e, "hold already gone");
                    }
                }
            }
            let mut order = order;
            order.released(deps.clock.now_ms());
            order
        }
        SagaStep::RefundAll => {
            let Some(id) = order.payment.payment_id.clone() else {
                let mut order = order;
                order.refunded_all(deps.clock.now_ms());
                return order;
            };
            let key = order.payment.key(order.id, "refund-all");
            let amount = order.payment.captured_minor;
            match deps.gateway.refund(id, amount, key).await {
                Ok(_) => {
                    let mut order = order;
                    order.refunded_all(deps.clock.now_ms());
                    order
                }
                Err(GatewayError::Unavailable(why)) => transient(deps, order, &why),
                Err(other) => transient(deps, order, &other.to_string()),
            }
        }
        SagaStep::Refund { seller } => refund_seller(deps, order, seller).await,
        SagaStep::Restock { seller } => restock(deps, order, seller, resumed).await,
    }
}

/// The provider answered with a state the step did not expect: take it, and
/// let the saga decide again from there.
fn finish_with_status(
    deps: &OrderDeps,
    mut order: Order,
    step: SagaStep,
    view: &PaymentView,
) -> Order {
    let now = deps.clock.now_ms();
    order.payment.status = psp_status(view.status);
    if view.status == PspStatus::Captured {
        order.payment.captured_minor = view.captured_minor;
    }
    order.finish(
        step,
        now,
        crate::domain::order::status_text(order.payment.status),
    );
    order
}

async fn reserve(deps: &OrderDeps, order: Order, buyer: BuyerId) -> Order {
    let ttl_ms = deps.config.orders.hold_ttl_s * 1000;
    let attempts = order.lines.iter().enumerate().map(|(i, line)| {
        let stock = deps.stock.clone();
        let buyer = buyer.clone();
        let key = format!("order-{:032x}-{i}", order.id.0);
        let (sku, quantity, held) = (
            SkuId(line.sku),
            line.quantity,
            !line.reservations.is_empty(),
        );
        async move {
            if held {
                return Ok(None);
            }
            let info = stock.sku_info(sku).ok_or(InventoryError::UnknownSku)?;
            let key = IdempotencyKey::parse(&key).map_err(|_| InventoryError::Unavailable)?;
            let cmd = ReserveCmd {
                buyer,
                quantity,
                ttl_ms,
                idempotency: Some((key, u64::from(quantity))),
                shopper_units_max: None,
            };
            stock
                .reserve(info, cmd)
                .await
                .map(|outcome| Some(outcome.receipt.seq))
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    let holds: Vec<Option<u64>> = results
        .iter()
        .map(|r| r.as_ref().ok().copied().flatten())
        .collect();
    let now = deps.clock.now_ms();
    let permanent = order
        .lines
        .iter()
        .zip(&results)
        .find_map(|(line, r)| match r {
            Err(e) if !e.is_transient() => Some(format!("{}: {}", error_code(e), line.code)),
            _ => None,
        });
    let mut order = order;
    if let Some(why) = permanent {
        order.reserve_failed(&holds, why, now);
        return order;
    }
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        // Keep what is held (a repeat finds the same holds by key) and retry.
        let why = e.to_string();
        order.take_holds(&holds);
        return transient(deps, order, &why);
    }
    order.reserved(&holds, now);
    order
}

/// Puts a refunded part's units back in stock, at most once: after a restart
/// during this step it is skipped (and counted), since repeating it could
/// count units twice, which is how oversells start.
async fn restock(deps: &OrderDeps, order: Order, seller: TenantId, resumed: bool) -> Order {
    let mut order = order;
    if resumed {
        tracing::warn!(order = %id_text(order.id), store = %id_text(seller), "restock interrupted by a restart; not repeated, count the returned units by hand");
        metrics::counter!("flashdrop_order_restocks_skipped_total").increment(1);
        order.restocked(seller, true, deps.clock.now_ms());
        return order;
    }
    if let Ok(tenant) = TenantKey::parse(&id_text(seller)) {
        for line in order.lines.iter().filter(|l| l.seller == seller) {
            let Ok(code) = SkuCode::parse(&line.code) else {
                continue;
            };
            let reason = format!("return of order {}", id_text(order.id));
            if let Err(error) = deps
                .stock
                .restock(code, tenant.clone(), line.quantity, reason)
                .await
            {
                tracing::warn!(order = %id_text(order.id), %error, "restock after a return failed");
            }
        }
    }
    order.restocked(seller, false, deps.clock.now_ms());
    order
}

/// Refunds a seller's part through the provider (the restock, if asked
/// for, is a step of its own).
async fn refund_seller(deps: &OrderDeps, order: Order, seller: TenantId) -> Order {
    let amount = order.seller_total_minor(seller);
    let Some(payment_id) = order.payment.payment_id.clone() else {
        return transient(deps, order, "no payment to refund");
    };
    let key = order
        .payment
        .key(order.id, &format!("refund-{:032x}", seller.0));
    match deps.gateway.refund(payment_id, amount, key).await {
        Ok(_) => {}
        Err(GatewayError::Unavailable(why)) => return transient(deps, order, &why),
        Err(other) => return transient(deps, order, &other.to_string()),
    }
    let mut order = order;
    order.refunded(seller, deps.clock.now_ms());
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::holds::TooManyHolds;
    use crate::domain::stock::NotLive;
    use crate::domain::DropId;
    use crate::http::error::ApiError;

    #[test]
    fn a_rejections_code_is_the_code_the_api_answers_for_the_same_refusal() {
        let refusals = [
            InventoryError::Stock(StockError::OutOfStock {
                requested: 2,
                available: 1,
            }),
            InventoryError::Stock(StockError::DropNotLive {
                drop: DropId(1),
                why: NotLive::Cancelled,
            }),
            InventoryError::Stock(StockError::PurchaseLimitExceeded { limit: 1, used: 1 }),
            InventoryError::Stock(StockError::TooManyReservations { max: 1 }),
            InventoryError::Stock(StockError::HoldLimitExceeded { limit: 1, held: 1 }),
            InventoryError::Stock(StockError::IdempotencyKeyReused),
            InventoryError::Stock(StockError::TooManyUnits { max: 1 }),
            InventoryError::Stock(StockError::TooManyWarehouses { max: 1 }),
            InventoryError::TooManyHolds(TooManyHolds { max: 1, open: 1 }),
            InventoryError::QueuePassRequired(DropId(1)),
            InventoryError::TenantSuspended,
            InventoryError::UnknownSku,
        ];
        for refusal in refusals {
            let code = error_code(&refusal);
            let api = ApiError::from(refusal).kind.code();
            assert_eq!(code, api);
        }
        assert_eq!(
            error_code(&InventoryError::Stock(StockError::UnknownReservation)),
            "reservation_refused",
            "anything else is named generically, never by its prose"
        );
    }
}

#[cfg(test)]
#[path = "orders_saga_tests.rs"]
mod saga_tests;
