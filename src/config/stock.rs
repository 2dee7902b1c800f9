//! `[actors]`, `[reservations]`, `[stock]` and `[drops]`: SKU actors and the rules of holding and selling stock.

use serde::{Deserialize, Serialize};

use super::{range, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActorConfig {
    /// Where SKU actors run: their own arbiters, or the HTTP workers' threads.
    pub placement: Placement,
    /// Arbiter threads SKU actors are spread over (`placement = "arbiters"`); 0 means one per core.
    pub shards: usize,
    pub mailbox_capacity: usize,
    /// An actor idle this long with no open reservation is passivated.
    pub idle_timeout_s: u64,
}

impl Default for ActorConfig {
    fn default() -> Self {
        Self {
            placement: Placement::HttpWorkers,
            shards: 0,
            mailbox_capacity: 4096,
            idle_timeout_s: 300,
        }
    }
}

impl ActorConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let a = self;
        range("actors.shards", a.shards, 0, 1024)?;
        range("actors.mailbox_capacity", a.mailbox_capacity, 1, 1 << 20)?;
        range("actors.idle_timeout_s", a.idle_timeout_s, 1, 86_400 * 7)?;
        Ok(())
    }
}

/// Where SKU actors run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// `actors.shards` arbiter threads of their own.
    Arbiters,
    /// The HTTP workers' threads: no extra threads, and no thread hop when the
    /// worker that received a request owns the SKU.
    HttpWorkers,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReservationConfig {
    pub default_ttl_s: u64,
    pub min_ttl_s: u64,
    /// Longest hold a shopper may ask for.
    pub max_ttl_s: u64,
    pub max_quantity: u32,
    /// Units of one SKU a shopper may hold at once through their own
    /// reservations outside a drop (a drop's `per_buyer_limit` rules inside).
    pub shopper_units_per_sku_max: u32,
    /// Open holds one shopper may have at once across every SKU (their own,
    /// their cart's and their orders' holds all count); past it, their own
    /// reservations answer 409 `too_many_holds`.
    pub shopper_holds_max: u32,
    pub open_max_per_sku: usize,
    pub idempotency_keys_max_per_sku: usize,
    pub idempotency_ttl_s: u64,
    pub finished_max_per_sku: usize,
    pub finished_retention_s: u64,
}

impl Default for ReservationConfig {
    fn default() -> Self {
        Self {
            default_ttl_s: 600,
            min_ttl_s: 1,
            max_ttl_s: 900,
            max_quantity: 1_000,
            shopper_units_per_sku_max: 10,
            shopper_holds_max: 20,
            open_max_per_sku: 1_000_000,
            idempotency_keys_max_per_sku: 100_000,
            idempotency_ttl_s: 86_400,
            finished_max_per_sku: 100_000,
            finished_retention_s: 86_400,
        }
    }
}

impl ReservationConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let r = self;
        range("reservations.min_ttl_s", r.min_ttl_s, 1, 86_400 * 30)?;
        range(
            "reservations.max_ttl_s",
            r.max_ttl_s,
            r.min_ttl_s,
            86_400 * 30,
        )?;
        range(
            "reservations.default_ttl_s",
            r.default_ttl_s,
            r.min_ttl_s,
            r.max_ttl_s,
        )?;
        range("reservations.max_quantity", r.max_quantity, 1, 1_000_000)?;
        range(
            "reservations.shopper_units_per_sku_max",
            r.shopper_units_per_sku_max,
            1,
            u32::MAX,
        )?;
        range(
            "reservations.shopper_holds_max",
            r.shopper_holds_max,
            1,
            u32::MAX,
        )?;
        range(
            "reservations.open_max_per_sku",
            r.open_max_per_sku,
            1,
            10_000_000,
        )?;
        range(
            "reservations.idempotency_keys_max_per_sku",
            r.idempotency_keys_max_per_sku,
            1,
            10_000_000,
        )?;
        range(
            "reservations.idempotency_ttl_s",
            r.idempotency_ttl_s,
            1,
            86_400 * 30,
        )?;
        range(
            "reservations.finished_max_per_sku",
            r.finished_max_per_sku,
            1,
            10_000_000,
        )?;
        range(
            "reservations.finished_retention_s",
            r.finished_retention_s,
            1,
            86_400 * 30,
        )?;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StockConfig {
    /// Low-stock threshold for SKUs that do not set one; 0 disables.
    pub low_stock_threshold: u64,
    pub warehouses_max: usize,
    pub units_max: u64,
}

impl Default for StockConfig {
    fn default() -> Self {
        Self {
            low_stock_threshold: 0,
            warehouses_max: 64,
            units_max: 1_000_000_000_000,
        }
    }
}

impl StockConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let st = self;
        range("stock.warehouses_max", st.warehouses_max, 1, 10_000)?;
        range("stock.units_max", st.units_max, 1, 1 << 50)?;
        range(
            "stock.low_stock_threshold",
            st.low_stock_threshold,
            0,
            st.units_max,
        )?;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DropsConfig {
    pub title_max_chars: usize,
    pub skus_max: usize,
    /// Longest drop, from start to end.
    pub duration_max_s: u64,
    /// How far ahead a drop may start.
    pub horizon_max_s: u64,
    pub per_buyer_limit_max: u32,
    pub waiting_room_capacity_max: u32,
    /// How often waiting rooms admit the next shoppers while someone waits.
    pub room_tick_ms: u64,
    /// Drops kept in memory at most, beyond the open ones (which always
    /// stay): past it the least recently used ended or cancelled drops
    /// leave, to be read back from their snapshots on demand.
    pub resident_max: usize,
}

impl Default for DropsConfig {
    fn default() -> Self {
        Self {
            title_max_chars: 200,
            skus_max: 100,
            duration_max_s: 30 * 86_400,
            horizon_max_s: 365 * 86_400,
            per_buyer_limit_max: 1_000,
            waiting_room_capacity_max: 1_000_000,
            room_tick_ms: 100,
            resident_max: 1_000,
        }
    }
}

impl DropsConfig {
    /// What a seller may schedule, and edit a drop into.
    pub fn limits(&self) -> crate::domain::drop::DropLimits {
        crate::domain::drop::DropLimits {
            title_max_chars: self.title_max_chars,
            skus_max: self.skus_max,
            duration_max_ms: self.duration_max_s * 1000,
            horizon_max_ms: self.horizon_max_s * 1000,
            per_buyer_limit_max: self.per_buyer_limit_max,
            waiting_room_capacity_max: self.waiting_room_capacity_max,
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let d = self;
        range("drops.title_max_chars", d.title_max_chars, 1, 10_000)?;
        range("drops.skus_max", d.skus_max, 1, 10_000)?;
        range("drops.duration_max_s", d.duration_max_s, 1, 366 * 86_400)?;
        range("drops.horizon_max_s", d.horizon_max_s, 0, 10 * 366 * 86_400)?;
        range(
            "drops.per_buyer_limit_max",
            d.per_buyer_limit_max,
            1,
            1_000_000,
        )?;
        range(
            "drops.waiting_room_capacity_max",
            d.waiting_room_capacity_max,
            1,
            100_000_000,
        )?;
        range("drops.room_tick_ms", d.room_tick_ms, 1, 10_000)?;
        range("drops.resident_max", d.resident_max, 1, 10_000_000)?;
        Ok(())
    }
}
