//! Product routes: a seller creates a product with its SKUs (variants on
//! option axes, images, brand); anyone reads it with live availability and
//! its version as the `ETag`.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::rfc3339_ms;
use crate::domain::product::{
    Image, NewProduct, NewSku, OptionAxis, Product, ProductPatch, ProductStatus, SkuPatch,
    StatusError,
};
use crate::domain::{policy, StockView, TenantId};

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{AppState, Correlation, Live, MaybeCaller, Seller};
use super::input::Json;
use crate::services::catalog::{Author, Changed};
use crate::services::identity::actor_of_caller;
use crate::services::identity::AuditDraft;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyBody {
    /// Minor units (cents for USD), 0..=10^12.
    #[schema(schema_with = super::schemas::amount)]
    pub amount: i64,
    /// ISO 4217 code, e.g. "USD".
    #[schema(schema_with = super::schemas::currency)]
    pub currency: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSkuBody {
    /// Marketplace-unique SKU code: letters, digits, `. _ : @ -`, at most 64.
    #[schema(schema_with = super::schemas::sku_code)]
    pub sku: String,
    pub price: MoneyBody,
    /// The "was" price in minor units of the price's currency, shown struck
    /// through; above `price.amount`.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub compare_at: Option<i64>,
    /// One value per option axis of the product, in the axes' order (422
    /// when a value is not listed on its axis or two variants are the same).
    #[serde(default)]
    #[schema(schema_with = super::schemas::option_values)]
    pub options: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = super::schemas::attributes)]
    pub attributes: BTreeMap<String, String>,
    /// Defaults to `stock.low_stock_threshold`.
    #[serde(default)]
    #[schema(maximum = 1_000_000_000_000_i64)]
    pub low_stock_threshold: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageBody {
    /// An absolute http or https URL, at most 2,048 characters.
    #[schema(schema_with = super::schemas::image_url)]
    pub url: String,
    /// What the image shows, for screen readers; at most 250 characters.
    #[serde(default)]
    #[schema(
        max_length = 250,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub alt: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionAxisBody {
    /// The axis, e.g. "size"; unique in the product, ignoring case.
    #[schema(schema_with = super::schemas::option_text)]
    pub name: String,
    /// 1..=100 distinct values, e.g. ["S", "M", "L"].
    #[schema(schema_with = super::schemas::option_axis_values)]
    pub values: Vec<String>,
}

impl From<&Image> for ImageBody {
    fn from(image: &Image) -> Self {
        Self {
            url: image.url.clone(),
            alt: image.alt.clone(),
        }
    }
}

impl From<&OptionAxis> for OptionAxisBody {
    fn from(axis: &OptionAxis) -> Self {
        Self {
            name: axis.name.clone(),
            values: axis.values.clone(),
        }
    }
}

/// A new product's status: a `draft` is seen and sold by no one but its
/// sellers until published.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NewStatusBody {
    Draft,
    #[default]
    Active,
}

/// A product's status.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusBody {
    Draft,
    Active,
    Archived,
}

impl From<StatusBody> for ProductStatus {
    fn from(status: StatusBody) -> Self {
        match status {
            StatusBody::Draft => ProductStatus::Draft,
            StatusBody::Active => ProductStatus::Active,
            StatusBody::Archived => ProductStatus::Archived,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProductBody {
    /// A new product is `active` (the default) or `draft`. In a
    /// replacement (`PUT`) it moves along the lifecycle as in `PATCH`, and
    /// left out keeps the product's status.
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(nullable = false)]
    pub status: Option<NewStatusBody>,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub title: String,
    #[serde(default)]
    #[schema(
        max_length = 5000,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub description: String,
    #[serde(default)]
    #[schema(
        max_length = 100,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub brand: String,
    /// The id of a category of `GET /v1/categories`, under which the product
    /// is filed (422 when there is no such category); text that is not a
    /// number is a label that files it under none (products from before
    /// categories).
    #[serde(default)]
    #[schema(
        max_length = 100,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub category: String,
    #[serde(default)]
    #[schema(schema_with = super::schemas::attributes)]
    pub attributes: BTreeMap<String, String>,
    /// In display order, at most 20.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub images: Vec<ImageBody>,
    /// Option axes (at most 3) the variants are defined by; each SKU then
    /// gives one value per axis in `options`.
    #[serde(default)]
    #[schema(max_items = 3)]
    pub options: Vec<OptionAxisBody>,
    /// 1..=100 SKUs; a code listed twice, or already in use, is 409 `sku_exists`.
    #[schema(min_items = 1, max_items = 100)]
    pub skus: Vec<NewSkuBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SkuStockBody {
    pub available: u64,
    pub reserved: u64,
    pub sold: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SkuBody {
    pub sku: String,
    pub price: MoneyBody,
    /// The "was" price in minor units of the price's currency, if any.
    pub compare_at: Option<i64>,
    /// One value per option axis of the product.
    pub options: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub low_stock_threshold: u64,
    pub stock: SkuStockBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductBody {
    pub id: String,
    pub tenant_id: String,
    /// 1 when created; every change makes the next. Also the `ETag`.
    pub version: u64,
    /// `draft`, `active` or `archived`.
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
    pub skus: Vec<SkuBody>,
}

impl ProductBody {
    pub fn new(product: &Product, stock: Vec<StockView>) -> Self {
        let skus = product
            .skus
            .iter()
            .zip(stock)
            .map(|(sku, view)| SkuBody {
                sku: sku.code.clone(),
                price: MoneyBody {
                    amount: sku.price.amount,
                    currency: sku.price.currency.clone(),
                },
                compare_at: sku.compare_at,
                options: sku.options.clone(),
                attributes: sku.attributes.iter().cloned().collect(),
                low_stock_threshold: view.low_stock_threshold,
                stock: SkuStockBody {
                    available: view.available,
                    reserved: view.reserved,
                    sold: view.sold,
                },
            })
            .collect();
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
            skus,
        }
    }
}

/// A submitted product: the status it asks for, if any, and its content.
fn new_product(body: NewProductBody) -> (Option<ProductStatus>, NewProduct) {
    let status = body.status.map(|s| match s {
        NewStatusBody::Draft => ProductStatus::Draft,
        NewStatusBody::Active => ProductStatus::Active,
    });
    let draft = NewProduct {
        status: status.unwrap_or(ProductStatus::Active),
        title: body.title,
        description: body.description,
        brand: body.brand,
        category: body.category,
        attributes: body.attributes,
        images: body
            .images
            .into_iter()
            .map(|i| Image {
                url: i.url,
                alt: i.alt,
            })
            .collect(),
        options: body
            .options
            .into_iter()
            .map(|a| OptionAxis {
                name: a.name,
                values: a.values,
            })
            .collect(),
        skus: body.skus.into_iter().map(new_sku).collect(),
    };
    (status, draft)
}

/// A submitted variant.
pub(super) fn new_sku(sku: NewSkuBody) -> NewSku {
    NewSku {
        code: sku.sku,
        price_amount: sku.price.amount,
        price_currency: sku.price.currency,
        compare_at: sku.compare_at,
        options: sku.options,
        attributes: sku.attributes,
        low_stock_threshold: sku.low_stock_threshold,
    }
}

/// Create a product with its SKUs (seller).
///
/// Rules beyond the schema, answered 422: each SKU gives one value listed on
/// each option axis, in the axes' order, and no two SKUs the same
/// combination; axis names are unique ignoring case; a SKU's `compare_at` is
/// above its price.
#[utoipa::path(
    post, path = "/v1/products", tag = "products",
    security(("bearer" = [])),
    request_body = NewProductBody,
    responses(
        (status = 201, body = ProductBody, headers(("Location" = String), ("ETag" = String, description = "the version, quoted"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a seller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "sku_exists, quota_exceeded", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_product(
    seller: Seller,
    engine: Live,
    correlation: Correlation,
    state: web::Data<AppState>,
    body: Json<NewProductBody>,
) -> Result<HttpResponse, ApiError> {
    let (_, draft) = new_product(body.into_inner());
    let valid = draft
        .validate(state.config.stock.units_max)
        .map_err(ApiError::invalid)?;
    let directory = engine.0.directory();
    let max_products = directory.max_products(seller.tenant);
    let by = author_of(&seller);
    let author = Author {
        by: &by,
        correlation_id: correlation.0.as_deref().unwrap_or(""),
    };
    let product = engine
        .0
        .catalog()
        .create_product(&seller.tenant_key, valid, max_products, author)
        .await?;
    directory
        .audit(vec![AuditDraft::new(
            Some(actor_of_caller(&seller.caller)),
            "product.create",
            format!("product:{}", uuid::Uuid::from_u128(product.id)),
        )
        .tenant(Some(seller.tenant))
        .after(
            serde_json::json!({
                "title": product.title,
                "skus": product.skus.iter().map(|s| s.code.as_str()).collect::<Vec<_>>(),
            })
            .to_string(),
        )
        .correlation(correlation.0)])
        .await?;
    // A new SKU holds nothing yet.
    let stock = product
        .skus
        .iter()
        .map(|sku| StockView {
            available: 0,
            reserved: 0,
            sold: 0,
            warehouses: BTreeMap::new(),
            low_stock_threshold: sku.low_stock_threshold,
        })
        .collect();
    let body = ProductBody::new(&product, stock);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/products/{}", body.id)))
        .insert_header((header::ETAG, etag(&product)))
        .json(body))
}

/// A product with live availability of each SKU.
#[utoipa::path(
    get, path = "/v1/products/{id}", tag = "products",
    params(("id" = String, Path, format = Uuid, description = "product id (UUID)")),
    responses(
        (status = 200, body = ProductBody, headers(("ETag" = String, description = "the version, quoted"))),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_product(
    engine: Live,
    caller: MaybeCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::new(ErrorKind::ProductNotFound, "no such product");
    let id = uuid::Uuid::parse_str(&path).map_err(|_| not_found())?;
    let product = engine
        .0
        .catalog()
        .product(id.as_u128())
        .ok_or_else(not_found)?;
    let who = caller.0.as_ref().map(|c| c.principal());
    let owner = TenantId::parse(&product.tenant).unwrap_or(TenantId(0));
    if !policy::reads_product(who.as_ref(), owner, product.status) {
        return Err(not_found());
    }
    let stock = engine.0.inventory().product_stock(&product).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(&product)))
        .json(ProductBody::new(&product, stock)))
}

/// How a seller is named as a version's author (an audit actor).
pub(super) fn author_of(seller: &Seller) -> String {
    format!(
        "user:{}",
        uuid::Uuid::from_u128(actor_of_caller(&seller.caller).user.0)
    )
}

/// The product's version as a strong entity tag, for `If-Match`.
pub(super) fn etag(product: &Product) -> String {
    format!("\"{}\"", product.version)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkuPatchBody {
    /// The variant to change, by its code.
    #[schema(schema_with = super::schemas::sku_code)]
    pub sku: String,
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(nullable = false)]
    pub price: Option<MoneyBody>,
    /// A new "was" price above the price, or `null` to remove it.
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub compare_at: Option<Option<i64>>,
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(schema_with = super::schemas::option_values)]
    pub options: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(schema_with = super::schemas::attributes)]
    pub attributes: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(nullable = false, maximum = 1_000_000_000_000_i64)]
    pub low_stock_threshold: Option<u64>,
}

/// The fields to change; a field left out keeps its value, maps and lists
/// are replaced whole.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatchBody {
    /// Along the lifecycle: a draft becomes `active` (published) or
    /// `archived`, an active product `archived`; an archived one keeps its
    /// status (422 otherwise).
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(nullable = false)]
    pub status: Option<StatusBody>,
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(
        nullable = false,
        max_length = 5000,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(
        nullable = false,
        max_length = 100,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub brand: Option<String>,
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(
        nullable = false,
        max_length = 100,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub category: Option<String>,
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(schema_with = super::schemas::attributes)]
    pub attributes: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(nullable = false, max_items = 20)]
    pub images: Option<Vec<ImageBody>>,
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(nullable = false, max_items = 3)]
    pub options: Option<Vec<OptionAxisBody>>,
    /// Changes to variants, by code (each at most once).
    #[serde(default)]
    #[schema(max_items = 100)]
    pub skus: Vec<SkuPatchBody>,
}

/// The version `If-Match` names: `None` without the header or with `*`.
/// One strong tag (`"3"`) is accepted; anything else is 422 naming the header.
pub(super) fn if_match(req: &actix_web::HttpRequest) -> Result<Option<u64>, ApiError> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(None);
    }
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|t| t.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(vec![crate::domain::InvalidField::new(
                "If-Match",
                "must be * or one version as a quoted entity tag, e.g. \"3\"",
            )])
        })
}

/// Change a product's fields (its sellers). Every change makes the next
/// version; a change that changes nothing answers the current one.
///
/// `If-Match: "<version>"` applies the change only to that version (412
/// `version_mismatch` otherwise, with `current_version`). Rules beyond the
/// schema, answered 422: a variant named in `skus` exists and is named once,
/// and the changed product meets every rule of a new one (option values per
/// axis, compare-at above the price).
#[utoipa::path(
    patch, path = "/v1/products/{id}", tag = "products",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "product id (UUID)"),
        ("If-Match" = Option<String>, Header, description = "the version to change, quoted, or *"),
    ),
    request_body = ProductPatchBody,
    responses(
        (status = 200, body = ProductBody, headers(("ETag" = String, description = "the new version, quoted"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a seller", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such product in the caller's store", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "version_mismatch", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn patch_product(
    req: actix_web::HttpRequest,
    seller: Seller,
    engine: Live,
    correlation: Correlation,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Json<ProductPatchBody>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::new(ErrorKind::ProductNotFound, "no such product");
    let id = uuid::Uuid::parse_str(&path).map_err(|_| not_found())?;
    let expected = if_match(&req)?;
    let body = body.into_inner();
    let patch = ProductPatch {
        status: body.status.map(ProductStatus::from),
        title: body.title,
        description: body.description,
        brand: body.brand,
        category: body.category,
        attributes: body.attributes,
        images: body.images.map(|images| {
            images
                .into_iter()
                .map(|i| Image {
                    url: i.url,
                    alt: i.alt,
                })
                .collect()
        }),
        options: body.options.map(|axes| {
            axes.into_iter()
                .map(|a| OptionAxis {
                    name: a.name,
                    values: a.values,
                })
                .collect()
        }),
        skus: body
            .skus
            .into_iter()
            .map(|sku| SkuPatch {
                code: sku.sku,
                price: sku.price.map(|p| (p.amount, p.currency)),
                compare_at: sku.compare_at,
                options: sku.options,
                attributes: sku.attributes,
                low_stock_threshold: sku.low_stock_threshold,
            })
            .collect(),
    };
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
            |current| current.patched(patch, limits, &by, now),
        )
        .await?
        .map_err(ApiError::invalid)?;
    let before = serde_json::json!({"version": changed.before.version});
    let after = serde_json::json!({
        "version": changed.after.version,
        "changed": changed.after.changed_fields(&changed.before),
    });
    edited(
        &engine,
        &seller,
        correlation,
        "product.update",
        &changed,
        before,
        after,
    )
    .await
}

/// Replace a product (its sellers): the body is a whole product as in
/// `POST /v1/products`, and every change makes the next version; a body
/// equal to the current product answers it unchanged.
///
/// Variants are matched by code: a listed code the product has keeps its
/// stock, a new code is added (409 `sku_exists` when another product uses
/// it), and a variant left out is removed, which is refused with 409
/// `variant_in_use` while it has open holds, unsettled orders or a drop
/// that has not ended. A SKU without `low_stock_threshold` keeps its own.
/// `status` left out keeps the product's; given, it moves as in `PATCH`.
/// `If-Match: "<version>"` applies the replacement only to that version
/// (412 `version_mismatch` otherwise).
#[utoipa::path(
    put, path = "/v1/products/{id}", tag = "products",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "product id (UUID)"),
        ("If-Match" = Option<String>, Header, description = "the version to replace, quoted, or *"),
    ),
    request_body = NewProductBody,
    responses(
        (status = 200, body = ProductBody, headers(("ETag" = String, description = "the new version, quoted"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a seller", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such product in the caller's store", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "sku_exists, variant_in_use", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "version_mismatch", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn replace_product(
    req: actix_web::HttpRequest,
    seller: Seller,
    engine: Live,
    correlation: Correlation,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Json<NewProductBody>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::new(ErrorKind::ProductNotFound, "no such product");
    let id = uuid::Uuid::parse_str(&path).map_err(|_| not_found())?;
    let expected = if_match(&req)?;
    let (status, replacement) = new_product(body.into_inner());
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
            |current| current.replaced(replacement, status, limits, &by, now),
        )
        .await?
        .map_err(ApiError::invalid)?;
    let codes = |p: &Product| -> Vec<String> { p.skus.iter().map(|s| s.code.clone()).collect() };
    let before = serde_json::json!({
        "version": changed.before.version,
        "skus": codes(&changed.before),
    });
    let after = serde_json::json!({
        "version": changed.after.version,
        "changed": changed.after.changed_fields(&changed.before),
        "skus": codes(&changed.after),
    });
    edited(
        &engine,
        &seller,
        correlation,
        "product.replace",
        &changed,
        before,
        after,
    )
    .await
}

/// The end of every product edit: the edit is audited as `action` (with
/// `before` and `after`) when it made a version, then answered with the
/// product, its stock, and its version as the `ETag`.
pub(super) async fn edited(
    engine: &Live,
    seller: &Seller,
    correlation: Correlation,
    action: &'static str,
    changed: &Changed,
    before: serde_json::Value,
    after: serde_json::Value,
) -> Result<HttpResponse, ApiError> {
    if changed.after.version != changed.before.version {
        let product = uuid::Uuid::from_u128(changed.after.id);
        engine
            .0
            .directory()
            .audit(vec![AuditDraft::new(
                Some(actor_of_caller(&seller.caller)),
                action,
                format!("product:{product}"),
            )
            .tenant(Some(seller.tenant))
            .before(before.to_string())
            .after(after.to_string())
            .correlation(correlation.0)])
            .await?;
    }
    let stock = engine.0.inventory().product_stock(&changed.after).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(&changed.after)))
        .json(ProductBody::new(&changed.after, stock)))
}

/// Archive a product (its sellers): an active or draft product becomes
/// `archived` as its next version. Shoppers still read it, but its SKUs take
/// no new holds (409 `product_not_on_sale`); holds already made can still
/// be sold. An archived product is 409 `invalid_transition`; a rollback to
/// an earlier version brings an earlier status back.
#[utoipa::path(
    post, path = "/v1/products/{id}/archive", tag = "products",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "product id (UUID)"),
        ("If-Match" = Option<String>, Header, description = "the version to archive, quoted, or *"),
    ),
    responses(
        (status = 200, body = ProductBody, headers(("ETag" = String, description = "the new version, quoted"))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a seller", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such product in the caller's store", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "invalid_transition: archived already", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "version_mismatch", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a malformed If-Match", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn archive_product(
    req: actix_web::HttpRequest,
    seller: Seller,
    engine: Live,
    correlation: Correlation,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::new(ErrorKind::ProductNotFound, "no such product");
    let id = uuid::Uuid::parse_str(&path).map_err(|_| not_found())?;
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
            |current| {
                if current.status == ProductStatus::Archived {
                    return Err(StatusError {
                        from: current.status,
                        to: ProductStatus::Archived,
                    });
                }
                current.with_status(ProductStatus::Archived, &by, now)
            },
        )
        .await??;
    let before = serde_json::json!({
        "version": changed.before.version,
        "status": changed.before.status.as_str(),
    });
    let after = serde_json::json!({"version": changed.after.version, "status": "archived"});
    edited(
        &engine,
        &seller,
        correlation,
        "product.archive",
        &changed,
        before,
        after,
    )
    .await
}
