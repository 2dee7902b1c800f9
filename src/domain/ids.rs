//! Identifiers and validated names that cross the HTTP edge.
//! An invalid value cannot exist past `parse`; internal ids are plain integers.

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
    pub fn of_account(id: u128) -> Self {
        Self(uuid::Uuid::from_u128(id).hyphenated().to_string())
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
        let account = BuyerId::of_account(u128::MAX - 1);
        assert_eq!(BuyerId::parse(account.as_str()), Ok(account));
    }

    #[test]
    fn idempotency_key_accepts_printable_ascii_only() {
        assert!(IdempotencyKey::parse("k-1/2=3").is_ok());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("").is_err());
    }
}
