//! Services that are not actors: identity (accounts, sessions, stores and
//! staff, follows, audit), inventory (SKU routing and stock), the catalog,
//! import jobs, the browsing index, the category tree and the count of unsettled orders
//! per SKU, each built
//! from the dependencies it names.

pub mod catalog;
pub mod categories;
pub mod identity;
pub mod imports;
pub mod inventory;
pub mod listings;
pub mod open_lines;
pub mod search;

pub use catalog::{Catalog, CatalogDeps, CatalogError};
pub use categories::{Categories, CategoriesError};
pub use identity::DirectoryService;
pub use imports::{ImportDeps, ImportError, ImportSettings, Imports};
pub use inventory::{Inventory, InventoryDeps, InventoryError, StockFuture, StockPort};
pub use open_lines::OpenLines;
