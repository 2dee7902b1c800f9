//! Operations: readiness gating, correlation ids, Prometheus metrics, the
//! OpenAPI document, and start-up refusing bad configuration.

use std::sync::{Arc, OnceLock};

use actix_web::http::StatusCode;
use actix_web::{test as actix_test, web, App};
use serde_json::{json, Value};

use flashdrop::config::Config;
use flashdrop::http::extract::AppState;

use crate::helpers::{send, spawn_app};

#[actix_web::test]
async fn requests_get_503_not_ready_until_recovery_finishes() {
    let state = web::Data::new(AppState::new(
        Arc::new(OnceLock::new()),
        Arc::new(Config::default()),
    ));
    let app = actix_test::init_service(
        App::new()
            .app_data(state)
            .configure(|cfg| flashdrop::http::routes(cfg, 65_536)),
    )
    .await;
    let health = actix_test::call_service(
        &app,
        actix_test::TestRequest::get().uri("/healthz").to_request(),
    )
    .await;
    assert_eq!(health.status(), StatusCode::OK);
    for uri in ["/readyz", "/v1/skus/A-1/stock"] {
        let response =
            actix_test::call_service(&app, actix_test::TestRequest::get().uri(uri).to_request())
                .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(response.headers().get("retry-after").unwrap(), "1");
        let body: Value = actix_test::read_body_json(response).await;
        assert_eq!(body["code"], "not_ready");
    }
}

#[actix_web::test]
async fn correlation_ids_are_echoed_or_generated() {
    let app = spawn_app().await;
    let echoed = send(
        app.client
            .get(app.url("/healthz"))
            .insert_header(("x-correlation-id", "req-42")),
        None,
    )
    .await;
    assert_eq!(echoed.header("x-correlation-id"), Some("req-42"));
    let generated = send(app.client.get(app.url("/healthz")), None).await;
    let id = generated.header("x-correlation-id").unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let insane = send(
        app.client
            .get(app.url("/healthz"))
            .insert_header(("x-correlation-id", "a b")),
        None,
    )
    .await;
    assert_ne!(insane.header("x-correlation-id"), Some("a b"));
    app.stop().await;
}

#[actix_web::test]
async fn metrics_cover_requests_reservations_wal_and_actors() {
    let app = spawn_app().await;
    app.stocked_sku("t", "MET-1", 1).await;
    app.reserve("ana", "MET-1", json!({"quantity": 1}), None)
        .await;
    app.reserve("bo", "MET-1", json!({"quantity": 1}), None)
        .await;
    let ready = send(app.client.get(app.url("/readyz")), None).await;
    assert_eq!(ready.status, StatusCode::OK);

    let metrics = send(app.client.get(app.url("/metrics")), None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.body.as_str().unwrap().to_owned();
    for needle in [
        r#"flashdrop_http_request_duration_seconds_bucket{route="/v1/skus/{sku}/reservations",method="POST",status="201""#,
        r#"flashdrop_http_request_duration_seconds_bucket{route="/v1/skus/{sku}/reservations",method="POST",status="409""#,
        r#"flashdrop_reservations_total{outcome="created"}"#,
        r#"flashdrop_reservations_total{outcome="out_of_stock"}"#,
        "flashdrop_wal_batch_records_bucket",
        "flashdrop_wal_batch_bytes_bucket",
        r#"flashdrop_wal_commit_seconds_bucket{sync="fdatasync""#,
        "flashdrop_sku_actors_active",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}\n{text}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn openapi_documents_every_route() {
    let app = spawn_app().await;
    let doc = send(app.client.get(app.url("/openapi.json")), None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths = &doc.body["paths"];
    for (path, verbs) in [
        ("/v1/products", &["post"][..]),
        ("/v1/products/{id}", &["get"]),
        ("/v1/skus/{sku}/stock", &["get", "put"]),
        ("/v1/skus/{sku}/stock/adjust", &["post"]),
        ("/v1/skus/{sku}/reservations", &["post"]),
        ("/v1/reservations/{id}", &["get", "delete"]),
        ("/v1/reservations/{id}/commit", &["post"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
        ("/openapi.json", &["get"]),
    ] {
        for verb in verbs {
            assert!(paths[path][verb].is_object(), "openapi lacks {verb} {path}");
        }
    }
    assert!(doc.body["components"]["schemas"]["Problem"].is_object());
    app.stop().await;
}

#[test]
fn an_invalid_setting_stops_start_up_naming_the_key() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flashdrop"))
        .args(["serve", "--port", "0"])
        .env("FLASHDROP__WAL__SYNC", "sometimes")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("wal.sync"), "{stderr}");
    assert!(stderr.contains("FLASHDROP__WAL__SYNC"), "{stderr}");
}
