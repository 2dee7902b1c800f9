//! Drops over HTTP: creating one, a scheduled drop, editing one, reserving in one.

use actix_web::http::StatusCode;
use flashdrop::clock::rfc3339_ms;
use serde_json::{json, Value};

use super::app::TestApp;
use super::client::{bearer, send, Response};

pub async fn create_drop(app: &TestApp, store: &str, body: Value) -> Response {
    let seller = app.seller(store).await;
    app.post_json("/v1/drops", Some(&seller.access_token), body)
        .await
}

/// `PATCH /v1/drops/{id}` as `token`.
pub async fn edit_drop(app: &TestApp, token: &str, id: &str, body: Value) -> Response {
    send(
        app.client
            .patch(app.url(&format!("/v1/drops/{id}")))
            .insert_header(bearer(token)),
        Some(body),
    )
    .await
}

/// A drop of `skus` from `start_ms` to `end_ms`; returns its id.
pub async fn scheduled(
    app: &TestApp,
    store: &str,
    skus: &[&str],
    start_ms: u64,
    end_ms: u64,
    extra: Value,
) -> String {
    let mut body = json!({
        "title": "Sneaker drop",
        "skus": skus,
        "starts_at": rfc3339_ms(start_ms),
        "ends_at": rfc3339_ms(end_ms),
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    let created = create_drop(app, store, body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["state"], "scheduled");
    created.body["id"].as_str().unwrap().to_owned()
}

pub async fn reserve_as(app: &TestApp, token: &str, sku: &str, body: Value) -> Response {
    send(
        app.client
            .post(app.url(&format!("/v1/skus/{sku}/reservations")))
            .insert_header(bearer(token)),
        Some(body),
    )
    .await
}
