//! Property tests: random operation sequences run against `StockLedger` and a
//! deliberately naive reference model; every outcome and count must agree.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::ids::{BuyerId, DropId, IdempotencyKey, SkuId, WarehouseId};
use super::stock::*;

const WAREHOUSES: [&str; 3] = ["east", "main", "west"];
const BUYERS: [&str; 3] = ["ana", "bo", "cy"];

fn limits() -> LedgerLimits {
    LedgerLimits {
        idempotency_keys_max: 6,
        idempotency_ttl_ms: 5_000,
        finished_max: 6,
        finished_ttl_ms: 4_000,
        open_reservations_max: 12,
        warehouses_max: 3,
        units_max: 500,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Set(Vec<(usize, u64)>, Option<u64>),
    Adjust(usize, i64),
    Reserve {
        buyer: usize,
        quantity: u32,
        ttl_ms: u64,
        key: Option<(u8, u64)>,
    },
    Release {
        pick: usize,
        buyer: usize,
    },
    Commit {
        pick: usize,
        buyer: usize,
    },
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (proptest::collection::vec((0..3usize, 0..60u64), 0..4), proptest::option::of(0..20u64))
            .prop_map(|(w, t)| Op::Set(w, t)),
        2 => (0..4usize, -40..40i64).prop_map(|(w, d)| Op::Adjust(w.min(2), d)),
        6 => (0..3usize, 1..15u32, 1..3_000u64, proptest::option::of((0..4u8, 0..2u64)))
            .prop_map(|(buyer, quantity, ttl_ms, key)| Op::Reserve { buyer, quantity, ttl_ms, key }),
        2 => (0..64usize, 0..4usize).prop_map(|(pick, buyer)| Op::Release { pick, buyer: buyer.min(2) }),
        2 => (0..64usize, 0..4usize).prop_map(|(pick, buyer)| Op::Commit { pick, buyer: buyer.min(2) }),
        2 => (0..2_500u64).prop_map(Op::Advance),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum MState {
    Held,
    Released,
    Expired,
    Committed,
}

#[derive(Debug, Clone)]
struct MRes {
    seq: u64,
    buyer: usize,
    quantity: u32,
    expires: u64,
    state: MState,
    finished_at: u64,
    finished_order: u64,
}

/// The reference: lists scanned linearly, every rule written the obvious way.
#[derive(Debug, Default)]
struct Model {
    warehouses: BTreeMap<String, u64>,
    sold: u64,
    total_ever: u64,
    threshold: u64,
    below: bool,
    next_seq: u64,
    reservations: Vec<MRes>,
    finish_counter: u64,
    /// (buyer, key, fingerprint, seq, quantity, created, expires), oldest first.
    keys: Vec<(usize, u8, u64, u64, u32, u64, u64)>,
}

impl Model {
    fn reserved(&self) -> u64 {
        self.reservations
            .iter()
            .filter(|r| r.state == MState::Held)
            .map(|r| u64::from(r.quantity))
            .sum()
    }
    fn on_hand(&self) -> u64 {
        self.warehouses.values().sum()
    }
    fn available(&self) -> u64 {
        self.on_hand() - self.reserved()
    }
    /// Finished reservations still remembered: the newest `finished_max` within the TTL.
    fn visible(&self, seq: u64, now: u64) -> Option<&MRes> {
        let l = limits();
        let r = self.reservations.iter().find(|r| r.seq == seq)?;
        if r.state == MState::Held {
            return Some(r);
        }
        let newer = self
            .reservations
            .iter()
            .filter(|o| o.state != MState::Held && o.finished_order > r.finished_order)
            .count();
        if newer >= l.finished_max || now - r.finished_at >= l.finished_ttl_ms {
            return None;
        }
        Some(r)
    }
    fn finish(&mut self, seq: u64, state: MState, now: u64) {
        self.finish_counter += 1;
        let order = self.finish_counter;
        let r = self.reservations.iter_mut().find(|r| r.seq == seq).unwrap();
        r.state = state;
        r.finished_at = now;
        r.finished_order = order;
    }
    fn expire(&mut self, now: u64) {
        let mut due: Vec<(u64, u64)> = self
            .reservations
            .iter()
            .filter(|r| r.state == MState::Held && r.expires <= now)
            .map(|r| (r.expires, r.seq))
            .collect();
        due.sort();
        for (_, seq) in due {
            self.finish(seq, MState::Expired, now);
        }
    }
    fn crossing(&mut self) -> Option<bool> {
        let below = self.threshold > 0 && self.available() < self.threshold;
        if below != self.below {
            self.below = below;
            Some(below)
        } else {
            None
        }
    }
}

/// Outcomes reduced to what both sides can produce.
#[derive(Debug, Clone, PartialEq)]
enum Out {
    Ok,
    Reserved { seq: u64, replayed: bool },
    Released(bool),
    Committed(bool),
    Err(StockError),
}

fn key_name(k: u8) -> String {
    format!("key-{k}")
}

fn run_model(m: &mut Model, op: &Op, now: u64, picks: &[u64]) -> Out {
    let l = limits();
    match op {
        Op::Set(ws, t) => {
            let mut map = BTreeMap::new();
            for (w, u) in ws {
                map.insert(WAREHOUSES[*w].to_string(), *u);
            }
            let total: u64 = map.values().sum();
            if total < m.reserved() {
                return Out::Err(StockError::StockBelowReserved {
                    on_hand: total,
                    reserved: m.reserved(),
                });
            }
            m.total_ever = m.total_ever - m.on_hand() + total;
            m.warehouses = map;
            if let Some(t) = t {
                m.threshold = *t;
            }
            Out::Ok
        }
        Op::Adjust(w, d) => {
            let name = WAREHOUSES[*w].to_string();
            let cur = m.warehouses.get(&name).copied().unwrap_or(0);
            if *d < 0 && d.unsigned_abs() > cur {
                return Out::Err(StockError::InsufficientOnHand {
                    warehouse: name,
                    on_hand: cur,
                    requested: d.unsigned_abs(),
                });
            }
            let new = (cur as i64 + d) as u64;
            if new > l.units_max {
                return Out::Err(StockError::TooManyUnits { max: l.units_max });
            }
            let new_total = (m.on_hand() as i64 + d) as u64;
            if new_total < m.reserved() {
                return Out::Err(StockError::StockBelowReserved {
                    on_hand: new_total,
                    reserved: m.reserved(),
                });
            }
            m.warehouses.insert(name, new);
            m.total_ever = (m.total_ever as i64 + d) as u64;
            Out::Ok
        }
        Op::Reserve {
            buyer,
            quantity,
            ttl_ms,
            key,
        } => {
            if let Some((k, fp)) = key {
                let hit = m
                    .keys
                    .iter()
                    .rev()
                    .find(|e| e.0 == *buyer && e.1 == *k)
                    .copied();
                if let Some(e) = hit {
                    if now - e.5 < l.idempotency_ttl_ms {
                        if e.2 != *fp {
                            return Out::Err(StockError::IdempotencyKeyReused);
                        }
                        return Out::Reserved {
                            seq: e.3,
                            replayed: true,
                        };
                    }
                }
            }
            if u64::from(*quantity) > m.available() {
                return Out::Err(StockError::OutOfStock {
                    requested: *quantity,
                    available: m.available(),
                });
            }
            let open = m
                .reservations
                .iter()
                .filter(|r| r.state == MState::Held)
                .count();
            if open >= l.open_reservations_max {
                return Out::Err(StockError::TooManyReservations {
                    max: l.open_reservations_max,
                });
            }
            m.next_seq += 1;
            let seq = m.next_seq;
            m.reservations.push(MRes {
                seq,
                buyer: *buyer,
                quantity: *quantity,
                expires: now + ttl_ms,
                state: MState::Held,
                finished_at: 0,
                finished_order: 0,
            });
            if let Some((k, fp)) = key {
                m.keys
                    .push((*buyer, *k, *fp, seq, *quantity, now, now + ttl_ms));
                if m.keys.len() > l.idempotency_keys_max {
                    m.keys.remove(0);
                }
            }
            Out::Reserved {
                seq,
                replayed: false,
            }
        }
        Op::Release { pick, buyer } | Op::Commit { pick, buyer } => {
            let seq = picks[*pick % picks.len()];
            let is_release = matches!(op, Op::Release { .. });
            let visible = m.visible(seq, now).filter(|r| r.buyer == *buyer).cloned();
            let Some(r) = visible else {
                return Out::Err(StockError::UnknownReservation);
            };
            match (is_release, r.state) {
                (true, MState::Held) => {
                    m.finish(seq, MState::Released, now);
                    Out::Released(true)
                }
                (true, MState::Released | MState::Expired) => Out::Released(false),
                (true, MState::Committed) => Out::Err(StockError::ReservationCommitted),
                (false, MState::Held) => {
                    let mut left = u64::from(r.quantity);
                    for units in m.warehouses.values_mut() {
                        let take = (*units).min(left);
                        *units -= take;
                        left -= take;
                    }
                    assert_eq!(left, 0, "model: commit could not allocate");
                    m.sold += u64::from(r.quantity);
                    m.finish(seq, MState::Committed, now);
                    Out::Committed(true)
                }
                (false, MState::Committed) => Out::Committed(false),
                (false, MState::Released) => Out::Err(StockError::ReservationReleased),
                (false, MState::Expired) => Out::Err(StockError::ReservationExpired),
            }
        }
        Op::Advance(_) => Out::Ok,
    }
}

fn run_ledger(
    ledger: &mut StockLedger,
    op: &Op,
    now: u64,
    picks: &[u64],
    events: &mut Vec<StockEvent>,
) -> Out {
    let buyer = |i: usize| BuyerId::parse(BUYERS[i]).unwrap();
    let result = match op {
        Op::Set(ws, t) => {
            let mut map = BTreeMap::new();
            for (w, u) in ws {
                map.insert(WAREHOUSES[*w], *u);
            }
            let list = map
                .into_iter()
                .map(|(w, u)| (WarehouseId::parse(w).unwrap(), u))
                .collect();
            ledger.set_stock(list, *t, events).map(|_| Out::Ok)
        }
        Op::Adjust(w, d) => ledger
            .adjust(
                WarehouseId::parse(WAREHOUSES[*w]).unwrap(),
                *d,
                "count".into(),
                events,
            )
            .map(|_| Out::Ok),
        Op::Reserve {
            buyer: b,
            quantity,
            ttl_ms,
            key,
        } => {
            let cmd = ReserveCmd {
                buyer: buyer(*b),
                quantity: *quantity,
                ttl_ms: *ttl_ms,
                idempotency: key.map(|(k, fp)| (IdempotencyKey::parse(&key_name(k)).unwrap(), fp)),
                shopper_units_max: None,
            };
            ledger.reserve(cmd, now, events).map(|o| Out::Reserved {
                seq: o.receipt.seq,
                replayed: o.replayed,
            })
        }
        Op::Release { pick, buyer: b } => ledger
            .release(picks[*pick % picks.len()], &buyer(*b), now, events)
            .map(|o| Out::Released(o == ReleaseOutcome::Released)),
        Op::Commit { pick, buyer: b } => ledger
            .commit(picks[*pick % picks.len()], &buyer(*b), now, events)
            .map(|o| Out::Committed(matches!(o, CommitOutcome::Committed(_)))),
        Op::Advance(_) => Ok(Out::Ok),
    };
    result.unwrap_or_else(Out::Err)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn ledger_matches_the_reference_model_and_conserves_units(ops in proptest::collection::vec(op(), 1..120)) {
        let mut ledger = StockLedger::new(SkuId(7), limits());
        let mut model = Model::default();
        let mut now: u64 = 1_000;
        let mut all_events = Vec::new();
        for op in &ops {
            if let Op::Advance(ms) = op {
                now += ms;
            }
            // Both sides expire what is due before any command, as the actor does.
            let mut events = Vec::new();
            ledger.expire_due(now, &mut events).unwrap();
            model.expire(now);
            let expiry_crossing = model.crossing();
            if let Some(below) = expiry_crossing {
                let last = events.last().expect("expiry crossing emits an event");
                prop_assert_eq!(matches!(last, StockEvent::LowStock { .. }), below);
            }
            all_events.append(&mut events);

            // A pick indexes into every reservation ever made, plus unknown ones.
            let mut picks: Vec<u64> = model.reservations.iter().map(|r| r.seq).collect();
            picks.push(9_999);
            let expected = run_model(&mut model, op, now, &picks);
            let actual = run_ledger(&mut ledger, op, now, &picks, &mut events);
            prop_assert_eq!(&actual, &expected, "op {:?} at {}", op, now);
            if let Some(below) = model.crossing() {
                let last = events.last().expect("a crossing emits an event");
                prop_assert_eq!(matches!(last, StockEvent::LowStock { .. }), below, "{:?}", events);
            } else {
                let crossed = events.iter().any(|e| {
                    matches!(e, StockEvent::LowStock { .. } | StockEvent::Replenished { .. })
                });
                prop_assert!(!crossed, "unexpected crossing in {:?}", events);
            }
            all_events.append(&mut events);

            let view = ledger.view();
            prop_assert_eq!(view.available, model.available());
            prop_assert_eq!(view.reserved, model.reserved());
            prop_assert_eq!(view.sold, model.sold);
            let model_wh: BTreeMap<String, u64> = model.warehouses.clone();
            let ledger_wh: BTreeMap<String, u64> = view.warehouses.clone().into_iter().filter(|(_, u)| *u > 0).collect();
            let model_wh: BTreeMap<String, u64> = model_wh.into_iter().filter(|(_, u)| *u > 0).collect();
            prop_assert_eq!(ledger_wh, model_wh);
            // Conservation: only stock settings and adjustments change the total.
            prop_assert_eq!(view.available + view.reserved + view.sold, model.total_ever);
            prop_assert_eq!(ledger.total_units(), model.total_ever);
            prop_assert!(ledger.check_invariants(true).is_ok());
        }

        // Replaying the events rebuilds the same ledger: recovery depends on it.
        let mut replayed = StockLedger::new(SkuId(7), limits());
        for event in &all_events {
            replayed.apply(event).unwrap();
        }
        prop_assert!(replayed == ledger, "replay diverged");

        // A snapshot restores the same ledger.
        let restored = StockLedger::restore(ledger.snapshot(), limits()).unwrap();
        prop_assert!(restored == ledger, "snapshot diverged");
    }
}

#[test]
fn reserve_never_oversells_the_last_units() {
    let mut ledger = StockLedger::new(SkuId(1), LedgerLimits::default());
    let mut events = Vec::new();
    ledger
        .set_stock(
            vec![(WarehouseId::parse("main").unwrap(), 3)],
            None,
            &mut events,
        )
        .unwrap();
    let cmd = |q| ReserveCmd {
        buyer: BuyerId::parse("b").unwrap(),
        quantity: q,
        ttl_ms: 60_000,
        idempotency: None,
        shopper_units_max: None,
    };
    assert!(ledger.reserve(cmd(2), 0, &mut events).is_ok());
    assert_eq!(
        ledger.reserve(cmd(2), 0, &mut events),
        Err(StockError::OutOfStock {
            requested: 2,
            available: 1
        })
    );
    assert!(ledger.reserve(cmd(1), 0, &mut events).is_ok());
    assert_eq!(ledger.view().available, 0);
}

#[test]
fn low_stock_event_fires_once_when_the_threshold_is_crossed() {
    let mut ledger = StockLedger::new(SkuId(1), LedgerLimits::default());
    let mut events = Vec::new();
    ledger
        .set_stock(
            vec![(WarehouseId::parse("main").unwrap(), 10)],
            Some(5),
            &mut events,
        )
        .unwrap();
    assert!(!events
        .iter()
        .any(|e| matches!(e, StockEvent::LowStock { .. })));
    let cmd = ReserveCmd {
        buyer: BuyerId::parse("b").unwrap(),
        quantity: 6,
        ttl_ms: 1_000,
        idempotency: None,
        shopper_units_max: None,
    };
    events.clear();
    ledger.reserve(cmd.clone(), 0, &mut events).unwrap();
    assert_eq!(
        events.last(),
        Some(&StockEvent::LowStock {
            available: 4,
            threshold: 5
        })
    );
    events.clear();
    ledger.expire_due(1_000, &mut events).unwrap();
    assert_eq!(
        events.last(),
        Some(&StockEvent::Replenished {
            available: 10,
            threshold: 5
        })
    );
}

#[test]
fn commit_takes_units_from_warehouses_in_name_order() {
    let mut ledger = StockLedger::new(SkuId(1), LedgerLimits::default());
    let mut events = Vec::new();
    ledger
        .set_stock(
            vec![
                (WarehouseId::parse("b").unwrap(), 2),
                (WarehouseId::parse("a").unwrap(), 1),
            ],
            None,
            &mut events,
        )
        .unwrap();
    let buyer = BuyerId::parse("b").unwrap();
    let cmd = ReserveCmd {
        buyer: buyer.clone(),
        quantity: 2,
        ttl_ms: 1_000,
        idempotency: None,
        shopper_units_max: None,
    };
    let seq = ledger.reserve(cmd, 0, &mut events).unwrap().receipt.seq;
    events.clear();
    ledger.commit(seq, &buyer, 1, &mut events).unwrap();
    assert_eq!(
        events[0],
        StockEvent::Committed {
            seq,
            at_ms: 1,
            allocation: vec![("a".into(), 1), ("b".into(), 1)]
        }
    );
    let view = ledger.view();
    assert_eq!((view.available, view.reserved, view.sold), (1, 0, 2));
}

fn gated(limit: u32) -> (StockLedger, Vec<StockEvent>) {
    let mut ledger = StockLedger::new(SkuId(1), LedgerLimits::default());
    let mut events = Vec::new();
    ledger
        .set_stock(
            vec![(WarehouseId::parse("main").unwrap(), 10)],
            None,
            &mut events,
        )
        .unwrap();
    ledger
        .attach_drop(
            DropGate {
                drop: DropId(7),
                starts_at_ms: 1_000,
                ends_at_ms: 5_000,
                per_buyer_limit: limit,
                cancelled: false,
            },
            &mut events,
        )
        .unwrap();
    (ledger, events)
}

fn one(buyer: &str, quantity: u32) -> ReserveCmd {
    ReserveCmd {
        buyer: BuyerId::parse(buyer).unwrap(),
        quantity,
        ttl_ms: 1_000,
        idempotency: None,
        shopper_units_max: None,
    }
}

#[test]
fn a_drop_sku_sells_only_inside_its_window() {
    let (mut ledger, mut events) = gated(0);
    let early = ledger.reserve(one("ana", 1), 999, &mut events);
    assert!(matches!(
        early,
        Err(StockError::DropNotLive {
            drop: DropId(7),
            why: NotLive::NotStarted {
                starts_at_ms: 1_000
            }
        })
    ));
    assert!(ledger.reserve(one("ana", 1), 1_000, &mut events).is_ok());
    assert!(matches!(
        ledger.reserve(one("ana", 1), 5_000, &mut events),
        Err(StockError::DropNotLive {
            why: NotLive::Ended { .. },
            ..
        })
    ));
    ledger.cancel_drop(DropId(7), &mut events).unwrap();
    assert!(matches!(
        ledger.reserve(one("ana", 1), 2_000, &mut events),
        Err(StockError::DropNotLive {
            why: NotLive::Cancelled,
            ..
        })
    ));
    assert_eq!(ledger.view().reserved, 1, "refusals change nothing");
}

#[test]
fn the_per_buyer_count_follows_holds_sales_and_releases_and_survives_replay() {
    let (mut ledger, mut events) = gated(3);
    let ana = BuyerId::parse("ana").unwrap();
    let first = ledger.reserve(one("ana", 2), 1_000, &mut events).unwrap();
    assert_eq!(
        ledger.reserve(one("ana", 2), 1_000, &mut events),
        Err(StockError::PurchaseLimitExceeded { limit: 3, used: 2 })
    );
    assert_eq!(
        ledger.reserve_in_drop(one("ana", 1), 1, 1_000, &mut events),
        Err(StockError::PurchaseLimitExceeded { limit: 3, used: 3 }),
        "units in the drop's other SKUs count too"
    );
    let second = ledger.reserve(one("ana", 1), 1_000, &mut events).unwrap();
    ledger
        .commit(first.receipt.seq, &ana, 1_100, &mut events)
        .unwrap();
    assert_eq!(
        ledger.drop_usage(DropId(7), "ana"),
        3,
        "sold units still count"
    );
    ledger
        .release(second.receipt.seq, &ana, 1_200, &mut events)
        .unwrap();
    assert_eq!(
        ledger.drop_usage(DropId(7), "ana"),
        2,
        "released units come back"
    );
    ledger.reserve(one("ana", 1), 1_300, &mut events).unwrap();
    ledger.expire_due(2_300, &mut events).unwrap();
    assert_eq!(ledger.drop_usage(DropId(7), "ana"), 2, "so do expired ones");
    assert!(ledger.reserve(one("bo", 3), 2_400, &mut events).is_ok());

    // Replay and snapshots give the same ledger, counts included.
    let mut replayed = StockLedger::new(SkuId(1), LedgerLimits::default());
    for event in &events {
        replayed.apply(event).unwrap();
    }
    assert_eq!(replayed, ledger);
    let restored = StockLedger::restore(ledger.snapshot(), LedgerLimits::default()).unwrap();
    assert_eq!(restored.drop_usage(DropId(7), "ana"), 2);
    assert_eq!(restored, ledger);

    // A new drop starts a fresh count; attaching the same one again is a no-op.
    let mut more = Vec::new();
    ledger
        .attach_drop(ledger.gate().unwrap().clone(), &mut more)
        .unwrap();
    assert!(more.is_empty());
    ledger
        .attach_drop(
            DropGate {
                drop: DropId(8),
                starts_at_ms: 0,
                ends_at_ms: 9_000,
                per_buyer_limit: 3,
                cancelled: false,
            },
            &mut more,
        )
        .unwrap();
    assert_eq!(ledger.drop_usage(DropId(8), "ana"), 0);
    assert_eq!(
        ledger.drop_usage(DropId(7), "ana"),
        0,
        "the old drop is gone"
    );
}

#[test]
fn an_edited_window_keeps_each_buyers_count_and_a_release_lifts_the_gate() {
    let (mut ledger, mut events) = gated(2);
    ledger.reserve(one("ana", 2), 1_000, &mut events).unwrap();

    // The same drop, rescheduled later with a higher limit: a new gate,
    // the same count.
    let edited = DropGate {
        ends_at_ms: 8_000,
        per_buyer_limit: 3,
        ..ledger.gate().unwrap().clone()
    };
    let before = events.len();
    ledger.attach_drop(edited.clone(), &mut events).unwrap();
    assert_eq!(events.len(), before + 1);
    assert_eq!(ledger.gate(), Some(&edited));
    assert_eq!(ledger.drop_usage(DropId(7), "ana"), 2, "the count stays");
    assert_eq!(
        ledger.reserve(one("ana", 2), 6_000, &mut events),
        Err(StockError::PurchaseLimitExceeded { limit: 3, used: 2 })
    );
    ledger.reserve(one("ana", 1), 6_000, &mut events).unwrap();

    // Released after its end: normal sale, no limit, no window; a repeat
    // or another drop's release changes nothing.
    assert!(ledger.reserve(one("bo", 1), 9_000, &mut events).is_err());
    ledger.release_drop(DropId(7), &mut events).unwrap();
    assert_eq!(ledger.gate(), None);
    assert_eq!(ledger.drop_usage(DropId(7), "ana"), 0);
    let after = events.len();
    ledger.release_drop(DropId(7), &mut events).unwrap();
    ledger.release_drop(DropId(8), &mut events).unwrap();
    assert_eq!(events.len(), after, "nothing to release twice");
    ledger.reserve(one("ana", 4), 9_000, &mut events).unwrap();

    // A cancelled drop is not released (it stays closed).
    let (mut cancelled, mut more) = gated(0);
    cancelled.cancel_drop(DropId(7), &mut more).unwrap();
    let n = more.len();
    cancelled.release_drop(DropId(7), &mut more).unwrap();
    assert_eq!(more.len(), n);
    assert!(cancelled.gate().is_some_and(|g| g.cancelled));

    let mut replayed = StockLedger::new(SkuId(1), LedgerLimits::default());
    for event in &events {
        replayed.apply(event).unwrap();
    }
    assert_eq!(replayed, ledger);
}

fn stocked(units: u64) -> (StockLedger, Vec<StockEvent>) {
    let mut ledger = StockLedger::new(SkuId(1), LedgerLimits::default());
    let mut events = Vec::new();
    ledger
        .set_stock(
            vec![(WarehouseId::parse("main").unwrap(), units)],
            None,
            &mut events,
        )
        .unwrap();
    (ledger, events)
}

fn shopper(buyer: &str, quantity: u32, max: u64) -> ReserveCmd {
    ReserveCmd {
        shopper_units_max: Some(max),
        ..one(buyer, quantity)
    }
}

#[test]
fn a_shoppers_own_holds_of_one_sku_are_bounded_and_ended_holds_give_units_back() {
    let (mut ledger, mut events) = stocked(100);
    let ana = BuyerId::parse("ana").unwrap();
    let first = ledger
        .reserve(shopper("ana", 3, 5), 0, &mut events)
        .unwrap();
    ledger
        .reserve(shopper("ana", 2, 5), 0, &mut events)
        .unwrap();
    assert_eq!(
        ledger.reserve(shopper("ana", 1, 5), 0, &mut events),
        Err(StockError::HoldLimitExceeded { limit: 5, held: 5 })
    );
    assert!(
        ledger.reserve(shopper("bo", 5, 5), 0, &mut events).is_ok(),
        "the bound is per shopper"
    );
    assert!(
        ledger.reserve(one("ana", 4), 0, &mut events).is_ok(),
        "an order's holds are bounded by the order, not here"
    );
    assert_eq!(ledger.held_by("ana"), 9);
    ledger
        .release(first.receipt.seq, &ana, 10, &mut events)
        .unwrap();
    assert_eq!(ledger.held_by("ana"), 6);
    ledger.expire_due(5_000, &mut events).unwrap();
    assert_eq!(ledger.held_by("ana"), 0, "expired holds count no more");
    assert!(ledger
        .reserve(shopper("ana", 5, 5), 6_000, &mut events)
        .is_ok());
    ledger.check_invariants(true).unwrap();
    let restored = StockLedger::restore(ledger.snapshot(), LedgerLimits::default()).unwrap();
    assert_eq!(
        restored.held_by("ana"),
        5,
        "the count is rebuilt from the snapshot"
    );
}

#[test]
fn inside_a_drop_the_drops_limit_rules_instead_of_the_shopper_bound() {
    let (mut ledger, mut events) = gated(0);
    assert!(ledger
        .reserve(shopper("ana", 8, 5), 1_000, &mut events)
        .is_ok());
}

#[test]
fn a_seller_releases_or_sells_any_buyers_hold_and_a_buyer_only_its_own() {
    let (mut ledger, mut events) = stocked(10);
    let ana = BuyerId::parse("ana").unwrap();
    let bo = BuyerId::parse("bo").unwrap();
    let sold = ledger.reserve(one("ana", 2), 0, &mut events).unwrap();
    let freed = ledger.reserve(one("ana", 3), 0, &mut events).unwrap();
    assert_eq!(
        ledger.commit(sold.receipt.seq, &bo, 1, &mut events),
        Err(StockError::UnknownReservation)
    );
    assert!(matches!(
        ledger.commit_as_seller(sold.receipt.seq, 1, &mut events),
        Ok(CommitOutcome::Committed(_))
    ));
    assert!(matches!(
        ledger.commit_as_seller(sold.receipt.seq, 2, &mut events),
        Ok(CommitOutcome::AlreadyCommitted(_))
    ));
    assert_eq!(
        ledger.release_as_seller(freed.receipt.seq, 3, &mut events),
        Ok(ReleaseOutcome::Released)
    );
    assert_eq!(
        ledger.release(freed.receipt.seq, &ana, 4, &mut events),
        Ok(ReleaseOutcome::AlreadyReleased)
    );
    assert_eq!(
        ledger.release_as_seller(sold.receipt.seq, 5, &mut events),
        Err(StockError::ReservationCommitted)
    );
    let view = ledger.view();
    assert_eq!((view.available, view.reserved, view.sold), (8, 0, 2));
    assert_eq!(ledger.holder(freed.receipt.seq), Some("ana"));
}

#[test]
fn open_holds_page_by_expiry_and_never_repeat() {
    let (mut ledger, mut events) = stocked(100);
    for (i, buyer) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let cmd = ReserveCmd {
            ttl_ms: 1_000 - i as u64 * 100,
            ..one(buyer, 1)
        };
        ledger.reserve(cmd, 0, &mut events).unwrap();
    }
    let first = ledger.open_holds(None, 2);
    assert_eq!(
        first.iter().map(|v| v.buyer.as_str()).collect::<Vec<_>>(),
        ["e", "d"]
    );
    let last = first.last().unwrap();
    let rest = ledger.open_holds(Some((last.expires_at_ms, last.seq)), 10);
    assert_eq!(
        rest.iter().map(|v| v.buyer.as_str()).collect::<Vec<_>>(),
        ["c", "b", "a"]
    );
}
