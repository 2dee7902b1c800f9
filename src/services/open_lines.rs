//! Orders not yet settled, in all and per SKU of their lines: the orders
//! service counts them (and refuses new orders past `orders.active_max`);
//! the catalog refuses to remove a variant that an unsettled order may
//! still reserve, commit, release or restock. One entry per SKU with such
//! an order, dropped at zero.

use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

use crate::domain::order::Order;
use crate::domain::SkuId;

#[derive(Debug, Default)]
pub struct OpenLines {
    orders: AtomicUsize,
    per_sku: DashMap<SkuId, u32>,
}

impl OpenLines {
    /// `order` is unsettled (placed, recovered unsettled, or reopened).
    pub fn opened(&self, order: &Order) {
        self.orders.fetch_add(1, Ordering::Relaxed);
        for line in &order.lines {
            *self.per_sku.entry(SkuId(line.sku)).or_default() += 1;
        }
    }

    /// `order`, counted by `opened`, is settled.
    pub fn settled(&self, order: &Order) {
        let _ = self
            .orders
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        for line in &order.lines {
            self.per_sku.remove_if_mut(&SkuId(line.sku), |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
    }

    /// Unsettled orders.
    pub fn orders(&self) -> usize {
        self.orders.load(Ordering::Relaxed)
    }

    /// Unsettled orders with a line of `sku` (an order with two lines of it
    /// counts twice).
    pub fn of(&self, sku: SkuId) -> u32 {
        self.per_sku.get(&sku).map_or(0, |n| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::{NewOrder, OrderLine};
    use crate::domain::{OrderId, TenantId, UserId};

    fn order_of(skus: &[u64]) -> Order {
        let lines = skus
            .iter()
            .map(|&sku| OrderLine {
                sku,
                code: format!("S{sku}"),
                seller: TenantId(1),
                quantity: 1,
                unit_price_minor: 100,
                reservations: Vec::new(),
                adopted: false,
            })
            .collect();
        Order::new(NewOrder {
            id: OrderId(9),
            buyer: UserId(7),
            currency: "EUR".into(),
            lines,
            shipping_address: "1 Main St".into(),
            payment_method: "pm_card_visa".into(),
            now_ms: 1_000,
            payment_deadline_ms: 61_000,
            idempotency: None,
            charges: Vec::new(),
        })
    }

    #[test]
    fn counts_follow_orders_until_they_settle_and_empty_entries_go() {
        let open = OpenLines::default();
        let (a, b) = (order_of(&[1, 2]), order_of(&[2]));
        open.opened(&a);
        open.opened(&b);
        assert_eq!(
            (open.orders(), open.of(SkuId(1)), open.of(SkuId(2))),
            (2, 1, 2)
        );
        open.settled(&a);
        assert_eq!(
            (open.orders(), open.of(SkuId(1)), open.of(SkuId(2))),
            (1, 0, 1)
        );
        assert!(!open.per_sku.contains_key(&SkuId(1)), "no entry at zero");
        open.settled(&b);
        assert_eq!((open.orders(), open.per_sku.len()), (0, 0));
    }
}
