//! `GET /v1/products`: browsing the catalog. The question's rules are
//! `domain::browse`, the index that answers it `services::listings`; this
//! file reads the query string, says who is asking and writes the page.

use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::clock::rfc3339_ms;
use crate::domain::browse::{list_currency, list_price, BrowseQuery};
use crate::domain::identity::id_text;
use crate::domain::product::Product;
use crate::domain::{policy, InvalidField, SkuId, TenantId};

use super::error::{ApiError, Problem};
use super::extract::{Live, MaybeCaller};
use super::products::{ImageBody, MoneyBody};

/// A product as a listing shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListingBody {
    pub id: String,
    pub store_id: String,
    pub version: u64,
    /// `draft`, `active` or `archived` (shoppers see only `active`).
    pub status: String,
    pub title: String,
    pub brand: String,
    pub category: String,
    /// The lowest variant price: what the price filters and orders use.
    pub price: MoneyBody,
    /// The "was" price of the variant that gives `price`, if it has one.
    pub compare_at: Option<i64>,
    /// The first image, if any.
    pub image: Option<ImageBody>,
    pub variants: usize,
    /// Some variant has units available now.
    pub in_stock: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListingPageBody {
    pub items: Vec<ListingBody>,
    /// Where the next page starts; `null` at the end. A page can hold fewer
    /// than `limit` items (even none) and still have a next page: each
    /// request looks at a bounded number of products
    /// (`catalog.browse_scan_max`).
    pub next_cursor: Option<String>,
}

/// The parameters, for the documentation (the query string is read by
/// `BrowseQuery::parse`, which also takes `attr.NAME=VALUE`).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct BrowseParams {
    /// A category id: products filed under it or any of its descendants.
    #[param(nullable = false, minimum = 1)]
    category: Option<u64>,
    /// A store id: only its products.
    #[param(nullable = false, format = Uuid)]
    store: Option<String>,
    /// Only this status, of what the caller may see (a store's sellers see
    /// its drafts and archived products).
    #[param(nullable = false, pattern = "^(draft|active|archived)$")]
    status: Option<String>,
    /// Lowest list price, minor units, inclusive.
    #[param(nullable = false, minimum = 0, maximum = 1_000_000_000_000i64)]
    min_price: Option<i64>,
    /// Highest list price, minor units, inclusive; not below `min_price`.
    #[param(nullable = false, minimum = 0, maximum = 1_000_000_000_000i64)]
    max_price: Option<i64>,
    /// ISO 4217 code of the list price.
    #[param(nullable = false, pattern = "^[A-Z]{3}$")]
    currency: Option<String>,
    /// `true`: some variant has units available now; `false`: none has.
    #[param(nullable = false)]
    in_stock: Option<bool>,
    /// `newest` (default), `price`, `-price` or `title`. `rating` is
    /// refused until products have reviews. Another filter `attr.NAME=VALUE`
    /// (up to 8) keeps products whose own or variants' attribute NAME is
    /// VALUE, ignoring ASCII case.
    #[param(nullable = false, pattern = "^(newest|price|-price|title)$")]
    sort: Option<String>,
    /// 1..=100, default 50.
    #[param(nullable = false, minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page, with the same `sort`.
    #[param(nullable = false, pattern = "^[npqt]\\.[0-9a-f.]{1,200}$")]
    cursor: Option<String>,
}

/// Browse products across every store.
#[utoipa::path(
    get, path = "/v1/products", tag = "catalog",
    params(BrowseParams),
    responses(
        (status = 200, body = ListingPageBody),
        (status = 422, description = "invalid_field: a parameter out of its bounds, unknown or given twice; a category or store that does not exist", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn browse_products(
    engine: Live,
    caller: MaybeCaller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = BrowseQuery::parse(form_urlencoded::parse(req.query_string().as_bytes()))?;
    let directory = engine.0.directory();
    if let Some(store) = query.filters.store {
        if directory.tenant(store).is_none() {
            return Err(InvalidField::new("store", "no such store").into());
        }
    }
    let who = caller.0.as_ref().map(|c| c.principal());
    let page = engine.0.catalog().browse(&query, |product| {
        let owner = TenantId::parse(&product.tenant).unwrap_or(TenantId(0));
        policy::browses_product(
            who.as_ref(),
            owner,
            product.status,
            directory.tenant_suspended(&product.tenant),
        )
    })?;
    let inventory = engine.0.inventory();
    let items = page
        .items
        .iter()
        .map(|p| listing(p, |sku| inventory.has_stock(sku)))
        .collect();
    Ok(HttpResponse::Ok().json(ListingPageBody {
        items,
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

fn listing(product: &Product, has_stock: impl Fn(SkuId) -> bool) -> ListingBody {
    let cheapest = product.skus.iter().min_by_key(|s| s.price.amount);
    ListingBody {
        id: id_text(product.id),
        store_id: product.tenant.clone(),
        version: product.version,
        status: product.status.as_str().to_owned(),
        title: product.title.clone(),
        brand: product.brand.clone(),
        category: product.category.clone(),
        price: MoneyBody {
            amount: list_price(product),
            currency: list_currency(product).to_owned(),
        },
        compare_at: cheapest.and_then(|s| s.compare_at),
        image: product.images.first().map(|i| ImageBody {
            url: i.url.clone(),
            alt: i.alt.clone(),
        }),
        variants: product.skus.len(),
        in_stock: product.skus.iter().any(|s| has_stock(SkuId(s.id))),
        created_at: rfc3339_ms(product.created_at_ms),
        updated_at: rfc3339_ms(product.updated_at_ms),
    }
}
