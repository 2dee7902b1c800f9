//! actix-web: the route table, the request middleware (correlation id, latency
//! metrics, access log) and the JSON and path error handlers.

pub mod admission;
pub mod audit;
pub mod auth;
pub mod browse;
pub mod cart;
pub mod categories;
pub mod drops;
pub mod error;
pub mod extract;
pub mod imports;
pub mod input;
pub mod notifications;
pub mod openapi;
pub mod ops;
pub mod orders;
pub mod product_variants;
pub mod product_versions;
pub mod products;
pub mod reservations;
pub mod schemas;
pub mod security;
pub mod social;
pub mod stock;
pub mod tenants;
pub mod ws;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::Service;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};
use tracing::Instrument;

use error::{ApiError, ErrorKind};
use extract::CORRELATION_HEADER;

/// Routes every resource; `max_body_bytes` bounds JSON bodies. The hot routes
/// come first: actix tries resources in order, each dynamic one with a regex.
pub fn routes(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(web::PayloadConfig::default().limit(max_body_bytes))
        .app_data(web::PathConfig::default().error_handler(extract::path_error))
        .service(
            resource("/v1/skus/{sku}/reservations")
                .route(web::post().to(reservations::reserve))
                .route(web::get().to(reservations::list_holds)),
        )
        .service(
            resource("/v1/reservations/{id}")
                .route(web::get().to(reservations::get_reservation))
                .route(web::delete().to(reservations::release)),
        )
        .service(
            resource("/v1/reservations/{id}/commit").route(web::post().to(reservations::commit)),
        )
        .service(
            resource("/v1/skus/{sku}/stock")
                .route(web::get().to(stock::get_stock))
                .route(web::put().to(stock::set_stock)),
        )
        .service(resource("/v1/skus/{sku}/stock/adjust").route(web::post().to(stock::adjust_stock)))
        .service(resource("/v1/ws").route(web::get().to(ws::connect)))
        .service(resource("/v1/drops").route(web::post().to(drops::create_drop)))
        .service(resource("/v1/drops/upcoming").route(web::get().to(drops::upcoming)))
        .service(
            resource("/v1/drops/{id}")
                .route(web::get().to(drops::get_drop))
                .route(web::patch().to(drops::edit_drop)),
        )
        .service(resource("/v1/drops/{id}/cancel").route(web::post().to(drops::cancel_drop)))
        .service(
            resource("/v1/drops/{id}/queue")
                .route(web::post().to(drops::join_queue))
                .route(web::get().to(drops::queue_standing)),
        )
        .service(resource("/v1/cart").route(web::get().to(cart::get_cart)))
        .service(resource("/v1/cart/items").route(web::post().to(cart::add_item)))
        .service(
            resource("/v1/cart/items/{sku}")
                .route(web::put().to(cart::set_item))
                .route(web::delete().to(cart::remove_item)),
        )
        .service(resource("/v1/cart/checkout").route(web::post().to(cart::checkout)))
        .service(
            resource("/v1/orders")
                .route(web::post().to(orders::create_order))
                .route(web::get().to(orders::list_orders)),
        )
        .service(resource("/v1/orders/{id}").route(web::get().to(orders::get_order)))
        .service(resource("/v1/orders/{id}/cancel").route(web::post().to(orders::cancel_order)))
        .service(resource("/v1/orders/{id}/pay").route(web::post().to(orders::pay_order)))
        .service(resource("/v1/orders/{id}/returns").route(web::post().to(orders::request_return)))
        .service(resource("/v1/orders/{id}/fulfillment").route(web::post().to(orders::fulfil)))
        .service(resource("/v1/payments/webhook").route(web::post().to(orders::payment_webhook)))
        .service(
            resource("/v1/admin/notifications/dead-letters")
                .route(web::get().to(notifications::dead_letters)),
        )
        .service(
            resource("/v1/admin/notifications/dead-letters/{id}/retry")
                .route(web::post().to(notifications::retry)),
        )
        .service(
            resource("/v1/admin/payments/sandbox").route(web::get().to(orders::sandbox_ledger)),
        )
        .service(
            resource("/v1/categories")
                .route(web::get().to(categories::tree))
                .route(web::post().to(categories::create)),
        )
        .service(
            resource("/v1/categories/{id}")
                .route(web::patch().to(categories::update))
                .route(web::delete().to(categories::delete)),
        )
        .service(
            resource("/v1/products")
                .route(web::get().to(browse::browse_products))
                .route(web::post().to(products::create_product)),
        )
        .service(resource("/v1/products/import").route(web::post().to(imports::import_products)))
        .service(resource("/v1/imports/{id}").route(web::get().to(imports::get_import)))
        .service(
            resource("/v1/products/{id}")
                .route(web::get().to(products::get_product))
                .route(web::put().to(products::replace_product))
                .route(web::patch().to(products::patch_product)),
        )
        .service(
            resource("/v1/products/{id}/variants")
                .route(web::post().to(product_variants::add_variant)),
        )
        .service(
            resource("/v1/products/{id}/variants/{sku}")
                .route(web::delete().to(product_variants::remove_variant)),
        )
        .service(
            resource("/v1/products/{id}/archive").route(web::post().to(products::archive_product)),
        )
        .service(
            resource("/v1/products/{id}/versions")
                .route(web::get().to(product_versions::list_versions)),
        )
        .service(
            resource("/v1/products/{id}/versions/{n}")
                .route(web::get().to(product_versions::get_version)),
        )
        .service(
            resource("/v1/products/{id}/rollback")
                .route(web::post().to(product_versions::roll_back)),
        )
        .service(resource("/v1/auth/register").route(web::post().to(auth::register)))
        .service(resource("/v1/auth/login").route(web::post().to(auth::login)))
        .service(resource("/v1/auth/refresh").route(web::post().to(auth::refresh)))
        .service(resource("/v1/auth/logout").route(web::post().to(auth::logout)))
        .service(resource("/v1/auth/me").route(web::get().to(auth::me)))
        .service(
            resource("/v1/tenants")
                .route(web::post().to(tenants::onboard))
                .route(web::get().to(tenants::list_tenants)),
        )
        .service(
            resource("/v1/tenants/{id}")
                .route(web::get().to(tenants::get_tenant))
                .route(web::put().to(tenants::update_tenant)),
        )
        .service(
            resource("/v1/tenants/{id}/staff")
                .route(web::post().to(tenants::invite))
                .route(web::get().to(tenants::list_staff)),
        )
        .service(
            resource("/v1/tenants/{id}/staff/{user_id}")
                .route(web::delete().to(tenants::remove_staff)),
        )
        .service(
            resource("/v1/invitations/accept").route(web::post().to(tenants::accept_invitation)),
        )
        .service(
            resource("/v1/users/{id}/follow")
                .route(web::post().to(social::follow))
                .route(web::delete().to(social::unfollow)),
        )
        .service(resource("/v1/creators/{id}").route(web::get().to(social::get_creator)))
        .service(
            resource("/v1/creators/{id}/products").route(web::get().to(social::creator_products)),
        )
        .service(resource("/v1/admin/audit").route(web::get().to(audit::list_audit)))
        .service(resource("/v1/admin/skus/{sku}/restart").route(web::post().to(ops::restart_sku)))
        .service(resource("/healthz").route(web::get().to(ops::healthz)))
        .service(resource("/readyz").route(web::get().to(ops::readyz)))
        .service(resource("/metrics").route(web::get().to(ops::metrics)))
        .service(resource("/openapi.json").route(web::get().to(openapi::openapi)))
        .service(resource("/docs").route(web::get().to(openapi::docs)))
        .default_service(web::to(not_found));
}

/// The route pattern a request matched, for metrics and logs. Set by the
/// resource itself, so the middleware need not match the path a second time.
#[derive(Clone, Copy)]
struct RouteLabel(&'static str);

fn resource(
    path: &'static str,
) -> actix_web::Resource<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::resource(path)
        .default_service(web::to(method_not_allowed))
        .wrap_fn(move |req, service| {
            req.extensions_mut().insert(RouteLabel(path));
            service.call(req)
        })
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorKind::NotFound,
        "no route matches this path",
    ))
}

/// 405 with the `Allow` header RFC 9110 requires: the methods `/openapi.json`
/// lists for the route (and `HEAD` wherever `GET` is).
async fn method_not_allowed(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let route = req.extensions().get::<RouteLabel>().map(|label| label.0);
    let allow = route.and_then(openapi::allowed_methods).unwrap_or_default();
    let mut error = ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("this route accepts {allow}"),
    );
    error.allow = Some(allow);
    Err(error)
}

/// A client's `X-Correlation-ID` when sane, else a fresh random one (128 bits
/// from a thread-local generator: no system call per request).
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
            HeaderValue::from_str(&format!("{:032x}", fastrand::u128(..)))
                .unwrap_or_else(|_| HeaderValue::from_static("-"))
        })
}

/// Correlation id in and out, a span for the request, latency by route and
/// status, and the security headers every answer needs.
pub async fn observe(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let correlation = correlation_id(&req);
    let method = req.method().clone();
    if method == Method::HEAD {
        // Served as GET; the connection sends the head without the body.
        req.head_mut().method = Method::GET;
    }
    req.extensions_mut()
        .insert(extract::CorrelationId(correlation.clone()));
    let span = tracing::info_span!(
        "request",
        method = %method,
        path = req.path(),
        correlation_id = correlation.to_str().unwrap_or("-"),
    );
    let mut response = next.call(req).instrument(span.clone()).await?;
    let status = response.status();
    let route = response
        .request()
        .extensions()
        .get::<RouteLabel>()
        .map_or("unmatched", |label| label.0);
    let headers = response.headers_mut();
    headers.insert(HeaderName::from_static(CORRELATION_HEADER), correlation);
    security::add_headers(headers, method == Method::GET || method == Method::HEAD);
    let elapsed = started.elapsed();
    metrics::histogram!(
        "flashdrop_http_request_duration_seconds",
        "route" => route,
        "method" => method.as_str().to_owned(),
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
