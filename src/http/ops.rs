//! Operations routes: liveness, readiness (recovery done), Prometheus metrics,
//! the OpenAPI document, and an admin's SKU restart.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{AppState, Authenticated, Correlation, Live};
use super::stock::sku_code;
use crate::domain::TenantId;
use crate::services::identity::actor_of_caller;
use crate::services::identity::AuditDraft;

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: recovery is done and requests are served.
#[utoipa::path(
    get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "ready, with recovery figures"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let engine = state
        .engine
        .get()
        .ok_or_else(|| ApiError::new(ErrorKind::NotReady, "recovery is still running"))?;
    let recovery = engine.recovery_stats();
    Ok(HttpResponse::Ok().json(json!({
        "status": "ready",
        "recovery": {
            "wal_batches": recovery.batches,
            "wal_records": recovery.records,
            "elapsed_ms": recovery.elapsed.as_millis() as u64,
        },
    })))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::render(&state.metrics))
}

/// Drop a SKU's memory and rebuild it from its snapshot and the WAL, as a
/// supervisor restart does (platform admins; for an operator who suspects a
/// SKU's memory).
#[utoipa::path(
    post, path = "/v1/admin/skus/{sku}/restart", tag = "ops",
    security(("bearer" = [])),
    params(("sku" = String, Path, pattern = "^[A-Za-z0-9._:@-]{1,64}$", description = "SKU code")),
    responses(
        (status = 204, description = "rebuilt"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn restart_sku(
    engine: Live,
    caller: Authenticated,
    correlation: Correlation,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if !crate::domain::policy::operates_platform(&caller.0.principal()) {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "only platform admins restart SKUs",
        ));
    }
    let code = sku_code(&path)?;
    let (info, before) = engine.0.inventory().stock(&code).await?;
    engine.0.inventory().restart_sku(&code).await?;
    let (_, after) = engine.0.inventory().stock(&code).await?;
    let summary = |v: &crate::domain::StockView| {
        json!({"available": v.available, "reserved": v.reserved, "sold": v.sold}).to_string()
    };
    engine
        .0
        .directory()
        .audit(vec![AuditDraft::new(
            Some(actor_of_caller(&caller.0)),
            "sku.restart",
            format!("sku:{}", info.code()),
        )
        .tenant(TenantId::parse(info.tenant()))
        .before(summary(&before))
        .after(summary(&after))
        .correlation(correlation.0)])
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
