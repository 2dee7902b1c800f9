//! Rebuilding state from disk: latest snapshot per entity, then every WAL record
//! with a higher LSN, in LSN order. Used at start-up for everything and by a
//! restarting actor for its own SKU.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::domain::cart::Cart;
use crate::domain::category::Category;
use crate::domain::drop::FlashDrop;
use crate::domain::identity::Entity;
use crate::domain::order::Order;
use crate::domain::product::Product;
use crate::domain::stock::{LedgerLimits, StockLedger};
use crate::domain::SkuId;

use super::batch::decode_batch;
use super::kinds::{KindState, RecoveredKind};
use super::record::{decode_record, EntityKey, RecordBody, SnapshotBody, DIRECTORY_TAGS};
use super::store::{corrupt, Store, StoreError};
use super::wal::{RetainedBatch, WriterStart};

/// Whether to start from snapshots (normal) or replay the WAL from its first
/// batch alone (only meaningful when nothing was ever truncated; used by tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    Snapshots,
    FullReplay,
}

#[derive(Debug, Default, Clone)]
pub struct RecoveryStats {
    pub batches: u64,
    pub records: u64,
    pub applied: u64,
    pub snapshots_loaded: u64,
    /// Entities whose last record is `Deleted`.
    pub forgotten: u64,
    pub elapsed: Duration,
}

impl RecoveryStats {
    pub fn records_per_second(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub struct Recovered {
    pub products: HashMap<u128, Product>,
    /// Products whose state came from a WAL record replayed here (not only a
    /// snapshot): the ones a torn last commit may have left without the
    /// history entry filed after their record.
    pub products_from_wal: Vec<u128>,
    /// Every account, store, session, invitation and follow (audit entries stay on disk).
    pub directory: Vec<Entity>,
    /// Directory entities (audit entries included) whose latest state is only
    /// in the WAL: they need a snapshot before the WAL behind them can go.
    pub directory_unsnapshotted: Vec<Entity>,
    pub next_audit_seq: u64,
    /// The kinds rebuilt whole from their snapshot and records.
    pub drops: RecoveredKind<FlashDrop>,
    pub orders: RecoveredKind<Order>,
    pub carts: RecoveredKind<Cart>,
    pub categories: RecoveredKind<Category>,
    /// Ledgers changed by the replayed WAL, and those whose snapshot holds open
    /// reservations; every other ledger is exactly its snapshot and holds none.
    pub ledgers: HashMap<SkuId, StockLedger>,
    pub start: WriterStart,
    pub stats: RecoveryStats,
}

fn ledger_from_snapshot(
    store: &Store,
    sku: SkuId,
    limits: &LedgerLimits,
    mode: RecoveryMode,
    initial_threshold: u64,
) -> Result<(u64, StockLedger), StoreError> {
    if mode == RecoveryMode::Snapshots {
        if let Some((covers, body)) = store.read_snapshot(EntityKey::Sku(sku.0))? {
            let SnapshotBody::Ledger(snapshot) = body else {
                return Err(corrupt("snapshot", format!("{sku:?} is not a ledger")));
            };
            let ledger = StockLedger::restore(snapshot, limits.clone())
                .map_err(|e| corrupt("snapshot", e))?;
            return Ok((covers, ledger));
        }
    }
    Ok((
        0,
        StockLedger::with_threshold(sku, limits.clone(), initial_threshold),
    ))
}

/// The low-stock threshold each SKU of `products` starts with.
fn initial_thresholds<'a>(products: impl Iterator<Item = &'a Product>) -> HashMap<u64, u64> {
    products
        .flat_map(|p| p.skus.iter().map(|s| (s.id, s.low_stock_threshold)))
        .collect()
}

/// Loads an entity-kind's snapshot of a product.
fn load_products(store: &Store) -> Result<HashMap<u128, (u64, Product)>, StoreError> {
    let mut products = HashMap::new();
    for item in store
        .snapshots
        .scan_prefix(EntityKey::kind_prefix_product())
    {
        let (key, _) = item?;
        let entity = EntityKey::from_bytes(&key).ok_or_else(|| corrupt("snapshot key", "bad"))?;
        let EntityKey::Product(id) = entity else {
            continue;
        };
        match store.read_snapshot(entity)? {
            Some((covers, SnapshotBody::Product(product))) => {
                products.insert(id, (covers, *product));
            }
            Some((covers, SnapshotBody::ProductV1(old))) => {
                products.insert(id, (covers, Product::from(old)));
            }
            _ => {}
        }
    }
    Ok(products)
}

/// Loads the snapshots of every directory entity (accounts, stores, ...).
fn load_directory(store: &Store) -> Result<HashMap<EntityKey, (u64, Entity)>, StoreError> {
    let mut out = HashMap::new();
    for tag in DIRECTORY_TAGS {
        for item in store.snapshots.scan_prefix([tag]) {
            let (key, _) = item?;
            let entity =
                EntityKey::from_bytes(&key).ok_or_else(|| corrupt("snapshot key", "bad"))?;
            match store.read_snapshot(entity)? {
                Some((covers, SnapshotBody::Directory(state))) => {
                    out.insert(entity, (covers, state.current()));
                }
                Some(_) => return Err(corrupt("snapshot", format!("{entity:?} has another body"))),
                None => {}
            }
        }
    }
    Ok(out)
}

/// The audit sequence after the newest audit entry with a snapshot.
fn next_audit_seq_on_disk(store: &Store) -> Result<u64, StoreError> {
    match store
        .snapshots
        .scan_prefix(EntityKey::kind_prefix_audit())
        .keys()
        .next_back()
    {
        Some(key) => match EntityKey::from_bytes(&key?) {
            Some(EntityKey::Audit(seq)) => Ok(seq + 1),
            _ => Err(corrupt("snapshot key", "bad audit key")),
        },
        None => Ok(1),
    }
}

/// Applies a `Deleted` record at `lsn` to `entities`: the entity goes unless
/// its state is newer (a snapshot taken after it was created anew). Returns
/// whether it went.
fn forget_newer<K: std::hash::Hash + Eq, T>(
    entities: &mut HashMap<K, (u64, T)>,
    key: K,
    lsn: u64,
) -> bool {
    match entities.get(&key) {
        Some((covers, _)) if *covers >= lsn => false,
        Some(_) => {
            entities.remove(&key);
            true
        }
        None => true,
    }
}

/// The kinds rebuilt whole (see `kinds.rs`). A new such kind is a field
/// here and one line in each method.
#[derive(Default)]
struct Kinds {
    drops: KindState<FlashDrop>,
    orders: KindState<Order>,
    carts: KindState<Cart>,
    categories: KindState<Category>,
}

impl Kinds {
    fn load(store: &Store, mode: RecoveryMode) -> Result<Self, StoreError> {
        if mode == RecoveryMode::FullReplay {
            return Ok(Self::default());
        }
        Ok(Self {
            drops: KindState::load(store)?,
            orders: KindState::load(store)?,
            carts: KindState::load(store)?,
            categories: KindState::load(store)?,
        })
    }

    /// Whether `key` names an entity of one of these kinds.
    fn takes(key: EntityKey) -> bool {
        matches!(
            key,
            EntityKey::Drop(_) | EntityKey::Order(_) | EntityKey::Cart(_) | EntityKey::Category(_)
        )
    }

    /// Applies a record of one of the kinds: whether it was newer than the
    /// state.
    fn apply(&mut self, lsn: u64, key: EntityKey, body: RecordBody) -> Result<bool, StoreError> {
        match key {
            EntityKey::Drop(_) => self.drops.apply(lsn, key, body),
            EntityKey::Order(_) => self.orders.apply(lsn, key, body),
            EntityKey::Cart(_) => self.carts.apply(lsn, key, body),
            EntityKey::Category(_) => self.categories.apply(lsn, key, body),
            _ => None,
        }
        .unwrap_or_else(|| {
            Err(corrupt(
                "wal record",
                format!("lsn {lsn}: {key:?} has no kind"),
            ))
        })
    }

    fn delete(&mut self, lsn: u64, key: EntityKey) -> Option<bool> {
        self.drops
            .delete(lsn, key)
            .or_else(|| self.orders.delete(lsn, key))
            .or_else(|| self.carts.delete(lsn, key))
            .or_else(|| self.categories.delete(lsn, key))
    }
}

/// Rebuilds everything at start-up.
pub fn recover(
    store: &Store,
    limits: &LedgerLimits,
    mode: RecoveryMode,
) -> Result<Recovered, StoreError> {
    let started = Instant::now();
    let mut stats = RecoveryStats::default();
    let mut cursor = store.cursor()?;
    let mut products = if mode == RecoveryMode::Snapshots {
        load_products(store)?
    } else {
        HashMap::new()
    };
    let mut directory = if mode == RecoveryMode::Snapshots {
        load_directory(store)?
    } else {
        HashMap::new()
    };
    let mut next_audit_seq = if mode == RecoveryMode::Snapshots {
        next_audit_seq_on_disk(store)?
    } else {
        1
    };
    let mut kinds = Kinds::load(store, mode)?;
    let mut from_wal: std::collections::HashSet<EntityKey> = std::collections::HashSet::new();
    stats.snapshots_loaded = (products.len() + directory.len()) as u64;
    let mut thresholds = initial_thresholds(products.values().map(|(_, p)| p));
    let mut products_from_wal = std::collections::HashSet::new();
    let mut ledgers: HashMap<SkuId, (u64, StockLedger)> = HashMap::new();
    let mut first_seen: HashMap<EntityKey, u64> = HashMap::new();
    let mut retained = VecDeque::new();
    // Entities whose last record is `Deleted`, with its LSN: their snapshot
    // may have outlived a crash and must go before the record is truncated.
    let mut forgotten: HashMap<EntityKey, u64> = HashMap::new();

    for item in store.wal.iter() {
        let (key, value) = item?;
        let batch_seq = u64::from_be_bytes(
            key.as_ref()
                .try_into()
                .map_err(|_| corrupt("wal key", "not 8 bytes"))?,
        );
        let batch = decode_batch(&value).map_err(|e| corrupt("wal batch", e))?;
        stats.batches += 1;
        for frame in batch.frames() {
            let (lsn, payload) = frame.map_err(|e| corrupt("wal frame", e))?;
            let record =
                decode_record(payload, batch.format).map_err(|e| corrupt("wal record", e))?;
            stats.records += 1;
            if matches!(record.body, RecordBody::Deleted) {
                let key = record.entity;
                let gone = match key {
                    // A variant removed from its product.
                    EntityKey::Sku(id) => forget_newer(&mut ledgers, SkuId(id), lsn),
                    EntityKey::Product(_) => {
                        return Err(corrupt(
                            "wal record",
                            format!("lsn {lsn}: {key:?} cannot be deleted"),
                        ))
                    }
                    _ => match kinds.delete(lsn, key) {
                        Some(gone) => gone,
                        None => {
                            from_wal.remove(&key);
                            forget_newer(&mut directory, key, lsn)
                        }
                    },
                };
                if gone {
                    first_seen.remove(&key);
                    forgotten.insert(key, lsn);
                }
                continue;
            }
            if !forgotten.is_empty() {
                forgotten.remove(&record.entity);
            }
            first_seen.entry(record.entity).or_insert(lsn);
            if Kinds::takes(record.entity) {
                stats.applied += u64::from(kinds.apply(lsn, record.entity, record.body)?);
                continue;
            }
            match (record.entity, record.body) {
                (EntityKey::Sku(id), RecordBody::Stock(events)) => {
                    let sku = SkuId(id);
                    let (covers, ledger) = match ledgers.entry(sku) {
                        std::collections::hash_map::Entry::Occupied(slot) => slot.into_mut(),
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            let initial = thresholds.get(&id).copied().unwrap_or(0);
                            let loaded = ledger_from_snapshot(store, sku, limits, mode, initial)?;
                            if loaded.0 > 0 {
                                stats.snapshots_loaded += 1;
                            }
                            slot.insert(loaded)
                        }
                    };
                    if lsn > *covers {
                        for event in &events {
                            ledger
                                .apply(event)
                                .map_err(|e| corrupt("wal replay", format!("lsn {lsn}: {e}")))?;
                        }
                        stats.applied += 1;
                    }
                }
                (EntityKey::Product(id), RecordBody::ProductCreatedV1(old)) => {
                    let newer = products.get(&id).is_none_or(|(covers, _)| lsn > *covers);
                    if newer {
                        let product = Product::from(*old);
                        thresholds.extend(initial_thresholds(std::iter::once(&product)));
                        products.insert(id, (lsn, product));
                        products_from_wal.insert(id);
                        stats.applied += 1;
                    }
                }
                (EntityKey::Product(id), RecordBody::Product(product)) => {
                    let newer = products.get(&id).is_none_or(|(covers, _)| lsn > *covers);
                    if newer {
                        thresholds.extend(initial_thresholds(std::iter::once(&*product)));
                        products.insert(id, (lsn, *product));
                        products_from_wal.insert(id);
                        stats.applied += 1;
                    }
                }
                (key, RecordBody::Directory(state)) if key == EntityKey::of(&state) => {
                    let covers = match directory.get(&key) {
                        Some((covers, _)) => *covers,
                        None if matches!(key, EntityKey::Audit(_))
                            && mode == RecoveryMode::Snapshots =>
                        {
                            store.snapshot_header(key)?.map_or(0, |h| h.covers_lsn)
                        }
                        None => 0,
                    };
                    if let EntityKey::Audit(seq) = key {
                        next_audit_seq = next_audit_seq.max(seq + 1);
                    }
                    if lsn > covers {
                        directory.insert(key, (lsn, state.current()));
                        from_wal.insert(key);
                        stats.applied += 1;
                    }
                }
                (entity, _) => {
                    return Err(corrupt(
                        "wal record",
                        format!("lsn {lsn}: body does not match {entity:?}"),
                    ))
                }
            }
        }
        retained.push_back(RetainedBatch {
            seq: batch_seq,
            last_lsn: batch.last_lsn(),
            bytes: value.len() as u64,
        });
        cursor.next_lsn = cursor.next_lsn.max(batch.last_lsn() + 1);
        cursor.next_batch = cursor.next_batch.max(batch_seq + 1);
    }

    // A snapshot older than the record that ended its entity is stale in
    // either mode; one taken after the entity was created anew is not.
    for (key, deleted_lsn) in &forgotten {
        if let Some(header) = store.snapshot_header(*key)? {
            if header.covers_lsn < *deleted_lsn {
                store.delete_snapshot(*key)?;
            }
        }
    }
    stats.forgotten = forgotten.len() as u64;
    if mode == RecoveryMode::Snapshots {
        for id in store.holding_skus()? {
            let sku = SkuId(id);
            if ledgers.contains_key(&sku) {
                continue;
            }
            let initial = thresholds.get(&id).copied().unwrap_or(0);
            let loaded = ledger_from_snapshot(store, sku, limits, mode, initial)?;
            if loaded.1.open_reservations() > 0 {
                stats.snapshots_loaded += 1;
                ledgers.insert(sku, loaded);
            } else {
                store.mark_holding(id, false)?;
            }
        }
    }
    for (sku, (_, ledger)) in &ledgers {
        ledger
            .check_invariants(true)
            .map_err(|e| corrupt("recovered ledger", format!("{sku:?}: {e}")))?;
    }
    stats.elapsed = started.elapsed();
    let mut directory_unsnapshotted = Vec::new();
    let mut directory_states = Vec::with_capacity(directory.len());
    for (key, (_, state)) in directory {
        if from_wal.contains(&key) {
            directory_unsnapshotted.push(state.clone());
        }
        if !matches!(key, EntityKey::Audit(_)) {
            directory_states.push(state);
        }
    }
    Ok(Recovered {
        drops: kinds.drops.finish(),
        orders: kinds.orders.finish(),
        carts: kinds.carts.finish(),
        categories: kinds.categories.finish(),
        products_from_wal: products_from_wal
            .into_iter()
            .filter(|id| products.contains_key(id))
            .collect(),
        products: products.into_iter().map(|(id, (_, p))| (id, p)).collect(),
        directory: directory_states,
        directory_unsnapshotted,
        next_audit_seq,
        ledgers: ledgers.into_iter().map(|(sku, (_, l))| (sku, l)).collect(),
        start: WriterStart {
            cursor,
            retained,
            dirty: first_seen.into_iter().collect(),
        },
        stats,
    })
}

/// Loads one SKU from its snapshot alone (a new ledger when it has none). Right
/// only when no WAL record of the SKU is newer than its snapshot: a parked SKU.
pub fn load_ledger(
    store: &Store,
    sku: SkuId,
    limits: &LedgerLimits,
    initial_threshold: u64,
) -> Result<StockLedger, StoreError> {
    ledger_from_snapshot(
        store,
        sku,
        limits,
        RecoveryMode::Snapshots,
        initial_threshold,
    )
    .map(|(_, ledger)| ledger)
}

/// Rebuilds one SKU from its snapshot and the WAL. The caller must first make
/// sure everything the SKU sent to the WAL is complete (a barrier).
pub fn rebuild_ledger(
    store: &Store,
    sku: SkuId,
    limits: &LedgerLimits,
    initial_threshold: u64,
) -> Result<StockLedger, StoreError> {
    let (covers, mut ledger) = ledger_from_snapshot(
        store,
        sku,
        limits,
        RecoveryMode::Snapshots,
        initial_threshold,
    )?;
    let wanted = EntityKey::Sku(sku.0);
    for item in store.wal.iter() {
        let (_, value) = item?;
        let batch = decode_batch(&value).map_err(|e| corrupt("wal batch", e))?;
        if batch.last_lsn() <= covers {
            continue;
        }
        for frame in batch.frames() {
            let (lsn, payload) = frame.map_err(|e| corrupt("wal frame", e))?;
            if lsn <= covers {
                continue;
            }
            let record =
                decode_record(payload, batch.format).map_err(|e| corrupt("wal record", e))?;
            if record.entity != wanted {
                continue;
            }
            if let RecordBody::Stock(events) = record.body {
                for event in &events {
                    ledger
                        .apply(event)
                        .map_err(|e| corrupt("wal replay", format!("lsn {lsn}: {e}")))?;
                }
            }
        }
    }
    ledger
        .check_invariants(true)
        .map_err(|e| corrupt("rebuilt ledger", e))?;
    Ok(ledger)
}
