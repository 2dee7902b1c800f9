//! Extractors shared by every route: the live engine (503 until recovery is
//! done), caller identity from headers, the Idempotency-Key, and the error
//! handlers that turn bad JSON or paths into problem+json.

use std::future::{ready, Ready};
use std::sync::{Arc, OnceLock};

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PathError};
use actix_web::{web, FromRequest, HttpRequest};

use crate::actors::Engine;
use crate::config::Config;
use crate::domain::{BuyerId, IdempotencyKey, TenantId};

use super::error::{ApiError, ErrorKind};

pub const BUYER_HEADER: &str = "x-buyer-id";
pub const TENANT_HEADER: &str = "x-tenant-id";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// Shared by every worker.
pub struct AppState {
    /// Set once recovery has finished.
    pub engine: Arc<OnceLock<Arc<Engine>>>,
    pub config: Arc<Config>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

fn state(req: &HttpRequest) -> Result<&AppState, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .map(|data| data.get_ref())
        .ok_or_else(|| ApiError::new(ErrorKind::Internal, "application state missing"))
}

/// The engine, once recovery is done.
pub struct Live(pub Arc<Engine>);

impl FromRequest for Live {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(state(req).and_then(|state| {
            state
                .engine
                .get()
                .cloned()
                .map(Live)
                .ok_or_else(|| ApiError::new(ErrorKind::NotReady, "recovery is still running"))
        }))
    }
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Result<Option<&'a str>, ApiError> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(value) => value.to_str().map(Some).map_err(|_| {
            ApiError::new(
                ErrorKind::Unauthenticated,
                format!("{name} is not valid text"),
            )
        }),
    }
}

/// The buying shopper, from `X-Buyer-Id` (until tokens replace it).
pub struct Buyer(pub BuyerId);

impl FromRequest for Buyer {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(header(req, BUYER_HEADER).and_then(|raw| {
            let raw = raw.ok_or_else(|| {
                ApiError::new(ErrorKind::Unauthenticated, "X-Buyer-Id header is required")
            })?;
            BuyerId::parse(raw).map(Buyer).map_err(|e| {
                ApiError::new(
                    ErrorKind::Unauthenticated,
                    format!("X-Buyer-Id: {}", e.reason),
                )
            })
        }))
    }
}

/// The selling tenant, from `X-Tenant-Id` (until tokens replace it).
pub struct Seller(pub TenantId);

impl FromRequest for Seller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(header(req, TENANT_HEADER).and_then(|raw| {
            let raw = raw.ok_or_else(|| {
                ApiError::new(ErrorKind::Unauthenticated, "X-Tenant-Id header is required")
            })?;
            TenantId::parse(raw).map(Seller).map_err(|e| {
                ApiError::new(
                    ErrorKind::Unauthenticated,
                    format!("X-Tenant-Id: {}", e.reason),
                )
            })
        }))
    }
}

/// The optional `Idempotency-Key` header.
pub struct IdempotencyHeader(pub Option<IdempotencyKey>);

impl FromRequest for IdempotencyHeader {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match req.headers().get(IDEMPOTENCY_HEADER) {
            None => Ok(IdempotencyHeader(None)),
            Some(value) => value
                .to_str()
                .map_err(|_| {
                    ApiError::from(crate::domain::InvalidField::new(
                        "Idempotency-Key",
                        "must be printable ASCII",
                    ))
                })
                .and_then(|raw| IdempotencyKey::parse(raw).map_err(ApiError::from))
                .map(|key| IdempotencyHeader(Some(key))),
        })
    }
}

/// JSON body errors: syntax is 400, shape and types are 422, size is 413.
pub fn json_error(error: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &error {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the body exceeds the limit of {limit} bytes"),
        ),
        JsonPayloadError::ContentType => ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "send the body as Content-Type: application/json",
        ),
        JsonPayloadError::Deserialize(inner) => match inner.classify() {
            serde_json::error::Category::Data => {
                ApiError::new(ErrorKind::ValidationFailed, inner.to_string())
            }
            _ => ApiError::new(ErrorKind::MalformedJson, inner.to_string()),
        },
        other => ApiError::new(ErrorKind::MalformedJson, other.to_string()),
    };
    api.into()
}

/// A path segment that cannot name anything is simply not found.
pub fn path_error(error: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::new(ErrorKind::NotFound, error.to_string()).into()
}
