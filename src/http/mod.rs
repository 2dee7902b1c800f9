//! actix-web: the route table, the request middleware (correlation id, latency
//! metrics, access log) and the JSON and path error handlers.

pub mod error;
pub mod extract;
pub mod openapi;
pub mod ops;
pub mod products;
pub mod reservations;
pub mod stock;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use tracing::Instrument;

use error::{ApiError, ErrorKind};
use extract::CORRELATION_HEADER;

/// Routes every resource; `max_body_bytes` bounds JSON bodies.
pub fn routes(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_body_bytes)
            .error_handler(extract::json_error),
    )
    .app_data(web::PayloadConfig::default().limit(max_body_bytes))
    .app_data(web::PathConfig::default().error_handler(extract::path_error))
    .service(resource("/v1/products").route(web::post().to(products::create_product)))
    .service(resource("/v1/products/{id}").route(web::get().to(products::get_product)))
    .service(
        resource("/v1/skus/{sku}/stock")
            .route(web::get().to(stock::get_stock))
            .route(web::put().to(stock::set_stock)),
    )
    .service(resource("/v1/skus/{sku}/stock/adjust").route(web::post().to(stock::adjust_stock)))
    .service(resource("/v1/skus/{sku}/reservations").route(web::post().to(reservations::reserve)))
    .service(
        resource("/v1/reservations/{id}")
            .route(web::get().to(reservations::get_reservation))
            .route(web::delete().to(reservations::release)),
    )
    .service(resource("/v1/reservations/{id}/commit").route(web::post().to(reservations::commit)))
    .service(resource("/healthz").route(web::get().to(ops::healthz)))
    .service(resource("/readyz").route(web::get().to(ops::readyz)))
    .service(resource("/metrics").route(web::get().to(ops::metrics)))
    .service(resource("/openapi.json").route(web::get().to(ops::openapi)))
    .default_service(web::to(not_found));
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorKind::NotFound,
        "no route matches this path",
    ))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorKind::MethodNotAllowed,
        "this route does not accept that method",
    ))
}

/// A client's `X-Correlation-ID` when sane, else a fresh one.
fn correlation_id(req: &ServiceRequest) -> HeaderValue {
    req.headers()
        .get(CORRELATION_HEADER)
        .filter(|v| {
            let bytes = v.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 128
                && bytes.iter().all(|b| (0x21..=0x7e).contains(b))
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("-"))
        })
}

/// Correlation id in and out, a span for the request, latency by route and status.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let correlation = correlation_id(&req);
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = %route,
        correlation_id = correlation.to_str().unwrap_or("-"),
    );
    let mut response = next.call(req).instrument(span.clone()).await?;
    let status = response.status();
    response
        .headers_mut()
        .insert(HeaderName::from_static(CORRELATION_HEADER), correlation);
    let elapsed = started.elapsed();
    metrics::histogram!(
        "flashdrop_http_request_duration_seconds",
        "route" => route,
        "method" => method,
        "status" => status.as_str().to_owned(),
    )
    .record(elapsed.as_secs_f64());
    let _entered = span.enter();
    if status.is_server_error() {
        tracing::warn!(
            status = status.as_u16(),
            us = elapsed.as_micros() as u64,
            "request failed"
        );
    } else {
        tracing::debug!(
            status = status.as_u16(),
            us = elapsed.as_micros() as u64,
            "request"
        );
    }
    Ok(response)
}
