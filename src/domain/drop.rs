//! Drops: a scheduled release of some SKUs. The lifecycle (scheduled → live →
//! sold_out ⇄ live → ended, or cancelled) as a pure state machine; time and
//! stock levels are passed in, and every change is an event for the WAL.
//! A scheduled drop may be edited until it starts; what happens to its SKUs
//! once its window ends (`AfterDrop`) may change until it ends; an ended
//! `sell` drop or a cancelled one records when its SKUs were told.

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

/// What a drop's SKUs do once its window ends.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AfterDrop {
    /// They go back to normal sale (the drop's per-buyer limit lifts).
    Sell,
    /// They stay closed until another drop takes them (what every drop
    /// did before this choice existed).
    #[default]
    Close,
}

impl AfterDrop {
    pub fn as_str(self) -> &'static str {
        match self {
            AfterDrop::Sell => "sell",
            AfterDrop::Close => "close",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "sell" => Some(AfterDrop::Sell),
            "close" => Some(AfterDrop::Close),
            _ => None,
        }
    }
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
    /// What its SKUs do once the window ends (format 4 on; older drops close).
    pub after_drop: AfterDrop,
}

/// A seller's edit of a drop: the fields it may change, each as it is to be.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DropEdit {
    pub title: String,
    pub starts_at_ms: u64,
    pub ends_at_ms: u64,
    pub per_buyer_limit: u32,
    pub after_drop: AfterDrop,
    pub at_ms: u64,
    pub by: UserId,
}

impl DropEdit {
    /// The edit that changes nothing of `spec`, to be amended field by field.
    pub fn of(spec: &DropSpec, at_ms: u64, by: UserId) -> Self {
        Self {
            title: spec.title.clone(),
            starts_at_ms: spec.starts_at_ms,
            ends_at_ms: spec.ends_at_ms,
            per_buyer_limit: spec.per_buyer_limit,
            after_drop: spec.after_drop,
            at_ms,
            by,
        }
    }

    /// Whether it changes what the drop's SKUs enforce (window or limit).
    pub fn regates(&self, spec: &DropSpec) -> bool {
        (self.starts_at_ms, self.ends_at_ms, self.per_buyer_limit)
            != (spec.starts_at_ms, spec.ends_at_ms, spec.per_buyer_limit)
    }

    /// Checks the edited drop as a new one would be checked (every problem
    /// reported), and that a changed start is not in the past.
    pub fn validate(
        &self,
        spec: &DropSpec,
        now_ms: u64,
        limits: &DropLimits,
    ) -> Result<(), Vec<InvalidField>> {
        let as_new = NewDrop {
            title: self.title.clone(),
            sku_codes: spec.skus.iter().map(|s| s.code.clone()).collect(),
            starts_at_ms: self.starts_at_ms,
            ends_at_ms: self.ends_at_ms,
            per_buyer_limit: self.per_buyer_limit,
            waiting_room: spec.waiting_room,
            after_drop: self.after_drop,
        };
        let mut errors = as_new.validate(now_ms, limits).err().unwrap_or_default();
        if self.starts_at_ms != spec.starts_at_ms && self.starts_at_ms < now_ms {
            errors.push(InvalidField::new(
                "starts_at",
                "a drop is rescheduled to now or later",
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The fields whose values differ from `spec`'s, by their API names.
    pub fn changed(&self, spec: &DropSpec) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.title != spec.title {
            changed.push("title");
        }
        if self.starts_at_ms != spec.starts_at_ms {
            changed.push("starts_at");
        }
        if self.ends_at_ms != spec.ends_at_ms {
            changed.push("ends_at");
        }
        if self.per_buyer_limit != spec.per_buyer_limit {
            changed.push("per_buyer_limit");
        }
        if self.after_drop != spec.after_drop {
            changed.push("after_drop");
        }
        changed
    }
}

/// Everything that changes a drop. Written to the WAL, replayed on recovery.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum DropEvent {
    Created(DropSpec),
    Moved {
        to: DropState,
        at_ms: u64,
    },
    Edited(DropEdit),
    /// Every SKU was told how the drop ended: back on normal sale (an
    /// ended `after_drop: "sell"` drop) or closed (a cancelled one), so a
    /// restart need not tell them again.
    SkusSettled {
        at_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropError {
    #[error("a {from} drop cannot become {to}")]
    Transition { from: DropState, to: DropState },
    /// An edit of fields that are fixed once the drop started (or of any
    /// field once it ended or was cancelled).
    #[error("a {state} drop's {} can no longer change", .fields.join(", "))]
    Started {
        state: DropState,
        fields: Vec<&'static str>,
    },
    #[error("invalid drop edit")]
    Invalid(Vec<InvalidField>),
}

/// The fields a seller's `PATCH` names; the rest stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropPatch {
    pub title: Option<String>,
    pub starts_at_ms: Option<u64>,
    pub ends_at_ms: Option<u64>,
    pub per_buyer_limit: Option<u32>,
    pub after_drop: Option<AfterDrop>,
}

impl DropPatch {
    /// The edit this patch makes of `spec`.
    pub fn onto(&self, spec: &DropSpec, at_ms: u64, by: UserId) -> DropEdit {
        let mut edit = DropEdit::of(spec, at_ms, by);
        if let Some(title) = &self.title {
            edit.title = title.trim().to_owned();
        }
        edit.starts_at_ms = self.starts_at_ms.unwrap_or(edit.starts_at_ms);
        edit.ends_at_ms = self.ends_at_ms.unwrap_or(edit.ends_at_ms);
        edit.per_buyer_limit = self.per_buyer_limit.unwrap_or(edit.per_buyer_limit);
        edit.after_drop = self.after_drop.unwrap_or(edit.after_drop);
        edit
    }
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
    /// Edits so far, and when the last was made (its creation before any).
    pub edits: u32,
    pub updated_at_ms: u64,
    /// When every SKU was told how it ended (ended `sell` drops and
    /// cancelled drops; an ended `close` drop's window closes by itself).
    pub skus_settled_at_ms: Option<u64>,
}

impl FlashDrop {
    pub fn new(spec: DropSpec) -> Self {
        let at = spec.created_at_ms;
        Self {
            spec,
            state: DropState::Scheduled,
            history: vec![(DropState::Scheduled, at)],
            edits: 0,
            updated_at_ms: at,
            skus_settled_at_ms: None,
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
            DropEvent::Edited(edit) => drop.map(|mut d| {
                d.take_edit(edit);
                d
            }),
            DropEvent::SkusSettled { at_ms } => drop.map(|mut d| {
                d.skus_settled_at_ms = Some(*at_ms);
                d
            }),
        }
    }

    /// What its SKUs are due to be told and have not been yet: to go back
    /// to normal sale (`Sell`, an ended `sell` drop) or to close (`Close`,
    /// a cancelled drop). An ended `close` drop owes nothing: its window
    /// closes its SKUs by itself.
    pub fn owes_settling(&self) -> Option<AfterDrop> {
        if self.skus_settled_at_ms.is_some() {
            return None;
        }
        match self.state {
            DropState::Cancelled => Some(AfterDrop::Close),
            DropState::Ended if self.spec.after_drop == AfterDrop::Sell => Some(AfterDrop::Sell),
            _ => None,
        }
    }

    /// When its SKUs went back to normal sale (ended `sell` drops only).
    pub fn skus_released_at_ms(&self) -> Option<u64> {
        self.skus_settled_at_ms
            .filter(|_| self.state == DropState::Ended && self.spec.after_drop == AfterDrop::Sell)
    }

    /// Records that every SKU was told (once).
    pub fn settled(&mut self, at_ms: u64) -> Option<DropEvent> {
        self.owes_settling()?;
        self.skus_settled_at_ms = Some(at_ms);
        Some(DropEvent::SkusSettled { at_ms })
    }

    fn take_edit(&mut self, edit: &DropEdit) {
        let spec = &mut self.spec;
        spec.title.clone_from(&edit.title);
        spec.starts_at_ms = edit.starts_at_ms;
        spec.ends_at_ms = edit.ends_at_ms;
        spec.per_buyer_limit = edit.per_buyer_limit;
        spec.after_drop = edit.after_drop;
        self.edits += 1;
        self.updated_at_ms = edit.at_ms;
    }

    /// Applies a seller's patch at `now_ms`. The window and the per-buyer
    /// limit change only before the drop starts (a scheduled drop whose
    /// start has passed has started, even before its tick); the title and
    /// `after_drop` until it ends (its end having passed, likewise). The edited drop is checked as a new one
    /// would be. A patch that changes nothing is `None`.
    pub fn edit(
        &mut self,
        patch: &DropPatch,
        by: UserId,
        now_ms: u64,
        limits: &DropLimits,
    ) -> Result<Option<DropEvent>, DropError> {
        let edit = patch.onto(&self.spec, now_ms, by);
        let changed = edit.changed(&self.spec);
        if changed.is_empty() {
            return Ok(None);
        }
        let started = self.state != DropState::Scheduled || now_ms >= self.spec.starts_at_ms;
        // Past its end it has ended, even before the tick that says so.
        let ended = !self.state.is_open() || now_ms >= self.spec.ends_at_ms;
        let fixed: Vec<&'static str> = if ended {
            changed
        } else if started {
            changed
                .into_iter()
                .filter(|f| !matches!(*f, "title" | "after_drop"))
                .collect()
        } else {
            Vec::new()
        };
        if !fixed.is_empty() {
            return Err(DropError::Started {
                state: self.state,
                fields: fixed,
            });
        }
        if started {
            // Only the title and `after_drop` changed: the window is the
            // one the drop already runs in, whatever the clock says now.
            if let Err(error) = super::ids::check_line("title", &edit.title, limits.title_max_chars)
            {
                return Err(DropError::Invalid(vec![error]));
            }
        } else {
            edit.validate(&self.spec, now_ms, limits)
                .map_err(DropError::Invalid)?;
        }
        self.take_edit(&edit);
        Ok(Some(DropEvent::Edited(edit)))
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
    pub after_drop: AfterDrop,
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

/// Drops as formats 0..=3 wrote them, before `after_drop` and edits:
/// they read as drops that close their SKUs and were never edited.
pub mod legacy {
    use super::{
        AfterDrop, DropEvent, DropId, DropSku, DropSpec, DropState, FlashDrop, TenantId, UserId,
        WaitingRoomSpec,
    };

    #[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub struct DropSpecV1 {
        pub id: DropId,
        pub tenant: TenantId,
        pub title: String,
        pub skus: Vec<DropSku>,
        pub starts_at_ms: u64,
        pub ends_at_ms: u64,
        pub per_buyer_limit: u32,
        pub waiting_room: Option<WaitingRoomSpec>,
        pub created_at_ms: u64,
        pub created_by: UserId,
    }

    #[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub enum DropEventV1 {
        Created(DropSpecV1),
        Moved { to: DropState, at_ms: u64 },
    }

    #[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub struct FlashDropV1 {
        pub spec: DropSpecV1,
        pub state: DropState,
        pub history: Vec<(DropState, u64)>,
    }

    impl From<DropSpecV1> for DropSpec {
        fn from(old: DropSpecV1) -> Self {
            DropSpec {
                id: old.id,
                tenant: old.tenant,
                title: old.title,
                skus: old.skus,
                starts_at_ms: old.starts_at_ms,
                ends_at_ms: old.ends_at_ms,
                per_buyer_limit: old.per_buyer_limit,
                waiting_room: old.waiting_room,
                created_at_ms: old.created_at_ms,
                created_by: old.created_by,
                after_drop: AfterDrop::Close,
            }
        }
    }

    impl From<DropEventV1> for DropEvent {
        fn from(old: DropEventV1) -> Self {
            match old {
                DropEventV1::Created(spec) => DropEvent::Created(spec.into()),
                DropEventV1::Moved { to, at_ms } => DropEvent::Moved { to, at_ms },
            }
        }
    }

    impl From<FlashDropV1> for FlashDrop {
        fn from(old: FlashDropV1) -> Self {
            let updated_at_ms = old.spec.created_at_ms;
            FlashDrop {
                spec: old.spec.into(),
                state: old.state,
                history: old.history,
                edits: 0,
                updated_at_ms,
                skus_settled_at_ms: None,
            }
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
            after_drop: AfterDrop::Close,
        }
    }

    fn states(events: &[DropEvent]) -> Vec<DropState> {
        events
            .iter()
            .filter_map(|e| match e {
                DropEvent::Moved { to, .. } => Some(*to),
                DropEvent::Created(_) | DropEvent::Edited(_) | DropEvent::SkusSettled { .. } => {
                    None
                }
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
            after_drop: AfterDrop::Close,
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
            after_drop: AfterDrop::Sell,
        };
        assert_eq!(good.validate(1_000, &limits), Ok(()));
    }

    fn limits() -> DropLimits {
        DropLimits {
            title_max_chars: 20,
            skus_max: 4,
            duration_max_ms: 100_000,
            horizon_max_ms: 1_000_000,
            per_buyer_limit_max: 5,
            waiting_room_capacity_max: 10,
        }
    }

    fn patch() -> DropPatch {
        DropPatch::default()
    }

    #[test]
    fn a_scheduled_drop_is_rescheduled_before_it_starts_and_not_after() {
        let mut drop = FlashDrop::new(spec(10_000, 20_000));
        let moved = DropPatch {
            starts_at_ms: Some(12_000),
            ends_at_ms: Some(30_000),
            per_buyer_limit: Some(1),
            ..patch()
        };
        let event = drop
            .edit(&moved, UserId(3), 5_000, &limits())
            .unwrap()
            .unwrap();
        let DropEvent::Edited(edit) = &event else {
            panic!("{event:?}")
        };
        assert_eq!((edit.at_ms, edit.by), (5_000, UserId(3)));
        assert_eq!(
            (drop.spec.starts_at_ms, drop.spec.ends_at_ms),
            (12_000, 30_000)
        );
        assert_eq!(drop.spec.per_buyer_limit, 1);
        assert_eq!((drop.edits, drop.updated_at_ms), (1, 5_000));
        assert_eq!(drop.next_deadline_ms(), Some(12_000));

        // Its start has passed, before any tick: the window is fixed now,
        // the title and after_drop are not.
        let late = DropPatch {
            ends_at_ms: Some(40_000),
            title: Some("Late".into()),
            ..patch()
        };
        assert_eq!(
            drop.edit(&late, UserId(3), 12_000, &limits()),
            Err(DropError::Started {
                state: DropState::Scheduled,
                fields: vec!["ends_at"],
            })
        );
        assert_eq!(drop.spec.title, "t", "a refused edit changes nothing");
        let renamed = DropPatch {
            title: Some("  Late  ".into()),
            after_drop: Some(AfterDrop::Sell),
            ..patch()
        };
        drop.tick(12_000, false);
        assert!(drop
            .edit(&renamed, UserId(3), 13_000, &limits())
            .unwrap()
            .is_some());
        assert_eq!(drop.spec.title, "Late");
        assert_eq!(drop.spec.after_drop, AfterDrop::Sell);

        // Past its end, before the tick: nothing changes any more.
        assert!(matches!(
            drop.edit(
                &DropPatch {
                    title: Some("Too late".into()),
                    ..patch()
                },
                UserId(3),
                30_000,
                &limits()
            ),
            Err(DropError::Started { .. })
        ));
        // Ended: nothing changes any more.
        drop.tick(30_000, false);
        assert_eq!(
            drop.edit(
                &DropPatch {
                    after_drop: Some(AfterDrop::Close),
                    ..patch()
                },
                UserId(3),
                31_000,
                &limits()
            ),
            Err(DropError::Started {
                state: DropState::Ended,
                fields: vec!["after_drop"],
            })
        );
    }

    #[test]
    fn an_edit_is_checked_as_a_new_drop_and_a_no_op_is_none() {
        let mut drop = FlashDrop::new(spec(10_000, 20_000));
        let same = DropPatch {
            title: Some(" t ".into()),
            starts_at_ms: Some(10_000),
            ..patch()
        };
        assert_eq!(drop.edit(&same, UserId(3), 5_000, &limits()), Ok(None));
        assert_eq!(drop.edits, 0);

        let bad = DropPatch {
            title: Some(" ".into()),
            starts_at_ms: Some(4_000),
            ends_at_ms: Some(3_000),
            per_buyer_limit: Some(9),
            ..patch()
        };
        let Err(DropError::Invalid(errors)) = drop.edit(&bad, UserId(3), 5_000, &limits()) else {
            panic!("accepted")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_ref()).collect();
        for field in ["title", "ends_at", "starts_at", "per_buyer_limit"] {
            assert!(fields.contains(&field), "{field} missing from {fields:?}");
        }
        assert_eq!(drop, FlashDrop::new(spec(10_000, 20_000)));
    }

    #[test]
    fn edits_and_the_release_replay_to_the_same_drop() {
        let mut drop = FlashDrop::new(spec(10_000, 20_000));
        let mut events = vec![DropEvent::Created(drop.spec.clone())];
        let sell = DropPatch {
            after_drop: Some(AfterDrop::Sell),
            ends_at_ms: Some(25_000),
            ..patch()
        };
        events.extend(drop.edit(&sell, UserId(3), 1_000, &limits()).unwrap());
        events.extend(drop.tick(10_000, false));
        assert_eq!(drop.owes_settling(), None, "live drops owe nothing");
        assert_eq!(drop.settled(10_500), None);
        events.extend(drop.tick(25_000, false));
        assert_eq!(drop.owes_settling(), Some(AfterDrop::Sell));
        events.extend(drop.settled(25_100));
        assert_eq!(drop.settled(25_200), None, "settled once");
        assert_eq!(drop.owes_settling(), None);
        assert_eq!(drop.skus_released_at_ms(), Some(25_100));

        let replayed = events.iter().fold(None, FlashDrop::apply).unwrap();
        assert_eq!(replayed, drop);
        assert_eq!(replayed.edits, 1);
    }

    #[test]
    fn an_ended_close_drop_owes_nothing_and_a_cancelled_one_owes_closing_once() {
        let mut closing = FlashDrop::new(spec(10_000, 20_000));
        closing.tick(20_000, false);
        assert_eq!(closing.state, DropState::Ended);
        assert_eq!(closing.owes_settling(), None);

        let mut cancelled = FlashDrop::new(spec(10_000, 20_000));
        cancelled.spec.after_drop = AfterDrop::Sell;
        cancelled.cancel(11_000).unwrap();
        assert_eq!(
            cancelled.owes_settling(),
            Some(AfterDrop::Close),
            "cancelled closes whatever after_drop says"
        );
        assert_eq!(
            cancelled.settled(11_500),
            Some(DropEvent::SkusSettled { at_ms: 11_500 })
        );
        assert_eq!(cancelled.owes_settling(), None);
        assert_eq!(
            cancelled.skus_released_at_ms(),
            None,
            "closed, not released"
        );
    }

    #[test]
    fn drops_of_older_formats_read_as_closing_unedited_drops() {
        use legacy::{DropEventV1, DropSpecV1, FlashDropV1};
        let old_spec = DropSpecV1 {
            id: DropId(7),
            tenant: TenantId(1),
            title: "t".into(),
            skus: vec![DropSku {
                id: 1,
                code: "A".into(),
            }],
            starts_at_ms: 10_000,
            ends_at_ms: 20_000,
            per_buyer_limit: 2,
            waiting_room: None,
            created_at_ms: 0,
            created_by: UserId(9),
        };
        let old = FlashDropV1 {
            spec: old_spec.clone(),
            state: DropState::Ended,
            history: vec![(DropState::Scheduled, 0), (DropState::Ended, 20_000)],
        };
        let drop = FlashDrop::from(old);
        assert_eq!(drop.spec, spec(10_000, 20_000));
        assert_eq!(drop.spec.after_drop, AfterDrop::Close);
        assert_eq!((drop.edits, drop.updated_at_ms), (0, 0));
        assert_eq!(
            drop.owes_settling(),
            None,
            "an ended close drop owes nothing"
        );
        assert_eq!(
            DropEvent::from(DropEventV1::Created(old_spec)),
            DropEvent::Created(spec(10_000, 20_000))
        );
        assert_eq!(
            DropEvent::from(DropEventV1::Moved {
                to: DropState::Live,
                at_ms: 5
            }),
            DropEvent::Moved {
                to: DropState::Live,
                at_ms: 5
            }
        );
    }
}
