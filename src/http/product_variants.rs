//! A product's variants over HTTP: its sellers add a SKU to it or remove
//! one, each as the product's next version. A removed SKU must hold
//! nothing: no open hold, no unsettled order, no drop that has not ended.

use actix_web::{web, HttpResponse};

use crate::domain::product::VariantError;
use crate::services::catalog::Author;

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{AppState, Correlation, Live, Seller};
use super::input::Json;
use super::products::{author_of, edited, if_match, new_sku, NewSkuBody, ProductBody};

fn product_not_found() -> ApiError {
    ApiError::new(ErrorKind::ProductNotFound, "no such product")
}

/// Add a variant to a product (its sellers), as its next version.
///
/// The variant meets every rule of a new product's SKU: one listed value
/// per option axis, no two variants the same combination, `compare_at`
/// above the price (422), at most 100 variants. A code the product has is
/// 422; one another product uses is 409 `sku_exists`. The new SKU starts
/// with no stock. `If-Match: "<version>"` adds it only to that version (412
/// `version_mismatch` otherwise).
#[utoipa::path(
    post, path = "/v1/products/{id}/variants", tag = "products",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "product id (UUID)"),
        ("If-Match" = Option<String>, Header, description = "the version to change, quoted, or *"),
    ),
    request_body = NewSkuBody,
    responses(
        (status = 200, description = "the product with the new variant", body = ProductBody, headers(("ETag" = String, description = "the new version, quoted"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a seller", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such product in the caller's store", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "sku_exists", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "version_mismatch", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn add_variant(
    req: actix_web::HttpRequest,
    seller: Seller,
    engine: Live,
    correlation: Correlation,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Json<NewSkuBody>,
) -> Result<HttpResponse, ApiError> {
    let id = uuid::Uuid::parse_str(&path).map_err(|_| product_not_found())?;
    let expected = if_match(&req)?;
    let variant = new_sku(body.into_inner());
    let code = variant.code.clone();
    let by = author_of(&seller);
    let author = Author {
        by: &by,
        correlation_id: correlation.0.as_deref().unwrap_or(""),
    };
    let now = engine.0.clock().now_ms();
    let limits = state.config.edit_limits();
    let changed = engine
        .0
        .catalog()
        .change_product(
            &seller.tenant_key,
            id.as_u128(),
            expected,
            author,
            |current| current.with_variant(variant, limits, &by, now).map(Some),
        )
        .await?
        .map_err(ApiError::invalid)?;
    let before = serde_json::json!({"version": changed.before.version});
    let after = serde_json::json!({"version": changed.after.version, "sku": code});
    edited(
        &engine,
        &seller,
        correlation,
        "product.variant.add",
        &changed,
        before,
        after,
    )
    .await
}

/// Remove a variant from a product (its sellers), as its next version.
///
/// Refused with 409 `variant_in_use` while the SKU has open holds
/// (`open_holds`), unsettled orders (`unsettled_orders`: not yet paid and
/// committed, cancelled, or with a return or restock still to do) or sells
/// through a drop that has not ended (`drop_id`); 409 `last_variant` for
/// the product's only variant (archive the product instead). Its stock is
/// forgotten and its code may be used again. Carts that hold the code
/// answer 404 `sku_not_found` at checkout. `If-Match: "<version>"` removes
/// it only from that version (412 `version_mismatch` otherwise).
#[utoipa::path(
    delete, path = "/v1/products/{id}/variants/{sku}", tag = "products",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "product id (UUID)"),
        ("sku" = String, Path, description = "the variant's SKU code"),
        ("If-Match" = Option<String>, Header, description = "the version to change, quoted, or *"),
    ),
    responses(
        (status = 200, description = "the product without the variant", body = ProductBody, headers(("ETag" = String, description = "the new version, quoted"))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a seller", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "product_not_found (or another store's), sku_not_found (not a variant of it)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "variant_in_use, last_variant", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "version_mismatch", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a malformed If-Match", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove_variant(
    req: actix_web::HttpRequest,
    seller: Seller,
    engine: Live,
    correlation: Correlation,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, code) = path.into_inner();
    let id = uuid::Uuid::parse_str(&id).map_err(|_| product_not_found())?;
    let expected = if_match(&req)?;
    let by = author_of(&seller);
    let author = Author {
        by: &by,
        correlation_id: correlation.0.as_deref().unwrap_or(""),
    };
    let now = engine.0.clock().now_ms();
    let changed = engine
        .0
        .catalog()
        .change_product(
            &seller.tenant_key,
            id.as_u128(),
            expected,
            author,
            |current| current.without_variant(&code, &by, now).map(Some),
        )
        .await?
        .map_err(|error| match error {
            VariantError::NoSuchVariant => ApiError::new(
                ErrorKind::SkuNotFound,
                format!("the product has no variant {code}"),
            ),
            VariantError::LastVariant => ApiError::new(ErrorKind::LastVariant, error.to_string()),
        })?;
    let before = serde_json::json!({"version": changed.before.version, "sku": code});
    let after = serde_json::json!({"version": changed.after.version});
    edited(
        &engine,
        &seller,
        correlation,
        "product.variant.remove",
        &changed,
        before,
        after,
    )
    .await
}
