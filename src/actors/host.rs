//! The entity host: where entities of one kind (orders, carts, drops) live while
//! they are in memory. It hands out resident entities, places their actors
//! on the arbiters in turn, and keeps memory a function of what is active:
//! past `resident_max` entities, the least recently used that may leave
//! (durable, no actor running) leave first, to be activated again from
//! their snapshot on demand. The policy is CLOCK, the usual approximation
//! of LRU: a use marks an entity, the hand passes over marked ones once.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::ArbiterHandle;
use dashmap::DashMap;
use parking_lot::Mutex;

/// An entity the host keeps.
pub trait Hosted: Send + Sync + 'static {
    /// It may leave memory now: its last state is durable in its snapshot
    /// and no actor runs for it. Asked under the host's lock on its shard:
    /// quick, and never back into the host.
    fn can_leave(&self) -> bool;
    /// It has left: whoever still holds it must activate it again rather
    /// than start an actor on this copy. Called under the same lock, after
    /// `can_leave` said yes.
    fn left(&self);
}

/// What names a hosted entity (an `OrderId`, a cart's owner, a `DropId`).
pub trait HostKey: Copy + Eq + Hash + Send + Sync + 'static {}

impl<K: Copy + Eq + Hash + Send + Sync + 'static> HostKey for K {}

/// Entities the hand visits at most per insertion (or `trim`).
const VISITS_MAX: usize = 64;

struct Slot<E> {
    entity: Arc<E>,
    used: AtomicBool,
}

pub struct EntityHost<K: HostKey, E: Hosted> {
    kind: &'static str,
    resident: DashMap<K, Slot<E>>,
    /// Resident ids in the order the hand visits them.
    hand: Mutex<VecDeque<K>>,
    resident_max: usize,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
}

impl<K: HostKey, E: Hosted> EntityHost<K, E> {
    pub fn new(kind: &'static str, resident_max: usize, arbiters: Vec<ArbiterHandle>) -> Self {
        Self {
            kind,
            resident: DashMap::new(),
            hand: Mutex::new(VecDeque::new()),
            resident_max: resident_max.max(1),
            arbiters,
            next_arbiter: AtomicUsize::new(0),
        }
    }

    /// The resident entity `id`, marked as used.
    pub fn get(&self, id: K) -> Option<Arc<E>> {
        self.resident.get(&id).map(|slot| {
            slot.used.store(true, Ordering::Relaxed);
            slot.entity.clone()
        })
    }

    /// The resident entity `id`, or `activate()`'s, which becomes resident.
    /// `activate` runs without a lock held (it may read the disk); when two
    /// callers race, the first to insert wins and both get its entity.
    pub fn get_or_activate<Err>(
        &self,
        id: K,
        activate: impl FnOnce() -> Result<Option<E>, Err>,
    ) -> Result<Option<Arc<E>>, Err> {
        if let Some(entity) = self.get(id) {
            return Ok(Some(entity));
        }
        let Some(entity) = activate()? else {
            return Ok(None);
        };
        metrics::counter!("flashdrop_entities_activated_total", "kind" => self.kind).increment(1);
        Ok(Some(self.insert_if_absent(id, Arc::new(entity))))
    }

    /// Makes `entity` resident unless `id` already is; answers the resident one.
    pub fn insert_if_absent(&self, id: K, entity: Arc<E>) -> Arc<E> {
        use dashmap::mapref::entry::Entry;
        let resident = match self.resident.entry(id) {
            Entry::Occupied(slot) => return slot.get().entity.clone(),
            Entry::Vacant(slot) => {
                slot.insert(Slot {
                    entity: entity.clone(),
                    used: AtomicBool::new(true),
                });
                entity
            }
        };
        let mut hand = self.hand.lock();
        hand.push_back(id);
        self.passivate(&mut hand);
        resident
    }

    /// Takes `id` out of memory whatever it is (its state was deleted).
    pub fn remove(&self, id: K) -> Option<Arc<E>> {
        self.resident.remove(&id).map(|(_, slot)| slot.entity)
    }

    /// Takes `id` out of memory if `leave` says so, asked under the lock on
    /// its shard (so nothing activates it meanwhile).
    pub fn remove_if(&self, id: K, leave: impl FnOnce(&E) -> bool) -> bool {
        self.resident
            .remove_if(&id, |_, slot| leave(&slot.entity))
            .is_some()
    }

    /// More entities are resident than `resident_max`: those that could
    /// leave should not linger.
    pub fn over_cap(&self) -> bool {
        self.resident.len() > self.resident_max
    }

    /// Up to `max` resident ids whose entity satisfies `pick`.
    pub fn find(&self, max: usize, pick: impl Fn(&E) -> bool) -> Vec<K> {
        self.resident
            .iter()
            .filter(|slot| pick(&slot.entity))
            .map(|slot| *slot.key())
            .take(max)
            .collect()
    }

    /// Takes `id` out of memory if it may leave.
    pub fn remove_if_idle(&self, id: K) -> bool {
        let gone = self.remove_if(id, |entity| {
            let leaves = entity.can_leave();
            if leaves {
                entity.left();
            }
            leaves
        });
        if gone {
            metrics::counter!("flashdrop_entities_passivated_total", "kind" => self.kind)
                .increment(1);
        }
        gone
    }

    /// Lets entities leave if more than `resident_max` are resident (an
    /// entity just became able to: its actor stopped).
    pub fn trim(&self) {
        if self.resident.len() > self.resident_max {
            self.passivate(&mut self.hand.lock());
        }
    }

    /// While more than `resident_max` are resident, the least recently used
    /// that may leave do. Entities that may not (a saga running, a change
    /// not yet in a snapshot) stay: what bounds those is the kind's own
    /// limit on active entities.
    fn passivate(&self, hand: &mut VecDeque<K>) {
        // Ids of entities that left (or were removed) linger in the queue
        // until the hand passes; keep it within twice what is resident.
        if hand.len() > 2 * self.resident.len() + 64 {
            let mut seen = HashSet::with_capacity(hand.len());
            hand.retain(|id| self.resident.contains_key(id) && seen.insert(*id));
        }
        if self.resident.len() <= self.resident_max {
            return;
        }
        // Two passes at most (one clears the marks, one finds the unmarked),
        // and a bounded number of visits per call: when most residents may
        // not leave yet, each insertion costs at most `VISITS_MAX` steps.
        let mut budget = (2 * hand.len()).min(VISITS_MAX);
        while self.resident.len() > self.resident_max && budget > 0 {
            budget -= 1;
            let Some(id) = hand.pop_front() else {
                break;
            };
            let Some(used) = self
                .resident
                .get(&id)
                .map(|slot| slot.used.swap(false, Ordering::Relaxed))
            else {
                continue;
            };
            if used || !self.remove_if_idle(id) {
                hand.push_back(id);
            }
        }
        metrics::gauge!("flashdrop_entities_resident", "kind" => self.kind)
            .set(self.resident.len() as f64);
    }

    /// How many are in memory.
    pub fn len(&self) -> usize {
        self.resident.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resident.is_empty()
    }

    /// Every resident entity (a copy of the list: no lock is held after).
    pub fn residents(&self) -> Vec<(K, Arc<E>)> {
        self.resident
            .iter()
            .map(|slot| (*slot.key(), slot.entity.clone()))
            .collect()
    }

    /// The arbiter for the next actor: each in turn (`None`: the current one).
    pub fn arbiter(&self) -> Option<&ArbiterHandle> {
        let i = self.next_arbiter.fetch_add(1, Ordering::Relaxed) % self.arbiters.len().max(1);
        self.arbiters.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    struct Thing {
        busy: AtomicBool,
        gone: AtomicBool,
    }

    impl Thing {
        fn new(busy: bool) -> Self {
            Self {
                busy: AtomicBool::new(busy),
                gone: AtomicBool::new(false),
            }
        }
    }

    impl Hosted for Thing {
        fn can_leave(&self) -> bool {
            !self.busy.load(Ordering::Relaxed)
        }
        fn left(&self) {
            self.gone.store(true, Ordering::Relaxed);
        }
    }

    #[test]
    fn past_the_cap_the_least_recently_used_idle_entity_leaves() {
        let host: EntityHost<u128, Thing> = EntityHost::new("test", 3, Vec::new());
        let things: Vec<_> = (0..5).map(|_| Arc::new(Thing::new(false))).collect();
        for (i, thing) in things.iter().take(4).enumerate() {
            host.insert_if_absent(i as u128, thing.clone());
        }
        // All were used once: the oldest left.
        assert!(host.get(0).is_none() && things[0].gone.load(Ordering::Relaxed));
        // 1 and 3 are used again; 2 is now the least recently used.
        host.get(1);
        host.get(3);
        host.insert_if_absent(4, things[4].clone());
        assert_eq!(host.len(), 3);
        assert!(host.get(2).is_none(), "the least recently used left");
        assert!(things[2].gone.load(Ordering::Relaxed));
        assert!(host.get(1).is_some() && host.get(3).is_some() && host.get(4).is_some());
    }

    #[test]
    fn an_entity_that_may_not_leave_stays_and_the_cap_gives_way() {
        let host: EntityHost<u128, Thing> = EntityHost::new("test", 2, Vec::new());
        for i in 0..5 {
            host.insert_if_absent(i, Arc::new(Thing::new(true)));
        }
        assert_eq!(host.len(), 5, "busy entities never leave");
        host.insert_if_absent(5, Arc::new(Thing::new(false)));
        // Once the busy ones may leave, the next insertion brings it back to the cap.
        for (_, thing) in host.residents() {
            thing.busy.store(false, Ordering::Relaxed);
        }
        host.insert_if_absent(6, Arc::new(Thing::new(false)));
        assert_eq!(host.len(), 2);
    }

    #[test]
    fn activation_races_end_with_one_resident_copy() {
        let host: EntityHost<u128, Thing> = EntityHost::new("test", 10, Vec::new());
        let first = host.insert_if_absent(7, Arc::new(Thing::new(false)));
        let second = host
            .get_or_activate::<()>(7, || Ok(Some(Thing::new(false))))
            .unwrap()
            .unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        let loaded = host
            .get_or_activate::<()>(8, || Ok(Some(Thing::new(false))))
            .unwrap();
        assert!(loaded.is_some());
        assert!(host
            .get_or_activate::<()>(9, || Ok(None))
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_hand_queue_stays_bounded_while_entities_come_and_go() {
        let host: EntityHost<u128, Thing> = EntityHost::new("test", 4, Vec::new());
        for i in 0..10_000u128 {
            host.insert_if_absent(i, Arc::new(Thing::new(false)));
            host.remove(i.saturating_sub(1));
        }
        assert!(host.hand.lock().len() <= 2 * host.len() + 64 + 1);
    }
}
