//! actix actors and what starts them: SKU actors (one per SKU, supervised,
//! placed by hash on N arbiters), the registry that finds them, the directory
//! of accounts and stores, and `Engine`.

pub mod carts;
pub mod directory;
pub mod drops;
pub mod engine;
pub mod holds;
pub mod orders;
pub mod registry;
pub mod sku;

pub use directory::{
    AuditDraft, AuditFilter, DirectoryService, IdentityError, IssuedTokens, Missing,
};
pub use engine::{Engine, EngineError, Externals, StartError};
pub use registry::{Registry, SendError, SkuInfo};
