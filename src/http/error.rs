//! The one error table: every error a client can see, with its stable code,
//! HTTP status and title, rendered as `application/problem+json` (RFC 9457).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::actors::EngineError;
use crate::domain::{InvalidField, StockError};

/// Every error kind, its code, status and title. Codes never change once shipped.
macro_rules! error_table {
    ($( $kind:ident => ($code:literal, $status:ident, $title:literal), )*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorKind { $( $kind, )* }

        impl ErrorKind {
            pub const ALL: &'static [ErrorKind] = &[ $( ErrorKind::$kind, )* ];

            pub fn code(self) -> &'static str {
                match self { $( ErrorKind::$kind => $code, )* }
            }

            pub fn status(self) -> StatusCode {
                match self { $( ErrorKind::$kind => StatusCode::$status, )* }
            }

            pub fn title(self) -> &'static str {
                match self { $( ErrorKind::$kind => $title, )* }
            }
        }
    };
}

error_table! {
    MalformedJson => ("malformed_json", BAD_REQUEST, "The body is not valid JSON"),
    ValidationFailed => ("validation_failed", UNPROCESSABLE_ENTITY, "The request is not valid"),
    UnsupportedMediaType => ("unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "The body must be application/json"),
    PayloadTooLarge => ("payload_too_large", PAYLOAD_TOO_LARGE, "The body is too large"),
    Unauthenticated => ("unauthenticated", UNAUTHORIZED, "Identity is missing or invalid"),
    NotFound => ("not_found", NOT_FOUND, "No such route"),
    MethodNotAllowed => ("method_not_allowed", METHOD_NOT_ALLOWED, "The route does not accept this method"),
    SkuNotFound => ("sku_not_found", NOT_FOUND, "No such SKU"),
    ProductNotFound => ("product_not_found", NOT_FOUND, "No such product"),
    ReservationNotFound => ("reservation_not_found", NOT_FOUND, "No such reservation"),
    OutOfStock => ("out_of_stock", CONFLICT, "Not enough stock"),
    IdempotencyKeyReused => ("idempotency_key_reused", CONFLICT, "The Idempotency-Key was used with a different request"),
    ReservationReleased => ("reservation_released", CONFLICT, "The reservation was released"),
    ReservationExpired => ("reservation_expired", CONFLICT, "The reservation expired"),
    ReservationCommitted => ("reservation_committed", CONFLICT, "The reservation was already committed"),
    StockBelowReserved => ("stock_below_reserved", CONFLICT, "Stock cannot go below what is reserved"),
    InsufficientOnHand => ("insufficient_on_hand", CONFLICT, "The warehouse does not hold that many units"),
    TooManyReservations => ("too_many_reservations", CONFLICT, "The SKU holds too many open reservations"),
    SkuExists => ("sku_exists", CONFLICT, "A SKU code is already in use"),
    LimitExceeded => ("limit_exceeded", UNPROCESSABLE_ENTITY, "A configured limit would be exceeded"),
    Overloaded => ("overloaded", SERVICE_UNAVAILABLE, "Too busy; retry shortly"),
    NotReady => ("not_ready", SERVICE_UNAVAILABLE, "Recovery is still running"),
    Unavailable => ("unavailable", SERVICE_UNAVAILABLE, "Temporarily unavailable"),
    Internal => ("internal_error", INTERNAL_SERVER_ERROR, "Internal error"),
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:flashdrop:problem:<code>`
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable code.
    pub code: String,
    /// Per-field validation errors (`validation_failed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub detail: String,
    /// Extra members of the problem object (e.g. `available` for out_of_stock).
    pub extensions: Map<String, Value>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            extensions: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extensions.insert(key.into(), value);
        self
    }

    pub fn invalid(fields: Vec<InvalidField>) -> Self {
        let detail = fields
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let errors: Vec<Value> = fields
            .iter()
            .map(|f| json!({"field": f.field, "reason": f.reason}))
            .collect();
        Self::new(ErrorKind::ValidationFailed, detail).with("errors", Value::Array(errors))
    }

    fn retry_after_s(&self) -> Option<u32> {
        match self.kind {
            ErrorKind::Overloaded | ErrorKind::NotReady | ErrorKind::Unavailable => Some(1),
            _ => None,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = Map::new();
        body.insert(
            "type".into(),
            Value::String(format!("urn:flashdrop:problem:{}", self.kind.code())),
        );
        body.insert("title".into(), Value::String(self.kind.title().into()));
        body.insert("status".into(), Value::from(self.kind.status().as_u16()));
        body.insert("detail".into(), Value::String(self.detail.clone()));
        body.insert("code".into(), Value::String(self.kind.code().into()));
        for (key, value) in &self.extensions {
            body.entry(key.clone()).or_insert_with(|| value.clone());
        }
        let mut response = HttpResponse::build(self.kind.status());
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        if let Some(seconds) = self.retry_after_s() {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.body(Value::Object(body).to_string())
    }
}

impl From<InvalidField> for ApiError {
    fn from(field: InvalidField) -> Self {
        ApiError::invalid(vec![field])
    }
}

impl From<StockError> for ApiError {
    fn from(error: StockError) -> Self {
        let detail = error.to_string();
        match error {
            StockError::OutOfStock {
                requested,
                available,
            } => ApiError::new(ErrorKind::OutOfStock, detail)
                .with("requested", Value::from(requested))
                .with("available", Value::from(available)),
            StockError::UnknownReservation => ApiError::new(ErrorKind::ReservationNotFound, detail),
            StockError::ReservationReleased => {
                ApiError::new(ErrorKind::ReservationReleased, detail)
            }
            StockError::ReservationExpired => ApiError::new(ErrorKind::ReservationExpired, detail),
            StockError::ReservationCommitted => {
                ApiError::new(ErrorKind::ReservationCommitted, detail)
            }
            StockError::IdempotencyKeyReused => {
                ApiError::new(ErrorKind::IdempotencyKeyReused, detail)
            }
            StockError::StockBelowReserved { on_hand, reserved } => {
                ApiError::new(ErrorKind::StockBelowReserved, detail)
                    .with("on_hand", Value::from(on_hand))
                    .with("reserved", Value::from(reserved))
            }
            StockError::InsufficientOnHand { on_hand, .. } => {
                ApiError::new(ErrorKind::InsufficientOnHand, detail)
                    .with("on_hand", Value::from(on_hand))
            }
            StockError::TooManyWarehouses { .. } | StockError::TooManyUnits { .. } => {
                ApiError::new(ErrorKind::LimitExceeded, detail)
            }
            StockError::TooManyReservations { .. } => {
                ApiError::new(ErrorKind::TooManyReservations, detail)
            }
            StockError::Invariant(violation) => {
                tracing::error!(%violation, "invariant violation reached the HTTP edge");
                ApiError::new(
                    ErrorKind::Internal,
                    "internal error; the SKU is being rebuilt",
                )
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Stock(stock) => stock.into(),
            EngineError::UnknownSku => ApiError::new(ErrorKind::SkuNotFound, "no such SKU"),
            EngineError::SkuExists(codes) => {
                let detail = format!("SKU codes already in use: {}", codes.join(", "));
                ApiError::new(ErrorKind::SkuExists, detail).with("skus", json!(codes))
            }
            EngineError::Overloaded => ApiError::new(
                ErrorKind::Overloaded,
                "this SKU's queue is full; retry after the Retry-After delay",
            ),
            EngineError::Unavailable => ApiError::new(
                ErrorKind::Unavailable,
                "the request was not carried out; retry shortly",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = HashSet::new();
        for kind in ErrorKind::ALL {
            let code = kind.code();
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn overload_answers_carry_retry_after() {
        let response = ApiError::from(EngineError::Overloaded).error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/problem+json"
        );
    }
}
