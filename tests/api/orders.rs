//! Orders over HTTP: the checkout saga end to end, its failures (declines,
//! timeouts, webhooks late, twice and out of order), contention, and the
//! fulfilment state machine.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use super::helpers::*;

async fn fulfil(app: &TestApp, token: &str, id: &str, body: Value) -> Response {
    app.post_json(&format!("/v1/orders/{id}/fulfillment"), Some(token), body)
        .await
}

/// The sandbox provider's payments for one order.
async fn payments_of(app: &TestApp, admin: &str, order: &str) -> Vec<Value> {
    sandbox_payments(&app.client, &app.base, admin, Some(order)).await
}

#[actix_web::test]
async fn a_multi_seller_cart_is_paid_shipped_delivered_returned_and_refunded_with_notifications() {
    let (smtp_port, inbox) = smtp_server().await;
    let (hook_port, hooks) = webhook_server();
    let app = spawn_with(|c| {
        with_admin(c);
        c.notifications.smtp_host = "127.0.0.1".into();
        c.notifications.smtp_port = smtp_port;
        // The stores' webhook receiver is on loopback.
        c.outbound.allowed_networks = vec!["127.0.0.1/32".into()];
    })
    .await;
    let admin = app.platform_admin().await;
    app.stocked_sku("north", "N-TEE", 10).await;
    app.stocked_sku("south", "S-CAP", 10).await;
    let north = app.seller("north").await;
    let south = app.seller("south").await;
    for (seller, path) in [(&north, "north"), (&south, "south")] {
        let store = seller.tenant_id.clone().unwrap();
        let set = send(
            app.client
                .put(app.url(&format!("/v1/tenants/{store}")))
                .insert_header(bearer(&seller.access_token)),
            Some(json!({"webhook_url": format!("http://127.0.0.1:{hook_port}/{path}")})),
        )
        .await;
        assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    }
    let buyer = app.buyer("ada").await;
    let mut ws = WsClient::connect(&app, Some(&buyer.access_token)).await;
    ws.subscribe(&["orders"]).await;

    // A cart across both stores, checked out.
    for (sku, quantity) in [("N-TEE", 2), ("S-CAP", 1)] {
        let added = app
            .post_json(
                "/v1/cart/items",
                Some(&buyer.access_token),
                json!({"sku": sku, "quantity": quantity}),
            )
            .await;
        assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    }
    let placed = send(
        app.client
            .post(app.url("/v1/cart/checkout"))
            .insert_header(bearer(&buyer.access_token))
            .insert_header(("prefer", "wait=10")),
        Some(json!({"shipping_address": "1 Test Street, Testville", "payment_method": "pm_card_visa"})),
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
    // The buyer's e-mails and both stores' webhooks, each announcing every
    // milestone of the order.
    let milestones = [
        "order.placed",
        "order.paid",
        "order.shipped",
        "order.delivered",
        "order.refunded",
    ];
    let webhooks = eventually(Duration::from_secs(10), || async {
        let got = hooks.received.lock().clone();
        (got.len() >= 2 * milestones.len()).then_some(got)
    })
    .await
    .expect("both stores hear every milestone");
    for store in [
        north.tenant_id.clone().unwrap(),
        south.tenant_id.clone().unwrap(),
    ] {
        let mut events: Vec<String> = webhooks
            .iter()
            .filter(|(_, _, body)| {
                serde_json::from_str::<Value>(body).unwrap()["store_id"] == store.as_str()
            })
            .map(|(event, _, _)| event.clone())
            .collect();
        events.sort();
        let mut expected: Vec<String> = milestones.iter().map(|m| m.to_string()).collect();
        expected.sort();
        assert_eq!(events, expected, "{store}");
    }
    let mail = eventually(Duration::from_secs(10), || async {
        let got = inbox.lock().clone();
        (got.len() >= milestones.len()).then_some(got)
    })
    .await
    .expect("the buyer's e-mails arrive");
    let all = mail.join("\n");
    for state in [
        "payment pending",
        "paid",
        "shipped",
        "delivered",
        "refunded",
    ] {
        assert!(all.contains(&format!("{id} is {state}")), "{state}: {all}");
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

#[actix_web::test]
async fn a_thousand_concurrent_checkouts_for_100_units_make_exactly_100_paid_orders() {
    let app = spawn_with(|c| {
        with_admin(c);
        c.orders.lines_max = 5;
    })
    .await;
    let admin = app.platform_admin().await;
    app.stocked_sku("hype", "HYPE-1", 100).await;
    let buyers: Vec<String> = (0..1000).map(|n| minted_buyer(&app.engine, n).0).collect();
    let attempts = buyers.iter().map(|token| {
        place(
            &app,
            token,
            json!([{"sku": "HYPE-1", "quantity": 1}]),
            "pm_card_visa",
            false,
        )
    });
    let placed = futures_util::future::join_all(attempts).await;
    let mut ids = Vec::new();
    for (response, token) in placed.iter().zip(&buyers) {
        match response.status {
            StatusCode::ACCEPTED => ids.push((
                response.body["order_id"].as_str().unwrap().to_owned(),
                token,
            )),
            // Refused at the door is fine too; nothing was held for it.
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}: {:?}", response.body),
        }
    }
    assert!(ids.len() >= 100, "only {} orders were accepted", ids.len());
    let settled = eventually(Duration::from_secs(60), || async {
        (app.engine.orders().active() == 0).then_some(())
    })
    .await;
    assert!(
        settled.is_some(),
        "{} sagas never settled",
        app.engine.orders().active()
    );
    let mut paid = Vec::new();
    let mut cancelled = 0;
    for chunk in ids.chunks(100) {
        let reads = chunk.iter().map(|(id, token)| {
            let app = &app;
            async move {
                app.get_as(&format!("/v1/orders/{id}"), Some(token.as_str()))
                    .await
            }
        });
        for order in futures_util::future::join_all(reads).await {
            match order.body["state"].as_str() {
                Some("paid") => paid.push(order.body["order_id"].as_str().unwrap().to_owned()),
                Some("cancelled") => {
                    cancelled += 1;
                    assert_eq!(order.body["cancel_reason"], "rejected", "{:?}", order.body);
                    assert!(order.body["rejection"]
                        .as_str()
                        .unwrap()
                        .starts_with("out_of_stock"));
                }
                other => panic!("order in {other:?}: {:?}", order.body),
            }
        }
    }
    assert_eq!(paid.len(), 100, "exactly the stock is sold");
    assert_eq!(cancelled, ids.len() - 100);
    let stock = app.stock("HYPE-1").await;
    assert_eq!(
        (
            stock["available"].as_u64(),
            stock["reserved"].as_u64(),
            stock["sold"].as_u64()
        ),
        (Some(0), Some(0), Some(100)),
        "{stock}"
    );
    // The provider captured each paid order once and charged nobody else.
    let payments = sandbox_payments(&app.client, &app.base, &admin, None).await;
    // The books come a bounded page at a time; a bad cursor or bound is 422.
    let first = app
        .get_as("/v1/admin/payments/sandbox?limit=50", Some(&admin))
        .await;
    assert_eq!(first.body["payments"].as_array().unwrap().len(), 50);
    assert!(
        first.body["next_cursor"].is_string(),
        "{:?}",
        first.body["next_cursor"]
    );
    for bad in [
        "limit=0",
        "limit=101",
        "cursor=pay_nope",
        "reference=",
        "page=2",
    ] {
        let refused = app
            .get_as(&format!("/v1/admin/payments/sandbox?{bad}"), Some(&admin))
            .await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let captured: Vec<&str> = payments
        .iter()
        .filter(|p| p["captured_minor"].as_i64() > Some(0))
        .map(|p| p["reference"].as_str().unwrap())
        .collect();
    assert_eq!(captured.len(), 100);
    let mut unique = captured.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 100, "no order was charged twice");
    assert!(captured.iter().all(|r| paid.iter().any(|p| p == r)));
    app.stop().await;
}

/// The webhook secret of every test app: derived from its main secret.
fn webhook_secret() -> Vec<u8> {
    flashdrop::config::derive_secret(
        crate::helpers::TEST_SECRET.as_bytes(),
        "payments.webhook_secret",
    )
    .into_bytes()
}

async fn post_webhook(app: &TestApp, body: &Value, signature: Option<String>) -> Response {
    let mut request = app.client.post(app.url("/v1/payments/webhook"));
    if let Some(signature) = signature {
        request = request.insert_header(("flashdrop-signature", signature));
    }
    send(request, Some(body.clone())).await
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[actix_web::test]
async fn a_decline_keeps_the_order_and_its_stock_until_a_retry_pays() {
    let app = spawn_with_admin().await;
    let admin = app.platform_admin().await;
    app.stocked_sku("shop", "DEC-1", 5).await;
    let buyer = app.buyer("bo").await;
    let placed = place(
        &app,
        &buyer.access_token,
        json!([{"sku": "DEC-1", "quantity": 2}]),
        "pm_card_insufficient_funds",
        true,
    )
    .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    assert_eq!(placed.body["state"], "payment_pending");
    assert_eq!(placed.body["payment"]["status"], "declined");
    assert_eq!(placed.body["payment"]["decline_code"], "insufficient_funds");
    assert_eq!(
        app.stock("DEC-1").await["reserved"],
        2,
        "the order keeps its holds"
    );

    let bad = app
        .post_json(
            &format!("/v1/orders/{id}/pay"),
            Some(&buyer.access_token),
            json!({"payment_method": "visa"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let retried = app
        .post_json(
            &format!("/v1/orders/{id}/pay"),
            Some(&buyer.access_token),
            json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(retried.status, StatusCode::OK, "{:?}", retried.body);
    let order = order_in(&app, &buyer.access_token, &id, &["paid"]).await;
    assert_eq!(order["payment"]["attempt"], 2);
    let again = app
        .post_json(
            &format!("/v1/orders/{id}/pay"),
            Some(&buyer.access_token),
            json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "invalid_transition");
    let stock = app.stock("DEC-1").await;
    assert_eq!(
        (stock["reserved"].as_u64(), stock["sold"].as_u64()),
        (Some(0), Some(2))
    );
    let payments = payments_of(&app, &admin, &id).await;
    let statuses: Vec<&str> = payments
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["declined", "captured"]);

    // A declined order the buyer gives up on: cancelled, stock back.
    let placed = place(
        &app,
        &buyer.access_token,
        json!([{"sku": "DEC-1", "quantity": 1}]),
        "pm_card_declined",
        true,
    )
    .await;
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    let cancelled = app
        .post_json(
            &format!("/v1/orders/{id}/cancel"),
            Some(&buyer.access_token),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["state"], "cancelled");
    assert_eq!(cancelled.body["cancel_reason"], "buyer_cancelled");
    let stock = app.stock("DEC-1").await;
    assert_eq!(
        (stock["available"].as_u64(), stock["reserved"].as_u64()),
        (Some(3), Some(0))
    );
    app.stop().await;
}

#[actix_web::test]
async fn an_unanswered_payment_times_out_voided_and_released() {
    let app = spawn_with(|c| {
        with_admin(c);
        c.orders.payment_deadline_s = 2;
        c.orders.hold_ttl_s = 30;
        c.payments.poll_interval_ms = 200;
    })
    .await;
    let admin = app.platform_admin().await;
    app.stocked_sku("shop", "TMO-1", 3).await;
    let buyer = app.buyer("cy").await;
    let placed = place(
        &app,
        &buyer.access_token,
        json!([{"sku": "TMO-1", "quantity": 3}]),
        "pm_no_response",
        true,
    )
    .await;
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    assert_eq!(
        placed.body["payment"]["status"], "pending",
        "{:?}",
        placed.body
    );
    assert_eq!(app.stock("TMO-1").await["available"], 0);
    let order = order_in(&app, &buyer.access_token, &id, &["cancelled"]).await;
    assert_eq!(order["cancel_reason"], "payment_timeout");
    assert_eq!(order["payment"]["status"], "voided");
    let stock = app.stock("TMO-1").await;
    assert_eq!(
        (
            stock["available"].as_u64(),
            stock["reserved"].as_u64(),
            stock["sold"].as_u64()
        ),
        (Some(3), Some(0), Some(0))
    );
    let payments = payments_of(&app, &admin, &id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "voided");
    assert_eq!(payments[0]["captured_minor"], 0);
    app.stop().await;
}

#[actix_web::test]
async fn webhooks_late_twice_and_out_of_order_settle_orders_once() {
    let app = spawn_with(|c| {
        with_admin(c);
        c.payments.sandbox_async_delay_ms = 50;
        c.payments.sandbox_webhook_duplicate_rate = 1.0;
        c.payments.sandbox_webhook_delay_min_ms = 0;
        c.payments.sandbox_webhook_delay_max_ms = 300;
        // Only webhooks move these orders on (no polling within the test).
        c.payments.poll_interval_ms = 600_000;
    })
    .await;
    let admin = app.platform_admin().await;
    app.stocked_sku("shop", "ASY-1", 20).await;
    let buyer = app.buyer("di").await;
    let mut ids = Vec::new();
    for method in ["pm_async", "pm_async", "pm_async_declined", "pm_async"] {
        let placed = place(
            &app,
            &buyer.access_token,
            json!([{"sku": "ASY-1", "quantity": 1}]),
            method,
            true,
        )
        .await;
        assert_eq!(placed.status, StatusCode::ACCEPTED);
        ids.push((placed.body["order_id"].as_str().unwrap().to_owned(), method));
    }
    for (id, method) in &ids {
        if *method == "pm_async" {
            let order = order_in(&app, &buyer.access_token, id, &["paid"]).await;
            assert_eq!(order["payment"]["status"], "captured");
        } else {
            let declined = eventually(Duration::from_secs(10), || async {
                let o = app
                    .get_as(&format!("/v1/orders/{id}"), Some(&buyer.access_token))
                    .await;
                (o.body["payment"]["status"] == "declined").then_some(o.body)
            })
            .await
            .expect("the async decline arrives by webhook");
            assert_eq!(declined["state"], "payment_pending");
        }
    }
    let stock = app.stock("ASY-1").await;
    assert_eq!(
        (stock["sold"].as_u64(), stock["reserved"].as_u64()),
        (Some(3), Some(1))
    );
    for (id, _) in &ids {
        let captured: Vec<i64> = payments_of(&app, &admin, id)
            .await
            .iter()
            .map(|p| p["captured_minor"].as_i64().unwrap())
            .collect();
        assert!(
            captured.iter().filter(|c| **c > 0).count() <= 1,
            "{id}: {captured:?}"
        );
    }
    // Every event came twice; the repeats were recognised.
    let metrics = send(app.client.get(app.url("/metrics")), None).await;
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains("flashdrop_payment_webhooks_total{outcome=\"duplicate\"}"),
        "{text}"
    );

    // A forged, stale or unsigned event is refused and changes nothing.
    let (paid_id, _) = &ids[0];
    let forged = json!({"id": "evt_forged", "type": "payment.failed", "created_ms": 0, "data": {"id": "pay_x", "reference": paid_id, "status": "declined"}});
    let body = forged.to_string();
    let unsigned = post_webhook(&app, &forged, None).await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unsigned.code(), "invalid_signature");
    let wrong =
        flashdrop::payments::signature::sign(b"not-the-secret-at-all", now_s(), body.as_bytes());
    assert_eq!(
        post_webhook(&app, &forged, Some(wrong)).await.code(),
        "invalid_signature"
    );
    let stale =
        flashdrop::payments::signature::sign(&webhook_secret(), now_s() - 3600, body.as_bytes());
    assert_eq!(
        post_webhook(&app, &forged, Some(stale)).await.code(),
        "invalid_signature"
    );
    // A correctly signed event that claims a failure after the capture (out of
    // order): the order asks the provider and stays paid.
    let signed = flashdrop::payments::signature::sign(&webhook_secret(), now_s(), body.as_bytes());
    let first = post_webhook(&app, &forged, Some(signed.clone())).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.body["duplicate"], false);
    let second = post_webhook(&app, &forged, Some(signed)).await;
    assert_eq!(second.body["duplicate"], true);
    // The order's actor handles commands after the reconciliation the
    // webhook queued: a refused cancel shows it has run, and still paid.
    let after = app
        .post_json(
            &format!("/v1/orders/{paid_id}/cancel"),
            Some(&buyer.access_token),
            json!({}),
        )
        .await;
    assert_eq!(
        (after.code(), &after.body["state"]),
        ("invalid_transition", &json!("paid"))
    );
    let order = app
        .get_as(&format!("/v1/orders/{paid_id}"), Some(&buyer.access_token))
        .await;
    assert_eq!(order.body["state"], "paid");
    assert_eq!(order.body["payment"]["status"], "captured");
    app.stop().await;
}

#[actix_web::test]
async fn invalid_transitions_and_bad_input_get_the_documented_codes_and_change_nothing() {
    let app = spawn_app().await;
    app.stocked_sku("shop", "BAD-1", 5).await;
    app.stocked_sku("other", "OTH-1", 5).await;
    let buyer = app.buyer("eve").await;
    let stranger = app.buyer("mallory").await;
    let seller = app.seller("shop").await;
    let other_seller = app.seller("other").await;
    let token = buyer.access_token.as_str();
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"items": [], "shipping_address": "a", "payment_method": "pm_card_visa"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"items": [{"sku": "BAD-1", "quantity": 0}], "shipping_address": "a", "payment_method": "pm_card_visa"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"items": [{"sku": "BAD-1", "quantity": 101}], "shipping_address": "a", "payment_method": "pm_card_visa"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"items": [{"sku": "BAD-1", "quantity": 1}, {"sku": "BAD-1", "quantity": 1}], "shipping_address": "a", "payment_method": "pm_card_visa"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"items": [{"sku": "BAD-1", "quantity": 1}], "shipping_address": " ", "payment_method": "pm_card_visa"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"items": [{"sku": "BAD-1", "quantity": 1}], "shipping_address": "x".repeat(501), "payment_method": "pm_card_visa"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"items": [{"sku": "BAD-1", "quantity": 1}], "shipping_address": "a", "payment_method": "4111111111111111"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"items": [{"sku": "BAD-1", "quantity": 1}], "shipping_address": "a"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"items": [{"sku": "NOPE-1", "quantity": 1}], "shipping_address": "a", "payment_method": "pm_card_visa"}),
            StatusCode::NOT_FOUND,
            "sku_not_found",
        ),
        (
            json!({"items": [{"sku": "BAD-1", "quantity": 6}], "shipping_address": "a", "payment_method": "pm_card_visa", "coupon": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
    ];
    for (body, status, code) in cases {
        let response = app.post_json("/v1/orders", Some(token), body.clone()).await;
        assert_eq!(
            (response.status, response.code()),
            (status, code),
            "{body}: {:?}",
            response.body
        );
    }
    let unsigned = app.post_json("/v1/orders", None, json!({})).await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    let malformed = send(
        app.client
            .post(app.url("/v1/orders"))
            .insert_header(bearer(token))
            .insert_header(("content-type", "application/json")),
        None,
    )
    .await;
    assert!(
        malformed.status == StatusCode::BAD_REQUEST
            || malformed.status == StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        malformed.body
    );
    let orders = app.get_as("/v1/orders", Some(token)).await;
    assert_eq!(orders.body["items"], json!([]), "no order was made");
    assert_eq!(app.stock("BAD-1").await["available"], 5);

    // Idempotency: the same key and body answer the same order; another body is refused.
    let keyed = |body: Value| {
        send(
            app.client
                .post(app.url("/v1/orders"))
                .insert_header(bearer(token))
                .insert_header(("idempotency-key", "order-key-1"))
                .insert_header(("prefer", "wait=5")),
            Some(body),
        )
    };
    let body = json!({"items": [{"sku": "BAD-1", "quantity": 1}], "shipping_address": "1 Road", "payment_method": "pm_card_visa"});
    let first = keyed(body.clone()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    let again = keyed(body.clone()).await;
    assert_eq!(again.body["order_id"], first.body["order_id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let mut changed = body.clone();
    changed["items"][0]["quantity"] = json!(2);
    let reused = keyed(changed).await;
    assert_eq!(
        (reused.status, reused.code()),
        (StatusCode::CONFLICT, "idempotency_key_reused")
    );
    let id = first.body["order_id"].as_str().unwrap().to_owned();
    let order = order_in(&app, token, &id, &["paid"]).await;
    let stock = app.stock("BAD-1").await;
    assert_eq!(
        (stock["available"].as_u64(), stock["sold"].as_u64()),
        (Some(4), Some(1))
    );

    // Other people's orders do not exist for them.
    for path in [
        format!("/v1/orders/{id}"),
        "/v1/orders/not-an-id".to_owned(),
    ] {
        let response = app.get_as(&path, Some(&stranger.access_token)).await;
        assert_eq!(
            (response.status, response.code()),
            (StatusCode::NOT_FOUND, "order_not_found")
        );
    }
    let theirs = app
        .post_json(
            &format!("/v1/orders/{id}/cancel"),
            Some(&stranger.access_token),
            json!({}),
        )
        .await;
    assert_eq!(theirs.code(), "order_not_found");
    let not_theirs = fulfil(
        &app,
        &other_seller.access_token,
        &id,
        json!({"state": "packed"}),
    )
    .await;
    assert_eq!(not_theirs.code(), "order_not_found");
    let buyer_fulfils = fulfil(&app, token, &id, json!({"state": "packed"})).await;
    assert_eq!(buyer_fulfils.status, StatusCode::FORBIDDEN);

    // Moves the state machine does not allow.
    let cancel_paid = app
        .post_json(&format!("/v1/orders/{id}/cancel"), Some(token), json!({}))
        .await;
    assert_eq!(
        (cancel_paid.status, cancel_paid.code()),
        (StatusCode::CONFLICT, "invalid_transition")
    );
    assert_eq!(cancel_paid.body["state"], "paid");
    let early_return = app
        .post_json(
            &format!("/v1/orders/{id}/returns"),
            Some(token),
            json!({"reason": "changed my mind"}),
        )
        .await;
    assert_eq!(early_return.code(), "invalid_transition");
    for (body, code) in [
        (json!({"state": "delivered"}), "invalid_transition"),
        (json!({"state": "refunded"}), "invalid_transition"),
        (json!({"state": "teleported"}), "validation_failed"),
        (
            json!({"state": "packed", "tracking": ""}),
            "validation_failed",
        ),
        (json!({"state": "packed", "weight": 3}), "validation_failed"),
    ] {
        let response = fulfil(&app, &seller.access_token, &id, body.clone()).await;
        assert_eq!(response.code(), code, "{body}: {:?}", response.body);
    }
    let unchanged = app.get_as(&format!("/v1/orders/{id}"), Some(token)).await;
    assert_eq!(unchanged.body["state"], "paid");
    assert_eq!(unchanged.body["history"], order["history"]);
    assert_eq!(app.stock("BAD-1").await, stock);
    app.stop().await;
}

#[actix_web::test]
async fn an_order_key_is_honoured_for_its_retention_and_then_places_a_new_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.retention.sweep_interval_s = 1;
    config.retention.order_keys_s = 60;
    let clock = Arc::new(flashdrop::clock::ManualClock::new(1_795_000_000_000));
    let app = spawn_clocked(config.clone(), None, clock.clone()).await;
    app.stocked_sku("shop", "KEY-1", 5).await;
    let buyer = app.buyer("kim").await;
    let body = json!({"items": [{"sku": "KEY-1", "quantity": 1}], "shipping_address": "1 Road", "payment_method": "pm_card_visa"});
    let place = |app: &TestApp| {
        send(
            app.client
                .post(app.url("/v1/orders"))
                .insert_header(bearer(&buyer.access_token))
                .insert_header(("idempotency-key", "kept-for-a-minute")),
            Some(body.clone()),
        )
    };
    let first = place(&app).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    let first_id = first.body["order_id"].clone();

    // Just short of the retention, sweeps keep the key.
    clock.advance_ms(60_000 - 1);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let again = place(&app).await;
    assert_eq!(again.body["order_id"], first_id, "{:?}", again.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    // Past it, the next sweep forgets the key: a repeat is a new order.
    clock.advance_ms(1);
    let renewed = eventually(Duration::from_secs(30), || async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = place(&app).await;
        (r.body["order_id"] != first_id).then_some(r)
    })
    .await
    .expect("the key is forgotten once its retention passed");
    assert_eq!(renewed.status, StatusCode::ACCEPTED, "{:?}", renewed.body);
    assert_eq!(renewed.header("idempotent-replayed"), Some("false"));
    let second_id = renewed.body["order_id"].clone();
    app.stop().await;

    // After a restart the new claim holds and the old one stays gone.
    let app = spawn_clocked(config, Some(dir), clock).await;
    let after = place(&app).await;
    assert_eq!(after.body["order_id"], second_id, "{:?}", after.body);
    assert_eq!(after.header("idempotent-replayed"), Some("true"));
    app.stop().await;
}
