//! The WebSocket hub: who watches which topic, and what each connection is
//! owed. It reads the event feed (stock actors never wait for it), coalesces
//! stock per SKU to one message per `ws.coalesce_ms`, and hands each
//! connection only the latest value of each SKU: a slow reader costs one
//! frame per subscription plus a short bounded queue of announcements, never
//! a backlog. Sockets themselves are written by `http::ws`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytestring::ByteString;
use parking_lot::{Mutex, RwLock};
use serde_json::json;
use tokio::sync::{broadcast, oneshot, Notify};

use crate::actors::registry::Registry;
use crate::actors::sku::SkuCommand;
use crate::domain::drop::DropState;
use crate::domain::identity::id_text;
use crate::domain::{DropId, SkuId, TenantId, UserId};
use crate::services::identity::DirectoryService;

use super::feed::{now_us, FeedBatch, FeedBody, Watched};

/// What a connection can watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Sku(SkuId),
    Drop(DropId),
    /// Every drop announcement.
    Drops,
    /// The caller's own orders.
    Orders,
}

/// Hub limits and timings (from `[ws]`).
#[derive(Debug, Clone)]
pub struct HubSettings {
    pub coalesce_ms: u64,
    pub max_connections: usize,
    /// Announcements (drop, queue, order and control messages) queued per
    /// connection; a connection past it is closed as too slow.
    pub event_queue_max: usize,
}

/// One message as it goes on the wire; cheap to clone (shared bytes).
pub type Frame = ByteString;

#[derive(Default)]
struct Pending {
    /// The latest stock frame of each SKU not yet written.
    stock: HashMap<SkuId, Frame>,
    /// Everything else, in order.
    events: VecDeque<Frame>,
}

/// What one connection is owed, and how to wake its writer.
pub struct Outbox {
    pub id: u64,
    user: Mutex<Option<UserId>>,
    pending: Mutex<Pending>,
    wake: Notify,
    /// Set when the hub gives up on the connection, with the reason to send.
    closing: Mutex<Option<&'static str>>,
    closed: AtomicBool,
    topics: Mutex<HashSet<Topic>>,
}

impl Outbox {
    fn new(id: u64) -> Self {
        Self {
            id,
            user: Mutex::new(None),
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            closing: Mutex::new(None),
            closed: AtomicBool::new(false),
            topics: Mutex::new(HashSet::new()),
        }
    }

    pub fn user(&self) -> Option<UserId> {
        *self.user.lock()
    }

    /// Waits until there is something to write (or the hub closes it).
    pub async fn ready(&self) {
        self.wake.notified().await;
    }

    /// Everything owed now: announcements first (in order), then the latest stock.
    pub fn take(&self) -> Vec<Frame> {
        let mut pending = self.pending.lock();
        let mut frames: Vec<Frame> = pending.events.drain(..).collect();
        frames.extend(pending.stock.drain().map(|(_, frame)| frame));
        frames
    }

    /// Frames waiting to be written.
    pub fn queued(&self) -> usize {
        let pending = self.pending.lock();
        pending.stock.len() + pending.events.len()
    }

    /// Why the hub wants this connection closed, if it does.
    pub fn closing(&self) -> Option<&'static str> {
        *self.closing.lock()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn put_stock(&self, sku: SkuId, frame: Frame) {
        let mut pending = self.pending.lock();
        let was_empty = pending.stock.is_empty() && pending.events.is_empty();
        pending.stock.insert(sku, frame);
        drop(pending);
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// Queues an announcement; false when the queue is full (the caller closes).
    fn put_event(&self, frame: Frame, max: usize) -> bool {
        let mut pending = self.pending.lock();
        if pending.events.len() >= max {
            return false;
        }
        pending.events.push_back(frame);
        drop(pending);
        self.wake.notify_one();
        true
    }

    pub fn close(&self, reason: &'static str) {
        let mut closing = self.closing.lock();
        if closing.is_none() {
            *closing = Some(reason);
        }
        drop(closing);
        self.wake.notify_one();
    }
}

/// Counts for operators and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    pub connections: usize,
    pub subscriptions: usize,
    /// Frames owed to connections right now, summed.
    pub queued_frames: usize,
    /// The most frames owed to one connection.
    pub queued_frames_max: usize,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("at most {0} subscriptions per connection")]
    TooMany(usize),
    #[error("this topic needs a signed-in connection")]
    NeedsAccount,
}

pub struct Hub {
    settings: HubSettings,
    registry: Arc<Registry>,
    directory: Arc<DirectoryService>,
    next_id: AtomicU64,
    connections: AtomicUsize,
    subscribers: RwLock<HashMap<Topic, HashMap<u64, Arc<Outbox>>>>,
    /// Signed-in connections by account, for followers, queues and orders.
    users: RwLock<HashMap<UserId, HashMap<u64, Arc<Outbox>>>>,
    /// The latest stock frame of each watched SKU, for newcomers (`None`:
    /// asked of its actor, not yet heard).
    latest: Mutex<HashMap<SkuId, Option<(u64, Frame)>>>,
    max_subscriptions: usize,
    watched: Arc<Watched>,
    /// Set when the server shuts down: every connection closes with 1001.
    going_away: tokio::sync::watch::Sender<bool>,
}

/// A connection slot; the count goes back when it is dropped.
pub struct Connection {
    hub: Arc<Hub>,
    pub outbox: Arc<Outbox>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.hub.disconnect(&self.outbox);
    }
}

impl Hub {
    pub fn new(
        settings: HubSettings,
        max_subscriptions: usize,
        registry: Arc<Registry>,
        directory: Arc<DirectoryService>,
        watched: Arc<Watched>,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            registry,
            directory,
            next_id: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            subscribers: RwLock::new(HashMap::new()),
            users: RwLock::new(HashMap::new()),
            latest: Mutex::new(HashMap::new()),
            max_subscriptions,
            watched,
            going_away: tokio::sync::watch::Sender::new(false),
        })
    }

    /// The server is shutting down: every connection closes ("going away",
    /// 1001) and new ones are refused.
    pub fn go_away(&self) {
        self.going_away.send_replace(true);
    }

    /// Resolves once `go_away` was called.
    pub async fn gone_away(&self) {
        let mut going = self.going_away.subscribe();
        let _ = going.wait_for(|gone| *gone).await;
    }

    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    /// A new connection, within `ws.max_connections`.
    pub fn connect(self: &Arc<Self>) -> Option<Connection> {
        if *self.going_away.borrow() {
            metrics::counter!("flashdrop_ws_refused_total", "why" => "shutting_down").increment(1);
            return None;
        }
        let before = self.connections.fetch_add(1, Ordering::AcqRel);
        if before >= self.settings.max_connections {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!("flashdrop_ws_refused_total", "why" => "connections").increment(1);
            return None;
        }
        metrics::gauge!("flashdrop_ws_connections").increment(1.0);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Some(Connection {
            hub: self.clone(),
            outbox: Arc::new(Outbox::new(id)),
        })
    }

    fn disconnect(&self, outbox: &Arc<Outbox>) {
        outbox.closed.store(true, Ordering::Release);
        let topics: Vec<Topic> = outbox.topics.lock().drain().collect();
        {
            let mut subscribers = self.subscribers.write();
            for topic in topics {
                self.remove_subscriber(&mut subscribers, topic, outbox.id);
            }
        }
        if let Some(user) = outbox.user() {
            let mut users = self.users.write();
            if let Some(conns) = users.get_mut(&user) {
                conns.remove(&outbox.id);
                if conns.is_empty() {
                    users.remove(&user);
                }
            }
        }
        self.connections.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("flashdrop_ws_connections").decrement(1.0);
    }

    fn remove_subscriber(
        &self,
        subscribers: &mut HashMap<Topic, HashMap<u64, Arc<Outbox>>>,
        topic: Topic,
        id: u64,
    ) {
        if let Some(set) = subscribers.get_mut(&topic) {
            set.remove(&id);
            if set.is_empty() {
                subscribers.remove(&topic);
                if let Topic::Sku(sku) = topic {
                    self.latest.lock().remove(&sku);
                    self.watched.unwatch(sku);
                }
            }
        }
    }

    /// Binds a connection to a signed-in account (for `orders`, queues and follows).
    pub fn sign_in(&self, outbox: &Arc<Outbox>, user: UserId) {
        let previous = outbox.user.lock().replace(user);
        let mut users = self.users.write();
        if let Some(previous) = previous.filter(|p| *p != user) {
            if let Some(conns) = users.get_mut(&previous) {
                conns.remove(&outbox.id);
            }
        }
        users
            .entry(user)
            .or_default()
            .insert(outbox.id, outbox.clone());
    }

    pub fn subscribe(&self, outbox: &Arc<Outbox>, topic: Topic) -> Result<(), SubscribeError> {
        if topic == Topic::Orders && outbox.user().is_none() {
            return Err(SubscribeError::NeedsAccount);
        }
        {
            let mut topics = outbox.topics.lock();
            if topics.contains(&topic) {
                return Ok(());
            }
            if topics.len() >= self.max_subscriptions {
                return Err(SubscribeError::TooMany(self.max_subscriptions));
            }
            topics.insert(topic);
        }
        {
            let mut subscribers = self.subscribers.write();
            let set = subscribers.entry(topic).or_default();
            if set.is_empty() {
                if let Topic::Sku(sku) = topic {
                    self.watched.watch(sku);
                }
            }
            set.insert(outbox.id, outbox.clone());
        }
        if let Topic::Sku(sku) = topic {
            let mut latest = self.latest.lock();
            match latest.get(&sku) {
                Some(Some((_, frame))) => outbox.put_stock(sku, frame.clone()),
                // Asked already: the answer goes to every watcher.
                Some(None) => {}
                // Nobody watched it yet: its actor announces the current value.
                None => {
                    latest.insert(sku, None);
                    drop(latest);
                    self.request_stock(sku);
                }
            }
        }
        Ok(())
    }

    pub fn unsubscribe(&self, outbox: &Arc<Outbox>, topic: Topic) {
        if outbox.topics.lock().remove(&topic) {
            let mut subscribers = self.subscribers.write();
            self.remove_subscriber(&mut subscribers, topic, outbox.id);
        }
        if let Topic::Sku(sku) = topic {
            outbox.pending.lock().stock.remove(&sku);
        }
    }

    /// Queues a message for one connection (answers to its own requests).
    pub fn tell(&self, outbox: &Arc<Outbox>, frame: Frame) {
        if !outbox.put_event(frame, self.settings.event_queue_max) {
            outbox.close("slow_client");
        }
    }

    /// Queues a message for every connection of these accounts.
    pub fn tell_users(&self, users: &[UserId], frame: &Frame) {
        let targets: Vec<Arc<Outbox>> = {
            let map = self.users.read();
            users
                .iter()
                .filter_map(|u| map.get(u))
                .flat_map(|conns| conns.values().cloned())
                .collect()
        };
        for outbox in targets {
            self.tell(&outbox, frame.clone());
        }
    }

    /// Asks a SKU's actor to announce its current value (never waits for it).
    fn request_stock(&self, sku: SkuId) {
        let (reply, _) = oneshot::channel();
        if self.registry.send(sku, SkuCommand::Publish(reply)).is_err() {
            metrics::counter!("flashdrop_ws_resync_refused_total").increment(1);
        }
    }

    pub fn stats(&self) -> HubStats {
        let subscribers = self.subscribers.read();
        let mut seen = HashMap::new();
        let mut subscriptions = 0;
        for set in subscribers.values() {
            subscriptions += set.len();
            for (id, outbox) in set {
                seen.entry(*id).or_insert_with(|| outbox.queued());
            }
        }
        HubStats {
            connections: self.connections.load(Ordering::Acquire),
            subscriptions,
            queued_frames: seen.values().sum(),
            queued_frames_max: seen.values().copied().max().unwrap_or(0),
        }
    }

    /// Reads the feed until it closes: stock is coalesced per tick, drop
    /// announcements go out at once.
    pub async fn run(self: Arc<Self>, mut feed: broadcast::Receiver<Arc<FeedBatch>>) {
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.settings.coalesce_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // SKU -> (seq, available, commit time) of the newest change this tick.
        let mut dirty: HashMap<SkuId, (u64, u64, u64)> = HashMap::new();
        loop {
            tokio::select! {
                received = feed.recv() => match received {
                    Ok(batch) => self.take_batch(&batch, &mut dirty),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "WebSocket hub fell behind the event feed; resynchronising");
                        metrics::counter!("flashdrop_ws_feed_lagged_total").increment(missed);
                        let watched: Vec<SkuId> = self.subscribers.read().keys().filter_map(|t| match t {
                            Topic::Sku(sku) => Some(*sku),
                            _ => None,
                        }).collect();
                        for sku in watched {
                            self.request_stock(sku);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    if !dirty.is_empty() {
                        self.flush(&mut dirty);
                    }
                }
            }
        }
    }

    fn take_batch(&self, batch: &FeedBatch, dirty: &mut HashMap<SkuId, (u64, u64, u64)>) {
        for event in &batch.events {
            match event.body {
                FeedBody::Stock { sku, available } => {
                    let slot = dirty.entry(sku).or_insert((0, 0, 0));
                    if event.seq >= slot.0 {
                        *slot = (event.seq, available, batch.committed_at_us);
                    }
                }
                FeedBody::Drop { id, tenant, state } => {
                    self.announce(id, tenant, state, event.seq, batch.committed_at_us)
                }
            }
        }
    }

    /// One frame per changed SKU, to each of its watchers (replacing any older
    /// one still unwritten).
    fn flush(&self, dirty: &mut HashMap<SkuId, (u64, u64, u64)>) {
        let subscribers = self.subscribers.read();
        let mut latest = self.latest.lock();
        for (sku, (seq, available, at_us)) in dirty.drain() {
            let Some(watchers) = subscribers.get(&Topic::Sku(sku)) else {
                continue;
            };
            if latest
                .get(&sku)
                .is_some_and(|known| known.as_ref().is_some_and(|(at, _)| *at > seq))
            {
                continue;
            }
            let Some(info) = self.registry.info(sku) else {
                continue;
            };
            let frame = Frame::from(
                json!({
                    "type": "stock",
                    "sku": info.code(),
                    "available": available,
                    "seq": seq,
                    "ts_us": at_us,
                })
                .to_string(),
            );
            latest.insert(sku, Some((seq, frame.clone())));
            for outbox in watchers.values() {
                outbox.put_stock(sku, frame.clone());
            }
            metrics::counter!("flashdrop_ws_stock_frames_total").increment(watchers.len() as u64);
        }
    }

    /// A drop moved: its watchers, every `drops` watcher and every connected
    /// follower of its creator hear it once.
    fn announce(&self, id: DropId, tenant: TenantId, state: DropState, seq: u64, at_us: u64) {
        let frame = Frame::from(
            json!({
                "type": "drop",
                "id": id_text(id),
                "creator_id": id_text(tenant),
                "state": state.as_str(),
                "seq": seq,
                "ts_us": at_us,
            })
            .to_string(),
        );
        let mut targets: HashMap<u64, Arc<Outbox>> = HashMap::new();
        {
            let subscribers = self.subscribers.read();
            for topic in [Topic::Drop(id), Topic::Drops] {
                if let Some(set) = subscribers.get(&topic) {
                    targets.extend(set.iter().map(|(k, v)| (*k, v.clone())));
                }
            }
        }
        {
            let users = self.users.read();
            for (user, conns) in users.iter() {
                if self.directory.follows(*user, tenant) {
                    targets.extend(conns.iter().map(|(k, v)| (*k, v.clone())));
                }
            }
        }
        for outbox in targets.values() {
            self.tell(outbox, frame.clone());
        }
        metrics::counter!("flashdrop_ws_drop_frames_total").increment(targets.len() as u64);
    }
}

/// The first frame of every connection.
pub fn hello_frame(connection: u64, coalesce_ms: u64) -> Frame {
    Frame::from(
        json!({"type": "hello", "connection": connection, "coalesce_ms": coalesce_ms, "ts_us": now_us()})
            .to_string(),
    )
}
