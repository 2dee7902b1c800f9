//! The one error table: every error a client can see, with its stable code,
//! HTTP status and title, rendered as `application/problem+json` (RFC 9457).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::actors::carts::CartsError;
use crate::actors::drops::DropsError;
use crate::actors::orders::OrdersError;
use crate::clock::rfc3339_ms;
use crate::domain::cart::CartError;
use crate::domain::category::CategoryError;
use crate::domain::identity::id_text;
use crate::domain::product::StatusError;
use crate::domain::product_version::RollbackError;
use crate::domain::waiting_room::{CloseReason, QueueError};
use crate::domain::{InvalidField, NotLive, StockError};
use crate::services::catalog::InUse;
use crate::services::identity::{IdentityError, Missing};
use crate::services::{CatalogError, CategoriesError, ImportError, InventoryError};

/// Every error kind, its code, status and title. Codes never change once shipped.
macro_rules! error_table {
    ($( $kind:ident => ($code:literal, $status:ident, $title:literal), )*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorKind { $( $kind, )* }

        impl ErrorKind {
            pub const ALL: &'static [ErrorKind] = &[ $( ErrorKind::$kind, )* ];

            pub fn code(self) -> &'static str {
                match self { $( ErrorKind::$kind => $code, )* }
            }

            pub fn status(self) -> StatusCode {
                match self { $( ErrorKind::$kind => StatusCode::$status, )* }
            }

            pub fn title(self) -> &'static str {
                match self { $( ErrorKind::$kind => $title, )* }
            }
        }
    };
}

error_table! {
    MalformedJson => ("malformed_json", BAD_REQUEST, "The body is not valid JSON"),
    ValidationFailed => ("validation_failed", UNPROCESSABLE_ENTITY, "The request is not valid"),
    UnsupportedMediaType => ("unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "The body must be application/json"),
    PayloadTooLarge => ("payload_too_large", PAYLOAD_TOO_LARGE, "The body is too large"),
    Unauthenticated => ("unauthenticated", UNAUTHORIZED, "A valid bearer token is required"),
    InvalidCredentials => ("invalid_credentials", UNAUTHORIZED, "The e-mail address or the password is wrong"),
    InvalidRefreshToken => ("invalid_refresh_token", UNAUTHORIZED, "The refresh token is not valid"),
    RefreshTokenReused => ("refresh_token_reused", UNAUTHORIZED, "A rotated refresh token was used again; its sessions are revoked"),
    Forbidden => ("forbidden", FORBIDDEN, "Your role does not allow this"),
    RateLimited => ("rate_limited", TOO_MANY_REQUESTS, "Too many requests"),
    TenantNotFound => ("tenant_not_found", NOT_FOUND, "No such store"),
    UserNotFound => ("user_not_found", NOT_FOUND, "No such account"),
    CreatorNotFound => ("creator_not_found", NOT_FOUND, "No such creator"),
    InvitationNotFound => ("invitation_not_found", NOT_FOUND, "No such invitation, or it was used or expired"),
    TenantSuspended => ("tenant_suspended", CONFLICT, "The store is suspended"),
    QuotaExceeded => ("quota_exceeded", CONFLICT, "The store's plan does not allow more"),
    LastSellerAdmin => ("last_seller_admin", CONFLICT, "A store keeps at least one seller admin"),
    NotFound => ("not_found", NOT_FOUND, "No such route"),
    MethodNotAllowed => ("method_not_allowed", METHOD_NOT_ALLOWED, "The route does not accept this method"),
    SkuNotFound => ("sku_not_found", NOT_FOUND, "No such SKU"),
    ProductNotFound => ("product_not_found", NOT_FOUND, "No such product"),
    ReservationNotFound => ("reservation_not_found", NOT_FOUND, "No such reservation"),
    OutOfStock => ("out_of_stock", CONFLICT, "Not enough stock"),
    IdempotencyKeyReused => ("idempotency_key_reused", CONFLICT, "The Idempotency-Key was used with a different request"),
    ReservationReleased => ("reservation_released", CONFLICT, "The reservation was released"),
    ReservationExpired => ("reservation_expired", CONFLICT, "The reservation expired"),
    ReservationCommitted => ("reservation_committed", CONFLICT, "The reservation was already committed"),
    StockBelowReserved => ("stock_below_reserved", CONFLICT, "Stock cannot go below what is reserved"),
    InsufficientOnHand => ("insufficient_on_hand", CONFLICT, "The warehouse does not hold that many units"),
    TooManyReservations => ("too_many_reservations", CONFLICT, "The SKU holds too many open reservations"),
    HoldLimitExceeded => ("hold_limit_exceeded", CONFLICT, "A shopper may not hold more units of this SKU"),
    TooManyHolds => ("too_many_holds", CONFLICT, "A shopper may not hold more reservations at once"),
    SkuExists => ("sku_exists", CONFLICT, "A SKU code is already in use"),
    VersionMismatch => ("version_mismatch", PRECONDITION_FAILED, "The resource is not at the version If-Match names"),
    VersionNotFound => ("version_not_found", NOT_FOUND, "The product's history keeps no such version"),
    ProductNotOnSale => ("product_not_on_sale", CONFLICT, "The product is a draft or archived"),
    VariantsDiffer => ("variants_differ", CONFLICT, "That version has other variants than the current one"),
    CategoryNotFound => ("category_not_found", NOT_FOUND, "No such category"),
    SlugTaken => ("slug_taken", CONFLICT, "A sibling category already uses the slug"),
    CategoryCycle => ("category_cycle", CONFLICT, "A category cannot move under itself or a descendant"),
    CategoryNotEmpty => ("category_not_empty", CONFLICT, "The category still holds categories or products"),
    LastVariant => ("last_variant", CONFLICT, "A product keeps at least one variant"),
    VariantInUse => ("variant_in_use", CONFLICT, "The variant has open holds, unsettled orders or an open drop"),
    ImportNotFound => ("import_not_found", NOT_FOUND, "No such import job"),
    ImportsBusy => ("imports_busy", CONFLICT, "The store has as many import jobs queued or running as allowed"),
    DropNotFound => ("drop_not_found", NOT_FOUND, "No such drop"),
    DropNotLive => ("drop_not_live", CONFLICT, "The drop is not live"),
    PurchaseLimitExceeded => ("purchase_limit_exceeded", CONFLICT, "The drop's per-buyer limit would be exceeded"),
    SkuInDrop => ("sku_in_drop", CONFLICT, "A SKU already belongs to an open drop"),
    InvalidTransition => ("invalid_transition", CONFLICT, "The state transition is not allowed"),
    DropStarted => ("drop_started", CONFLICT, "The drop started: its window and limit are fixed"),
    QueuePassRequired => ("queue_pass_required", CONFLICT, "The drop admits shoppers through its waiting room"),
    WaitingRoomNotFound => ("waiting_room_not_found", NOT_FOUND, "The drop has no waiting room"),
    TicketNotFound => ("ticket_not_found", NOT_FOUND, "No ticket in this waiting room"),
    SoldOut => ("sold_out", CONFLICT, "The drop sold out"),
    OrderNotFound => ("order_not_found", NOT_FOUND, "No such order"),
    CartItemNotFound => ("cart_item_not_found", NOT_FOUND, "The cart holds no such item"),
    NotificationNotFound => ("notification_not_found", NOT_FOUND, "No such dead letter"),
    CartEmpty => ("cart_empty", CONFLICT, "The cart is empty"),
    PriceChanged => ("price_changed", CONFLICT, "Prices changed since the items were added"),
    CurrencyMismatch => ("currency_mismatch", CONFLICT, "The cart is priced in another currency"),
    CartLimitExceeded => ("cart_limit_exceeded", CONFLICT, "The cart cannot hold more"),
    InvalidSignature => ("invalid_signature", UNAUTHORIZED, "The webhook signature is missing or wrong"),
    UpgradeRequired => ("websocket_upgrade_required", UPGRADE_REQUIRED, "This route speaks WebSocket only"),
    LimitExceeded => ("limit_exceeded", UNPROCESSABLE_ENTITY, "A configured limit would be exceeded"),
    Overloaded => ("overloaded", SERVICE_UNAVAILABLE, "Too busy; retry shortly"),
    NotReady => ("not_ready", SERVICE_UNAVAILABLE, "Recovery is still running"),
    Unavailable => ("unavailable", SERVICE_UNAVAILABLE, "Temporarily unavailable"),
    Internal => ("internal_error", INTERNAL_SERVER_ERROR, "Internal error"),
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:flashdrop:problem:<code>`
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable code.
    pub code: String,
    /// Per-field validation errors (`validation_failed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub detail: String,
    /// Extra members of the problem object (e.g. `available` for out_of_stock).
    pub extensions: Map<String, Value>,
    /// `Retry-After` for 429s (503s always say 1 s).
    pub retry_after_s: Option<u64>,
    /// `X-RateLimit-Remaining` for 429s.
    pub rate_limit_remaining: Option<u32>,
    /// `Allow` for 405s.
    pub allow: Option<String>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            extensions: Map::new(),
            retry_after_s: None,
            rate_limit_remaining: None,
            allow: None,
        }
    }

    pub fn rate_limited(detail: impl Into<String>, retry_after_s: u64, remaining: u32) -> Self {
        let mut error = Self::new(ErrorKind::RateLimited, detail);
        error.retry_after_s = Some(retry_after_s.max(1));
        error.rate_limit_remaining = Some(remaining);
        error
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extensions.insert(key.into(), value);
        self
    }

    pub fn invalid(fields: Vec<InvalidField>) -> Self {
        let detail = fields
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let errors: Vec<Value> = fields
            .iter()
            .map(|f| json!({"field": f.field, "reason": f.reason}))
            .collect();
        Self::new(ErrorKind::ValidationFailed, detail).with("errors", Value::Array(errors))
    }

    fn retry_after_s(&self) -> Option<u64> {
        match self.kind {
            ErrorKind::Overloaded | ErrorKind::NotReady | ErrorKind::Unavailable => Some(1),
            _ => self.retry_after_s,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = Map::new();
        body.insert(
            "type".into(),
            Value::String(format!("urn:flashdrop:problem:{}", self.kind.code())),
        );
        body.insert("title".into(), Value::String(self.kind.title().into()));
        body.insert("status".into(), Value::from(self.kind.status().as_u16()));
        body.insert("detail".into(), Value::String(self.detail.clone()));
        body.insert("code".into(), Value::String(self.kind.code().into()));
        for (key, value) in &self.extensions {
            body.entry(key.clone()).or_insert_with(|| value.clone());
        }
        let mut response = HttpResponse::build(self.kind.status());
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        if let Some(seconds) = self.retry_after_s() {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if let Some(allow) = &self.allow {
            response.insert_header((header::ALLOW, allow.as_str()));
        }
        if let Some(remaining) = self.rate_limit_remaining {
            response.insert_header(("x-ratelimit-remaining", remaining.to_string()));
        }
        if self.kind.status() == StatusCode::UNAUTHORIZED {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"flashdrop\""),
            ));
        }
        response.body(Value::Object(body).to_string())
    }
}

impl From<InvalidField> for ApiError {
    fn from(field: InvalidField) -> Self {
        ApiError::invalid(vec![field])
    }
}

impl From<StockError> for ApiError {
    fn from(error: StockError) -> Self {
        let detail = error.to_string();
        match error {
            StockError::OutOfStock {
                requested,
                available,
            } => ApiError::new(ErrorKind::OutOfStock, detail)
                .with("requested", Value::from(requested))
                .with("available", Value::from(available)),
            StockError::UnknownReservation => ApiError::new(ErrorKind::ReservationNotFound, detail),
            StockError::ReservationReleased => {
                ApiError::new(ErrorKind::ReservationReleased, detail)
            }
            StockError::ReservationExpired => ApiError::new(ErrorKind::ReservationExpired, detail),
            StockError::ReservationCommitted => {
                ApiError::new(ErrorKind::ReservationCommitted, detail)
            }
            StockError::IdempotencyKeyReused => {
                ApiError::new(ErrorKind::IdempotencyKeyReused, detail)
            }
            StockError::StockBelowReserved { on_hand, reserved } => {
                ApiError::new(ErrorKind::StockBelowReserved, detail)
                    .with("on_hand", Value::from(on_hand))
                    .with("reserved", Value::from(reserved))
            }
            StockError::InsufficientOnHand { on_hand, .. } => {
                ApiError::new(ErrorKind::InsufficientOnHand, detail)
                    .with("on_hand", Value::from(on_hand))
            }
            StockError::TooManyWarehouses { .. } | StockError::TooManyUnits { .. } => {
                ApiError::new(ErrorKind::LimitExceeded, detail)
            }
            StockError::TooManyReservations { .. } => {
                ApiError::new(ErrorKind::TooManyReservations, detail)
            }
            StockError::HoldLimitExceeded { limit, held } => {
                ApiError::new(ErrorKind::HoldLimitExceeded, detail)
                    .with("limit", Value::from(limit))
                    .with("held", Value::from(held))
            }
            StockError::DropNotLive { drop, why } => {
                let (detail, extra) = match why {
                    NotLive::NotStarted { starts_at_ms } => (
                        format!("the drop starts at {}", rfc3339_ms(starts_at_ms)),
                        ("starts_at", Value::from(rfc3339_ms(starts_at_ms))),
                    ),
                    NotLive::Ended { ended_at_ms } => (
                        format!("the drop ended at {}", rfc3339_ms(ended_at_ms)),
                        ("ended_at", Value::from(rfc3339_ms(ended_at_ms))),
                    ),
                    NotLive::Cancelled => (
                        "the drop was cancelled".to_owned(),
                        ("cancelled", Value::Bool(true)),
                    ),
                };
                ApiError::new(ErrorKind::DropNotLive, detail)
                    .with("drop_id", Value::from(id_text(drop)))
                    .with(extra.0, extra.1)
            }
            StockError::PurchaseLimitExceeded { limit, used } => {
                ApiError::new(ErrorKind::PurchaseLimitExceeded, detail)
                    .with("limit", Value::from(limit))
                    .with("used", Value::from(used))
            }
            StockError::HasHolds { open } => ApiError::new(ErrorKind::VariantInUse, detail)
                .with("open_holds", Value::from(open as u64)),
            StockError::InOpenDrop { drop } => ApiError::new(ErrorKind::VariantInUse, detail)
                .with("drop_id", Value::from(id_text(drop))),
            StockError::Invariant(violation) => {
                tracing::error!(%violation, "invariant violation reached the HTTP edge");
                ApiError::new(
                    ErrorKind::Internal,
                    "internal error; the SKU is being rebuilt",
                )
            }
        }
    }
}

impl From<CategoriesError> for ApiError {
    fn from(error: CategoriesError) -> Self {
        let CategoriesError::Rule(rule) = error else {
            return ApiError::new(ErrorKind::Unavailable, error.to_string());
        };
        let detail = rule.to_string();
        match rule {
            CategoryError::NotFound(id) => ApiError::new(ErrorKind::CategoryNotFound, detail)
                .with("category_id", Value::from(id.to_string())),
            CategoryError::Invalid(fields) => ApiError::invalid(fields),
            CategoryError::IdTaken(_) => ApiError::new(ErrorKind::Internal, detail),
            CategoryError::SlugTaken { slug } => {
                ApiError::new(ErrorKind::SlugTaken, detail).with("slug", Value::from(slug))
            }
            CategoryError::TooDeep { max } => ApiError::new(ErrorKind::LimitExceeded, detail)
                .with("depth_max", Value::from(max as u64)),
            CategoryError::Cycle(_) => ApiError::new(ErrorKind::CategoryCycle, detail),
            CategoryError::NotEmpty { children, products } => {
                ApiError::new(ErrorKind::CategoryNotEmpty, detail)
                    .with("children", Value::from(children as u64))
                    .with("products", Value::from(products))
            }
            CategoryError::TooMany { .. } => ApiError::new(ErrorKind::LimitExceeded, detail),
        }
    }
}

impl From<ImportError> for ApiError {
    fn from(error: ImportError) -> Self {
        let detail = error.to_string();
        match error {
            ImportError::NotFound => ApiError::new(ErrorKind::ImportNotFound, detail),
            ImportError::Busy(open) => {
                ApiError::new(ErrorKind::ImportsBusy, detail).with("unfinished", json!(open))
            }
            ImportError::TooLarge(_) => ApiError::new(ErrorKind::PayloadTooLarge, detail),
            ImportError::BadHeader(error) => ApiError::invalid(vec![InvalidField::new(
                format!("header.{}", error.field),
                error.reason,
            )]),
            ImportError::Unavailable => ApiError::new(ErrorKind::Unavailable, detail),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::SkuExists(codes) => {
                let detail = format!("SKU codes already in use: {}", codes.join(", "));
                ApiError::new(ErrorKind::SkuExists, detail).with("skus", json!(codes))
            }
            CatalogError::ProductQuota(max) => ApiError::new(
                ErrorKind::QuotaExceeded,
                format!("the store's plan allows at most {max} products"),
            )
            .with("max_products", Value::from(max)),
            CatalogError::NotFound => ApiError::new(ErrorKind::ProductNotFound, "no such product"),
            CatalogError::NoSuchCategory(id) => ApiError::invalid(vec![InvalidField::new(
                "category",
                format!("no category {id}; see GET /v1/categories"),
            )]),
            CatalogError::VariantInUse { ref sku, why } => {
                let error = ApiError::new(ErrorKind::VariantInUse, error.to_string())
                    .with("sku", Value::from(sku.as_str()));
                match why {
                    InUse::Holds(open) => error.with("open_holds", Value::from(open as u64)),
                    InUse::UnsettledOrders(n) => error.with("unsettled_orders", Value::from(n)),
                    InUse::Drop(drop) => error.with("drop_id", Value::from(id_text(drop))),
                }
            }
            CatalogError::StaleVersion { current } => ApiError::new(
                ErrorKind::VersionMismatch,
                format!("the product is at version {current}; read it again and retry"),
            )
            .with("current_version", Value::from(current)),
            CatalogError::NoSuchVersion {
                version,
                oldest,
                current,
            } => ApiError::new(
                ErrorKind::VersionNotFound,
                match oldest {
                    Some(oldest) if version < oldest && version > 0 => format!(
                        "version {version} is older than the versions kept ({oldest} to {current})"
                    ),
                    _ => {
                        format!("the product has no version {version}; it is at version {current}")
                    }
                },
            )
            .with("current_version", Value::from(current))
            .with("oldest_version", oldest.map_or(Value::Null, Value::from)),
            CatalogError::Rollback(error) => {
                let detail = error.to_string();
                let RollbackError::VariantsDiffer {
                    only_then,
                    only_now,
                    ..
                } = error;
                ApiError::new(ErrorKind::VariantsDiffer, detail)
                    .with("only_then", json!(only_then))
                    .with("only_now", json!(only_now))
            }
            CatalogError::Unavailable => InventoryError::Unavailable.into(),
        }
    }
}

impl From<StatusError> for ApiError {
    fn from(error: StatusError) -> Self {
        let allowed: Vec<&str> = error.from.next().iter().map(|s| s.as_str()).collect();
        ApiError::new(ErrorKind::InvalidTransition, error.to_string())
            .with("state", Value::from(error.from.as_str()))
            .with("allowed", json!(allowed))
    }
}

impl From<InventoryError> for ApiError {
    fn from(error: InventoryError) -> Self {
        match error {
            InventoryError::Stock(stock) => stock.into(),
            InventoryError::UnknownSku => ApiError::new(ErrorKind::SkuNotFound, "no such SKU"),
            InventoryError::Overloaded => ApiError::new(
                ErrorKind::Overloaded,
                "this SKU's queue is full; retry after the Retry-After delay",
            ),
            InventoryError::Unavailable => ApiError::new(
                ErrorKind::Unavailable,
                "the request was not carried out; retry shortly",
            ),
            InventoryError::TenantSuspended => ApiError::new(
                ErrorKind::TenantSuspended,
                "this store is suspended; its SKUs cannot be reserved or bought",
            ),
            error @ InventoryError::NotOnSale(_) => {
                ApiError::new(ErrorKind::ProductNotOnSale, error.to_string())
            }
            InventoryError::QueuePassRequired(drop) => ApiError::new(
                ErrorKind::QueuePassRequired,
                format!(
                    "join the drop's waiting room first: POST /v1/drops/{}/queue",
                    id_text(drop)
                ),
            )
            .with("drop_id", Value::from(id_text(drop))),
            InventoryError::Drops(error) => error.into(),
            InventoryError::TooManyHolds(error) => {
                ApiError::new(ErrorKind::TooManyHolds, error.to_string())
                    .with("limit", Value::from(error.max))
                    .with("open", Value::from(error.open))
            }
        }
    }
}

impl From<CartsError> for ApiError {
    fn from(error: CartsError) -> Self {
        let detail = error.to_string();
        match error {
            CartsError::Cart(CartError::TooManyItems(max)) => {
                ApiError::new(ErrorKind::CartLimitExceeded, detail).with("limit", json!(max))
            }
            CartsError::Cart(CartError::LineFull { sku, max, .. }) => {
                ApiError::new(ErrorKind::CartLimitExceeded, detail)
                    .with("sku", json!(sku))
                    .with("limit", json!(max))
            }
            CartsError::Cart(CartError::Invalid(field)) => ApiError::invalid(vec![field]),
            CartsError::Cart(CartError::NoSuchItem(_)) => {
                ApiError::new(ErrorKind::CartItemNotFound, detail)
            }
            CartsError::Cart(CartError::Empty) => ApiError::new(ErrorKind::CartEmpty, detail),
            CartsError::Cart(CartError::CurrencyMismatch {
                sku,
                currency,
                cart_currency,
            }) => ApiError::new(ErrorKind::CurrencyMismatch, detail)
                .with("sku", Value::from(sku))
                .with("currency", Value::from(currency))
                .with("cart_currency", Value::from(cart_currency)),
            CartsError::Stock(e) => e.into(),
            CartsError::PriceChanged(changes) => {
                let changes: Vec<Value> = changes
                    .iter()
                    .map(|c| json!({"sku": c.code, "was": c.was_minor, "now": c.now_minor}))
                    .collect();
                ApiError::new(ErrorKind::PriceChanged, detail)
                    .with("changes", Value::Array(changes))
            }
            CartsError::Orders(e) => e.into(),
            CartsError::SignInForDrops => ApiError::new(ErrorKind::Unauthenticated, detail),
            CartsError::Unavailable => ApiError::new(ErrorKind::Unavailable, detail),
        }
    }
}

impl From<OrdersError> for ApiError {
    fn from(error: OrdersError) -> Self {
        let detail = error.to_string();
        match error {
            OrdersError::NotFound | OrdersError::NotYours => {
                ApiError::new(ErrorKind::OrderNotFound, detail)
            }
            OrdersError::UnknownSkus(skus) => {
                ApiError::new(ErrorKind::SkuNotFound, detail).with("skus", json!(skus))
            }
            OrdersError::MixedCurrencies => ApiError::invalid(vec![InvalidField::new(
                "items",
                "every line must be priced in one currency",
            )]),
            OrdersError::IdempotencyKeyReused => {
                ApiError::new(ErrorKind::IdempotencyKeyReused, detail)
            }
            OrdersError::Transition(t) => {
                let allowed: Vec<&str> = t.allowed.iter().map(|s| s.as_str()).collect();
                ApiError::new(ErrorKind::InvalidTransition, detail)
                    .with("state", Value::from(t.from.as_str()))
                    .with("allowed", json!(allowed))
            }
            OrdersError::Overloaded => ApiError::new(ErrorKind::Overloaded, detail),
            OrdersError::Unavailable => ApiError::new(ErrorKind::Unavailable, detail),
            OrdersError::Shipping { store, reason } => ApiError::invalid(vec![InvalidField::new(
                format!("shipping.{}", crate::domain::identity::id_text(store)),
                reason,
            )]),
        }
    }
}

impl From<DropsError> for ApiError {
    fn from(error: DropsError) -> Self {
        let detail = error.to_string();
        match error {
            DropsError::NotFound => ApiError::new(ErrorKind::DropNotFound, detail),
            DropsError::SkuInDrop(skus) => {
                ApiError::new(ErrorKind::SkuInDrop, detail).with("skus", json!(skus))
            }
            DropsError::UnknownSkus(skus) => {
                ApiError::new(ErrorKind::SkuNotFound, detail).with("skus", json!(skus))
            }
            DropsError::Transition(crate::domain::drop::DropError::Transition { from, .. }) => {
                let allowed: Vec<&str> = from.allowed().iter().map(|s| s.as_str()).collect();
                ApiError::new(ErrorKind::InvalidTransition, detail)
                    .with("state", Value::from(from.as_str()))
                    .with("allowed", json!(allowed))
            }
            DropsError::Transition(crate::domain::drop::DropError::Started { state, fields }) => {
                ApiError::new(ErrorKind::DropStarted, detail)
                    .with("state", Value::from(state.as_str()))
                    .with("fields", json!(fields))
            }
            DropsError::Transition(crate::domain::drop::DropError::Invalid(fields)) => {
                ApiError::invalid(fields)
            }
            DropsError::NoWaitingRoom => ApiError::new(ErrorKind::WaitingRoomNotFound, detail),
            DropsError::Queue(QueueError::Full) => {
                ApiError::rate_limited("the waiting room is full; retry later", 5, 0)
            }
            DropsError::Queue(QueueError::NotOpen(CloseReason::SoldOut)) => {
                ApiError::new(ErrorKind::SoldOut, "the drop sold out")
            }
            DropsError::Queue(QueueError::NotOpen(CloseReason::Ended)) => {
                ApiError::new(ErrorKind::DropNotLive, "the drop is over")
            }
            DropsError::Queue(QueueError::UnknownTicket) => {
                ApiError::new(ErrorKind::TicketNotFound, detail)
            }
            DropsError::Unavailable => ApiError::new(ErrorKind::Unavailable, detail),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(error: IdentityError) -> Self {
        let detail = error.to_string();
        match error {
            IdentityError::Invalid(field) => field.into(),
            IdentityError::InvalidCredentials => {
                ApiError::new(ErrorKind::InvalidCredentials, detail)
            }
            IdentityError::RefreshInvalid => ApiError::new(ErrorKind::InvalidRefreshToken, detail),
            IdentityError::RefreshReused => ApiError::new(ErrorKind::RefreshTokenReused, detail),
            IdentityError::InvitationInvalid => {
                ApiError::new(ErrorKind::InvitationNotFound, detail)
            }
            IdentityError::NotFound(missing) => match missing {
                Missing::Account => ApiError::new(
                    ErrorKind::Unauthenticated,
                    "the account of this token no longer exists",
                ),
                Missing::Tenant => ApiError::new(ErrorKind::TenantNotFound, "no such store"),
                Missing::StaffMember => ApiError::new(
                    ErrorKind::UserNotFound,
                    "no such staff account in this store",
                ),
                Missing::Creator => ApiError::new(ErrorKind::CreatorNotFound, "no such creator"),
            },
            IdentityError::Forbidden(why) => ApiError::new(ErrorKind::Forbidden, why),
            IdentityError::Conflict(why) => ApiError::new(ErrorKind::LastSellerAdmin, why),
            IdentityError::LimitReached(why) => ApiError::new(ErrorKind::LimitExceeded, why),
            IdentityError::RateLimited {
                retry_after_s,
                remaining,
            } => ApiError::rate_limited(detail, retry_after_s, remaining),
            IdentityError::Overloaded => ApiError::new(ErrorKind::Overloaded, detail),
            IdentityError::Unavailable => ApiError::new(ErrorKind::Unavailable, detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = HashSet::new();
        for kind in ErrorKind::ALL {
            let code = kind.code();
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn overload_answers_carry_retry_after() {
        let response = ApiError::from(InventoryError::Overloaded).error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/problem+json"
        );
    }
}
