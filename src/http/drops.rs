//! Drop routes: a seller schedules, edits and cancels drops of its SKUs;
//! anyone reads them; shoppers join a drop's waiting room and ask where they
//! stand.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::actors::drops::standing_json;
use crate::clock::{parse_rfc3339_ms, rfc3339_ms};
use crate::domain::drop::{AfterDrop, DropPatch, FlashDrop, NewDrop, WaitingRoomSpec};
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

/// What a drop's SKUs do once its window ends: `sell` puts them back on
/// normal sale (the per-buyer limit lifts); `close` keeps them closed until
/// another drop takes them. A cancelled drop closes its SKUs either way.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AfterDropBody {
    Sell,
    Close,
}

impl From<AfterDropBody> for AfterDrop {
    fn from(body: AfterDropBody) -> Self {
        match body {
            AfterDropBody::Sell => AfterDrop::Sell,
            AfterDropBody::Close => AfterDrop::Close,
        }
    }
}

impl From<AfterDrop> for AfterDropBody {
    fn from(after: AfterDrop) -> Self {
        match after {
            AfterDrop::Sell => AfterDropBody::Sell,
            AfterDrop::Close => AfterDropBody::Close,
        }
    }
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
    /// What its SKUs do once the window ends (default `close`).
    #[serde(default)]
    pub after_drop: Option<AfterDropBody>,
}

/// A seller's edit: only the fields named change. Before the drop starts
/// every field may change (the result is checked as a new drop is); once
/// it started, only `title` and `after_drop`, until it ends.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DropPatchBody {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub title: Option<String>,
    /// RFC 3339; a new start is now or later, within `drops.horizon_max_s`.
    #[schema(format = DateTime)]
    pub starts_at: Option<String>,
    /// RFC 3339, after the start and in the future, at most
    /// `drops.duration_max_s` after it.
    #[schema(format = DateTime)]
    pub ends_at: Option<String>,
    /// 0 = no limit. Each buyer's count so far is kept.
    #[schema(maximum = 1000)]
    pub per_buyer_limit: Option<u32>,
    pub after_drop: Option<AfterDropBody>,
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
    pub after_drop: AfterDropBody,
    /// Edits so far, and when the drop last changed (created, if never edited).
    pub edits: u32,
    pub updated_at: String,
    /// When an ended `sell` drop's SKUs went back on normal sale.
    pub skus_released_at: Option<String>,
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
            after_drop: spec.after_drop.into(),
            edits: drop.edits,
            updated_at: rfc3339_ms(drop.updated_at_ms),
            skus_released_at: drop.skus_released_at_ms().map(rfc3339_ms),
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
        after_drop: body.after_drop.map(AfterDrop::from).unwrap_or_default(),
    };
    new.validate(engine.0.clock().now_ms(), &c.limits())
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
                               "ends_at": body.ends_at, "per_buyer_limit": body.per_buyer_limit,
                               "after_drop": body.after_drop})
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
        .filter(|e| e.tenant == seller.tenant)
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

/// Edit or reschedule a drop (its seller): before it starts, its title,
/// window, per-buyer limit and `after_drop`; once it started, its title and
/// `after_drop` until it ends. Its SKUs enforce a new window or limit before
/// the answer; each buyer's count so far is kept. A 503 after the edit was
/// kept means not every SKU answered yet: they are told again until they do. An edit that changes
/// nothing answers the drop as it is.
#[utoipa::path(
    patch, path = "/v1/drops/{id}", tag = "drops",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    request_body = DropPatchBody,
    responses(
        (status = 200, body = DropBody),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a seller", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such drop, or another store's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "drop_started: a field fixed once the drop started (`fields` lists them)", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the drop or its SKUs did not answer; retry shortly", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn edit_drop(
    seller: Seller,
    engine: Live,
    correlation: Correlation,
    path: web::Path<String>,
    body: Json<DropPatchBody>,
) -> Result<HttpResponse, ApiError> {
    let id = drop_id(&path)?;
    let body = body.into_inner();
    let mut errors = Vec::new();
    let mut time = |field: &'static str, raw: &Option<String>| {
        raw.as_deref()
            .and_then(|raw| time_field(field, raw).map_err(|e| errors.push(e)).ok())
    };
    let starts_at_ms = time("starts_at", &body.starts_at);
    let ends_at_ms = time("ends_at", &body.ends_at);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let patch = DropPatch {
        title: body.title,
        starts_at_ms,
        ends_at_ms,
        per_buyer_limit: body.per_buyer_limit,
        after_drop: body.after_drop.map(AfterDrop::from),
    };
    let drops = engine.0.drops();
    let entry = Some(drops.lookup(id)?)
        .filter(|e| e.tenant == seller.tenant)
        .ok_or_else(|| ApiError::new(ErrorKind::DropNotFound, "no such drop"))?;
    let before = DropBody::new(&entry.view(), 0);
    let drop = drops.edit(id, patch, seller.caller.user).await?;
    let after = DropBody::new(&drop, entry.waiting());
    if after.edits != before.edits {
        let fields = |b: &DropBody| {
            serde_json::json!({"title": b.title, "starts_at": b.starts_at, "ends_at": b.ends_at,
                               "per_buyer_limit": b.per_buyer_limit, "after_drop": b.after_drop})
            .to_string()
        };
        engine
            .0
            .directory()
            .audit(vec![AuditDraft::new(
                Some(actor_of_caller(&seller.caller)),
                "drop.update",
                format!("drop:{}", id_text(id)),
            )
            .tenant(Some(seller.tenant))
            .before(fields(&before))
            .after(fields(&after))
            .correlation(correlation.0)])
            .await?;
    }
    Ok(HttpResponse::Ok().json(after))
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
