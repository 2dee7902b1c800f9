//! The OpenAPI document served at `/openapi.json`, gathered from the handlers.

use actix_web::HttpResponse;
use utoipa::OpenApi;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::Modify;

use super::{
    audit, auth, browse, cart, categories, drops, error, imports, notifications, ops, orders,
    product_variants, product_versions, products, reservations, social, stock, tenants, ws,
};

/// The problems every route of a kind can answer, added to each operation
/// that does not describe them itself: a body (400, 413, 415, 422), a query
/// (422), a path parameter (404), a bearer token (401), and everyone but
/// liveness (503 while recovering or past `admission.max_in_flight`).
struct ProblemResponses;

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let parameters = operation.parameters.as_deref().unwrap_or_default();
                let in_path = parameters
                    .iter()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Path));
                let in_query = parameters
                    .iter()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Query));
                let in_header = parameters
                    .iter()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Header));
                let secured = operation
                    .security
                    .as_ref()
                    .is_some_and(|requirements| !requirements.is_empty());
                let mut add = |status: &str, description: &str| {
                    let responses = &mut operation.responses.responses;
                    if !responses.contains_key(status) {
                        responses.insert(status.to_owned(), problem(description));
                    }
                };
                if operation.request_body.is_some() {
                    add("400", "malformed_json: the body is not JSON");
                    add(
                        "413",
                        "payload_too_large: the body is over server.max_body_bytes",
                    );
                    add(
                        "415",
                        "unsupported_media_type: the body is not application/json",
                    );
                    add("422", "validation_failed: a field is missing, unknown or out of range (`errors` names each)");
                }
                if in_query {
                    add("422", "validation_failed: a query parameter is unknown or out of range (`errors` names each)");
                }
                if in_header {
                    add(
                        "422",
                        "validation_failed: a header is not valid (`errors` names it)",
                    );
                }
                if in_path {
                    add("404", "nothing by that name, or not yours to see");
                }
                if secured {
                    add("401", "unauthenticated: no bearer token, or one that is expired, tampered or revoked");
                }
                if path != "/healthz" {
                    add(
                        "503",
                        "not_ready (recovery is running) or overloaded; see Retry-After",
                    );
                }
            }
        }
    }
}

/// A response with a problem+json body.
fn problem(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

/// Declares the bearer-token scheme the routes refer to as `bearer`.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from /v1/auth/login, /refresh, /v1/tenants or /v1/invitations/accept",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flashdrop",
        description = "Commerce engine for high-traffic product drops. Errors are application/problem+json with a stable `code`.",
    ),
    modifiers(&BearerAuth, &ProblemResponses),
    paths(
        auth::register,
        auth::login,
        auth::refresh,
        auth::logout,
        auth::me,
        tenants::onboard,
        tenants::list_tenants,
        tenants::get_tenant,
        tenants::update_tenant,
        tenants::invite,
        tenants::list_staff,
        tenants::remove_staff,
        tenants::accept_invitation,
        social::follow,
        social::unfollow,
        social::get_creator,
        social::creator_products,
        audit::list_audit,
        browse::browse_products,
        products::create_product,
        imports::import_products,
        imports::get_import,
        products::get_product,
        products::replace_product,
        products::patch_product,
        products::archive_product,
        product_variants::add_variant,
        product_variants::remove_variant,
        categories::tree,
        categories::create,
        categories::update,
        categories::delete,
        product_versions::list_versions,
        product_versions::get_version,
        product_versions::roll_back,
        stock::get_stock,
        stock::set_stock,
        stock::adjust_stock,
        reservations::reserve,
        reservations::list_holds,
        reservations::get_reservation,
        reservations::release,
        reservations::commit,
        drops::create_drop,
        drops::upcoming,
        drops::get_drop,
        drops::cancel_drop,
        drops::edit_drop,
        drops::join_queue,
        drops::queue_standing,
        cart::get_cart,
        cart::add_item,
        cart::set_item,
        cart::remove_item,
        cart::checkout,
        orders::create_order,
        orders::list_orders,
        orders::get_order,
        orders::cancel_order,
        orders::pay_order,
        orders::request_return,
        orders::fulfil,
        orders::payment_webhook,
        orders::sandbox_ledger,
        notifications::dead_letters,
        notifications::retry,
        ws::connect,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        openapi,
        docs,
        ops::restart_sku,
    ),
    components(schemas(error::Problem, error::FieldError)),
    tags(
        (name = "auth", description = "Accounts, sessions and tokens"),
        (name = "tenants", description = "Stores, their settings, plan and staff"),
        (name = "social", description = "Creators and follows"),
        (name = "audit", description = "Who changed what, when"),
        (name = "products", description = "Products and their SKUs"),
        (name = "categories", description = "The platform's category tree"),
        (name = "stock", description = "On-hand, available, reserved and sold units"),
        (name = "reservations", description = "Holding units for a buyer"),
        (name = "drops", description = "Scheduled releases, their lifecycle and waiting rooms"),
        (name = "cart", description = "A shopper's cart across sellers, and checkout"),
        (name = "orders", description = "Orders, their checkout saga, fulfilment and returns"),
        (name = "payments", description = "Payment provider webhooks and the sandbox provider's books"),
        (name = "live", description = "WebSocket: live stock, drop announcements, queue and order messages"),
        (name = "ops", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// The methods a route pattern accepts, as an `Allow` value: what the
/// document lists, and `HEAD` wherever `GET` is.
pub fn allowed_methods(route: &str) -> Option<String> {
    static ALLOW: std::sync::OnceLock<std::collections::HashMap<String, String>> =
        std::sync::OnceLock::new();
    ALLOW
        .get_or_init(|| {
            document()
                .paths
                .paths
                .iter()
                .map(|(path, item)| {
                    let mut methods = Vec::new();
                    for (method, operation) in [
                        ("GET", &item.get),
                        ("HEAD", &item.get),
                        ("POST", &item.post),
                        ("PUT", &item.put),
                        ("PATCH", &item.patch),
                        ("DELETE", &item.delete),
                    ] {
                        if operation.is_some() {
                            methods.push(method);
                        }
                    }
                    (path.clone(), methods.join(", "))
                })
                .collect()
        })
        .get(route)
        .cloned()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200)))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(document())
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
    let html = HTML.get_or_init(|| utoipa_scalar::Scalar::new(document().clone()).to_html());
    let mut page = HttpResponse::Ok();
    page.content_type("text/html; charset=utf-8")
        .insert_header((actix_web::http::header::CONTENT_SECURITY_POLICY, DOCS_CSP))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-cache"));
    for header in super::security::PAGE_HEADERS {
        page.insert_header(header);
    }
    page.body(html.as_str())
}
