//! Extractors shared by every route: the live engine (503 until recovery is
//! done), the caller from a bearer token (any account, shopper, seller), the
//! client address, the Idempotency-Key, and the error handlers that turn bad
//! JSON or paths into problem+json.

use std::future::{ready, Ready};
use std::sync::{Arc, OnceLock};

use actix_web::dev::Payload;
use actix_web::error::PathError;
use actix_web::{web, FromRequest, HttpRequest};

use std::net::IpAddr;

use actix_web::http::header::{self, HeaderValue};
use actix_web::HttpMessage;

use crate::app::Node;
use crate::auth::{Caller, TokenError};
use crate::config::Config;
use crate::domain::{BuyerId, IdempotencyKey, TenantId, TenantKey};

use super::error::{ApiError, ErrorKind};

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// Shared by every worker.
pub struct AppState {
    /// Set once recovery has finished.
    pub engine: Arc<OnceLock<Arc<Node>>>,
    pub config: Arc<Config>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub admission: Arc<super::admission::AdmissionControl>,
    /// `server.trusted_proxies`, parsed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl AppState {
    /// The state of an app on `config` whose engine goes into `engine` once
    /// recovery is done.
    pub fn new(engine: Arc<OnceLock<Arc<Node>>>, config: Arc<Config>) -> Self {
        Self {
            engine,
            metrics: crate::telemetry::metrics_handle(),
            admission: super::admission::AdmissionControl::new(&config.admission),
            trusted_proxies: config.trusted_proxies(),
            config,
        }
    }
}

fn state(req: &HttpRequest) -> Result<&AppState, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .map(|data| data.get_ref())
        .ok_or_else(|| ApiError::new(ErrorKind::Internal, "application state missing"))
}

/// The engine, once recovery is done.
pub struct Live(pub Arc<Node>);

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

/// The correlation id of this request (set by the `observe` middleware).
#[derive(Clone)]
pub struct CorrelationId(pub HeaderValue);

/// The request's correlation id, for audit lines.
pub struct Correlation(pub Option<String>);

impl FromRequest for Correlation {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Correlation(
            req.extensions()
                .get::<CorrelationId>()
                .and_then(|c| c.0.to_str().ok().map(str::to_owned)),
        )))
    }
}

fn unauthenticated(detail: &str) -> ApiError {
    ApiError::new(ErrorKind::Unauthenticated, detail)
}

/// Verifies `Authorization: Bearer <access token>`: signature, algorithm,
/// issuer, audience, expiry, and that its session is not revoked.
fn authenticate(req: &HttpRequest) -> Result<(Arc<Node>, Caller), ApiError> {
    let engine = state(req)?
        .engine
        .get()
        .cloned()
        .ok_or_else(|| ApiError::new(ErrorKind::NotReady, "recovery is still running"))?;
    let raw = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthenticated("send Authorization: Bearer <access token>"))?;
    // From the bytes: `HeaderValue::to_str` checks a token's 300 bytes one by
    // one, and whatever is not a well-formed token fails verification anyway.
    let raw = raw.as_bytes();
    let token = raw
        .strip_prefix(b"Bearer ")
        .or_else(|| raw.strip_prefix(b"bearer "))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .and_then(|t| std::str::from_utf8(t).ok())
        .ok_or_else(|| unauthenticated("the Authorization header must be Bearer <access token>"))?;
    let caller = verify_token(&engine, token)?;
    Ok((engine, caller))
}

/// Verifies an access token (signature, claims, expiry, revocation).
pub fn verify_token(engine: &Node, token: &str) -> Result<Caller, ApiError> {
    let directory = engine.directory();
    let caller = directory
        .keys()
        .verify_access(token, engine.clock().now_ms())
        .map_err(|e| match e {
            TokenError::Expired => unauthenticated("the access token has expired; refresh it"),
            TokenError::Invalid => unauthenticated("the access token is not valid"),
        })?;
    if directory.session_revoked(caller.session) {
        return Err(unauthenticated("the session of this token was ended"));
    }
    Ok(caller)
}

/// The caller when the request carries a bearer token (it must then be
/// valid), or nobody.
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequest for MaybeCaller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        if req.headers().get(header::AUTHORIZATION).is_none() {
            return ready(Ok(MaybeCaller(None)));
        }
        ready(authenticate(req).map(|(_, caller)| MaybeCaller(Some(caller))))
    }
}

/// Any signed-in account.
pub struct Authenticated(pub Caller);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).map(|(_, caller)| Authenticated(caller)))
    }
}

/// A signed-in account acting as a shopper (any role may buy); reservations
/// are owned by its account id.
pub struct Shopper {
    pub caller: Caller,
    pub buyer: BuyerId,
}

impl FromRequest for Shopper {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).map(|(_, caller)| Shopper {
            buyer: BuyerId::of_account(caller.user),
            caller,
        }))
    }
}

/// A seller admin or staff member, scoped to their store, within the store's
/// plan quota of requests per minute.
pub struct Seller {
    pub caller: Caller,
    pub tenant: TenantId,
    /// The store as its products and SKUs name their owner.
    pub tenant_key: TenantKey,
}

impl FromRequest for Seller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).and_then(|(engine, caller)| {
            let tenant = match caller.principal().selling_for() {
                Some(tenant) => tenant,
                None => {
                    return Err(ApiError::new(
                        ErrorKind::Forbidden,
                        "this route is for a store's seller admins and staff",
                    ))
                }
            };
            engine.directory().charge_tenant_request(tenant)?;
            Ok(Seller {
                caller,
                tenant,
                tenant_key: TenantKey::of_store(tenant),
            })
        }))
    }
}

/// The client's address: the peer, unless the peer is one of
/// `server.trusted_proxies`; then `X-Forwarded-For` is read right to left and
/// the first address that is not a trusted proxy is the client (what a client
/// writes on the left cannot move it).
pub struct ClientAddress(pub Option<IpAddr>);

impl FromRequest for ClientAddress {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let peer = req.peer_addr().map(|a| a.ip());
        let trusted = state(req)
            .map(|s| s.trusted_proxies.as_slice())
            .unwrap_or_default();
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok());
        ready(Ok(ClientAddress(
            peer.map(|peer| client_address(peer, forwarded, trusted)),
        )))
    }
}

/// See `ClientAddress`. `forwarded` holds the header lines in arrival order.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded: impl Iterator<Item = &'a str>,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded.flat_map(|line| line.split(',')).collect();
    let mut client = peer;
    for hop in hops.iter().rev().take(64) {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => client = ip,
            Ok(ip) => return ip,
            // Garbage where a proxy should have written an address: stop at
            // the last hop we could trust.
            Err(_) => return client,
        }
    }
    client
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

/// A path segment that cannot name anything is simply not found.
pub fn path_error(_error: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::new(ErrorKind::NotFound, "nothing exists at this path").into()
}
