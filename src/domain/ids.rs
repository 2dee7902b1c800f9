//! Identifiers and validated names that cross the HTTP edge.
//! An invalid value cannot exist past `parse`; internal ids are typed integers.

use std::fmt;

use serde::Serialize;

/// Internal numeric id of a SKU, assigned when its product is created.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct SkuId(pub u64);

/// A 128-bit id named by what it identifies, so ids of different things cannot
/// be swapped. Text (a hyphenated UUID) only at the edge: `parse`, `Display`.
/// The archived form is the bare `u128`'s: records keep their bytes.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
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
        pub struct $name(pub u128);

        impl $name {
            /// A hyphenated UUID, as the API writes it.
            pub fn parse(raw: &str) -> Option<Self> {
                super::identity::parse_id(raw).map(Self)
            }
        }

        impl From<$name> for u128 {
            fn from(id: $name) -> u128 {
                id.0
            }
        }

        impl fmt::Display for $name {
            /// A hyphenated lower-case UUID.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut buffer = uuid::Uuid::encode_buffer();
                f.write_str(uuid::Uuid::from_u128(self.0).hyphenated().encode_lower(&mut buffer))
            }
        }

        impl Serialize for $name {
            /// The text form, as the API writes it.
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&super::identity::id_text(*self))
            }
        }
    };
}

uuid_id!(
    /// An account (buyer, seller staff or platform admin).
    UserId
);
uuid_id!(
    /// A store (tenant): the owner of products, drops and order lines.
    TenantId
);
uuid_id!(
    /// An order (UUIDv7 when placed).
    OrderId
);
uuid_id!(
    /// A flash drop (UUIDv7 when scheduled).
    DropId
);

/// A reservation is named by its SKU and a per-SKU sequence number, so any
/// reservation id routes to its SKU without a global index. Rendered as 32 hex
/// digits; opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReservationId {
    pub sku: SkuId,
    pub seq: u64,
}

impl ReservationId {
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() != 32 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let value = u128::from_str_radix(raw, 16).ok()?;
        Some(Self {
            sku: SkuId((value >> 64) as u64),
            seq: value as u64,
        })
    }
}

impl fmt::Display for ReservationId {
    /// 32 lower-case hex digits: the SKU id, then the sequence, 16 each.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (half, value) in [self.sku.0, self.seq].into_iter().enumerate() {
            for (i, slot) in out[half * 16..half * 16 + 16].iter_mut().enumerate() {
                *slot = HEX[((value >> (60 - 4 * i)) & 0xf) as usize];
            }
        }
        // Only ASCII hex digits were written.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

/// Error for a value that failed validation at the edge; says which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    /// The field as the client wrote it (`items[0].quantity`, a header's name).
    pub field: std::borrow::Cow<'static, str>,
    pub reason: String,
}

impl InvalidField {
    pub fn new(
        field: impl Into<std::borrow::Cow<'static, str>>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Checks a line of text as `/openapi.json` describes it: 1..=`max_chars`
/// characters as sent, something visible, no control characters.
pub fn check_line(field: &'static str, raw: &str, max_chars: usize) -> Result<(), InvalidField> {
    let chars = raw.chars().count();
    if chars == 0 || chars > max_chars || raw.trim().is_empty() {
        return Err(InvalidField::new(
            field,
            format!("must be 1..={max_chars} characters with something visible"),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(InvalidField::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Checks a token made of `[A-Za-z0-9._:@-]`, 1..=max bytes.
fn check_token(field: &'static str, raw: &str, max_len: usize) -> Result<(), InvalidField> {
    if raw.is_empty() {
        return Err(InvalidField::new(field, "must not be empty"));
    }
    if raw.len() > max_len {
        return Err(InvalidField::new(
            field,
            format!("must be at most {max_len} bytes"),
        ));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
    {
        return Err(InvalidField::new(
            field,
            "may contain only letters, digits and . _ : @ -",
        ));
    }
    Ok(())
}

macro_rules! token_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, InvalidField> {
                check_token($field, raw, Self::MAX_LEN)?;
                Ok(Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

token_type!(
    /// Seller-chosen SKU code, unique across the marketplace (it names `/v1/skus/{sku}`).
    SkuCode,
    "sku",
    64
);
token_type!(
    /// Who is buying: the account id of the bearer token.
    BuyerId,
    "buyer",
    128
);
token_type!(
    /// Which store (tenant) owns a product, as products and SKUs record it: a
    /// `TenantId`'s text for a store, or any token (benches, tests).
    TenantKey,
    "tenant",
    128
);
token_type!(
    /// Name of a warehouse holding stock of a SKU.
    WarehouseId,
    "warehouse",
    64
);

impl BuyerId {
    /// The buyer id of an account: its id as a hyphenated UUID (always valid).
    pub fn of_account(id: UserId) -> Self {
        Self(super::identity::id_text(id))
    }
}

impl TenantKey {
    /// The owner key of a store's products: its id as a hyphenated UUID (always valid).
    pub fn of_store(id: TenantId) -> Self {
        Self(super::identity::id_text(id))
    }
}

/// Client-chosen `Idempotency-Key`: printable ASCII, 1..=255 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(InvalidField::new(
                "Idempotency-Key",
                format!("must be 1..={} bytes", Self::MAX_LEN),
            ));
        }
        if !raw.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(InvalidField::new(
                "Idempotency-Key",
                "must be printable ASCII without spaces",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_id_round_trips_through_its_text_form() {
        let id = ReservationId {
            sku: SkuId(0xdead_beef),
            seq: 42,
        };
        let text = id.to_string();
        assert_eq!(text, "00000000deadbeef000000000000002a");
        assert_eq!(ReservationId::parse(&text), Some(id));
        let widest = ReservationId {
            sku: SkuId(u64::MAX),
            seq: 0x0123_4567_89ab_cdef,
        };
        assert_eq!(widest.to_string(), "ffffffffffffffff0123456789abcdef");
        assert_eq!(ReservationId::parse(&widest.to_string()), Some(widest));
    }

    #[test]
    fn reservation_id_rejects_wrong_length_and_non_hex() {
        assert_eq!(ReservationId::parse("abc"), None);
        assert_eq!(ReservationId::parse(&"g".repeat(32)), None);
        assert_eq!(ReservationId::parse(&"+".repeat(32)), None);
    }

    #[test]
    fn tokens_reject_empty_long_and_odd_characters() {
        assert!(SkuCode::parse("TEE-RED_L.1").is_ok());
        assert!(SkuCode::parse("").is_err());
        assert!(SkuCode::parse(&"a".repeat(65)).is_err());
        assert!(SkuCode::parse("a b").is_err());
        assert!(SkuCode::parse("ä").is_err());
        assert!(BuyerId::parse("buyer:42@shop").is_ok());
        let account = BuyerId::of_account(UserId(u128::MAX - 1));
        assert_eq!(BuyerId::parse(account.as_str()), Ok(account));
    }

    #[test]
    fn uuid_ids_round_trip_through_the_text_the_api_writes() {
        let raw = 0x0193_6b2e_7d2f_7000_8000_0000_0000_0001u128;
        let text = "01936b2e-7d2f-7000-8000-000000000001";
        assert_eq!(UserId(raw).to_string(), text);
        assert_eq!(UserId::parse(text), Some(UserId(raw)));
        assert_eq!(OrderId::parse(text), Some(OrderId(raw)));
        assert_eq!(
            DropId(raw).to_string(),
            crate::domain::identity::id_text(raw)
        );
        assert_eq!(
            TenantId(raw).to_string(),
            uuid::Uuid::from_u128(raw).to_string()
        );
        assert_eq!(TenantKey::of_store(TenantId(raw)).as_str(), text);
        assert_eq!(BuyerId::of_account(UserId(raw)).as_str(), text);
        for id in [0, 1, u128::MAX] {
            assert_eq!(OrderId::parse(&OrderId(id).to_string()), Some(OrderId(id)));
        }
        assert_eq!(
            serde_json::to_string(&DropId(raw)).unwrap(),
            format!("\"{text}\"")
        );
    }

    #[test]
    fn uuid_ids_archive_to_the_bytes_of_the_bare_u128() {
        use rkyv::rancor::Error;
        let raw = 0x0193_6b2e_7d2f_7000_8000_0000_0000_0001u128;
        let bare = rkyv::to_bytes::<Error>(&raw).unwrap();
        assert_eq!(rkyv::to_bytes::<Error>(&UserId(raw)).unwrap()[..], bare[..]);
        assert_eq!(
            rkyv::to_bytes::<Error>(&OrderId(raw)).unwrap()[..],
            bare[..]
        );
        let bare = rkyv::to_bytes::<Error>(&(Some(raw), vec![raw, 7])).unwrap();
        let typed =
            rkyv::to_bytes::<Error>(&(Some(TenantId(raw)), vec![DropId(raw), DropId(7)])).unwrap();
        assert_eq!(typed[..], bare[..]);
    }

    #[test]
    fn uuid_ids_reject_anything_but_a_hyphenated_uuid() {
        for bad in [
            "",
            "garbage",
            "01936b2e7d2f70008000000000000001",
            "{01936b2e-7d2f-7000-8000-000000000001}",
            "urn:uuid:01936b2e-7d2f-7000-8000-000000000001",
            "01936b2e-7d2f-7000-8000-00000000000g",
            " 01936b2e-7d2f-7000-8000-00000000001",
        ] {
            assert_eq!(UserId::parse(bad), None, "{bad:?} accepted");
            assert_eq!(TenantId::parse(bad), None, "{bad:?} accepted");
        }
    }

    #[test]
    fn idempotency_key_accepts_printable_ascii_only() {
        assert!(IdempotencyKey::parse("k-1/2=3").is_ok());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("").is_err());
    }
}
