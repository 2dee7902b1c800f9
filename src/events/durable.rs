//! Durable feed subscribers: derived views (search, and later reviews,
//! recommendations, dashboards, the Redis Streams export) that follow the WAL
//! itself rather than the in-memory feed ring, so they see every change and
//! survive restarts.
//!
//! Each subscriber runs on a thread of its own. It reads WAL batches from its
//! checkpoint on, up to what is durable, applies each record once per run in
//! LSN order, and every `persist_interval` (or `persist_records_max` records)
//! asks the subscriber to make its own state durable, then records the
//! checkpoint (`persistence::checkpoints`) and moves its pin, which tells the
//! WAL writer which batches it may delete. Delivery is at-least-once: after a
//! crash or a failed step the records after the last checkpoint come again,
//! so applying must be idempotent (records carry full states).
//!
//! A subscriber with no checkpoint, a checkpoint past what is durable (its
//! storage is ahead of a WAL that lost an unsynced tail), or a gap in the WAL
//! where its next record should be (it fell further behind than
//! `wal.subscriber_retain_max_mb` lets the WAL wait) is rebuilt from current
//! state: it pins the WAL at the durable LSN first, rebuilds, then applies
//! what came after, so it converges on the truth without holding the WAL.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::persistence::checkpoints::{
    read_record, Checkpoint, Checkpoints, Pins, WalReader, NAME_BYTES_MAX, NEEDS_NOTHING,
};
use crate::persistence::{Store, StoreError, WalRecord, WalStats};

/// A derived view fed from the WAL.
pub trait DurableSubscriber: Send + 'static {
    /// Applies the record written at `lsn`. Records come in LSN order and
    /// once each within a run; after a restart, a rebuild or a failed step,
    /// those after the last checkpoint come again.
    fn apply(&mut self, lsn: u64, record: &WalRecord) -> anyhow::Result<()>;

    /// Makes everything applied so far, which covers the WAL up to
    /// `applied_lsn`, durable in the subscriber's storage. The checkpoint
    /// moves past those records only after this returns.
    fn persist(&mut self, applied_lsn: u64) -> anyhow::Result<()>;

    /// Replaces the subscriber's state with one built from current state,
    /// which covers at least every record up to `covers_lsn` (durable when
    /// it is called); the records after those are applied next.
    fn rebuild(&mut self, covers_lsn: u64) -> anyhow::Result<()>;
}

/// How a subscriber's runner paces itself.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Applied records are persisted (and the checkpoint moved) this often.
    pub persist_interval: Duration,
    /// ... or as soon as this many records were applied since the last time.
    pub persist_records_max: u64,
    /// WAL batches read per step (each at most `wal.batch_bytes_max`).
    pub read_batches_max: usize,
    /// Wait after a failed step before replaying from the checkpoint.
    pub retry_backoff: Duration,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            persist_interval: Duration::from_millis(100),
            persist_records_max: 100_000,
            read_batches_max: 64,
            retry_backoff: Duration::from_secs(1),
        }
    }
}

/// What a runner reads from: the WAL, the durable LSN, the checkpoints and
/// the pins the WAL writer honours. One per node; cheap to clone.
#[derive(Clone)]
pub struct FeedSource {
    store: Arc<Store>,
    stats: Arc<WalStats>,
    checkpoints: Checkpoints,
    pins: Arc<Pins>,
}

impl FeedSource {
    /// `pins` must be the writer's (`WalSettings::pins`), made from
    /// `checkpoints` before the writer started.
    pub fn new(
        store: Arc<Store>,
        stats: Arc<WalStats>,
        checkpoints: Checkpoints,
        pins: Arc<Pins>,
    ) -> Self {
        Self {
            store,
            stats,
            checkpoints,
            pins,
        }
    }

    /// Forgets the checkpoints of subscribers no longer started (a view
    /// this build dropped), so they hold no WAL. Call once every subscriber
    /// of the node is spawned.
    pub fn release_unclaimed(&self) -> Result<Vec<String>, StoreError> {
        let released = self.pins.release_unclaimed();
        for name in &released {
            tracing::info!(subscriber = %name, "forgetting the checkpoint of a feed subscriber this build does not run");
            self.checkpoints.remove(name)?;
        }
        Ok(released)
    }

    /// Starts `subscriber` on a thread of its own, from its checkpoint.
    pub fn spawn<S: DurableSubscriber>(
        &self,
        name: &'static str,
        subscriber: S,
        settings: RunnerSettings,
    ) -> std::io::Result<SubscriberHandle> {
        assert!(
            !name.is_empty() && name.len() <= NAME_BYTES_MAX,
            "a subscriber name is 1..={NAME_BYTES_MAX} bytes"
        );
        let checkpoint = self
            .checkpoints
            .all()
            .map_err(std::io::Error::other)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, checkpoint)| checkpoint);
        let shared = Arc::new(Shared::default());
        let runner = Runner {
            name,
            subscriber,
            settings,
            pin: self.pins.claim(name),
            reader: WalReader::new(&self.store),
            source: self.clone(),
            shared: shared.clone(),
            next_lsn: 0,
            seq_hint: 0,
            resume: checkpoint,
            unpersisted: 0,
            persist_now: false,
            last_persist: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("feed-{name}"))
            .spawn(move || runner.run())?;
        Ok(SubscriberHandle {
            shared,
            thread: Some(thread),
        })
    }
}

/// What a runner shares with its handle.
#[derive(Default)]
struct Shared {
    /// Every record at or below this LSN is applied (not necessarily persisted).
    applied_lsn: AtomicU64,
    /// The checkpoint stored last.
    persisted_lsn: AtomicU64,
    rebuilds: AtomicU64,
    /// The runner has its start position (from its checkpoint or a rebuild).
    ready: AtomicBool,
    stop: AtomicBool,
    lock: Mutex<()>,
    moved: Condvar,
}

impl Shared {
    fn set_applied(&self, lsn: u64) {
        self.applied_lsn.store(lsn, Ordering::Release);
        let _guard = self.lock.lock();
        self.moved.notify_all();
    }
}

/// A running subscriber; stops it when dropped.
pub struct SubscriberHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl SubscriberHandle {
    /// Every record at or below this LSN has been applied.
    pub fn applied_lsn(&self) -> u64 {
        self.shared.applied_lsn.load(Ordering::Acquire)
    }

    /// The LSN of the checkpoint stored last.
    pub fn persisted_lsn(&self) -> u64 {
        self.shared.persisted_lsn.load(Ordering::Acquire)
    }

    /// How many times the subscriber was rebuilt in this run.
    pub fn rebuilds(&self) -> u64 {
        self.shared.rebuilds.load(Ordering::Acquire)
    }

    /// Waits until every record at or below `lsn` is applied; false on timeout.
    pub fn wait_applied(&self, lsn: u64, timeout: Duration) -> bool {
        self.wait_for(timeout, || self.applied_lsn() >= lsn)
    }

    /// Waits until the subscriber resumed from its checkpoint or finished
    /// its first rebuild; false on timeout.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        self.wait_for(timeout, || self.shared.ready.load(Ordering::Acquire))
    }

    fn wait_for(&self, timeout: Duration, done: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.shared.lock.lock();
        while !done() {
            if self
                .shared
                .moved
                .wait_until(&mut guard, deadline)
                .timed_out()
            {
                return done();
            }
        }
        true
    }

    /// Persists what was applied, stores the checkpoint and ends the thread.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SubscriberHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Longest wait for the durable LSN to move, so a stop is seen promptly.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// Why reading stopped short.
enum Step {
    /// Nothing more is durable yet.
    CaughtUp,
    /// More may be waiting (the read bound was reached).
    More,
    /// The WAL no longer holds the next record.
    Gap,
}

struct Runner<S> {
    name: &'static str,
    subscriber: S,
    settings: RunnerSettings,
    pin: Arc<AtomicU64>,
    reader: WalReader,
    source: FeedSource,
    shared: Arc<Shared>,
    /// The first LSN not applied yet.
    next_lsn: u64,
    /// The batch to read from.
    seq_hint: u64,
    /// Where a replay after a failed step starts: the checkpoint stored
    /// last, or the point the last rebuild covered (none: rebuild instead).
    resume: Option<Checkpoint>,
    /// Records applied since the last persist.
    unpersisted: u64,
    /// A rebuild is to be persisted at the next step.
    persist_now: bool,
    last_persist: Instant,
}

impl<S: DurableSubscriber> Runner<S> {
    fn run(mut self) {
        let durable = self.durable();
        match self.resume {
            Some(checkpoint) if checkpoint.applied_lsn <= durable => {
                self.next_lsn = checkpoint.applied_lsn + 1;
                self.seq_hint = checkpoint.batch_seq;
                self.pin.store(self.next_lsn, Ordering::Release);
                self.shared.set_applied(checkpoint.applied_lsn);
                self.shared
                    .persisted_lsn
                    .store(checkpoint.applied_lsn, Ordering::Release);
            }
            Some(checkpoint) => {
                tracing::warn!(
                    subscriber = self.name,
                    checkpoint = checkpoint.applied_lsn,
                    durable,
                    "a feed subscriber's checkpoint is past the WAL; rebuilding it"
                );
                self.rebuild();
            }
            None => self.rebuild(),
        }
        self.shared.ready.store(true, Ordering::Release);
        self.shared.set_applied(self.next_lsn.saturating_sub(1));
        while !self.shared.stop.load(Ordering::Acquire) {
            let step = match self.read_step() {
                Ok(step) => step,
                Err(error) => {
                    self.failed("applying", &error);
                    continue;
                }
            };
            if let Step::Gap = step {
                tracing::warn!(
                    subscriber = self.name,
                    next_lsn = self.next_lsn,
                    "the WAL no longer holds what a feed subscriber needs (it fell past wal.subscriber_retain_max_mb); rebuilding it"
                );
                self.rebuild();
                continue;
            }
            let due = self.persist_now
                || self.unpersisted > 0
                    && (self.unpersisted >= self.settings.persist_records_max
                        || self.last_persist.elapsed() >= self.settings.persist_interval);
            if due {
                if let Err(error) = self.persist() {
                    self.failed("persisting", &error);
                    continue;
                }
            }
            if matches!(step, Step::CaughtUp) {
                let wait = if self.unpersisted > 0 {
                    self.settings
                        .persist_interval
                        .saturating_sub(self.last_persist.elapsed())
                        .min(IDLE_WAIT)
                } else {
                    IDLE_WAIT
                };
                self.source
                    .stats
                    .wait_durable_past(self.next_lsn.saturating_sub(1), wait);
            }
        }
        if self.unpersisted > 0 || self.persist_now {
            if let Err(error) = self.persist() {
                tracing::warn!(subscriber = self.name, %error, "a feed subscriber could not persist at stop; it replays from its checkpoint at the next start");
            }
        }
    }

    fn durable(&self) -> u64 {
        self.source.stats.durable_lsn.load(Ordering::Acquire)
    }

    /// Applies what is durable after `next_lsn`, up to the read bound.
    fn read_step(&mut self) -> anyhow::Result<Step> {
        let durable = self.durable();
        if self.next_lsn > durable {
            return Ok(Step::CaughtUp);
        }
        let batches = self
            .reader
            .batches_from(self.seq_hint, self.settings.read_batches_max)?;
        let full_read = batches.len() == self.settings.read_batches_max;
        let before = self.next_lsn;
        for read in &batches {
            let batch = match read.decode() {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(subscriber = self.name, seq = read.seq, %error, "a WAL batch does not decode");
                    return Ok(Step::Gap);
                }
            };
            if batch.count == 0 || batch.last_lsn() < self.next_lsn {
                self.seq_hint = read.seq + 1;
                continue;
            }
            if batch.first_lsn > self.next_lsn {
                return Ok(Step::Gap);
            }
            for frame in batch.frames() {
                let (lsn, payload) = frame?;
                if lsn < self.next_lsn {
                    continue;
                }
                if lsn > durable {
                    self.finish_step(before);
                    return Ok(Step::CaughtUp);
                }
                let record = read_record(payload, batch.format)?;
                self.subscriber.apply(lsn, &record)?;
                self.next_lsn = lsn + 1;
                self.unpersisted += 1;
            }
            self.seq_hint = read.seq + 1;
        }
        if self.next_lsn <= durable && !full_read {
            // Durable records the WAL does not hold: truncated under us.
            return Ok(Step::Gap);
        }
        self.finish_step(before);
        Ok(if full_read {
            Step::More
        } else {
            Step::CaughtUp
        })
    }

    fn finish_step(&mut self, before: u64) {
        if self.next_lsn > before {
            let applied = self.next_lsn - 1;
            metrics::counter!("flashdrop_feed_subscriber_applied_total", "subscriber" => self.name)
                .increment(self.next_lsn - before);
            metrics::gauge!("flashdrop_feed_subscriber_lag_records", "subscriber" => self.name)
                .set(self.durable().saturating_sub(applied) as f64);
            self.shared.set_applied(applied);
        }
    }

    fn persist(&mut self) -> anyhow::Result<()> {
        let applied_lsn = self.next_lsn.saturating_sub(1);
        self.subscriber.persist(applied_lsn)?;
        let checkpoint = Checkpoint {
            applied_lsn,
            // The batch holding `next_lsn` is this one or a later one.
            batch_seq: self.seq_hint,
        };
        self.source.checkpoints.save(self.name, checkpoint)?;
        self.resume = Some(checkpoint);
        self.pin.store(self.next_lsn, Ordering::Release);
        self.shared
            .persisted_lsn
            .store(checkpoint.applied_lsn, Ordering::Release);
        self.unpersisted = 0;
        self.persist_now = false;
        self.last_persist = Instant::now();
        Ok(())
    }

    /// Builds the subscriber from current state, retrying until it works or
    /// the runner stops.
    fn rebuild(&mut self) {
        let started = Instant::now();
        while !self.shared.stop.load(Ordering::Acquire) {
            // Hold the whole WAL while reading the durable LSN, so nothing
            // after it goes before the pin says it is needed.
            self.pin.store(0, Ordering::Release);
            let durable = self.durable();
            self.pin.store(durable + 1, Ordering::Release);
            match self.subscriber.rebuild(durable) {
                Ok(()) => {
                    self.next_lsn = durable + 1;
                    self.seq_hint = 0;
                    self.resume = Some(Checkpoint {
                        applied_lsn: durable,
                        batch_seq: 0,
                    });
                    self.unpersisted = 0;
                    self.persist_now = true;
                    self.shared.rebuilds.fetch_add(1, Ordering::AcqRel);
                    metrics::counter!("flashdrop_feed_subscriber_rebuilds_total", "subscriber" => self.name)
                        .increment(1);
                    tracing::info!(
                        subscriber = self.name,
                        covers = durable,
                        took_ms = started.elapsed().as_millis() as u64,
                        "feed subscriber rebuilt from current state"
                    );
                    self.shared.set_applied(durable);
                    return;
                }
                Err(error) => {
                    tracing::warn!(subscriber = self.name, %error, "rebuilding a feed subscriber failed; retrying");
                    metrics::counter!("flashdrop_feed_subscriber_failures_total", "subscriber" => self.name, "step" => "rebuilding")
                        .increment(1);
                    self.sleep_unless_stopped(self.settings.retry_backoff);
                }
            }
        }
        // Stopped mid-rebuild: hold nothing, the next start rebuilds again.
        self.pin.store(NEEDS_NOTHING, Ordering::Release);
        self.resume = None;
        self.unpersisted = 0;
        self.persist_now = false;
    }

    /// A step failed: wait, then replay from the last checkpoint or rebuild
    /// (or rebuild without either).
    fn failed(&mut self, step: &'static str, error: &anyhow::Error) {
        tracing::warn!(subscriber = self.name, step, error = %format!("{error:#}"), "a feed subscriber step failed; replaying from its checkpoint");
        metrics::counter!("flashdrop_feed_subscriber_failures_total", "subscriber" => self.name, "step" => step)
            .increment(1);
        self.sleep_unless_stopped(self.settings.retry_backoff);
        match self.resume {
            Some(checkpoint) => {
                self.next_lsn = checkpoint.applied_lsn + 1;
                self.seq_hint = checkpoint.batch_seq;
                // A rebuild not persisted yet still is to be.
                self.unpersisted = 0;
            }
            None => self.rebuild(),
        }
    }

    fn sleep_unless_stopped(&self, total: Duration) {
        let deadline = Instant::now() + total;
        while !self.shared.stop.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(IDLE_WAIT.min(deadline.saturating_duration_since(Instant::now())));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use rkyv::util::AlignedVec;

    use super::*;
    use crate::persistence::checkpoints::WalReader;
    use crate::persistence::record::{EntityKey, RecordBody};
    use crate::persistence::wal::{RetainedBatch, WalOp};
    use crate::persistence::{SyncMode, WalHandle, WalSettings, WriterStart};

    const WAIT: Duration = Duration::from_secs(10);

    /// What a test subscriber saw, shared with the test.
    #[derive(Default)]
    struct Seen {
        applied: Vec<u64>,
        persists: u64,
        rebuilds: u64,
        /// Fail `apply` at this LSN once.
        fail_at: Option<u64>,
    }

    struct Log(Arc<Mutex<Seen>>);

    impl DurableSubscriber for Log {
        fn apply(&mut self, lsn: u64, record: &WalRecord) -> anyhow::Result<()> {
            let mut seen = self.0.lock();
            if seen.fail_at == Some(lsn) {
                seen.fail_at = None;
                anyhow::bail!("refused {lsn}");
            }
            assert!(matches!(record.body, RecordBody::Stock(_)));
            seen.applied.push(lsn);
            Ok(())
        }
        fn persist(&mut self, _applied_lsn: u64) -> anyhow::Result<()> {
            self.0.lock().persists += 1;
            Ok(())
        }
        fn rebuild(&mut self, _covers_lsn: u64) -> anyhow::Result<()> {
            let mut seen = self.0.lock();
            seen.rebuilds += 1;
            seen.applied.clear();
            Ok(())
        }
    }

    /// A data directory with a running WAL writer that honours the pins of
    /// its stored checkpoints; `restart` stops and reopens it.
    struct Node {
        dir: tempfile::TempDir,
        pinned_bytes_max: u64,
        running: Option<Running>,
    }

    struct Running {
        wal: WalHandle,
        thread: std::thread::JoinHandle<()>,
        source: FeedSource,
        store: Arc<Store>,
    }

    impl Node {
        fn new(pinned_bytes_max: u64) -> Self {
            let mut node = Self {
                dir: tempfile::tempdir().expect("temp dir"),
                pinned_bytes_max,
                running: None,
            };
            node.start();
            node
        }

        fn start(&mut self) {
            let store = Arc::new(
                Store::open(self.dir.path(), 8 << 20, SyncMode::Flush, WAIT).expect("store"),
            );
            let checkpoints = Checkpoints::open(&store).expect("checkpoints");
            let pins = Arc::new(Pins::from_checkpoints(&checkpoints.all().unwrap()));
            let settings = WalSettings {
                sync: SyncMode::Flush,
                pins: Some(pins.clone()),
                pinned_bytes_max: self.pinned_bytes_max,
                ..WalSettings::default()
            };
            let start = WriterStart {
                cursor: store.cursor().unwrap(),
                retained: retained(&store),
                dirty: Vec::new(),
            };
            let (wal, thread) = crate::persistence::wal::start(store.clone(), settings, start);
            let source = FeedSource::new(store.clone(), wal.stats().clone(), checkpoints, pins);
            self.running = Some(Running {
                wal,
                thread,
                source,
                store,
            });
        }

        fn restart(&mut self) {
            let running = self.running.take().expect("running");
            running
                .wal
                .shutdown_blocking(running.thread)
                .expect("writer stops");
            drop(running.source);
            drop(running.store);
            self.start();
        }

        fn running(&self) -> &Running {
            self.running.as_ref().expect("running")
        }

        fn spawn(&self, seen: &Arc<Mutex<Seen>>) -> SubscriberHandle {
            let settings = RunnerSettings {
                persist_interval: Duration::from_millis(10),
                retry_backoff: Duration::from_millis(10),
                ..RunnerSettings::default()
            };
            self.running()
                .source
                .spawn("log", Log(seen.clone()), settings)
                .expect("spawn")
        }

        /// Appends `n` one-record commits for SKU 1 and waits until durable.
        fn append(&self, n: usize) {
            let wal = &self.running().wal;
            for _ in 0..n {
                let record = WalRecord {
                    entity: EntityKey::Sku(1),
                    body: RecordBody::Stock(Vec::new()),
                };
                wal.append(&record, None).unwrap();
                // One record per commit, so batches are many and small.
                wal.barrier().unwrap().blocking_recv().unwrap();
            }
        }

        /// A snapshot of SKU 1 covering everything so far: snapshots no
        /// longer need any batch before it.
        fn snapshot(&self) {
            let wal = &self.running().wal;
            let mut bytes = AlignedVec::new();
            bytes.extend_from_slice(b"state");
            wal.send(WalOp::Snapshot {
                entity: EntityKey::Sku(1),
                bytes,
                ack: None,
            })
            .unwrap();
            // Header in the next commit, truncation in the one after.
            for _ in 0..3 {
                self.append(1);
            }
        }

        fn durable(&self) -> u64 {
            self.running()
                .wal
                .stats()
                .durable_lsn
                .load(Ordering::Acquire)
        }

        /// The LSN of the oldest record still in the WAL.
        fn oldest_kept(&self) -> Option<u64> {
            let reader = WalReader::new(&self.running().store);
            let batches = reader.batches_from(0, 1).unwrap();
            batches.first().map(|b| b.decode().unwrap().first_lsn)
        }
    }

    /// Every batch in the WAL, as recovery would hand them to the writer.
    fn retained(store: &Store) -> VecDeque<RetainedBatch> {
        WalReader::new(store)
            .batches_from(0, usize::MAX)
            .unwrap()
            .iter()
            .map(|read| {
                let batch = read.decode().unwrap();
                RetainedBatch {
                    seq: read.seq,
                    last_lsn: batch.last_lsn(),
                    bytes: 64,
                }
            })
            .collect()
    }

    fn applied(seen: &Arc<Mutex<Seen>>) -> Vec<u64> {
        seen.lock().applied.clone()
    }

    #[test]
    fn every_durable_record_is_applied_once_in_order_and_a_restart_resumes_at_the_checkpoint() {
        let mut node = Node::new(1 << 20);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let handle = node.spawn(&seen);
        assert!(handle.wait_ready(WAIT));
        node.append(30);
        assert!(handle.wait_applied(30, WAIT));
        assert_eq!(applied(&seen), (1..=30).collect::<Vec<_>>());
        assert_eq!(
            handle.rebuilds(),
            1,
            "no checkpoint: built from state first"
        );
        handle.stop();
        assert!(seen.lock().persists >= 1);

        // Written while the subscriber is down, then a restart of the node.
        node.append(20);
        node.restart();
        let handle = node.spawn(&seen);
        assert!(handle.wait_applied(50, WAIT));
        assert_eq!(handle.rebuilds(), 0, "resumed from its checkpoint");
        assert_eq!(
            applied(&seen),
            (1..=50).collect::<Vec<_>>(),
            "none twice, none skipped"
        );
        assert!(
            handle.persisted_lsn() >= 30,
            "starts from the stored checkpoint"
        );
        node.append(5);
        assert!(handle.wait_applied(55, WAIT));
        assert_eq!(applied(&seen), (1..=55).collect::<Vec<_>>());
    }

    #[test]
    fn the_wal_waits_for_a_stopped_subscriber_until_its_bound_then_the_subscriber_rebuilds() {
        // Small batches of 64..100 bytes each: a 4 KiB bound holds about 50.
        let node = Node::new(4 << 10);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let handle = node.spawn(&seen);
        assert!(handle.wait_ready(WAIT));
        node.append(10);
        assert!(handle.wait_applied(10, WAIT));
        handle.stop();

        // Snapshots cover everything, yet the subscriber's batches stay.
        node.append(10);
        node.snapshot();
        assert_eq!(
            node.oldest_kept(),
            Some(11),
            "kept from the subscriber's checkpoint on"
        );
        assert!(
            node.running()
                .wal
                .stats()
                .pinned_bytes
                .load(Ordering::Acquire)
                > 0
        );

        // Past the bound the oldest go; the subscriber then rebuilds.
        node.append(200);
        node.snapshot();
        let oldest = node.oldest_kept().expect("some batches kept");
        assert!(
            oldest > 11,
            "the WAL let go of batches past the bound (oldest {oldest})"
        );
        let handle = node.spawn(&seen);
        let durable = node.durable();
        assert!(handle.wait_applied(durable, WAIT));
        assert_eq!(handle.rebuilds(), 1, "fell behind the WAL: rebuilt");
        handle.stop();
        node.snapshot();
        assert!(
            node.oldest_kept().is_none_or(|lsn| lsn > durable),
            "a caught-up subscriber holds nothing behind it"
        );
    }

    #[test]
    fn a_checkpoint_past_the_wal_rebuilds_and_a_failed_step_replays_from_the_checkpoint() {
        let node = Node::new(1 << 20);
        node.append(5);
        node.running()
            .source
            .checkpoints
            .save(
                "log",
                Checkpoint {
                    applied_lsn: 1_000,
                    batch_seq: 1_000,
                },
            )
            .unwrap();
        let seen = Arc::new(Mutex::new(Seen {
            fail_at: Some(8),
            ..Seen::default()
        }));
        let handle = node.spawn(&seen);
        assert!(handle.wait_applied(5, WAIT));
        assert_eq!(
            handle.rebuilds(),
            1,
            "a checkpoint the WAL never reached is not trusted"
        );
        node.append(5);
        assert!(handle.wait_applied(10, WAIT));
        let applied = applied(&seen);
        assert_eq!(
            applied.iter().copied().max(),
            Some(10),
            "applied past the failure: {applied:?}"
        );
        for lsn in 6..=10 {
            assert!(applied.contains(&lsn), "{lsn} applied: {applied:?}");
        }
        assert!(
            applied.windows(2).all(|w| w[1] > w[0] || w[1] <= 8),
            "after a failure only a replay from the checkpoint goes back: {applied:?}"
        );
        assert_eq!(seen.lock().fail_at, None);
    }

    #[test]
    fn stored_checkpoints_no_subscriber_claims_are_forgotten() {
        let mut node = Node::new(1 << 20);
        node.append(3);
        node.running()
            .source
            .checkpoints
            .save(
                "retired-view",
                Checkpoint {
                    applied_lsn: 1,
                    batch_seq: 0,
                },
            )
            .unwrap();
        node.restart();
        let source = &node.running().source;
        assert_eq!(source.pins.needed_from(), 2, "pinned from the start");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let handle = node.spawn(&seen);
        assert_eq!(source.release_unclaimed().unwrap(), vec!["retired-view"]);
        assert!(handle.wait_applied(3, WAIT));
        handle.stop();
        let names: Vec<String> = source
            .checkpoints
            .all()
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, vec!["log".to_owned()]);
    }
}
