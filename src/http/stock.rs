//! Stock routes: a seller sets or corrects on-hand per warehouse; anyone reads
//! live counts.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{InvalidField, SkuCode, StockView, WarehouseId};

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{Correlation, Live, Seller};
use super::input::Json;
use crate::services::identity::actor_of_caller;
use crate::services::identity::AuditDraft;

pub const REASON_MAX_CHARS: usize = 200;

#[derive(Debug, Serialize, ToSchema)]
pub struct StockBody {
    pub sku: String,
    /// Units that can be reserved now.
    pub available: u64,
    /// Units held by open reservations.
    pub reserved: u64,
    /// Units sold (committed reservations).
    pub sold: u64,
    /// Unsold units on hand per warehouse.
    pub warehouses: BTreeMap<String, u64>,
    /// `available` below this emits a low-stock event; 0 = off.
    pub low_stock_threshold: u64,
}

impl StockBody {
    pub fn new(sku: &str, view: StockView) -> Self {
        Self {
            sku: sku.to_owned(),
            available: view.available,
            reserved: view.reserved,
            sold: view.sold,
            warehouses: view.warehouses,
            low_stock_threshold: view.low_stock_threshold,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStockBody {
    /// On-hand per warehouse; replaces every warehouse (unlisted ones hold nothing).
    #[schema(schema_with = super::schemas::warehouses)]
    pub warehouses: BTreeMap<String, u64>,
    /// Optional new low-stock threshold; 0 turns it off.
    #[serde(default)]
    #[schema(maximum = 1_000_000_000_000_i64)]
    pub low_stock_threshold: Option<u64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustBody {
    #[schema(schema_with = super::schemas::warehouse)]
    pub warehouse: String,
    /// Units to add (positive) or remove (negative); never 0.
    #[schema(schema_with = super::schemas::delta)]
    pub delta: i64,
    /// Why: a count, damage, a return... (1..=200 characters).
    #[schema(schema_with = super::schemas::adjustment_reason)]
    pub reason: String,
}

pub(super) fn sku_code(raw: &str) -> Result<SkuCode, ApiError> {
    SkuCode::parse(raw).map_err(|_| ApiError::new(ErrorKind::SkuNotFound, "no such SKU"))
}

/// Live stock of a SKU.
#[utoipa::path(
    get, path = "/v1/skus/{sku}/stock", tag = "stock",
    params(("sku" = String, Path, pattern = "^[A-Za-z0-9._:@-]{1,64}$", description = "SKU code")),
    responses(
        (status = 200, body = StockBody),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_stock(engine: Live, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let code = sku_code(&path)?;
    let (info, view) = engine.0.inventory().stock(&code).await?;
    Ok(HttpResponse::Ok().json(StockBody::new(info.code(), view)))
}

/// Set on-hand per warehouse (seller of the SKU's product).
#[utoipa::path(
    put, path = "/v1/skus/{sku}/stock", tag = "stock",
    params(
        ("sku" = String, Path, pattern = "^[A-Za-z0-9._:@-]{1,64}$", description = "SKU code"),
    ),
    security(("bearer" = [])),
    request_body = SetStockBody,
    responses(
        (status = 200, body = StockBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a seller", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown SKU, or another tenant's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "stock_below_reserved", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn set_stock(
    seller: Seller,
    engine: Live,
    correlation: Correlation,
    path: web::Path<String>,
    body: Json<SetStockBody>,
) -> Result<HttpResponse, ApiError> {
    let code = sku_code(&path)?;
    let body = body.into_inner();
    let mut errors = Vec::new();
    let mut warehouses = Vec::with_capacity(body.warehouses.len());
    for (name, units) in body.warehouses {
        match WarehouseId::parse(&name) {
            Ok(id) => warehouses.push((id, units)),
            Err(e) => errors.push(InvalidField::new(
                "warehouses",
                format!("{name:?}: {}", e.reason),
            )),
        }
    }
    let units_max = engine.0.config().stock.units_max;
    if body.low_stock_threshold.is_some_and(|t| t > units_max) {
        errors.push(InvalidField::new(
            "low_stock_threshold",
            format!("must be 0..={units_max}"),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let before = engine.0.inventory().stock(&code).await.ok().map(|(_, v)| v);
    let (info, view) = engine
        .0
        .inventory()
        .set_stock(
            &code,
            &seller.tenant_key,
            warehouses,
            body.low_stock_threshold,
        )
        .await?;
    audit_stock(
        &engine,
        &seller,
        "stock.set",
        info.code(),
        before,
        &view,
        correlation,
    )
    .await?;
    Ok(HttpResponse::Ok().json(StockBody::new(info.code(), view)))
}

/// Correct one warehouse's on-hand by a signed amount (seller).
#[utoipa::path(
    post, path = "/v1/skus/{sku}/stock/adjust", tag = "stock",
    params(
        ("sku" = String, Path, pattern = "^[A-Za-z0-9._:@-]{1,64}$", description = "SKU code"),
    ),
    security(("bearer" = [])),
    request_body = AdjustBody,
    responses(
        (status = 200, body = StockBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a seller", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "insufficient_on_hand or stock_below_reserved", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed, or limit_exceeded: the warehouse's on-hand after the adjustment would pass the per-warehouse bound", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn adjust_stock(
    seller: Seller,
    engine: Live,
    correlation: Correlation,
    path: web::Path<String>,
    body: Json<AdjustBody>,
) -> Result<HttpResponse, ApiError> {
    let code = sku_code(&path)?;
    let body = body.into_inner();
    let mut errors = Vec::new();
    let warehouse = WarehouseId::parse(&body.warehouse)
        .map_err(|e| errors.push(e))
        .ok();
    if body.delta == 0 {
        errors.push(InvalidField::new("delta", "must not be 0"));
    }
    if let Err(error) = crate::domain::ids::check_line("reason", &body.reason, REASON_MAX_CHARS) {
        errors.push(error);
    }
    let Some(warehouse) = warehouse.filter(|_| errors.is_empty()) else {
        return Err(ApiError::invalid(errors));
    };
    let before = engine.0.inventory().stock(&code).await.ok().map(|(_, v)| v);
    let (info, view) = engine
        .0
        .inventory()
        .adjust_stock(
            &code,
            &seller.tenant_key,
            warehouse,
            body.delta,
            body.reason,
        )
        .await?;
    audit_stock(
        &engine,
        &seller,
        "stock.adjust",
        info.code(),
        before,
        &view,
        correlation,
    )
    .await?;
    Ok(HttpResponse::Ok().json(StockBody::new(info.code(), view)))
}

fn stock_summary(view: &StockView) -> String {
    serde_json::json!({
        "available": view.available,
        "reserved": view.reserved,
        "sold": view.sold,
        "warehouses": view.warehouses,
    })
    .to_string()
}

/// Records a stock change with the stock before and after it.
async fn audit_stock(
    engine: &Live,
    seller: &Seller,
    action: &'static str,
    code: &str,
    before: Option<StockView>,
    after: &StockView,
    correlation: Correlation,
) -> Result<(), ApiError> {
    let draft = AuditDraft::new(
        Some(actor_of_caller(&seller.caller)),
        action,
        format!("sku:{code}"),
    )
    .tenant(Some(seller.tenant))
    .before(before.as_ref().map(stock_summary))
    .after(stock_summary(after))
    .correlation(correlation.0);
    engine.0.directory().audit(vec![draft]).await?;
    Ok(())
}
