//! Drops: one `DropActor` per drop owns its lifecycle (logs every move to the
//! WAL, then publishes it), and `Drops` is their registry: creation, which
//! open drop holds which SKU, the scheduler that wakes drops at their
//! deadlines on the engine clock, the stock levels that make a drop sold out,
//! and each drop's waiting room. Drops live on an entity host: open ones
//! always stay, and past `drops.resident_max` the least recently used of
//! those that ended or were cancelled leave memory (their actor stopped and
//! their last move snapshotted), to be read back from the snapshot on demand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use serde_json::json;
use tokio::sync::{broadcast, oneshot, Notify};

use crate::clock::{rfc3339_ms, Clock};
use crate::domain::drop::{
    AfterDrop, DropError, DropEvent, DropLimits, DropPatch, DropSku, DropSpec, DropState,
    FlashDrop, NewDrop,
};
use crate::domain::identity::id_text;
use crate::domain::stock::{DropGate, StockError};
use crate::domain::waiting_room::{CloseReason, QueueError, Standing, WaitingRoom};
use crate::domain::{DropId, SkuId, TenantId, UserId};
use crate::events::hub::Frame;
use crate::events::{FeedBatch, FeedBody, Hub, Watched};
use crate::persistence::{EntityKey, RecordBody, SnapshotBody, Snapshots, WalHandle, WalRecord};

use super::host::{EntityHost, Hosted};
use super::registry::{Registry, SendError};
use super::sku::SkuCommand;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropsError {
    #[error("no such drop")]
    NotFound,
    #[error("SKUs already in an open drop: {}", .0.join(", "))]
    SkuInDrop(Vec<String>),
    #[error("unknown SKUs: {}", .0.join(", "))]
    UnknownSkus(Vec<String>),
    #[error(transparent)]
    Transition(#[from] DropError),
    #[error("this drop has no waiting room")]
    NoWaitingRoom,
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the drop's SKUs did not answer; retry shortly")]
    Unavailable,
}

/// What every drop actor shares.
pub struct DropDeps {
    pub wal: WalHandle,
    pub clock: Arc<dyn Clock>,
    pub registry: Arc<Registry>,
    pub hub: Arc<Hub>,
    /// Open drops watch their SKUs' stock on the feed.
    pub watched: Arc<Watched>,
    /// Where a drop that left memory is read back from.
    pub snapshots: Snapshots,
    /// Ended and cancelled drops kept in memory at most.
    pub resident_max: usize,
    /// What a seller may schedule, and edit a drop into.
    pub limits: DropLimits,
}

/// A drop as the rest of the engine sees it, without asking its actor.
pub struct DropEntry {
    pub id: DropId,
    /// The store that runs it.
    pub tenant: TenantId,
    /// Its spec as of its last durable edit (a reservation reads it).
    spec: RwLock<Arc<DropSpec>>,
    /// The drop as of its last durable change.
    view: RwLock<FlashDrop>,
    addr: Mutex<Option<Addr<DropActor>>>,
    /// Latest available units of each SKU, from the event feed.
    levels: Mutex<HashMap<SkuId, u64>>,
    /// A `Levels` message is on its way to the actor.
    nudged: AtomicBool,
    room: Option<Mutex<WaitingRoom>>,
    /// Snapshots sent, and the last of them known durable: the drop may
    /// leave memory only when they are equal.
    writes: AtomicU64,
    snapshotted: AtomicU64,
}

impl Hosted for DropEntry {
    fn can_leave(&self) -> bool {
        let addr = self.addr.lock();
        addr.as_ref().is_none_or(|a| !a.connected())
            && !self.view.read().state.is_open()
            && self.snapshotted.load(Ordering::Acquire) >= self.writes.load(Ordering::Acquire)
    }

    /// Nothing to mark: only a drop without an actor leaves, and no actor
    /// is ever started for a drop that is no longer open.
    fn left(&self) {}
}

impl DropEntry {
    pub fn spec(&self) -> Arc<DropSpec> {
        self.spec.read().clone()
    }

    pub fn view(&self) -> FlashDrop {
        self.view.read().clone()
    }

    pub fn state(&self) -> DropState {
        self.view.read().state
    }

    /// Buyers waiting in its room (0 without one).
    pub fn waiting(&self) -> usize {
        self.room.as_ref().map_or(0, |r| r.lock().waiting_count())
    }

    fn send(&self, message: DropMessage) {
        if let Some(addr) = self.addr.lock().as_ref() {
            // Ticks and level nudges repeat until they take effect, so a full
            // mailbox only delays them.
            let _ = addr.try_send(message);
        }
    }
}

enum DropMessage {
    /// A deadline may be due.
    Tick,
    /// Stock levels changed.
    Levels,
    Cancel(oneshot::Sender<Result<FlashDrop, DropsError>>),
    Edit {
        patch: DropPatch,
        by: UserId,
        reply: oneshot::Sender<Result<FlashDrop, DropsError>>,
    },
}

impl Message for DropMessage {
    type Result = ();
}

pub struct DropActor {
    entry: Arc<DropEntry>,
    drop: FlashDrop,
    deps: Arc<DropDeps>,
    /// The registry's map of SKUs to the drop that gates them: a drop lets
    /// go of its SKUs there once they are settled.
    by_sku: Arc<DashMap<SkuId, DropId>>,
    /// The seller's cancel, answered once every SKU is closed.
    cancelling: Option<oneshot::Sender<Result<FlashDrop, DropsError>>>,
}

impl DropActor {
    fn sold_out(&self) -> bool {
        let levels = self.entry.levels.lock();
        self.drop.spec.skus.len() == levels.len() && levels.values().all(|units| *units == 0)
    }

    /// Logs `events` (each move is published with its LSN), then, once they
    /// are durable, updates the shared view and the waiting room. The mailbox
    /// waits meanwhile, so moves are published in the order they happen.
    fn commit(&mut self, ctx: &mut Context<Self>, events: Vec<DropEvent>) {
        if events.is_empty() {
            return;
        }
        let id = self.drop.spec.id;
        let tenant = self.drop.spec.tenant;
        let (tx, rx) = oneshot::channel();
        let mut ack = Some(tx);
        let count = events.len();
        let edited = events.iter().any(|e| matches!(e, DropEvent::Edited(_)));
        let moved = events.iter().any(|e| matches!(e, DropEvent::Moved { .. }));
        for (i, event) in events.into_iter().enumerate() {
            let publish = match &event {
                DropEvent::Moved { to, .. } => Some(FeedBody::Drop {
                    id,
                    tenant,
                    state: *to,
                }),
                DropEvent::Created(_) | DropEvent::Edited(_) | DropEvent::SkusSettled { .. } => {
                    None
                }
            };
            let record = WalRecord {
                entity: EntityKey::Drop(id),
                body: RecordBody::Drop(Box::new(event)),
            };
            let done = if i + 1 == count { ack.take() } else { None };
            let ack: Option<crate::persistence::Ack> = done.map(|tx| {
                Box::new(move || {
                    let _ = tx.send(());
                }) as crate::persistence::Ack
            });
            if let Err(error) = self.deps.wal.append_published(&record, ack, publish) {
                tracing::error!(drop = %id_text(id), %error, "drop move not logged; stopping");
                ctx.stop();
                return;
            }
        }
        let snapshot = SnapshotBody::Drop(self.drop.clone());
        let write = self.entry.writes.fetch_add(1, Ordering::AcqRel) + 1;
        let entry = self.entry.clone();
        let snapshotted: crate::persistence::Ack = Box::new(move || {
            entry.snapshotted.fetch_max(write, Ordering::AcqRel);
        });
        if let Err(error) =
            self.deps
                .wal
                .snapshot(EntityKey::Drop(id), &snapshot, Some(snapshotted))
        {
            tracing::warn!(drop = %id_text(id), %error, "drop snapshot not written");
        }
        let state = self.drop.clone();
        ctx.wait(
            actix::fut::wrap_future::<_, Self>(rx).map(move |durable, act, ctx| {
                if durable.is_err() {
                    ctx.stop();
                    return;
                }
                if edited {
                    *act.entry.spec.write() = Arc::new(state.spec.clone());
                }
                *act.entry.view.write() = state;
                // Only a move changes what the room and the watched SKUs
                // follow (an edit or a settling record must not unwatch twice).
                if moved {
                    act.after_move();
                }
                // An ended or cancelled drop retires once its SKUs are told
                // how it ended (and that is recorded), when they need telling.
                if !act.drop.state.is_open() {
                    if act.drop.owes_settling().is_some() {
                        act.settle_skus(ctx);
                    } else {
                        act.retire(ctx);
                    }
                }
            }),
        );
    }

    /// Tells every SKU how the drop ended: back on normal sale (an ended
    /// `after_drop: "sell"` drop) or closed (a cancelled one); then records
    /// that they were told, so a restart does not tell them again. Retried
    /// until every SKU answers; a waiting cancel is answered with the first
    /// outcome.
    fn settle_skus(&mut self, ctx: &mut Context<Self>) {
        let Some(how) = self.drop.owes_settling() else {
            return;
        };
        let deps = self.deps.clone();
        let spec = self.entry.spec();
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(async move {
                match how {
                    // A SKU removed since has nothing left to tell.
                    AfterDrop::Sell => {
                        for_each_sku(&deps.registry, &spec, |_| SkuCommand::ReleaseDrop, true).await
                    }
                    AfterDrop::Close => {
                        for_each_sku(&deps.registry, &spec, |_| SkuCommand::CancelDrop, true).await
                    }
                }
            })
            .map(move |told, act, ctx| {
                if let Some(reply) = act.cancelling.take() {
                    let answer = match &told {
                        Ok(()) => Ok(act.drop.clone()),
                        Err(_) => Err(DropsError::Unavailable),
                    };
                    let _ = reply.send(answer);
                }
                match told {
                    Ok(()) => {
                        let id = act.drop.spec.id;
                        for sku in &act.drop.spec.skus {
                            act.by_sku.remove_if(&SkuId(sku.id), |_, d| *d == id);
                        }
                        if how == AfterDrop::Sell {
                            metrics::counter!("flashdrop_drop_skus_released_total")
                                .increment(act.drop.spec.skus.len() as u64);
                        }
                        let now = act.deps.clock.now_ms();
                        let events: Vec<DropEvent> = act.drop.settled(now).into_iter().collect();
                        act.commit(ctx, events);
                    }
                    Err(error) => {
                        tracing::warn!(drop = %id_text(act.drop.spec.id), %error, "drop SKUs not settled; retrying");
                        ctx.run_later(Duration::from_secs(1), |act, ctx| act.settle_skus(ctx));
                    }
                }
            }),
        );
    }

    /// Gives every SKU the drop's current window and limit again in a
    /// second, and again until they all have them (an edit is durable
    /// before its SKUs are told, so a failed telling must not be final).
    fn regate_later(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(Duration::from_secs(1), |act, ctx| {
            if !act.drop.state.is_open() {
                return;
            }
            let deps = act.deps.clone();
            let spec = act.entry.spec();
            ctx.spawn(
                actix::fut::wrap_future::<_, Self>(async move {
                    attach_gates(&deps.registry, &spec).await
                })
                .map(|gated, act, ctx| {
                    if let Err(error) = gated {
                        tracing::warn!(drop = %id_text(act.drop.spec.id), %error, "edited drop gates not attached; retrying");
                        act.regate_later(ctx);
                    }
                }),
            );
        });
    }

    /// An ended or cancelled drop needs no actor: with its address gone
    /// the supervisor does not restart it, and the host may let the drop
    /// leave memory once its last snapshot is durable.
    fn retire(&self, ctx: &mut Context<Self>) {
        *self.entry.addr.lock() = None;
        ctx.stop();
    }

    /// The waiting room follows the drop: closed (and everyone waiting told)
    /// on sell-out or end, open again when stock returns.
    fn after_move(&self) {
        let state = self.drop.state;
        metrics::counter!("flashdrop_drop_moves_total", "to" => state.as_str()).increment(1);
        if !state.is_open() {
            for sku in &self.drop.spec.skus {
                self.deps.watched.unwatch(SkuId(sku.id));
            }
        }
        let Some(room) = &self.entry.room else {
            return;
        };
        let told = match state {
            DropState::SoldOut => room.lock().close(CloseReason::SoldOut),
            DropState::Ended | DropState::Cancelled => room.lock().close(CloseReason::Ended),
            DropState::Live => {
                room.lock().reopen();
                Vec::new()
            }
            DropState::Scheduled => Vec::new(),
        };
        for (buyer, standing) in told {
            let frame = queue_frame(self.drop.spec.id, &standing);
            self.deps.hub.tell_users(&[buyer], &frame);
        }
    }
}

impl Actor for DropActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        // A restart came between the drop ending or being cancelled and its
        // SKUs being told.
        if self.drop.owes_settling().is_some() {
            self.settle_skus(ctx);
        }
    }
}

impl Supervised for DropActor {}

impl Handler<DropMessage> for DropActor {
    type Result = ();

    fn handle(&mut self, message: DropMessage, ctx: &mut Context<Self>) {
        let now = self.deps.clock.now_ms();
        match message {
            DropMessage::Tick => {
                let sold_out = self.sold_out();
                let events = self.drop.tick(now, sold_out);
                self.commit(ctx, events);
            }
            DropMessage::Levels => {
                self.entry.nudged.store(false, Ordering::Release);
                let sold_out = self.sold_out();
                let events: Vec<DropEvent> =
                    self.drop.stock_level(sold_out, now).into_iter().collect();
                self.commit(ctx, events);
            }
            DropMessage::Cancel(reply) => match self.drop.cancel(now) {
                Ok(event) => {
                    // Once the move is durable its SKUs are closed
                    // (`settle_skus`), and then the cancel is answered.
                    self.cancelling = Some(reply);
                    self.commit(ctx, vec![event]);
                }
                Err(error) => {
                    let _ = reply.send(Err(error.into()));
                }
            },
            DropMessage::Edit { patch, by, reply } => {
                let before = self.drop.spec.clone();
                match self.drop.edit(&patch, by, now, &self.deps.limits) {
                    Ok(None) => {
                        let _ = reply.send(Ok(self.drop.clone()));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error.into()));
                    }
                    Ok(Some(event)) => {
                        let regate = match &event {
                            DropEvent::Edited(edit) => edit.regates(&before),
                            _ => false,
                        };
                        self.commit(ctx, vec![event]);
                        let deps = self.deps.clone();
                        let view = self.drop.clone();
                        // After the edit is durable (the mailbox is paused
                        // until then): the SKUs take the new window and
                        // limit, each buyer's count kept. A failure is
                        // answered and retried until every SKU has them.
                        ctx.spawn(
                            actix::fut::wrap_future::<_, Self>(async move {
                                let gated = if regate {
                                    attach_gates(&deps.registry, &view.spec).await
                                } else {
                                    Ok(())
                                };
                                let failed = gated.is_err();
                                let _ = reply.send(gated.map(|()| view));
                                failed
                            })
                            .map(|failed, act, ctx| {
                                if failed {
                                    act.regate_later(ctx);
                                }
                            }),
                        );
                    }
                }
            }
        }
    }
}

/// Sends every SKU of the drop the command `make(gate)` builds, even past
/// one that fails, and answers whether all took it; with `skip_unknown`,
/// SKUs that no longer exist are passed over.
async fn for_each_sku<F>(
    registry: &Registry,
    spec: &DropSpec,
    make: impl Fn(&DropSpec) -> F,
    skip_unknown: bool,
) -> Result<(), DropsError>
where
    F: FnOnce(DropId, oneshot::Sender<Result<(), StockError>>) -> SkuCommand,
{
    let mut replies = Vec::with_capacity(spec.skus.len());
    let mut all = Ok(());
    for sku in &spec.skus {
        let (tx, rx) = oneshot::channel();
        match registry.send(SkuId(sku.id), make(spec)(spec.id, tx)) {
            Ok(()) => replies.push(rx),
            Err(SendError::UnknownSku) if skip_unknown => {}
            Err(_) => all = Err(DropsError::Unavailable),
        }
    }
    for reply in replies {
        if !matches!(reply.await, Ok(Ok(()))) {
            all = Err(DropsError::Unavailable);
        }
    }
    all
}

/// The gate a drop puts on each of its SKUs.
fn gate_of(spec: &DropSpec) -> DropGate {
    DropGate {
        drop: spec.id,
        starts_at_ms: spec.starts_at_ms,
        ends_at_ms: spec.ends_at_ms,
        per_buyer_limit: spec.per_buyer_limit,
        cancelled: false,
    }
}

async fn attach_gates(registry: &Registry, spec: &DropSpec) -> Result<(), DropsError> {
    let gate = gate_of(spec);
    for_each_sku(
        registry,
        spec,
        |_| {
            let gate = gate.clone();
            move |_, reply| SkuCommand::AttachDrop(gate, reply)
        },
        false,
    )
    .await
}

/// A waiting-room message for one shopper.
pub fn queue_frame(drop: DropId, standing: &Standing) -> Frame {
    Frame::from(
        json!({"type": "queue", "drop_id": id_text(drop), "standing": standing_json(standing)})
            .to_string(),
    )
}

/// A standing as clients see it.
pub fn standing_json(standing: &Standing) -> serde_json::Value {
    match *standing {
        Standing::Admitted {
            ticket,
            pass_expires_at_ms,
        } => {
            json!({"state": "admitted", "ticket": ticket, "pass_expires_at": rfc3339_ms(pass_expires_at_ms)})
        }
        Standing::Waiting {
            ticket,
            position,
            estimated_wait_ms,
        } => json!({"state": "waiting", "ticket": ticket, "position": position,
                    "estimated_wait_s": estimated_wait_ms.div_ceil(1000)}),
        Standing::Closed { ticket, reason } => json!({
            "state": match reason { CloseReason::SoldOut => "sold_out", CloseReason::Ended => "ended" },
            "ticket": ticket,
        }),
    }
}

/// Every drop, which open drop holds which SKU, and the scheduler.
pub struct Drops {
    /// Open drops, and the ended or cancelled ones used lately.
    entries: EntityHost<DropId, DropEntry>,
    /// Drops recovered at start, which `reconcile` visits once.
    recovered: Mutex<Vec<DropId>>,
    /// Which drop gates each SKU: open drops, and ended `close` ones until
    /// a restart (their SKUs refuse through their own gate either way).
    by_sku: Arc<DashMap<SkuId, DropId>>,
    /// Creation checks and claims SKUs atomically.
    creating: tokio::sync::Mutex<()>,
    /// Serialises one buyer's reservations in a multi-SKU drop with a limit.
    buyer_locks: DashMap<(DropId, String), Arc<tokio::sync::Mutex<()>>>,
    deps: Arc<DropDeps>,
    arbiter: ArbiterHandle,
    wake: Notify,
    /// Room admissions are checked this often while someone waits.
    room_tick: Duration,
}

impl Drops {
    /// Registers the recovered drops and starts their actors on `arbiter`.
    pub fn new(
        recovered: Vec<FlashDrop>,
        deps: DropDeps,
        arbiter: ArbiterHandle,
        room_tick: Duration,
    ) -> Arc<Self> {
        let resident_max = deps.resident_max;
        let drops = Arc::new(Self {
            entries: EntityHost::new("drop", resident_max, vec![arbiter.clone()]),
            // Only open drops have gates to check again; an ended or
            // cancelled drop whose SKUs are still to be told does that
            // itself (`settle_skus`), and the rest need nothing.
            recovered: Mutex::new(
                recovered
                    .iter()
                    .filter(|d| d.state.is_open())
                    .map(|d| d.spec.id)
                    .collect(),
            ),
            by_sku: Arc::new(DashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            buyer_locks: DashMap::new(),
            deps: Arc::new(deps),
            arbiter,
            wake: Notify::new(),
            room_tick,
        });
        for drop in recovered {
            drops.register(drop);
        }
        drops
    }

    /// The shared face of `drop`, with a waiting room when it is open and
    /// has one (a room's tickets live in memory only).
    fn entry_of(&self, drop: &FlashDrop) -> DropEntry {
        let now = self.deps.clock.now_ms();
        let room = drop
            .spec
            .waiting_room
            .filter(|_| drop.state.is_open())
            .map(|spec| Mutex::new(WaitingRoom::new(spec, now)));
        DropEntry {
            id: drop.spec.id,
            tenant: drop.spec.tenant,
            spec: RwLock::new(Arc::new(drop.spec.clone())),
            view: RwLock::new(drop.clone()),
            addr: Mutex::new(None),
            levels: Mutex::new(HashMap::new()),
            nudged: AtomicBool::new(false),
            room,
            writes: AtomicU64::new(0),
            snapshotted: AtomicU64::new(0),
        }
    }

    /// Makes a recovered or new drop resident; an open one gets its actor
    /// and its SKUs.
    fn register(&self, drop: FlashDrop) -> Arc<DropEntry> {
        let entry = Arc::new(self.entry_of(&drop));
        if drop.state.is_open() || drop.owes_settling().is_some() {
            // Only an open drop gates its SKUs: a closed one still settling
            // must not take a SKU's entry from an open drop that took it since.
            if drop.state.is_open() {
                for sku in &drop.spec.skus {
                    self.by_sku.insert(SkuId(sku.id), drop.spec.id);
                    self.deps.watched.watch(SkuId(sku.id));
                }
            }
            let actor_entry = entry.clone();
            let deps = self.deps.clone();
            let by_sku = self.by_sku.clone();
            let addr = Supervisor::start_in_arbiter(&self.arbiter, move |_| DropActor {
                entry: actor_entry,
                drop,
                deps,
                by_sku,
                cancelling: None,
            });
            *entry.addr.lock() = Some(addr);
        }
        self.entries.insert_if_absent(entry.id, entry)
    }

    /// The drop `id`, from memory or, if it ended and left, from its
    /// snapshot (`Unavailable` when that cannot be read).
    pub fn lookup(&self, id: DropId) -> Result<Arc<DropEntry>, DropsError> {
        // Only ended and cancelled drops leave memory: one read back needs
        // no actor and no room.
        self.entries
            .get_or_activate(id, || {
                self.deps
                    .snapshots
                    .load::<FlashDrop>(id)
                    .map(|drop| drop.map(|drop| self.entry_of(&drop)))
            })
            .map_err(|error| {
                tracing::error!(drop = %id_text(id), %error, "drop snapshot unreadable");
                DropsError::Unavailable
            })?
            .ok_or(DropsError::NotFound)
    }

    /// `lookup`, with an unreadable drop taken as absent (and logged).
    pub fn get(&self, id: DropId) -> Option<Arc<DropEntry>> {
        self.lookup(id).ok()
    }

    /// The open drop a SKU sells through, if any.
    pub fn drop_of(&self, sku: SkuId) -> Option<Arc<DropEntry>> {
        let id = *self.by_sku.get(&sku)?;
        self.get(id)
    }

    /// Open drops (scheduled, live, sold out), soonest first, after `after`
    /// (a `(starts_at_ms, id)` cursor), at most `limit`.
    pub fn upcoming(&self, after: Option<(u64, DropId)>, limit: usize) -> Vec<FlashDrop> {
        let mut open: Vec<FlashDrop> = self
            .open_entries()
            .iter()
            .map(|e| e.view())
            .filter(|d| after.is_none_or(|a| (d.spec.starts_at_ms, d.spec.id) > a))
            .collect();
        open.sort_unstable_by_key(|d| (d.spec.starts_at_ms, d.spec.id));
        open.truncate(limit);
        open
    }

    /// Makes every open drop's gates current after a restart (a crash may have
    /// come between logging a drop and gating its SKUs) and fetches levels.
    pub async fn reconcile(&self) {
        let recovered = std::mem::take(&mut *self.recovered.lock());
        for id in recovered {
            let entry = match self.lookup(id) {
                Ok(entry) => entry,
                Err(error) => {
                    tracing::warn!(drop = %id_text(id), %error, "drop not reconciled");
                    continue;
                }
            };
            if !entry.state().is_open() {
                continue;
            }
            if let Err(error) = attach_gates(&self.deps.registry, &entry.spec()).await {
                tracing::warn!(drop = %id_text(entry.id), %error, "drop gates not reconciled");
            }
            self.refresh_levels(&entry);
        }
    }

    /// Asks each SKU of the drop to announce its level on the feed.
    fn refresh_levels(&self, entry: &DropEntry) {
        for sku in &entry.spec().skus {
            let (reply, _) = oneshot::channel();
            let _ = self
                .deps
                .registry
                .send(SkuId(sku.id), SkuCommand::Publish(reply));
        }
    }

    /// Schedules a drop of `tenant`'s SKUs; answers once it is durable and
    /// every SKU is gated.
    pub async fn create(
        &self,
        tenant: TenantId,
        created_by: UserId,
        new: NewDrop,
    ) -> Result<FlashDrop, DropsError> {
        let _creating = self.creating.lock().await;
        let registry = &self.deps.registry;
        let mut unknown = Vec::new();
        let mut taken = Vec::new();
        let mut skus = Vec::with_capacity(new.sku_codes.len());
        let tenant_text = id_text(tenant);
        for code in &new.sku_codes {
            match registry.id_of(code).and_then(|id| registry.info(id)) {
                Some(info) if info.tenant() == tenant_text => {
                    // A SKU stays mapped to a drop that ended; only an open one holds it.
                    let held = self
                        .drop_of(info.id)
                        .is_some_and(|entry| entry.state().is_open());
                    if held {
                        taken.push(code.clone());
                    }
                    skus.push(DropSku {
                        id: info.id.0,
                        code: code.clone(),
                    });
                }
                _ => unknown.push(code.clone()),
            }
        }
        if !unknown.is_empty() {
            return Err(DropsError::UnknownSkus(unknown));
        }
        if !taken.is_empty() {
            return Err(DropsError::SkuInDrop(taken));
        }
        let spec = DropSpec {
            id: DropId(uuid::Uuid::now_v7().as_u128()),
            tenant,
            title: new.title.trim().to_owned(),
            skus,
            starts_at_ms: new.starts_at_ms,
            ends_at_ms: new.ends_at_ms,
            per_buyer_limit: new.per_buyer_limit,
            waiting_room: new.waiting_room,
            created_at_ms: self.deps.clock.now_ms(),
            created_by,
            after_drop: new.after_drop,
        };
        let drop = FlashDrop::new(spec.clone());
        let (tx, rx) = oneshot::channel();
        let record = WalRecord {
            entity: EntityKey::Drop(spec.id),
            body: RecordBody::Drop(Box::new(DropEvent::Created(spec.clone()))),
        };
        let ack: crate::persistence::Ack = Box::new(move || {
            let _ = tx.send(());
        });
        self.deps
            .wal
            .append(&record, Some(ack))
            .and_then(|()| {
                self.deps.wal.snapshot(
                    EntityKey::Drop(spec.id),
                    &SnapshotBody::Drop(drop.clone()),
                    None,
                )
            })
            .map_err(|_| DropsError::Unavailable)?;
        rx.await.map_err(|_| DropsError::Unavailable)?;
        let entry = self.register(drop.clone());
        metrics::counter!("flashdrop_drops_created_total").increment(1);
        // Durable first, gates second: a crash between them is mended by `reconcile`.
        attach_gates(registry, &spec).await?;
        self.refresh_levels(&entry);
        self.wake.notify_one();
        Ok(drop)
    }

    pub async fn cancel(&self, id: DropId) -> Result<FlashDrop, DropsError> {
        let entry = self.lookup(id)?;
        let addr = entry.addr.lock().clone();
        let Some(addr) = addr else {
            return Err(DropError::Transition {
                from: entry.state(),
                to: DropState::Cancelled,
            }
            .into());
        };
        let (tx, rx) = oneshot::channel();
        addr.send(DropMessage::Cancel(tx))
            .await
            .map_err(|_| DropsError::Unavailable)?;
        let cancelled = rx.await.map_err(|_| DropsError::Unavailable)??;
        for sku in &entry.spec().skus {
            self.by_sku.remove_if(&SkuId(sku.id), |_, d| *d == id);
        }
        Ok(cancelled)
    }

    /// Applies a seller's patch (see `FlashDrop::edit`); answers once the
    /// edit is durable and, when the window or limit changed, every SKU
    /// enforces the new ones.
    pub async fn edit(
        &self,
        id: DropId,
        patch: DropPatch,
        by: UserId,
    ) -> Result<FlashDrop, DropsError> {
        let entry = self.lookup(id)?;
        let addr = entry.addr.lock().clone();
        let Some(addr) = addr else {
            // No actor: it ended or was cancelled, and nothing changes.
            let mut drop = entry.view();
            return match drop.edit(&patch, by, self.deps.clock.now_ms(), &self.deps.limits)? {
                None => Ok(drop),
                Some(_) => Err(DropsError::Unavailable),
            };
        };
        let (tx, rx) = oneshot::channel();
        addr.send(DropMessage::Edit {
            patch,
            by,
            reply: tx,
        })
        .await
        .map_err(|_| DropsError::Unavailable)?;
        let edited = rx.await.map_err(|_| DropsError::Unavailable)??;
        metrics::counter!("flashdrop_drop_edits_total").increment(1);
        // The scheduler may sleep towards the old deadline.
        self.wake.notify_one();
        Ok(edited)
    }

    /// Whether `buyer` may reserve `sku` now as far as its drop's waiting room
    /// goes: without a room, or outside the drop's window, always.
    pub fn admits(&self, entry: &DropEntry, buyer: UserId, now_ms: u64) -> bool {
        let Some(room) = &entry.room else {
            return true;
        };
        let spec = entry.spec();
        if now_ms < spec.starts_at_ms || now_ms >= spec.ends_at_ms {
            return true;
        }
        room.lock().admitted(buyer, now_ms)
    }

    /// Joins a drop's waiting room, or answers where the buyer stands.
    pub fn join(&self, id: DropId, buyer: UserId) -> Result<Standing, DropsError> {
        let entry = self.lookup(id)?;
        let room = entry.room.as_ref().ok_or(DropsError::NoWaitingRoom)?;
        let now = self.deps.clock.now_ms();
        let admitting = entry.state() == DropState::Live && now >= entry.spec().starts_at_ms;
        let standing = room.lock().join(buyer, admitting, now)?;
        if matches!(standing, Standing::Waiting { .. }) {
            self.wake.notify_one();
        }
        Ok(standing)
    }

    pub fn standing(&self, id: DropId, buyer: UserId) -> Result<Option<Standing>, DropsError> {
        let entry = self.lookup(id)?;
        let room = entry.room.as_ref().ok_or(DropsError::NoWaitingRoom)?;
        let standing = room.lock().standing(buyer, self.deps.clock.now_ms());
        Ok(standing)
    }

    /// The lock that serialises `buyer`'s reservations in drop `drop`.
    pub fn buyer_lock(&self, drop: DropId, buyer: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.buyer_locks
            .entry((drop, buyer.to_owned()))
            .or_default()
            .clone()
    }

    /// Forgets the lock if nobody else holds or waits for it.
    pub fn release_buyer_lock(
        &self,
        drop_id: DropId,
        buyer: &str,
        lock: Arc<tokio::sync::Mutex<()>>,
    ) {
        std::mem::drop(lock);
        self.buyer_locks
            .remove_if(&(drop_id, buyer.to_owned()), |_, l| {
                Arc::strong_count(l) == 1
            });
    }

    /// Units `buyer` holds or bought through drop `entry` in SKUs other than `except`.
    pub async fn usage_elsewhere(
        &self,
        entry: &DropEntry,
        buyer: &str,
        except: SkuId,
    ) -> Result<u64, SendError> {
        let mut total = 0;
        for sku in entry.spec().skus.iter().filter(|s| s.id != except.0) {
            let (tx, rx) = oneshot::channel();
            self.deps.registry.send(
                SkuId(sku.id),
                SkuCommand::DropUsage {
                    drop: entry.id,
                    buyer: buyer.to_owned(),
                    reply: tx,
                },
            )?;
            match rx.await {
                Ok(Ok(units)) => total += units,
                _ => return Err(SendError::Unavailable),
            }
        }
        Ok(total)
    }

    /// Scheduled, live and sold-out drops.
    fn open_entries(&self) -> Vec<Arc<DropEntry>> {
        self.entries
            .residents()
            .into_iter()
            .map(|(_, entry)| entry)
            .filter(|e| e.state().is_open())
            .collect()
    }

    /// Drops in memory (open ones are always).
    pub fn resident(&self) -> usize {
        self.entries.len()
    }

    /// Follows stock levels on the feed: a drop whose SKUs all reach 0 sells
    /// out, and is live again when any comes back.
    pub async fn watch_levels(self: Arc<Self>, mut feed: broadcast::Receiver<Arc<FeedBatch>>) {
        loop {
            match feed.recv().await {
                Ok(batch) => {
                    for event in &batch.events {
                        if let FeedBody::Stock { sku, available } = event.body {
                            if let Some(entry) = self.drop_of(sku) {
                                entry.levels.lock().insert(sku, available);
                                if !entry.nudged.swap(true, Ordering::AcqRel) {
                                    entry.send(DropMessage::Levels);
                                }
                            }
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "drops fell behind the event feed; refreshing levels"
                    );
                    for entry in self.open_entries() {
                        self.refresh_levels(&entry);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Wakes drops at their deadlines (on the engine clock, so a manual clock
    /// drives them too) and admits waiting shoppers at each room's rate.
    pub async fn run_scheduler(self: Arc<Self>) {
        let jumps = self.deps.clock.jumps();
        loop {
            let now = self.deps.clock.now_ms();
            let mut next = now + 1_000;
            let mut due = false;
            // Drops that ended since the last pass may leave now (their
            // actor stopped and their last snapshot became durable).
            self.entries.trim();
            for entry in self.open_entries() {
                if let Some(deadline) = entry.view.read().next_deadline_ms() {
                    if deadline <= now {
                        entry.send(DropMessage::Tick);
                        due = true;
                    } else {
                        next = next.min(deadline);
                    }
                }
                if entry.nudged.load(Ordering::Acquire) {
                    // A nudge lost to a full mailbox is sent again.
                    entry.send(DropMessage::Levels);
                }
                self.admit(&entry, now, &mut next);
            }
            let wait_ms = if due {
                10
            } else {
                next.saturating_sub(now).clamp(1, 1_000)
            };
            let sleep = tokio::time::sleep(Duration::from_millis(wait_ms));
            match &jumps {
                Some(jumps) => tokio::select! {
                    _ = sleep => {}
                    _ = self.wake.notified() => {}
                    _ = jumps.notified() => {}
                },
                None => tokio::select! {
                    _ = sleep => {}
                    _ = self.wake.notified() => {}
                },
            }
        }
    }

    fn admit(&self, entry: &DropEntry, now: u64, next: &mut u64) {
        let Some(room) = &entry.room else { return };
        let live = entry.state() == DropState::Live && now >= entry.spec().starts_at_ms;
        let (admitted, waiting) = {
            let mut room = room.lock();
            let admitted = if live { room.advance(now) } else { Vec::new() };
            (admitted, room.waiting_count())
        };
        for (buyer, standing) in &admitted {
            self.deps
                .hub
                .tell_users(&[*buyer], &queue_frame(entry.id, standing));
        }
        metrics::counter!("flashdrop_waiting_room_admitted_total").increment(admitted.len() as u64);
        if waiting > 0 && live {
            *next = (*next).min(now + self.room_tick.as_millis() as u64);
        }
    }
}
