//! What the WAL and the snapshot store hold, and their rkyv encoding.
//! Every record names the entity it changes; replay routes by that name.

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::domain::product::Product;
use crate::domain::stock::{LedgerSnapshot, StockEvent};

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
}

const TAG_SKU: u8 = b's';
const TAG_PRODUCT: u8 = b'p';

impl EntityKey {
    pub fn to_bytes(self) -> Vec<u8> {
        match self {
            EntityKey::Sku(id) => {
                let mut out = Vec::with_capacity(9);
                out.push(TAG_SKU);
                out.extend_from_slice(&id.to_be_bytes());
                out
            }
            EntityKey::Product(id) => {
                let mut out = Vec::with_capacity(17);
                out.push(TAG_PRODUCT);
                out.extend_from_slice(&id.to_be_bytes());
                out
            }
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        match bytes.split_first()? {
            (&TAG_SKU, rest) => Some(EntityKey::Sku(u64::from_be_bytes(rest.try_into().ok()?))),
            (&TAG_PRODUCT, rest) => Some(EntityKey::Product(u128::from_be_bytes(
                rest.try_into().ok()?,
            ))),
            _ => None,
        }
    }

    /// Byte prefix shared by every key of this kind, for scans.
    pub fn kind_prefix_product() -> &'static [u8] {
        &[TAG_PRODUCT]
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
    /// Boxed: archived inline, this rare variant would size every record.
    ProductCreated(Box<Product>),
}

/// The full state of one entity at some LSN.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum SnapshotBody {
    Ledger(LedgerSnapshot),
    Product(Product),
}

#[derive(Debug, thiserror::Error)]
#[error("record encoding: {0}")]
pub struct CodecError(String);

pub fn encode_record(record: &WalRecord) -> Result<AlignedVec, CodecError> {
    rkyv::to_bytes::<rancor::Error>(record).map_err(|e| CodecError(e.to_string()))
}

/// Decodes (and validates) a record from a batch frame.
pub fn decode_record(bytes: &[u8]) -> Result<WalRecord, CodecError> {
    rkyv::from_bytes::<WalRecord, rancor::Error>(bytes).map_err(|e| CodecError(e.to_string()))
}

pub fn encode_snapshot(body: &SnapshotBody) -> Result<AlignedVec, CodecError> {
    rkyv::to_bytes::<rancor::Error>(body).map_err(|e| CodecError(e.to_string()))
}

pub fn decode_snapshot(bytes: &[u8]) -> Result<SnapshotBody, CodecError> {
    rkyv::from_bytes::<SnapshotBody, rancor::Error>(bytes).map_err(|e| CodecError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_keys_round_trip_and_sort_by_kind_then_id() {
        for key in [EntityKey::Sku(5), EntityKey::Product(u128::MAX - 3)] {
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
        assert_eq!(decode_record(&bytes).unwrap(), record);
    }
}
