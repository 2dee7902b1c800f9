//! Order routes: a shopper places an order (its saga runs on), reads it,
//! cancels it, pays again after a decline and asks for a return; a seller
//! moves its part through fulfilment; the payment provider's webhooks land
//! here, verified and reconciled with each order's saga.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::actors::orders::{ItemRequest, OrderDraft, Orders};
use crate::auth::Caller;
use crate::clock::rfc3339_ms;
use crate::domain::identity::id_text;
use crate::domain::order::{status_text, Order, OrderState};
use crate::domain::policy::{self, OrderView};
use crate::domain::{stable_hash, InvalidField, OrderId, ReservationId, SkuCode, SkuId, TenantId};
use crate::payments::signature;
use crate::services::identity::actor_of_caller;
use crate::services::identity::AuditDraft;

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{AppState, Authenticated, Correlation, IdempotencyHeader, Live, Shopper};
use super::input::{Json, Query};
use super::tenants::page_limit;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemBody {
    #[schema(schema_with = super::schemas::sku_code)]
    pub sku: String,
    /// 1..=`orders.quantity_max` (100).
    #[schema(minimum = 1, maximum = 100)]
    pub quantity: u32,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrderBody {
    /// 1..=`orders.lines_max` (50) lines; a SKU listed twice is 422.
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<ItemBody>,
    #[schema(schema_with = super::schemas::shipping_address)]
    pub shipping_address: String,
    /// A payment method token of the provider (sandbox: `pm_card_visa`,
    /// `pm_card_declined`, `pm_async`, `pm_no_response`, ...).
    #[schema(schema_with = super::schemas::payment_method)]
    pub payment_method: String,
    /// The shipping method picked per store: store id → method code (one
    /// of the store's `shipping.methods`). A store left out ships by its
    /// first method; a store that lists none ships free. A store with no
    /// line in the order, or a method its store does not list, is 422
    /// (`shipping.<store id>`).
    #[serde(default)]
    #[schema(schema_with = super::schemas::shipping_choices)]
    pub shipping: BTreeMap<String, String>,
}

/// Parses the shipping choices of a checkout: each key a store id, each
/// value a method code; what the store lists is checked when the order is
/// priced.
pub fn shipping_choices(
    raw: &BTreeMap<String, String>,
) -> Result<Vec<(TenantId, String)>, ApiError> {
    if raw.len() > SHIPPING_CHOICES_MAX {
        return Err(ApiError::invalid(vec![InvalidField::new(
            "shipping",
            format!("may name at most {SHIPPING_CHOICES_MAX} stores"),
        )]));
    }
    let mut errors = Vec::new();
    let mut choices = Vec::with_capacity(raw.len());
    for (store, code) in raw {
        match TenantId::parse(store) {
            // Ids parse in either case: two spellings of one store are one too many.
            Some(id) if choices.iter().any(|(seen, _)| *seen == id) => errors.push(
                InvalidField::new(format!("shipping.{store}"), "names a store already named"),
            ),
            Some(id) if !code.is_empty() && code.len() <= 32 => choices.push((id, code.clone())),
            Some(_) => errors.push(InvalidField::new(
                format!("shipping.{store}"),
                "must be a method code of 1..=32 characters",
            )),
            None => errors.push(InvalidField::new(
                format!("shipping.{store}"),
                "is not a store id",
            )),
        }
    }
    if errors.is_empty() {
        Ok(choices)
    } else {
        Err(ApiError::invalid(errors))
    }
}

/// The most stores one checkout may pick shipping for (an order has at
/// most `orders.lines_max` lines, so at most as many stores).
pub const SHIPPING_CHOICES_MAX: usize = 50;

/// Adds the shipping choices to a request fingerprint's parts.
pub fn fingerprint_shipping(parts: &mut Vec<Vec<u8>>, choices: &[(TenantId, String)]) {
    for (store, code) in choices {
        parts.push([&store.0.to_le_bytes()[..], code.as_bytes()].concat());
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StateAtBody {
    pub state: String,
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LineBody {
    pub sku: String,
    pub seller_id: String,
    pub quantity: u32,
    /// Minor units of the order's currency, as agreed at checkout.
    pub unit_price: i64,
    /// The stock holds of this line, once reserved.
    pub reservation_ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubOrderBody {
    pub seller_id: String,
    /// paid, packed, shipped, delivered, return_requested, refunded, closed, ...
    pub state: String,
    pub tracking: Option<String>,
    /// Its lines' prices times quantities.
    pub subtotal: i64,
    /// The shipping method picked (none: the store lists none).
    pub shipping_method: Option<String>,
    /// What shipping costs (0 when free over the store's threshold).
    pub shipping: i64,
    /// The store's rate in basis points, and the tax it makes of subtotal
    /// plus shipping (rounded half up).
    pub tax_rate_bp: u32,
    pub tax: i64,
    /// The tax is inside the prices (`prices_include_tax`), not added.
    pub tax_included: bool,
    /// What the buyer pays this store: subtotal + shipping (+ tax when not included).
    pub total: i64,
    pub refunded: i64,
    pub return_reason: Option<String>,
    pub history: Vec<StateAtBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentBody {
    pub attempt: u32,
    pub method: String,
    /// none, pending, unknown, authorized, declined, captured, voided, refunded
    pub status: String,
    pub decline_code: Option<String>,
    pub captured: i64,
    pub refunded: i64,
    pub deadline: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SagaEntryBody {
    pub step: String,
    /// started, completed or failed
    pub phase: String,
    pub at: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderBody {
    pub order_id: String,
    pub buyer_id: String,
    #[schema(example = "payment_pending")]
    pub state: String,
    pub currency: String,
    /// Every line's price times quantity.
    pub subtotal: i64,
    /// Shipping of every store.
    pub shipping: i64,
    /// The tax in `total`, added or included.
    pub tax: i64,
    /// What the buyer pays: the sum of the sub-orders' totals.
    pub total: i64,
    pub lines: Vec<LineBody>,
    pub sub_orders: Vec<SubOrderBody>,
    pub payment: PaymentBody,
    pub shipping_address: String,
    /// rejected, buyer_cancelled, payment_timeout or stock_lost (cancelled orders).
    pub cancel_reason: Option<String>,
    /// Why the stock could not be held (rejected orders): `<code>: <sku>`,
    /// the code being the API error code the same refusal answers on
    /// `POST /v1/skus/{sku}/reservations` (e.g. `out_of_stock: TEE-M`), or
    /// `reservation_refused` for any other.
    pub rejection: Option<String>,
    /// The saga step under way, if any.
    pub pending_step: Option<String>,
    pub history: Vec<StateAtBody>,
    pub saga: Vec<SagaEntryBody>,
    pub created_at: String,
}

fn states(history: &[(OrderState, u64)]) -> Vec<StateAtBody> {
    history
        .iter()
        .map(|(s, at)| StateAtBody {
            state: s.as_str().to_owned(),
            at: rfc3339_ms(*at),
        })
        .collect()
}

fn json_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl OrderBody {
    /// The order as `seller` sees it (its own part only), or whole (`None`).
    pub fn new(order: &Order, seller: Option<TenantId>) -> Self {
        let mine = |s: TenantId| seller.is_none_or(|me| me == s);
        Self {
            order_id: id_text(order.id),
            buyer_id: id_text(order.buyer),
            state: order.state.as_str().to_owned(),
            currency: order.currency.clone(),
            subtotal: order.subtotal_minor(),
            shipping: order.shipping_minor(),
            tax: order.tax_minor(),
            total: order.total_minor(),
            lines: order
                .lines
                .iter()
                .filter(|l| mine(l.seller))
                .map(|l| LineBody {
                    sku: l.code.clone(),
                    seller_id: id_text(l.seller),
                    quantity: l.quantity,
                    unit_price: l.unit_price_minor,
                    reservation_ids: l
                        .reservations
                        .iter()
                        .map(|seq| {
                            ReservationId {
                                sku: SkuId(l.sku),
                                seq: *seq,
                            }
                            .to_string()
                        })
                        .collect(),
                })
                .collect(),
            sub_orders: order
                .sub_orders
                .iter()
                .filter(|s| mine(s.seller))
                .map(|s| SubOrderBody {
                    seller_id: id_text(s.seller),
                    state: s.state.as_str().to_owned(),
                    tracking: s.tracking.clone(),
                    subtotal: s.charges.subtotal_minor,
                    shipping_method: s.charges.shipping_method.clone(),
                    shipping: s.charges.shipping_minor,
                    tax_rate_bp: s.charges.tax_rate_bp,
                    tax: s.charges.tax_minor,
                    tax_included: s.charges.tax_included,
                    total: s.charges.total_minor(),
                    refunded: s.refunded_minor,
                    return_reason: s.return_reason.clone(),
                    history: states(&s.history),
                })
                .collect(),
            payment: PaymentBody {
                attempt: order.payment.attempt,
                method: order.payment.method.clone(),
                status: status_text(order.payment.status).to_owned(),
                decline_code: order.payment.decline_code.clone(),
                captured: order.payment.captured_minor,
                refunded: order.payment.refunded_minor,
                deadline: rfc3339_ms(order.payment_deadline_ms),
            },
            shipping_address: order.shipping_address.clone(),
            cancel_reason: order.cancel_reason.map(|r| json_name(&r)),
            rejection: order.rejection.clone(),
            pending_step: order.pending.map(|s| s.as_str().to_owned()),
            history: states(&order.history),
            saga: order
                .saga_log
                .iter()
                .map(|e| SagaEntryBody {
                    step: e.step.as_str().to_owned(),
                    phase: json_name(&e.phase),
                    at: rfc3339_ms(e.at_ms),
                    detail: e.detail.clone(),
                })
                .collect(),
            created_at: rfc3339_ms(order.created_at_ms),
        }
    }
}

fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(raw).ok_or_else(|| ApiError::new(ErrorKind::OrderNotFound, "no such order"))
}

/// `Prefer: wait=N` (RFC 7240): wait up to N seconds for the saga to settle.
fn preferred_wait(req: &HttpRequest, max_ms: u64) -> Option<Duration> {
    let prefer = req.headers().get("prefer")?.to_str().ok()?;
    let seconds = prefer
        .split(',')
        .filter_map(|p| p.trim().strip_prefix("wait="))
        .find_map(|v| v.trim().parse::<u64>().ok())?;
    Some(Duration::from_millis((seconds * 1000).min(max_ms)))
}

/// Checks the shape of a new order against `[orders]`.
pub fn validate_order(
    state: &AppState,
    items: &[(String, u32)],
    address: &str,
    method: &str,
) -> Result<Vec<ItemRequest>, ApiError> {
    let limits = &state.config.orders;
    let mut errors = Vec::new();
    if items.is_empty() || items.len() > limits.lines_max {
        errors.push(InvalidField::new(
            "items",
            format!("must hold 1..={} lines", limits.lines_max),
        ));
    }
    let mut parsed = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::new();
    for (sku, quantity) in items {
        match SkuCode::parse(sku) {
            Ok(code) => {
                if !seen.insert(code.as_str().to_owned()) {
                    errors.push(InvalidField::new("items", format!("{sku} appears twice")));
                }
                parsed.push(ItemRequest {
                    sku: code,
                    quantity: *quantity,
                    reservations: Vec::new(),
                });
            }
            Err(e) => errors.push(InvalidField::new("items.sku", e.reason)),
        }
        if *quantity == 0 || *quantity > limits.quantity_max {
            errors.push(InvalidField::new(
                "items.quantity",
                format!("must be 1..={}", limits.quantity_max),
            ));
        }
    }
    errors.extend(delivery_errors(state, address, method));
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(ApiError::invalid(errors))
    }
}

/// What is wrong with a shipping address and a payment method (orders and checkout).
pub fn delivery_errors(state: &AppState, address: &str, method: &str) -> Vec<InvalidField> {
    let mut errors = Vec::new();
    let max = state.config.orders.shipping_address_max_chars;
    if let Err(error) = crate::domain::ids::check_line("shipping_address", address, max) {
        errors.push(error);
    }
    if !valid_method(method) {
        errors.push(method_error());
    }
    errors
}

fn method_error() -> InvalidField {
    InvalidField::new(
        "payment_method",
        "must be a payment method token: pm_ followed by 1..=60 letters, digits or _",
    )
}

pub fn valid_method(method: &str) -> bool {
    method.strip_prefix("pm_").is_some_and(|rest| {
        (1..=60).contains(&rest.len())
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// Answers a placed (or replayed) order: 202 while the saga runs, with
/// `Location`; `Prefer: wait=N` waits for the saga first.
pub async fn placed(
    orders: &std::sync::Arc<Orders>,
    req: &HttpRequest,
    state: &AppState,
    order: Order,
    replayed: bool,
) -> Result<HttpResponse, ApiError> {
    let order = match preferred_wait(req, state.config.orders.reply_wait_ms) {
        Some(wait) => orders.settle(order.id, wait).await?,
        None => order,
    };
    Ok(HttpResponse::Accepted()
        .insert_header((
            header::LOCATION,
            format!("/v1/orders/{}", id_text(order.id)),
        ))
        .insert_header((
            "Idempotent-Replayed",
            if replayed { "true" } else { "false" },
        ))
        .json(OrderBody::new(&order, None)))
}

/// Place an order directly (without a cart). The saga runs on: it holds
/// every line's stock (all or nothing), authorises and captures the payment,
/// then commits the stock; the order ends `paid` or `cancelled`. Answers 202
/// once the order is durable; `Prefer: wait=N` waits up to N s for the saga.
/// An `Idempotency-Key` makes a retry answer the same order.
#[utoipa::path(
    post, path = "/v1/orders", tag = "orders",
    request_body = NewOrderBody,
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[!-~]{1,255}$", description = "same key + same body: the first answer again; same key + another body: 409"),
        ("Prefer" = Option<String>, Header, nullable = false, description = "wait=N: wait up to N seconds for the saga"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 202, body = OrderBody, headers(("Location" = String), ("Idempotent-Replayed" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "sku_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "idempotency_key_reused", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_order(
    req: HttpRequest,
    shopper: Shopper,
    engine: Live,
    state: web::Data<AppState>,
    key: IdempotencyHeader,
    body: Json<NewOrderBody>,
) -> Result<HttpResponse, ApiError> {
    let items: Vec<(String, u32)> = body
        .items
        .iter()
        .map(|i| (i.sku.clone(), i.quantity))
        .collect();
    let parsed = validate_order(&state, &items, &body.shipping_address, &body.payment_method)?;
    let shipping = shipping_choices(&body.shipping)?;
    state
        .admission
        .charge_buyer(shopper.caller.user, engine.0.clock().now_ms())?;
    let fingerprint = {
        let mut parts: Vec<Vec<u8>> = items
            .iter()
            .map(|(s, q)| [s.as_bytes(), &q.to_le_bytes()].concat())
            .collect();
        parts.push(body.shipping_address.as_bytes().to_vec());
        parts.push(body.payment_method.as_bytes().to_vec());
        fingerprint_shipping(&mut parts, &shipping);
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        stable_hash(&refs)
    };
    let draft = OrderDraft {
        buyer: shopper.caller.user,
        items: parsed,
        shipping_address: body.shipping_address.trim().to_owned(),
        payment_method: body.payment_method.clone(),
        idempotency: key.0.map(|k| (k.into_inner(), fingerprint)),
        shipping,
    };
    let orders = engine.0.orders();
    let (order, replayed) = orders.place(draft).await?;
    placed(orders, &req, &state, order, replayed).await
}

/// Who may read an order: its buyer, a seller of one of its parts (that part
/// only), or a platform admin.
fn reader_view(caller: &Caller, order: &Order) -> Option<OrderBody> {
    match policy::order_view(&caller.principal(), order.buyer, order.sellers())? {
        OrderView::Whole => Some(OrderBody::new(order, None)),
        OrderView::PartOf(tenant) => Some(OrderBody::new(order, Some(tenant))),
    }
}

/// An order with its parts, payment, state history and saga log.
#[utoipa::path(
    get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, format = Uuid)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = OrderBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "order_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_order(
    caller: Authenticated,
    engine: Live,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = order_id(&path)?;
    let order = engine.0.orders().get(id);
    order
        .as_ref()
        .and_then(|o| reader_view(&caller.0, o))
        .map(|body| HttpResponse::Ok().json(body))
        .ok_or_else(|| ApiError::new(ErrorKind::OrderNotFound, "no such order"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersQuery {
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPageBody {
    pub items: Vec<OrderBody>,
    pub next_cursor: Option<String>,
}

/// The caller's orders, newest first: a shopper's own; for a seller, its
/// store's (its parts only).
#[utoipa::path(
    get, path = "/v1/orders", tag = "orders",
    params(
        ("limit" = Option<usize>, Query, nullable = false, minimum = 1, maximum = 100, description = "1..=100, default 50"),
        ("cursor" = Option<String>, Query, nullable = false, format = Uuid, description = "next_cursor of the previous page"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, body = OrderPageBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_orders(
    caller: Authenticated,
    engine: Live,
    query: Query<OrdersQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(query.limit)?;
    let before = match &query.cursor {
        None => None,
        Some(raw) => {
            Some(OrderId::parse(raw).ok_or_else(|| InvalidField::new("cursor", "not a cursor"))?)
        }
    };
    let caller = caller.0;
    let seller = caller.principal().selling_for();
    let page = match seller {
        Some(tenant) => engine
            .0
            .orders()
            .page(None, Some(tenant), before, limit + 1),
        None => engine
            .0
            .orders()
            .page(Some(caller.user), None, before, limit + 1),
    };
    let more = page.len() > limit;
    let items: Vec<OrderBody> = page
        .iter()
        .take(limit)
        .map(|o| OrderBody::new(o, seller))
        .collect();
    let next_cursor = more
        .then(|| items.last().map(|o| o.order_id.clone()))
        .flatten();
    Ok(HttpResponse::Ok().json(OrderPageBody { items, next_cursor }))
}

/// A buyer's move on an order: done, audited with the states before and
/// after, answered with the order.
async fn buyer_action<F, Fut>(
    engine: &Live,
    shopper: &Shopper,
    correlation: Correlation,
    id: OrderId,
    action: &'static str,
    act: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(std::sync::Arc<Orders>) -> Fut,
    Fut: std::future::Future<Output = Result<Order, crate::actors::orders::OrdersError>>,
{
    let orders = engine.0.orders().clone();
    let before = orders.get(id).map(|o| o.state);
    let order = act(orders).await?;
    let before = before.unwrap_or(order.state);
    engine
        .0
        .directory()
        .audit(vec![AuditDraft::new(
            Some(actor_of_caller(&shopper.caller)),
            action,
            format!("order:{}", id_text(order.id)),
        )
        .before(serde_json::json!({"state": before.as_str()}).to_string())
        .after(serde_json::json!({"state": order.state.as_str()}).to_string())
        .correlation(correlation.0)])
        .await?;
    Ok(HttpResponse::Ok().json(OrderBody::new(&order, None)))
}

/// Cancel an order before it is paid: the payment is voided and every hold
/// released. Once paid (or while the capture runs) it is 409 `invalid_transition`.
#[utoipa::path(
    post, path = "/v1/orders/{id}/cancel", tag = "orders",
    params(("id" = String, Path, format = Uuid)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = OrderBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "invalid_transition", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_order(
    shopper: Shopper,
    engine: Live,
    correlation: Correlation,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = order_id(&path)?;
    let buyer = shopper.caller.user;
    buyer_action(
        &engine,
        &shopper,
        correlation,
        id,
        "order.cancel",
        |orders| async move { orders.cancel(id, buyer).await },
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayBody {
    #[schema(schema_with = super::schemas::payment_method)]
    pub payment_method: String,
}

/// Pay again after a decline, with another method: the order keeps its
/// holds and its place until the payment deadline.
#[utoipa::path(
    post, path = "/v1/orders/{id}/pay", tag = "orders",
    request_body = PayBody,
    params(("id" = String, Path, format = Uuid)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = OrderBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "invalid_transition: not waiting for a new payment", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn pay_order(
    shopper: Shopper,
    engine: Live,
    correlation: Correlation,
    path: web::Path<String>,
    body: Json<PayBody>,
) -> Result<HttpResponse, ApiError> {
    let id = order_id(&path)?;
    if !valid_method(&body.payment_method) {
        return Err(method_error().into());
    }
    let (buyer, method) = (shopper.caller.user, body.payment_method.clone());
    buyer_action(
        &engine,
        &shopper,
        correlation,
        id,
        "order.pay",
        |orders| async move { orders.pay(id, buyer, method).await },
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnBody {
    #[schema(schema_with = super::schemas::return_reason)]
    pub reason: String,
}

/// Ask to return every delivered part within the return window; each seller
/// then accepts (`refunded`, optionally restocking) or refuses (`closed`).
#[utoipa::path(
    post, path = "/v1/orders/{id}/returns", tag = "orders",
    request_body = ReturnBody,
    params(("id" = String, Path, format = Uuid)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = OrderBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "invalid_transition: nothing delivered within the window", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn request_return(
    shopper: Shopper,
    engine: Live,
    correlation: Correlation,
    path: web::Path<String>,
    body: Json<ReturnBody>,
) -> Result<HttpResponse, ApiError> {
    let id = order_id(&path)?;
    crate::domain::ids::check_line("reason", &body.reason, 500)?;
    let (buyer, reason) = (shopper.caller.user, body.reason.trim().to_owned());
    buyer_action(
        &engine,
        &shopper,
        correlation,
        id,
        "order.return_requested",
        |orders| async move { orders.request_return(id, buyer, reason).await },
    )
    .await
}

/// Where a seller moves its part of an order.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FulfilmentState {
    Packed,
    Shipped,
    Delivered,
    Refunded,
    Closed,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FulfillmentBody {
    /// packed, shipped, delivered; on a return: refunded (accept) or closed (refuse).
    pub state: FulfilmentState,
    /// The carrier's tracking number: 1..=100 printable characters.
    #[schema(pattern = "^[!-~]{1,100}$")]
    pub tracking: Option<String>,
    /// With `refunded`: put the returned units back in stock.
    #[serde(default)]
    pub restock: bool,
}

/// A seller moves its part of an order: paid → packed → shipped →
/// delivered, and answers a return with refunded or closed. Any other move
/// is 409 `invalid_transition` with the allowed ones.
#[utoipa::path(
    post, path = "/v1/orders/{id}/fulfillment", tag = "orders",
    request_body = FulfillmentBody,
    params(("id" = String, Path, format = Uuid)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = OrderBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "invalid_transition (with `allowed`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn fulfil(
    seller: super::extract::Seller,
    engine: Live,
    correlation: Correlation,
    path: web::Path<String>,
    body: Json<FulfillmentBody>,
) -> Result<HttpResponse, ApiError> {
    let id = order_id(&path)?;
    let mut errors = Vec::new();
    let to = Some(match body.state {
        FulfilmentState::Packed => OrderState::Packed,
        FulfilmentState::Shipped => OrderState::Shipped,
        FulfilmentState::Delivered => OrderState::Delivered,
        FulfilmentState::Refunded => OrderState::Refunded,
        FulfilmentState::Closed => OrderState::Closed,
    });
    if let Some(tracking) = &body.tracking {
        if tracking.is_empty()
            || tracking.len() > 100
            || !tracking.bytes().all(|b| b.is_ascii_graphic())
        {
            errors.push(InvalidField::new(
                "tracking",
                "must be 1..=100 printable characters",
            ));
        }
    }
    let Some(to) = to.filter(|_| errors.is_empty()) else {
        return Err(ApiError::invalid(errors));
    };
    let orders = engine.0.orders();
    let before = orders.get(id).and_then(|o| {
        o.sub_orders
            .iter()
            .find(|s| s.seller == seller.tenant)
            .map(|s| s.state)
    });
    let order = orders
        .fulfil(id, seller.tenant, to, body.tracking.clone(), body.restock)
        .await?;
    let after = order
        .sub_orders
        .iter()
        .find(|s| s.seller == seller.tenant)
        .map_or(order.state, |s| s.state);
    engine
        .0
        .directory()
        .audit(vec![AuditDraft::new(
            Some(actor_of_caller(&seller.caller)),
            "order.fulfillment",
            format!("order:{}", id_text(order.id)),
        )
        .tenant(Some(seller.tenant))
        .before(serde_json::json!({"state": before.map(|s| s.as_str())}).to_string())
        .after(serde_json::json!({"state": after.as_str(), "tracking": body.tracking}).to_string())
        .correlation(correlation.0)])
        .await?;
    Ok(HttpResponse::Ok().json(OrderBody::new(&order, Some(seller.tenant))))
}

#[derive(Debug, Deserialize)]
struct WebhookData {
    reference: String,
}

#[derive(Debug, Deserialize)]
struct WebhookEnvelope {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: WebhookData,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    pub received: bool,
    /// The event id was seen before; nothing was done.
    pub duplicate: bool,
}

/// The payment provider's callback. The body must carry a valid
/// `Flashdrop-Signature` (HMAC-SHA256 of `<t>.<body>` with
/// `payments.webhook_secret`, `t` within `payments.webhook_tolerance_s`).
/// Events are idempotent by id; each one makes its order ask the provider
/// for the payment's current state, so late, repeated and out-of-order
/// events all end in the same place.
#[utoipa::path(
    post, path = "/v1/payments/webhook", tag = "payments",
    request_body(content = String, content_type = "application/json", description = "the provider's event: {id, type, created_ms, data: {id, reference, status, ...}}"),
    params(("Flashdrop-Signature" = String, Header)),
    responses(
        (status = 200, body = WebhookAck),
        (status = 400, description = "malformed_json", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "invalid_signature", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed: a signed event of another shape", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn payment_webhook(
    req: HttpRequest,
    engine: Live,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let header = req
        .headers()
        .get(signature::HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::new(ErrorKind::InvalidSignature, "send Flashdrop-Signature"))?;
    let payments = &state.config.payments;
    let now_s = engine.0.clock().now_ms() / 1000;
    if let Err(error) = signature::verify(
        payments.webhook_secret.as_bytes(),
        header,
        &body,
        now_s,
        payments.webhook_tolerance_s,
    ) {
        metrics::counter!("flashdrop_payment_webhooks_total", "outcome" => "bad_signature")
            .increment(1);
        return Err(ApiError::new(
            ErrorKind::InvalidSignature,
            error.to_string(),
        ));
    }
    let event: WebhookEnvelope = super::input::decode_json(&body)?;
    tracing::debug!(event = %event.id, kind = %event.kind, "payment webhook");
    let new = engine
        .0
        .orders()
        .payment_event(&event.id, &event.data.reference);
    Ok(HttpResponse::Ok().json(WebhookAck {
        received: true,
        duplicate: !new,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerBody {
    /// Oldest first.
    pub payments: Vec<serde_json::Value>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    pub reference: Option<String>,
}

/// The sandbox provider's books (platform admins), a page at a time: each
/// payment with its authorised, captured and refunded amounts, oldest first,
/// optionally only those of one order (`reference`).
#[utoipa::path(
    get, path = "/v1/admin/payments/sandbox", tag = "payments",
    security(("bearer" = [])),
    params(
        ("limit" = Option<usize>, Query, nullable = false, minimum = 1, maximum = 100, description = "1..=100, default 50"),
        ("cursor" = Option<String>, Query, nullable = false, pattern = "^pay_[0-9a-f]{32}$", description = "next_cursor of the previous page"),
        ("reference" = Option<String>, Query, nullable = false, min_length = 1, max_length = 128, description = "only the payments of this order id"),
    ),
    responses(
        (status = 200, body = LedgerBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn sandbox_ledger(
    caller: Authenticated,
    engine: Live,
    query: Query<LedgerQuery>,
) -> Result<HttpResponse, ApiError> {
    if !policy::operates_platform(&caller.0.principal()) {
        return Err(ApiError::new(ErrorKind::Forbidden, "platform admins only"));
    }
    let limit = page_limit(query.limit)?;
    let is_payment_id = |raw: &str| {
        raw.strip_prefix("pay_").is_some_and(|hex| {
            hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
    };
    if query.cursor.as_deref().is_some_and(|c| !is_payment_id(c)) {
        return Err(InvalidField::new("cursor", "not a cursor").into());
    }
    if let Some(reference) = &query.reference {
        if reference.is_empty() || reference.chars().count() > 128 {
            return Err(InvalidField::new("reference", "must be 1..=128 characters").into());
        }
    }
    let (page, more) =
        engine
            .0
            .sandbox()
            .ledger_page(query.cursor.as_deref(), query.reference.as_deref(), limit);
    let next_cursor = more.then(|| page.last().map(|p| p.id.clone())).flatten();
    let payments = page
        .into_iter()
        .filter_map(|p| serde_json::to_value(p).ok())
        .collect();
    Ok(HttpResponse::Ok().json(LedgerBody {
        payments,
        next_cursor,
    }))
}
