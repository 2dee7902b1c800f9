//! The baselines' HTTP front: the reservation routes of flashdrop's API on
//! actix-web with the same worker count, the same bearer-token verification
//! (flashdrop's own `TokenKeys`, cache on as in flashdrop), the same body
//! validation, answers and problem codes. Only the store behind it differs:
//! a Redis Lua script, a PostgreSQL transaction, or nothing (the ceiling).
//!
//! It runs as a child process of the bench (`compare --serve-baseline SPEC`),
//! as flashdrop does, so every server under test is a process of its own.

use std::rc::Rc;

use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::Deserialize;
use serde_json::json;

use super::pg_store::PgStore;
use super::redis_store::RedisStore;

/// What the store answered to a reservation.
pub enum Reserved {
    Created(Hold),
    Replayed(Hold),
    OutOfStock,
    KeyReused,
    UnknownSku,
}

pub struct Hold {
    pub id: String,
    pub created_ms: u64,
    pub expires_ms: u64,
}

/// What the store answered to a release or a commit.
pub enum Finished {
    /// Done now, or done before (both are idempotent).
    Done(Hold),
    NotFound,
    Committed,
    Released,
    Expired,
}

pub struct StockRow {
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
}

pub struct ReserveArgs<'a> {
    pub sku: &'a str,
    pub buyer: &'a str,
    pub quantity: u32,
    pub ttl_ms: u64,
    pub now_ms: u64,
    /// Idempotency key and the fingerprint of the body it came with.
    pub key: Option<(&'a str, u64)>,
}

pub type StoreResult<T> = Result<T, String>;

/// The store of one worker thread (connections are per worker, as actix-web
/// handlers run on their worker's single-threaded runtime).
pub enum Store {
    Redis(RedisStore),
    Postgres(PgStore),
    /// No store: answers as if every reservation succeeded (the ceiling).
    Nothing,
}

impl Store {
    async fn reserve(&self, args: ReserveArgs<'_>) -> StoreResult<Reserved> {
        match self {
            Store::Redis(s) => s.reserve(args).await,
            Store::Postgres(s) => s.reserve(args).await,
            Store::Nothing => Ok(Reserved::Created(Hold {
                id: new_id(args.sku),
                created_ms: args.now_ms,
                expires_ms: args.now_ms + args.ttl_ms,
            })),
        }
    }

    async fn release(&self, id: &str, buyer: &str) -> StoreResult<Finished> {
        match self {
            Store::Redis(s) => s.release(id, buyer).await,
            Store::Postgres(s) => s.release(id, buyer).await,
            Store::Nothing => Ok(Finished::NotFound),
        }
    }

    async fn commit(&self, id: &str, now_ms: u64) -> StoreResult<Finished> {
        match self {
            Store::Redis(s) => s.commit(id, now_ms).await,
            Store::Postgres(s) => s.commit(id, now_ms).await,
            Store::Nothing => Ok(Finished::NotFound),
        }
    }

    async fn set_stock(&self, sku: &str, units: i64) -> StoreResult<()> {
        match self {
            Store::Redis(s) => s.set_stock(sku, units).await,
            Store::Postgres(s) => s.set_stock(sku, units).await,
            Store::Nothing => Ok(()),
        }
    }

    async fn stock(&self, sku: &str) -> StoreResult<Option<StockRow>> {
        match self {
            Store::Redis(s) => s.stock(sku).await,
            Store::Postgres(s) => s.stock(sku).await,
            Store::Nothing => Ok(None),
        }
    }
}

/// A reservation id: 16 hex digits of the SKU's hash (so the id names the
/// store keys it touches, as flashdrop's ids name their SKU) and 16 random.
pub fn new_id(sku: &str) -> String {
    format!("{:016x}{:016x}", sku_hash(sku), fastrand::u64(..))
}

pub fn sku_hash(sku: &str) -> u64 {
    flashdrop::domain::stable_hash(&[sku.as_bytes()])
}

/// The SKU hash an id carries, if it is one of ours.
pub fn id_sku_hash(id: &str) -> Option<u64> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(&id[..16], 16).ok()
}

/// How a worker reaches its store; each worker connects on first use.
#[derive(Clone)]
pub enum StoreSpec {
    Redis {
        url: String,
    },
    Postgres {
        conninfo: String,
        schema: String,
        connections: usize,
    },
    Nothing,
}

impl StoreSpec {
    /// `redis=URL`, `postgres=SCHEMA,CONNECTIONS,CONNINFO` or `none`.
    pub fn parse(spec: &str) -> Option<StoreSpec> {
        if spec == "none" {
            return Some(StoreSpec::Nothing);
        }
        if let Some(url) = spec.strip_prefix("redis=") {
            return Some(StoreSpec::Redis { url: url.into() });
        }
        let rest = spec.strip_prefix("postgres=")?;
        let mut parts = rest.splitn(3, ',');
        let schema = parts.next()?.to_owned();
        let connections = parts.next()?.parse().ok()?;
        let conninfo = parts.next()?.to_owned();
        Some(StoreSpec::Postgres {
            conninfo,
            schema,
            connections,
        })
    }

    pub fn render(&self) -> String {
        match self {
            StoreSpec::Redis { url } => format!("redis={url}"),
            StoreSpec::Postgres {
                conninfo,
                schema,
                connections,
            } => format!("postgres={schema},{connections},{conninfo}"),
            StoreSpec::Nothing => "none".into(),
        }
    }
}

struct Worker {
    spec: StoreSpec,
    workers: usize,
    store: tokio::sync::OnceCell<Store>,
    keys: &'static flashdrop::auth::TokenKeys,
}

impl Worker {
    async fn store(&self) -> StoreResult<&Store> {
        self.store
            .get_or_try_init(|| async {
                Ok(match &self.spec {
                    StoreSpec::Redis { url } => Store::Redis(RedisStore::connect(url).await?),
                    StoreSpec::Postgres {
                        conninfo,
                        schema,
                        connections,
                    } => Store::Postgres(PgStore::connect(
                        conninfo,
                        schema,
                        (*connections / self.workers).max(1),
                    )?),
                    StoreSpec::Nothing => Store::Nothing,
                })
            })
            .await
    }
}

fn problem(status: u16, code: &str, detail: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .content_type("application/problem+json")
        .json(json!({
            "type": format!("urn:flashdrop:problem:{code}"),
            "title": code,
            "status": status,
            "detail": detail,
            "code": code,
        }))
}

fn store_down(e: String) -> HttpResponse {
    problem(503, "overloaded", &e)
}

fn now_ms() -> u64 {
    flashdrop::clock::Clock::now_ms(&flashdrop::clock::SystemClock)
}

/// The caller's buyer id, from a bearer token verified as flashdrop does.
fn caller(req: &HttpRequest, worker: &Worker) -> Option<flashdrop::auth::Caller> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| worker.keys.verify_access(t, now_ms()).ok())
}

fn buyer(req: &HttpRequest, worker: &Worker) -> Option<String> {
    caller(req, worker).map(|caller| {
        flashdrop::domain::BuyerId::of_account(caller.user)
            .as_str()
            .to_owned()
    })
}

fn unauthorized() -> HttpResponse {
    problem(401, "unauthorized", "a valid bearer token is required")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReserveBody {
    quantity: u32,
    #[serde(default)]
    ttl_s: Option<u64>,
}

fn hold_body(sku: &str, buyer: &str, quantity: u32, state: &str, hold: &Hold) -> serde_json::Value {
    json!({
        "reservation_id": hold.id,
        "sku": sku,
        "buyer_id": buyer,
        "quantity": quantity,
        "state": state,
        "created_at": flashdrop::clock::rfc3339_ms(hold.created_ms),
        "expires_at": flashdrop::clock::rfc3339_ms(hold.expires_ms),
    })
}

async fn reserve(
    req: HttpRequest,
    worker: web::Data<Rc<Worker>>,
    path: web::Path<String>,
    body: web::Json<ReserveBody>,
) -> HttpResponse {
    let Some(buyer) = buyer(&req, &worker) else {
        return unauthorized();
    };
    let sku = path.into_inner();
    if sku.is_empty() || sku.len() > 64 {
        return problem(404, "sku_not_found", "no such SKU");
    }
    let defaults = flashdrop::config::ReservationConfig::default();
    if body.quantity == 0 || body.quantity > defaults.max_quantity {
        return problem(422, "validation_failed", "quantity out of range");
    }
    if let Some(ttl) = body.ttl_s {
        if ttl < defaults.min_ttl_s || ttl > defaults.max_ttl_s {
            return problem(422, "validation_failed", "ttl_s out of range");
        }
    }
    let key = match req.headers().get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= 255 => Some(k),
        Some(_) => return problem(400, "invalid_idempotency_key", "1..=255 visible ASCII"),
    };
    let fingerprint = flashdrop::domain::stable_hash(&[
        &body.quantity.to_le_bytes(),
        &body.ttl_s.map_or([0xff; 8], u64::to_le_bytes),
    ]);
    let args = ReserveArgs {
        sku: &sku,
        buyer: &buyer,
        quantity: body.quantity,
        ttl_ms: body.ttl_s.unwrap_or(defaults.default_ttl_s) * 1000,
        now_ms: now_ms(),
        key: key.map(|k| (k, fingerprint)),
    };
    let store = match worker.store().await {
        Ok(s) => s,
        Err(e) => return store_down(e),
    };
    let (hold, replayed) = match store.reserve(args).await {
        Ok(Reserved::Created(h)) => (h, false),
        Ok(Reserved::Replayed(h)) => (h, true),
        Ok(Reserved::OutOfStock) => return problem(409, "out_of_stock", "not enough units"),
        Ok(Reserved::KeyReused) => {
            return problem(
                409,
                "idempotency_key_reused",
                "the key came with another body",
            )
        }
        Ok(Reserved::UnknownSku) => return problem(404, "sku_not_found", "no such SKU"),
        Err(e) => return store_down(e),
    };
    HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/reservations/{}", hold.id)))
        .insert_header((
            "Idempotent-Replayed",
            if replayed { "true" } else { "false" },
        ))
        .json(hold_body(&sku, &buyer, body.quantity, "held", &hold))
}

fn finished(outcome: StoreResult<Finished>, ok: impl FnOnce(Hold) -> HttpResponse) -> HttpResponse {
    match outcome {
        Ok(Finished::Done(hold)) => ok(hold),
        Ok(Finished::NotFound) => problem(404, "reservation_not_found", "no such reservation"),
        Ok(Finished::Committed) => problem(409, "reservation_committed", "already sold"),
        Ok(Finished::Released) => problem(409, "reservation_released", "already released"),
        Ok(Finished::Expired) => problem(409, "reservation_expired", "the hold expired"),
        Err(e) => store_down(e),
    }
}

async fn release(
    req: HttpRequest,
    worker: web::Data<Rc<Worker>>,
    path: web::Path<String>,
) -> HttpResponse {
    let Some(buyer) = buyer(&req, &worker) else {
        return unauthorized();
    };
    let store = match worker.store().await {
        Ok(s) => s,
        Err(e) => return store_down(e),
    };
    finished(store.release(&path, &buyer).await, |_| {
        HttpResponse::NoContent().finish()
    })
}

/// As in flashdrop, only a seller commits a hold directly (a shopper's units
/// are sold through a paid order); the baseline has one store, so any
/// seller's token will do.
async fn commit(
    req: HttpRequest,
    worker: web::Data<Rc<Worker>>,
    path: web::Path<String>,
) -> HttpResponse {
    let Some(caller) = caller(&req, &worker) else {
        return unauthorized();
    };
    if caller.tenant.is_none() {
        return problem(
            403,
            "forbidden",
            "only the SKU's sellers commit a hold directly",
        );
    }
    let store = match worker.store().await {
        Ok(s) => s,
        Err(e) => return store_down(e),
    };
    let id = path.into_inner();
    finished(store.commit(&id, now_ms()).await, |hold| {
        HttpResponse::Ok().json(json!({
            "reservation_id": hold.id,
            "state": "committed",
            "created_at": flashdrop::clock::rfc3339_ms(hold.created_ms),
            "expires_at": flashdrop::clock::rfc3339_ms(hold.expires_ms),
        }))
    })
}

#[derive(Deserialize)]
struct SetStockBody {
    warehouses: std::collections::BTreeMap<String, i64>,
}

/// Setup only (the bench's seller): on-hand of a new SKU.
async fn set_stock(
    worker: web::Data<Rc<Worker>>,
    path: web::Path<String>,
    body: web::Json<SetStockBody>,
) -> HttpResponse {
    let units = body.warehouses.values().sum();
    let store = match worker.store().await {
        Ok(s) => s,
        Err(e) => return store_down(e),
    };
    match store.set_stock(&path, units).await {
        Ok(()) => HttpResponse::Ok().json(json!({"sku": path.as_str(), "available": units})),
        Err(e) => store_down(e),
    }
}

async fn get_stock(worker: web::Data<Rc<Worker>>, path: web::Path<String>) -> HttpResponse {
    let store = match worker.store().await {
        Ok(s) => s,
        Err(e) => return store_down(e),
    };
    match store.stock(&path).await {
        Ok(Some(row)) => HttpResponse::Ok().json(json!({
            "sku": path.as_str(),
            "available": row.available,
            "reserved": row.reserved,
            "sold": row.sold,
        })),
        Ok(None) => problem(404, "sku_not_found", "no such SKU"),
        Err(e) => store_down(e),
    }
}

/// Serves until SIGTERM; prints `baseline listening on port N` once bound.
pub fn serve(spec: StoreSpec) {
    let a = flashdrop::config::AuthConfig::default();
    let keys: &'static flashdrop::auth::TokenKeys = Box::leak(Box::new(
        flashdrop::auth::TokenKeys::new(
            crate::support::BENCH_SECRET.as_bytes(),
            &a.issuer,
            &a.audience,
            3600,
            3600,
        )
        .with_cache(a.token_cache_entries),
    ));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let system = actix_rt::System::new();
    system.block_on(async move {
        if let StoreSpec::Postgres {
            conninfo, schema, ..
        } = &spec
        {
            // Expired holds go back to stock once a second (flashdrop uses timers).
            let store = PgStore::connect(conninfo, schema, 1).expect("postgres");
            actix_rt::spawn(async move {
                loop {
                    actix_rt::time::sleep(std::time::Duration::from_secs(1)).await;
                    let _ = store.sweep_expired(now_ms()).await;
                }
            });
        }
        let server = HttpServer::new(move || {
            let worker = Rc::new(Worker {
                spec: spec.clone(),
                workers,
                store: tokio::sync::OnceCell::new(),
                keys,
            });
            App::new()
                .app_data(web::Data::new(worker))
                .app_data(
                    web::JsonConfig::default()
                        .limit(65_536)
                        .error_handler(|e, _| {
                            let detail = e.to_string();
                            actix_web::error::InternalError::from_response(
                                e,
                                problem(422, "validation_failed", &detail),
                            )
                            .into()
                        }),
                )
                .route("/v1/skus/{sku}/reservations", web::post().to(reserve))
                .route("/v1/reservations/{id}", web::delete().to(release))
                .route("/v1/reservations/{id}/commit", web::post().to(commit))
                .route("/v1/skus/{sku}/stock", web::put().to(set_stock))
                .route("/v1/skus/{sku}/stock", web::get().to(get_stock))
                .route("/readyz", web::get().to(HttpResponse::Ok))
        })
        .workers(workers)
        .max_connections(25_000)
        .bind(("127.0.0.1", 0))
        .expect("bind");
        println!("baseline listening on port {}", server.addrs()[0].port());
        server.run().await.expect("baseline server");
    });
}
