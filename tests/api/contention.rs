//! Many buyers, one SKU, the same instant: nobody gets a unit that is not there.

use actix_web::http::StatusCode;
use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn reserve_never_oversells_under_contention() {
    let app = spawn_app().await;
    app.stocked_sku("seller-1", "HOT-1", 50).await;

    let attempts = (0..200).map(|i| {
        let app = &app;
        async move {
            app.reserve(&format!("buyer-{i}"), "HOT-1", json!({"quantity": 1}), None)
                .await
        }
    });
    let responses = join_all(attempts).await;

    let created = responses
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let out_of_stock = responses
        .iter()
        .filter(|r| r.status == StatusCode::CONFLICT && r.code() == "out_of_stock")
        .count();
    assert_eq!(created, 50, "exactly the stock is reserved");
    assert_eq!(out_of_stock, 150, "everyone else is told it is gone");

    let mut ids: Vec<_> = responses
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .map(|r| r.body["reservation_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50, "every reservation is distinct");

    let stock = app.stock("HOT-1").await;
    assert_eq!(stock["available"], 0);
    assert_eq!(stock["reserved"], 50);
    assert_eq!(stock["sold"], 0);
    app.stop().await;
}

#[actix_web::test]
async fn concurrent_multi_unit_reservations_never_exceed_stock() {
    let app = spawn_app().await;
    app.stocked_sku("seller-1", "HOT-2", 100).await;
    let attempts = (0..120).map(|i| {
        let app = &app;
        async move {
            let quantity = 1 + (i % 3);
            let response = app
                .reserve(
                    &format!("b{i}"),
                    "HOT-2",
                    json!({"quantity": quantity}),
                    None,
                )
                .await;
            (quantity, response)
        }
    });
    let responses = join_all(attempts).await;
    let reserved: u64 = responses
        .iter()
        .filter(|(_, r)| r.status == StatusCode::CREATED)
        .map(|(q, _)| *q as u64)
        .sum();
    for (_, response) in &responses {
        assert!(
            response.status == StatusCode::CREATED || response.code() == "out_of_stock",
            "{:?}",
            response.body
        );
    }
    let stock = app.stock("HOT-2").await;
    assert!(reserved <= 100);
    assert_eq!(stock["reserved"], reserved);
    assert_eq!(stock["available"].as_u64().unwrap() + reserved, 100);
    app.stop().await;
}
