//! Account routes: register, log in (a session with rotating refresh tokens),
//! refresh, log out, and who am I.

use actix_web::HttpResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::rfc3339_ms;
use crate::domain::identity::{id_text, User};
use crate::services::identity::IssuedTokens;

use super::error::{ApiError, Problem};
use super::extract::{Authenticated, ClientAddress, Correlation, Live};
use super::input::Json;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsBody {
    #[schema(schema_with = super::schemas::email)]
    pub email: String,
    /// `auth.password_min_chars` (12) to `auth.password_max_chars` (128)
    /// characters; not a common password, at least 5 different characters,
    /// not the address or its name part.
    #[schema(schema_with = super::schemas::password)]
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    /// The refresh token a login, refresh or onboarding answered (`rt1.…`).
    #[schema(max_length = 512)]
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountBody {
    pub id: String,
    pub email: String,
    /// buyer, seller_admin, seller_staff or platform_admin
    pub role: String,
    pub tenant_id: Option<String>,
    pub created_at: String,
}

impl AccountBody {
    pub fn new(user: &User) -> Self {
        Self {
            id: id_text(user.id),
            email: user.email.clone(),
            role: user.role.as_str().to_owned(),
            tenant_id: user.tenant.map(id_text),
            created_at: rfc3339_ms(user.created_at_ms),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokensBody {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token stays valid.
    pub expires_in: u64,
    /// Single use: each refresh answers a new one; presenting a used one ends the session.
    pub refresh_token: String,
    pub refresh_expires_at: String,
    pub account: AccountBody,
}

impl TokensBody {
    pub fn new(tokens: IssuedTokens, now_ms: u64) -> Self {
        Self {
            access_token: tokens.access_token,
            token_type: "Bearer",
            expires_in: tokens.access_expires_at_s.saturating_sub(now_ms / 1000),
            refresh_token: tokens.refresh_token,
            refresh_expires_at: rfc3339_ms(tokens.refresh_expires_at_ms),
            account: AccountBody::new(&tokens.user),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedBody {
    /// Always `accepted`: the answer does not say whether the address was new.
    pub status: &'static str,
    pub detail: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeBody {
    #[serde(flatten)]
    pub account: AccountBody,
    pub following: usize,
}

/// Create a buyer account. The answer is the same whether or not the address
/// already has an account, so it cannot be used to discover accounts.
#[utoipa::path(
    post, path = "/v1/auth/register", tag = "auth",
    request_body = CredentialsBody,
    responses(
        (status = 202, body = AcceptedBody),
        (status = 422, description = "bad e-mail or a password the policy refuses", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many attempts from this address (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn register(
    engine: Live,
    address: ClientAddress,
    correlation: Correlation,
    body: Json<CredentialsBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    engine
        .0
        .directory()
        .register(&body.email, body.password, address.0, correlation.0)
        .await?;
    Ok(HttpResponse::Accepted().json(AcceptedBody {
        status: "accepted",
        detail: "if the address was new, its account exists now: log in",
    }))
}

/// Log in: an access token and a refresh token.
#[utoipa::path(
    post, path = "/v1/auth/login", tag = "auth",
    request_body = CredentialsBody,
    responses(
        (status = 200, body = TokensBody),
        (status = 401, description = "invalid_credentials (same answer for an unknown address)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited per account or address (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn login(
    engine: Live,
    address: ClientAddress,
    correlation: Correlation,
    body: Json<CredentialsBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let tokens = engine
        .0
        .directory()
        .login(&body.email, body.password, address.0, correlation.0)
        .await?;
    Ok(HttpResponse::Ok().json(TokensBody::new(tokens, engine.0.clock().now_ms())))
}

/// Trade a refresh token for new tokens. Each refresh token works once; a used
/// one coming back revokes the whole session family.
#[utoipa::path(
    post, path = "/v1/auth/refresh", tag = "auth",
    request_body = RefreshBody,
    responses(
        (status = 200, body = TokensBody),
        (status = 401, description = "invalid_refresh_token or refresh_token_reused", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn refresh(
    engine: Live,
    correlation: Correlation,
    body: Json<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    let tokens = engine
        .0
        .directory()
        .refresh(&body.refresh_token, correlation.0)
        .await?;
    Ok(HttpResponse::Ok().json(TokensBody::new(tokens, engine.0.clock().now_ms())))
}

/// End the caller's session: its refresh token and access tokens stop working.
#[utoipa::path(
    post, path = "/v1/auth/logout", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "logged out"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn logout(
    engine: Live,
    caller: Authenticated,
    correlation: Correlation,
) -> Result<HttpResponse, ApiError> {
    engine
        .0
        .directory()
        .logout(&caller.0, correlation.0)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's account.
#[utoipa::path(
    get, path = "/v1/auth/me", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, body = MeBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn me(engine: Live, caller: Authenticated) -> Result<HttpResponse, ApiError> {
    let directory = engine.0.directory();
    let user =
        directory
            .user(caller.0.user)
            .ok_or(crate::services::identity::IdentityError::NotFound(
                crate::services::identity::Missing::Account,
            ))?;
    Ok(HttpResponse::Ok().json(MeBody {
        account: AccountBody::new(&user),
        following: directory.following_count(user.id),
    }))
}
