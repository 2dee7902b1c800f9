//! What the WAL and the snapshot store hold, and their rkyv encoding.
//! Every record names the entity it changes; replay routes by that name.

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::domain::cart::Cart;
use crate::domain::category::Category;
use crate::domain::drop::legacy::{DropEventV1, FlashDropV1};
use crate::domain::drop::{DropEvent, FlashDrop};
use crate::domain::identity::Entity;
use crate::domain::order::legacy::OrderV1;
use crate::domain::order::Order;
use crate::domain::product::legacy::ProductV1;
use crate::domain::product::Product;
use crate::domain::stock::{LedgerSnapshot, StockEvent};
use crate::domain::{DropId, OrderId, TenantId, UserId};

/// The entity a record or snapshot belongs to. Its byte form sorts by kind, then id.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub enum EntityKey {
    Sku(u64),
    Product(u128),
    User(UserId),
    Tenant(TenantId),
    Session(u128),
    Invitation(u128),
    Follow(u128),
    Audit(u64),
    Drop(DropId),
    Order(OrderId),
    /// A cart, by its owner (an account or a guest cart token).
    Cart(u128),
    /// A category of the platform's tree (format 3 on; appended last).
    Category(u64),
}

const TAG_SKU: u8 = b's';
const TAG_PRODUCT: u8 = b'p';
const TAG_USER: u8 = b'u';
const TAG_TENANT: u8 = b't';
const TAG_SESSION: u8 = b'e';
const TAG_INVITATION: u8 = b'i';
const TAG_FOLLOW: u8 = b'f';
const TAG_AUDIT: u8 = b'a';
const TAG_DROP: u8 = b'd';
const TAG_ORDER: u8 = b'o';
const TAG_CART: u8 = b'c';
const TAG_CATEGORY: u8 = b'g';

/// Kinds of directory entities recovery loads into memory (audit entries stay on disk).
pub const DIRECTORY_TAGS: [u8; 5] = [
    TAG_USER,
    TAG_TENANT,
    TAG_SESSION,
    TAG_INVITATION,
    TAG_FOLLOW,
];

impl EntityKey {
    pub fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17);
        match self {
            EntityKey::Sku(id) | EntityKey::Category(id) => {
                out.push(self.tag());
                out.extend_from_slice(&id.to_be_bytes());
            }
            EntityKey::Audit(seq) => {
                out.push(TAG_AUDIT);
                out.extend_from_slice(&seq.to_be_bytes());
            }
            EntityKey::Product(id)
            | EntityKey::User(UserId(id))
            | EntityKey::Tenant(TenantId(id))
            | EntityKey::Session(id)
            | EntityKey::Invitation(id)
            | EntityKey::Follow(id)
            | EntityKey::Drop(DropId(id))
            | EntityKey::Order(OrderId(id))
            | EntityKey::Cart(id) => {
                out.push(self.tag());
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        out
    }

    fn tag(self) -> u8 {
        match self {
            EntityKey::Sku(_) => TAG_SKU,
            EntityKey::Product(_) => TAG_PRODUCT,
            EntityKey::User(_) => TAG_USER,
            EntityKey::Tenant(_) => TAG_TENANT,
            EntityKey::Session(_) => TAG_SESSION,
            EntityKey::Invitation(_) => TAG_INVITATION,
            EntityKey::Follow(_) => TAG_FOLLOW,
            EntityKey::Audit(_) => TAG_AUDIT,
            EntityKey::Drop(_) => TAG_DROP,
            EntityKey::Order(_) => TAG_ORDER,
            EntityKey::Cart(_) => TAG_CART,
            EntityKey::Category(_) => TAG_CATEGORY,
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (tag, rest) = bytes.split_first()?;
        let u64_of = |b: &[u8]| b.try_into().ok().map(u64::from_be_bytes);
        let u128_of = |b: &[u8]| b.try_into().ok().map(u128::from_be_bytes);
        Some(match *tag {
            TAG_SKU => EntityKey::Sku(u64_of(rest)?),
            TAG_AUDIT => EntityKey::Audit(u64_of(rest)?),
            TAG_PRODUCT => EntityKey::Product(u128_of(rest)?),
            TAG_USER => EntityKey::User(UserId(u128_of(rest)?)),
            TAG_TENANT => EntityKey::Tenant(TenantId(u128_of(rest)?)),
            TAG_SESSION => EntityKey::Session(u128_of(rest)?),
            TAG_INVITATION => EntityKey::Invitation(u128_of(rest)?),
            TAG_FOLLOW => EntityKey::Follow(u128_of(rest)?),
            TAG_DROP => EntityKey::Drop(DropId(u128_of(rest)?)),
            TAG_ORDER => EntityKey::Order(OrderId(u128_of(rest)?)),
            TAG_CART => EntityKey::Cart(u128_of(rest)?),
            TAG_CATEGORY => EntityKey::Category(u64_of(rest)?),
            _ => return None,
        })
    }

    /// The key a directory entity is stored under.
    pub fn of(entity: &Entity) -> Self {
        match entity {
            Entity::User(u) => EntityKey::User(u.id),
            Entity::Tenant(t) => EntityKey::Tenant(t.id),
            Entity::TenantV1(t) => EntityKey::Tenant(t.id),
            Entity::Session(s) => EntityKey::Session(s.id),
            Entity::Invitation(i) => EntityKey::Invitation(i.id),
            Entity::Follow(f) => EntityKey::Follow(f.id),
            Entity::Audit(a) => EntityKey::Audit(a.seq),
        }
    }

    /// Byte prefix of the audit log's keys (oldest first).
    pub fn kind_prefix_audit() -> &'static [u8] {
        &[TAG_AUDIT]
    }

    /// Byte prefix shared by every key of this kind, for scans.
    pub fn kind_prefix_product() -> &'static [u8] {
        &[TAG_PRODUCT]
    }

    pub fn kind_prefix_drop() -> &'static [u8] {
        &[TAG_DROP]
    }

    pub fn kind_prefix_order() -> &'static [u8] {
        &[TAG_ORDER]
    }

    pub fn kind_prefix_cart() -> &'static [u8] {
        &[TAG_CART]
    }

    pub fn kind_prefix_category() -> &'static [u8] {
        &[TAG_CATEGORY]
    }
}

/// One atomic change of one entity: everything a single command decided.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct WalRecord {
    pub entity: EntityKey,
    pub body: RecordBody,
}

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum RecordBody {
    Stock(Vec<StockEvent>),
    /// A product as formats 0 and 1 wrote it at creation (never written now).
    /// Boxed: archived inline, this rare variant would size every record.
    ProductCreatedV1(Box<ProductV1>),
    /// The new full state of an account, store, session, invitation, follow or audit entry.
    Directory(Box<Entity>),
    /// A drop as formats 0..=3 wrote its creation and moves (never written now).
    DropV1(Box<DropEventV1>),
    /// An order as formats 0..=4 wrote it (never written now).
    OrderV1(Box<OrderV1>),
    /// The new full state of a cart.
    Cart(Box<Cart>),
    /// The entity ends: replay forgets it, and its snapshot is deleted once
    /// this record is durable. Appended last, so older records keep their tags.
    Deleted,
    /// The new full state of a product, one per version (format 2 on).
    Product(Box<Product>),
    /// The new full state of a category (format 3 on).
    Category(Box<Category>),
    /// A drop was scheduled, moved, edited or let go of its SKUs (format 4 on).
    Drop(Box<DropEvent>),
    /// The new full state of an order, written before and after every saga
    /// step (format 5 on: with each seller's shipping and tax).
    Order(Box<Order>),
}

/// The full state of one entity at some LSN.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum SnapshotBody {
    Ledger(LedgerSnapshot),
    /// A product as formats 0 and 1 wrote it (never written now).
    ProductV1(ProductV1),
    Directory(Entity),
    /// A drop as formats 0..=3 wrote it (never written now).
    DropV1(FlashDropV1),
    /// An order as formats 0..=4 wrote it (never written now).
    OrderV1(OrderV1),
    Cart(Cart),
    /// A product's latest version (format 2 on); appended, so older
    /// snapshots keep their tags.
    Product(Box<Product>),
    /// A category (format 3 on).
    Category(Category),
    /// A drop with its `after_drop` and edits (format 4 on).
    Drop(FlashDrop),
    /// An order with each seller's charges (format 5 on); boxed so the
    /// archived enum keeps the size older snapshots were written with.
    Order(Box<Order>),
}

#[derive(Debug, thiserror::Error)]
#[error("record encoding: {0}")]
pub struct CodecError(String);

/// The format of every record and snapshot this build writes; each WAL
/// batch and each snapshot header says the format of what it holds.
/// Format 0 is data written before formats were recorded; its layout is
/// format 1's. A change to any archived type bumps this and teaches
/// `decode_record` and `decode_snapshot` to read the previous format.
///
/// Format 2 added versioned products (`RecordBody::Product`,
/// `SnapshotBody::Product`) after the older variants; format 1's products
/// keep their variants and layout (`product::legacy`), so formats 0..=2 all
/// read with these types. Format 3 added categories (`EntityKey::Category`,
/// `RecordBody::Category`, `SnapshotBody::Category`), again after the older
/// variants, so formats 0..=3 read with these types too. Format 4 changed
/// drops (`after_drop`, edits): older drops keep their layout and tags as
/// `DropV1` (`drop::legacy`) and the new ones were appended; it also
/// appended `StockEvent::DropReleased`. Format 5 priced checkouts: orders
/// (`SubOrder::charges`) and stores (`ShippingSettings::methods`) changed,
/// their older layouts kept as `OrderV1` (`order::legacy`) and
/// `Entity::TenantV1` (`identity::legacy`), the new ones appended boxed.
pub const FORMAT: u16 = 5;

/// Refuses data written by a newer build: reading it as ours would be
/// reading garbage, and writing over it would lose what it says.
fn readable(format: u16) -> Result<(), CodecError> {
    if format > FORMAT {
        return Err(CodecError(format!(
            "written in format {format} by a newer flashdrop; this build reads formats up to {FORMAT}"
        )));
    }
    Ok(())
}

pub fn encode_record(record: &WalRecord) -> Result<AlignedVec, CodecError> {
    rkyv::to_bytes::<rancor::Error>(record).map_err(|e| CodecError(e.to_string()))
}

/// Decodes (and validates) a record from a batch frame of format `format`.
pub fn decode_record(bytes: &[u8], format: u16) -> Result<WalRecord, CodecError> {
    readable(format)?;
    rkyv::from_bytes::<WalRecord, rancor::Error>(bytes).map_err(|e| CodecError(e.to_string()))
}

pub fn encode_snapshot(body: &SnapshotBody) -> Result<AlignedVec, CodecError> {
    rkyv::to_bytes::<rancor::Error>(body).map_err(|e| CodecError(e.to_string()))
}

/// Decodes a snapshot body of format `format`.
pub fn decode_snapshot(bytes: &[u8], format: u16) -> Result<SnapshotBody, CodecError> {
    readable(format)?;
    rkyv::from_bytes::<SnapshotBody, rancor::Error>(bytes).map_err(|e| CodecError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_keys_round_trip_and_sort_by_kind_then_id() {
        for key in [
            EntityKey::Sku(5),
            EntityKey::Product(u128::MAX - 3),
            EntityKey::User(UserId(7)),
            EntityKey::Tenant(TenantId(8)),
            EntityKey::Session(9),
            EntityKey::Invitation(10),
            EntityKey::Follow(u128::MAX),
            EntityKey::Audit(12),
            EntityKey::Drop(DropId(13)),
            EntityKey::Order(OrderId(14)),
            EntityKey::Cart(15),
        ] {
            assert_eq!(EntityKey::from_bytes(&key.to_bytes()), Some(key));
        }
        assert!(EntityKey::Sku(1).to_bytes() < EntityKey::Sku(256).to_bytes());
        assert_eq!(EntityKey::from_bytes(b"x123"), None);
        assert_eq!(EntityKey::from_bytes(b"s12"), None);
    }

    #[test]
    fn a_reservation_record_stays_small() {
        let record = WalRecord {
            entity: EntityKey::Sku(9),
            body: RecordBody::Stock(vec![StockEvent::Reserved {
                seq: 1,
                buyer: "buyer-123456".into(),
                quantity: 1,
                created_at_ms: 3,
                expires_at_ms: 4,
                idempotency: None,
            }]),
        };
        // Every byte is written, fsynced and copied by sled several times.
        let len = encode_record(&record).unwrap().len();
        assert!(len <= 96, "a reservation record takes {len} bytes");
    }

    #[test]
    fn records_round_trip_through_rkyv() {
        let record = WalRecord {
            entity: EntityKey::Sku(9),
            body: RecordBody::Stock(vec![StockEvent::Reserved {
                seq: 1,
                buyer: "b".into(),
                quantity: 2,
                created_at_ms: 3,
                expires_at_ms: 4,
                idempotency: Some(("k".into(), 5)),
            }]),
        };
        let bytes = encode_record(&record).unwrap();
        assert_eq!(decode_record(&bytes, FORMAT).unwrap(), record);
        assert_eq!(
            decode_record(&bytes, 0).unwrap(),
            record,
            "format 0 is format 1"
        );
        let newer = decode_record(&bytes, FORMAT + 1).unwrap_err().to_string();
        assert!(newer.contains("newer flashdrop"), "{newer}");
    }
}
