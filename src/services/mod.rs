//! Services that are not actors: identity (accounts, sessions, stores and
//! staff, follows, audit), inventory (SKU routing and stock) and the catalog,
//! each built from the dependencies it names.

pub mod catalog;
pub mod identity;
pub mod inventory;

pub use catalog::{Catalog, CatalogDeps, CatalogError};
pub use identity::DirectoryService;
pub use inventory::{Inventory, InventoryDeps, InventoryError, StockFuture, StockPort};
