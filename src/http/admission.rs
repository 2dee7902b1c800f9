//! Admission control at the edge: a token bucket per buyer on the routes that
//! take stock, a per-store shopper rate from the store's plan, and a cap on
//! requests in flight. Refusals are 429 (`Retry-After`,
//! `X-RateLimit-Remaining`) or, for the global cap, 503.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use dashmap::DashMap;
use parking_lot::Mutex;

use crate::config::AdmissionConfig;
use crate::domain::limiter::{KeyedLimiter, Rate, Verdict, Window};
use crate::domain::{TenantId, UserId};

use super::error::{ApiError, ErrorKind};

/// Shards of the buyer table, so buyers on different workers rarely share a lock.
const SHARDS: usize = 16;

pub struct AdmissionControl {
    config: AdmissionConfig,
    buyers: Vec<Mutex<KeyedLimiter<UserId>>>,
    /// Per store (account id of the store), this second's shopper requests.
    stores: DashMap<TenantId, Window>,
    in_flight: AtomicUsize,
}

fn limited(what: &str, retry_after_ms: u64) -> ApiError {
    ApiError::rate_limited(
        format!("too many {what}; retry after the Retry-After delay"),
        retry_after_ms.div_ceil(1000),
        0,
    )
}

impl AdmissionControl {
    pub fn new(config: &AdmissionConfig) -> Arc<Self> {
        let rate = Rate {
            burst: config.buyer_burst,
            refill_ms: config.buyer_refill_ms,
        };
        let per_shard = (config.buyer_keys_max / SHARDS).max(1);
        Arc::new(Self {
            config: config.clone(),
            buyers: (0..SHARDS)
                .map(|_| Mutex::new(KeyedLimiter::new(rate, per_shard)))
                .collect(),
            stores: DashMap::new(),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Spends one of `buyer`'s tokens; answers how many are left.
    pub fn charge_buyer(&self, buyer: UserId, now_ms: u64) -> Result<u32, ApiError> {
        let shard = (buyer.0 as usize ^ (buyer.0 >> 64) as usize) % SHARDS;
        match self.buyers[shard].lock().take(buyer, now_ms) {
            Verdict::Allowed { remaining } => Ok(remaining),
            Verdict::Limited { retry_after_ms } => {
                metrics::counter!("flashdrop_admission_limited_total", "by" => "buyer")
                    .increment(1);
                Err(limited("requests from this buyer", retry_after_ms))
            }
        }
    }

    /// Counts a shopper request against the store's plan: its
    /// `requests_per_minute` times `admission.tenant_shopper_multiplier`.
    pub fn charge_store(
        &self,
        store: TenantId,
        plan_requests_per_minute: u32,
        now_ms: u64,
    ) -> Result<(), ApiError> {
        let per_minute = u64::from(plan_requests_per_minute.max(1))
            * u64::from(self.config.tenant_shopper_multiplier);
        let per_second = per_minute.div_ceil(60);
        match self
            .stores
            .entry(store)
            .or_default()
            .take(per_second, now_ms)
        {
            Verdict::Allowed { .. } => Ok(()),
            Verdict::Limited { retry_after_ms } => {
                metrics::counter!("flashdrop_admission_limited_total", "by" => "store")
                    .increment(1);
                Err(limited("requests for this store's plan", retry_after_ms))
            }
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Decrements the in-flight count when the request is answered.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Refuses requests past `admission.max_in_flight` with 503 (health, readiness
/// and metrics are always served).
pub async fn limit_in_flight(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let exempt = matches!(req.path(), "/healthz" | "/readyz" | "/metrics");
    let control = req
        .app_data::<web::Data<AdmissionControl>>()
        .map(|control| control.clone().into_inner());
    let Some(control) = control.filter(|_| !exempt) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let before = control.in_flight.fetch_add(1, Ordering::Relaxed);
    let _counted = InFlight(&control.in_flight);
    if before >= control.config.max_in_flight {
        metrics::counter!("flashdrop_admission_limited_total", "by" => "in_flight").increment(1);
        let error = ApiError::new(
            ErrorKind::Overloaded,
            "the server is at its limit of requests in flight; retry shortly",
        );
        let response = error.error_response().map_into_right_body();
        return Ok(req.into_response(response));
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {

    use actix_web::http::StatusCode;
    use actix_web::middleware::from_fn;
    use actix_web::{test as actix_test, App, HttpResponse};

    use super::*;
    use crate::config::Config;

    #[actix_web::test]
    async fn requests_past_the_in_flight_cap_get_503_and_health_is_exempt() {
        let config = Config {
            admission: AdmissionConfig {
                max_in_flight: 1,
                ..AdmissionConfig::default()
            },
            ..Config::default()
        };
        let control = web::Data::from(AdmissionControl::new(&config.admission));
        let (release, held) = tokio::sync::watch::channel(false);
        let app = actix_test::init_service(
            App::new()
                .app_data(control.clone())
                .wrap(from_fn(limit_in_flight))
                .route(
                    "/slow",
                    web::get().to(move || {
                        let mut held = held.clone();
                        async move {
                            let _ = held.wait_for(|go| *go).await;
                            HttpResponse::Ok().finish()
                        }
                    }),
                )
                .route("/healthz", web::get().to(HttpResponse::Ok)),
        )
        .await;
        let first = actix_test::call_service(
            &app,
            actix_test::TestRequest::get().uri("/slow").to_request(),
        );
        let second = async {
            // The first request is in flight by the time this one arrives.
            while control.in_flight() == 0 {
                tokio::task::yield_now().await;
            }
            let refused = actix_test::call_service(
                &app,
                actix_test::TestRequest::get().uri("/slow").to_request(),
            )
            .await;
            let health = actix_test::call_service(
                &app,
                actix_test::TestRequest::get().uri("/healthz").to_request(),
            )
            .await;
            let _ = release.send(true);
            (refused, health)
        };
        let (first, (refused, health)) = futures_util::join!(first, second);
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers().get("retry-after").unwrap(), "1");
        assert_eq!(health.status(), StatusCode::OK);
        assert_eq!(control.in_flight(), 0, "every request is counted out");
    }
}
