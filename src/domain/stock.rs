//! The stock ledger of one SKU: on-hand per warehouse, reservations with expiry,
//! sales, idempotency and low-stock crossings. Commands validate and emit events;
//! `apply` is the only mutation and is used both live and when replaying the WAL.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// A map whose keys the engine chose or verified (sequence numbers, buyer ids
/// from signed tokens): a fast seeded hash instead of SipHash, which costs a
/// reservation more than the map's work. Keys a client picks freely
/// (idempotency keys) stay on the default, DoS-resistant hasher.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;

use serde::Serialize;

use super::ids::{BuyerId, DropId, IdempotencyKey, SkuId, WarehouseId};

/// Bounds on one ledger's memory and on the values it accepts.
#[derive(Debug, Clone)]
pub struct LedgerLimits {
    /// Idempotency keys remembered per SKU; the oldest is forgotten first.
    pub idempotency_keys_max: usize,
    /// How long an idempotency key is honoured.
    pub idempotency_ttl_ms: u64,
    /// Released, expired and committed reservations remembered per SKU, so a
    /// repeated release or commit still gets its idempotent answer.
    pub finished_max: usize,
    pub finished_ttl_ms: u64,
    /// Open (held) reservations per SKU.
    pub open_reservations_max: usize,
    pub warehouses_max: usize,
    /// Largest on-hand count of one warehouse, and largest adjustment.
    pub units_max: u64,
}

impl Default for LedgerLimits {
    fn default() -> Self {
        Self {
            idempotency_keys_max: 100_000,
            idempotency_ttl_ms: 24 * 3600 * 1000,
            finished_max: 100_000,
            finished_ttl_ms: 24 * 3600 * 1000,
            open_reservations_max: 1_000_000,
            warehouses_max: 64,
            units_max: 1_000_000_000_000,
        }
    }
}

/// Why a reservation stopped holding stock without being sold.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    Buyer,
    Expired,
    /// One of the SKU's sellers released it (a stuck or abusive hold).
    Seller,
}

/// A drop's hold on a SKU: the window in which it can be reserved and how many
/// units one buyer may hold or have bought in the drop.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DropGate {
    pub drop: DropId,
    pub starts_at_ms: u64,
    pub ends_at_ms: u64,
    /// Units one buyer may hold or have bought in the drop; 0 = no limit.
    pub per_buyer_limit: u32,
    /// The drop was cancelled: nothing is sold through it any more.
    pub cancelled: bool,
}

/// Why a drop SKU cannot be reserved now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotLive {
    NotStarted { starts_at_ms: u64 },
    Ended { ended_at_ms: u64 },
    Cancelled,
}

/// Everything that ever changes a ledger. Written to the WAL, replayed on recovery.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum StockEvent {
    /// On-hand replaced for every warehouse (warehouses not listed hold nothing).
    StockSet {
        warehouses: Vec<(String, u64)>,
        low_stock_threshold: Option<u64>,
    },
    StockAdjusted {
        warehouse: String,
        delta: i64,
        reason: String,
    },
    Reserved {
        seq: u64,
        buyer: String,
        quantity: u32,
        created_at_ms: u64,
        expires_at_ms: u64,
        /// `(Idempotency-Key, request fingerprint)` when the request carried a key.
        idempotency: Option<(String, u64)>,
    },
    Released {
        seq: u64,
        at_ms: u64,
        reason: ReleaseReason,
    },
    Committed {
        seq: u64,
        at_ms: u64,
        /// Units taken from each warehouse.
        allocation: Vec<(String, u32)>,
    },
    /// Available fell below the low-stock threshold.
    LowStock { available: u64, threshold: u64 },
    /// Available is back at or above the low-stock threshold.
    Replenished { available: u64, threshold: u64 },
    /// The SKU now sells only through this drop (a new drop id starts a fresh
    /// per-buyer count; the same one again changes nothing).
    DropAttached(DropGate),
    /// The drop was cancelled: the SKU stays closed until another drop takes it.
    DropCancelled { drop: DropId },
    /// The drop ended and its seller chose `after_drop: "sell"`: the SKU is
    /// back on normal sale, its per-buyer counts forgotten (format 4 on;
    /// appended, so older events keep their tags).
    DropReleased { drop: DropId },
}

/// Typed refusals; `http/error.rs` maps each to a status and a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockError {
    #[error("requested {requested} units but only {available} are available")]
    OutOfStock { requested: u32, available: u64 },
    #[error("no such reservation")]
    UnknownReservation,
    #[error("the reservation was released")]
    ReservationReleased,
    #[error("the reservation expired")]
    ReservationExpired,
    #[error("the reservation was already committed")]
    ReservationCommitted,
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("on-hand would be {on_hand} but {reserved} units are reserved")]
    StockBelowReserved { on_hand: u64, reserved: u64 },
    #[error("warehouse {warehouse} holds {on_hand} units; cannot remove {requested}")]
    InsufficientOnHand {
        warehouse: String,
        on_hand: u64,
        requested: u64,
    },
    #[error("at most {max} warehouses per SKU")]
    TooManyWarehouses { max: usize },
    #[error("at most {max} units per warehouse or adjustment")]
    TooManyUnits { max: u64 },
    #[error("this SKU already holds {max} open reservations")]
    TooManyReservations { max: usize },
    #[error("a shopper may hold at most {limit} units of this SKU at once; {held} are held")]
    HoldLimitExceeded { limit: u64, held: u64 },
    #[error("the drop of this SKU is not live")]
    DropNotLive { drop: DropId, why: NotLive },
    #[error(
        "a buyer may take at most {limit} units in this drop; {used} are already held or bought"
    )]
    PurchaseLimitExceeded { limit: u32, used: u64 },
    #[error("the SKU has {open} open holds")]
    HasHolds { open: usize },
    #[error("the SKU sells through drop {drop}, which has not ended")]
    InOpenDrop { drop: DropId },
    /// The ledger found itself inconsistent; its owner must rebuild it from durable state.
    #[error(transparent)]
    Invariant(#[from] InvariantViolation),
}

/// A state the ledger must never be in; finding one means a bug or corrupt data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stock ledger invariant violated: {0}")]
pub struct InvariantViolation(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    Held,
    Released,
    Expired,
    Committed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationView {
    pub seq: u64,
    pub buyer: String,
    pub quantity: u32,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub state: ReservationState,
}

/// Counts as a client sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockView {
    pub available: u64,
    pub reserved: u64,
    pub sold: u64,
    pub warehouses: BTreeMap<String, u64>,
    pub low_stock_threshold: u64,
}

/// A reservation request after edge validation.
#[derive(Debug, Clone)]
pub struct ReserveCmd {
    pub buyer: BuyerId,
    pub quantity: u32,
    pub ttl_ms: u64,
    /// Key plus a fingerprint of the request body it was first used with.
    pub idempotency: Option<(IdempotencyKey, u64)>,
    /// A shopper's own hold outside a drop: the units of this SKU the buyer may
    /// hold at once, counting every open hold of theirs here. `None` for holds
    /// bounded elsewhere (an order's lines, a cart's drop items).
    pub shopper_units_max: Option<u64>,
}

/// What a successful reservation request answers: enough to render it again
/// for an idempotent retry even after the reservation itself is forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub quantity: u32,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReserveOutcome {
    pub receipt: Receipt,
    /// The same key and body were seen before: this is the first answer again.
    pub replayed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released,
    AlreadyReleased,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed(ReservationView),
    AlreadyCommitted(ReservationView),
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Held {
    buyer: String,
    quantity: u32,
    created_at_ms: u64,
    expires_at_ms: u64,
    /// The drop whose per-buyer count holds these units (0: none).
    in_drop: DropId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
enum FinishedState {
    Released,
    Expired,
    Committed,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Finished {
    held: Held,
    state: FinishedState,
    at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct IdemEntry {
    fingerprint: u64,
    seq: u64,
    quantity: u32,
    created_at_ms: u64,
    expires_at_ms: u64,
}

/// The whole ledger as a plain value, for snapshots.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct LedgerSnapshot {
    sku: u64,
    warehouses: Vec<(String, u64)>,
    available: u64,
    reserved: u64,
    sold: u64,
    low_stock_threshold: u64,
    below_threshold: bool,
    next_seq: u64,
    open: Vec<(u64, Held)>,
    finished: Vec<(u64, Finished)>,
    idempotency: Vec<(String, String, IdemEntry)>,
    gate: Option<DropGate>,
    drop_usage: Vec<(String, u64)>,
}

/// An idempotency key is scoped to its buyer: `(buyer, key)`.
type ScopedKey = (Arc<str>, Arc<str>);

/// Stock of one SKU. See the module comment.
#[derive(Debug, Clone)]
pub struct StockLedger {
    sku: SkuId,
    limits: LedgerLimits,
    warehouses: BTreeMap<String, u64>,
    on_hand_total: u64,
    available: u64,
    reserved: u64,
    sold: u64,
    low_stock_threshold: u64,
    below_threshold: bool,
    next_seq: u64,
    open: FastMap<u64, Held>,
    expiries: BTreeSet<(u64, u64)>,
    /// No open reservation expires before this (a lower bound, so the common
    /// "nothing is due" check costs no tree walk).
    expiry_floor_ms: u64,
    finished: FastMap<u64, Finished>,
    finished_order: VecDeque<u64>,
    idempotency: HashMap<ScopedKey, IdemEntry>,
    /// Insertion order, for forgetting the oldest key first.
    idempotency_order: VecDeque<(ScopedKey, u64)>,
    /// The drop this SKU sells through, if any.
    gate: Option<DropGate>,
    /// Units each buyer holds or bought through `gate`'s drop (buyers at 0 are absent).
    drop_usage: FastMap<Arc<str>, u64>,
    /// Units each buyer holds open in this SKU (derived from `open`; buyers at 0 are absent).
    held_units: FastMap<Box<str>, u64>,
}

impl StockLedger {
    pub fn new(sku: SkuId, limits: LedgerLimits) -> Self {
        Self {
            sku,
            limits,
            warehouses: BTreeMap::new(),
            on_hand_total: 0,
            available: 0,
            reserved: 0,
            sold: 0,
            low_stock_threshold: 0,
            below_threshold: false,
            next_seq: 1,
            open: FastMap::default(),
            expiries: BTreeSet::new(),
            expiry_floor_ms: u64::MAX,
            finished: FastMap::default(),
            finished_order: VecDeque::new(),
            idempotency: HashMap::new(),
            idempotency_order: VecDeque::new(),
            gate: None,
            drop_usage: FastMap::default(),
            held_units: FastMap::default(),
        }
    }

    /// A ledger for a SKU with no stock history yet, with its product's threshold.
    pub fn with_threshold(sku: SkuId, limits: LedgerLimits, low_stock_threshold: u64) -> Self {
        let mut ledger = Self::new(sku, limits);
        ledger.low_stock_threshold = low_stock_threshold;
        ledger
    }

    pub fn sku(&self) -> SkuId {
        self.sku
    }

    pub fn available(&self) -> u64 {
        self.available
    }

    pub fn open_reservations(&self) -> usize {
        self.open.len()
    }

    /// Whether the SKU may be removed from its product at `now_ms`: not
    /// while a hold is open (expire what is due first), nor while a drop it
    /// sells through has not ended.
    pub fn retirable(&self, now_ms: u64) -> Result<(), StockError> {
        if let Some(gate) = self
            .gate
            .as_ref()
            .filter(|g| !g.cancelled && now_ms < g.ends_at_ms)
        {
            return Err(StockError::InOpenDrop { drop: gate.drop });
        }
        match self.open.len() {
            0 => Ok(()),
            open => Err(StockError::HasHolds { open }),
        }
    }

    /// Entries a snapshot carries (reservations and remembered keys), a proxy for its size.
    pub fn state_entries(&self) -> usize {
        self.open.len() + self.finished.len() + self.idempotency.len()
    }

    /// Earliest expiry among open reservations, for the owner's timer.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.expiries.first().map(|&(at, _)| at)
    }

    /// `available + reserved + sold`: changes only through stock settings and adjustments.
    pub fn total_units(&self) -> u64 {
        self.available + self.reserved + self.sold
    }

    /// The drop this SKU sells through, if any.
    pub fn gate(&self) -> Option<&DropGate> {
        self.gate.as_ref()
    }

    /// Units `buyer` holds or bought through drop `drop` in this SKU.
    pub fn drop_usage(&self, drop: DropId, buyer: &str) -> u64 {
        match &self.gate {
            Some(gate) if gate.drop == drop => self.drop_usage.get(buyer).copied().unwrap_or(0),
            _ => 0,
        }
    }

    /// The buyer of every open hold (one entry per hold).
    pub fn open_buyers(&self) -> impl Iterator<Item = &str> {
        self.open.values().map(|held| held.buyer.as_str())
    }

    /// Units `buyer` holds open in this SKU.
    pub fn held_by(&self, buyer: &str) -> u64 {
        self.held_units.get(buyer).copied().unwrap_or(0)
    }

    /// The buyer of reservation `seq`, open or finished (while remembered).
    pub fn holder(&self, seq: u64) -> Option<&str> {
        self.open
            .get(&seq)
            .or_else(|| self.finished.get(&seq).map(|f| &f.held))
            .map(|held| held.buyer.as_str())
    }

    /// Open holds, soonest expiry first, after `after` (the last
    /// `(expires_at_ms, seq)` of the previous page): a seller's view.
    pub fn open_holds(&self, after: Option<(u64, u64)>, limit: usize) -> Vec<ReservationView> {
        use std::ops::Bound;
        let from: Bound<(u64, u64)> = match after {
            Some(last) => Bound::Excluded(last),
            None => Bound::Unbounded,
        };
        let range = self.expiries.range((from, Bound::Unbounded));
        range
            .take(limit)
            .filter_map(|(_, seq)| {
                self.open
                    .get(seq)
                    .map(|held| view(*seq, held, ReservationState::Held))
            })
            .collect()
    }

    pub fn view(&self) -> StockView {
        StockView {
            available: self.available,
            reserved: self.reserved,
            sold: self.sold,
            warehouses: self.warehouses.clone(),
            low_stock_threshold: self.low_stock_threshold,
        }
    }

    // ---- commands -------------------------------------------------------

    /// Releases every reservation whose expiry is at or before `now_ms`.
    pub fn expire_due(&mut self, now_ms: u64, out: &mut Vec<StockEvent>) -> Result<(), StockError> {
        if now_ms < self.expiry_floor_ms {
            return Ok(());
        }
        while let Some(&(at, seq)) = self.expiries.first() {
            if at > now_ms {
                break;
            }
            self.emit(
                StockEvent::Released {
                    seq,
                    at_ms: now_ms,
                    reason: ReleaseReason::Expired,
                },
                out,
            )?;
        }
        self.expiry_floor_ms = self.next_expiry_ms().unwrap_or(u64::MAX);
        self.emit_threshold_crossing(out)
    }

    /// Replaces on-hand per warehouse; optionally sets the low-stock threshold.
    pub fn set_stock(
        &mut self,
        warehouses: Vec<(WarehouseId, u64)>,
        low_stock_threshold: Option<u64>,
        out: &mut Vec<StockEvent>,
    ) -> Result<(), StockError> {
        if warehouses.len() > self.limits.warehouses_max {
            return Err(StockError::TooManyWarehouses {
                max: self.limits.warehouses_max,
            });
        }
        let mut total: u64 = 0;
        for (_, units) in &warehouses {
            if *units > self.limits.units_max {
                return Err(StockError::TooManyUnits {
                    max: self.limits.units_max,
                });
            }
            total += units;
        }
        if total < self.reserved {
            return Err(StockError::StockBelowReserved {
                on_hand: total,
                reserved: self.reserved,
            });
        }
        let warehouses = warehouses
            .into_iter()
            .map(|(w, units)| (w.into_inner(), units))
            .collect();
        self.emit(
            StockEvent::StockSet {
                warehouses,
                low_stock_threshold,
            },
            out,
        )?;
        self.emit_threshold_crossing(out)?;
        Ok(())
    }

    /// Relative correction of one warehouse's on-hand (count, damage, return...).
    pub fn adjust(
        &mut self,
        warehouse: WarehouseId,
        delta: i64,
        reason: String,
        out: &mut Vec<StockEvent>,
    ) -> Result<(), StockError> {
        let magnitude = delta.unsigned_abs();
        if magnitude > self.limits.units_max {
            return Err(StockError::TooManyUnits {
                max: self.limits.units_max,
            });
        }
        let current = self.warehouses.get(warehouse.as_str()).copied();
        if current.is_none() && self.warehouses.len() >= self.limits.warehouses_max {
            return Err(StockError::TooManyWarehouses {
                max: self.limits.warehouses_max,
            });
        }
        let current = current.unwrap_or(0);
        let (new_on_hand, new_total) = if delta >= 0 {
            (current + magnitude, self.on_hand_total + magnitude)
        } else {
            if magnitude > current {
                return Err(StockError::InsufficientOnHand {
                    warehouse: warehouse.into_inner(),
                    on_hand: current,
                    requested: magnitude,
                });
            }
            (current - magnitude, self.on_hand_total - magnitude)
        };
        if new_on_hand > self.limits.units_max {
            return Err(StockError::TooManyUnits {
                max: self.limits.units_max,
            });
        }
        if new_total < self.reserved {
            return Err(StockError::StockBelowReserved {
                on_hand: new_total,
                reserved: self.reserved,
            });
        }
        self.emit(
            StockEvent::StockAdjusted {
                warehouse: warehouse.into_inner(),
                delta,
                reason,
            },
            out,
        )?;
        self.emit_threshold_crossing(out)?;
        Ok(())
    }

    pub fn reserve(
        &mut self,
        cmd: ReserveCmd,
        now_ms: u64,
        out: &mut Vec<StockEvent>,
    ) -> Result<ReserveOutcome, StockError> {
        self.reserve_in_drop(cmd, 0, now_ms, out)
    }

    /// Makes this SKU sell only through `gate`'s drop. The same gate again
    /// changes nothing; the same drop with another window or limit (an
    /// edit) replaces it and keeps each buyer's count; another drop replaces
    /// it and starts a fresh count. A cancelled drop never reopens.
    pub fn attach_drop(
        &mut self,
        gate: DropGate,
        out: &mut Vec<StockEvent>,
    ) -> Result<(), StockError> {
        if self
            .gate
            .as_ref()
            .is_some_and(|g| g.drop == gate.drop && (g.cancelled || *g == gate))
        {
            return Ok(());
        }
        self.emit(StockEvent::DropAttached(gate), out)
    }

    /// The drop ended with `after_drop: "sell"`: this SKU goes back to
    /// normal sale. Nothing happens unless `drop` still gates it (a repeat,
    /// or a later drop that took it, is left alone).
    pub fn release_drop(
        &mut self,
        drop: DropId,
        out: &mut Vec<StockEvent>,
    ) -> Result<(), StockError> {
        self.if_gated_by(drop, StockEvent::DropReleased { drop }, out)
    }

    /// The drop was cancelled: this SKU stops selling through it.
    pub fn cancel_drop(
        &mut self,
        drop: DropId,
        out: &mut Vec<StockEvent>,
    ) -> Result<(), StockError> {
        self.if_gated_by(drop, StockEvent::DropCancelled { drop }, out)
    }

    /// Emits `event` only while `drop` (not cancelled) gates this SKU.
    fn if_gated_by(
        &mut self,
        drop: DropId,
        event: StockEvent,
        out: &mut Vec<StockEvent>,
    ) -> Result<(), StockError> {
        match &self.gate {
            Some(gate) if gate.drop == drop && !gate.cancelled => self.emit(event, out),
            _ => Ok(()),
        }
    }

    /// The answer of an earlier request with the same buyer and idempotency
    /// key, if it is still honoured; `None` when `cmd` would be a new hold.
    /// A key reused with another body is refused.
    pub fn replay(
        &self,
        cmd: &ReserveCmd,
        now_ms: u64,
    ) -> Result<Option<ReserveOutcome>, StockError> {
        if let Some((key, fingerprint)) = &cmd.idempotency {
            let lookup = (Arc::from(cmd.buyer.as_str()), Arc::from(key.as_str()));
            if let Some(entry) = self.idempotency.get(&lookup) {
                if now_ms.saturating_sub(entry.created_at_ms) < self.limits.idempotency_ttl_ms {
                    if entry.fingerprint != *fingerprint {
                        return Err(StockError::IdempotencyKeyReused);
                    }
                    return Ok(Some(ReserveOutcome {
                        receipt: Receipt {
                            seq: entry.seq,
                            quantity: entry.quantity,
                            created_at_ms: entry.created_at_ms,
                            expires_at_ms: entry.expires_at_ms,
                        },
                        replayed: true,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Like `reserve`, for a SKU of a drop whose other SKUs hold
    /// `elsewhere_units` of this buyer's per-buyer allowance.
    pub fn reserve_in_drop(
        &mut self,
        cmd: ReserveCmd,
        elsewhere_units: u64,
        now_ms: u64,
        out: &mut Vec<StockEvent>,
    ) -> Result<ReserveOutcome, StockError> {
        if let Some(outcome) = self.replay(&cmd, now_ms)? {
            return Ok(outcome);
        }
        if let Some(gate) = &self.gate {
            check_live(gate, now_ms)?;
            if gate.per_buyer_limit > 0 {
                let used = self
                    .drop_usage
                    .get(cmd.buyer.as_str())
                    .copied()
                    .unwrap_or(0)
                    + elsewhere_units;
                if used + u64::from(cmd.quantity) > u64::from(gate.per_buyer_limit) {
                    return Err(StockError::PurchaseLimitExceeded {
                        limit: gate.per_buyer_limit,
                        used,
                    });
                }
            }
        } else if let Some(limit) = cmd.shopper_units_max {
            let held = self.held_by(cmd.buyer.as_str());
            if held + u64::from(cmd.quantity) > limit {
                return Err(StockError::HoldLimitExceeded { limit, held });
            }
        }
        if u64::from(cmd.quantity) > self.available {
            return Err(StockError::OutOfStock {
                requested: cmd.quantity,
                available: self.available,
            });
        }
        if self.open.len() >= self.limits.open_reservations_max {
            return Err(StockError::TooManyReservations {
                max: self.limits.open_reservations_max,
            });
        }
        let seq = self.next_seq;
        let expires_at_ms = now_ms.saturating_add(cmd.ttl_ms);
        self.emit(
            StockEvent::Reserved {
                seq,
                buyer: cmd.buyer.into_inner(),
                quantity: cmd.quantity,
                created_at_ms: now_ms,
                expires_at_ms,
                idempotency: cmd.idempotency.map(|(k, f)| (k.into_inner(), f)),
            },
            out,
        )?;
        self.emit_threshold_crossing(out)?;
        Ok(ReserveOutcome {
            receipt: Receipt {
                seq,
                quantity: cmd.quantity,
                created_at_ms: now_ms,
                expires_at_ms,
            },
            replayed: false,
        })
    }

    /// Gives a held reservation's units back. Releasing twice is not an error.
    pub fn release(
        &mut self,
        seq: u64,
        buyer: &BuyerId,
        now_ms: u64,
        out: &mut Vec<StockEvent>,
    ) -> Result<ReleaseOutcome, StockError> {
        let view = self.owned_view(seq, buyer, now_ms)?;
        self.release_view(view, ReleaseReason::Buyer, now_ms, out)
    }

    /// `release` by one of the SKU's sellers: any buyer's hold.
    pub fn release_as_seller(
        &mut self,
        seq: u64,
        now_ms: u64,
        out: &mut Vec<StockEvent>,
    ) -> Result<ReleaseOutcome, StockError> {
        let view = self
            .view_of(seq, now_ms)
            .ok_or(StockError::UnknownReservation)?;
        self.release_view(view, ReleaseReason::Seller, now_ms, out)
    }

    fn release_view(
        &mut self,
        view: ReservationView,
        reason: ReleaseReason,
        now_ms: u64,
        out: &mut Vec<StockEvent>,
    ) -> Result<ReleaseOutcome, StockError> {
        match view.state {
            ReservationState::Held => {
                self.emit(
                    StockEvent::Released {
                        seq: view.seq,
                        at_ms: now_ms,
                        reason,
                    },
                    out,
                )?;
                self.emit_threshold_crossing(out)?;
                Ok(ReleaseOutcome::Released)
            }
            ReservationState::Released | ReservationState::Expired => {
                Ok(ReleaseOutcome::AlreadyReleased)
            }
            ReservationState::Committed => Err(StockError::ReservationCommitted),
        }
    }

    /// Turns a held reservation into a sale. Committing twice answers the same.
    /// Only the order saga commits a buyer's own holds (after payment).
    pub fn commit(
        &mut self,
        seq: u64,
        buyer: &BuyerId,
        now_ms: u64,
        out: &mut Vec<StockEvent>,
    ) -> Result<CommitOutcome, StockError> {
        let view = self.owned_view(seq, buyer, now_ms)?;
        self.commit_view(view, now_ms, out)
    }

    /// `commit` by one of the SKU's sellers (a sale at a till): any buyer's hold.
    pub fn commit_as_seller(
        &mut self,
        seq: u64,
        now_ms: u64,
        out: &mut Vec<StockEvent>,
    ) -> Result<CommitOutcome, StockError> {
        let view = self
            .view_of(seq, now_ms)
            .ok_or(StockError::UnknownReservation)?;
        self.commit_view(view, now_ms, out)
    }

    fn commit_view(
        &mut self,
        view: ReservationView,
        now_ms: u64,
        out: &mut Vec<StockEvent>,
    ) -> Result<CommitOutcome, StockError> {
        let seq = view.seq;
        match view.state {
            ReservationState::Held => {
                let allocation = self.allocate(view.quantity);
                self.emit(
                    StockEvent::Committed {
                        seq,
                        at_ms: now_ms,
                        allocation,
                    },
                    out,
                )?;
                self.emit_threshold_crossing(out)?;
                let view = self
                    .view_of(seq, now_ms)
                    .ok_or(StockError::UnknownReservation)?;
                Ok(CommitOutcome::Committed(view))
            }
            ReservationState::Committed => Ok(CommitOutcome::AlreadyCommitted(view)),
            ReservationState::Released => Err(StockError::ReservationReleased),
            ReservationState::Expired => Err(StockError::ReservationExpired),
        }
    }

    /// A reservation as its owner sees it; another buyer's is unknown.
    /// A reservation as its owner sees it (`Some(buyer)`: another buyer's is
    /// unknown), or as the SKU's seller sees it (`None`).
    pub fn reservation(
        &self,
        seq: u64,
        buyer: Option<&BuyerId>,
        now_ms: u64,
    ) -> Result<ReservationView, StockError> {
        match buyer {
            Some(buyer) => self.owned_view(seq, buyer, now_ms),
            None => self
                .view_of(seq, now_ms)
                .ok_or(StockError::UnknownReservation),
        }
    }

    fn owned_view(
        &self,
        seq: u64,
        buyer: &BuyerId,
        now_ms: u64,
    ) -> Result<ReservationView, StockError> {
        match self.view_of(seq, now_ms) {
            Some(view) if view.buyer == buyer.as_str() => Ok(view),
            _ => Err(StockError::UnknownReservation),
        }
    }

    fn view_of(&self, seq: u64, now_ms: u64) -> Option<ReservationView> {
        if let Some(held) = self.open.get(&seq) {
            return Some(view(seq, held, ReservationState::Held));
        }
        let finished = self.finished.get(&seq)?;
        if now_ms.saturating_sub(finished.at_ms) >= self.limits.finished_ttl_ms {
            return None;
        }
        let state = match finished.state {
            FinishedState::Released => ReservationState::Released,
            FinishedState::Expired => ReservationState::Expired,
            FinishedState::Committed => ReservationState::Committed,
        };
        Some(view(seq, &finished.held, state))
    }

    /// Takes `quantity` units from warehouses in name order.
    fn allocate(&self, quantity: u32) -> Vec<(String, u32)> {
        let mut left = u64::from(quantity);
        let mut allocation = Vec::new();
        for (name, &on_hand) in &self.warehouses {
            if left == 0 {
                break;
            }
            let take = on_hand.min(left);
            if take > 0 {
                allocation.push((name.clone(), take as u32));
                left -= take;
            }
        }
        allocation
    }

    fn emit_threshold_crossing(&mut self, out: &mut Vec<StockEvent>) -> Result<(), StockError> {
        let threshold = self.low_stock_threshold;
        let below = threshold > 0 && self.available < threshold;
        if below == self.below_threshold {
            return Ok(());
        }
        let available = self.available;
        let event = if below {
            StockEvent::LowStock {
                available,
                threshold,
            }
        } else {
            StockEvent::Replenished {
                available,
                threshold,
            }
        };
        self.emit(event, out)
    }

    /// Applies an event a command has validated and records it for the WAL.
    /// Failing here means a bug: the owner stops and rebuilds from durable state.
    fn emit(&mut self, event: StockEvent, out: &mut Vec<StockEvent>) -> Result<(), StockError> {
        self.apply(&event)?;
        out.push(event);
        Ok(())
    }

    // ---- the one mutation -----------------------------------------------

    /// Applies one event. Used by commands and by WAL replay alike.
    pub fn apply(&mut self, event: &StockEvent) -> Result<(), InvariantViolation> {
        match event {
            StockEvent::StockSet {
                warehouses,
                low_stock_threshold,
            } => {
                let total: u64 = warehouses.iter().map(|(_, u)| *u).sum();
                if total < self.reserved {
                    return Err(violation(format!(
                        "stock set to {total} below reserved {}",
                        self.reserved
                    )));
                }
                self.warehouses = warehouses.iter().cloned().collect();
                self.on_hand_total = total;
                self.available = total - self.reserved;
                if let Some(threshold) = low_stock_threshold {
                    self.low_stock_threshold = *threshold;
                }
            }
            StockEvent::StockAdjusted {
                warehouse, delta, ..
            } => {
                let magnitude = delta.unsigned_abs();
                let slot = self.warehouses.entry(warehouse.clone()).or_insert(0);
                if *delta >= 0 {
                    *slot += magnitude;
                    self.on_hand_total += magnitude;
                    self.available += magnitude;
                } else {
                    if *slot < magnitude || self.available < magnitude {
                        return Err(violation(format!(
                            "adjustment {delta} exceeds on-hand {} or available {}",
                            *slot, self.available
                        )));
                    }
                    *slot -= magnitude;
                    self.on_hand_total -= magnitude;
                    self.available -= magnitude;
                }
            }
            StockEvent::Reserved {
                seq,
                buyer,
                quantity,
                created_at_ms,
                expires_at_ms,
                idempotency,
            } => {
                let quantity_units = u64::from(*quantity);
                if quantity_units > self.available || self.open.contains_key(seq) {
                    return Err(violation(format!(
                        "reservation {seq} of {quantity} with {} available",
                        self.available
                    )));
                }
                self.available -= quantity_units;
                self.reserved += quantity_units;
                match self.held_units.get_mut(buyer.as_str()) {
                    Some(units) => *units += quantity_units,
                    None => {
                        self.held_units
                            .insert(buyer.as_str().into(), quantity_units);
                    }
                }
                let in_drop = match &self.gate {
                    Some(gate) => {
                        *self
                            .drop_usage
                            .entry(Arc::from(buyer.as_str()))
                            .or_insert(0) += quantity_units;
                        gate.drop
                    }
                    None => DropId(0),
                };
                self.open.insert(
                    *seq,
                    Held {
                        buyer: buyer.clone(),
                        quantity: *quantity,
                        created_at_ms: *created_at_ms,
                        expires_at_ms: *expires_at_ms,
                        in_drop,
                    },
                );
                self.expiries.insert((*expires_at_ms, *seq));
                self.expiry_floor_ms = self.expiry_floor_ms.min(*expires_at_ms);
                self.next_seq = self.next_seq.max(seq + 1);
                if let Some((key, fingerprint)) = idempotency {
                    self.remember_key(
                        buyer,
                        key,
                        IdemEntry {
                            fingerprint: *fingerprint,
                            seq: *seq,
                            quantity: *quantity,
                            created_at_ms: *created_at_ms,
                            expires_at_ms: *expires_at_ms,
                        },
                    );
                }
            }
            StockEvent::Released { seq, at_ms, reason } => {
                let held = self.take_open(*seq)?;
                let quantity = u64::from(held.quantity);
                self.reserved -= quantity;
                self.available += quantity;
                self.uncount(&held);
                self.unhold(&held);
                let state = match reason {
                    ReleaseReason::Buyer | ReleaseReason::Seller => FinishedState::Released,
                    ReleaseReason::Expired => FinishedState::Expired,
                };
                self.remember_finished(*seq, held, state, *at_ms);
            }
            StockEvent::Committed {
                seq,
                at_ms,
                allocation,
            } => {
                let held = self.take_open(*seq)?;
                let quantity = u64::from(held.quantity);
                let allocated: u64 = allocation.iter().map(|(_, u)| u64::from(*u)).sum();
                if allocated != quantity {
                    return Err(violation(format!(
                        "commit of {seq} allocates {allocated} for {quantity}"
                    )));
                }
                for (warehouse, units) in allocation {
                    let slot = self.warehouses.get_mut(warehouse).ok_or_else(|| {
                        violation(format!("commit from unknown warehouse {warehouse}"))
                    })?;
                    let units = u64::from(*units);
                    if *slot < units {
                        return Err(violation(format!(
                            "commit takes {units} from {warehouse} holding {slot}"
                        )));
                    }
                    *slot -= units;
                }
                self.on_hand_total -= quantity;
                self.reserved -= quantity;
                self.sold += quantity;
                self.unhold(&held);
                self.remember_finished(*seq, held, FinishedState::Committed, *at_ms);
            }
            StockEvent::LowStock { .. } => self.below_threshold = true,
            StockEvent::Replenished { .. } => self.below_threshold = false,
            StockEvent::DropAttached(gate) => {
                if self.gate.as_ref().is_none_or(|g| g.drop != gate.drop) {
                    self.drop_usage.clear();
                }
                self.gate = Some(gate.clone());
            }
            StockEvent::DropCancelled { drop } => match &mut self.gate {
                Some(gate) if gate.drop == *drop => gate.cancelled = true,
                _ => return Err(violation(format!("cancel of drop {} not attached", drop.0))),
            },
            StockEvent::DropReleased { drop } => match &self.gate {
                Some(gate) if gate.drop == *drop => {
                    self.gate = None;
                    self.drop_usage.clear();
                }
                _ => {
                    return Err(violation(format!(
                        "release of drop {} not attached",
                        drop.0
                    )))
                }
            },
        }
        Ok(())
    }

    /// A released reservation gives its units back to its buyer's drop allowance.
    fn uncount(&mut self, held: &Held) {
        if held.in_drop == DropId(0) || self.gate.as_ref().is_none_or(|g| g.drop != held.in_drop) {
            return;
        }
        if let Some(used) = self.drop_usage.get_mut(held.buyer.as_str()) {
            *used = used.saturating_sub(u64::from(held.quantity));
            if *used == 0 {
                self.drop_usage.remove(held.buyer.as_str());
            }
        }
    }

    /// A hold ended: its units no longer count against its buyer here.
    fn unhold(&mut self, held: &Held) {
        if let Some(units) = self.held_units.get_mut(held.buyer.as_str()) {
            *units = units.saturating_sub(u64::from(held.quantity));
            if *units == 0 {
                self.held_units.remove(held.buyer.as_str());
            }
        }
    }

    fn take_open(&mut self, seq: u64) -> Result<Held, InvariantViolation> {
        let held = self
            .open
            .remove(&seq)
            .ok_or_else(|| violation(format!("reservation {seq} is not open")))?;
        self.expiries.remove(&(held.expires_at_ms, seq));
        Ok(held)
    }

    fn remember_finished(&mut self, seq: u64, held: Held, state: FinishedState, at_ms: u64) {
        self.finished.insert(seq, Finished { held, state, at_ms });
        self.finished_order.push_back(seq);
        while self.finished_order.len() > self.limits.finished_max {
            if let Some(old) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
    }

    fn remember_key(&mut self, buyer: &str, key: &str, entry: IdemEntry) {
        let map_key: ScopedKey = (Arc::from(buyer), Arc::from(key));
        self.idempotency.insert(map_key.clone(), entry);
        self.idempotency_order.push_back((map_key, entry.seq));
        while self.idempotency_order.len() > self.limits.idempotency_keys_max {
            if let Some((old, seq)) = self.idempotency_order.pop_front() {
                if self.idempotency.get(&old).is_some_and(|e| e.seq == seq) {
                    self.idempotency.remove(&old);
                }
            }
        }
    }

    /// Drops remembered keys and finished reservations past their retention.
    /// Lookups already ignore them; this only frees the memory.
    pub fn prune(&mut self, now_ms: u64) {
        while let Some(&seq) = self.finished_order.front() {
            let stale = self
                .finished
                .get(&seq)
                .is_none_or(|f| now_ms.saturating_sub(f.at_ms) >= self.limits.finished_ttl_ms);
            if !stale {
                break;
            }
            self.finished_order.pop_front();
            self.finished.remove(&seq);
        }
        while let Some((key, seq)) = self.idempotency_order.front() {
            let entry = self.idempotency.get(key).copied();
            let stale = entry.is_none_or(|e| {
                e.seq != *seq
                    || now_ms.saturating_sub(e.created_at_ms) >= self.limits.idempotency_ttl_ms
            });
            if !stale {
                break;
            }
            if entry.is_some_and(|e| e.seq == *seq) {
                self.idempotency.remove(key);
            }
            self.idempotency_order.pop_front();
        }
    }

    /// Checks the counters against each other. Cheap checks always; the full
    /// sum over open reservations when `thorough`.
    pub fn check_invariants(&self, thorough: bool) -> Result<(), InvariantViolation> {
        if self.available + self.reserved != self.on_hand_total {
            return Err(violation(format!(
                "available {} + reserved {} != on-hand {}",
                self.available, self.reserved, self.on_hand_total
            )));
        }
        if self.expiries.len() != self.open.len() {
            return Err(violation("expiry index out of step".into()));
        }
        if thorough {
            let on_hand: u64 = self.warehouses.values().sum();
            if on_hand != self.on_hand_total {
                return Err(violation(format!(
                    "warehouses hold {on_hand}, total says {}",
                    self.on_hand_total
                )));
            }
            let held: u64 = self.open.values().map(|h| u64::from(h.quantity)).sum();
            if held != self.reserved {
                return Err(violation(format!(
                    "open reservations hold {held}, reserved says {}",
                    self.reserved
                )));
            }
            let by_buyer: u64 = self.held_units.values().sum();
            if by_buyer != self.reserved {
                return Err(violation(format!(
                    "buyers hold {by_buyer}, reserved says {}",
                    self.reserved
                )));
            }
        }
        Ok(())
    }

    // ---- snapshots --------------------------------------------------------

    pub fn snapshot(&self) -> LedgerSnapshot {
        let mut open: Vec<(u64, Held)> = self.open.iter().map(|(s, h)| (*s, h.clone())).collect();
        open.sort_unstable_by_key(|(seq, _)| *seq);
        LedgerSnapshot {
            sku: self.sku.0,
            warehouses: self
                .warehouses
                .iter()
                .map(|(w, u)| (w.clone(), *u))
                .collect(),
            available: self.available,
            reserved: self.reserved,
            sold: self.sold,
            low_stock_threshold: self.low_stock_threshold,
            below_threshold: self.below_threshold,
            next_seq: self.next_seq,
            open,
            finished: self
                .finished_order
                .iter()
                .filter_map(|seq| self.finished.get(seq).map(|f| (*seq, f.clone())))
                .collect(),
            idempotency: self
                .idempotency_order
                .iter()
                .filter_map(|(key, seq)| {
                    let entry = self.idempotency.get(key)?;
                    (entry.seq == *seq).then(|| (key.0.to_string(), key.1.to_string(), *entry))
                })
                .collect(),
            gate: self.gate.clone(),
            drop_usage: {
                let mut usage: Vec<(String, u64)> = self
                    .drop_usage
                    .iter()
                    .map(|(buyer, units)| (buyer.to_string(), *units))
                    .collect();
                usage.sort_unstable();
                usage
            },
        }
    }

    pub fn restore(
        snapshot: LedgerSnapshot,
        limits: LedgerLimits,
    ) -> Result<Self, InvariantViolation> {
        let mut ledger = Self::new(SkuId(snapshot.sku), limits);
        ledger.on_hand_total = snapshot.warehouses.iter().map(|(_, u)| *u).sum();
        ledger.warehouses = snapshot.warehouses.into_iter().collect();
        ledger.available = snapshot.available;
        ledger.reserved = snapshot.reserved;
        ledger.sold = snapshot.sold;
        ledger.low_stock_threshold = snapshot.low_stock_threshold;
        ledger.below_threshold = snapshot.below_threshold;
        ledger.next_seq = snapshot.next_seq;
        for (seq, held) in snapshot.open {
            *ledger
                .held_units
                .entry(held.buyer.as_str().into())
                .or_insert(0) += u64::from(held.quantity);
            ledger.expiries.insert((held.expires_at_ms, seq));
            ledger.expiry_floor_ms = ledger.expiry_floor_ms.min(held.expires_at_ms);
            ledger.open.insert(seq, held);
        }
        for (seq, finished) in snapshot.finished {
            ledger.remember_finished(seq, finished.held, finished.state, finished.at_ms);
        }
        for (buyer, key, entry) in snapshot.idempotency {
            ledger.remember_key(&buyer, &key, entry);
        }
        ledger.gate = snapshot.gate;
        ledger.drop_usage = snapshot
            .drop_usage
            .into_iter()
            .map(|(buyer, units)| (Arc::from(buyer.as_str()), units))
            .collect();
        ledger.check_invariants(true)?;
        Ok(ledger)
    }
}

impl PartialEq for StockLedger {
    /// Two ledgers are equal when every observable fact is; limits are configuration.
    fn eq(&self, other: &Self) -> bool {
        self.snapshot() == other.snapshot()
    }
}

fn view(seq: u64, held: &Held, state: ReservationState) -> ReservationView {
    ReservationView {
        seq,
        buyer: held.buyer.clone(),
        quantity: held.quantity,
        created_at_ms: held.created_at_ms,
        expires_at_ms: held.expires_at_ms,
        state,
    }
}

/// Whether a drop SKU may be reserved at `now_ms`.
pub fn check_live(gate: &DropGate, now_ms: u64) -> Result<(), StockError> {
    let why = if gate.cancelled {
        NotLive::Cancelled
    } else if now_ms < gate.starts_at_ms {
        NotLive::NotStarted {
            starts_at_ms: gate.starts_at_ms,
        }
    } else if now_ms >= gate.ends_at_ms {
        NotLive::Ended {
            ended_at_ms: gate.ends_at_ms,
        }
    } else {
        return Ok(());
    };
    Err(StockError::DropNotLive {
        drop: gate.drop,
        why,
    })
}

fn violation(message: String) -> InvariantViolation {
    InvariantViolation(message)
}
