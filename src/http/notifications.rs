//! Operators' view of outgoing notifications: the dead-letter list (messages
//! that failed every attempt) and sending one again.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::identity::id_text;
use crate::domain::TenantId;
use crate::events::notify::{Channel, Job};
use crate::services::identity::actor_of_caller;
use crate::services::identity::AuditDraft;

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{Authenticated, Correlation, Live};
use super::input::{numeric_cursor, Query};
use super::tenants::page_limit;

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationBody {
    pub id: String,
    /// webhook or email
    pub channel: String,
    pub target: String,
    pub event: String,
    pub store_id: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
}

impl NotificationBody {
    fn new(job: &Job) -> Self {
        Self {
            id: job.id.to_string(),
            channel: match job.channel {
                Channel::Webhook => "webhook".into(),
                Channel::Email => "email".into(),
            },
            target: job.target.clone(),
            event: job.event.clone(),
            store_id: job.tenant.map(id_text),
            attempts: job.attempts,
            last_error: job.last_error.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLettersBody {
    /// Oldest first; at most `notifications.dead_letters_max` are kept.
    pub items: Vec<NotificationBody>,
    /// Messages still being delivered (with retries).
    pub pending: usize,
    /// Dead letters kept in all.
    pub total: usize,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLettersQuery {
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

fn admin(caller: &Authenticated) -> Result<(), ApiError> {
    if !crate::domain::policy::operates_platform(&caller.0.principal()) {
        return Err(ApiError::new(ErrorKind::Forbidden, "platform admins only"));
    }
    Ok(())
}

/// Notifications that failed every attempt (platform admins), oldest first,
/// a page at a time.
#[utoipa::path(
    get, path = "/v1/admin/notifications/dead-letters", tag = "ops",
    security(("bearer" = [])),
    params(
        ("limit" = Option<usize>, Query, nullable = false, minimum = 1, maximum = 100, description = "1..=100, default 50"),
        ("cursor" = Option<String>, Query, nullable = false, pattern = "^[0-9]{1,19}$", description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, body = DeadLettersBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn dead_letters(
    caller: Authenticated,
    engine: Live,
    query: Query<DeadLettersQuery>,
) -> Result<HttpResponse, ApiError> {
    admin(&caller)?;
    let limit = page_limit(query.limit)?;
    let after = numeric_cursor(query.cursor.as_deref())?;
    let notifier = engine.0.notifier();
    let (page, more) = notifier.dead_letters(after, limit);
    let next_cursor = more
        .then(|| page.last().map(|j| j.id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(DeadLettersBody {
        items: page.iter().map(NotificationBody::new).collect(),
        pending: notifier.pending_count(),
        total: notifier.dead_count(),
        next_cursor,
    }))
}

/// Send a dead letter again, its attempts starting over (platform admins).
#[utoipa::path(
    post, path = "/v1/admin/notifications/dead-letters/{id}/retry", tag = "ops",
    params(("id" = String, Path, pattern = "^[0-9]{1,19}$", description = "dead letter id")),
    security(("bearer" = [])),
    responses(
        (status = 202, body = NotificationBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "notification_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn retry(
    caller: Authenticated,
    engine: Live,
    correlation: Correlation,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&caller)?;
    let missing = || ApiError::new(ErrorKind::NotificationNotFound, "no such dead letter");
    let id: u64 = path.parse().map_err(|_| missing())?;
    let job = engine.0.notifier().retry(id).ok_or_else(missing)?;
    engine
        .0
        .directory()
        .audit(vec![AuditDraft::new(
            Some(actor_of_caller(&caller.0)),
            "notification.retry",
            format!("notification:{id}"),
        )
        .tenant(job.tenant.map(TenantId))
        .after(
            serde_json::json!({"event": job.event, "channel": NotificationBody::new(&job).channel})
                .to_string(),
        )
        .correlation(correlation.0)])
        .await?;
    Ok(HttpResponse::Accepted().json(NotificationBody::new(&job)))
}
