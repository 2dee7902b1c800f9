//! Orders over HTTP: the checkout saga end to end, its failures (declines,
//! timeouts, webhooks late, twice and out of order), contention, and the
//! fulfilment state machine.

use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use super::helpers::*;

/// Places an order; answers the 202 body.
pub async fn place(app: &TestApp, token: &str, items: Value, method: &str, wait: bool) -> Response {
    let mut request = app
        .client
        .post(app.url("/v1/orders"))
        .insert_header(bearer(token));
    if wait {
        request = request.insert_header(("prefer", "wait=10"));
    }
    send(
        request,
        Some(json!({"items": items, "shipping_address": "1 Test Street, Testville", "payment_method": method})),
    )
    .await
}

/// Polls the order until its state is one of `states`.
pub async fn order_in(app: &TestApp, token: &str, id: &str, states: &[&str]) -> Value {
    let found = eventually(Duration::from_secs(20), || async {
        let order = app.get_as(&format!("/v1/orders/{id}"), Some(token)).await;
        let state = order.body["state"].as_str().unwrap_or_default().to_owned();
        states.contains(&state.as_str()).then_some(order.body)
    })
    .await;
    match found {
        Some(order) => order,
        None => {
            let order = app.get_as(&format!("/v1/orders/{id}"), Some(token)).await;
            panic!("order {id} never reached {states:?}: {:#}", order.body)
        }
    }
}

async fn fulfil(app: &TestApp, token: &str, id: &str, body: Value) -> Response {
    app.post_json(&format!("/v1/orders/{id}/fulfillment"), Some(token), body)
        .await
}

/// The sandbox provider's payments for one order.
async fn payments_of(app: &TestApp, admin: &str, order: &str) -> Vec<Value> {
    let ledger = app.get_as("/v1/admin/payments/sandbox", Some(admin)).await;
    assert_eq!(ledger.status, StatusCode::OK, "{:?}", ledger.body);
    ledger.body["payments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["reference"] == order)
        .cloned()
        .collect()
}

#[actix_web::test]
async fn a_multi_seller_order_is_paid_shipped_delivered_returned_and_refunded() {
    let app = spawn_with_admin().await;
    let admin = app.platform_admin().await;
    app.stocked_sku("north", "N-TEE", 10).await;
    app.stocked_sku("south", "S-CAP", 10).await;
    let north = app.seller("north").await;
    let south = app.seller("south").await;
    let buyer = app.buyer("ada").await;
    let mut ws = WsClient::connect(&app, Some(&buyer.access_token)).await;
    ws.subscribe(&["orders"]).await;

    let placed = place(
        &app,
        &buyer.access_token,
        json!([{"sku": "N-TEE", "quantity": 2}, {"sku": "S-CAP", "quantity": 1}]),
        "pm_card_visa",
        true,
    )
    .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    assert_eq!(
        placed.header("location"),
        Some(format!("/v1/orders/{id}").as_str())
    );
    let order = order_in(&app, &buyer.access_token, &id, &["paid"]).await;
    assert_eq!(order["total"], 3 * 1999);
    assert_eq!(order["sub_orders"].as_array().unwrap().len(), 2);
    assert_eq!(order["payment"]["status"], "captured");
    assert_eq!(order["payment"]["captured"], 3 * 1999);
    let history: Vec<&str> = order["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["created", "reserved", "payment_pending", "paid"]);
    let saga: Vec<(String, String)> = order["saga"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["step"].as_str().unwrap().into(),
                e["phase"].as_str().unwrap().into(),
            )
        })
        .collect();
    for step in ["reserve", "authorize", "capture", "commit"] {
        assert!(saga.contains(&(step.into(), "started".into())), "{saga:?}");
        assert!(
            saga.contains(&(step.into(), "completed".into())),
            "{saga:?}"
        );
    }
    let tee = app.stock("N-TEE").await;
    assert_eq!(
        (
            tee["available"].as_u64(),
            tee["sold"].as_u64(),
            tee["reserved"].as_u64()
        ),
        (Some(8), Some(2), Some(0))
    );

    // A seller sees its part only, and moves it one step at a time.
    let seen = app
        .get_as(&format!("/v1/orders/{id}"), Some(&north.access_token))
        .await;
    assert_eq!(seen.body["sub_orders"].as_array().unwrap().len(), 1);
    assert_eq!(seen.body["lines"][0]["sku"], "N-TEE");
    let skip = fulfil(&app, &north.access_token, &id, json!({"state": "shipped"})).await;
    assert_eq!(skip.status, StatusCode::CONFLICT, "{:?}", skip.body);
    assert_eq!(skip.code(), "invalid_transition");
    assert_eq!(skip.body["allowed"], json!(["packed"]));
    for (token, tracking) in [
        (&north.access_token, "TRK-N"),
        (&south.access_token, "TRK-S"),
    ] {
        for state in ["packed", "shipped", "delivered"] {
            let moved = fulfil(
                &app,
                token,
                &id,
                json!({"state": state, "tracking": tracking}),
            )
            .await;
            assert_eq!(moved.status, StatusCode::OK, "{state}: {:?}", moved.body);
        }
    }
    let order = order_in(&app, &buyer.access_token, &id, &["delivered"]).await;
    assert_eq!(order["sub_orders"][0]["tracking"], "TRK-N");

    // Return: north accepts with restock, south refuses.
    let asked = app
        .post_json(
            &format!("/v1/orders/{id}/returns"),
            Some(&buyer.access_token),
            json!({"reason": "wrong size"}),
        )
        .await;
    assert_eq!(asked.status, StatusCode::OK, "{:?}", asked.body);
    assert_eq!(asked.body["state"], "return_requested");
    let refused = fulfil(&app, &south.access_token, &id, json!({"state": "closed"})).await;
    assert_eq!(refused.status, StatusCode::OK, "{:?}", refused.body);
    let accepted = fulfil(
        &app,
        &north.access_token,
        &id,
        json!({"state": "refunded", "restock": true}),
    )
    .await;
    assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
    let order = order_in(&app, &buyer.access_token, &id, &["refunded"]).await;
    assert_eq!(order["payment"]["refunded"], 2 * 1999);
    let tee = app.stock("N-TEE").await;
    assert_eq!(tee["available"], 10, "restocked: {tee}");

    // The provider's books agree: one payment, captured once, north's part refunded.
    let payments = payments_of(&app, &admin, &id).await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0]["captured_minor"], 3 * 1999);
    assert_eq!(payments[0]["refunded_minor"], 2 * 1999);

    // The buyer heard every move on the orders topic, in order.
    let mut heard = Vec::new();
    while let Some(message) = ws.next_json(Duration::from_secs(2)).await {
        if message["type"] == "order" && message["order_id"] == id.as_str() {
            heard.push(message["state"].as_str().unwrap().to_owned());
        }
        if heard.last().map(String::as_str) == Some("refunded") {
            break;
        }
    }
    assert_eq!(
        heard,
        [
            "payment_pending",
            "paid",
            "packed",
            "shipped",
            "delivered",
            "return_requested",
            "refunded"
        ]
    );
    drop(ws);
    app.stop().await;
}
