//! Reservation routes: a shopper holds units of a SKU for a while (within the
//! per-shopper bounds) and releases them; the SKU's sellers list, release and
//! commit (a till sale) any hold on it. Stock is otherwise sold only by a paid
//! order. Creation honours `Idempotency-Key`.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::rfc3339_ms;
use crate::domain::stock::{
    CommitOutcome, Receipt, ReleaseOutcome, ReservationState, ReservationView, ReserveCmd,
};
use crate::domain::{stable_hash, InvalidField, ReservationId, SkuId, TenantId};

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{AppState, Correlation, IdempotencyHeader, Live, Seller, Shopper};
use super::input::{Json, Query};
use super::stock::sku_code;
use super::tenants::page_limit;
use crate::auth::Caller;
use crate::domain::policy;
use crate::services::identity::actor_of_caller;
use crate::services::identity::AuditDraft;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveBody {
    /// Units to hold, 1..=`reservations.max_quantity` (1000); outside a drop
    /// a shopper holds at most `reservations.shopper_units_per_sku_max` (10)
    /// of one SKU (409 `hold_limit_exceeded`).
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: u32,
    /// How long to hold them, `reservations.min_ttl_s`..=`max_ttl_s`
    /// (1..=900); `reservations.default_ttl_s` (600) when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 900)]
    pub ttl_s: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationBody {
    pub reservation_id: String,
    pub sku: String,
    /// The account that holds it.
    pub buyer_id: String,
    pub quantity: u32,
    #[schema(value_type = String, example = "held")]
    pub state: ReservationState,
    pub created_at: String,
    pub expires_at: String,
}

impl ReservationBody {
    fn from_receipt(sku_id: SkuId, sku: &str, buyer: &str, receipt: &Receipt) -> Self {
        Self {
            reservation_id: ReservationId {
                sku: sku_id,
                seq: receipt.seq,
            }
            .to_string(),
            sku: sku.to_owned(),
            buyer_id: buyer.to_owned(),
            quantity: receipt.quantity,
            state: ReservationState::Held,
            created_at: rfc3339_ms(receipt.created_at_ms),
            expires_at: rfc3339_ms(receipt.expires_at_ms),
        }
    }

    fn from_view(sku_id: SkuId, sku: &str, view: &ReservationView) -> Self {
        Self {
            reservation_id: ReservationId {
                sku: sku_id,
                seq: view.seq,
            }
            .to_string(),
            sku: sku.to_owned(),
            buyer_id: view.buyer.clone(),
            quantity: view.quantity,
            state: view.state,
            created_at: rfc3339_ms(view.created_at_ms),
            expires_at: rfc3339_ms(view.expires_at_ms),
        }
    }
}

fn reservation_id(raw: &str) -> Result<ReservationId, ApiError> {
    ReservationId::parse(raw)
        .ok_or_else(|| ApiError::new(ErrorKind::ReservationNotFound, "no such reservation"))
}

fn sku_code_of(engine: &Live, sku: SkuId) -> String {
    engine
        .0
        .inventory()
        .sku_info(sku)
        .map(|info| info.code().to_owned())
        .unwrap_or_default()
}

/// Hold units of a SKU.
#[utoipa::path(
    post, path = "/v1/skus/{sku}/reservations", tag = "reservations",
    params(
        ("sku" = String, Path, pattern = "^[A-Za-z0-9._:@-]{1,64}$", description = "SKU code"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[!-~]{1,255}$", description = "same key + same body: the first answer again; same key + another body: 409"),
    ),
    security(("bearer" = [])),
    request_body = ReserveBody,
    responses(
        (status = 201, body = ReservationBody, headers(("Location" = String), ("Idempotent-Replayed" = String, description = "true when this is a replayed answer"), ("X-RateLimit-Remaining" = String, description = "requests the buyer may still send at once"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "out_of_stock, idempotency_key_reused, too_many_reservations, tenant_suspended, drop_not_live, purchase_limit_exceeded, queue_pass_required", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited: the buyer's or the store's rate (Retry-After, X-RateLimit-Remaining)", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "overloaded (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn reserve(
    shopper: Shopper,
    engine: Live,
    state: web::Data<AppState>,
    path: web::Path<String>,
    key: IdempotencyHeader,
    body: Json<ReserveBody>,
) -> Result<HttpResponse, ApiError> {
    let code = sku_code(&path)?;
    let limits = &state.config.reservations;
    let mut errors = Vec::new();
    if body.quantity == 0 || body.quantity > limits.max_quantity {
        errors.push(InvalidField::new(
            "quantity",
            format!("must be 1..={}", limits.max_quantity),
        ));
    }
    if let Some(ttl) = body.ttl_s {
        if ttl < limits.min_ttl_s || ttl > limits.max_ttl_s {
            errors.push(InvalidField::new(
                "ttl_s",
                format!("must be {}..={}", limits.min_ttl_s, limits.max_ttl_s),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let now_ms = engine.0.clock().now_ms();
    let remaining = state.admission.charge_buyer(shopper.caller.user, now_ms)?;
    let info = engine.0.inventory().sku(&code)?;
    if let Some(store) = TenantId::parse(info.tenant()) {
        if let Some(rpm) = engine.0.directory().plan_requests_per_minute(store) {
            state.admission.charge_store(store, rpm, now_ms)?;
        }
    }
    let ttl_s = body.ttl_s.unwrap_or(limits.default_ttl_s);
    let fingerprint = stable_hash(&[
        &body.quantity.to_le_bytes(),
        &body.ttl_s.map_or([0xff; 8], u64::to_le_bytes),
    ]);
    let buyer = shopper.buyer.as_str().to_owned();
    let cmd = ReserveCmd {
        buyer: shopper.buyer,
        quantity: body.quantity,
        ttl_ms: ttl_s * 1000,
        idempotency: key.0.map(|k| (k, fingerprint)),
        shopper_units_max: Some(u64::from(limits.shopper_units_per_sku_max)),
    };
    let (info, outcome) = engine
        .0
        .inventory()
        .reserve_as_shopper(info, cmd, limits.shopper_holds_max)
        .await?;
    let body = ReservationBody::from_receipt(info.id, info.code(), &buyer, &outcome.receipt);
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/v1/reservations/{}", body.reservation_id),
        ))
        .insert_header((
            "Idempotent-Replayed",
            if outcome.replayed { "true" } else { "false" },
        ))
        .insert_header(("X-RateLimit-Remaining", remaining.to_string()))
        .json(body))
}

/// A reservation, as its buyer sees it; the SKU's seller and platform admins see any.
#[utoipa::path(
    get, path = "/v1/reservations/{id}", tag = "reservations",
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{32}$", description = "reservation id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ReservationBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_reservation(
    shopper: Shopper,
    engine: Live,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = reservation_id(&path)?;
    let caller = &shopper.caller;
    let store = engine
        .0
        .inventory()
        .sku_info(id.sku)
        .and_then(|info| TenantId::parse(info.tenant()));
    let who = caller.principal();
    let sees_all =
        who.is_platform_admin() || store.is_some_and(|s| policy::sees_every_hold(&who, s));
    let owner = (!sees_all).then_some(shopper.buyer);
    let view = engine.0.inventory().reservation(id, owner).await?;
    let code = sku_code_of(&engine, id.sku);
    Ok(HttpResponse::Ok().json(ReservationBody::from_view(id.sku, &code, &view)))
}

/// The reservation's store when the caller sells for it.
fn sells(engine: &Live, caller: &Caller, id: ReservationId) -> Option<crate::domain::TenantKey> {
    let info = engine.0.inventory().sku_info(id.sku)?;
    let store = TenantId::parse(info.tenant())?;
    if !policy::sells_for(&caller.principal(), store) {
        return None;
    }
    crate::domain::TenantKey::parse(info.tenant()).ok()
}

/// Audits what a seller did to a shopper's hold.
async fn audit_seller_move(
    engine: &Live,
    caller: &Caller,
    action: &'static str,
    view: Option<&ReservationView>,
    id: ReservationId,
    correlation: Correlation,
) -> Result<(), ApiError> {
    let mut draft = AuditDraft::new(
        Some(actor_of_caller(caller)),
        action,
        format!("reservation:{id}"),
    )
    .correlation(correlation.0);
    if let Some(view) = view {
        draft = draft.after(
            serde_json::json!({"buyer_id": view.buyer, "quantity": view.quantity,
                               "state": view.state})
            .to_string(),
        );
    }
    engine.0.directory().audit(vec![draft]).await?;
    Ok(())
}

/// Give the units back: the buyer its own hold, or one of the SKU's sellers any
/// hold on it (audited). Releasing twice is not an error.
#[utoipa::path(
    delete, path = "/v1/reservations/{id}", tag = "reservations",
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{32}$", description = "reservation id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "released (now or before)"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "reservation_committed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn release(
    shopper: Shopper,
    engine: Live,
    correlation: Correlation,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = reservation_id(&path)?;
    match sells(&engine, &shopper.caller, id) {
        Some(tenant) => {
            let outcome = engine.0.inventory().release_as_seller(id, &tenant).await?;
            if outcome == ReleaseOutcome::Released {
                let view = engine.0.inventory().reservation(id, None).await.ok();
                audit_seller_move(
                    &engine,
                    &shopper.caller,
                    "reservation.release",
                    view.as_ref(),
                    id,
                    correlation,
                )
                .await?;
            }
        }
        None => {
            engine.0.inventory().release(id, shopper.buyer).await?;
        }
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Sell the held units: for the SKU's sellers (a sale at a till; audited).
/// A shopper's units are sold only through a paid order (`POST /v1/orders`,
/// checkout), so a shopper's commit is refused. Committing twice answers the same.
#[utoipa::path(
    post, path = "/v1/reservations/{id}/commit", tag = "reservations",
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{32}$", description = "reservation id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ReservationBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: only the SKU's sellers commit; shoppers buy through an order", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "reservation_released, reservation_expired or tenant_suspended", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn commit(
    shopper: Shopper,
    engine: Live,
    correlation: Correlation,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = reservation_id(&path)?;
    let caller = &shopper.caller;
    let Some(tenant) = sells(&engine, caller, id) else {
        // Another store's seller learns nothing of this store's reservations.
        if caller.role.is_seller() {
            return Err(ApiError::new(
                ErrorKind::ReservationNotFound,
                "no such reservation",
            ));
        }
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "held units are sold only through a paid order (POST /v1/orders or /v1/cart/checkout); only the SKU's sellers commit a hold directly",
        ));
    };
    let (view, fresh) = match engine.0.inventory().commit_as_seller(id, &tenant).await? {
        CommitOutcome::Committed(view) => (view, true),
        CommitOutcome::AlreadyCommitted(view) => (view, false),
    };
    if fresh {
        audit_seller_move(
            &engine,
            caller,
            "reservation.commit",
            Some(&view),
            id,
            correlation,
        )
        .await?;
    }
    let code = sku_code_of(&engine, id.sku);
    Ok(HttpResponse::Ok().json(ReservationBody::from_view(id.sku, &code, &view)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldsQuery {
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HoldPageBody {
    pub items: Vec<ReservationBody>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// The open holds of one of the store's SKUs, soonest expiry first, with
/// their buyers (the store's sellers; another store's SKU is not found).
#[utoipa::path(
    get, path = "/v1/skus/{sku}/reservations", tag = "reservations",
    params(
        ("sku" = String, Path, pattern = "^[A-Za-z0-9._:@-]{1,64}$", description = "SKU code"),
        ("limit" = Option<usize>, Query, nullable = false, minimum = 1, maximum = 100, description = "1..=100, default 50"),
        ("cursor" = Option<String>, Query, nullable = false, pattern = "^[0-9]{1,19}\\.[0-9]{1,19}$", description = "next_cursor of the previous page"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, body = HoldPageBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_holds(
    seller: Seller,
    engine: Live,
    path: web::Path<String>,
    query: Query<HoldsQuery>,
) -> Result<HttpResponse, ApiError> {
    let code = sku_code(&path)?;
    let limit = page_limit(query.limit)?;
    let after = query.cursor.as_deref().map(parse_hold_cursor).transpose()?;
    let (info, holds) = engine
        .0
        .inventory()
        .holds_of(&code, &seller.tenant_key, after, limit + 1)
        .await?;
    let more = holds.len() > limit;
    let next_cursor = more
        .then(|| {
            holds
                .get(limit - 1)
                .map(|h| format!("{}.{}", h.expires_at_ms, h.seq))
        })
        .flatten();
    let items = holds
        .iter()
        .take(limit)
        .map(|view| ReservationBody::from_view(info.id, info.code(), view))
        .collect();
    Ok(HttpResponse::Ok().json(HoldPageBody { items, next_cursor }))
}

fn parse_hold_cursor(raw: &str) -> Result<(u64, u64), ApiError> {
    raw.split_once('.')
        .and_then(|(at, seq)| Some((at.parse().ok()?, seq.parse().ok()?)))
        .ok_or_else(|| InvalidField::new("cursor", "not a cursor of this list").into())
}
