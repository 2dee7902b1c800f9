//! actix actors: SKU actors (one per SKU, supervised, placed by hash on N
//! arbiters) and the registry that finds them, carts, orders and drops.

pub mod carts;
pub mod drops;
pub mod holds;
pub mod host;
pub mod in_stock;
pub mod orders;
pub mod registry;
pub mod sku;

pub use in_stock::InStock;
pub use registry::{Registry, SendError, SkuInfo};
