//! The WAL writer: one thread, fed by a bounded channel, that group-commits every
//! record of a commit window into ONE sled value, syncs, then acknowledges.
//!
//! Snapshots travel the same channel so they are ordered after the records they
//! cover. A snapshot is written in two steps: its chunks in one commit, the
//! header that makes them current in the next, once the chunks are durable.
//! Batches are deleted once every entity with records in them has a durable
//! snapshot past those records and no durable subscriber (`events::durable`)
//! still needs to read them back, within a bound. An entity is forgotten by a
//! `Deleted` record: from then on it needs none of its records, and its
//! snapshot goes in the commit after the record is durable. Any write or sync
//! failure ends the process.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use rkyv::util::AlignedVec;

use super::batch::BatchBuilder;
use super::checkpoints::{Pins, NEEDS_NOTHING};
use super::record::{
    encode_record, encode_snapshot, EntityKey, RecordBody, SnapshotBody, WalRecord,
};
use super::store::{Cursor, PreparedSnapshot, Store, StoreError, SyncMode};
use crate::events::feed::{now_us, EventFeed, FeedBatch, FeedBody, FeedEvent};

/// Work to run once the op it belongs to is durable. Runs on the writer thread: keep it short.
pub type Ack = Box<dyn FnOnce() + Send>;

pub enum WalOp {
    Record {
        entity: EntityKey,
        bytes: AlignedVec,
        ack: Option<Ack>,
        /// Published to the event feed, with this record's LSN, once durable.
        publish: Option<FeedBody>,
    },
    /// A `Deleted` record: the entity needs no older record any more, and its
    /// snapshot is removed once the record is durable. The entity must not be
    /// written again unless it is created anew.
    Forget {
        entity: EntityKey,
        bytes: AlignedVec,
        ack: Option<Ack>,
    },
    /// Published to the event feed with the last LSN assigned before it, once
    /// everything sent before it is durable (a state republished on request).
    Publish(FeedBody),
    Snapshot {
        entity: EntityKey,
        bytes: AlignedVec,
        ack: Option<Ack>,
    },
    /// Acknowledged once every record sent before it is durable. Lets an answer
    /// that changed nothing wait for the state it observed.
    Fence { ack: Ack },
    /// Writes entries of a derived tree (a product's version history) in the
    /// commit of the records sent before it, after its WAL batch: durable
    /// with those records and never before them.
    File(Filing),
    /// Acknowledged once every op sent before it is complete, snapshots included.
    Barrier { ack: Ack },
    /// Commits what was sent before it, completes pending snapshots, then stops.
    Shutdown { ack: Ack },
}

/// Writes into a derived tree, run by the WAL writer (see `WalOp::File`).
pub type Filing = Box<dyn FnOnce() -> Result<(), sled::Error> + Send>;

#[derive(Debug, Clone)]
pub struct WalSettings {
    pub sync: SyncMode,
    pub commit_window_us: u64,
    pub batch_records_max: usize,
    pub batch_bytes_max: usize,
    pub channel_capacity: usize,
    /// Where durable changes are announced (none: nobody listens).
    pub feed: Option<EventFeed>,
    /// What durable subscribers still need to read back (none: nobody reads
    /// the WAL back): batches at or past the lowest pin are kept.
    pub pins: Option<Arc<Pins>>,
    /// Bytes of batches kept only for subscribers, at most. Past it the
    /// oldest go, and a subscriber that still needed them rebuilds.
    pub pinned_bytes_max: u64,
}

impl Default for WalSettings {
    fn default() -> Self {
        Self {
            sync: SyncMode::Fdatasync,
            commit_window_us: 0,
            batch_records_max: 4096,
            batch_bytes_max: 128 * 1024,
            channel_capacity: 65_536,
            feed: None,
            pins: None,
            pinned_bytes_max: 256 * 1024 * 1024,
        }
    }
}

/// Where the writer starts: counters, batches still in the WAL and entities
/// whose records in them are not yet covered by a snapshot.
#[derive(Debug, Clone, Default)]
pub struct WriterStart {
    pub cursor: Cursor,
    /// Every batch in the WAL, oldest first.
    pub retained: VecDeque<RetainedBatch>,
    /// `(entity, first LSN not covered by its snapshot)`.
    pub dirty: Vec<(EntityKey, u64)>,
}

/// A batch still in the WAL: what truncation needs to know of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainedBatch {
    pub seq: u64,
    pub last_lsn: u64,
    /// Its stored size.
    pub bytes: u64,
}

/// Counters the writer publishes.
#[derive(Debug, Default)]
pub struct WalStats {
    /// Every record with an LSN at or below this is durable.
    pub durable_lsn: AtomicU64,
    pub commits: AtomicU64,
    pub retained_batches: AtomicU64,
    /// Bytes of the batches in the WAL that snapshots have yet to cover.
    /// SKU actors snapshot early while it is over `snapshots.wal_max_mb`.
    pub retained_bytes: AtomicU64,
    /// Bytes of batches snapshots cover, kept for durable subscribers.
    pub pinned_bytes: AtomicU64,
    pub stopped: AtomicBool,
    /// Threads in `wait_durable_past`; the writer wakes them only if any.
    durable_waiters: AtomicUsize,
    durable_lock: parking_lot::Mutex<()>,
    durable_moved: parking_lot::Condvar,
}

impl WalStats {
    /// Blocks until a record past `lsn` is durable or `timeout` passed, and
    /// returns the durable LSN then. For readers of the WAL off the async
    /// runtime (durable subscribers).
    pub fn wait_durable_past(&self, lsn: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut guard = self.durable_lock.lock();
        self.durable_waiters.fetch_add(1, Ordering::SeqCst);
        while self.durable_lsn.load(Ordering::SeqCst) <= lsn
            && !self.stopped.load(Ordering::Acquire)
            && !self
                .durable_moved
                .wait_until(&mut guard, deadline)
                .timed_out()
        {}
        self.durable_waiters.fetch_sub(1, Ordering::SeqCst);
        self.durable_lsn.load(Ordering::SeqCst)
    }

    /// Publishes a new durable LSN and wakes the readers waiting for it.
    fn set_durable(&self, lsn: u64) {
        self.durable_lsn.store(lsn, Ordering::SeqCst);
        if self.durable_waiters.load(Ordering::SeqCst) > 0 {
            let _guard = self.durable_lock.lock();
            self.durable_moved.notify_all();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("the WAL writer has stopped")]
    Closed,
    #[error(transparent)]
    Codec(#[from] super::record::CodecError),
}

/// The sending side; cheap to clone, one per actor.
#[derive(Clone)]
pub struct WalHandle {
    tx: Sender<WalOp>,
    stats: Arc<WalStats>,
}

impl WalHandle {
    /// Sends an op; blocks while the channel is full, which is the backpressure
    /// that reaches mailboxes and then clients as 503.
    pub fn send(&self, op: WalOp) -> Result<(), WalError> {
        // A stopped writer never takes (nor drops) what is queued while any
        // handle lives: refuse rather than leave an ack hanging.
        if self.stats.stopped.load(Ordering::Acquire) {
            return Err(WalError::Closed);
        }
        match self.tx.try_send(op) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(op)) => {
                metrics::counter!("flashdrop_wal_channel_full_total").increment(1);
                self.tx.send(op).map_err(|_| WalError::Closed)
            }
            Err(TrySendError::Disconnected(_)) => Err(WalError::Closed),
        }
    }

    /// The writer's queue is at least 90% full: new work should be refused
    /// (503) rather than block the thread that would send it.
    pub fn congested(&self) -> bool {
        let capacity = self.tx.capacity().unwrap_or(usize::MAX);
        self.tx.len() >= capacity - capacity / 10
    }

    pub fn append(&self, record: &WalRecord, ack: Option<Ack>) -> Result<(), WalError> {
        self.append_published(record, ack, None)
    }

    /// Like `append`; once durable, `publish` goes to the event feed with the
    /// record's LSN.
    pub fn append_published(
        &self,
        record: &WalRecord,
        ack: Option<Ack>,
        publish: Option<FeedBody>,
    ) -> Result<(), WalError> {
        let bytes = encode_record(record)?;
        self.send(WalOp::Record {
            entity: record.entity,
            bytes,
            ack,
            publish,
        })
    }

    /// Ends `entity`: a `Deleted` record, then its snapshot goes. `ack` runs
    /// once the record is durable (recovery will not bring the entity back).
    pub fn forget(&self, entity: EntityKey, ack: Option<Ack>) -> Result<(), WalError> {
        let bytes = encode_record(&WalRecord {
            entity,
            body: RecordBody::Deleted,
        })?;
        self.send(WalOp::Forget { entity, bytes, ack })
    }

    pub fn snapshot(
        &self,
        entity: EntityKey,
        body: &SnapshotBody,
        ack: Option<Ack>,
    ) -> Result<(), WalError> {
        let bytes = encode_snapshot(body)?;
        self.send(WalOp::Snapshot { entity, bytes, ack })
    }

    /// Resolves once everything sent before it is durable.
    pub fn barrier(&self) -> Result<tokio::sync::oneshot::Receiver<()>, WalError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(WalOp::Barrier {
            ack: Box::new(move || {
                let _ = tx.send(());
            }),
        })?;
        Ok(rx)
    }

    /// Commits everything sent so far, stops the writer and waits for it (for
    /// tools and tests; the engine's async shutdown does the same).
    pub fn shutdown_blocking(&self, thread: JoinHandle<()>) -> Result<(), WalError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.send(WalOp::Shutdown {
            ack: Box::new(move || {
                let _ = tx.send(());
            }),
        })?;
        rx.recv().map_err(|_| WalError::Closed)?;
        thread.join().map_err(|_| WalError::Closed)
    }

    pub fn stats(&self) -> &Arc<WalStats> {
        &self.stats
    }
}

/// Starts the writer thread.
pub fn start(
    store: Arc<Store>,
    settings: WalSettings,
    start: WriterStart,
) -> (WalHandle, JoinHandle<()>) {
    let (tx, rx) = crossbeam_channel::bounded(settings.channel_capacity);
    let stats = Arc::new(WalStats::default());
    stats
        .durable_lsn
        .store(start.cursor.next_lsn.saturating_sub(1), Ordering::Release);
    let mut writer = Writer::new(store, settings, rx, stats.clone(), start);
    let thread = std::thread::Builder::new()
        .name("flashdrop-wal".into())
        .spawn(move || writer.run())
        .unwrap_or_else(|e| fatal("spawning the WAL writer", &e));
    (WalHandle { tx, stats }, thread)
}

/// A WAL failure leaves memory ahead of disk: the only safe move is to stop.
fn fatal(context: &str, error: &dyn std::fmt::Display) -> ! {
    tracing::error!(%error, "fatal WAL failure while {context}; exiting");
    eprintln!("flashdrop: fatal WAL failure while {context}: {error}");
    std::process::exit(74)
}

struct PendingHeader {
    entity: EntityKey,
    snapshot: PreparedSnapshot,
}

struct Dirty {
    first_lsn: u64,
    /// LSN covered by a snapshot on its way to disk.
    pending_covers: Option<u64>,
    /// First record after `pending_covers`.
    first_after_pending: Option<u64>,
}

struct Writer {
    store: Arc<Store>,
    settings: WalSettings,
    rx: Receiver<WalOp>,
    stats: Arc<WalStats>,
    cursor: Cursor,
    builder: BatchBuilder,
    /// Fired after the commit being gathered.
    acks_now: Vec<Ack>,
    /// Fired after the commit following the one being gathered.
    acks_next: Vec<Ack>,
    acks_carried: Vec<Ack>,
    /// Snapshots whose chunks go into the commit being gathered.
    chunks_this_commit: Vec<PendingHeader>,
    /// Headers to write in the commit being gathered (their chunks are durable).
    headers_due: Vec<PendingHeader>,
    /// Old chunks to delete (their replacement header is durable).
    deletes_due: Vec<(EntityKey, u64)>,
    /// Entities forgotten in the commit being gathered.
    forgets_this_commit: Vec<EntityKey>,
    /// Snapshots to delete in the commit being gathered (their `Deleted`
    /// record is durable).
    forgets_due: Vec<EntityKey>,
    dirty: HashMap<EntityKey, Dirty>,
    dirty_order: BTreeSet<(u64, EntityKey)>,
    retained: VecDeque<RetainedBatch>,
    /// The sum of `retained`'s bytes.
    retained_bytes: u64,
    /// The bytes of the front of `retained` that snapshots cover, kept for
    /// durable subscribers.
    pinned_bytes: u64,
    shutdown_acks: Vec<Ack>,
    stopping: bool,
    deletes_written: bool,
    /// Bytes committed since sled last flushed (matters in `none` mode only).
    unflushed_bytes: usize,
    /// Feed events of the commit being gathered, in LSN order.
    published: Vec<FeedEvent>,
    /// Derived entries to write after this commit's WAL batch.
    filings: Vec<Filing>,
}

/// In `none` mode, sled is flushed after this much WAL.
const NONE_MODE_FLUSH_BYTES: usize = 4 * 1024 * 1024;

impl Writer {
    fn new(
        store: Arc<Store>,
        settings: WalSettings,
        rx: Receiver<WalOp>,
        stats: Arc<WalStats>,
        start: WriterStart,
    ) -> Self {
        let mut dirty = HashMap::new();
        let mut dirty_order = BTreeSet::new();
        for (entity, first_lsn) in start.dirty {
            dirty.insert(
                entity,
                Dirty {
                    first_lsn,
                    pending_covers: None,
                    first_after_pending: None,
                },
            );
            dirty_order.insert((first_lsn, entity));
        }
        Self {
            builder: BatchBuilder::with_capacity(settings.batch_bytes_max),
            store,
            settings,
            rx,
            stats,
            cursor: start.cursor,
            acks_now: Vec::new(),
            acks_next: Vec::new(),
            acks_carried: Vec::new(),
            chunks_this_commit: Vec::new(),
            headers_due: Vec::new(),
            deletes_due: Vec::new(),
            forgets_this_commit: Vec::new(),
            forgets_due: Vec::new(),
            dirty,
            dirty_order,
            retained_bytes: start.retained.iter().map(|b| b.bytes).sum(),
            retained: start.retained,
            pinned_bytes: 0,
            shutdown_acks: Vec::new(),
            stopping: false,
            deletes_written: false,
            unflushed_bytes: 0,
            published: Vec::new(),
            filings: Vec::new(),
        }
    }

    fn has_pending_phases(&self) -> bool {
        !self.headers_due.is_empty()
            || !self.acks_carried.is_empty()
            || !self.deletes_due.is_empty()
            || !self.forgets_due.is_empty()
    }

    fn run(&mut self) {
        loop {
            self.builder.reset(self.cursor.next_lsn);
            let first = if self.has_pending_phases() || self.stopping {
                match self.rx.try_recv() {
                    Ok(op) => Some(op),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => {
                        self.stopping = true;
                        None
                    }
                }
            } else {
                match self.rx.recv() {
                    Ok(op) => Some(op),
                    Err(_) => {
                        self.stopping = true;
                        None
                    }
                }
            };
            if let Some(op) = first {
                self.take(op);
                self.gather();
            }
            self.commit();
            if self.stopping && !self.has_pending_phases() && self.rx.is_empty() {
                break;
            }
        }
        self.stats.stopped.store(true, Ordering::Release);
        for ack in self.shutdown_acks.drain(..) {
            ack();
        }
    }

    /// Takes ops until the window closes, the channel is empty after the window,
    /// or the batch is full. Ops without records (fences, snapshots) count too,
    /// so one commit's work stays bounded.
    fn gather(&mut self) {
        let deadline = Instant::now() + Duration::from_micros(self.settings.commit_window_us);
        let ops_max = self.settings.batch_records_max * 4;
        for _ in 1..ops_max {
            if self.builder.count() as usize >= self.settings.batch_records_max
                || self.builder.len_bytes() >= self.settings.batch_bytes_max
            {
                return;
            }
            let op = match self.rx.try_recv() {
                Ok(op) => op,
                Err(TryRecvError::Disconnected) => {
                    self.stopping = true;
                    return;
                }
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return;
                    }
                    match self.rx.recv_timeout(deadline - now) {
                        Ok(op) => op,
                        Err(RecvTimeoutError::Timeout) => return,
                        Err(RecvTimeoutError::Disconnected) => {
                            self.stopping = true;
                            return;
                        }
                    }
                }
            };
            self.take(op);
        }
    }

    fn take(&mut self, op: WalOp) {
        match op {
            WalOp::Record {
                entity,
                bytes,
                ack,
                publish,
            } => {
                let lsn = self.cursor.next_lsn;
                self.cursor.next_lsn += 1;
                self.builder.push(&bytes);
                self.revive(entity);
                self.mark_dirty(entity, lsn);
                if let Some(ack) = ack {
                    self.acks_now.push(ack);
                }
                if let Some(body) = publish {
                    self.published.push(FeedEvent { seq: lsn, body });
                }
            }
            WalOp::Forget { entity, bytes, ack } => {
                let lsn = self.cursor.next_lsn;
                self.cursor.next_lsn += 1;
                self.builder.push(&bytes);
                // Nothing before the `Deleted` record is needed any more, but
                // the record itself is, until the snapshot it ends is gone:
                // the entity stays dirty from its LSN until then.
                if let Some(dirty) = self.dirty.remove(&entity) {
                    self.dirty_order.remove(&(dirty.first_lsn, entity));
                }
                self.mark_dirty(entity, lsn);
                self.forgets_this_commit.push(entity);
                if let Some(ack) = ack {
                    self.acks_now.push(ack);
                }
            }
            WalOp::Publish(body) => self.published.push(FeedEvent {
                seq: self.cursor.next_lsn - 1,
                body,
            }),
            WalOp::Snapshot { entity, bytes, ack } => {
                self.revive(entity);
                let covers_lsn = self.cursor.next_lsn - 1;
                let generation = self.cursor.next_generation;
                self.cursor.next_generation += 1;
                let snapshot = self
                    .store
                    .write_body(entity, generation, &bytes, covers_lsn)
                    .unwrap_or_else(|e| fatal("writing snapshot chunks", &e));
                if let Some(dirty) = self.dirty.get_mut(&entity) {
                    dirty.pending_covers = Some(covers_lsn);
                    dirty.first_after_pending = None;
                }
                self.chunks_this_commit
                    .push(PendingHeader { entity, snapshot });
                if let Some(ack) = ack {
                    self.acks_next.push(ack);
                }
            }
            WalOp::Fence { ack } => self.acks_now.push(ack),
            WalOp::File(filing) => self.filings.push(filing),
            WalOp::Barrier { ack } => self.acks_next.push(ack),
            WalOp::Shutdown { ack } => {
                self.stopping = true;
                self.shutdown_acks.push(ack);
            }
        }
    }

    /// An entity written again after it was forgotten is created anew: its
    /// old snapshot must not be deleted over the new one.
    fn revive(&mut self, entity: EntityKey) {
        if !self.forgets_this_commit.is_empty() {
            self.forgets_this_commit.retain(|e| *e != entity);
        }
        if !self.forgets_due.is_empty() {
            self.forgets_due.retain(|e| *e != entity);
        }
    }

    fn mark_dirty(&mut self, entity: EntityKey, lsn: u64) {
        match self.dirty.get_mut(&entity) {
            None => {
                self.dirty.insert(
                    entity,
                    Dirty {
                        first_lsn: lsn,
                        pending_covers: None,
                        first_after_pending: None,
                    },
                );
                self.dirty_order.insert((lsn, entity));
            }
            Some(dirty) => {
                if dirty.pending_covers.is_some() && dirty.first_after_pending.is_none() {
                    dirty.first_after_pending = Some(lsn);
                }
            }
        }
    }

    /// A snapshot header is durable: its entity needs the WAL only after it.
    fn snapshot_durable(&mut self, entity: EntityKey, covers_lsn: u64) {
        let Some(dirty) = self.dirty.get_mut(&entity) else {
            return;
        };
        if dirty.pending_covers != Some(covers_lsn) {
            // A newer snapshot is on its way; it will settle this entity.
            return;
        }
        self.dirty_order.remove(&(dirty.first_lsn, entity));
        match dirty.first_after_pending {
            Some(first_after) => {
                dirty.first_lsn = first_after;
                dirty.pending_covers = None;
                dirty.first_after_pending = None;
                self.dirty_order.insert((first_after, entity));
            }
            None => {
                self.dirty.remove(&entity);
            }
        }
    }

    fn commit(&mut self) {
        let started = Instant::now();
        let store = self.store.clone();
        let records = self.builder.count();
        let bytes = self.builder.len_bytes();
        if !self.builder.is_empty() {
            let batch_seq = self.cursor.next_batch;
            self.cursor.next_batch += 1;
            let last_lsn = self.cursor.next_lsn - 1;
            let batch = self.builder.finish();
            let stored = batch.len() as u64;
            store
                .wal
                .insert(batch_seq.to_be_bytes(), batch)
                .unwrap_or_else(|e| fatal("writing a WAL batch", &e));
            self.retained.push_back(RetainedBatch {
                seq: batch_seq,
                last_lsn,
                bytes: stored,
            });
            self.retained_bytes += stored;
        }
        let filed = !self.filings.is_empty();
        for filing in self.filings.drain(..) {
            filing().unwrap_or_else(|e| fatal("filing a derived entry", &e));
        }
        // Step two of earlier snapshots: their chunks are durable, publish them.
        let headers: Vec<PendingHeader> = std::mem::take(&mut self.headers_due);
        for pending in &headers {
            store
                .snapshots
                .insert(pending.entity.to_bytes(), pending.snapshot.header_value())
                .unwrap_or_else(|e| fatal("writing a snapshot header", &e));
        }
        // Step three of older snapshots: the header replacing them is durable.
        for (entity, generation) in std::mem::take(&mut self.deletes_due) {
            self.deletes_written = true;
            store
                .delete_chunks_before(entity, generation)
                .unwrap_or_else(|e| fatal("deleting old snapshot chunks", &e));
        }
        // Forgotten entities: their `Deleted` record is durable, their
        // snapshot (and any header written just above) can go.
        // Written before the truncation below, so a crash never keeps the
        // snapshot without the record that ends it.
        for entity in std::mem::take(&mut self.forgets_due) {
            self.deletes_written = true;
            store
                .delete_snapshot(entity)
                .unwrap_or_else(|e| fatal("deleting a forgotten snapshot", &e));
            if let Some(dirty) = self.dirty.remove(&entity) {
                self.dirty_order.remove(&(dirty.first_lsn, entity));
            }
        }
        let truncated = self.truncate();
        // A commit that only carries fences has nothing new to make durable.
        let wrote = records > 0
            || !headers.is_empty()
            || !self.chunks_this_commit.is_empty()
            || truncated
            || filed
            || self.deletes_written;
        self.deletes_written = false;
        if wrote {
            store
                .put_cursor(self.cursor)
                .unwrap_or_else(|e| fatal("writing the WAL cursor", &e));
            self.unflushed_bytes += bytes;
            // `none` acknowledges without flushing, but still flushes now and then:
            // sled 0.34 can hang reading a page back while much is unflushed
            // (spacejam/sled#1412).
            let sync = match self.settings.sync {
                SyncMode::None if self.unflushed_bytes >= NONE_MODE_FLUSH_BYTES => SyncMode::Flush,
                mode => mode,
            };
            store
                .sync(sync)
                .unwrap_or_else(|e: StoreError| fatal("syncing the WAL", &e));
            if sync != SyncMode::None {
                self.unflushed_bytes = 0;
            }
        }

        // Durable from here on.
        self.stats.set_durable(self.cursor.next_lsn - 1);
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        for pending in &headers {
            self.snapshot_durable(pending.entity, pending.snapshot.header.covers_lsn);
            self.deletes_due
                .push((pending.entity, pending.snapshot.header.generation));
        }
        self.headers_due = std::mem::take(&mut self.chunks_this_commit);
        self.forgets_due = std::mem::take(&mut self.forgets_this_commit);
        for ack in self.acks_now.drain(..) {
            ack();
        }
        if !self.published.is_empty() {
            let events = std::mem::take(&mut self.published);
            if let Some(feed) = &self.settings.feed {
                feed.publish(FeedBatch {
                    committed_at_us: now_us(),
                    events,
                });
            }
        }
        for ack in self.acks_carried.drain(..) {
            ack();
        }
        self.acks_carried = std::mem::take(&mut self.acks_next);

        if records > 0 {
            metrics::histogram!("flashdrop_wal_batch_records").record(f64::from(records));
            metrics::histogram!("flashdrop_wal_batch_bytes").record(bytes as f64);
            metrics::counter!("flashdrop_wal_records_total").increment(u64::from(records));
        }
        metrics::histogram!("flashdrop_wal_commit_seconds", "sync" => self.settings.sync.as_str())
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!("flashdrop_wal_retained_batches").set(self.retained.len() as f64);
        metrics::gauge!("flashdrop_wal_retained_bytes").set(self.retained_bytes as f64);
        metrics::gauge!("flashdrop_wal_pinned_bytes").set(self.pinned_bytes as f64);
        metrics::gauge!("flashdrop_wal_dirty_entities").set(self.dirty.len() as f64);
        self.stats
            .retained_batches
            .store(self.retained.len() as u64, Ordering::Relaxed);
        self.stats
            .retained_bytes
            .store(self.retained_bytes - self.pinned_bytes, Ordering::Relaxed);
        self.stats
            .pinned_bytes
            .store(self.pinned_bytes, Ordering::Relaxed);
    }

    /// Deletes batches whose every record is covered by a durable snapshot,
    /// unless a durable subscriber still needs them and the batches kept for
    /// subscribers stay within `pinned_bytes_max`.
    fn truncate(&mut self) -> bool {
        let needed_from = self
            .dirty_order
            .first()
            .map(|&(lsn, _)| lsn)
            .unwrap_or(self.cursor.next_lsn);
        let pinned_from = self
            .settings
            .pins
            .as_ref()
            .map_or(NEEDS_NOTHING, |pins| pins.needed_from());
        self.pinned_bytes = if pinned_from == NEEDS_NOTHING {
            0
        } else {
            self.retained
                .iter()
                .take_while(|batch| batch.last_lsn < needed_from)
                .map(|batch| batch.bytes)
                .sum()
        };
        let mut truncated = false;
        while let Some(&batch) = self.retained.front() {
            if batch.last_lsn >= needed_from {
                break;
            }
            if batch.last_lsn >= pinned_from && self.pinned_bytes <= self.settings.pinned_bytes_max
            {
                break;
            }
            self.pinned_bytes = self.pinned_bytes.saturating_sub(batch.bytes);
            truncated = true;
            self.store
                .wal
                .remove(batch.seq.to_be_bytes())
                .unwrap_or_else(|e| fatal("truncating the WAL", &e));
            self.retained.pop_front();
            self.retained_bytes -= batch.bytes;
        }
        truncated
    }
}
