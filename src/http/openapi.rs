//! The OpenAPI document served at `/openapi.json`, gathered from the handlers.

use utoipa::OpenApi;

use super::{error, ops, products, reservations, stock};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flashdrop",
        description = "Commerce engine for high-traffic product drops. Errors are application/problem+json with a stable `code`.",
    ),
    paths(
        products::create_product,
        products::get_product,
        stock::get_stock,
        stock::set_stock,
        stock::adjust_stock,
        reservations::reserve,
        reservations::get_reservation,
        reservations::release,
        reservations::commit,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ops::openapi,
    ),
    components(schemas(error::Problem, error::FieldError)),
    tags(
        (name = "products", description = "Products and their SKUs"),
        (name = "stock", description = "On-hand, available, reserved and sold units"),
        (name = "reservations", description = "Holding units for a buyer"),
        (name = "ops", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;
