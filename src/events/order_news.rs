//! What an order's moves tell the outside: a frame to the buyer's live
//! connections on every change, and, for the states worth announcing, an
//! e-mail to the buyer and a webhook to each seller, queued in the notifier
//! under keys that make a repeat a no-op.

use std::sync::Arc;

use serde_json::json;

use crate::actors::orders::OrderListener;
use crate::clock::rfc3339_ms;
use crate::domain::identity::id_text;
use crate::domain::order::{Order, OrderState};
use crate::events::hub::{Frame, Hub};
use crate::events::notify::{Channel, Notifier};
use crate::services::identity::DirectoryService;

/// The production `OrderListener`.
pub struct OrderNews {
    pub directory: Arc<DirectoryService>,
    pub notifier: Arc<Notifier>,
    pub hub: Arc<Hub>,
}

impl OrderListener for OrderNews {
    fn reached(&self, order: &Order, state: OrderState, at_ms: u64) {
        announce(self, order, state, at_ms);
    }

    fn changed(&self, o: &Order) {
        let frame = Frame::from(
            json!({
                "type": "order",
                "order_id": id_text(o.id),
                "state": o.state.as_str(),
                "at": rfc3339_ms(o.history.last().map_or(0, |(_, at)| *at)),
            })
            .to_string(),
        );
        self.hub.tell_users(&[o.buyer], &frame);
    }
}

/// The event a state announces to the buyer's e-mail and the sellers' webhooks.
fn event_of(state: OrderState) -> Option<&'static str> {
    Some(match state {
        OrderState::PaymentPending => "order.placed",
        OrderState::Paid => "order.paid",
        OrderState::Shipped => "order.shipped",
        OrderState::Delivered => "order.delivered",
        OrderState::Refunded => "order.refunded",
        _ => return None,
    })
}

/// Queues the messages that announce `state` (reached at `at_ms`): e-mail to
/// the buyer, a webhook to each seller. Each message has a key made of the
/// order, the event and the recipient, so announcing again queues nothing.
fn announce(news: &OrderNews, o: &Order, state: OrderState, at_ms: u64) {
    let Some(event) = event_of(state) else {
        return;
    };
    let id = id_text(o.id);
    let total = format!(
        "{}.{:02} {}",
        o.total_minor() / 100,
        o.total_minor() % 100,
        o.currency
    );
    if let Some(buyer) = news.directory.user(o.buyer) {
        news.notifier.enqueue(
            format!("{id}/{event}/email"),
            Channel::Email,
            buyer.email,
            event,
            None,
            format!("Your order {id} is {}", state.as_str().replace('_', " ")),
            format!(
                "Order {id}\nState: {}\nTotal: {total}\nShipping to: {}\n",
                state.as_str(),
                o.shipping_address
            ),
        );
    }
    for seller in o.sellers() {
        let Some(tenant) = news.directory.tenant(seller) else {
            continue;
        };
        if tenant.webhook_url.is_empty() {
            continue;
        }
        let lines: Vec<serde_json::Value> = o
            .lines
            .iter()
            .filter(|l| l.seller == seller)
            .map(|l| json!({"sku": l.code, "quantity": l.quantity, "unit_price": l.unit_price_minor}))
            .collect();
        let body = json!({
            "event": event,
            "order_id": id,
            "state": state.as_str(),
            "store_id": id_text(seller),
            "lines": lines,
            "total": o.seller_total_minor(seller),
            "currency": o.currency,
            "at": rfc3339_ms(at_ms),
        });
        news.notifier.enqueue(
            format!("{id}/{event}/webhook/{}", id_text(seller)),
            Channel::Webhook,
            tenant.webhook_url,
            event,
            Some(seller),
            String::new(),
            body.to_string(),
        );
    }
}
