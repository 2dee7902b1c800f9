//! actix actors: SKU actors (one per SKU, supervised, placed by hash on N
//! arbiters) and the registry that finds them, carts, orders and drops, and
//! the directory of accounts and stores.

pub mod carts;
pub mod directory;
pub mod drops;
pub mod holds;
pub mod orders;
pub mod registry;
pub mod sku;

pub use directory::{
    AuditDraft, AuditFilter, DirectoryService, IdentityError, IssuedTokens, Missing,
};
pub use registry::{Registry, SendError, SkuInfo};
