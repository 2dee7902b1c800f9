//! Stock moves only through a sale: a shopper cannot commit its own hold, a
//! paid order still sells its holds, a SKU's sellers list, release and sell
//! holds on their SKUs, and a shopper's own holds are bounded (units per SKU,
//! open holds in total, TTL), also under concurrency and across a restart.

use actix_web::http::StatusCode;
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{bearer, send, spawn_app, spawn_config, spawn_with, test_config, TestApp};

async fn hold(app: &TestApp, buyer: &str, sku: &str, quantity: u32) -> String {
    let held = app
        .reserve(buyer, sku, json!({"quantity": quantity}), None)
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{:?}", held.body);
    held.body["reservation_id"].as_str().unwrap().to_owned()
}

fn counts(stock: &Value) -> (u64, u64, u64) {
    (
        stock["available"].as_u64().unwrap(),
        stock["reserved"].as_u64().unwrap(),
        stock["sold"].as_u64().unwrap(),
    )
}

#[actix_web::test]
async fn a_shoppers_direct_commit_is_forbidden_and_sells_nothing() {
    let app = spawn_app().await;
    app.stocked_sku("shop", "HOLD-1", 10).await;
    let id = hold(&app, "ana", "HOLD-1", 2).await;
    let token = app.buyer("ana").await.access_token;
    let commit = send(
        app.client
            .post(app.url(&format!("/v1/reservations/{id}/commit")))
            .insert_header(bearer(&token)),
        None,
    )
    .await;
    assert_eq!(commit.status, StatusCode::FORBIDDEN, "{:?}", commit.body);
    assert_eq!(commit.code(), "forbidden");
    assert!(commit.body["detail"]
        .as_str()
        .unwrap()
        .contains("/v1/orders"));
    assert_eq!(
        counts(&app.stock("HOLD-1").await),
        (8, 2, 0),
        "sold unchanged"
    );
    assert_eq!(app.reservation("ana", &id).await.body["state"], "held");
    app.stop().await;
}

#[actix_web::test]
async fn a_paid_order_still_commits_its_holds() {
    let app = spawn_app().await;
    app.stocked_sku("shop", "HOLD-2", 10).await;
    let token = app.buyer("ana").await.access_token;
    let order = send(
        app.client
            .post(app.url("/v1/orders"))
            .insert_header(bearer(&token))
            .insert_header(("idempotency-key", "paid-1"))
            .insert_header(("prefer", "wait=10")),
        Some(json!({"items": [{"sku": "HOLD-2", "quantity": 3}],
                    "shipping_address": "1 Main St", "payment_method": "pm_card_visa"})),
    )
    .await;
    assert_eq!(order.status, StatusCode::ACCEPTED, "{:?}", order.body);
    assert_eq!(order.body["state"], "paid", "{:?}", order.body);
    assert_eq!(counts(&app.stock("HOLD-2").await), (7, 0, 3));
    app.stop().await;
}

#[actix_web::test]
async fn sellers_list_release_and_commit_the_holds_on_their_skus_and_no_one_else_does() {
    let app = spawn_app().await;
    app.stocked_sku("shop", "HOLD-3", 20).await;
    app.stocked_sku("rival", "RIVAL-3", 20).await;
    let ids = [
        hold(&app, "ana", "HOLD-3", 1).await,
        hold(&app, "bo", "HOLD-3", 2).await,
        hold(&app, "cy", "HOLD-3", 3).await,
    ];
    let seller = app.seller("shop").await.access_token;
    let rival = app.seller("rival").await.access_token;

    // The seller pages through every open hold, with its buyer.
    let first = app
        .get_as("/v1/skus/HOLD-3/reservations?limit=2", Some(&seller))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = app
        .get_as(
            &format!("/v1/skus/HOLD-3/reservations?limit=2&cursor={cursor}"),
            Some(&seller),
        )
        .await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest.body["next_cursor"], Value::Null);
    let mut listed: Vec<String> = first.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest.body["items"].as_array().unwrap())
        .map(|h| h["reservation_id"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut expected = ids.to_vec();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(
        first.body["items"][0]["buyer_id"],
        app.buyer("ana").await.user_id.as_str()
    );

    // A buyer and another store cannot list them.
    let ana = app.buyer("ana").await.access_token;
    let as_buyer = app.get_as("/v1/skus/HOLD-3/reservations", Some(&ana)).await;
    assert_eq!(as_buyer.status, StatusCode::FORBIDDEN);
    let as_rival = app
        .get_as("/v1/skus/HOLD-3/reservations", Some(&rival))
        .await;
    assert_eq!(as_rival.status, StatusCode::NOT_FOUND);

    // Another store can neither release nor sell them.
    for request in [
        app.client
            .delete(app.url(&format!("/v1/reservations/{}", ids[0]))),
        app.client
            .post(app.url(&format!("/v1/reservations/{}/commit", ids[0]))),
    ] {
        let refused = send(request.insert_header(bearer(&rival)), None).await;
        assert_eq!(
            refused.code(),
            "reservation_not_found",
            "{:?}",
            refused.body
        );
    }

    // The seller releases a stuck hold and sells another at the till.
    let released = send(
        app.client
            .delete(app.url(&format!("/v1/reservations/{}", ids[0])))
            .insert_header(bearer(&seller)),
        None,
    )
    .await;
    assert_eq!(released.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.reservation("ana", &ids[0]).await.body["state"],
        "released"
    );
    let sold = app.commit_as_seller("shop", &ids[1]).await;
    assert_eq!(sold.status, StatusCode::OK, "{:?}", sold.body);
    assert_eq!(sold.body["state"], "committed");
    let again = app.commit_as_seller("shop", &ids[1]).await;
    assert_eq!(again.body, sold.body, "committing twice answers the same");
    assert_eq!(counts(&app.stock("HOLD-3").await), (15, 3, 2));

    // Both moves are in the store's audit log.
    let audit = app
        .get_as("/v1/admin/audit?action=reservation", Some(&seller))
        .await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["reservation.commit", "reservation.release"]);
    app.stop().await;
}

/// `n` reservations of one shopper at once; the answers' statuses and codes.
async fn at_once(app: &TestApp, token: &str, skus: &[&str], n: usize) -> Vec<(u16, String)> {
    let requests = (0..n).map(|i| {
        let sku = skus[i % skus.len()];
        send(
            app.client
                .post(app.url(&format!("/v1/skus/{sku}/reservations")))
                .insert_header(bearer(token)),
            Some(json!({"quantity": 1})),
        )
    });
    join_all(requests)
        .await
        .into_iter()
        .map(|r| (r.status.as_u16(), r.code().to_owned()))
        .collect()
}

fn tally(answers: &[(u16, String)], status: u16, code: &str) -> usize {
    answers
        .iter()
        .filter(|(s, c)| *s == status && c == code)
        .count()
}

#[actix_web::test]
async fn a_shoppers_units_of_one_sku_are_bounded_under_50_concurrent_requests() {
    let app = spawn_with(|c| {
        c.reservations.shopper_units_per_sku_max = 5;
        c.reservations.shopper_holds_max = 1_000;
    })
    .await;
    app.stocked_sku("shop", "UNITS-1", 100).await;
    let token = app.buyer("greedy").await.access_token;
    let answers = at_once(&app, &token, &["UNITS-1"], 50).await;
    assert_eq!(tally(&answers, 201, ""), 5, "{answers:?}");
    assert_eq!(
        tally(&answers, 409, "hold_limit_exceeded"),
        45,
        "{answers:?}"
    );
    assert_eq!(app.stock("UNITS-1").await["reserved"], 5);
    let refused = app
        .reserve("greedy", "UNITS-1", json!({"quantity": 1}), None)
        .await;
    assert_eq!(
        (
            refused.body["limit"].as_u64(),
            refused.body["held"].as_u64()
        ),
        (Some(5), Some(5))
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_shoppers_open_holds_are_bounded_under_50_concurrent_requests_and_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    // No SKU can reach its own bound before the total is reached.
    config.reservations.shopper_units_per_sku_max = 8;
    config.reservations.shopper_holds_max = 8;
    // Every change is snapshotted and the WAL behind it truncated, so the
    // restart below finds the holds in snapshots alone.
    config.snapshots.every_records = 1;
    let app = spawn_config(config.clone(), None).await;
    let skus = ["LIM-0", "LIM-1", "LIM-2", "LIM-3", "LIM-4"];
    for sku in skus {
        app.stocked_sku("shop", sku, 100).await;
    }
    let token = app.buyer("greedy").await.access_token;
    let answers = at_once(&app, &token, &skus, 50).await;
    assert_eq!(tally(&answers, 201, ""), 8, "{answers:?}");
    assert_eq!(tally(&answers, 409, "too_many_holds"), 42, "{answers:?}");
    let mut reserved = 0;
    for sku in skus {
        reserved += app.stock(sku).await["reserved"].as_u64().unwrap();
    }
    assert_eq!(reserved, 8);
    let limited = app
        .reserve("greedy", "LIM-1", json!({"quantity": 1}), None)
        .await;
    assert_eq!(limited.body["limit"], 8);
    assert_eq!(limited.body["open"], 8);

    // Another shopper is not affected; a TTL past the maximum is refused.
    let other = app
        .reserve("calm", "LIM-1", json!({"quantity": 5}), None)
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
    let long = app
        .reserve("calm", "LIM-2", json!({"quantity": 1, "ttl_s": 901}), None)
        .await;
    assert_eq!(long.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(long.body["errors"][0]["field"], "ttl_s");

    // After a restart the shopper's holds still count.
    let identities = app.identities();
    app.stop().await;
    let app = spawn_config(config, Some(dir)).await;
    app.adopt(identities);
    let after = app
        .reserve("greedy", "LIM-4", json!({"quantity": 1}), None)
        .await;
    assert_eq!(after.code(), "too_many_holds", "{:?}", after.body);

    // A released hold frees a place.
    let seller = app.seller("shop").await.access_token;
    let mut first = None;
    for sku in skus {
        let page = app
            .get_as(&format!("/v1/skus/{sku}/reservations"), Some(&seller))
            .await;
        if let Some(id) = page.body["items"][0]["reservation_id"].as_str() {
            first = Some(id.to_owned());
            break;
        }
    }
    let first = first.expect("the shopper's holds are listed after the restart");
    let token = app.buyer("greedy").await.access_token;
    let released = send(
        app.client
            .delete(app.url(&format!("/v1/reservations/{first}")))
            .insert_header(bearer(&token)),
        None,
    )
    .await;
    assert_eq!(released.status, StatusCode::NO_CONTENT);
    let again = app
        .reserve("greedy", "LIM-4", json!({"quantity": 1}), None)
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{:?}", again.body);
    app.stop().await;
}

#[actix_web::test]
async fn inside_a_drop_its_per_buyer_limit_rules_and_not_the_shopper_bound() {
    let app = spawn_with(|c| c.reservations.shopper_units_per_sku_max = 2).await;
    app.stocked_sku("shop", "DROPHOLD-1", 50).await;
    let seller = app.seller("shop").await.access_token;
    let now = app.engine.clock().now_ms();
    let drop = app
        .post_json(
            "/v1/drops",
            Some(&seller),
            json!({"title": "Launch", "skus": ["DROPHOLD-1"],
                   "starts_at": flashdrop::clock::rfc3339_ms(now - 1_000),
                   "ends_at": flashdrop::clock::rfc3339_ms(now + 600_000),
                   "per_buyer_limit": 4}),
        )
        .await;
    assert_eq!(drop.status, StatusCode::CREATED, "{:?}", drop.body);
    let held = app
        .reserve("fan", "DROPHOLD-1", json!({"quantity": 4}), None)
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{:?}", held.body);
    let more = app
        .reserve("fan", "DROPHOLD-1", json!({"quantity": 1}), None)
        .await;
    assert_eq!(more.code(), "purchase_limit_exceeded");
    app.stop().await;
}

#[actix_web::test]
async fn a_retry_with_its_idempotency_key_answers_even_when_every_place_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.reservations.shopper_holds_max = 2;
    let app = spawn_config(config, None).await;
    app.stocked_sku("shop", "FULL-0", 10).await;
    let first = app
        .reserve("ana", "FULL-0", json!({"quantity": 1}), Some("k-1"))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let second = app
        .reserve("ana", "FULL-0", json!({"quantity": 1}), Some("k-2"))
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{:?}", second.body);

    // Both places are taken: a retry of the first answers as it did...
    let retry = app
        .reserve("ana", "FULL-0", json!({"quantity": 1}), Some("k-1"))
        .await;
    assert_eq!(retry.status, StatusCode::CREATED, "{:?}", retry.body);
    assert_eq!(retry.body, first.body);
    // ...the same key with another body is still refused as reused...
    let reused = app
        .reserve("ana", "FULL-0", json!({"quantity": 2}), Some("k-1"))
        .await;
    assert_eq!(reused.code(), "idempotency_key_reused", "{:?}", reused.body);
    // ...and a new key, or none, is over the limit.
    for key in [Some("k-3"), None] {
        let refused = app
            .reserve("ana", "FULL-0", json!({"quantity": 1}), key)
            .await;
        assert_eq!(refused.code(), "too_many_holds", "{:?}", refused.body);
    }
    assert_eq!(app.stock("FULL-0").await["reserved"], 2);
    app.stop().await;
}
