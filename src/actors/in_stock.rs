//! Which SKUs have units available now, as one bit per SKU id, readable
//! without asking any actor: browsing filters on it. A SKU actor sets its
//! bit when a change that crosses zero becomes durable; start-up sets the
//! bits of every recovered ledger. Ids are dense from 1, so the bits live
//! in fixed chunks allocated as ids reach them: a set or a read is a few
//! atomic operations, with no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::domain::SkuId;

/// Bits per chunk (8 KiB of words).
const CHUNK_BITS: u64 = 1 << 16;
const WORDS_PER_CHUNK: usize = (CHUNK_BITS / 64) as usize;
/// Chunks at most: 2^30 SKU ids, 128 KiB of chunk pointers.
const CHUNKS: usize = 1 << 14;

type Chunk = Box<[AtomicU64; WORDS_PER_CHUNK]>;

/// See the module comment.
pub struct InStock {
    chunks: Box<[OnceLock<Chunk>]>,
}

impl Default for InStock {
    fn default() -> Self {
        Self {
            chunks: (0..CHUNKS).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl std::fmt::Debug for InStock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let chunks = self.chunks.iter().filter(|c| c.get().is_some()).count();
        f.debug_struct("InStock").field("chunks", &chunks).finish()
    }
}

impl InStock {
    /// Records whether `sku` has units available. An id past the bound is
    /// never in stock (and logged once per call: ids are far below it).
    pub fn set(&self, sku: SkuId, available: bool) {
        let Some((chunk, word, bit)) = Self::place(sku) else {
            tracing::error!(sku = sku.0, "SKU id past the in-stock bound");
            return;
        };
        if !available && self.chunks[chunk].get().is_none() {
            return;
        }
        let words =
            self.chunks[chunk].get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
        if available {
            words[word].fetch_or(bit, Ordering::Release);
        } else {
            words[word].fetch_and(!bit, Ordering::Release);
        }
    }

    /// Whether `sku` had units available at its last durable change.
    pub fn get(&self, sku: SkuId) -> bool {
        Self::place(sku)
            .and_then(|(chunk, word, bit)| {
                let words = self.chunks[chunk].get()?;
                Some(words[word].load(Ordering::Acquire) & bit != 0)
            })
            .unwrap_or(false)
    }

    fn place(sku: SkuId) -> Option<(usize, usize, u64)> {
        let chunk = usize::try_from(sku.0 / CHUNK_BITS).ok()?;
        if chunk >= CHUNKS {
            return None;
        }
        let within = sku.0 % CHUNK_BITS;
        Some((chunk, (within / 64) as usize, 1u64 << (within % 64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_follow_the_last_value_set_for_each_sku() {
        let levels = InStock::default();
        let skus = [0, 1, 63, 64, CHUNK_BITS - 1, CHUNK_BITS, 5 * CHUNK_BITS + 7];
        for &sku in &skus {
            assert!(!levels.get(SkuId(sku)));
            levels.set(SkuId(sku), true);
        }
        for &sku in &skus {
            assert!(levels.get(SkuId(sku)), "{sku}");
        }
        levels.set(SkuId(64), false);
        assert!(!levels.get(SkuId(64)));
        assert!(levels.get(SkuId(63)) && !levels.get(SkuId(65)));
    }

    #[test]
    fn ids_past_the_bound_are_never_in_stock() {
        let levels = InStock::default();
        let far = SkuId(CHUNK_BITS * CHUNKS as u64);
        levels.set(far, true);
        assert!(!levels.get(far));
        // Clearing a bit of a chunk never allocated allocates nothing.
        levels.set(SkuId(CHUNK_BITS * 9), false);
        assert!(levels.chunks[9].get().is_none());
    }
}
