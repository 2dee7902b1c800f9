//! A product's version history over HTTP: its sellers and platform admins
//! list the kept versions (author, time, correlation id, field-level diff)
//! and read one as it was; its sellers roll back to one, which becomes
//! current again as the next version.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::clock::rfc3339_ms;
use crate::domain::policy;
use crate::domain::product::Product;
use crate::domain::product_version::{ProductVersion, VersionCause};
use crate::domain::{InvalidField, TenantId};
use crate::services::catalog::Author;

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{Authenticated, Correlation, Live, Seller};
use super::input::{numeric_cursor, Json, Query};
use super::products::{
    author_of, edited, if_match, ImageBody, MoneyBody, OptionAxisBody, ProductBody,
};
use super::tenants::page_limit;

/// One field that differs from the previous version.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldChangeBody {
    /// `title`, `images`, `skus[CODE].price`, ...; `skus[CODE]` for a
    /// variant added or removed as a whole.
    pub field: String,
    /// The value before, as JSON; null when the field did not exist.
    #[schema(schema_with = super::schemas::any_json)]
    pub before: Option<Value>,
    /// The value after, as JSON; null when the field no longer exists.
    #[schema(schema_with = super::schemas::any_json)]
    pub after: Option<Value>,
}

/// A version as the history lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionBody {
    pub version: u64,
    /// `created`, `changed` or `rolled_back`.
    pub cause: String,
    /// For a rollback: the version whose content it made current again.
    pub restored_version: Option<u64>,
    /// Who made it, e.g. `user:<id>`; empty for a product of an old format.
    pub author: String,
    pub created_at: String,
    /// The `X-Correlation-ID` of the request that made it (the client's, or
    /// the one the server gave it); absent when unknown (versions of data
    /// written before histories were kept).
    pub correlation_id: Option<String>,
    /// What differs from the version before; empty for version 1 and for the
    /// first version kept of data written before histories were kept.
    pub changes: Vec<FieldChangeBody>,
}

impl VersionBody {
    fn new(entry: &ProductVersion) -> Self {
        let json = |text: &Option<String>| {
            text.as_deref()
                .map(|t| serde_json::from_str(t).unwrap_or(Value::Null))
        };
        Self {
            version: entry.product.version,
            cause: entry.cause.as_str().to_owned(),
            restored_version: match entry.cause {
                VersionCause::RolledBack { restored } => Some(restored),
                _ => None,
            },
            author: entry.product.updated_by.clone(),
            created_at: rfc3339_ms(entry.product.updated_at_ms),
            correlation_id: Some(entry.correlation_id.clone()).filter(|c| !c.is_empty()),
            changes: entry
                .changes
                .iter()
                .map(|c| FieldChangeBody {
                    field: c.field.clone(),
                    before: json(&c.before),
                    after: json(&c.after),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionPageBody {
    /// Newest first.
    pub items: Vec<VersionBody>,
    pub current_version: u64,
    /// The oldest version still kept (`retention.product_versions` are kept).
    pub oldest_version: Option<u64>,
    pub versions_kept: u64,
    /// Pass as `cursor` for the next (older) page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// A variant as it was in a version (stock is not versioned).
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionSkuBody {
    pub sku: String,
    pub price: MoneyBody,
    pub compare_at: Option<i64>,
    pub options: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub low_stock_threshold: u64,
}

/// The product's content as it was in a version.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionProductBody {
    pub id: String,
    pub tenant_id: String,
    pub version: u64,
    pub status: String,
    pub title: String,
    pub description: String,
    pub brand: String,
    pub category: String,
    pub attributes: BTreeMap<String, String>,
    pub images: Vec<ImageBody>,
    pub options: Vec<OptionAxisBody>,
    pub created_at: String,
    pub updated_at: String,
    pub skus: Vec<VersionSkuBody>,
}

impl VersionProductBody {
    fn new(product: &Product) -> Self {
        Self {
            id: uuid::Uuid::from_u128(product.id).to_string(),
            tenant_id: product.tenant.clone(),
            version: product.version,
            status: product.status.as_str().to_owned(),
            title: product.title.clone(),
            description: product.description.clone(),
            brand: product.brand.clone(),
            category: product.category.clone(),
            attributes: product.attributes.iter().cloned().collect(),
            images: product.images.iter().map(ImageBody::from).collect(),
            options: product.options.iter().map(OptionAxisBody::from).collect(),
            created_at: rfc3339_ms(product.created_at_ms),
            updated_at: rfc3339_ms(product.updated_at_ms),
            skus: product
                .skus
                .iter()
                .map(|sku| VersionSkuBody {
                    sku: sku.code.clone(),
                    price: MoneyBody {
                        amount: sku.price.amount,
                        currency: sku.price.currency.clone(),
                    },
                    compare_at: sku.compare_at,
                    options: sku.options.clone(),
                    attributes: sku.attributes.iter().cloned().collect(),
                    low_stock_threshold: sku.low_stock_threshold,
                })
                .collect(),
        }
    }
}

/// One version: how it was made and the product as it was.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDetailBody {
    #[serde(flatten)]
    pub version: VersionBody,
    pub product: VersionProductBody,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionsQuery {
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The version whose content becomes current again, 1..=the current one.
    #[schema(minimum = 1)]
    pub version: u64,
}

fn not_found() -> ApiError {
    ApiError::new(ErrorKind::ProductNotFound, "no such product")
}

fn product_id(raw: &str) -> Result<u128, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.as_u128())
        .map_err(|_| not_found())
}

/// The product's history is for its store's sellers and platform admins;
/// anyone else is told the product has no history to show (404 for another
/// store's seller, as for every other seller route, 403 for shoppers).
fn may_read_history(caller: &Authenticated, product: &Product) -> Result<(), ApiError> {
    let who = caller.0.principal();
    let owner = TenantId::parse(&product.tenant);
    if owner.is_some_and(|owner| policy::sees_store(&who, owner)) {
        return Ok(());
    }
    if who.selling_for().is_some() {
        return Err(not_found());
    }
    Err(ApiError::new(
        ErrorKind::Forbidden,
        "a product's history is for its store's sellers and platform admins",
    ))
}

fn version_number(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .ok()
        .filter(|_| raw.len() <= 19 && raw.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::VersionNotFound,
                format!("{raw:?} is not a version number"),
            )
        })
}

/// A product's versions, newest first, a page at a time (its sellers and
/// platform admins). Only the newest `retention.product_versions` versions
/// are kept.
#[utoipa::path(
    get, path = "/v1/products/{id}/versions", tag = "products",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "product id (UUID)"),
        ("limit" = Option<usize>, Query, nullable = false, minimum = 1, maximum = 100, description = "1..=100, default 50"),
        ("cursor" = Option<String>, Query, nullable = false, pattern = "^[0-9]{1,19}$", description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, body = VersionPageBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "a shopper", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such product, or another store's", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_versions(
    caller: Authenticated,
    engine: Live,
    path: web::Path<String>,
    query: Query<VersionsQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = product_id(&path)?;
    let limit = page_limit(query.limit)?;
    let before = numeric_cursor(query.cursor.as_deref())?;
    let catalog = engine.0.catalog();
    let current = catalog.product(id).ok_or_else(not_found)?;
    may_read_history(&caller, &current)?;
    // One more than asked says whether another page follows.
    let (current, mut page) = catalog.versions(id, before, limit + 1)?;
    let more = page.len() > limit;
    page.truncate(limit);
    let next_cursor = more
        .then(|| page.last().map(|v| v.product.version.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(VersionPageBody {
        items: page.iter().map(VersionBody::new).collect(),
        current_version: current.version,
        oldest_version: catalog.oldest_version_of(id)?,
        versions_kept: catalog.versions_kept(),
        next_cursor,
    }))
}

/// One version of a product: how it was made and the product as it was
/// (its sellers and platform admins).
#[utoipa::path(
    get, path = "/v1/products/{id}/versions/{n}", tag = "products",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "product id (UUID)"),
        ("n" = u64, Path, minimum = 1, description = "version number"),
    ),
    responses(
        (status = 200, body = VersionDetailBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "a shopper", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "product_not_found, or version_not_found (past the current version or older than those kept)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_version(
    caller: Authenticated,
    engine: Live,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, n) = path.into_inner();
    let id = product_id(&id)?;
    let catalog = engine.0.catalog();
    let current = catalog.product(id).ok_or_else(not_found)?;
    may_read_history(&caller, &current)?;
    let (_, entry) = catalog.version(id, version_number(&n)?)?;
    Ok(HttpResponse::Ok().json(VersionDetailBody {
        version: VersionBody::new(&entry),
        product: VersionProductBody::new(&entry.product),
    }))
}

/// Make an earlier version's content current again, as the next version
/// (its sellers); history is never rewritten. Status, fields and variants'
/// prices and attributes come back; stock does not (it is not versioned).
///
/// `If-Match: "<version>"` applies it only to that current version (412
/// `version_mismatch` otherwise). A version with other variants than the
/// current one is 409 `variants_differ` (variants are added and removed by
/// their own routes). Content already current makes no version.
#[utoipa::path(
    post, path = "/v1/products/{id}/rollback", tag = "products",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "product id (UUID)"),
        ("If-Match" = Option<String>, Header, description = "the current version, quoted, or *"),
    ),
    request_body = RollbackBody,
    responses(
        (status = 200, body = ProductBody, headers(("ETag" = String, description = "the new version, quoted"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a seller", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "product_not_found (or another store's), version_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "variants_differ", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "version_mismatch", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn roll_back(
    req: actix_web::HttpRequest,
    seller: Seller,
    engine: Live,
    correlation: Correlation,
    path: web::Path<String>,
    body: Json<RollbackBody>,
) -> Result<HttpResponse, ApiError> {
    let id = product_id(&path)?;
    let expected = if_match(&req)?;
    let version = body.version;
    if version == 0 {
        return Err(InvalidField::new("version", "must be 1 or more").into());
    }
    let by = author_of(&seller);
    let author = Author {
        by: &by,
        correlation_id: correlation.0.as_deref().unwrap_or(""),
    };
    let changed = engine
        .0
        .catalog()
        .roll_back(&seller.tenant_key, id, expected, version, author)
        .await?;
    let before = serde_json::json!({"version": changed.before.version});
    let after = serde_json::json!({
        "version": changed.after.version,
        "restored_version": version,
        "changed": changed.after.changed_fields(&changed.before),
    });
    edited(
        &engine,
        &seller,
        correlation,
        "product.rollback",
        &changed,
        before,
        after,
    )
    .await
}
