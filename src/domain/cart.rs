//! Carts as plain Rust: items from any number of sellers, each with the
//! price the buyer saw when adding it, a time to live that every use
//! extends, and the stock hold a drop SKU takes when it is added.

use super::ids::{InvalidField, TenantId};

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CartItem {
    pub sku: u64,
    pub code: String,
    pub seller: TenantId,
    pub quantity: u32,
    /// The price when the item was added (or last confirmed), minor units.
    pub unit_price_minor: i64,
    pub currency: String,
    pub added_at_ms: u64,
    /// Drop SKUs are held from the moment they are added, one hold per
    /// increase: `(sequence, units, expires_at_ms)`.
    pub holds: Vec<(u64, u32, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Cart {
    /// The account (or the guest cart token) it belongs to.
    pub owner: u128,
    pub guest: bool,
    pub items: Vec<CartItem>,
    pub updated_at_ms: u64,
    pub expires_at_ms: u64,
}

/// A price that changed since the item was added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceChange {
    pub code: String,
    pub was_minor: i64,
    pub now_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    #[error("the cart holds at most {0} different items")]
    TooManyItems(usize),
    #[error("the cart would hold {total} of {sku}; at most {max} of one SKU")]
    LineFull { sku: String, total: u64, max: u32 },
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    #[error("the cart holds no {0}")]
    NoSuchItem(String),
    #[error("the cart is empty")]
    Empty,
    #[error("{sku} is priced in {currency}, but the cart holds items priced in {cart_currency}: one cart, one currency")]
    CurrencyMismatch {
        sku: String,
        currency: String,
        cart_currency: String,
    },
}

impl Cart {
    pub fn new(owner: u128, guest: bool, now_ms: u64, ttl_ms: u64) -> Self {
        Self {
            owner,
            guest,
            items: Vec::new(),
            updated_at_ms: now_ms,
            expires_at_ms: now_ms + ttl_ms,
        }
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// Every use keeps the cart another `ttl_ms`.
    pub fn touch(&mut self, now_ms: u64, ttl_ms: u64) {
        self.updated_at_ms = now_ms;
        self.expires_at_ms = now_ms + ttl_ms;
    }

    pub fn item(&self, code: &str) -> Option<&CartItem> {
        self.items.iter().find(|i| i.code == code)
    }

    /// The currency the cart's items are priced in, if it holds any.
    pub fn currency(&self) -> Option<&str> {
        self.items.first().map(|i| i.currency.as_str())
    }

    /// Whether an item of SKU `code` priced in `currency` may join the cart:
    /// one cart, one currency (checkout charges one amount).
    pub fn accepts_currency(&self, code: &str, currency: &str) -> Result<(), CartError> {
        match self.currency() {
            Some(mine) if mine != currency => Err(CartError::CurrencyMismatch {
                sku: code.to_owned(),
                currency: currency.to_owned(),
                cart_currency: mine.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Adds `item`, or adds its quantity to the same SKU already in the cart.
    /// Answers the line's new quantity.
    pub fn add(
        &mut self,
        item: CartItem,
        items_max: usize,
        quantity_max: u32,
    ) -> Result<u32, CartError> {
        if let Some(line) = self.items.iter_mut().find(|i| i.sku == item.sku) {
            let total = line.quantity.saturating_add(item.quantity);
            if total > quantity_max {
                return Err(CartError::LineFull {
                    sku: item.code,
                    total: u64::from(line.quantity) + u64::from(item.quantity),
                    max: quantity_max,
                });
            }
            line.quantity = total;
            return Ok(total);
        }
        if self.items.len() >= items_max {
            return Err(CartError::TooManyItems(items_max));
        }
        self.accepts_currency(&item.code, &item.currency)?;
        let quantity = item.quantity;
        self.items.push(item);
        Ok(quantity)
    }

    pub fn set_quantity(&mut self, code: &str, quantity: u32) -> Result<&mut CartItem, CartError> {
        let line = self
            .items
            .iter_mut()
            .find(|i| i.code == code)
            .ok_or_else(|| CartError::NoSuchItem(code.to_owned()))?;
        line.quantity = quantity;
        Ok(line)
    }

    pub fn remove(&mut self, code: &str) -> Result<CartItem, CartError> {
        let index = self
            .items
            .iter()
            .position(|i| i.code == code)
            .ok_or_else(|| CartError::NoSuchItem(code.to_owned()))?;
        Ok(self.items.remove(index))
    }

    /// Compares the snapshot prices with `current` (by SKU id) and takes the
    /// current ones; answers what changed.
    pub fn reprice(&mut self, current: impl Fn(u64) -> Option<i64>) -> Vec<PriceChange> {
        let mut changes = Vec::new();
        for item in &mut self.items {
            if let Some(now) = current(item.sku) {
                if now != item.unit_price_minor {
                    changes.push(PriceChange {
                        code: item.code.clone(),
                        was_minor: item.unit_price_minor,
                        now_minor: now,
                    });
                    item.unit_price_minor = now;
                }
            }
        }
        changes
    }

    /// Takes a guest cart's items (those without holds: holds belong to the
    /// guest) into this one, within the limits; answers how many were taken.
    pub fn merge(&mut self, guest: &Cart, items_max: usize, quantity_max: u32) -> usize {
        let mut taken = 0;
        for item in guest.items.iter().filter(|i| i.holds.is_empty()) {
            if self.add(item.clone(), items_max, quantity_max).is_ok() {
                taken += 1;
            }
        }
        taken
    }

    pub fn total_minor(&self) -> i64 {
        self.items
            .iter()
            .map(|i| i.unit_price_minor * i64::from(i.quantity))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(sku: u64, quantity: u32, price: i64) -> CartItem {
        CartItem {
            sku,
            code: format!("SKU-{sku}"),
            seller: TenantId(u128::from(sku % 2)),
            quantity,
            unit_price_minor: price,
            currency: "EUR".into(),
            added_at_ms: 0,
            holds: Vec::new(),
        }
    }

    #[test]
    fn adding_the_same_sku_adds_up_within_the_limits() {
        let mut cart = Cart::new(1, false, 0, 1_000);
        assert_eq!(cart.add(item(1, 2, 100), 2, 5), Ok(2));
        assert_eq!(cart.add(item(1, 3, 100), 2, 5), Ok(5));
        assert!(matches!(
            cart.add(item(1, 1, 100), 2, 5),
            Err(CartError::LineFull {
                total: 6,
                max: 5,
                ..
            })
        ));
        assert_eq!(cart.add(item(2, 1, 50), 2, 5), Ok(1));
        assert_eq!(
            cart.add(item(3, 1, 50), 2, 5),
            Err(CartError::TooManyItems(2))
        );
        assert_eq!(cart.total_minor(), 550);
        assert_eq!(
            cart.remove("SKU-9"),
            Err(CartError::NoSuchItem("SKU-9".into()))
        );
        cart.remove("SKU-1").unwrap();
        assert_eq!(cart.items.len(), 1);
    }

    #[test]
    fn every_use_extends_the_time_to_live() {
        let mut cart = Cart::new(1, true, 0, 1_000);
        assert!(!cart.is_expired(999));
        cart.touch(900, 1_000);
        assert!(!cart.is_expired(1_899));
        assert!(cart.is_expired(1_900));
    }

    #[test]
    fn repricing_reports_and_takes_changed_prices() {
        let mut cart = Cart::new(1, false, 0, 1_000);
        cart.add(item(1, 1, 100), 9, 9).unwrap();
        cart.add(item(2, 1, 200), 9, 9).unwrap();
        let changes = cart.reprice(|sku| Some(if sku == 1 { 120 } else { 200 }));
        assert_eq!(
            changes,
            vec![PriceChange {
                code: "SKU-1".into(),
                was_minor: 100,
                now_minor: 120
            }]
        );
        assert!(cart
            .reprice(|sku| Some(if sku == 1 { 120 } else { 200 }))
            .is_empty());
    }

    #[test]
    fn a_guest_cart_merges_without_its_holds() {
        let mut guest = Cart::new(9, true, 0, 1_000);
        guest.add(item(1, 1, 100), 9, 9).unwrap();
        let mut held = item(2, 1, 100);
        held.holds = vec![(4, 1, 500)];
        guest.add(held, 9, 9).unwrap();
        let mut mine = Cart::new(1, false, 0, 1_000);
        mine.add(item(1, 2, 100), 9, 9).unwrap();
        assert_eq!(mine.merge(&guest, 9, 9), 1);
        assert_eq!(mine.item("SKU-1").unwrap().quantity, 3);
        assert!(mine.item("SKU-2").is_none());
    }
}
