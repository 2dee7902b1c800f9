//! Operations routes: liveness, readiness (recovery done), Prometheus metrics
//! and the OpenAPI document.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::AppState;
use super::openapi::ApiDoc;

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
        .body(state.metrics.render())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200)))]
pub async fn openapi() -> HttpResponse {
    use utoipa::OpenApi;
    HttpResponse::Ok().json(ApiDoc::openapi())
}
