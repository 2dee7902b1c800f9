//! Drops: a scheduled release of some SKUs. The lifecycle (scheduled → live →
//! sold_out ⇄ live → ended, or cancelled) as a pure state machine; time and
//! stock levels are passed in, and every change is an event for the WAL.

use serde::Serialize;

use super::ids::{DropId, InvalidField, TenantId, UserId};

/// Where a drop is in its life.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DropState {
    Scheduled,
    Live,
    SoldOut,
    Ended,
    Cancelled,
}

impl DropState {
    pub fn as_str(self) -> &'static str {
        match self {
            DropState::Scheduled => "scheduled",
            DropState::Live => "live",
            DropState::SoldOut => "sold_out",
            DropState::Ended => "ended",
            DropState::Cancelled => "cancelled",
        }
    }

    /// Scheduled, live or sold out: the drop still holds its SKUs.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            DropState::Scheduled | DropState::Live | DropState::SoldOut
        )
    }

    /// The states a drop may move to from this one.
    pub fn allowed(self) -> &'static [DropState] {
        match self {
            DropState::Scheduled => &[DropState::Live, DropState::Ended, DropState::Cancelled],
            DropState::Live => &[DropState::SoldOut, DropState::Ended, DropState::Cancelled],
            DropState::SoldOut => &[DropState::Live, DropState::Ended, DropState::Cancelled],
            DropState::Ended | DropState::Cancelled => &[],
        }
    }
}

/// One SKU of a drop.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DropSku {
    pub id: u64,
    pub code: String,
}

/// A drop's optional waiting room: shoppers past `admit_per_s` wait in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct WaitingRoomSpec {
    /// Shoppers admitted per second once the drop is live.
    pub admit_per_s: u32,
    /// How long an admission lets its shopper reserve.
    pub pass_ttl_s: u32,
    /// Shoppers who may wait at once.
    pub capacity: u32,
}

/// Everything a seller fixes when scheduling a drop.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DropSpec {
    pub id: DropId,
    /// The store (creator) that runs it.
    pub tenant: TenantId,
    pub title: String,
    pub skus: Vec<DropSku>,
    pub starts_at_ms: u64,
    pub ends_at_ms: u64,
    /// Units one buyer may hold or have bought across the drop; 0 = no limit.
    pub per_buyer_limit: u32,
    pub waiting_room: Option<WaitingRoomSpec>,
    pub created_at_ms: u64,
    pub created_by: UserId,
}

/// Everything that changes a drop. Written to the WAL, replayed on recovery.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum DropEvent {
    Created(DropSpec),
    Moved { to: DropState, at_ms: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropError {
    #[error("a {from} drop cannot become {to}")]
    Transition { from: DropState, to: DropState },
}

impl std::fmt::Display for DropState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A drop and its history, as kept in memory and in snapshots.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FlashDrop {
    pub spec: DropSpec,
    pub state: DropState,
    /// Every state it was in, with the time it got there (oldest first).
    pub history: Vec<(DropState, u64)>,
}

impl FlashDrop {
    pub fn new(spec: DropSpec) -> Self {
        let at = spec.created_at_ms;
        Self {
            spec,
            state: DropState::Scheduled,
            history: vec![(DropState::Scheduled, at)],
        }
    }

    /// Applies one event (live and on replay alike).
    pub fn apply(drop: Option<Self>, event: &DropEvent) -> Option<Self> {
        match event {
            DropEvent::Created(spec) => Some(Self::new(spec.clone())),
            DropEvent::Moved { to, at_ms } => drop.map(|mut d| {
                d.state = *to;
                d.history.push((*to, *at_ms));
                d
            }),
        }
    }

    fn moved(&mut self, to: DropState, at_ms: u64) -> Result<DropEvent, DropError> {
        if !self.state.allowed().contains(&to) {
            return Err(DropError::Transition {
                from: self.state,
                to,
            });
        }
        let event = DropEvent::Moved { to, at_ms };
        self.state = to;
        self.history.push((to, at_ms));
        Ok(event)
    }

    /// The time-driven moves due at `now_ms`: opening and ending. `sold_out`
    /// says whether every SKU has nothing available (a drop can open sold out).
    pub fn tick(&mut self, now_ms: u64, sold_out: bool) -> Vec<DropEvent> {
        let mut events = Vec::new();
        if self.state == DropState::Scheduled && now_ms >= self.spec.starts_at_ms {
            let at = self.spec.starts_at_ms.min(now_ms);
            events.extend(self.moved(DropState::Live, at).ok());
        }
        if self.state.is_open() && now_ms >= self.spec.ends_at_ms {
            events.extend(self.moved(DropState::Ended, now_ms).ok());
            return events;
        }
        events.extend(self.stock_level(sold_out, now_ms));
        events
    }

    /// Live ⇄ sold out as stock runs out or comes back (expiries, restocks).
    pub fn stock_level(&mut self, sold_out: bool, now_ms: u64) -> Option<DropEvent> {
        match (self.state, sold_out) {
            (DropState::Live, true) => self.moved(DropState::SoldOut, now_ms).ok(),
            (DropState::SoldOut, false) => self.moved(DropState::Live, now_ms).ok(),
            _ => None,
        }
    }

    pub fn cancel(&mut self, now_ms: u64) -> Result<DropEvent, DropError> {
        self.moved(DropState::Cancelled, now_ms)
    }

    /// When the next time-driven move is due, if one can come.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        match self.state {
            DropState::Scheduled => Some(self.spec.starts_at_ms),
            DropState::Live | DropState::SoldOut => Some(self.spec.ends_at_ms),
            DropState::Ended | DropState::Cancelled => None,
        }
    }
}

/// Bounds on what a seller may schedule.
#[derive(Debug, Clone)]
pub struct DropLimits {
    pub title_max_chars: usize,
    pub skus_max: usize,
    pub duration_max_ms: u64,
    /// How far ahead a drop may be scheduled.
    pub horizon_max_ms: u64,
    pub per_buyer_limit_max: u32,
    pub waiting_room_capacity_max: u32,
}

/// A drop request after parsing, before it is checked against the catalogue.
#[derive(Debug, Clone)]
pub struct NewDrop {
    pub title: String,
    pub sku_codes: Vec<String>,
    pub starts_at_ms: u64,
    pub ends_at_ms: u64,
    pub per_buyer_limit: u32,
    pub waiting_room: Option<WaitingRoomSpec>,
}

impl NewDrop {
    /// Checks everything that needs no catalogue; every problem is reported.
    pub fn validate(&self, now_ms: u64, limits: &DropLimits) -> Result<(), Vec<InvalidField>> {
        let mut errors = Vec::new();
        if let Err(error) = super::ids::check_line("title", &self.title, limits.title_max_chars) {
            errors.push(error);
        }
        if self.sku_codes.is_empty() || self.sku_codes.len() > limits.skus_max {
            errors.push(InvalidField::new(
                "skus",
                format!("must list 1..={} SKU codes", limits.skus_max),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self.sku_codes.iter().find(|c| !seen.insert(c.as_str())) {
            errors.push(InvalidField::new("skus", format!("{dup} is listed twice")));
        }
        if self.ends_at_ms <= self.starts_at_ms {
            errors.push(InvalidField::new("ends_at", "must be after starts_at"));
        } else if self.ends_at_ms - self.starts_at_ms > limits.duration_max_ms {
            errors.push(InvalidField::new(
                "ends_at",
                format!("a drop lasts at most {} s", limits.duration_max_ms / 1000),
            ));
        }
        if self.ends_at_ms <= now_ms {
            errors.push(InvalidField::new("ends_at", "must be in the future"));
        }
        if self.starts_at_ms > now_ms.saturating_add(limits.horizon_max_ms) {
            errors.push(InvalidField::new(
                "starts_at",
                format!("must be within {} s from now", limits.horizon_max_ms / 1000),
            ));
        }
        if self.per_buyer_limit > limits.per_buyer_limit_max {
            errors.push(InvalidField::new(
                "per_buyer_limit",
                format!("must be 0..={} (0: no limit)", limits.per_buyer_limit_max),
            ));
        }
        if let Some(room) = &self.waiting_room {
            if room.admit_per_s == 0 || room.admit_per_s > 1_000_000 {
                errors.push(InvalidField::new(
                    "waiting_room.admit_per_s",
                    "must be 1..=1000000",
                ));
            }
            if room.pass_ttl_s == 0 || room.pass_ttl_s > 3600 {
                errors.push(InvalidField::new(
                    "waiting_room.pass_ttl_s",
                    "must be 1..=3600",
                ));
            }
            if room.capacity == 0 || room.capacity > limits.waiting_room_capacity_max {
                errors.push(InvalidField::new(
                    "waiting_room.capacity",
                    format!("must be 1..={}", limits.waiting_room_capacity_max),
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(starts: u64, ends: u64) -> DropSpec {
        DropSpec {
            id: DropId(7),
            tenant: TenantId(1),
            title: "t".into(),
            skus: vec![DropSku {
                id: 1,
                code: "A".into(),
            }],
            starts_at_ms: starts,
            ends_at_ms: ends,
            per_buyer_limit: 2,
            waiting_room: None,
            created_at_ms: 0,
            created_by: UserId(9),
        }
    }

    fn states(events: &[DropEvent]) -> Vec<DropState> {
        events
            .iter()
            .filter_map(|e| match e {
                DropEvent::Moved { to, .. } => Some(*to),
                DropEvent::Created(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_drop_opens_at_its_start_and_ends_at_its_end() {
        let mut drop = FlashDrop::new(spec(1_000, 5_000));
        assert!(drop.tick(999, false).is_empty());
        assert_eq!(states(&drop.tick(1_000, false)), [DropState::Live]);
        assert!(drop.tick(4_999, false).is_empty());
        assert_eq!(states(&drop.tick(5_000, false)), [DropState::Ended]);
        assert_eq!(drop.next_deadline_ms(), None);
        assert!(drop.tick(9_000, false).is_empty());
    }

    #[test]
    fn sold_out_and_back_follow_the_stock() {
        let mut drop = FlashDrop::new(spec(1_000, 5_000));
        assert_eq!(drop.stock_level(true, 500), None, "not live yet");
        assert_eq!(
            states(&drop.tick(1_000, true)),
            [DropState::Live, DropState::SoldOut]
        );
        assert_eq!(
            states(
                &drop
                    .stock_level(false, 2_000)
                    .into_iter()
                    .collect::<Vec<_>>()
            ),
            [DropState::Live]
        );
        assert_eq!(drop.stock_level(false, 2_001), None);
    }

    #[test]
    fn a_late_tick_still_passes_through_live_then_ends() {
        let mut drop = FlashDrop::new(spec(1_000, 5_000));
        assert_eq!(
            states(&drop.tick(6_000, false)),
            [DropState::Live, DropState::Ended]
        );
    }

    #[test]
    fn only_open_drops_cancel_and_replay_gives_the_same_drop() {
        let mut drop = FlashDrop::new(spec(1_000, 5_000));
        let mut events = vec![DropEvent::Created(drop.spec.clone())];
        events.extend(drop.tick(1_000, false));
        events.push(drop.cancel(1_500).unwrap());
        assert_eq!(
            drop.cancel(1_600),
            Err(DropError::Transition {
                from: DropState::Cancelled,
                to: DropState::Cancelled
            })
        );
        let replayed = events.iter().fold(None, FlashDrop::apply).unwrap();
        assert_eq!(replayed, drop);
        assert_eq!(drop.history.len(), 3);
    }

    #[test]
    fn validation_reports_every_problem() {
        let limits = DropLimits {
            title_max_chars: 10,
            skus_max: 2,
            duration_max_ms: 10_000,
            horizon_max_ms: 100_000,
            per_buyer_limit_max: 5,
            waiting_room_capacity_max: 10,
        };
        let bad = NewDrop {
            title: " ".into(),
            sku_codes: vec!["A".into(), "A".into(), "B".into()],
            starts_at_ms: 500_000,
            ends_at_ms: 400_000,
            per_buyer_limit: 6,
            waiting_room: Some(WaitingRoomSpec {
                admit_per_s: 0,
                pass_ttl_s: 0,
                capacity: 11,
            }),
        };
        let errors = bad.validate(1_000, &limits).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_ref()).collect();
        for field in [
            "title",
            "skus",
            "ends_at",
            "starts_at",
            "per_buyer_limit",
            "waiting_room.admit_per_s",
            "waiting_room.pass_ttl_s",
            "waiting_room.capacity",
        ] {
            assert!(fields.contains(&field), "{field} missing from {fields:?}");
        }
        let good = NewDrop {
            title: "Sneaker".into(),
            sku_codes: vec!["A".into()],
            starts_at_ms: 2_000,
            ends_at_ms: 5_000,
            per_buyer_limit: 1,
            waiting_room: None,
        };
        assert_eq!(good.validate(1_000, &limits), Ok(()));
    }
}
