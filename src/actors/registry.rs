//! The SKU registry: every known SKU, the state of its actor (cold, parked or
//! active), which arbiter runs it (hash of the id), activation on first use and
//! parking when idle. Senders reach an actor only through here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use actix::{Addr, ArbiterHandle, Supervisor};
use dashmap::DashMap;

use crate::domain::product::{Money, Product};
use crate::domain::stock::StockLedger;
use crate::domain::SkuId;

use super::sku::{Gate, Init, SkuActor, SkuCommand, SkuDeps, SkuHome};

/// What the registry knows of a SKU without asking its actor.
#[derive(Debug)]
pub struct SkuInfo {
    pub id: SkuId,
    pub product: Arc<Product>,
    /// Position of this SKU in `product.skus`.
    pub index: usize,
}

impl SkuInfo {
    pub fn code(&self) -> &str {
        &self.product.skus[self.index].code
    }

    pub fn tenant(&self) -> &str {
        &self.product.tenant
    }

    pub fn price(&self) -> &Money {
        &self.product.skus[self.index].price
    }

    pub fn initial_threshold(&self) -> u64 {
        self.product.skus[self.index].low_stock_threshold
    }
}

enum State {
    /// No actor; the durable snapshot (or none, for a new SKU) is the state.
    Cold,
    /// No actor; the ledger waits here until its snapshot is durable.
    Parked {
        ledger: Box<StockLedger>,
        generation: u64,
    },
    Active {
        addr: Addr<SkuActor>,
        gate: Arc<Gate>,
        generation: u64,
    },
}

struct Slot {
    info: Arc<SkuInfo>,
    state: State,
    /// Being removed from its product: commands are refused (its own
    /// `Retire` aside) and its actor does not park.
    retiring: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("unknown SKU")]
    UnknownSku,
    #[error("the SKU's mailbox is full")]
    Overloaded,
    #[error("the SKU's actor is unavailable")]
    Unavailable,
}

pub struct Registry {
    slots: DashMap<SkuId, Slot>,
    codes: DashMap<Box<str>, SkuId>,
    arbiters: Vec<ArbiterHandle>,
    deps: Arc<SkuDeps>,
    mailbox_capacity: u32,
    next_generation: AtomicU64,
}

/// Spreads SKU ids over arbiters (splitmix64 finaliser; ids are sequential).
fn placement(sku: SkuId, shards: usize) -> usize {
    let mut x = sku.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x % shards as u64) as usize
}

impl Registry {
    /// `deps` receives a weak handle to the registry, for actors that park themselves.
    pub fn new(
        arbiters: Vec<ArbiterHandle>,
        mailbox_capacity: u32,
        deps: impl FnOnce(Weak<dyn SkuHome>) -> SkuDeps,
    ) -> Arc<Self> {
        assert!(!arbiters.is_empty(), "at least one arbiter");
        Arc::new_cyclic(|weak| Self {
            slots: DashMap::new(),
            codes: DashMap::new(),
            arbiters,
            deps: Arc::new(deps(weak.clone() as Weak<dyn SkuHome>)),
            mailbox_capacity,
            next_generation: AtomicU64::new(1),
        })
    }

    /// Registers a SKU. `ledger` is its recovered state, if it has one in memory.
    pub fn insert(&self, info: SkuInfo, ledger: Option<StockLedger>) {
        let id = info.id;
        self.codes.insert(info.code().into(), id);
        let state = match ledger {
            Some(ledger) => State::Parked {
                ledger: Box::new(ledger),
                generation: 0,
            },
            None => State::Cold,
        };
        self.slots.insert(
            id,
            Slot {
                info: Arc::new(info),
                state,
                retiring: false,
            },
        );
    }

    /// Replaces what is known of an existing SKU (its product changed; the
    /// code does not); false when the SKU is unknown.
    pub fn update_info(&self, info: SkuInfo) -> bool {
        match self.slots.get_mut(&info.id) {
            Some(mut slot) => {
                slot.info = Arc::new(info);
                true
            }
            None => false,
        }
    }

    pub fn contains_code(&self, code: &str) -> bool {
        self.codes.contains_key(code)
    }

    pub fn id_of(&self, code: &str) -> Option<SkuId> {
        self.codes.get(code).map(|id| *id)
    }

    pub fn info(&self, sku: SkuId) -> Option<Arc<SkuInfo>> {
        self.slots.get(&sku).map(|slot| slot.info.clone())
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Delivers a command to the SKU's actor, starting it if needed; none
    /// while the SKU is being removed.
    pub fn send(&self, sku: SkuId, command: SkuCommand) -> Result<(), SendError> {
        self.deliver(sku, command, false)
    }

    /// Starts removing a SKU: from now on it takes no command but this
    /// `retire` (`SkuCommand::Retire`), whose answer says whether it may go.
    /// Then `remove` ends it, or `keep` takes it back.
    pub fn retire(&self, sku: SkuId, command: SkuCommand) -> Result<(), SendError> {
        match self.slots.get_mut(&sku) {
            Some(mut slot) if !slot.retiring => slot.retiring = true,
            Some(_) => return Err(SendError::Unavailable),
            None => return Err(SendError::UnknownSku),
        }
        let sent = self.deliver(sku, command, true);
        if sent.is_err() {
            self.set_retiring(sku, false);
        }
        sent
    }

    /// A removal was abandoned: the SKU takes commands again (its actor is
    /// told with `SkuCommand::Retire { retire: false }` sent after this).
    pub fn keep(&self, sku: SkuId) {
        self.set_retiring(sku, false);
    }

    fn set_retiring(&self, sku: SkuId, retiring: bool) {
        if let Some(mut slot) = self.slots.get_mut(&sku) {
            slot.retiring = retiring;
        }
    }

    /// Forgets a SKU being retired: its code is free again and its actor
    /// stops once this drops the last address of it.
    pub fn remove(&self, sku: SkuId) {
        if let Some((_, slot)) = self.slots.remove(&sku) {
            let code = slot.info.code().to_owned();
            self.codes.remove_if(code.as_str(), |_, id| *id == sku);
        }
    }

    fn deliver(&self, sku: SkuId, command: SkuCommand, retiring: bool) -> Result<(), SendError> {
        for _ in 0..2 {
            if let Some(slot) = self.slots.get(&sku) {
                if slot.retiring != retiring {
                    return Err(SendError::Unavailable);
                }
                if let State::Active { addr, gate, .. } = &slot.state {
                    if addr.connected() {
                        if !gate.try_enter() {
                            metrics::counter!("flashdrop_mailbox_full_total").increment(1);
                            return Err(SendError::Overloaded);
                        }
                        // The gate bounds the mailbox; actix's per-sender capacity
                        // cannot, because every request shares this one sender.
                        addr.do_send(command);
                        return Ok(());
                    }
                }
            } else {
                return Err(SendError::UnknownSku);
            }
            let Some(mut slot) = self.slots.get_mut(&sku) else {
                return Err(SendError::UnknownSku);
            };
            if matches!(&slot.state, State::Active { addr, .. } if addr.connected()) {
                continue;
            }
            self.activate(sku, &mut slot);
        }
        tracing::error!(sku = sku.0, "SKU actor could not be started");
        Err(SendError::Unavailable)
    }

    /// Starts the SKU's actor if it has none (used after recovery for SKUs
    /// with open reservations, whose expiry timers must run).
    pub fn ensure_active(&self, sku: SkuId) {
        if let Some(mut slot) = self.slots.get_mut(&sku) {
            if !matches!(&slot.state, State::Active { addr, .. } if addr.connected()) {
                self.activate(sku, &mut slot);
            }
        }
    }

    fn activate(&self, sku: SkuId, slot: &mut Slot) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let init = match std::mem::replace(&mut slot.state, State::Cold) {
            State::Cold => Init::Load,
            State::Parked { ledger, .. } => Init::Ledger(ledger),
            // Its actor is gone without parking: rebuild from durable state.
            State::Active { .. } => Init::Rebuild,
        };
        let gate = Arc::new(Gate::new(self.mailbox_capacity));
        let deps = self.deps.clone();
        let actor_gate = gate.clone();
        let threshold = slot.info.initial_threshold();
        let arbiter = &self.arbiters[placement(sku, self.arbiters.len())];
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| {
            SkuActor::new(sku, threshold, generation, deps, actor_gate, init)
        });
        metrics::counter!("flashdrop_sku_activations_total").increment(1);
        slot.state = State::Active {
            addr,
            gate,
            generation,
        };
    }

    /// Counts of SKUs by actor state: (cold, parked, active).
    pub fn census(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for slot in self.slots.iter() {
            match slot.state {
                State::Cold => counts.0 += 1,
                State::Parked { .. } => counts.1 += 1,
                State::Active { .. } => counts.2 += 1,
            }
        }
        counts
    }
}

impl SkuHome for Registry {
    /// An idle actor hands its ledger back. Refused when a message is queued
    /// for it or it is no longer the SKU's current actor.
    fn park(
        &self,
        sku: SkuId,
        generation: u64,
        ledger: &mut Option<StockLedger>,
        gate: &Gate,
    ) -> bool {
        let Some(mut slot) = self.slots.get_mut(&sku) else {
            return false;
        };
        let current =
            matches!(&slot.state, State::Active { generation: g, .. } if *g == generation);
        if !current || gate.depth() != 0 || slot.retiring {
            return false;
        }
        let Some(ledger) = ledger.take() else {
            return false;
        };
        slot.state = State::Parked {
            ledger: Box::new(ledger),
            generation,
        };
        metrics::counter!("flashdrop_sku_passivations_total").increment(1);
        true
    }

    /// The snapshot of a parked ledger is durable: forget the in-memory copy.
    fn parked_durable(&self, sku: SkuId, generation: u64) {
        if let Some(mut slot) = self.slots.get_mut(&sku) {
            if matches!(&slot.state, State::Parked { generation: g, .. } if *g == generation) {
                slot.state = State::Cold;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_sequential_ids_evenly() {
        let mut counts = [0usize; 4];
        for id in 0..40_000 {
            counts[placement(SkuId(id), 4)] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
    }
}
