//! Carts: one `CartActor` per cart serialises its changes (adding a drop SKU
//! holds its stock, so a change may wait for a SKU actor) and logs every new
//! state to the WAL before answering; checkout turns the cart into an order
//! inside the same turn, so nothing slips in between. `Carts` finds or
//! starts the actor of an account's (or a guest's) cart.

use std::sync::{Arc, Weak};
use std::time::Duration;

use actix::prelude::*;
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::cart::{Cart, CartError, CartItem, PriceChange};
use crate::domain::identity::id_text;
use crate::domain::order::Order;
use crate::domain::{BuyerId, ReservationId, ReserveCmd, SkuCode, SkuId, TenantId, UserId};
use crate::persistence::{EntityKey, RecordBody, SnapshotBody, WalHandle, WalRecord};

use super::host::{EntityHost, Hosted};
use super::orders::{ItemRequest, OrderDraft, Orders, OrdersError};
use crate::services::inventory::{InventoryError, StockPort};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartsError {
    #[error(transparent)]
    Cart(#[from] CartError),
    #[error(transparent)]
    Stock(#[from] InventoryError),
    #[error("prices changed since the items were added; the cart now shows the new prices")]
    PriceChanged(Vec<PriceChange>),
    #[error(transparent)]
    Orders(#[from] OrdersError),
    #[error("drop SKUs are held when added to a cart: sign in first")]
    SignInForDrops,
    #[error("the cart cannot be changed now; retry shortly")]
    Unavailable,
}

/// A change to a cart.
#[derive(Debug, Clone)]
pub enum CartOp {
    Add { sku: SkuCode, quantity: u32 },
    Set { sku: SkuCode, quantity: u32 },
    Remove { sku: SkuCode },
    Checkout(Checkout),
}

#[derive(Debug, Clone)]
pub struct Checkout {
    pub shipping_address: String,
    pub payment_method: String,
    pub idempotency: Option<(String, u64)>,
    /// The shipping method picked per store.
    pub shipping: Vec<(TenantId, String)>,
    /// A guest cart to merge first (the buyer signed in after shopping).
    pub merge: Option<u128>,
}

pub enum CartReply {
    Cart(Cart),
    Placed(Box<Order>),
}

pub struct CartDeps {
    pub wal: WalHandle,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Config>,
    pub orders: Arc<Orders>,
    pub stock: Arc<dyn StockPort>,
}

struct CartEntry {
    view: RwLock<Cart>,
    addr: Mutex<Option<Addr<CartActor>>>,
}

impl CartEntry {
    fn new(cart: Cart) -> Self {
        Self {
            view: RwLock::new(cart),
            addr: Mutex::new(None),
        }
    }
}

/// A cart is active state, not history: carts leave memory when they
/// expire (`sweep`, with a `Deleted` record each), and `cart.carts_max`
/// refuses new carts past the cap, so the host never has to pick one.
impl Hosted for CartEntry {
    fn can_leave(&self) -> bool {
        false
    }

    fn left(&self) {}
}

pub struct Carts {
    deps: Arc<CartDeps>,
    entries: EntityHost<u128, CartEntry>,
}

impl Carts {
    pub fn new(
        recovered: Vec<Cart>,
        wal: WalHandle,
        clock: Arc<dyn Clock>,
        config: Arc<Config>,
        orders: Arc<Orders>,
        stock: Arc<dyn StockPort>,
        arbiters: Vec<ArbiterHandle>,
    ) -> Arc<Self> {
        let now = clock.now_ms();
        let entries = EntityHost::new("cart", config.cart.carts_max, arbiters);
        let (live, expired): (Vec<Cart>, Vec<Cart>) =
            recovered.into_iter().partition(|c| !c.is_expired(now));
        // Carts that expired while the server was down leave the disk too.
        for cart in &expired {
            let _ = wal.forget(EntityKey::Cart(cart.owner), None);
        }
        for cart in live {
            entries.insert_if_absent(cart.owner, Arc::new(CartEntry::new(cart)));
        }
        Arc::new(Self {
            deps: Arc::new(CartDeps {
                wal,
                clock,
                config,
                orders,
                stock,
            }),
            entries,
        })
    }

    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// The cart as it stands (an empty one if there is none or it expired).
    pub fn get(&self, owner: u128, guest: bool) -> Cart {
        let now = self.deps.clock.now_ms();
        self.entries
            .get(owner)
            .map(|e| e.view.read().clone())
            .filter(|c| !c.is_expired(now))
            .unwrap_or_else(|| Cart::new(owner, guest, now, ttl_ms(&self.deps.config, guest)))
    }

    /// Forgets at most `max` carts that expired (their holds lapse on their
    /// own), in memory and, by a `Deleted` record each, on disk; returns how
    /// many went, so a sweep calls again while a batch comes back full.
    /// Forgets none while the WAL is congested; the next sweep finds them.
    pub fn sweep(&self, max: usize) -> usize {
        if self.deps.wal.congested() {
            return 0;
        }
        let now = self.deps.clock.now_ms();
        let idle_and_expired =
            |e: &CartEntry| e.view.read().is_expired(now) && e.addr.lock().is_none();
        let expired = self.entries.find(max, idle_and_expired);
        let mut forgotten = 0;
        for owner in expired {
            // The record is sent while the cart's shard is locked, so a cart
            // made anew for the same owner is written after it and survives it.
            let removed = self.entries.remove_if(owner, |e| {
                idle_and_expired(e) && self.deps.wal.forget(EntityKey::Cart(owner), None).is_ok()
            });
            forgotten += usize::from(removed);
        }
        forgotten
    }

    pub async fn apply(
        self: &Arc<Self>,
        owner: u128,
        guest: bool,
        op: CartOp,
    ) -> Result<CartReply, CartsError> {
        let entry = match self.entries.get(owner) {
            Some(entry) => entry,
            None => {
                if self.entries.len() >= self.deps.config.cart.carts_max {
                    metrics::counter!("flashdrop_carts_refused_total").increment(1);
                    return Err(CartsError::Unavailable);
                }
                let now = self.deps.clock.now_ms();
                let ttl = ttl_ms(&self.deps.config, guest);
                let cart = Cart::new(owner, guest, now, ttl);
                self.entries
                    .insert_if_absent(owner, Arc::new(CartEntry::new(cart)))
            }
        };
        let addr = {
            let mut slot = entry.addr.lock();
            match slot.as_ref().filter(|a| a.connected()) {
                Some(addr) => addr.clone(),
                None => {
                    let actor = CartActor {
                        cart: entry.view.read().clone(),
                        entry: entry.clone(),
                        deps: self.deps.clone(),
                        carts: Arc::downgrade(self),
                        last_used_ms: 0,
                    };
                    let addr = match self.entries.arbiter() {
                        Some(arbiter) => CartActor::start_in_arbiter(arbiter, move |_| actor),
                        None => actor.start(),
                    };
                    *slot = Some(addr.clone());
                    addr
                }
            }
        };
        let (tx, rx) = oneshot::channel();
        addr.try_send(CartMsg { op, reply: tx })
            .map_err(|_| CartsError::Unavailable)?;
        rx.await.map_err(|_| CartsError::Unavailable)?
    }

    fn cart_of(&self, owner: u128) -> Option<Cart> {
        self.entries.get(owner).map(|e| e.view.read().clone())
    }
}

fn ttl_ms(config: &Config, guest: bool) -> u64 {
    let c = &config.cart;
    1000 * if guest {
        c.guest_ttl_s
    } else {
        c.account_ttl_s
    }
}

struct CartMsg {
    op: CartOp,
    reply: oneshot::Sender<Result<CartReply, CartsError>>,
}

impl Message for CartMsg {
    type Result = ();
}

struct CartActor {
    cart: Cart,
    entry: Arc<CartEntry>,
    deps: Arc<CartDeps>,
    /// To read a guest cart merged at checkout.
    carts: Weak<Carts>,
    last_used_ms: u64,
}

impl Actor for CartActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(32);
        // With nothing to do for `cart.actor_idle_s` it stops (its cart stays).
        let idle = Duration::from_secs(self.deps.config.cart.actor_idle_s);
        ctx.run_interval(idle, move |act, ctx| {
            if act.deps.clock.now_ms().saturating_sub(act.last_used_ms) >= idle.as_millis() as u64 {
                *act.entry.addr.lock() = None;
                ctx.stop();
            }
        });
    }
}

impl Handler<CartMsg> for CartActor {
    type Result = ();

    fn handle(&mut self, msg: CartMsg, ctx: &mut Context<Self>) {
        self.last_used_ms = self.deps.clock.now_ms();
        let deps = self.deps.clone();
        let cart = self.cart.clone();
        let CartMsg { op, reply } = msg;
        let merge = match &op {
            CartOp::Checkout(c) => c.merge.filter(|g| *g != cart.owner),
            _ => None,
        };
        let carts = self.carts.upgrade();
        let guest = merge.and_then(|g| carts.as_ref()?.cart_of(g));
        ctx.wait(
            async move {
                let (after, result) = apply(&deps, cart.clone(), op, guest.clone()).await;
                if after != cart && persist(&deps.wal, &after).await.is_err() {
                    return (cart, Err(CartsError::Unavailable));
                }
                if let (Some(guest), Ok(CartReply::Placed(_))) = (guest, &result) {
                    // The guest cart was checked out with this one: it ends.
                    if forget(&deps.wal, guest.owner).await.is_ok() {
                        if let Some(carts) = carts {
                            carts.entries.remove(guest.owner);
                        }
                    }
                }
                (after, result)
            }
            .into_actor(self)
            .map(move |(cart, result), act, _| {
                act.cart = cart.clone();
                *act.entry.view.write() = cart;
                let _ = reply.send(result);
            }),
        );
    }
}

/// Ends a cart: once this returns Ok, recovery will not bring it back.
async fn forget(wal: &WalHandle, owner: u128) -> Result<(), ()> {
    let (tx, rx) = oneshot::channel();
    let ack: crate::persistence::Ack = Box::new(move || {
        let _ = tx.send(());
    });
    wal.forget(EntityKey::Cart(owner), Some(ack))
        .map_err(|_| ())?;
    rx.await.map_err(|_| ())
}

async fn persist(wal: &WalHandle, cart: &Cart) -> Result<(), ()> {
    let (tx, rx) = oneshot::channel();
    let record = WalRecord {
        entity: EntityKey::Cart(cart.owner),
        body: RecordBody::Cart(Box::new(cart.clone())),
    };
    let ack: crate::persistence::Ack = Box::new(move || {
        let _ = tx.send(());
    });
    wal.append(&record, Some(ack)).map_err(|_| ())?;
    if let Err(error) = wal.snapshot(
        EntityKey::Cart(cart.owner),
        &SnapshotBody::Cart(cart.clone()),
        None,
    ) {
        tracing::warn!(cart = %id_text(cart.owner), %error, "cart snapshot not written");
    }
    rx.await.map_err(|_| ())
}

/// Holds `quantity` more of a drop SKU for the cart's owner.
async fn hold(
    deps: &CartDeps,
    owner: u128,
    sku: SkuId,
    quantity: u32,
) -> Result<(u64, u32, u64), CartsError> {
    let info = deps.stock.sku_info(sku).ok_or(InventoryError::UnknownSku)?;
    let cmd = ReserveCmd {
        buyer: BuyerId::of_account(UserId(owner)),
        quantity,
        ttl_ms: deps.config.cart.drop_hold_s * 1000,
        idempotency: None,
        shopper_units_max: None,
    };
    let outcome = deps.stock.reserve(info, cmd).await?;
    let receipt = outcome.receipt;
    Ok((receipt.seq, quantity, receipt.expires_at_ms))
}

async fn unhold(stock: &dyn StockPort, owner: u128, sku: u64, seq: u64) {
    let id = ReservationId {
        sku: SkuId(sku),
        seq,
    };
    if let Err(error) = stock.release(id, BuyerId::of_account(UserId(owner))).await {
        tracing::debug!(%error, "cart hold already gone");
    }
}

/// Makes a drop item's holds add up to `target` units: an increase holds
/// only the difference (so a per-buyer limit counts each unit once); a
/// decrease gives back the newest holds, holding again what it overshot.
async fn resize_holds(
    deps: &CartDeps,
    owner: u128,
    sku: u64,
    mut holds: Vec<(u64, u32, u64)>,
    target: u32,
) -> Result<Vec<(u64, u32, u64)>, CartsError> {
    let mut held: u32 = holds.iter().map(|h| h.1).sum();
    while held > target {
        let Some((seq, units, _)) = holds.pop() else {
            break;
        };
        unhold(deps.stock.as_ref(), owner, sku, seq).await;
        held -= units;
    }
    if held < target {
        holds.push(hold(deps, owner, SkuId(sku), target - held).await?);
    }
    Ok(holds)
}

/// Applies one change; answers the cart after it (unchanged on error).
async fn apply(
    deps: &CartDeps,
    cart: Cart,
    op: CartOp,
    guest: Option<Cart>,
) -> (Cart, Result<CartReply, CartsError>) {
    let stock = deps.stock.as_ref();
    let now = deps.clock.now_ms();
    let limits = &deps.config.orders;
    let ttl = ttl_ms(&deps.config, cart.guest);
    let original = cart.clone();
    let mut cart = if cart.is_expired(now) {
        Cart::new(cart.owner, cart.guest, now, ttl)
    } else {
        cart
    };
    cart.touch(now, ttl);
    let result = match op {
        CartOp::Add { sku, quantity } => {
            let outcome = async {
                let info = stock.sku(&sku)?;
                let in_drop = stock.in_drop(info.id);
                if in_drop && cart.guest {
                    return Err(CartsError::SignInForDrops);
                }
                let existing = cart.item(sku.as_str()).cloned();
                let total = existing.as_ref().map_or(0, |i| i.quantity) + quantity;
                if total > limits.quantity_max {
                    return Err(CartError::LineFull {
                        sku: sku.as_str().to_owned(),
                        total: u64::from(total),
                        max: limits.quantity_max,
                    }
                    .into());
                }
                if existing.is_none() && cart.items.len() >= limits.lines_max {
                    return Err(CartError::TooManyItems(limits.lines_max).into());
                }
                // Before any hold: a refused item must hold nothing.
                cart.accepts_currency(info.code(), &info.price().currency)?;
                let old_holds = existing
                    .as_ref()
                    .map(|i| i.holds.clone())
                    .unwrap_or_default();
                let holds = if in_drop {
                    resize_holds(deps, cart.owner, info.id.0, old_holds, total).await?
                } else {
                    Vec::new()
                };
                match existing {
                    Some(_) => {
                        let line = cart.set_quantity(sku.as_str(), total)?;
                        line.holds = holds;
                    }
                    None => {
                        let price = info.price();
                        cart.add(
                            CartItem {
                                sku: info.id.0,
                                code: info.code().to_owned(),
                                seller: TenantId::parse(info.tenant()).unwrap_or(TenantId(0)),
                                quantity,
                                unit_price_minor: price.amount,
                                currency: price.currency.clone(),
                                added_at_ms: now,
                                holds,
                            },
                            limits.lines_max,
                            limits.quantity_max,
                        )?;
                    }
                }
                Ok(())
            }
            .await;
            outcome.map(|_| CartReply::Cart(cart.clone()))
        }
        CartOp::Set { sku, quantity } => {
            let outcome = async {
                let old = cart
                    .item(sku.as_str())
                    .cloned()
                    .ok_or_else(|| CartError::NoSuchItem(sku.as_str().to_owned()))?;
                let holds = if old.holds.is_empty() {
                    Vec::new()
                } else {
                    resize_holds(deps, cart.owner, old.sku, old.holds, quantity).await?
                };
                let line = cart.set_quantity(sku.as_str(), quantity)?;
                line.holds = holds;
                Ok::<(), CartsError>(())
            }
            .await;
            outcome.map(|_| CartReply::Cart(cart.clone()))
        }
        CartOp::Remove { sku } => match cart.remove(sku.as_str()) {
            Ok(item) => {
                for (seq, _, _) in item.holds {
                    unhold(stock, cart.owner, item.sku, seq).await;
                }
                Ok(CartReply::Cart(cart.clone()))
            }
            Err(e) => Err(e.into()),
        },
        CartOp::Checkout(checkout) => {
            if let Some(guest) = guest.filter(|g| !g.is_expired(now)) {
                cart.merge(&guest, limits.lines_max, limits.quantity_max);
            }
            if cart.items.is_empty() {
                return (original, Err(CartError::Empty.into()));
            }
            let changes = cart.reprice(|sku| stock.sku_info(SkuId(sku)).map(|i| i.price().amount));
            if !changes.is_empty() && !deps.config.cart.accept_price_changes {
                // The cart keeps the new prices: checking out again accepts them.
                return (cart, Err(CartsError::PriceChanged(changes)));
            }
            let draft = OrderDraft {
                buyer: UserId(cart.owner),
                items: cart
                    .items
                    .iter()
                    .map(|i| ItemRequest {
                        sku: SkuCode::parse(&i.code).expect("cart items hold valid codes"),
                        quantity: i.quantity,
                        reservations: i.holds.iter().map(|h| h.0).collect(),
                    })
                    .collect(),
                shipping_address: checkout.shipping_address,
                payment_method: checkout.payment_method,
                idempotency: checkout.idempotency,
                shipping: checkout.shipping,
            };
            match deps.orders.place(draft).await {
                Ok((order, _)) => {
                    cart.items.clear();
                    Ok(CartReply::Placed(Box::new(order)))
                }
                Err(e) => return (original, Err(e.into())),
            }
        }
    };
    match result {
        Ok(reply) => (cart, Ok(reply)),
        Err(e) => (original, Err(e)),
    }
}
