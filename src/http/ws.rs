//! `GET /v1/ws`: one WebSocket per client. A reader task takes the client's
//! requests (subscribe, unsubscribe, auth, ping); the writer writes what the
//! hub says the connection is owed, pings on a heartbeat, and closes the
//! connection with a reason when the client is silent or cannot keep up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use serde::Deserialize;
use serde_json::json;

use crate::app::Node;
use crate::domain::identity::id_text;
use crate::domain::{DropId, SkuCode};
use crate::events::hub::{hello_frame, Connection, Frame, Outbox, SubscribeError, Topic};

use super::error::{ApiError, ErrorKind};
use super::extract::{verify_token, Live, MaybeCaller};

/// Open a WebSocket. Send `{"op":"subscribe","topics":["sku:CODE","drop:ID","drops","orders"]}`;
/// receive `{"type":"stock","sku","available","seq","ts_us"}` (at most one per SKU per
/// `ws.coalesce_ms`, always the latest), `{"type":"drop","id","creator_id","state","seq"}`,
/// `{"type":"queue",...}` and `{"type":"order",...}`. Sign in with
/// `Authorization: Bearer` on the upgrade or `{"op":"auth","token":"..."}`.
#[utoipa::path(
    get, path = "/v1/ws", tag = "live",
    responses(
        (status = 101, description = "switching to WebSocket"),
        (status = 401, description = "a bearer token was sent and is not valid", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 426, description = "not a WebSocket upgrade", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "ws.max_connections reached", body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    engine: Live,
    caller: MaybeCaller,
) -> Result<HttpResponse, ApiError> {
    let engine = engine.0;
    let connection = engine.hub().connect().ok_or_else(|| {
        ApiError::new(
            ErrorKind::Overloaded,
            "the server holds as many WebSocket connections as it allows",
        )
    })?;
    let (response, session, stream) = actix_ws::handle(&req, body).map_err(|error| {
        ApiError::new(
            ErrorKind::UpgradeRequired,
            format!("not a WebSocket upgrade: {error}"),
        )
    })?;
    if let Some(caller) = caller.0 {
        engine.hub().sign_in(&connection.outbox, caller.user);
    }
    actix_web::rt::spawn(serve(engine, connection, session, stream));
    Ok(response)
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    Subscribe { topics: Vec<String> },
    Unsubscribe { topics: Vec<String> },
    Auth { token: String },
    Ping,
}

fn error_frame(code: &str, detail: &str, topic: Option<&str>) -> Frame {
    Frame::from(
        json!({"type": "error", "code": code, "detail": detail, "topic": topic}).to_string(),
    )
}

/// Milliseconds since `epoch`, for the last time the client was heard.
fn since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

async fn serve(
    engine: Arc<Node>,
    connection: Connection,
    mut session: Session,
    stream: MessageStream,
) {
    let settings = engine.config().ws.clone();
    let hub = engine.hub().clone();
    let outbox = connection.outbox.clone();
    hub.tell(&outbox, hello_frame(outbox.id, settings.coalesce_ms));
    let epoch = Instant::now();
    let heard_at = Arc::new(AtomicU64::new(0));
    let reader = actix_web::rt::spawn(read(
        engine.clone(),
        outbox.clone(),
        session.clone(),
        stream.max_frame_size(settings.max_message_bytes),
        heard_at.clone(),
        epoch,
    ));
    let slow = Duration::from_secs(settings.slow_client_timeout_s);
    let mut heartbeat = tokio::time::interval(Duration::from_secs(settings.heartbeat_interval_s));
    heartbeat.tick().await;
    let going_away = hub.gone_away();
    let mut going_away = std::pin::pin!(going_away);
    let reason = 'serve: loop {
        tokio::select! {
            _ = &mut going_away => break 'serve "going_away",
            _ = outbox.ready() => {}
            _ = heartbeat.tick() => {
                let silent_ms = since(epoch).saturating_sub(heard_at.load(Ordering::Acquire));
                if silent_ms > settings.client_timeout_s * 1000 {
                    break 'serve "heartbeat_timeout";
                }
                match tokio::time::timeout(slow, session.ping(b"")).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break 'serve "closed",
                    Err(_) => break 'serve "slow_client",
                }
            }
        }
        if let Some(reason) = outbox.closing() {
            break reason;
        }
        for frame in outbox.take() {
            match tokio::time::timeout(slow, session.text(frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break 'serve "closed",
                Err(_) => break 'serve "slow_client",
            }
        }
    };
    metrics::counter!("flashdrop_ws_closed_total", "reason" => reason).increment(1);
    reader.abort();
    if reason != "closed" && reason != "client_closed" {
        tracing::debug!(connection = outbox.id, reason, "closing WebSocket");
        let close = CloseReason {
            code: match reason {
                "heartbeat_timeout" | "going_away" => CloseCode::Away,
                _ => CloseCode::Policy,
            },
            description: Some(reason.to_owned()),
        };
        // A client that reads nothing cannot take the close frame either.
        let _ = tokio::time::timeout(
            Duration::from_millis(settings.close_timeout_ms),
            session.close(Some(close)),
        )
        .await;
    }
    drop(connection);
}

async fn read(
    engine: Arc<Node>,
    outbox: Arc<Outbox>,
    mut session: Session,
    mut stream: MessageStream,
    heard_at: Arc<AtomicU64>,
    epoch: Instant,
) {
    let hub = engine.hub().clone();
    while let Some(message) = stream.recv().await {
        heard_at.store(since(epoch), Ordering::Release);
        match message {
            Ok(Message::Text(text)) => {
                match super::input::decode_json::<Request>(text.as_bytes()) {
                    Ok(request) => handle(&engine, &outbox, request),
                    Err(error) => hub.tell(
                        &outbox,
                        error_frame("malformed_request", &error.detail, None),
                    ),
                }
            }
            Ok(Message::Ping(bytes)) => {
                if session.pong(&bytes).await.is_err() {
                    break;
                }
            }
            Ok(Message::Pong(_)) | Ok(Message::Nop) => {}
            Ok(Message::Binary(_)) | Ok(Message::Continuation(_)) => hub.tell(
                &outbox,
                error_frame("malformed_request", "send JSON text frames", None),
            ),
            Ok(Message::Close(_)) | Err(_) => break,
        }
    }
    outbox.close("client_closed");
}

fn handle(engine: &Node, outbox: &Arc<Outbox>, request: Request) {
    let hub = engine.hub();
    match request {
        Request::Subscribe { topics } => {
            let mut subscribed = Vec::new();
            let mut current = Vec::new();
            for raw in topics.iter().take(1_000) {
                match topic(engine, raw) {
                    Ok(topic) => match hub.subscribe(outbox, topic) {
                        Ok(()) => {
                            subscribed.push(raw.clone());
                            if let Topic::Drop(id) = topic {
                                if let Some(entry) = engine.drops().get(id) {
                                    current.push(drop_state_frame(id, &entry));
                                }
                            }
                        }
                        Err(error @ SubscribeError::TooMany(_)) => hub.tell(
                            outbox,
                            error_frame("limit_exceeded", &error.to_string(), Some(raw)),
                        ),
                        Err(error @ SubscribeError::NeedsAccount) => hub.tell(
                            outbox,
                            error_frame("unauthenticated", &error.to_string(), Some(raw)),
                        ),
                    },
                    Err((code, detail)) => hub.tell(outbox, error_frame(code, detail, Some(raw))),
                }
            }
            hub.tell(
                outbox,
                Frame::from(json!({"type": "subscribed", "topics": subscribed}).to_string()),
            );
            // The current state of each drop after the answer (stock follows from the hub).
            for frame in current {
                hub.tell(outbox, frame);
            }
        }
        Request::Unsubscribe { topics } => {
            for raw in topics.iter().take(1_000) {
                if let Ok(topic) = topic(engine, raw) {
                    hub.unsubscribe(outbox, topic);
                }
            }
            hub.tell(
                outbox,
                Frame::from(json!({"type": "unsubscribed", "topics": topics}).to_string()),
            );
        }
        Request::Auth { token } => match verify_token(engine, &token) {
            Ok(caller) => {
                hub.sign_in(outbox, caller.user);
                hub.tell(
                    outbox,
                    Frame::from(
                        json!({"type": "authenticated", "account_id": id_text(caller.user)})
                            .to_string(),
                    ),
                );
            }
            Err(error) => hub.tell(outbox, error_frame("unauthenticated", &error.detail, None)),
        },
        Request::Ping => hub.tell(outbox, Frame::from(r#"{"type":"pong"}"#)),
    }
}

/// The current state of a drop, for a new watcher.
fn drop_state_frame(id: DropId, entry: &crate::actors::drops::DropEntry) -> Frame {
    let view = entry.view();
    Frame::from(
        json!({"type": "drop", "id": id_text(id), "creator_id": id_text(view.spec.tenant),
               "state": view.state.as_str(), "seq": 0})
        .to_string(),
    )
}

fn topic(engine: &Node, raw: &str) -> Result<Topic, (&'static str, &'static str)> {
    match raw.split_once(':') {
        Some(("sku", code)) => SkuCode::parse(code)
            .ok()
            .and_then(|code| engine.inventory().sku(&code).ok())
            .map(|info| Topic::Sku(info.id))
            .ok_or(("sku_not_found", "no such SKU")),
        Some(("drop", id)) => DropId::parse(id)
            .filter(|id| engine.drops().get(*id).is_some())
            .map(Topic::Drop)
            .ok_or(("drop_not_found", "no such drop")),
        None if raw == "drops" => Ok(Topic::Drops),
        None if raw == "orders" => Ok(Topic::Orders),
        _ => Err((
            "unknown_topic",
            "topics are sku:CODE, drop:ID, drops and orders",
        )),
    }
}
