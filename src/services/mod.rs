//! Services that are not actors: what the HTTP layer calls besides actors,
//! each built from the dependencies it names.

pub mod catalog;
pub mod inventory;

pub use catalog::{Catalog, CatalogDeps, CatalogError};
pub use inventory::{Inventory, InventoryDeps, InventoryError, StockFuture, StockPort};
