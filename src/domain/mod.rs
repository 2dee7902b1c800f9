//! The rules of flashdrop as plain Rust: no I/O, no actix, no async.
//! Everything here is deterministic given its inputs (time is passed in).

pub mod browse;
pub mod cart;
pub mod category;
pub mod drop;
pub mod identity;
pub mod ids;
pub mod import;
pub mod limiter;
pub mod order;
pub mod outbound;
pub mod policy;
pub mod pricing;
pub mod product;
pub mod product_version;
pub mod search;
pub mod stock;
pub mod waiting_room;

#[cfg(test)]
mod stock_model_tests;

pub use ids::{
    BuyerId, DropId, IdempotencyKey, InvalidField, OrderId, ReservationId, SkuCode, SkuId,
    TenantId, TenantKey, UserId, WarehouseId,
};
pub use stock::{
    CommitOutcome, DropGate, InvariantViolation, LedgerLimits, LedgerSnapshot, NotLive, Receipt,
    ReleaseOutcome, ReleaseReason, ReservationState, ReservationView, ReserveCmd, ReserveOutcome,
    StockError, StockEvent, StockLedger, StockView,
};

/// FNV-1a, 64 bit: a stable hash for request fingerprints and shard placement
/// (stable across processes and releases, unlike `std`'s randomised hasher).
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(std::iter::once(&0xffu8)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}
