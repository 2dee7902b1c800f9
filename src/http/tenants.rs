//! Store routes: onboarding, settings, status and plan, staff invitations.
//! Everything is scoped to the caller's store; another store's id is 404.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::clock::rfc3339_ms;
use crate::domain::identity::{
    id_text, Branding, Plan, Role, ShippingSettings, TaxSettings, Tenant, TenantPatch, TenantStatus,
};
use crate::domain::pricing::ShippingMethod;
use crate::domain::{InvalidField, TenantId, UserId};
use crate::services::identity::IdentityError;
use crate::services::identity::NewTenant;

use super::auth::{AccountBody, TokensBody};
use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{Authenticated, Correlation, Live};
use super::input::{Json, Query};

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandingBody {
    /// An https:// URL.
    #[serde(default)]
    #[schema(pattern = "^https://[!-~]+$", max_length = 2048)]
    pub logo_url: Option<String>,
    /// `#rrggbb`
    #[serde(default)]
    #[schema(pattern = "^#[0-9a-fA-F]{6}$")]
    pub primary_color: Option<String>,
    #[serde(default)]
    #[schema(pattern = "^#[0-9a-fA-F]{6}$")]
    pub accent_color: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaxBody {
    #[serde(default)]
    pub prices_include_tax: bool,
    /// Basis points: 2000 = 20%.
    #[serde(default)]
    #[schema(maximum = 10000)]
    pub default_rate_bp: u32,
    #[serde(default)]
    #[schema(pattern = "^[ -~]+$", min_length = 1, max_length = 64)]
    pub tax_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingBody {
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    #[serde(default)]
    #[schema(pattern = "^[A-Z]{2}$")]
    pub origin_country: Option<String>,
    /// ISO 3166-1 alpha-2 codes, each once, at most 250.
    #[serde(default)]
    #[schema(schema_with = super::schemas::countries)]
    pub ships_to: Vec<String>,
    #[serde(default)]
    #[schema(maximum = 60)]
    pub handling_days: u32,
    /// Orders at or above this amount (minor units) ship free, with any
    /// method that names no threshold of its own.
    #[serde(default)]
    #[schema(maximum = 1_000_000_000_000_i64)]
    pub free_shipping_over_minor: Option<u64>,
    /// The ways the store ships, at most 20, each code once (a repeated
    /// code is 422 `shipping.methods[i].code`); the first is the
    /// default a checkout uses when the shopper names none. None: shipping
    /// is free. Tax (`tax.default_rate_bp`) applies to shipping too.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub methods: Vec<ShippingMethodBody>,
}

/// One shipping method of a store, priced in the store's currency.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingMethodBody {
    /// What a shopper names at checkout.
    #[schema(pattern = "^[a-z0-9_-]{1,32}$")]
    pub code: String,
    #[schema(min_length = 1, max_length = 80)]
    pub name: String,
    #[schema(maximum = 1_000_000_000_000_i64)]
    pub price_minor: u64,
    /// Free for a seller's subtotal at or above this (minor units).
    #[serde(default)]
    #[schema(maximum = 1_000_000_000_000_i64)]
    pub free_over_minor: Option<u64>,
}

impl From<&ShippingMethod> for ShippingMethodBody {
    fn from(m: &ShippingMethod) -> Self {
        Self {
            code: m.code.clone(),
            name: m.name.clone(),
            price_minor: m.price_minor,
            free_over_minor: m.free_over_minor,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,32}$")]
    pub name: String,
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub requests_per_minute: u32,
    #[schema(minimum = 1, maximum = 10_000_000)]
    pub max_products: u32,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenantBody {
    /// Store name, 1..=100 characters.
    #[schema(schema_with = super::schemas::store_name)]
    pub name: String,
    #[serde(default, deserialize_with = "super::input::object")]
    pub branding: BrandingBody,
    #[serde(default, deserialize_with = "super::input::object")]
    pub tax: TaxBody,
    #[serde(default, deserialize_with = "super::input::object")]
    pub shipping: ShippingBody,
}

/// Fields left out stay as they are. `status` and `plan` are for platform admins.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdateBody {
    #[serde(default, deserialize_with = "super::input::present")]
    #[schema(schema_with = super::schemas::store_name, required = false)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "super::input::optional_object")]
    pub branding: Option<BrandingBody>,
    #[serde(default, deserialize_with = "super::input::optional_object")]
    pub tax: Option<TaxBody>,
    #[serde(default, deserialize_with = "super::input::optional_object")]
    pub shipping: Option<ShippingBody>,
    /// A suspended store's SKUs cannot be reserved or bought.
    #[serde(default)]
    pub status: Option<StatusBody>,
    #[serde(default, deserialize_with = "super::input::optional_object")]
    pub plan: Option<PlanBody>,
    /// Order notifications (placed, paid, shipped, delivered, refunded) are
    /// POSTed here, signed with `Flashdrop-Signature`; "" turns them off.
    /// Loopback, private, link-local, multicast and metadata addresses are
    /// refused (422), also when the name resolves to one.
    #[serde(default)]
    #[schema(pattern = "^(https?://[!-~]+)?$", max_length = 500)]
    pub webhook_url: Option<String>,
}

/// A store's status.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusBody {
    Active,
    Suspended,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantBody {
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub plan: PlanBody,
    pub branding: BrandingBody,
    pub tax: TaxBody,
    pub shipping: ShippingBody,
    /// Where order notifications go (see `PUT /v1/tenants/{id}`).
    pub webhook_url: Option<String>,
    /// The key that signs them (`Flashdrop-Signature`, HMAC-SHA256 of
    /// `<t>.<body>`); shown to the store's own staff and platform admins.
    pub webhook_secret: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl TenantBody {
    pub fn new(t: &Tenant) -> Self {
        Self {
            id: id_text(t.id),
            name: t.name.clone(),
            status: t.status.as_str(),
            plan: PlanBody {
                name: t.plan.name.clone(),
                requests_per_minute: t.plan.requests_per_minute,
                max_products: t.plan.max_products,
            },
            branding: BrandingBody {
                logo_url: t.branding.logo_url.clone(),
                primary_color: t.branding.primary_color.clone(),
                accent_color: t.branding.accent_color.clone(),
            },
            tax: TaxBody {
                prices_include_tax: t.tax.prices_include_tax,
                default_rate_bp: t.tax.default_rate_bp,
                tax_id: t.tax.tax_id.clone(),
            },
            shipping: ShippingBody {
                origin_country: t.shipping.origin_country.clone(),
                ships_to: t.shipping.ships_to.clone(),
                handling_days: t.shipping.handling_days,
                free_shipping_over_minor: t.shipping.free_shipping_over_minor,
                methods: t.shipping.methods.iter().map(Into::into).collect(),
            },
            webhook_url: (!t.webhook_url.is_empty()).then(|| t.webhook_url.clone()),
            webhook_secret: None,
            created_at: rfc3339_ms(t.created_at_ms),
            updated_at: rfc3339_ms(t.updated_at_ms),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OnboardedBody {
    pub tenant: TenantBody,
    /// Fresh tokens: the caller is now the store's seller admin.
    pub tokens: TokensBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantListBody {
    pub items: Vec<TenantBody>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    #[schema(schema_with = super::schemas::email)]
    pub email: String,
    pub role: StaffRoleBody,
}

/// What an invited account becomes.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StaffRoleBody {
    SellerAdmin,
    SellerStaff,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationBody {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub role: &'static str,
    pub expires_at: String,
    /// Give this to the invitee; they accept it signed in with that e-mail address.
    pub token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    /// The invitation's token, as `POST /v1/tenants/{id}/staff` answered it.
    #[schema(max_length = 512)]
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JoinedBody {
    pub tenant_id: String,
    pub role: &'static str,
    pub tokens: TokensBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StaffListBody {
    pub items: Vec<AccountBody>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// 1..=100, default 50.
    #[param(nullable = false, minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(nullable = false, format = Uuid)]
    pub cursor: Option<String>,
}

pub(super) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=100).contains(&n) => Ok(n),
        Some(_) => Err(InvalidField::new("limit", "must be 1..=100").into()),
    }
}

fn tenant_id(raw: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(raw).ok_or_else(|| ApiError::new(ErrorKind::TenantNotFound, "no such store"))
}

impl From<BrandingBody> for Branding {
    fn from(b: BrandingBody) -> Self {
        Branding {
            logo_url: b.logo_url,
            primary_color: b.primary_color,
            accent_color: b.accent_color,
        }
    }
}

impl From<TaxBody> for TaxSettings {
    fn from(t: TaxBody) -> Self {
        TaxSettings {
            prices_include_tax: t.prices_include_tax,
            default_rate_bp: t.default_rate_bp,
            tax_id: t.tax_id,
        }
    }
}

impl From<ShippingBody> for ShippingSettings {
    fn from(s: ShippingBody) -> Self {
        ShippingSettings {
            origin_country: s.origin_country,
            ships_to: s.ships_to,
            handling_days: s.handling_days,
            free_shipping_over_minor: s.free_shipping_over_minor,
            methods: s
                .methods
                .into_iter()
                .map(|m| ShippingMethod {
                    code: m.code,
                    name: m.name.trim().to_owned(),
                    price_minor: m.price_minor,
                    free_over_minor: m.free_over_minor,
                })
                .collect(),
        }
    }
}

/// Open a store: the caller (an account without a store) becomes its first seller admin.
#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants",
    security(("bearer" = [])),
    request_body = NewTenantBody,
    responses(
        (status = 201, body = OnboardedBody, headers(("Location" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the account already has a store or a platform role", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn onboard(
    engine: Live,
    caller: Authenticated,
    correlation: Correlation,
    body: Json<NewTenantBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let new = NewTenant {
        name: body.name,
        branding: body.branding.into(),
        tax: body.tax.into(),
        shipping: body.shipping.into(),
    };
    let (tenant, tokens) = engine
        .0
        .directory()
        .onboard(&caller.0, new, correlation.0)
        .await?;
    let body = OnboardedBody {
        tenant: TenantBody::new(&tenant),
        tokens: TokensBody::new(tokens, engine.0.clock().now_ms()),
    };
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/tenants/{}", body.tenant.id)))
        .json(body))
}

/// Every store (platform admins).
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, body = TenantListBody),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_tenants(
    engine: Live,
    caller: Authenticated,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    if !crate::domain::policy::operates_platform(&caller.0.principal()) {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "only platform admins list every store",
        ));
    }
    let limit = page_limit(query.limit)?;
    let after = match &query.cursor {
        Some(c) => {
            Some(TenantId::parse(c).ok_or_else(|| InvalidField::new("cursor", "is not valid"))?)
        }
        None => None,
    };
    let page = engine.0.directory().tenants_page(after, limit);
    let next_cursor = (page.len() == limit)
        .then(|| page.last().map(|t| id_text(t.id)))
        .flatten();
    Ok(HttpResponse::Ok().json(TenantListBody {
        items: page.iter().map(TenantBody::new).collect(),
        next_cursor,
    }))
}

/// A store's settings (its own staff, or platform admins).
#[utoipa::path(
    get, path = "/v1/tenants/{id}", tag = "tenants",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses(
        (status = 200, body = TenantBody),
        (status = 403, description = "buyers: a store's settings are for its sellers and platform admins", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown, or another store's", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_tenant(
    engine: Live,
    caller: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = tenant_id(&path)?;
    let tenant = engine.0.directory().tenant_for(&caller.0, id)?;
    Ok(HttpResponse::Ok().json(with_secret(&engine, &tenant)))
}

/// Change a store's settings (seller admin); status and plan (platform admin).
#[utoipa::path(
    put, path = "/v1/tenants/{id}", tag = "tenants",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    request_body = TenantUpdateBody,
    responses(
        (status = 200, body = TenantBody),
        (status = 403, description = "staff, or a seller setting status or plan", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown, or another store's", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_tenant(
    engine: Live,
    caller: Authenticated,
    correlation: Correlation,
    path: web::Path<String>,
    body: Json<TenantUpdateBody>,
) -> Result<HttpResponse, ApiError> {
    let id = tenant_id(&path)?;
    let body = body.into_inner();
    let status = body.status.map(|status| match status {
        StatusBody::Active => TenantStatus::Active,
        StatusBody::Suspended => TenantStatus::Suspended,
    });
    if let Some(url) = body.webhook_url.as_deref().filter(|u| !u.trim().is_empty()) {
        // Only for whoever may set it: nobody else gets a lookup made for them.
        let may_set = crate::domain::policy::manages_store(&caller.0.principal(), id);
        if may_set {
            engine
                .0
                .outbound()
                .vet(url)
                .await
                .map_err(|refusal| InvalidField::new("webhook_url", refusal.to_string()))?;
        }
    }
    let patch = TenantPatch {
        name: body.name,
        branding: body.branding.map(Into::into),
        tax: body.tax.map(Into::into),
        shipping: body.shipping.map(Into::into),
        status,
        plan: body.plan.map(|p| Plan {
            name: p.name,
            requests_per_minute: p.requests_per_minute,
            max_products: p.max_products,
        }),
        webhook_url: body.webhook_url,
    };
    let tenant = engine
        .0
        .directory()
        .update_tenant(&caller.0, id, patch, correlation.0)
        .await?;
    Ok(HttpResponse::Ok().json(with_secret(&engine, &tenant)))
}

/// The body a store's own readers see: with its webhook signing key.
fn with_secret(engine: &Live, tenant: &Tenant) -> TenantBody {
    let mut body = TenantBody::new(tenant);
    if !tenant.webhook_url.is_empty() {
        let secret = engine.0.config().notifications.signing_secret.expose();
        body.webhook_secret = Some(crate::events::notify::store_key(secret, tenant.id));
    }
    body
}

/// Invite someone to the store with a role (seller admins).
#[utoipa::path(
    post, path = "/v1/tenants/{id}/staff", tag = "tenants",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    request_body = InviteBody,
    responses(
        (status = 201, body = InvitationBody),
        (status = 403, description = "not a seller admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown, or another store's", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn invite(
    engine: Live,
    caller: Authenticated,
    correlation: Correlation,
    path: web::Path<String>,
    body: Json<InviteBody>,
) -> Result<HttpResponse, ApiError> {
    let id = tenant_id(&path)?;
    let role = match body.role {
        StaffRoleBody::SellerAdmin => Role::SellerAdmin,
        StaffRoleBody::SellerStaff => Role::SellerStaff,
    };
    let directory = engine.0.directory();
    // Scope first: another store's id is 404 whatever the body says.
    directory.tenant_for(&caller.0, id)?;
    let (invitation, token) = directory
        .invite(&caller.0, id, &body.email, role, correlation.0)
        .await?;
    Ok(HttpResponse::Created().json(InvitationBody {
        id: id_text(invitation.id),
        tenant_id: id_text(invitation.tenant),
        email: invitation.email,
        role: invitation.role.as_str(),
        expires_at: rfc3339_ms(invitation.expires_at_ms),
        token,
    }))
}

/// The store's accounts (seller admins).
#[utoipa::path(
    get, path = "/v1/tenants/{id}/staff", tag = "tenants",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses(
        (status = 200, body = StaffListBody),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_staff(
    engine: Live,
    caller: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = tenant_id(&path)?;
    let staff = engine.0.directory().staff(&caller.0, id)?;
    Ok(HttpResponse::Ok().json(StaffListBody {
        items: staff.iter().map(AccountBody::new).collect(),
        next_cursor: None,
    }))
}

/// Remove an account from the store: it becomes a buyer and its sessions end.
#[utoipa::path(
    delete, path = "/v1/tenants/{id}/staff/{user_id}", tag = "tenants",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid), ("user_id" = String, Path, format = Uuid)),
    responses(
        (status = 204, description = "removed"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "last_seller_admin", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove_staff(
    engine: Live,
    caller: Authenticated,
    correlation: Correlation,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, user) = path.into_inner();
    let tenant = tenant_id(&tenant)?;
    let directory = engine.0.directory();
    directory.tenant_for(&caller.0, tenant)?;
    let user = UserId::parse(&user).ok_or(IdentityError::NotFound(
        crate::services::identity::Missing::StaffMember,
    ))?;
    directory
        .remove_staff(&caller.0, tenant, user, correlation.0)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Join a store with an invitation addressed to the caller's e-mail.
#[utoipa::path(
    post, path = "/v1/invitations/accept", tag = "tenants",
    security(("bearer" = [])),
    request_body = AcceptBody,
    responses(
        (status = 200, body = JoinedBody),
        (status = 403, description = "the account already has a store", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "invitation_not_found: unknown, used, expired or for another address", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn accept_invitation(
    engine: Live,
    caller: Authenticated,
    correlation: Correlation,
    body: Json<AcceptBody>,
) -> Result<HttpResponse, ApiError> {
    let (invitation, tokens) = engine
        .0
        .directory()
        .accept_invitation(&caller.0, &body.token, correlation.0)
        .await?;
    Ok(HttpResponse::Ok().json(JoinedBody {
        tenant_id: id_text(invitation.tenant),
        role: invitation.role.as_str(),
        tokens: TokensBody::new(tokens, engine.0.clock().now_ms()),
    }))
}
