//! Drop routes: a seller schedules and cancels drops of its SKUs; anyone reads
//! them; shoppers join a drop's waiting room and ask where they stand.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::actors::drops::standing_json;
use crate::clock::{parse_rfc3339_ms, rfc3339_ms};
use crate::domain::drop::{DropLimits, FlashDrop, NewDrop, WaitingRoomSpec};
use crate::domain::identity::id_text;
use crate::domain::{DropId, InvalidField};
use crate::services::identity::actor_of_caller;
use crate::services::identity::AuditDraft;

use super::error::{ApiError, ErrorKind, Problem};
use super::extract::{AppState, Correlation, Live, Seller, Shopper};
use super::input::{Json, Query};
use super::tenants::page_limit;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitingRoomBody {
    /// Shoppers admitted per second once the drop is live.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub admit_per_s: u32,
    /// How long an admission lets its shopper reserve (default 300).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3600)]
    pub pass_ttl_s: Option<u32>,
    /// Shoppers who may wait at once (default 100000; at most
    /// `drops.waiting_room_capacity_max`).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub capacity: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDropBody {
    /// 1..=`drops.title_max_chars` (200) characters with something visible.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub title: String,
    /// 1..=`drops.skus_max` (100) SKU codes of the seller's store, each once;
    /// each in at most one open drop.
    #[schema(schema_with = super::schemas::drop_skus)]
    pub skus: Vec<String>,
    /// RFC 3339; within `drops.horizon_max_s` from now.
    #[schema(format = DateTime)]
    pub starts_at: String,
    /// RFC 3339, after `starts_at` and in the future, at most
    /// `drops.duration_max_s` after it.
    #[schema(format = DateTime)]
    pub ends_at: String,
    /// Units one buyer may hold or have bought across the drop's SKUs; 0 or absent = no limit.
    #[serde(default)]
    #[schema(maximum = 1000)]
    pub per_buyer_limit: Option<u32>,
    /// Optional waiting room: past `admit_per_s`, shoppers queue first come, first served.
    #[serde(default)]
    pub waiting_room: Option<WaitingRoomBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransitionBody {
    #[schema(example = "live")]
    pub state: String,
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DropWaitingRoomBody {
    pub admit_per_s: u32,
    pub pass_ttl_s: u32,
    pub capacity: u32,
    /// Shoppers waiting now.
    pub waiting: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DropBody {
    pub id: String,
    /// The store running it (a creator's id).
    pub creator_id: String,
    pub title: String,
    pub skus: Vec<String>,
    pub starts_at: String,
    pub ends_at: String,
    pub per_buyer_limit: u32,
    /// scheduled, live, sold_out, ended or cancelled.
    #[schema(example = "scheduled")]
    pub state: String,
    /// Every state it was in, oldest first.
    pub history: Vec<TransitionBody>,
    pub waiting_room: Option<DropWaitingRoomBody>,
    pub created_at: String,
}

impl DropBody {
    fn new(drop: &FlashDrop, waiting: usize) -> Self {
        let spec = &drop.spec;
        Self {
            id: id_text(spec.id),
            creator_id: id_text(spec.tenant),
            title: spec.title.clone(),
            skus: spec.skus.iter().map(|s| s.code.clone()).collect(),
            starts_at: rfc3339_ms(spec.starts_at_ms),
            ends_at: rfc3339_ms(spec.ends_at_ms),
            per_buyer_limit: spec.per_buyer_limit,
            state: drop.state.as_str().to_owned(),
            history: drop
                .history
                .iter()
                .map(|(state, at)| TransitionBody {
                    state: state.as_str().to_owned(),
                    at: rfc3339_ms(*at),
                })
                .collect(),
            waiting_room: spec.waiting_room.map(|room| DropWaitingRoomBody {
                admit_per_s: room.admit_per_s,
                pass_ttl_s: room.pass_ttl_s,
                capacity: room.capacity,
                waiting,
            }),
            created_at: rfc3339_ms(spec.created_at_ms),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DropPageBody {
    pub items: Vec<DropBody>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpcomingQuery {
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// A shopper's place in a waiting room.
#[derive(Debug, Serialize, ToSchema)]
pub struct StandingBody {
    pub drop_id: String,
    /// admitted, waiting, sold_out or ended.
    #[schema(example = "waiting")]
    pub state: String,
    pub ticket: u64,
    /// 1 is next (waiting only).
    pub position: Option<u64>,
    pub estimated_wait_s: Option<u64>,
    /// Until when an admitted shopper may reserve (admitted only).
    pub pass_expires_at: Option<String>,
}

fn drop_id(raw: &str) -> Result<DropId, ApiError> {
    DropId::parse(raw).ok_or_else(|| ApiError::new(ErrorKind::DropNotFound, "no such drop"))
}

fn time_field(field: &'static str, raw: &str) -> Result<u64, InvalidField> {
    parse_rfc3339_ms(raw)
        .ok_or_else(|| InvalidField::new(field, "must be an RFC 3339 timestamp after 1970"))
}

/// Schedule a drop of the seller's SKUs.
#[utoipa::path(
    post, path = "/v1/drops", tag = "drops",
    security(("bearer" = [])),
    request_body = NewDropBody,
    responses(
        (status = 201, body = DropBody, headers(("Location" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a seller", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "sku_not_found: a SKU of another store or none", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "sku_in_drop", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_drop(
    seller: Seller,
    engine: Live,
    correlation: Correlation,
    state: web::Data<AppState>,
    body: Json<NewDropBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut errors = Vec::new();
    let starts = time_field("starts_at", &body.starts_at).map_err(|e| errors.push(e));
    let ends = time_field("ends_at", &body.ends_at).map_err(|e| errors.push(e));
    let (Ok(starts_at_ms), Ok(ends_at_ms)) = (starts, ends) else {
        return Err(ApiError::invalid(errors));
    };
    let c = &state.config.drops;
    let new = NewDrop {
        title: body.title,
        sku_codes: body.skus,
        starts_at_ms,
        ends_at_ms,
        per_buyer_limit: body.per_buyer_limit.unwrap_or(0),
        waiting_room: body.waiting_room.map(|room| WaitingRoomSpec {
            admit_per_s: room.admit_per_s,
            pass_ttl_s: room.pass_ttl_s.unwrap_or(300),
            capacity: room.capacity.unwrap_or(100_000),
        }),
    };
    let limits = DropLimits {
        title_max_chars: c.title_max_chars,
        skus_max: c.skus_max,
        duration_max_ms: c.duration_max_s * 1000,
        horizon_max_ms: c.horizon_max_s * 1000,
        per_buyer_limit_max: c.per_buyer_limit_max,
        waiting_room_capacity_max: c.waiting_room_capacity_max,
    };
    new.validate(engine.0.clock().now_ms(), &limits)
        .map_err(ApiError::invalid)?;
    let drop = engine
        .0
        .drops()
        .create(seller.tenant, seller.caller.user, new)
        .await?;
    let body = DropBody::new(&drop, 0);
    engine
        .0
        .directory()
        .audit(vec![AuditDraft::new(
            Some(actor_of_caller(&seller.caller)),
            "drop.create",
            format!("drop:{}", body.id),
        )
        .tenant(Some(seller.tenant))
        .after(
            serde_json::json!({"title": body.title, "skus": body.skus, "starts_at": body.starts_at,
                               "ends_at": body.ends_at, "per_buyer_limit": body.per_buyer_limit})
            .to_string(),
        )
        .correlation(correlation.0)])
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/drops/{}", body.id)))
        .json(body))
}

/// Scheduled, live and sold-out drops, soonest first.
#[utoipa::path(
    get, path = "/v1/drops/upcoming", tag = "drops",
    params(
        ("limit" = Option<usize>, Query, nullable = false, minimum = 1, maximum = 100, description = "1..=100, default 50"),
        ("cursor" = Option<String>, Query, nullable = false, pattern = "^[0-9]{1,19}\\.[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, body = DropPageBody),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn upcoming(engine: Live, query: Query<UpcomingQuery>) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(query.limit)?;
    let after = match &query.cursor {
        None => None,
        Some(cursor) => Some(parse_cursor(cursor).ok_or_else(|| {
            ApiError::invalid(vec![InvalidField::new(
                "cursor",
                "not a cursor of this list",
            )])
        })?),
    };
    let drops = engine.0.drops();
    let mut page = drops.upcoming(after, limit + 1);
    let more = page.len() > limit;
    page.truncate(limit);
    let next_cursor = more
        .then(|| page.last())
        .flatten()
        .map(|d| format!("{}.{}", d.spec.starts_at_ms, id_text(d.spec.id)));
    let items = page
        .iter()
        .map(|d| {
            let waiting = drops.get(d.spec.id).map_or(0, |e| e.waiting());
            DropBody::new(d, waiting)
        })
        .collect();
    Ok(HttpResponse::Ok().json(DropPageBody { items, next_cursor }))
}

fn parse_cursor(cursor: &str) -> Option<(u64, DropId)> {
    let (at, id) = cursor.split_once('.')?;
    Some((at.parse().ok()?, DropId::parse(id)?))
}

/// A drop, its state and history.
#[utoipa::path(
    get, path = "/v1/drops/{id}", tag = "drops",
    params(("id" = String, Path, format = Uuid)),
    responses(
        (status = 200, body = DropBody),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "an ended drop could not be read back from disk", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_drop(engine: Live, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = drop_id(&path)?;
    let entry = engine.0.drops().lookup(id)?;
    Ok(HttpResponse::Ok().json(DropBody::new(&entry.view(), entry.waiting())))
}

/// Cancel a scheduled, live or sold-out drop (its seller). Its SKUs stop
/// selling through it at once, and everyone waiting is told.
#[utoipa::path(
    post, path = "/v1/drops/{id}/cancel", tag = "drops",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses(
        (status = 200, body = DropBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a seller", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such drop, or another store's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "invalid_transition: it ended or was cancelled", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the drop or its SKUs did not answer; retry shortly", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_drop(
    seller: Seller,
    engine: Live,
    correlation: Correlation,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = drop_id(&path)?;
    let drops = engine.0.drops();
    let entry = Some(drops.lookup(id)?)
        .filter(|e| e.spec.tenant == seller.tenant)
        .ok_or_else(|| ApiError::new(ErrorKind::DropNotFound, "no such drop"))?;
    let before = entry.state();
    let drop = drops.cancel(id).await?;
    engine
        .0
        .directory()
        .audit(vec![AuditDraft::new(
            Some(actor_of_caller(&seller.caller)),
            "drop.cancel",
            format!("drop:{}", id_text(id)),
        )
        .tenant(Some(seller.tenant))
        .before(serde_json::json!({"state": before.as_str()}).to_string())
        .after(serde_json::json!({"state": drop.state.as_str()}).to_string())
        .correlation(correlation.0)])
        .await?;
    Ok(HttpResponse::Ok().json(DropBody::new(&drop, 0)))
}

fn standing_body(drop: DropId, value: Value) -> StandingBody {
    StandingBody {
        drop_id: id_text(drop),
        state: value["state"].as_str().unwrap_or_default().to_owned(),
        ticket: value["ticket"].as_u64().unwrap_or_default(),
        position: value["position"].as_u64(),
        estimated_wait_s: value["estimated_wait_s"].as_u64(),
        pass_expires_at: value["pass_expires_at"].as_str().map(str::to_owned),
    }
}

/// Join a drop's waiting room (or ask again: one ticket per shopper). Past the
/// room's admission rate, shoppers wait and are admitted in arrival order;
/// an admitted shopper may reserve the drop's SKUs until the pass expires.
/// Signed-in WebSocket connections hear `{"type":"queue",...}` when admitted
/// or when the drop sells out.
#[utoipa::path(
    post, path = "/v1/drops/{id}/queue", tag = "drops",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses(
        (status = 200, body = StandingBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "drop_not_found, waiting_room_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "sold_out, drop_not_live (ended)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "the room is full (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn join_queue(
    shopper: Shopper,
    engine: Live,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = drop_id(&path)?;
    let standing = engine.0.drops().join(id, shopper.caller.user)?;
    Ok(HttpResponse::Ok().json(standing_body(id, standing_json(&standing))))
}

/// Where the caller stands in a drop's waiting room.
#[utoipa::path(
    get, path = "/v1/drops/{id}/queue", tag = "drops",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses(
        (status = 200, body = StandingBody),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "drop_not_found, waiting_room_not_found, ticket_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn queue_standing(
    shopper: Shopper,
    engine: Live,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = drop_id(&path)?;
    let standing = engine
        .0
        .drops()
        .standing(id, shopper.caller.user)?
        .ok_or_else(|| ApiError::new(ErrorKind::TicketNotFound, "join the queue first"))?;
    Ok(HttpResponse::Ok().json(standing_body(id, standing_json(&standing))))
}
