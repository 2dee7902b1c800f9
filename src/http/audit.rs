//! The audit log: platform admins read everything, a seller admin reads their
//! store's lines. Newest first, filterable, paginated by sequence number.

use crate::domain::policy::{self, AuditRefusal, AuditScope};
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::clock::{parse_rfc3339_ms, rfc3339_ms};
use crate::domain::identity::{id_text, AuditEntry};
use crate::domain::{InvalidField, TenantId, UserId};
use crate::services::identity::AuditFilter;

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{Authenticated, Live};
use super::input::Query;
use super::tenants::page_limit;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this store's lines (platform admins; a seller admin's are always their own).
    #[param(nullable = false, format = Uuid)]
    pub tenant: Option<String>,
    /// Only lines by this account.
    #[param(nullable = false, format = Uuid)]
    pub actor: Option<String>,
    /// `product` matches `product.create`; a full action matches itself.
    #[param(nullable = false, max_length = 100)]
    pub action: Option<String>,
    /// Exact target, e.g. `sku:TEE-RED-L`.
    #[param(nullable = false, max_length = 200)]
    pub target: Option<String>,
    /// RFC 3339, inclusive.
    #[param(nullable = false, format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    #[param(nullable = false, format = DateTime)]
    pub until: Option<String>,
    /// 1..=100, default 50.
    #[param(nullable = false, minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(nullable = false, pattern = "^[0-9]{1,19}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActorBody {
    pub user_id: String,
    pub role: &'static str,
    pub tenant_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryBody {
    pub seq: u64,
    pub at: String,
    /// Absent for anonymous requests (registration).
    pub actor: Option<ActorBody>,
    pub tenant_id: Option<String>,
    pub action: String,
    pub target: String,
    /// A summary of the target before the change (absent for a creation).
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// A summary of the target after the change (absent for a removal).
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    pub correlation_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPageBody {
    pub items: Vec<AuditEntryBody>,
    /// Present while older lines may match; a page can be short before the end.
    pub next_cursor: Option<String>,
}

/// A stored summary as an object (a summary that is not one is wrapped).
fn summary(raw: Option<String>) -> Option<serde_json::Value> {
    raw.map(|text| match serde_json::from_str(&text) {
        Ok(object @ serde_json::Value::Object(_)) => object,
        Ok(other) => serde_json::json!({ "value": other }),
        Err(_) => serde_json::json!({ "text": text }),
    })
}

impl AuditEntryBody {
    fn new(entry: AuditEntry) -> Self {
        Self {
            seq: entry.seq,
            at: rfc3339_ms(entry.at_ms),
            actor: entry.actor.map(|a| ActorBody {
                user_id: id_text(a.user),
                role: a.role.as_str(),
                tenant_id: a.tenant.map(id_text),
            }),
            tenant_id: entry.tenant.map(id_text),
            action: entry.action,
            target: entry.target,
            before: summary(entry.before),
            after: summary(entry.after),
            correlation_id: entry.correlation_id,
        }
    }
}

fn time_param(field: &'static str, raw: &Option<String>) -> Result<Option<u64>, ApiError> {
    match raw {
        None => Ok(None),
        Some(text) => parse_rfc3339_ms(text)
            .map(Some)
            .ok_or_else(|| InvalidField::new(field, "must be an RFC 3339 timestamp").into()),
    }
}

/// Audit lines, newest first.
#[utoipa::path(
    get, path = "/v1/admin/audit", tag = "audit",
    security(("bearer" = [])),
    params(AuditQuery),
    responses(
        (status = 200, body = AuditPageBody),
        (status = 403, description = "buyers and staff", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "tenant_not_found: another store's filter", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_audit(
    engine: Live,
    caller: Authenticated,
    query: Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller.0;
    let query = query.into_inner();
    let asked_tenant = match &query.tenant {
        Some(raw) => Some(
            TenantId::parse(raw)
                .ok_or_else(|| ApiError::new(ErrorKind::TenantNotFound, "no such store"))?,
        ),
        None => None,
    };
    let tenant = match policy::audit_scope(&caller.principal(), asked_tenant) {
        Ok(AuditScope::Platform(store)) => store,
        Ok(AuditScope::Store(store)) => Some(store),
        Err(AuditRefusal::OtherStore) => {
            return Err(ApiError::new(ErrorKind::TenantNotFound, "no such store"))
        }
        Err(AuditRefusal::Forbidden) => {
            return Err(ApiError::new(
                ErrorKind::Forbidden,
                "the audit log is for seller admins and platform admins",
            ))
        }
    };
    let actor = match &query.actor {
        Some(raw) => Some(
            UserId::parse(raw).ok_or_else(|| InvalidField::new("actor", "is not an account id"))?,
        ),
        None => None,
    };
    let cursor = match &query.cursor {
        Some(raw) => Some(
            Some(raw)
                .filter(|r| (1..=19).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|r| r.parse::<u64>().ok())
                .ok_or_else(|| InvalidField::new("cursor", "is not a cursor of this list"))?,
        ),
        None => None,
    };
    for (field, value, max) in [
        ("action", &query.action, 100),
        ("target", &query.target, 200),
    ] {
        if value.as_ref().is_some_and(|v| v.chars().count() > max) {
            return Err(
                InvalidField::new(field, format!("must be at most {max} characters")).into(),
            );
        }
    }
    let filter = AuditFilter {
        tenant,
        actor,
        action: query.action,
        target: query.target,
        since_ms: time_param("since", &query.since)?,
        until_ms: time_param("until", &query.until)?,
    };
    let limit = page_limit(query.limit)?;
    let directory = engine.0.directory().clone();
    let (items, next) = web::block(move || directory.audit_page(&filter, cursor, limit))
        .await
        .map_err(|_| {
            ApiError::new(ErrorKind::Unavailable, "the audit log is not readable now")
        })??;
    Ok(HttpResponse::Ok().json(AuditPageBody {
        items: items.into_iter().map(AuditEntryBody::new).collect(),
        next_cursor: next.map(|seq| seq.to_string()),
    }))
}
