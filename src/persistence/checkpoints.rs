//! Where each durable feed subscriber has got to in the WAL: its checkpoint,
//! one sled key per subscriber beside the WAL, and the WAL batches it reads
//! from there. A checkpoint is written only after the subscriber made what it
//! applied durable in its own storage, so after a crash it resumes at or
//! before where it was (at-least-once), never past it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use sled::{IVec, Tree};

use super::batch::{decode_batch, DecodedBatch};
use super::record::{decode_record, WalRecord};
use super::store::{corrupt, Store, StoreError};

const TREE: &str = "feed_checkpoints";
/// The layout of a checkpoint value: this byte, then the two u64 fields (BE).
const LAYOUT: u8 = 1;
/// Longest subscriber name (the key).
pub const NAME_BYTES_MAX: usize = 64;

/// How far a subscriber has applied the WAL, durably.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every record at or below this LSN is applied (0: none).
    pub applied_lsn: u64,
    /// Where reading resumes: the batch holding `applied_lsn + 1` is at or
    /// after this batch sequence (a hint; the reader checks LSNs).
    pub batch_seq: u64,
}

impl Checkpoint {
    fn to_bytes(self) -> [u8; 17] {
        let mut out = [0; 17];
        out[0] = LAYOUT;
        out[1..9].copy_from_slice(&self.applied_lsn.to_be_bytes());
        out[9..].copy_from_slice(&self.batch_seq.to_be_bytes());
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 17 || bytes[0] != LAYOUT {
            return None;
        }
        Some(Self {
            applied_lsn: u64::from_be_bytes(bytes[1..9].try_into().ok()?),
            batch_seq: u64::from_be_bytes(bytes[9..].try_into().ok()?),
        })
    }
}

/// Subscriber name → `Checkpoint`.
#[derive(Clone)]
pub struct Checkpoints {
    tree: Tree,
}

impl Checkpoints {
    pub fn open(store: &Store) -> Result<Self, StoreError> {
        Ok(Self {
            tree: store.tree(TREE)?,
        })
    }

    /// Every stored checkpoint, by subscriber name.
    pub fn all(&self) -> Result<Vec<(String, Checkpoint)>, StoreError> {
        self.tree
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let name = String::from_utf8(key.to_vec())
                    .map_err(|_| corrupt("feed checkpoint", "a UTF-8 name"))?;
                let checkpoint = Checkpoint::from_bytes(&value)
                    .ok_or_else(|| corrupt("feed checkpoint", format!("{name}: 17 bytes")))?;
                Ok((name, checkpoint))
            })
            .collect()
    }

    /// Records `checkpoint` for `name`. Made durable by the WAL writer's next
    /// sync (or sled's own flush): losing it only replays more.
    pub fn save(&self, name: &str, checkpoint: Checkpoint) -> Result<(), StoreError> {
        self.tree.insert(name.as_bytes(), &checkpoint.to_bytes())?;
        Ok(())
    }

    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.tree.remove(name.as_bytes())?;
        Ok(())
    }
}

/// A pin that holds nothing: the subscriber needs no batch (yet).
pub const NEEDS_NOTHING: u64 = u64::MAX;

/// The first LSN each durable subscriber still needs from the WAL. The
/// subscribers move their pins; the WAL writer keeps the batches the lowest
/// pin needs, up to its bound (`wal.subscriber_retain_max_mb`).
#[derive(Debug, Default)]
pub struct Pins {
    pins: RwLock<Vec<Pin>>,
}

#[derive(Debug)]
struct Pin {
    name: String,
    needs_from: Arc<AtomicU64>,
    claimed: bool,
}

impl Pins {
    /// Pins for the subscribers that have a checkpoint, so that the batches
    /// they need survive from the writer's first commit, before they start.
    pub fn from_checkpoints(all: &[(String, Checkpoint)]) -> Self {
        let pins = all
            .iter()
            .map(|(name, checkpoint)| Pin {
                name: name.clone(),
                needs_from: Arc::new(AtomicU64::new(checkpoint.applied_lsn.saturating_add(1))),
                claimed: false,
            })
            .collect();
        Self {
            pins: RwLock::new(pins),
        }
    }

    /// The pin of subscriber `name`: the one its checkpoint set at start, or
    /// a new one that holds nothing until the subscriber moves it.
    pub fn claim(&self, name: &str) -> Arc<AtomicU64> {
        let mut pins = self.pins.write();
        if let Some(pin) = pins.iter_mut().find(|pin| pin.name == name) {
            pin.claimed = true;
            return pin.needs_from.clone();
        }
        let needs_from = Arc::new(AtomicU64::new(NEEDS_NOTHING));
        pins.push(Pin {
            name: name.to_owned(),
            needs_from: needs_from.clone(),
            claimed: true,
        });
        needs_from
    }

    /// Lets go of every pin no running subscriber claimed (a subscriber
    /// this build no longer has), returning their names.
    pub fn release_unclaimed(&self) -> Vec<String> {
        let mut pins = self.pins.write();
        let released = pins
            .iter()
            .filter(|pin| !pin.claimed)
            .map(|pin| pin.name.clone())
            .collect();
        pins.retain(|pin| pin.claimed);
        released
    }

    /// The lowest LSN any subscriber still needs (`NEEDS_NOTHING`: none).
    pub fn needed_from(&self) -> u64 {
        self.pins
            .read()
            .iter()
            .map(|pin| pin.needs_from.load(Ordering::Acquire))
            .min()
            .unwrap_or(NEEDS_NOTHING)
    }
}

/// WAL batches in sequence order from some batch on, read by a subscriber.
pub struct WalReader {
    wal: Tree,
}

/// One WAL batch as read back.
pub struct ReadBatch {
    pub seq: u64,
    value: IVec,
}

impl ReadBatch {
    pub fn decode(&self) -> Result<DecodedBatch<'_>, StoreError> {
        decode_batch(&self.value).map_err(|e| corrupt("wal batch", e))
    }
}

impl WalReader {
    pub fn new(store: &Store) -> Self {
        Self {
            wal: store.wal.clone(),
        }
    }

    /// Batches from sequence `from` on, oldest first; at most `max` of them.
    pub fn batches_from(&self, from: u64, max: usize) -> Result<Vec<ReadBatch>, StoreError> {
        let mut out = Vec::new();
        for item in self.wal.range(from.to_be_bytes()..).take(max) {
            let (key, value) = item?;
            let seq: [u8; 8] = key
                .as_ref()
                .try_into()
                .map_err(|_| corrupt("wal batch", "a key of 8 bytes"))?;
            out.push(ReadBatch {
                seq: u64::from_be_bytes(seq),
                value,
            });
        }
        Ok(out)
    }
}

/// Decodes one record of a batch read back.
pub fn read_record(payload: &[u8], format: u16) -> Result<WalRecord, StoreError> {
    decode_record(payload, format).map_err(|e| corrupt("wal record", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_reads_back_and_a_foreign_value_does_not() {
        let checkpoint = Checkpoint {
            applied_lsn: 41,
            batch_seq: 7,
        };
        assert_eq!(
            Checkpoint::from_bytes(&checkpoint.to_bytes()),
            Some(checkpoint)
        );
        let mut other_layout = checkpoint.to_bytes();
        other_layout[0] = 2;
        assert_eq!(Checkpoint::from_bytes(&other_layout), None);
        assert_eq!(Checkpoint::from_bytes(&[1; 9]), None);
    }

    #[test]
    fn the_lowest_pin_holds_the_wal_and_unclaimed_pins_are_let_go() {
        let at = |applied_lsn| Checkpoint {
            applied_lsn,
            batch_seq: 0,
        };
        let pins = Pins::from_checkpoints(&[("search".into(), at(10)), ("gone".into(), at(3))]);
        assert_eq!(
            pins.needed_from(),
            4,
            "a stored checkpoint pins from the start"
        );
        let search = pins.claim("search");
        let fresh = pins.claim("fresh");
        assert_eq!(fresh.load(Ordering::Acquire), NEEDS_NOTHING);
        assert_eq!(pins.release_unclaimed(), vec!["gone".to_owned()]);
        assert_eq!(pins.needed_from(), 11);
        fresh.store(7, Ordering::Release);
        assert_eq!(pins.needed_from(), 7);
        search.store(NEEDS_NOTHING, Ordering::Release);
        fresh.store(NEEDS_NOTHING, Ordering::Release);
        assert_eq!(pins.needed_from(), NEEDS_NOTHING);
        assert!(
            Arc::ptr_eq(&search, &pins.claim("search")),
            "one pin per name"
        );
    }
}
