//! A reservation's life: held, then released or committed, each step idempotent,
//! and only its buyer can see or change it.

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{bearer, send, spawn_app, Response, TestApp};

/// The buyer releases its hold; the SKU's seller `t` commits it (shoppers
/// buy through orders).
async fn act(app: &TestApp, method: &str, buyer: &str, id: &str) -> Response {
    match method {
        "release" => {
            let token = app.buyer(buyer).await.access_token;
            let request = app
                .client
                .delete(app.url(&format!("/v1/reservations/{id}")));
            send(request.insert_header(bearer(&token)), None).await
        }
        _ => app.commit_as_seller("t", id).await,
    }
}

#[actix_web::test]
async fn release_and_commit_are_idempotent_and_exclusive() {
    let app = spawn_app().await;
    app.stocked_sku("t", "LIFE-1", 10).await;
    let a = app
        .reserve("ana", "LIFE-1", json!({"quantity": 2}), None)
        .await;
    let b = app
        .reserve("ana", "LIFE-1", json!({"quantity": 3}), None)
        .await;
    let a = a.body["reservation_id"].as_str().unwrap().to_owned();
    let b = b.body["reservation_id"].as_str().unwrap().to_owned();

    assert_eq!(
        act(&app, "release", "ana", &a).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        act(&app, "release", "ana", &a).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        act(&app, "commit", "ana", &a).await.code(),
        "reservation_released"
    );

    let committed = act(&app, "commit", "ana", &b).await;
    assert_eq!(committed.status, StatusCode::OK);
    assert_eq!(committed.body["state"], "committed");
    assert_eq!(committed.body["quantity"], 3);
    let again = act(&app, "commit", "ana", &b).await;
    assert_eq!(again.body, committed.body);
    assert_eq!(
        act(&app, "release", "ana", &b).await.code(),
        "reservation_committed"
    );

    let stock = app.stock("LIFE-1").await;
    assert_eq!(stock["available"], 7);
    assert_eq!(stock["reserved"], 0);
    assert_eq!(stock["sold"], 3);
    assert_eq!(
        stock["warehouses"]["main"], 7,
        "sold units left the warehouse"
    );
    app.stop().await;
}

#[actix_web::test]
async fn another_buyer_cannot_see_release_or_commit_a_reservation() {
    let app = spawn_app().await;
    app.stocked_sku("t", "LIFE-2", 10).await;
    let held = app
        .reserve("ana", "LIFE-2", json!({"quantity": 2}), None)
        .await;
    let id = held.body["reservation_id"].as_str().unwrap().to_owned();

    assert_eq!(
        app.reservation("bo", &id).await.code(),
        "reservation_not_found"
    );
    assert_eq!(
        act(&app, "release", "bo", &id).await.code(),
        "reservation_not_found"
    );
    let bo = app.buyer("bo").await.access_token;
    let commit = send(
        app.client
            .post(app.url(&format!("/v1/reservations/{id}/commit")))
            .insert_header(bearer(&bo)),
        None,
    )
    .await;
    assert_eq!(commit.code(), "forbidden", "shoppers never commit");

    let view = app.reservation("ana", &id).await;
    assert_eq!(view.status, StatusCode::OK);
    assert_eq!(view.body["state"], "held");
    assert_eq!(view.body["sku"], "LIFE-2");
    assert_eq!(app.stock("LIFE-2").await["reserved"], 2);
    app.stop().await;
}

#[actix_web::test]
async fn commit_draws_units_from_warehouses_in_name_order() {
    let app = spawn_app().await;
    app.create_product("t", &["LIFE-3"]).await;
    let set = app
        .set_stock("t", "LIFE-3", json!({"b-west": 5, "a-east": 2}))
        .await;
    assert_eq!(set.body["available"], 7);
    let held = app
        .reserve("ana", "LIFE-3", json!({"quantity": 4}), None)
        .await;
    let id = held.body["reservation_id"].as_str().unwrap().to_owned();
    assert_eq!(act(&app, "commit", "ana", &id).await.status, StatusCode::OK);
    let stock = app.stock("LIFE-3").await;
    assert_eq!(stock["warehouses"], json!({"a-east": 0, "b-west": 3}));
    assert_eq!(stock["sold"], 4);
    app.stop().await;
}
