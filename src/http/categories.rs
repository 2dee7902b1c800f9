//! The category tree over HTTP: anyone reads it with product counts;
//! platform admins create, rename, move and delete categories. A product
//! names its category by the category's id in its `category` field.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::category::{Category, CategoryId, CategoryNode};
use crate::domain::{policy, InvalidField};
use crate::services::identity::{actor_of_caller, AuditDraft};

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{Authenticated, Correlation, Live};
use super::input::Json;

/// A category of the tree.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryBody {
    /// What a product's `category` names it by.
    pub id: String,
    /// `null` for a root.
    pub parent_id: Option<String>,
    pub name: String,
    /// Unique among its siblings.
    pub slug: String,
    /// The slugs from the root down to it, joined by `/`.
    pub path: String,
}

/// A category with its product counts and its children.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryNodeBody {
    #[serde(flatten)]
    pub category: CategoryBody,
    /// Products filed directly under it, whatever their status.
    pub product_count: u64,
    /// Products under it and every category below it.
    pub total_count: u64,
    /// Sorted by name.
    #[schema(no_recursion)]
    pub children: Vec<CategoryNodeBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryTreeBody {
    /// The roots, sorted by name.
    pub items: Vec<CategoryNodeBody>,
    /// Categories in the tree.
    pub total: usize,
}

/// A new category.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCategoryBody {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
    /// Lower-case ASCII letters, digits and single hyphens; derived from the
    /// name when left out.
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 100,
        pattern = "^[a-z0-9]+(-[a-z0-9]+)*$"
    )]
    pub slug: Option<String>,
    /// The parent category's id; left out or `null` for a root.
    #[serde(default)]
    #[schema(pattern = "^[0-9]{1,19}$")]
    pub parent_id: Option<String>,
}

/// Changes to a category: a new name (and slug), a new parent, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryPatchBody {
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: Option<String>,
    /// With a new name; left out keeps the slug, so links keep working.
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 100,
        pattern = "^[a-z0-9]+(-[a-z0-9]+)*$"
    )]
    pub slug: Option<String>,
    /// Moves the category with its subtree: a category's id, or `null` for
    /// the roots; left out keeps it where it is.
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(value_type = Option<String>, pattern = "^[0-9]{1,19}$")]
    pub parent_id: Option<Option<String>>,
}

fn category_body(engine: &Live, category: &Category) -> CategoryBody {
    CategoryBody {
        id: category.id.to_string(),
        parent_id: category.parent.map(|p| p.to_string()),
        name: category.name.clone(),
        slug: category.slug.clone(),
        path: engine
            .0
            .categories()
            .path_slug(category.id)
            .unwrap_or_else(|_| category.slug.clone()),
    }
}

fn node_body(engine: &Live, node: &CategoryNode) -> CategoryNodeBody {
    CategoryNodeBody {
        category: category_body(engine, &node.category),
        product_count: node.product_count,
        total_count: node.total_count,
        children: node.children.iter().map(|c| node_body(engine, c)).collect(),
    }
}

fn not_found() -> ApiError {
    ApiError::new(ErrorKind::CategoryNotFound, "no such category")
}

/// A category id from a path or a body: digits naming an id.
fn category_id(text: &str) -> Option<CategoryId> {
    crate::services::categories::category_of(text)
}

/// A parent named in a body: 422 when it is not an id at all.
fn parent_id(text: &str) -> Result<CategoryId, ApiError> {
    category_id(text).ok_or_else(|| {
        ApiError::invalid(vec![InvalidField::new(
            "parent_id",
            "must be a category id (digits)",
        )])
    })
}

fn platform_admin(caller: &Authenticated) -> Result<(), ApiError> {
    if !policy::operates_platform(&caller.0.principal()) {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "only platform admins change categories",
        ));
    }
    Ok(())
}

async fn audit(
    engine: &Live,
    caller: &Authenticated,
    correlation: Correlation,
    action: &'static str,
    id: CategoryId,
    after: serde_json::Value,
) -> Result<(), ApiError> {
    engine
        .0
        .directory()
        .audit(vec![AuditDraft::new(
            Some(actor_of_caller(&caller.0)),
            action,
            format!("category:{id}"),
        )
        .after(after.to_string())
        .correlation(correlation.0)])
        .await?;
    Ok(())
}

/// The category tree with product counts (anyone).
#[utoipa::path(
    get, path = "/v1/categories", tag = "categories",
    responses((status = 200, body = CategoryTreeBody))
)]
pub async fn tree(engine: Live) -> Result<HttpResponse, ApiError> {
    let categories = engine.0.categories();
    let items = categories
        .tree()
        .iter()
        .map(|node| node_body(&engine, node))
        .collect();
    Ok(HttpResponse::Ok().json(CategoryTreeBody {
        items,
        total: categories.len(),
    }))
}

/// Create a category (platform admins).
///
/// Rules beyond the schema: the parent exists (404 `category_not_found`),
/// the slug is unique among its siblings (409 `slug_taken`), the tree stays
/// at most 6 levels deep, 500 children per category and 10,000 categories
/// (422 `limit_exceeded`); a name without ASCII letters or digits needs a
/// slug (422).
#[utoipa::path(
    post, path = "/v1/categories", tag = "categories",
    security(("bearer" = [])),
    request_body = NewCategoryBody,
    responses(
        (status = 201, body = CategoryBody, headers(("Location" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a platform admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "category_not_found: the parent", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "slug_taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    caller: Authenticated,
    engine: Live,
    correlation: Correlation,
    body: Json<NewCategoryBody>,
) -> Result<HttpResponse, ApiError> {
    platform_admin(&caller)?;
    let body = body.into_inner();
    let parent = body.parent_id.as_deref().map(parent_id).transpose()?;
    let category = engine
        .0
        .categories()
        .create(parent, body.name, body.slug)
        .await?;
    let answer = category_body(&engine, &category);
    audit(
        &engine,
        &caller,
        correlation,
        "category.create",
        category.id,
        serde_json::json!({"name": answer.name, "path": answer.path}),
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header(("location", format!("/v1/categories/{}", answer.id)))
        .json(answer))
}

/// Rename or move a category (platform admins).
///
/// A move takes the whole subtree along, and browsing and counts follow at
/// once. Refused: under itself or a descendant (409 `category_cycle`), a
/// slug a new sibling uses (409 `slug_taken`), a subtree that would pass 6
/// levels (422 `limit_exceeded`).
#[utoipa::path(
    patch, path = "/v1/categories/{id}", tag = "categories",
    security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^[0-9]{1,19}$", description = "category id")),
    request_body = CategoryPatchBody,
    responses(
        (status = 200, body = CategoryBody),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a platform admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "category_not_found: the category or the new parent", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "category_cycle, slug_taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed: a slug is given only with a new name", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    caller: Authenticated,
    engine: Live,
    correlation: Correlation,
    path: web::Path<String>,
    body: Json<CategoryPatchBody>,
) -> Result<HttpResponse, ApiError> {
    platform_admin(&caller)?;
    let id = category_id(&path).ok_or_else(not_found)?;
    let body = body.into_inner();
    if body.slug.is_some() && body.name.is_none() {
        return Err(ApiError::invalid(vec![InvalidField::new(
            "slug",
            "a slug changes with a name",
        )]));
    }
    let parent = match &body.parent_id {
        Some(Some(text)) => Some(Some(parent_id(text)?)),
        Some(None) => Some(None),
        None => None,
    };
    let categories = engine.0.categories();
    if body.name.is_none() && parent.is_none() {
        // Nothing to change: the category as it is.
        let category = categories.get(id).ok_or_else(not_found)?;
        return Ok(HttpResponse::Ok().json(category_body(&engine, &category)));
    }
    let category = categories
        .update(id, body.name.map(|name| (name, body.slug)), parent)
        .await?;
    let answer = category_body(&engine, &category);
    audit(
        &engine,
        &caller,
        correlation,
        "category.update",
        id,
        serde_json::json!({"name": answer.name, "path": answer.path, "parent_id": answer.parent_id}),
    )
    .await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// Delete a category with no child categories and no products (platform
/// admins); otherwise 409 `category_not_empty` with the counts.
#[utoipa::path(
    delete, path = "/v1/categories/{id}", tag = "categories",
    security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^[0-9]{1,19}$", description = "category id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a platform admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "category_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "category_not_empty", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    caller: Authenticated,
    engine: Live,
    correlation: Correlation,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    platform_admin(&caller)?;
    let id = category_id(&path).ok_or_else(not_found)?;
    let deleted = engine.0.categories().delete(id).await?;
    audit(
        &engine,
        &caller,
        correlation,
        "category.delete",
        id,
        serde_json::json!({"name": deleted.name, "slug": deleted.slug}),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
