//! Cart routes: a shopper (signed in, or a guest with a `Cart-Token`) adds,
//! changes and removes items from any sellers; checkout turns the cart into
//! an order whose saga runs on.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::actors::carts::{CartOp, CartReply, Checkout};
use crate::clock::rfc3339_ms;
use crate::domain::cart::Cart;
use crate::domain::identity::{id_text, parse_id};
use crate::domain::{stable_hash, InvalidField, ReservationId, SkuCode, SkuId};

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{AppState, IdempotencyHeader, Live, MaybeCaller};
use super::input::Json;
use super::orders::{delivery_errors, placed};

/// The header that names a guest cart (issued on a guest's first change).
pub const CART_TOKEN: &str = "cart-token";

#[derive(Debug, Serialize, ToSchema)]
pub struct CartItemBody {
    pub sku: String,
    pub seller_id: String,
    pub quantity: u32,
    /// Minor units, as when added (checkout checks it again).
    pub unit_price: i64,
    pub currency: String,
    pub added_at: String,
    /// Drop SKUs are held from the moment they are added (one hold per increase).
    pub reservation_ids: Vec<String>,
    /// When the first of its holds lapses.
    pub hold_expires_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CartBody {
    /// "account" or "guest".
    pub owner: String,
    pub items: Vec<CartItemBody>,
    pub total: i64,
    pub currency: Option<String>,
    /// Every change extends it (7 days for guests, 30 signed in, by default).
    pub expires_at: String,
}

impl CartBody {
    fn new(cart: &Cart) -> Self {
        Self {
            owner: if cart.guest { "guest" } else { "account" }.into(),
            items: cart
                .items
                .iter()
                .map(|i| CartItemBody {
                    sku: i.code.clone(),
                    seller_id: id_text(i.seller),
                    quantity: i.quantity,
                    unit_price: i.unit_price_minor,
                    currency: i.currency.clone(),
                    added_at: rfc3339_ms(i.added_at_ms),
                    reservation_ids: i
                        .holds
                        .iter()
                        .map(|(seq, _, _)| {
                            ReservationId {
                                sku: SkuId(i.sku),
                                seq: *seq,
                            }
                            .to_string()
                        })
                        .collect(),
                    hold_expires_at: i.holds.iter().map(|h| h.2).min().map(rfc3339_ms),
                })
                .collect(),
            total: cart.total_minor(),
            currency: cart.items.first().map(|i| i.currency.clone()),
            expires_at: rfc3339_ms(cart.expires_at_ms),
        }
    }
}

/// The `Cart-Token` header, if sent; a malformed one is 422.
fn cart_token(req: &HttpRequest) -> Result<Option<u128>, ApiError> {
    req.headers()
        .get(CART_TOKEN)
        .map(|raw| {
            raw.to_str()
                .ok()
                .and_then(parse_id)
                .ok_or_else(|| InvalidField::new("Cart-Token", "not a cart token").into())
        })
        .transpose()
}

/// Whose cart a request names: the signed-in account's, else the guest
/// cart of `Cart-Token` (a new one when `create` and there is none).
fn owner_of(
    req: &HttpRequest,
    caller: &MaybeCaller,
    create: bool,
) -> Result<(u128, bool), ApiError> {
    let token = cart_token(req)?;
    if let Some(caller) = &caller.0 {
        return Ok((caller.user.0, false));
    }
    match token {
        Some(id) => Ok((id, true)),
        None if create => {
            // Unguessable: the token is all a guest cart's owner has.
            let mut random = [0u8; 16];
            getrandom::fill(&mut random)
                .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
            Ok((u128::from_le_bytes(random), true))
        }
        None => Err(ApiError::new(
            ErrorKind::Unauthenticated,
            "sign in, or send the Cart-Token of a guest cart",
        )),
    }
}

fn cart_response(mut response: actix_web::HttpResponseBuilder, cart: &Cart) -> HttpResponse {
    if cart.guest {
        response.insert_header(("Cart-Token", id_text(cart.owner)));
    }
    response.json(CartBody::new(cart))
}

/// The cart: a signed-in shopper's, or a guest's by `Cart-Token`.
#[utoipa::path(
    get, path = "/v1/cart", tag = "cart",
    params(("Cart-Token" = Option<String>, Header, nullable = false, format = Uuid, description = "a guest cart (without a bearer token)")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, body = CartBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_cart(
    req: HttpRequest,
    caller: MaybeCaller,
    engine: Live,
) -> Result<HttpResponse, ApiError> {
    let (owner, guest) = owner_of(&req, &caller, false)?;
    let cart = engine.0.carts().get(owner, guest);
    Ok(cart_response(HttpResponse::Ok(), &cart))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItemBody {
    #[schema(schema_with = super::schemas::sku_code)]
    pub sku: String,
    /// 1..=`orders.quantity_max` (100) units of one SKU in the cart.
    #[schema(minimum = 1, maximum = 100)]
    pub quantity: u32,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuantityBody {
    /// 1..=`orders.quantity_max` (100).
    #[schema(minimum = 1, maximum = 100)]
    pub quantity: u32,
}

fn quantity(state: &AppState, quantity: u32) -> Result<u32, ApiError> {
    let max = state.config.orders.quantity_max;
    if quantity == 0 || quantity > max {
        return Err(InvalidField::new("quantity", format!("must be 1..={max}")).into());
    }
    Ok(quantity)
}

fn sku(raw: &str) -> Result<SkuCode, ApiError> {
    SkuCode::parse(raw).map_err(|_| ApiError::new(ErrorKind::SkuNotFound, "no such SKU"))
}

async fn change(
    req: &HttpRequest,
    caller: &MaybeCaller,
    engine: &Live,
    op: CartOp,
    created: bool,
) -> Result<HttpResponse, ApiError> {
    let (owner, guest) = owner_of(req, caller, created)?;
    match engine.0.carts().apply(owner, guest, op).await? {
        CartReply::Cart(cart) if created => Ok(cart_response(HttpResponse::Created(), &cart)),
        CartReply::Cart(cart) => Ok(cart_response(HttpResponse::Ok(), &cart)),
        CartReply::Placed(_) => Err(ApiError::new(ErrorKind::Internal, "unexpected checkout")),
    }
}

/// Add an item (or more of one already there). The price is taken now;
/// checkout checks it again. A drop SKU is held at once (for
/// `cart.drop_hold_s`), so adding it can answer `out_of_stock`,
/// `drop_not_live` or `purchase_limit_exceeded`; guests cannot add drop SKUs.
/// A guest's first add answers a new `Cart-Token`.
#[utoipa::path(
    post, path = "/v1/cart/items", tag = "cart",
    request_body = AddItemBody,
    params(("Cart-Token" = Option<String>, Header, nullable = false, format = Uuid, description = "a guest cart (without a bearer token)")),
    security((), ("bearer" = [])),
    responses(
        (status = 201, body = CartBody, headers(("Cart-Token" = String, description = "guest carts"))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "sku_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "out_of_stock, drop_not_live, purchase_limit_exceeded (drop SKUs); currency_mismatch (the cart holds another currency, with `sku`); cart_limit_exceeded (lines or units of one SKU)", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn add_item(
    req: HttpRequest,
    caller: MaybeCaller,
    engine: Live,
    state: web::Data<AppState>,
    body: Json<AddItemBody>,
) -> Result<HttpResponse, ApiError> {
    let quantity = quantity(&state, body.quantity)?;
    let sku = sku(&body.sku)?;
    change(&req, &caller, &engine, CartOp::Add { sku, quantity }, true).await
}

/// Set an item's quantity (a drop SKU's hold follows).
#[utoipa::path(
    put, path = "/v1/cart/items/{sku}", tag = "cart",
    request_body = QuantityBody,
    params(("sku" = String, Path, pattern = "^[A-Za-z0-9._:@-]{1,64}$"), ("Cart-Token" = Option<String>, Header, nullable = false, format = Uuid, description = "a guest cart (without a bearer token)")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, body = CartBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "cart_item_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn set_item(
    req: HttpRequest,
    caller: MaybeCaller,
    engine: Live,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Json<QuantityBody>,
) -> Result<HttpResponse, ApiError> {
    let quantity = quantity(&state, body.quantity)?;
    let sku = sku(&path)?;
    change(&req, &caller, &engine, CartOp::Set { sku, quantity }, false).await
}

/// Remove an item (a drop SKU's hold is released).
#[utoipa::path(
    delete, path = "/v1/cart/items/{sku}", tag = "cart",
    params(("sku" = String, Path, pattern = "^[A-Za-z0-9._:@-]{1,64}$"), ("Cart-Token" = Option<String>, Header, nullable = false, format = Uuid, description = "a guest cart (without a bearer token)")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, body = CartBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "cart_item_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove_item(
    req: HttpRequest,
    caller: MaybeCaller,
    engine: Live,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sku = sku(&path)?;
    change(&req, &caller, &engine, CartOp::Remove { sku }, false).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    #[schema(schema_with = super::schemas::shipping_address)]
    pub shipping_address: String,
    #[schema(schema_with = super::schemas::payment_method)]
    pub payment_method: String,
    /// The shipping method picked per store (store id → method code), as
    /// on `POST /v1/orders`.
    #[serde(default)]
    #[schema(schema_with = super::schemas::shipping_choices)]
    pub shipping: std::collections::BTreeMap<String, String>,
}

/// Check out the signed-in shopper's cart (merged first with the guest cart
/// of `Cart-Token`, if sent). Prices are checked again: if one changed the
/// answer is 409 `price_changed` with the new prices, and the cart now
/// shows them (checking out again accepts them). Otherwise an order is
/// placed and its saga starts: 202 `{"order_id","state",...}`; the cart is
/// emptied. `Idempotency-Key` makes a retry answer the same order.
#[utoipa::path(
    post, path = "/v1/cart/checkout", tag = "cart",
    request_body = CheckoutBody,
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[!-~]{1,255}$", description = "same key + same body: the first answer again; same key + another body: 409"),
        ("Cart-Token" = Option<String>, Header, nullable = false, format = Uuid, description = "a guest cart to merge"),
        ("Prefer" = Option<String>, Header, nullable = false, description = "wait=N: wait up to N seconds for the saga"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 202, body = super::orders::OrderBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "cart_empty, price_changed (with `changes`), idempotency_key_reused", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited: the buyer's rate (Retry-After, X-RateLimit-Remaining)", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn checkout(
    req: HttpRequest,
    caller: MaybeCaller,
    engine: Live,
    state: web::Data<AppState>,
    key: IdempotencyHeader,
    body: Json<CheckoutBody>,
) -> Result<HttpResponse, ApiError> {
    let Some(caller_id) = caller.0.as_ref().map(|c| c.user) else {
        return Err(ApiError::new(
            ErrorKind::Unauthenticated,
            "sign in to check out (a guest cart is merged with Cart-Token)",
        ));
    };
    let errors = delivery_errors(&state, &body.shipping_address, &body.payment_method);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let shipping = super::orders::shipping_choices(&body.shipping)?;
    let merge = cart_token(&req)?;
    state
        .admission
        .charge_buyer(caller_id, engine.0.clock().now_ms())?;
    let fingerprint = {
        let mut parts = vec![
            b"checkout".to_vec(),
            body.shipping_address.as_bytes().to_vec(),
            body.payment_method.as_bytes().to_vec(),
        ];
        super::orders::fingerprint_shipping(&mut parts, &shipping);
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        stable_hash(&refs)
    };
    let idempotency = key.0.map(|k| (k.into_inner(), fingerprint));
    let orders = engine.0.orders();
    if let Some((key, fingerprint)) = &idempotency {
        if let Some(replayed) = orders.replay(caller_id, key, *fingerprint) {
            return placed(orders, &req, &state, replayed?, true).await;
        }
    }
    let op = CartOp::Checkout(Checkout {
        shipping_address: body.shipping_address.trim().to_owned(),
        payment_method: body.payment_method.clone(),
        idempotency,
        shipping,
        merge,
    });
    match engine.0.carts().apply(caller_id.0, false, op).await? {
        CartReply::Placed(order) => placed(orders, &req, &state, *order, false).await,
        CartReply::Cart(_) => Err(ApiError::new(
            ErrorKind::Internal,
            "checkout placed no order",
        )),
    }
}
