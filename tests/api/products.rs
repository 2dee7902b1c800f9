//! Products: created by a seller, read by anyone with live availability.

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{bearer, send, spawn_app};

#[actix_web::test]
async fn a_product_shows_live_availability_of_each_sku() {
    let app = spawn_app().await;
    let created = send(
        app.client
            .post(app.url("/v1/products"))
            .insert_header(bearer(&app.seller("studio-9").await.access_token)),
        Some(json!({
            "title": "Launch sneaker",
            "description": "Limited run",
            "category": "shoes",
            "attributes": {"brand": "studio-9"},
            "skus": [
                {"sku": "SNK-42", "price": {"amount": 12900, "currency": "EUR"}, "attributes": {"size": "42"}},
                {"sku": "SNK-43", "price": {"amount": 12900, "currency": "EUR"}, "low_stock_threshold": 3}
            ]
        })),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("/v1/products/{id}").as_str())
    );
    let store = app.seller("studio-9").await.tenant_id.unwrap();
    assert_eq!(created.body["tenant_id"], store.as_str());
    assert_eq!(created.body["skus"][1]["low_stock_threshold"], 3);

    app.set_stock("studio-9", "SNK-42", json!({"main": 10}))
        .await;
    app.set_stock("studio-9", "SNK-43", json!({"main": 4}))
        .await;
    app.reserve("ana", "SNK-42", json!({"quantity": 4}), None)
        .await;

    let read = send(app.client.get(app.url(&format!("/v1/products/{id}"))), None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["title"], "Launch sneaker");
    assert_eq!(read.body["attributes"]["brand"], "studio-9");
    let skus = read.body["skus"].as_array().unwrap();
    assert_eq!(skus[0]["sku"], "SNK-42");
    assert_eq!(
        skus[0]["price"],
        json!({"amount": 12900, "currency": "EUR"})
    );
    assert_eq!(
        skus[0]["stock"],
        json!({"available": 6, "reserved": 4, "sold": 0})
    );
    assert_eq!(
        skus[1]["stock"],
        json!({"available": 4, "reserved": 0, "sold": 0})
    );
    app.stop().await;
}

#[actix_web::test]
async fn products_and_stock_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::test_config(dir.path());
    let app = crate::helpers::spawn_config(config.clone(), None).await;
    let created = app.create_product("t", &["KEEP-1", "KEEP-2"]).await;
    app.set_stock("t", "KEEP-2", json!({"main": 9})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.stop().await;

    let app = crate::helpers::spawn_config(config, None).await;
    let read = send(app.client.get(app.url(&format!("/v1/products/{id}"))), None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["skus"][1]["stock"]["available"], 9);
    // Codes stay taken after a restart.
    let again = send(
        app.client
            .post(app.url("/v1/products"))
            .insert_header(bearer(&app.seller("t").await.access_token)),
        Some(json!({"title": "x", "skus": [{"sku": "KEEP-1", "price": {"amount": 1, "currency": "USD"}}]})),
    )
    .await;
    assert_eq!(again.code(), "sku_exists");
    // New SKUs do not reuse ids of old ones.
    app.create_product("t", &["KEEP-3"]).await;
    app.set_stock("t", "KEEP-3", json!({"main": 1})).await;
    assert_eq!(app.stock("KEEP-2").await["available"], 9);
    assert_eq!(app.stock("KEEP-3").await["available"], 1);
    app.stop().await;
}
