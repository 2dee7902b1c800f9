//! `SkuActor`: the single owner of one SKU's `StockLedger`. It decides with the
//! domain, hands the events to the WAL and answers only once they are durable.
//! It also expires reservations on its own timer, snapshots itself, and parks
//! its ledger in the registry when idle.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::domain::stock::{
    CommitOutcome, DropGate, LedgerLimits, ReleaseOutcome, ReservationView, ReserveCmd,
    ReserveOutcome, StockError, StockEvent, StockLedger, StockView,
};
use crate::domain::{DropId, SkuId, WarehouseId};
use crate::events::FeedBody;

use super::InStock;
use crate::persistence::{
    load_ledger, rebuild_ledger, EntityKey, RecordBody, SnapshotBody, Store, WalHandle, WalOp,
    WalRecord,
};

pub type Reply<T> = oneshot::Sender<T>;

/// While the WAL is over its bound, a changed SKU snapshots at most this often.
const WAL_PRESSED_SNAPSHOT_GAP: Duration = Duration::from_secs(1);

/// Everything a SKU actor is asked. Each carries its own reply channel so the
/// answer can be sent from the WAL thread the moment it is durable.
pub enum SkuCommand {
    /// A reservation; a shopper's own carries its place in the hold book.
    Reserve(
        ReserveCmd,
        Option<super::holds::HoldPlace>,
        Reply<Result<ReserveOutcome, StockError>>,
    ),
    /// The answer an earlier reservation with the same buyer and key gave, if
    /// any; holds nothing new (asked when the shopper's hold places are full).
    Replay(
        ReserveCmd,
        Reply<Result<Option<ReserveOutcome>, StockError>>,
    ),
    /// A reservation of a drop SKU whose drop's other SKUs already hold
    /// `elsewhere_units` of this buyer's allowance.
    ReserveInDrop {
        cmd: ReserveCmd,
        elsewhere_units: u64,
        reply: Reply<Result<ReserveOutcome, StockError>>,
    },
    /// Units `buyer` holds or bought in this SKU through drop `drop`.
    DropUsage {
        drop: DropId,
        buyer: String,
        reply: Reply<Result<u64, StockError>>,
    },
    AttachDrop(DropGate, Reply<Result<(), StockError>>),
    CancelDrop(DropId, Reply<Result<(), StockError>>),
    /// The drop ended with `after_drop: "sell"`: back to normal sale.
    ReleaseDrop(DropId, Reply<Result<(), StockError>>),
    /// Announce the current available units on the event feed (for a new
    /// watcher, or after a watcher lost its place).
    Publish(Reply<Result<(), StockError>>),
    Release {
        seq: u64,
        /// `None`: one of the SKU's sellers, any buyer's hold.
        buyer: Option<crate::domain::BuyerId>,
        reply: Reply<Result<ReleaseOutcome, StockError>>,
    },
    Commit {
        seq: u64,
        /// `None`: one of the SKU's sellers, any buyer's hold.
        buyer: Option<crate::domain::BuyerId>,
        reply: Reply<Result<CommitOutcome, StockError>>,
    },
    /// Open holds, soonest expiry first, after `after` (a seller's list).
    Holds {
        after: Option<(u64, u64)>,
        limit: usize,
        reply: Reply<Result<Vec<ReservationView>, StockError>>,
    },
    Reservation {
        seq: u64,
        /// `None`: the seller's view, any buyer's reservation.
        buyer: Option<crate::domain::BuyerId>,
        reply: Reply<Result<ReservationView, StockError>>,
    },
    SetStock {
        warehouses: Vec<(WarehouseId, u64)>,
        low_stock_threshold: Option<u64>,
        reply: Reply<Result<StockView, StockError>>,
    },
    Adjust {
        warehouse: WarehouseId,
        delta: i64,
        reason: String,
        reply: Reply<Result<StockView, StockError>>,
    },
    Stock(Reply<Result<StockView, StockError>>),
    /// Drop memory and rebuild from snapshot + WAL through the supervisor.
    Restart(Reply<Result<(), StockError>>),
    /// `retire`: the SKU is leaving its product, if it holds nothing (the
    /// registry takes no other command for it meanwhile); the actor then
    /// writes no snapshot and does not park, so nothing of it follows the
    /// `Deleted` record that ends it. `!retire`: the removal was abandoned.
    Retire {
        retire: bool,
        reply: Reply<Result<(), StockError>>,
    },
}

impl Message for SkuCommand {
    type Result = ();
}

/// Where an idle SKU actor hands its ledger back: the registry, seen
/// through this interface so the actor needs nothing else of it.
pub trait SkuHome: Send + Sync {
    /// Takes the ledger of an idle actor; refused when a message is queued
    /// for it or it is no longer the SKU's current actor.
    fn park(
        &self,
        sku: SkuId,
        generation: u64,
        ledger: &mut Option<StockLedger>,
        gate: &Gate,
    ) -> bool;
    /// The parked ledger's snapshot is durable: its memory may go.
    fn parked_durable(&self, sku: SkuId, generation: u64);
}

/// Bounds one actor's mailbox. actix's own capacity is per sender and cannot
/// bound a mailbox shared by every request, so senders pass this gate first.
#[derive(Debug)]
pub struct Gate {
    depth: AtomicU32,
    capacity: u32,
}

impl Gate {
    pub fn new(capacity: u32) -> Self {
        Self {
            depth: AtomicU32::new(0),
            capacity,
        }
    }

    pub fn try_enter(&self) -> bool {
        let before = self.depth.fetch_add(1, Ordering::AcqRel);
        if before >= self.capacity {
            self.depth.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    pub fn leave(&self) {
        self.depth.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn depth(&self) -> u32 {
        self.depth.load(Ordering::Acquire)
    }
}

/// What every SKU actor shares.
pub struct SkuDeps {
    pub wal: WalHandle,
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub limits: LedgerLimits,
    pub snapshot_every_records: u64,
    pub snapshot_interval: Duration,
    /// Over this many bytes of WAL, a changed SKU snapshots at its next tick.
    pub wal_retained_max_bytes: u64,
    pub idle_timeout: Duration,
    /// Where the actor parks its ledger when idle (the registry).
    pub registry: Weak<dyn SkuHome>,
    /// SKUs whose stock goes on the event feed.
    pub watched: Arc<crate::events::Watched>,
    /// Open holds per buyer across SKUs, counted from what each actor logs.
    pub holds: Arc<super::holds::HoldBook>,
    /// Which SKUs have units available, for browsing.
    pub in_stock: Arc<InStock>,
}

/// How a new actor gets its ledger.
pub enum Init {
    /// Handed over from the registry (parked, or fresh from recovery).
    Ledger(Box<StockLedger>),
    /// Its snapshot is the latest state (or it has none: a new SKU).
    Load,
    /// Its previous incarnation died: wait for its WAL records, then snapshot + WAL.
    Rebuild,
}

pub struct SkuActor {
    sku: SkuId,
    /// Threshold the SKU starts with when it has no stock history (from its product).
    initial_threshold: u64,
    generation: u64,
    deps: Arc<SkuDeps>,
    gate: Arc<Gate>,
    init: Option<Init>,
    ledger: Option<StockLedger>,
    /// Records sent to the WAL and not yet durable.
    unacked: Arc<AtomicU64>,
    records_since_snapshot: u64,
    last_snapshot: Instant,
    last_activity: Instant,
    expiry_timer: Option<(u64, SpawnHandle)>,
    /// Available units last announced on the event feed.
    announced: Option<u64>,
    /// Whether units were available at the last change sent to the WAL, as
    /// `in_stock` will show it once durable.
    in_stock: Option<bool>,
    /// The hold-book place of the reservation being answered, if it has one.
    place: Option<super::holds::HoldPlace>,
    /// Being removed from its product: no snapshot, no parking.
    retired: bool,
}

impl SkuActor {
    pub fn new(
        sku: SkuId,
        initial_threshold: u64,
        generation: u64,
        deps: Arc<SkuDeps>,
        gate: Arc<Gate>,
        init: Init,
    ) -> Self {
        Self {
            sku,
            initial_threshold,
            generation,
            deps,
            gate,
            init: Some(init),
            ledger: None,
            unacked: Arc::new(AtomicU64::new(0)),
            records_since_snapshot: 0,
            last_snapshot: Instant::now(),
            last_activity: Instant::now(),
            expiry_timer: None,
            announced: None,
            in_stock: None,
            place: None,
            retired: false,
        }
    }

    fn housekeeping_period(&self) -> Duration {
        (self.deps.idle_timeout / 4)
            .min(self.deps.snapshot_interval / 2)
            .clamp(Duration::from_millis(50), Duration::from_secs(5))
    }

    fn load(&mut self, ctx: &mut Context<Self>) {
        match self.init.take().unwrap_or(Init::Load) {
            Init::Ledger(ledger) => self.ledger = Some(*ledger),
            Init::Load => {
                let loaded = load_ledger(
                    &self.deps.store,
                    self.sku,
                    &self.deps.limits,
                    self.initial_threshold,
                );
                match loaded {
                    Ok(ledger) => self.ledger = Some(ledger),
                    Err(error) => {
                        tracing::error!(sku = self.sku.0, %error, "cannot load SKU state");
                        ctx.stop();
                        return;
                    }
                }
            }
            Init::Rebuild => {
                self.rebuild(ctx);
                return;
            }
        }
        self.arm_expiry(ctx);
    }

    /// Waits until everything this SKU sent is complete, then reads snapshot + WAL.
    /// The mailbox is paused meanwhile (`ctx.wait`).
    fn rebuild(&mut self, ctx: &mut Context<Self>) {
        let deps = self.deps.clone();
        let (sku, initial) = (self.sku, self.initial_threshold);
        let work = async move {
            let barrier = deps.wal.barrier().map_err(|e| e.to_string())?;
            barrier.await.map_err(|_| "the WAL stopped".to_string())?;
            tokio::task::spawn_blocking(move || {
                rebuild_ledger(&deps.store, sku, &deps.limits, initial).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())?
        };
        ctx.wait(
            actix::fut::wrap_future::<_, Self>(work).map(|result, act, ctx| match result {
                Ok(ledger) => {
                    tracing::info!(sku = act.sku.0, "SKU actor rebuilt from snapshot + WAL");
                    act.ledger = Some(ledger);
                    act.arm_expiry(ctx);
                }
                Err(error) => {
                    tracing::error!(sku = act.sku.0, %error, "SKU rebuild failed");
                    ctx.stop();
                }
            }),
        );
    }

    /// Runs one decision: expire what is due, then `decide`. Returns the
    /// outcome and every event it produced (expiries included).
    fn run<T>(
        &mut self,
        decide: impl FnOnce(&mut StockLedger, u64, &mut Vec<StockEvent>) -> Result<T, StockError>,
    ) -> (Result<T, StockError>, Vec<StockEvent>) {
        let Some(ledger) = self.ledger.as_mut() else {
            return (
                Err(StockError::Invariant(crate::domain::InvariantViolation(
                    "ledger not loaded".into(),
                ))),
                Vec::new(),
            );
        };
        let now = self.deps.clock.now_ms();
        let mut events = Vec::new();
        let result = match ledger.expire_due(now, &mut events) {
            Ok(()) => decide(ledger, now, &mut events),
            Err(error) => Err(error),
        };
        let result = match result {
            Ok(value) => ledger
                .check_invariants(false)
                .map(|()| value)
                .map_err(StockError::from),
            Err(error) => Err(error),
        };
        (result, events)
    }

    /// Answers once `events` (and anything this SKU logged before) are durable.
    fn answer<T: Send + 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        events: Vec<StockEvent>,
        reply: Reply<Result<T, StockError>>,
        result: Result<T, StockError>,
    ) {
        let failed = matches!(result, Err(StockError::Invariant(_)));
        if failed {
            // Answer the caller now; the events of a broken ledger are not logged.
            let _ = reply.send(result);
            self.fail(ctx);
            return;
        }
        self.persist(
            ctx,
            events,
            Some(Box::new(move || {
                let _ = reply.send(result);
            })),
        );
        self.arm_expiry(ctx);
    }

    fn persist(
        &mut self,
        ctx: &mut Context<Self>,
        events: Vec<StockEvent>,
        ack: Option<Box<dyn FnOnce() + Send>>,
    ) {
        let sent = if events.is_empty() {
            match ack {
                None => Ok(()),
                Some(ack) if self.unacked.load(Ordering::Acquire) == 0 => {
                    ack();
                    Ok(())
                }
                // Something this answer saw is not durable yet: wait for it.
                Some(ack) => self.deps.wal.send(WalOp::Fence { ack }),
            }
        } else {
            self.count_holds(&events);
            let record = WalRecord {
                entity: EntityKey::Sku(self.sku.0),
                body: RecordBody::Stock(events),
            };
            let unacked = self.unacked.clone();
            unacked.fetch_add(1, Ordering::AcqRel);
            self.records_since_snapshot += 1;
            let publish = self.announcement();
            let in_stock = self.in_stock_change();
            self.deps.wal.append_published(
                &record,
                Some(Box::new(move || {
                    unacked.fetch_sub(1, Ordering::AcqRel);
                    if let Some((levels, sku, available)) = in_stock {
                        levels.set(sku, available);
                    }
                    if let Some(ack) = ack {
                        ack();
                    }
                })),
                publish,
            )
        };
        if let Err(error) = sent {
            // Memory is now ahead of disk; this ledger must not answer again.
            tracing::error!(sku = self.sku.0, %error, "WAL unavailable; stopping SKU actor");
            self.ledger = None;
            ctx.stop();
            return;
        }
        // A snapshot costs O(state): waiting for at least as many records as the
        // state has entries keeps its cost O(1) per record, and replay bounded.
        let entries = self.ledger.as_ref().map_or(0, StockLedger::state_entries) as u64;
        if self.records_since_snapshot >= self.deps.snapshot_every_records.max(entries) {
            self.snapshot();
        }
    }

    /// Tells the hold book which holds `events` open and end. Runs as the
    /// events are logged, so a reservation's hold is counted before its answer.
    fn count_holds(&mut self, events: &[StockEvent]) {
        let Some(ledger) = &self.ledger else { return };
        for event in events {
            match event {
                StockEvent::Reserved { buyer, .. } => match self.place.take() {
                    Some(place) => place.open(),
                    None => self.deps.holds.opened(buyer),
                },
                StockEvent::Released { seq, .. } | StockEvent::Committed { seq, .. } => {
                    if let Some(buyer) = ledger.holder(*seq) {
                        self.deps.holds.ended(buyer);
                    }
                }
                _ => {}
            }
        }
    }

    /// Queues a snapshot of `ledger`, marking first whether it holds open
    /// reservations (start-up loads the SKUs so marked).
    fn queue_snapshot(
        deps: &SkuDeps,
        sku: SkuId,
        (holding, body): (bool, SnapshotBody),
        ack: Option<Box<dyn FnOnce() + Send>>,
    ) -> Result<(), String> {
        deps.store
            .mark_holding(sku.0, holding)
            .map_err(|e| e.to_string())?;
        deps.wal
            .snapshot(EntityKey::Sku(sku.0), &body, ack)
            .map_err(|e| e.to_string())
    }

    /// Whether units are available after the change being logged, when
    /// that differs from the last change (shown once durable).
    fn in_stock_change(&mut self) -> Option<(Arc<InStock>, SkuId, bool)> {
        let available = self.ledger.as_ref()?.available() > 0;
        if self.in_stock == Some(available) {
            return None;
        }
        self.in_stock = Some(available);
        Some((self.deps.in_stock.clone(), self.sku, available))
    }

    /// The feed item for the ledger's available units, if they changed since
    /// the last one.
    fn announcement(&mut self) -> Option<FeedBody> {
        if !self.deps.watched.is_watched(self.sku) {
            // Whoever starts watching asks for the current value (`Publish`).
            self.announced = None;
            return None;
        }
        let available = self.ledger.as_ref()?.available();
        if self.announced == Some(available) {
            return None;
        }
        self.announced = Some(available);
        Some(FeedBody::Stock {
            sku: self.sku,
            available,
        })
    }

    fn snapshot(&mut self) {
        if self.retired {
            return;
        }
        let Some(ledger) = &self.ledger else { return };
        let snapshot = (
            ledger.open_reservations() > 0,
            SnapshotBody::Ledger(ledger.snapshot()),
        );
        if let Err(error) = Self::queue_snapshot(&self.deps, self.sku, snapshot, None) {
            tracing::warn!(sku = self.sku.0, %error, "snapshot not written");
            return;
        }
        self.records_since_snapshot = 0;
        self.last_snapshot = Instant::now();
    }

    /// The ledger is inconsistent: stop, and let the supervisor rebuild it.
    fn fail(&mut self, ctx: &mut Context<Self>) {
        tracing::error!(
            sku = self.sku.0,
            "SKU ledger failed an invariant; restarting"
        );
        self.restart(ctx, "invariant");
    }

    /// Drops the in-memory ledger and stops; the supervisor starts this actor
    /// again, which rebuilds from snapshot + WAL before taking messages.
    fn restart(&mut self, ctx: &mut Context<Self>, reason: &'static str) {
        metrics::counter!("flashdrop_sku_actor_restarts_total", "reason" => reason).increment(1);
        self.ledger = None;
        ctx.stop();
    }

    fn arm_expiry(&mut self, ctx: &mut Context<Self>) {
        let next = self.ledger.as_ref().and_then(StockLedger::next_expiry_ms);
        let Some(next) = next else {
            if let Some((_, handle)) = self.expiry_timer.take() {
                ctx.cancel_future(handle);
            }
            return;
        };
        if let Some((armed_at, handle)) = self.expiry_timer {
            if armed_at <= next {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay_ms = next.saturating_sub(self.deps.clock.now_ms()).max(1);
        let handle = ctx.run_later(Duration::from_millis(delay_ms), |act, ctx| {
            act.expiry_timer = None;
            if act.ledger.is_none() {
                return; // being rebuilt; the rebuilt ledger arms its own timer
            }
            let (result, events) = act.run(|_, _, _| Ok(()));
            if matches!(result, Err(StockError::Invariant(_))) {
                act.fail(ctx);
                return;
            }
            act.persist(ctx, events, None);
            act.arm_expiry(ctx);
        });
        self.expiry_timer = Some((next, handle));
    }

    /// A changed SKU snapshots every `snapshot_interval`, and sooner (at most
    /// once per `WAL_PRESSED_SNAPSHOT_GAP`) while the WAL is over its bound:
    /// its records are what keeps the WAL from being truncated.
    fn snapshot_due(&self) -> bool {
        let since = self.last_snapshot.elapsed();
        since >= self.deps.snapshot_interval
            || (since >= WAL_PRESSED_SNAPSHOT_GAP
                && self.deps.wal.stats().retained_bytes.load(Ordering::Relaxed)
                    > self.deps.wal_retained_max_bytes)
    }

    fn housekeeping(&mut self, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        let Some(ledger) = self.ledger.as_mut() else {
            return;
        };
        ledger.prune(self.deps.clock.now_ms());
        let open = ledger.open_reservations();
        if self.records_since_snapshot > 0 && self.snapshot_due() {
            self.snapshot();
        }
        if open == 0 && self.last_activity.elapsed() >= self.deps.idle_timeout {
            self.passivate(ctx);
        }
    }

    /// Hands the ledger back to the registry and stops, unless a message is queued.
    fn passivate(&mut self, ctx: &mut Context<Self>) {
        let Some(registry) = self.deps.registry.upgrade() else {
            return;
        };
        let Some(ledger) = &self.ledger else { return };
        let snapshot = (
            ledger.open_reservations() > 0,
            SnapshotBody::Ledger(ledger.snapshot()),
        );
        if !registry.park(self.sku, self.generation, &mut self.ledger, &self.gate) {
            return;
        }
        // Same arbiter thread as any successor, so this snapshot is queued before
        // anything a successor logs.
        let weak = Arc::downgrade(&registry);
        let (sku, generation) = (self.sku, self.generation);
        let ack: Box<dyn FnOnce() + Send> = Box::new(move || {
            if let Some(registry) = weak.upgrade() {
                registry.parked_durable(sku, generation);
            }
        });
        if let Err(error) = Self::queue_snapshot(&self.deps, sku, snapshot, Some(ack)) {
            tracing::warn!(sku = sku.0, %error, "passivation snapshot not written");
        }
        ctx.stop();
    }
}

impl Actor for SkuActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        metrics::gauge!("flashdrop_sku_actors_active").increment(1.0);
        self.load(ctx);
        let period = self.housekeeping_period();
        ctx.run_interval(period, |act, ctx| act.housekeeping(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        metrics::gauge!("flashdrop_sku_actors_active").decrement(1.0);
    }
}

impl Supervised for SkuActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.ledger = None;
        self.expiry_timer = None;
        // The rebuilt ledger announces itself afresh.
        self.announced = None;
        self.in_stock = None;
        self.init = Some(Init::Rebuild);
    }
}

impl Handler<SkuCommand> for SkuActor {
    type Result = ();

    fn handle(&mut self, command: SkuCommand, ctx: &mut Context<Self>) {
        self.gate.leave();
        self.last_activity = Instant::now();
        if self.ledger.is_none() {
            // Between a failure and the supervised rebuild: dropping the reply
            // tells the caller "unavailable, retry" (503), and nothing changed.
            drop(command);
            return;
        }
        match command {
            SkuCommand::Reserve(cmd, place, reply) => {
                let (result, events) = self.run(|l, now, out| l.reserve(cmd, now, out));
                // A place the reservation did not use is given back when dropped.
                self.place = place;
                self.answer(ctx, events, reply, result);
                self.place = None;
            }
            SkuCommand::Replay(cmd, reply) => {
                let (result, events) = self.run(|l, now, _| l.replay(&cmd, now));
                self.answer(ctx, events, reply, result);
            }
            SkuCommand::Release { seq, buyer, reply } => {
                let (result, events) = self.run(|l, now, out| match &buyer {
                    Some(buyer) => l.release(seq, buyer, now, out),
                    None => l.release_as_seller(seq, now, out),
                });
                self.answer(ctx, events, reply, result);
            }
            SkuCommand::Commit { seq, buyer, reply } => {
                let (result, events) = self.run(|l, now, out| match &buyer {
                    Some(buyer) => l.commit(seq, buyer, now, out),
                    None => l.commit_as_seller(seq, now, out),
                });
                self.answer(ctx, events, reply, result);
            }
            SkuCommand::Holds {
                after,
                limit,
                reply,
            } => {
                let (result, events) = self.run(|l, _, _| Ok(l.open_holds(after, limit)));
                self.answer(ctx, events, reply, result);
            }
            SkuCommand::Reservation { seq, buyer, reply } => {
                let (result, events) =
                    self.run(|l, now, _| l.reservation(seq, buyer.as_ref(), now));
                self.answer(ctx, events, reply, result);
            }
            SkuCommand::SetStock {
                warehouses,
                low_stock_threshold,
                reply,
            } => {
                let (result, events) = self.run(|l, _, out| {
                    l.set_stock(warehouses, low_stock_threshold, out)
                        .map(|()| l.view())
                });
                self.answer(ctx, events, reply, result);
            }
            SkuCommand::Adjust {
                warehouse,
                delta,
                reason,
                reply,
            } => {
                let (result, events) = self
                    .run(|l, _, out| l.adjust(warehouse, delta, reason, out).map(|()| l.view()));
                self.answer(ctx, events, reply, result);
            }
            SkuCommand::Stock(reply) => {
                let (result, events) = self.run(|l, _, _| Ok(l.view()));
                self.answer(ctx, events, reply, result);
            }
            SkuCommand::ReserveInDrop {
                cmd,
                elsewhere_units,
                reply,
            } => {
                let (result, events) =
                    self.run(|l, now, out| l.reserve_in_drop(cmd, elsewhere_units, now, out));
                self.answer(ctx, events, reply, result);
            }
            SkuCommand::DropUsage { drop, buyer, reply } => {
                let (result, events) = self.run(|l, _, _| Ok(l.drop_usage(drop, &buyer)));
                self.answer(ctx, events, reply, result);
            }
            SkuCommand::AttachDrop(gate, reply) => {
                let (result, events) = self.run(|l, _, out| l.attach_drop(gate, out));
                self.answer(ctx, events, reply, result);
            }
            SkuCommand::CancelDrop(drop, reply) => {
                let (result, events) = self.run(|l, _, out| l.cancel_drop(drop, out));
                self.answer(ctx, events, reply, result);
            }
            SkuCommand::ReleaseDrop(drop, reply) => {
                let (result, events) = self.run(|l, _, out| l.release_drop(drop, out));
                self.answer(ctx, events, reply, result);
            }
            SkuCommand::Publish(reply) => {
                let (result, events) = self.run(|_, _, _| Ok(()));
                let available = self.ledger.as_ref().map(StockLedger::available);
                self.answer(ctx, events, reply, result);
                if let Some(available) = available {
                    // After the answer's own records, so it is stamped at or past them.
                    self.announced = Some(available);
                    let body = FeedBody::Stock {
                        sku: self.sku,
                        available,
                    };
                    if self.deps.wal.send(WalOp::Publish(body)).is_err() {
                        tracing::warn!(sku = self.sku.0, "stock not announced: the WAL stopped");
                    }
                }
            }
            SkuCommand::Retire { retire, reply } => {
                let (result, events) = self.run(|l, now, _| match retire {
                    true => l.retirable(now),
                    false => Ok(()),
                });
                if result.is_ok() {
                    self.retired = retire;
                }
                self.answer(ctx, events, reply, result);
            }
            SkuCommand::Restart(reply) => {
                // The rebuild pauses the mailbox, so anything sent after this
                // reply is served by the rebuilt ledger.
                let _ = reply.send(Ok(()));
                self.restart(ctx, "requested");
            }
        }
    }
}
