//! The sled database behind flashdrop: its trees, how it is opened and synced,
//! and the chunked snapshot format (headers in one tree, chunks in another).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::record::{decode_snapshot, EntityKey, SnapshotBody};

/// sled writes any log item larger than a quarter of a segment to a separate
/// blob file that it never fsyncs. Leaves hold up to 17 values, so with 16 MiB
/// segments every batch and chunk we write stays well inside the log.
pub const SLED_SEGMENT_BYTES: usize = 16 * 1024 * 1024;
/// Largest WAL batch value accepted in configuration (17 of them fit a segment quarter).
pub const BATCH_BYTES_HARD_MAX: usize = 192 * 1024;
/// Snapshots are split into values of at most this size.
pub const SNAPSHOT_CHUNK_BYTES: usize = 64 * 1024;

const CURSOR_KEY: &[u8] = b"cursor";
/// A snapshot header: 32 bytes, the format of the body (2 bytes), then its
/// flags (1 byte). Headers written before formats were recorded are 32
/// bytes (format 0), and before flags 34 (no flag set).
const HEADER_LEN: usize = 35;
const HEADER_LEN_UNFLAGGED: usize = 34;
const HEADER_LEN_UNVERSIONED: usize = 32;
/// Header flag: the stored body is LZ4-compressed, its length prepended.
const FLAG_LZ4: u8 = 1;
/// Header flag: the stored body follows the header in the same value (no chunks).
const FLAG_INLINE: u8 = 2;
/// A stored body up to this size travels inside its header's value: one
/// sled key per snapshot instead of two, for the many small ones.
pub const SNAPSHOT_INLINE_MAX_BYTES: usize = 4 * 1024;
/// Snapshots up to this size are stored compressed when that makes them
/// smaller. Small snapshots (orders, carts, sessions) are many and mostly
/// rkyv's zero padding; compressing one costs microseconds in the WAL
/// writer. Larger ones (busy SKU ledgers) are stored as encoded, so a
/// commit never waits on compressing megabytes.
pub const SNAPSHOT_COMPRESS_MAX_BYTES: usize = SNAPSHOT_CHUNK_BYTES;

/// How far a commit goes before the WAL acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// sled flush, then `fdatasync` of its data file: survives power loss.
    Fdatasync,
    /// sled flush only: survives a killed process.
    Flush,
    /// Acknowledge without flushing. For benchmarks only.
    None,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Fdatasync => "fdatasync",
            SyncMode::Flush => "flush",
            SyncMode::None => "none",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("another flashdrop holds it (waited {0} s); stop it first")]
    Locked(u64),
}

pub fn corrupt(what: &'static str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

/// Where the WAL's counters stand; written with every commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    pub next_lsn: u64,
    pub next_batch: u64,
    pub next_generation: u64,
}

impl Cursor {
    pub fn to_bytes(self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[0..8].copy_from_slice(&self.next_lsn.to_be_bytes());
        out[8..16].copy_from_slice(&self.next_batch.to_be_bytes());
        out[16..24].copy_from_slice(&self.next_generation.to_be_bytes());
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            next_lsn: u64::from_be_bytes(bytes.get(0..8)?.try_into().ok()?),
            next_batch: u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?),
            next_generation: u64::from_be_bytes(bytes.get(16..24)?.try_into().ok()?),
        })
    }
}

/// Points at the chunks of an entity's current snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The snapshot holds every record of its entity up to this LSN.
    pub covers_lsn: u64,
    pub generation: u64,
    pub chunks: u32,
    pub len: u64,
    pub crc: u32,
    /// The format of the body (`record::FORMAT` when written).
    pub format: u16,
    /// `len` and `crc` are of the LZ4-compressed body.
    pub compressed: bool,
    /// The body follows the header in its value (`chunks` is 0).
    pub inline: bool,
}

/// A snapshot whose body is stored (in chunks) or carried (inline), ready
/// for its header to make it current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedSnapshot {
    pub header: SnapshotHeader,
    /// The body, when it travels inside the header's value.
    inline: Option<Vec<u8>>,
}

impl PreparedSnapshot {
    /// What the `snapshots` tree holds for the entity.
    pub fn header_value(&self) -> Vec<u8> {
        let mut value = self.header.to_bytes().to_vec();
        if let Some(body) = &self.inline {
            value.extend_from_slice(body);
        }
        value
    }
}

impl SnapshotHeader {
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&self.covers_lsn.to_be_bytes());
        out[8..16].copy_from_slice(&self.generation.to_be_bytes());
        out[16..20].copy_from_slice(&self.chunks.to_be_bytes());
        out[20..28].copy_from_slice(&self.len.to_be_bytes());
        out[28..32].copy_from_slice(&self.crc.to_be_bytes());
        out[32..34].copy_from_slice(&self.format.to_be_bytes());
        out[34] = (if self.compressed { FLAG_LZ4 } else { 0 })
            | (if self.inline { FLAG_INLINE } else { 0 });
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (format, flags) = match bytes.len() {
            HEADER_LEN_UNVERSIONED => (0, 0),
            HEADER_LEN_UNFLAGGED => (u16::from_be_bytes(bytes[32..34].try_into().ok()?), 0),
            n if n >= HEADER_LEN => (
                u16::from_be_bytes(bytes[32..34].try_into().ok()?),
                bytes[34],
            ),
            _ => return None,
        };
        if flags & !(FLAG_LZ4 | FLAG_INLINE) != 0 {
            // A flag this build does not know: written by a newer one.
            return None;
        }
        if flags & FLAG_INLINE == 0 && bytes.len() > HEADER_LEN {
            // Bytes after a header that says it carries none.
            return None;
        }
        Some(Self {
            format,
            compressed: flags & FLAG_LZ4 != 0,
            inline: flags & FLAG_INLINE != 0,
            covers_lsn: u64::from_be_bytes(bytes[0..8].try_into().ok()?),
            generation: u64::from_be_bytes(bytes[8..16].try_into().ok()?),
            chunks: u32::from_be_bytes(bytes[16..20].try_into().ok()?),
            len: u64::from_be_bytes(bytes[20..28].try_into().ok()?),
            crc: u32::from_be_bytes(bytes[28..32].try_into().ok()?),
        })
    }
}

pub fn chunk_key(entity: EntityKey, generation: u64, index: u32) -> Vec<u8> {
    let mut key = entity.to_bytes();
    key.extend_from_slice(&generation.to_be_bytes());
    key.extend_from_slice(&index.to_be_bytes());
    key
}

pub struct Store {
    db: sled::Db,
    /// batch sequence (big-endian u64) → batch value
    pub wal: sled::Tree,
    /// entity key → snapshot header
    pub snapshots: sled::Tree,
    /// entity key ++ generation ++ index → snapshot chunk
    pub chunks: sled::Tree,
    pub meta: sled::Tree,
    /// SKU id (big-endian u64) → nothing: SKUs whose latest snapshot holds open
    /// reservations, so start-up loads them (their expiries and their buyers'
    /// hold counts) without reading every snapshot.
    holding: sled::Tree,
    data_file: File,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store. Another process holding the directory is
    /// waited for up to `lock_wait` (`storage.lock_wait_s`), then refused.
    pub fn open(
        dir: &Path,
        cache_capacity_bytes: u64,
        sync: SyncMode,
        lock_wait: std::time::Duration,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("sled");
        let deadline = std::time::Instant::now() + lock_wait;
        let mut said = false;
        loop {
            match Self::open_once(&path, cache_capacity_bytes, sync) {
                Err(StoreError::Sled(sled::Error::Io(e)))
                    if e.to_string().contains("could not acquire lock") =>
                {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::Locked(lock_wait.as_secs()));
                    }
                    if !said {
                        said = true;
                        tracing::warn!(path = %path.display(), "data directory is locked by another instance; waiting");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn open_once(
        path: &Path,
        cache_capacity_bytes: u64,
        sync: SyncMode,
    ) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(cache_capacity_bytes)
            .segment_size(SLED_SEGMENT_BYTES)
            .mode(sled::Mode::HighThroughput)
            // Our writer flushes every commit; sled's own timer only matters without it.
            .flush_every_ms(if sync == SyncMode::None {
                Some(1_000)
            } else {
                None
            })
            .open()?;
        let data_file = File::open(path.join("db"))?;
        Ok(Self {
            wal: db.open_tree("wal")?,
            snapshots: db.open_tree("snapshots")?,
            chunks: db.open_tree("snapshot_chunks")?,
            meta: db.open_tree("meta")?,
            holding: db.open_tree("skus_holding")?,
            db,
            data_file,
            path,
        })
    }

    /// A tree of its own for a kind of durable state kept beside the WAL.
    pub(crate) fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }

    /// The tree `name` if the database has one, without creating it.
    pub(crate) fn existing_tree(&self, name: &str) -> Result<Option<sled::Tree>, StoreError> {
        if self.db.tree_names().iter().any(|n| n == name.as_bytes()) {
            Ok(Some(self.db.open_tree(name)?))
        } else {
            Ok(None)
        }
    }

    /// Removes the tree `name` and everything in it.
    pub(crate) fn drop_tree(&self, name: &str) -> Result<(), StoreError> {
        self.db.drop_tree(name)?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes every write so far durable to the level `mode` promises.
    pub fn sync(&self, mode: SyncMode) -> Result<(), StoreError> {
        match mode {
            SyncMode::None => Ok(()),
            SyncMode::Flush => {
                self.db.flush()?;
                Ok(())
            }
            SyncMode::Fdatasync => {
                self.db.flush()?;
                self.data_file.sync_data()?;
                Ok(())
            }
        }
    }

    pub fn cursor(&self) -> Result<Cursor, StoreError> {
        match self.meta.get(CURSOR_KEY)? {
            None => Ok(Cursor {
                next_lsn: 1,
                next_batch: 1,
                next_generation: 1,
            }),
            Some(raw) => Cursor::from_bytes(&raw).ok_or_else(|| corrupt("cursor", "bad length")),
        }
    }

    pub fn put_cursor(&self, cursor: Cursor) -> Result<(), StoreError> {
        self.meta.insert(CURSOR_KEY, &cursor.to_bytes()[..])?;
        Ok(())
    }

    /// Notes whether the snapshot about to be written for SKU `sku` holds open
    /// reservations. Called before the snapshot is queued, so the mark is
    /// durable no later than the snapshot itself.
    pub fn mark_holding(&self, sku: u64, holding: bool) -> Result<(), StoreError> {
        let key = sku.to_be_bytes();
        if holding {
            self.holding.insert(key, &[])?;
        } else {
            self.holding.remove(key)?;
        }
        Ok(())
    }

    /// SKUs marked by `mark_holding`.
    pub fn holding_skus(&self) -> Result<Vec<u64>, StoreError> {
        self.holding
            .iter()
            .keys()
            .map(|key| {
                let key = key?;
                let bytes: [u8; 8] = key
                    .as_ref()
                    .try_into()
                    .map_err(|_| corrupt("holding key", "not 8 bytes"))?;
                Ok(u64::from_be_bytes(bytes))
            })
            .collect()
    }

    pub fn snapshot_header(&self, entity: EntityKey) -> Result<Option<SnapshotHeader>, StoreError> {
        match self.snapshots.get(entity.to_bytes())? {
            None => Ok(None),
            Some(raw) => parse_header(entity, &raw).map(Some),
        }
    }

    /// Reads an entity's latest durable snapshot and the LSN it covers.
    pub fn read_snapshot(
        &self,
        entity: EntityKey,
    ) -> Result<Option<(u64, SnapshotBody)>, StoreError> {
        let Some(raw) = self.snapshots.get(entity.to_bytes())? else {
            return Ok(None);
        };
        let header = parse_header(entity, &raw)?;
        let mut bytes = if header.inline {
            raw[HEADER_LEN..].to_vec()
        } else {
            self.read_chunks(entity, header)?
        };
        if bytes.len() as u64 != header.len || crc32fast::hash(&bytes) != header.crc {
            return Err(corrupt(
                "snapshot",
                format!("{entity:?} fails its checksum"),
            ));
        }
        if header.compressed {
            bytes = lz4_flex::decompress_size_prepended(&bytes)
                .map_err(|e| corrupt("snapshot", format!("{entity:?}: {e}")))?;
        }
        let body = decode_snapshot(&bytes, header.format).map_err(|e| corrupt("snapshot", e))?;
        Ok(Some((header.covers_lsn, body)))
    }

    fn read_chunks(
        &self,
        entity: EntityKey,
        header: SnapshotHeader,
    ) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::with_capacity(header.len as usize);
        for index in 0..header.chunks {
            let chunk = self
                .chunks
                .get(chunk_key(entity, header.generation, index))?
                .ok_or_else(|| corrupt("snapshot", format!("{entity:?} misses chunk {index}")))?;
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// Stores the body of a snapshot under a fresh generation: in chunks,
    /// or, when it is small, not at all (it travels in its header's value).
    /// The header that makes it current must be written only once the
    /// chunks are durable. A small snapshot is compressed when that makes
    /// it smaller.
    pub fn write_body(
        &self,
        entity: EntityKey,
        generation: u64,
        bytes: &[u8],
        covers_lsn: u64,
    ) -> Result<PreparedSnapshot, StoreError> {
        let packed = (bytes.len() <= SNAPSHOT_COMPRESS_MAX_BYTES)
            .then(|| lz4_flex::compress_prepend_size(bytes))
            .filter(|packed| packed.len() < bytes.len());
        let compressed = packed.is_some();
        let bytes = packed.as_deref().unwrap_or(bytes);
        let mut header = SnapshotHeader {
            covers_lsn,
            generation,
            chunks: 0,
            len: bytes.len() as u64,
            crc: crc32fast::hash(bytes),
            format: super::record::FORMAT,
            compressed,
            inline: bytes.len() <= SNAPSHOT_INLINE_MAX_BYTES,
        };
        if header.inline {
            return Ok(PreparedSnapshot {
                header,
                inline: Some(bytes.to_vec()),
            });
        }
        let mut chunks = 0u32;
        for (index, chunk) in bytes.chunks(SNAPSHOT_CHUNK_BYTES).enumerate() {
            self.chunks
                .insert(chunk_key(entity, generation, index as u32), chunk)?;
            chunks += 1;
        }
        header.chunks = chunks;
        Ok(PreparedSnapshot {
            header,
            inline: None,
        })
    }

    /// Removes an entity's snapshot: its header, then every chunk.
    pub fn delete_snapshot(&self, entity: EntityKey) -> Result<(), StoreError> {
        self.snapshots.remove(entity.to_bytes())?;
        self.delete_chunks_before(entity, u64::MAX)
    }

    /// Removes chunks of `entity` older than `generation`.
    pub fn delete_chunks_before(
        &self,
        entity: EntityKey,
        generation: u64,
    ) -> Result<(), StoreError> {
        let prefix = entity.to_bytes();
        let mut stale = Vec::new();
        for item in self.chunks.scan_prefix(&prefix).keys() {
            let key = item?;
            let generation_bytes = key
                .get(prefix.len()..prefix.len() + 8)
                .ok_or_else(|| corrupt("chunk key", "short"))?;
            let key_generation = u64::from_be_bytes(
                generation_bytes
                    .try_into()
                    .map_err(|_| corrupt("chunk key", "short"))?,
            );
            if key_generation < generation {
                stale.push(key);
            }
        }
        for key in stale {
            self.chunks.remove(key)?;
        }
        Ok(())
    }
}

fn parse_header(entity: EntityKey, raw: &[u8]) -> Result<SnapshotHeader, StoreError> {
    SnapshotHeader::from_bytes(raw).ok_or_else(|| corrupt("snapshot header", format!("{entity:?}")))
}

/// A store in a fresh temporary directory (kept while the `TempDir` lives), for tests.
#[cfg(test)]
pub(crate) fn temporary() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(
        dir.path(),
        8 << 20,
        SyncMode::None,
        std::time::Duration::from_secs(1),
    )
    .expect("store");
    (dir, store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_header_says_its_format_and_an_unversioned_one_reads_as_format_0() {
        let header = SnapshotHeader {
            covers_lsn: 41,
            generation: 7,
            chunks: 2,
            len: 70_000,
            crc: 0xDEAD_BEEF,
            format: super::super::record::FORMAT,
            compressed: true,
            inline: false,
        };
        let bytes = header.to_bytes();
        assert_eq!(SnapshotHeader::from_bytes(&bytes), Some(header));
        let unflagged = SnapshotHeader::from_bytes(&bytes[..HEADER_LEN_UNFLAGGED]).unwrap();
        assert_eq!(
            (unflagged.format, unflagged.compressed),
            (header.format, false)
        );
        let old = SnapshotHeader::from_bytes(&bytes[..HEADER_LEN_UNVERSIONED]).unwrap();
        assert_eq!((old.format, old.compressed), (0, false));
        assert_eq!((old.covers_lsn, old.crc), (41, 0xDEAD_BEEF));
        assert_eq!(SnapshotHeader::from_bytes(&bytes[..33]), None);
        let mut unknown_flag = bytes;
        unknown_flag[34] |= 4;
        assert_eq!(SnapshotHeader::from_bytes(&unknown_flag), None);
        let mut trailing = bytes.to_vec();
        trailing.push(0);
        assert_eq!(
            SnapshotHeader::from_bytes(&trailing),
            None,
            "bytes after a header that carries no body"
        );
        let inline = SnapshotHeader {
            inline: true,
            chunks: 0,
            ..header
        };
        let mut value = inline.to_bytes().to_vec();
        value.extend_from_slice(b"body");
        assert_eq!(SnapshotHeader::from_bytes(&value), Some(inline));
    }

    #[test]
    fn small_snapshots_travel_compressed_in_their_header_and_large_ones_in_chunks() {
        let (_dir, store) = temporary();
        use crate::domain::order::{NewOrder, Order, OrderLine, PaymentStatus, SagaStep};
        use crate::domain::{OrderId, TenantId, UserId};
        let order = |lines: u64| {
            let mut order = Order::new(NewOrder {
                id: OrderId(9),
                buyer: UserId(7),
                currency: "EUR".into(),
                lines: (0..lines)
                    .map(|sku| OrderLine {
                        sku,
                        code: format!("SKU-{sku}"),
                        seller: TenantId(3),
                        quantity: 1,
                        unit_price_minor: 500,
                        reservations: Vec::new(),
                        adopted: false,
                    })
                    .collect(),
                shipping_address: "1 Main St".into(),
                payment_method: "pm_card_visa".into(),
                now_ms: 1_700_000_000_000,
                payment_deadline_ms: 1_700_000_900_000,
                idempotency: None,
                charges: Vec::new(),
            });
            order.begin(SagaStep::Reserve, 1_700_000_000_100);
            order.reserved(&vec![Some(1); lines as usize], 1_700_000_000_200);
            order.begin(SagaStep::Authorize, 1_700_000_000_300);
            let payment = "pay_0190f3a47c2e7b619a3d2f6e8d1c4b7a".to_owned();
            order.payment_seen(
                PaymentStatus::Authorized,
                Some(payment),
                None,
                1_700_000_000_400,
            );
            order.begin(SagaStep::Capture, 1_700_000_000_500);
            order.captured(1_700_000_000_600);
            order.begin(SagaStep::Commit, 1_700_000_000_700);
            order.committed(1_700_000_000_800);
            SnapshotBody::Order(Box::new(order))
        };
        for (n, body) in [order(1), order(2_000)].into_iter().enumerate() {
            let entity = EntityKey::Sku(n as u64 + 1);
            let encoded = super::super::record::encode_snapshot(&body).unwrap();
            let prepared = store.write_body(entity, 1, &encoded, 9).unwrap();
            let header = prepared.header;
            let small = encoded.len() <= SNAPSHOT_COMPRESS_MAX_BYTES;
            assert_eq!((header.compressed, header.inline), (small, small));
            let chunks = store.chunks.scan_prefix(entity.to_bytes()).count() as u32;
            assert_eq!(chunks, header.chunks);
            assert_eq!(chunks == 0, small, "a small snapshot has no chunk key");
            if small {
                assert!(
                    header.len * 2 < encoded.len() as u64,
                    "{} of {}",
                    header.len,
                    encoded.len()
                );
            } else {
                assert_eq!(header.len, encoded.len() as u64);
            }
            store
                .snapshots
                .insert(entity.to_bytes(), prepared.header_value())
                .unwrap();
            let (covers, read) = store.read_snapshot(entity).unwrap().unwrap();
            assert_eq!(covers, 9);
            assert_eq!(
                super::super::record::encode_snapshot(&read)
                    .unwrap()
                    .as_slice(),
                encoded.as_slice()
            );
        }
    }
}
