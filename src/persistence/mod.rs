//! Durability: the group-commit WAL in sled, chunked snapshots, recovery, and
//! the rkyv encoding of everything stored. Nothing above this module touches sled.

pub mod batch;
pub mod book;
pub mod checkpoints;
pub mod imports;
pub mod kinds;
pub mod orders;
pub mod queue;
pub mod record;
pub mod recovery;
pub mod retired;
pub mod store;
pub mod versions;
pub mod wal;

pub use book::Book;
pub use imports::ImportJobs;
pub use kinds::Snapshots;
pub use orders::{OrderArchive, OrderIndex};
pub use queue::JobQueue;
pub use record::{EntityKey, RecordBody, SnapshotBody, WalRecord};
pub use recovery::{load_ledger, rebuild_ledger, recover, Recovered, RecoveryMode, RecoveryStats};
pub use retired::RetiredSkus;
pub use store::{Store, StoreError, SyncMode};
pub use versions::ProductVersions;
pub use wal::{Ack, WalError, WalHandle, WalOp, WalSettings, WalStats, WriterStart};
