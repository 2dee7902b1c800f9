//! Operations routes: liveness, readiness (recovery done), Prometheus metrics,
//! the OpenAPI document, and an admin's SKU restart.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{AppState, Authenticated, Correlation, Live};
use super::stock::sku_code;
use crate::actors::directory::actor_of_caller;
use crate::actors::AuditDraft;
use crate::domain::identity::parse_id;

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

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200)))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::openapi::document())
}

/// What the docs page may load: Scalar's script and styles from its CDN, this
/// server's document; nothing may frame it.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self' https://cdn.jsdelivr.net; \
    style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; font-src https://cdn.jsdelivr.net data:; \
    img-src 'self' data: https:; connect-src 'self'; frame-ancestors 'none'";

/// Interactive documentation of this API (Scalar), built from `/openapi.json`.
#[utoipa::path(
    get, path = "/docs", tag = "ops",
    responses((status = 200, description = "the documentation page", content_type = "text/html"))
)]
pub async fn docs() -> HttpResponse {
    static HTML: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let html = HTML
        .get_or_init(|| utoipa_scalar::Scalar::new(super::openapi::document().clone()).to_html());
    let mut page = HttpResponse::Ok();
    page.content_type("text/html; charset=utf-8")
        .insert_header((actix_web::http::header::CONTENT_SECURITY_POLICY, DOCS_CSP))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-cache"));
    for header in super::security::PAGE_HEADERS {
        page.insert_header(header);
    }
    page.body(html.as_str())
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
    let (info, before) = engine.0.stock(&code).await?;
    engine.0.restart_sku(&code).await?;
    let (_, after) = engine.0.stock(&code).await?;
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
        .tenant(parse_id(info.tenant()))
        .before(summary(&before))
        .after(summary(&after))
        .correlation(correlation.0)])
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
