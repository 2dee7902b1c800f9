//! actix actors and what starts them: SKU actors (one per SKU, supervised,
//! placed by hash on N arbiters), the registry that finds them, and `Engine`.

pub mod engine;
pub mod registry;
pub mod sku;

pub use engine::{Engine, EngineError, StartError};
pub use registry::{Registry, SendError, SkuInfo};
