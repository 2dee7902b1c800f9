//! Creators (stores, as shoppers see them) and follows. A creator's id is its
//! store id; followers are kept so drop announcements can reach them.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::identity::{id_text, parse_id};
use crate::domain::{policy, InvalidField, TenantId};

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{Authenticated, Correlation, Live, MaybeCaller};
use super::input::Query;
use super::products::ProductBody;
use super::tenants::{page_limit, BrandingBody, PageQuery};

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatorBody {
    pub id: String,
    pub name: String,
    pub branding: BrandingBody,
    pub followers: usize,
    pub products: u32,
    /// What a checkout may name for this store in `shipping` (the first is
    /// the default; none: it ships free).
    pub shipping_methods: Vec<super::tenants::ShippingMethodBody>,
    /// Whether its prices include tax, and its rate in basis points.
    pub prices_include_tax: bool,
    pub tax_rate_bp: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatorProductsBody {
    pub items: Vec<ProductBody>,
    pub next_cursor: Option<String>,
}

fn creator_id(raw: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(raw).ok_or_else(|| ApiError::new(ErrorKind::CreatorNotFound, "no such creator"))
}

/// Follow a creator (idempotent).
#[utoipa::path(
    post, path = "/v1/users/{id}/follow", tag = "social",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "the creator's id (its store id)")),
    responses(
        (status = 204, description = "following"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "creator_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "limit_exceeded: following too many", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn follow(
    engine: Live,
    caller: Authenticated,
    correlation: Correlation,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let creator = creator_id(&path)?;
    engine
        .0
        .directory()
        .set_follow(&caller.0, creator, true, correlation.0)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Stop following a creator (idempotent).
#[utoipa::path(
    delete, path = "/v1/users/{id}/follow", tag = "social",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "the creator's id (its store id)")),
    responses(
        (status = 204, description = "not following"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn unfollow(
    engine: Live,
    caller: Authenticated,
    correlation: Correlation,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let creator = creator_id(&path)?;
    engine
        .0
        .directory()
        .set_follow(&caller.0, creator, false, correlation.0)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A creator's public profile.
#[utoipa::path(
    get, path = "/v1/creators/{id}", tag = "social",
    params(("id" = String, Path, format = Uuid)),
    responses(
        (status = 200, body = CreatorBody),
        (status = 404, description = "unknown or suspended", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_creator(engine: Live, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = creator_id(&path)?;
    let (tenant, followers) = engine
        .0
        .directory()
        .creator(id)
        .ok_or_else(|| ApiError::new(ErrorKind::CreatorNotFound, "no such creator"))?;
    Ok(HttpResponse::Ok().json(CreatorBody {
        id: id_text(tenant.id),
        name: tenant.name,
        branding: BrandingBody {
            logo_url: tenant.branding.logo_url,
            primary_color: tenant.branding.primary_color,
            accent_color: tenant.branding.accent_color,
        },
        followers,
        products: engine.0.catalog().product_count_of(&id_text(id)),
        shipping_methods: tenant.shipping.methods.iter().map(Into::into).collect(),
        prices_include_tax: tenant.tax.prices_include_tax,
        tax_rate_bp: tenant.tax.default_rate_bp,
    }))
}

/// A creator's products with live availability, oldest first.
#[utoipa::path(
    get, path = "/v1/creators/{id}/products", tag = "social",
    params(("id" = String, Path, format = Uuid), PageQuery),
    responses(
        (status = 200, body = CreatorProductsBody),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn creator_products(
    engine: Live,
    caller: MaybeCaller,
    path: web::Path<String>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = creator_id(&path)?;
    if engine.0.directory().creator(id).is_none() {
        return Err(ApiError::new(ErrorKind::CreatorNotFound, "no such creator"));
    }
    let who = caller.0.as_ref().map(|c| c.principal());
    let limit = page_limit(query.limit)?;
    let after = match &query.cursor {
        Some(c) => Some(parse_id(c).ok_or_else(|| InvalidField::new("cursor", "is not valid"))?),
        None => None,
    };
    let products = engine
        .0
        .catalog()
        .products_of(&id_text(id), after, limit, |p| {
            policy::lists_product(who.as_ref(), id, p.status)
        });
    let mut items = Vec::with_capacity(products.len());
    for product in &products {
        let stock = engine.0.inventory().product_stock(product).await?;
        items.push(ProductBody::new(product, stock));
    }
    let next_cursor = (products.len() == limit)
        .then(|| products.last().map(|p| id_text(p.id)))
        .flatten();
    Ok(HttpResponse::Ok().json(CreatorProductsBody { items, next_cursor }))
}
