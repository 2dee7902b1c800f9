//! The entity kinds recovery rebuilds whole (drops, orders, carts,
//! categories): each is
//! one `Recoverable` implementation saying how its key, snapshot and records
//! map to its state. `KindState` runs the same rules for all of them: latest
//! snapshot, then every newer record, `Deleted` forgets.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use crate::domain::cart::Cart;
use crate::domain::category::{Category, CategoryId};
use crate::domain::drop::{DropEvent, FlashDrop};
use crate::domain::order::Order;
use crate::domain::{DropId, OrderId};

use super::record::{EntityKey, RecordBody, SnapshotBody};
use super::store::{corrupt, Store, StoreError};
use super::wal::{WalError, WalHandle};

/// A kind of entity whose every record carries (or rebuilds) its full state.
/// Adding one to recovery is an implementation of this trait and a field of
/// `Recovered`; the WAL replay routes records to it by `id`.
pub trait Recoverable: Clone + Sized {
    type Id: Copy + Eq + Hash + std::fmt::Debug;
    /// What a log line calls it.
    const KIND: &'static str;
    /// The snapshot-key prefix of the kind.
    fn prefix() -> &'static [u8];
    fn key(id: Self::Id) -> EntityKey;
    /// The id when `key` names an entity of this kind.
    fn id(key: EntityKey) -> Option<Self::Id>;
    fn from_snapshot(body: SnapshotBody) -> Option<Self>;
    fn to_snapshot(&self) -> SnapshotBody;
    /// The state after `body`, given the one before it (`None`: not yet
    /// created). `Err` says why the record cannot apply.
    fn apply(before: Option<Self>, body: RecordBody) -> Result<Self, String>;
}

impl Recoverable for Order {
    type Id = OrderId;
    const KIND: &'static str = "order";
    fn prefix() -> &'static [u8] {
        EntityKey::kind_prefix_order()
    }
    fn key(id: OrderId) -> EntityKey {
        EntityKey::Order(id)
    }
    fn id(key: EntityKey) -> Option<OrderId> {
        match key {
            EntityKey::Order(id) => Some(id),
            _ => None,
        }
    }
    fn from_snapshot(body: SnapshotBody) -> Option<Self> {
        match body {
            SnapshotBody::Order(order) => Some(*order),
            SnapshotBody::OrderV1(old) => Some(old.into()),
            _ => None,
        }
    }
    fn to_snapshot(&self) -> SnapshotBody {
        SnapshotBody::Order(Box::new(self.clone()))
    }
    fn apply(_: Option<Self>, body: RecordBody) -> Result<Self, String> {
        match body {
            RecordBody::Order(order) => Ok(*order),
            RecordBody::OrderV1(old) => Ok((*old).into()),
            _ => Err("not an order record".into()),
        }
    }
}

impl Recoverable for Category {
    type Id = CategoryId;
    const KIND: &'static str = "category";
    fn prefix() -> &'static [u8] {
        EntityKey::kind_prefix_category()
    }
    fn key(id: CategoryId) -> EntityKey {
        EntityKey::Category(id.0)
    }
    fn id(key: EntityKey) -> Option<CategoryId> {
        match key {
            EntityKey::Category(id) => Some(CategoryId(id)),
            _ => None,
        }
    }
    fn from_snapshot(body: SnapshotBody) -> Option<Self> {
        match body {
            SnapshotBody::Category(category) => Some(category),
            _ => None,
        }
    }
    fn to_snapshot(&self) -> SnapshotBody {
        SnapshotBody::Category(self.clone())
    }
    fn apply(_: Option<Self>, body: RecordBody) -> Result<Self, String> {
        match body {
            RecordBody::Category(category) => Ok(*category),
            _ => Err("not a category record".into()),
        }
    }
}

impl Recoverable for Cart {
    type Id = u128;
    const KIND: &'static str = "cart";
    fn prefix() -> &'static [u8] {
        EntityKey::kind_prefix_cart()
    }
    fn key(owner: u128) -> EntityKey {
        EntityKey::Cart(owner)
    }
    fn id(key: EntityKey) -> Option<u128> {
        match key {
            EntityKey::Cart(owner) => Some(owner),
            _ => None,
        }
    }
    fn from_snapshot(body: SnapshotBody) -> Option<Self> {
        match body {
            SnapshotBody::Cart(cart) => Some(cart),
            _ => None,
        }
    }
    fn to_snapshot(&self) -> SnapshotBody {
        SnapshotBody::Cart(self.clone())
    }
    fn apply(_: Option<Self>, body: RecordBody) -> Result<Self, String> {
        match body {
            RecordBody::Cart(cart) => Ok(*cart),
            _ => Err("not a cart record".into()),
        }
    }
}

impl Recoverable for FlashDrop {
    type Id = DropId;
    const KIND: &'static str = "drop";
    fn prefix() -> &'static [u8] {
        EntityKey::kind_prefix_drop()
    }
    fn key(id: DropId) -> EntityKey {
        EntityKey::Drop(id)
    }
    fn id(key: EntityKey) -> Option<DropId> {
        match key {
            EntityKey::Drop(id) => Some(id),
            _ => None,
        }
    }
    fn from_snapshot(body: SnapshotBody) -> Option<Self> {
        match body {
            SnapshotBody::Drop(drop) => Some(drop),
            SnapshotBody::DropV1(old) => Some(old.into()),
            _ => None,
        }
    }
    fn to_snapshot(&self) -> SnapshotBody {
        SnapshotBody::Drop(self.clone())
    }
    fn apply(before: Option<Self>, body: RecordBody) -> Result<Self, String> {
        match body {
            RecordBody::Drop(event) => {
                FlashDrop::apply(before, &event).ok_or_else(|| "moved before it was created".into())
            }
            RecordBody::DropV1(old) => FlashDrop::apply(before, &DropEvent::from(*old))
                .ok_or_else(|| "moved before it was created".into()),
            _ => Err("not a drop record".into()),
        }
    }
}

/// Reads entities of any `Recoverable` kind back from their latest
/// snapshot: how the entity host activates one that left memory (it left
/// only once its last state was snapshotted).
#[derive(Clone)]
pub struct Snapshots {
    store: std::sync::Arc<Store>,
}

impl Snapshots {
    pub fn new(store: std::sync::Arc<Store>) -> Self {
        Self { store }
    }

    /// The latest state of `id`, or `None` when it has no snapshot.
    pub fn load<T: Recoverable>(&self, id: T::Id) -> Result<Option<T>, StoreError> {
        let key = T::key(id);
        match self.store.read_snapshot(key)? {
            None => Ok(None),
            Some((_, body)) => T::from_snapshot(body)
                .map(Some)
                .ok_or_else(|| corrupt("snapshot", format!("{key:?} holds another kind"))),
        }
    }
}

/// One kind's entities during replay: each with the LSN its state covers.
pub struct KindState<T: Recoverable> {
    entities: HashMap<T::Id, (u64, T)>,
    /// Entities whose latest state came from the WAL (no snapshot has it).
    from_wal: HashSet<T::Id>,
}

impl<T: Recoverable> Default for KindState<T> {
    fn default() -> Self {
        Self {
            entities: HashMap::new(),
            from_wal: HashSet::new(),
        }
    }
}

impl<T: Recoverable> KindState<T> {
    /// Every snapshot of the kind.
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        let mut state = Self::default();
        for item in store.snapshots.scan_prefix(T::prefix()) {
            let (key, _) = item?;
            let entity = EntityKey::from_bytes(&key)
                .and_then(|key| T::id(key).map(|id| (key, id)))
                .ok_or_else(|| corrupt("snapshot key", format!("bad {} key", T::KIND)))?;
            let (key, id) = entity;
            if let Some((covers, body)) = store.read_snapshot(key)? {
                let value = T::from_snapshot(body)
                    .ok_or_else(|| corrupt("snapshot", format!("{key:?} holds another kind")))?;
                state.entities.insert(id, (covers, value));
            }
        }
        Ok(state)
    }

    pub fn len(&self) -> usize {
        self.entities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// Applies the record at `lsn` if it is newer than the state. `None`: the
    /// record is not of this kind.
    pub fn apply(
        &mut self,
        lsn: u64,
        key: EntityKey,
        body: RecordBody,
    ) -> Option<Result<bool, StoreError>> {
        let id = T::id(key)?;
        let covers = self.entities.get(&id).map_or(0, |(covers, _)| *covers);
        if lsn <= covers {
            return Some(Ok(false));
        }
        let before = self.entities.remove(&id).map(|(_, state)| state);
        Some(match T::apply(before, body) {
            Ok(after) => {
                self.entities.insert(id, (lsn, after));
                self.from_wal.insert(id);
                Ok(true)
            }
            Err(why) => Err(corrupt(
                "wal replay",
                format!("lsn {lsn}: {} {id:?}: {why}", T::KIND),
            )),
        })
    }

    /// Applies a `Deleted` record at `lsn`: the entity goes unless its state
    /// is newer (a snapshot taken after it was created anew). `None`: not of
    /// this kind; otherwise whether it went.
    pub fn delete(&mut self, lsn: u64, key: EntityKey) -> Option<bool> {
        let id = T::id(key)?;
        self.from_wal.remove(&id);
        Some(match self.entities.get(&id) {
            Some((covers, _)) if *covers >= lsn => false,
            Some(_) => {
                self.entities.remove(&id);
                true
            }
            None => true,
        })
    }

    pub fn finish(self) -> RecoveredKind<T> {
        RecoveredKind {
            unsnapshotted: self.from_wal.into_iter().collect(),
            all: self
                .entities
                .into_iter()
                .map(|(id, (_, state))| (id, state))
                .collect(),
        }
    }
}

/// What recovery found of one kind.
pub struct RecoveredKind<T: Recoverable> {
    /// Every entity, in its latest state.
    pub all: HashMap<T::Id, T>,
    /// Those whose latest state is only in the WAL: they need a snapshot
    /// before the WAL behind them can go.
    pub unsnapshotted: Vec<T::Id>,
}

impl<T: Recoverable> Default for RecoveredKind<T> {
    fn default() -> Self {
        Self {
            all: HashMap::new(),
            unsnapshotted: Vec::new(),
        }
    }
}

impl<T: Recoverable> RecoveredKind<T> {
    /// Sends a snapshot of every entity whose latest state is only in the
    /// WAL (the caller waits for a barrier to know they are durable).
    pub fn snapshot_wal_only(&self, wal: &WalHandle) -> Result<(), WalError> {
        for id in &self.unsnapshotted {
            if let Some(state) = self.all.get(id) {
                wal.snapshot(T::key(*id), &state.to_snapshot(), None)?;
            }
        }
        Ok(())
    }

    /// Takes every entity out (the service that owns them starts with them).
    pub fn take_all(&mut self) -> HashMap<T::Id, T> {
        std::mem::take(&mut self.all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cart_record(owner: u128, at_ms: u64) -> RecordBody {
        RecordBody::Cart(Box::new(Cart::new(owner, false, at_ms, 1_000)))
    }

    #[test]
    fn a_record_applies_only_when_newer_than_the_state() {
        let mut carts = KindState::<Cart>::default();
        let key = EntityKey::Cart(7);
        assert!(matches!(
            carts.apply(10, key, cart_record(7, 1)),
            Some(Ok(true))
        ));
        assert!(matches!(
            carts.apply(10, key, cart_record(7, 2)),
            Some(Ok(false))
        ));
        assert!(matches!(
            carts.apply(12, key, cart_record(7, 3)),
            Some(Ok(true))
        ));
        assert!(carts
            .apply(13, EntityKey::Order(OrderId(7)), cart_record(7, 4))
            .is_none());
        let found = carts.finish();
        assert_eq!(found.all[&7].updated_at_ms, 3);
        assert_eq!(found.unsnapshotted, vec![7]);
    }

    #[test]
    fn a_body_of_another_kind_is_corruption() {
        let mut orders = KindState::<Order>::default();
        let applied = orders.apply(5, EntityKey::Order(OrderId(1)), cart_record(1, 1));
        assert!(matches!(applied, Some(Err(_))));
    }

    #[test]
    fn deleted_forgets_older_state_but_not_a_newer_one() {
        let mut carts = KindState::<Cart>::default();
        let key = EntityKey::Cart(3);
        carts.apply(20, key, cart_record(3, 1));
        assert_eq!(
            carts.delete(19, key),
            Some(false),
            "state newer than the delete"
        );
        assert_eq!(carts.len(), 1);
        assert_eq!(carts.delete(21, key), Some(true));
        assert!(carts.is_empty());
        assert_eq!(carts.delete(22, EntityKey::Drop(DropId(3))), None);
        assert!(carts.finish().unsnapshotted.is_empty());
    }

    #[test]
    fn a_drop_of_format_3_reads_as_a_closing_drop_and_takes_new_events() {
        use crate::domain::drop::legacy::{DropEventV1, DropSpecV1, FlashDropV1};
        use crate::domain::drop::{AfterDrop, DropEdit, DropState};
        use crate::domain::ids::{TenantId, UserId};
        use crate::persistence::record::{decode_snapshot, encode_snapshot};
        let spec = DropSpecV1 {
            id: DropId(4),
            tenant: TenantId(2),
            title: "Old".into(),
            skus: Vec::new(),
            starts_at_ms: 10,
            ends_at_ms: 20,
            per_buyer_limit: 1,
            waiting_room: None,
            created_at_ms: 5,
            created_by: UserId(1),
        };
        // A snapshot written in format 3 decodes through its old tag.
        let old = SnapshotBody::DropV1(FlashDropV1 {
            spec: spec.clone(),
            state: DropState::Scheduled,
            history: vec![(DropState::Scheduled, 5)],
        });
        let bytes = encode_snapshot(&old).unwrap();
        let body = decode_snapshot(&bytes, 3).unwrap();
        let drop = <FlashDrop as Recoverable>::from_snapshot(body).unwrap();
        assert_eq!(drop.spec.after_drop, AfterDrop::Close);
        assert_eq!(drop.edits, 0);

        // Old records, then a new edit, replay into one drop.
        let created = RecordBody::DropV1(Box::new(DropEventV1::Created(spec)));
        let replayed = <FlashDrop as Recoverable>::apply(None, created).unwrap();
        let mut edit = DropEdit::of(&replayed.spec, 7, UserId(1));
        edit.after_drop = AfterDrop::Sell;
        let edited = <FlashDrop as Recoverable>::apply(
            Some(replayed),
            RecordBody::Drop(Box::new(DropEvent::Edited(edit))),
        )
        .unwrap();
        assert_eq!(edited.spec.after_drop, AfterDrop::Sell);
        assert_eq!((edited.edits, edited.updated_at_ms), (1, 7));
        assert!(<FlashDrop as Recoverable>::apply(
            None,
            RecordBody::Drop(Box::new(DropEvent::SkusSettled { at_ms: 1 }))
        )
        .is_err());
    }
}
