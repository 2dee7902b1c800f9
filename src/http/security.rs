//! Browser-facing defences: security headers on every response, and CORS
//! (preflights included) only for the origins `server.cors_allowed_origins` names.

use actix_cors::Cors;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::ServerConfig;

/// Headers every answer carries unless its handler set its own (the docs
/// page sets a policy that lets its script run). An API answer is never a page
/// to frame, sniff or cache.
const HEADERS: [(HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
    (header::CACHE_CONTROL, "no-store"),
];

/// Adds `HEADERS` to an answer, keeping any its handler set. Called by the
/// one middleware that already touches every answer (`observe`), with static
/// values: no allocation, no extra middleware layer on the reserve path.
pub fn add_headers(headers: &mut HeaderMap) {
    for (name, value) in HEADERS {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
}

/// Request headers a browser client may send.
const ALLOWED_HEADERS: [&str; 7] = [
    "authorization",
    "content-type",
    "idempotency-key",
    "cart-token",
    "x-correlation-id",
    "prefer",
    "if-match",
];

/// Response headers a browser client may read.
const EXPOSED_HEADERS: [&str; 7] = [
    "location",
    "retry-after",
    "x-ratelimit-remaining",
    "idempotent-replayed",
    "x-correlation-id",
    "cart-token",
    "etag",
];

/// CORS for the configured origins; `None` (no CORS headers, and a preflight
/// is an ordinary `OPTIONS` answered 405) when there are none.
pub fn cors(server: &ServerConfig) -> Option<Cors> {
    if server.cors_allowed_origins.is_empty() {
        return None;
    }
    let mut cors = Cors::default()
        .allowed_methods(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers(ALLOWED_HEADERS)
        .expose_headers(EXPOSED_HEADERS)
        .max_age(usize::try_from(server.cors_max_age_s).ok());
    for origin in &server.cors_allowed_origins {
        cors = cors.allowed_origin(origin);
    }
    Some(cors)
}
