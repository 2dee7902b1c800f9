//! `Idempotency-Key`: the same key and body give the first answer again; the
//! same key with another body is refused.

use actix_web::http::StatusCode;
use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn same_key_returns_the_same_reservation_and_another_body_conflicts() {
    let app = spawn_app().await;
    app.stocked_sku("s", "IDEM-1", 10).await;

    let first = app
        .reserve("ana", "IDEM-1", json!({"quantity": 2}), Some("order-77"))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.header("idempotent-replayed"), Some("false"));

    let again = app
        .reserve("ana", "IDEM-1", json!({"quantity": 2}), Some("order-77"))
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body, "the first answer, unchanged");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    let other_body = app
        .reserve("ana", "IDEM-1", json!({"quantity": 3}), Some("order-77"))
        .await;
    assert_eq!(other_body.status, StatusCode::CONFLICT);
    assert_eq!(other_body.code(), "idempotency_key_reused");

    let other_ttl = app
        .reserve(
            "ana",
            "IDEM-1",
            json!({"quantity": 2, "ttl_s": 30}),
            Some("order-77"),
        )
        .await;
    assert_eq!(other_ttl.code(), "idempotency_key_reused");

    // Keys belong to a buyer: another buyer's identical key is a new request.
    let bo = app
        .reserve("bo", "IDEM-1", json!({"quantity": 2}), Some("order-77"))
        .await;
    assert_eq!(bo.status, StatusCode::CREATED);
    assert_ne!(bo.body["reservation_id"], first.body["reservation_id"]);

    let stock = app.stock("IDEM-1").await;
    assert_eq!(stock["reserved"], 4, "only two reservations exist");
    app.stop().await;
}

#[actix_web::test]
async fn concurrent_retries_with_one_key_create_one_reservation() {
    let app = spawn_app().await;
    app.stocked_sku("s", "IDEM-2", 100).await;
    let retries = (0..40).map(|_| {
        let app = &app;
        async move {
            app.reserve("ana", "IDEM-2", json!({"quantity": 1}), Some("retry-storm"))
                .await
        }
    });
    let responses = join_all(retries).await;
    let first_id = &responses[0].body["reservation_id"];
    for response in &responses {
        assert_eq!(response.status, StatusCode::CREATED, "{:?}", response.body);
        assert_eq!(&response.body["reservation_id"], first_id);
    }
    assert_eq!(app.stock("IDEM-2").await["reserved"], 1);
    app.stop().await;
}

#[actix_web::test]
async fn the_same_key_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::test_config(dir.path());
    let app = crate::helpers::spawn_config(config.clone(), None).await;
    app.stocked_sku("s", "IDEM-3", 10).await;
    let first = app
        .reserve("ana", "IDEM-3", json!({"quantity": 1}), Some("k"))
        .await;
    let accounts = app.identities();
    app.stop().await;

    let app = crate::helpers::spawn_config(config, None).await;
    app.adopt(accounts);
    let again = app
        .reserve("ana", "IDEM-3", json!({"quantity": 1}), Some("k"))
        .await;
    assert_eq!(again.body, first.body);
    assert_eq!(app.stock("IDEM-3").await["reserved"], 1);
    app.stop().await;
}
