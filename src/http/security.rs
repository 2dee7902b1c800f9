//! Browser-facing defences: the security headers each kind of answer needs, and CORS
//! (preflights included) only for the origins `server.cors_allowed_origins` names.

use actix_cors::Cors;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::ServerConfig;

/// A page's defences: nothing may frame it, and it leaks no referrer. Sent by
/// the handlers of answers a browser renders (`/docs`, with the
/// `Content-Security-Policy` its script needs); a JSON or problem body is
/// never rendered as a page, so the API's answers do not carry them.
pub const PAGE_HEADERS: [(HeaderName, &str); 2] = [
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// Adds the headers that protect any answer, keeping any its handler set:
/// `nosniff` on every answer (no body is ever run as script or page), and
/// `Cache-Control: no-store` on `GET` and `HEAD` answers, the only ones a
/// shared cache could store here (a `POST` answer is cacheable only with
/// explicit freshness, which flashdrop never sends). Called by the one
/// middleware that already touches every answer (`observe`), with static
/// values: no allocation, and no bytes an API client does not need on the
/// reserve path.
pub fn add_headers(headers: &mut HeaderMap, readable: bool) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if readable && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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
