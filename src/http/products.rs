//! Product routes: a seller creates a product with its SKUs; anyone reads it
//! with live availability.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::rfc3339_ms;
use crate::domain::product::{NewProduct, NewSku, Product};
use crate::domain::StockView;

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{AppState, Correlation, Live, Seller};
use super::input::Json;
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
    #[serde(default)]
    #[schema(schema_with = super::schemas::attributes)]
    pub attributes: BTreeMap<String, String>,
    /// Defaults to `stock.low_stock_threshold`.
    #[serde(default)]
    #[schema(maximum = 1_000_000_000_000_i64)]
    pub low_stock_threshold: Option<u64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProductBody {
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
    pub category: String,
    #[serde(default)]
    #[schema(schema_with = super::schemas::attributes)]
    pub attributes: BTreeMap<String, String>,
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
    pub attributes: BTreeMap<String, String>,
    pub low_stock_threshold: u64,
    pub stock: SkuStockBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductBody {
    pub id: String,
    pub tenant_id: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub attributes: BTreeMap<String, String>,
    pub created_at: String,
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
            title: product.title.clone(),
            description: product.description.clone(),
            category: product.category.clone(),
            attributes: product.attributes.iter().cloned().collect(),
            created_at: rfc3339_ms(product.created_at_ms),
            skus,
        }
    }
}

/// Create a product with its SKUs (seller).
#[utoipa::path(
    post, path = "/v1/products", tag = "products",
    security(("bearer" = [])),
    request_body = NewProductBody,
    responses(
        (status = 201, body = ProductBody, headers(("Location" = String))),
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
    let body = body.into_inner();
    let draft = NewProduct {
        title: body.title,
        description: body.description,
        category: body.category,
        attributes: body.attributes,
        skus: body
            .skus
            .into_iter()
            .map(|sku| NewSku {
                code: sku.sku,
                price_amount: sku.price.amount,
                price_currency: sku.price.currency,
                attributes: sku.attributes,
                low_stock_threshold: sku.low_stock_threshold,
            })
            .collect(),
    };
    let valid = draft
        .validate(state.config.stock.units_max)
        .map_err(ApiError::invalid)?;
    let directory = engine.0.directory();
    let max_products = directory.max_products(seller.tenant);
    let product = engine
        .0
        .catalog()
        .create_product(&seller.tenant_key, valid, max_products)
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
        .json(body))
}

/// A product with live availability of each SKU.
#[utoipa::path(
    get, path = "/v1/products/{id}", tag = "products",
    params(("id" = String, Path, format = Uuid, description = "product id (UUID)")),
    responses(
        (status = 200, body = ProductBody),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_product(engine: Live, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::new(ErrorKind::ProductNotFound, "no such product");
    let id = uuid::Uuid::parse_str(&path).map_err(|_| not_found())?;
    let product = engine
        .0
        .catalog()
        .product(id.as_u128())
        .ok_or_else(not_found)?;
    let stock = engine.0.inventory().product_stock(&product).await?;
    Ok(HttpResponse::Ok().json(ProductBody::new(&product, stock)))
}
