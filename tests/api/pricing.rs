//! Checkout pricing over HTTP: each store's shipping methods and tax turned
//! into what an order costs, the shopper's pick per store, and bad choices
//! refused with nothing held or placed.

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use super::helpers::*;

/// Sets `body` on the store of `seller`; answers the store.
async fn settings(app: &TestApp, seller: &Identity, body: Value) -> Response {
    let store = seller.tenant_id.clone().unwrap();
    send(
        app.client
            .put(app.url(&format!("/v1/tenants/{store}")))
            .insert_header(bearer(&seller.access_token)),
        Some(body),
    )
    .await
}

async fn checkout(app: &TestApp, token: &str, shipping: Value, key: Option<&str>) -> Response {
    let mut request = app
        .client
        .post(app.url("/v1/cart/checkout"))
        .insert_header(bearer(token))
        .insert_header(("prefer", "wait=10"));
    if let Some(key) = key {
        request = request.insert_header(("idempotency-key", key));
    }
    send(
        request,
        Some(json!({"shipping_address": "1 Test Street, Testville",
                    "payment_method": "pm_card_visa", "shipping": shipping})),
    )
    .await
}

async fn add(app: &TestApp, token: &str, sku: &str, quantity: u32) {
    let added = app
        .post_json(
            "/v1/cart/items",
            Some(token),
            json!({"sku": sku, "quantity": quantity}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
}

/// North adds 20% tax on top and ships standard (5.00) or express (15.00,
/// free from 50.00); south includes 10% tax and ships by post (3.00).
async fn two_priced_stores(app: &TestApp) -> (Identity, Identity) {
    app.stocked_sku("north", "N-TEE", 20).await;
    app.stocked_sku("south", "S-CAP", 20).await;
    let north = app.seller("north").await;
    let south = app.seller("south").await;
    let set = settings(
        app,
        &north,
        json!({"tax": {"default_rate_bp": 2000},
               "shipping": {"methods": [
                   {"code": "standard", "name": "Standard", "price_minor": 500},
                   {"code": "express", "name": " Express ", "price_minor": 1500, "free_over_minor": 5000}]}}),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    assert_eq!(set.body["shipping"]["methods"][1]["name"], "Express");
    let set = settings(
        app,
        &south,
        json!({"tax": {"default_rate_bp": 1000, "prices_include_tax": true},
               "shipping": {"free_shipping_over_minor": 100000,
                            "methods": [{"code": "post", "name": "Post", "price_minor": 300}]}}),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    (north, south)
}

fn part<'a>(order: &'a Value, store: &Identity) -> &'a Value {
    let id = store.tenant_id.as_deref().unwrap();
    order["sub_orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["seller_id"] == id)
        .unwrap_or_else(|| panic!("no part of {id}: {order:#}"))
}

#[actix_web::test]
async fn a_checkout_charges_each_stores_picked_shipping_and_its_tax() {
    let app = spawn_app().await;
    let (north, south) = two_priced_stores(&app).await;
    // A shopper reads what it may pick on the store's public profile.
    let profile = app
        .get_as(
            &format!("/v1/creators/{}", north.tenant_id.as_deref().unwrap()),
            None,
        )
        .await;
    let codes: Vec<&str> = profile.body["shipping_methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["standard", "express"], "{:?}", profile.body);
    assert_eq!(
        (
            &profile.body["tax_rate_bp"],
            &profile.body["prices_include_tax"]
        ),
        (&json!(2000), &json!(false))
    );
    let buyer = app.buyer("ada").await.access_token;
    add(&app, &buyer, "N-TEE", 2).await;
    add(&app, &buyer, "S-CAP", 1).await;
    let north_id = north.tenant_id.clone().unwrap();
    let placed = checkout(&app, &buyer, json!({ north_id.clone(): "express" }), None).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    let order = order_in(&app, &buyer, &id, &["paid"]).await;

    // North: 2 × 19.99 = 39.98, express 15.00 (not free under 50.00), 20% of
    // 54.98 = 11.00 (10.996 rounded) on top: 65.98.
    let n = part(&order, &north);
    assert_eq!(
        (&n["subtotal"], &n["shipping_method"], &n["shipping"]),
        (&json!(3998), &json!("express"), &json!(1500))
    );
    assert_eq!(
        (
            &n["tax_rate_bp"],
            &n["tax"],
            &n["tax_included"],
            &n["total"]
        ),
        (&json!(2000), &json!(1100), &json!(false), &json!(6598))
    );
    // South: 19.99 and post 3.00 (its default) = 22.99, of which 10%
    // included tax is 2.09; nothing is added.
    let s = part(&order, &south);
    assert_eq!(
        (&s["subtotal"], &s["shipping_method"], &s["shipping"]),
        (&json!(1999), &json!("post"), &json!(300))
    );
    assert_eq!(
        (&s["tax"], &s["tax_included"], &s["total"]),
        (&json!(209), &json!(true), &json!(2299))
    );
    assert_eq!(
        (
            &order["subtotal"],
            &order["shipping"],
            &order["tax"],
            &order["total"]
        ),
        (&json!(5997), &json!(1800), &json!(1309), &json!(8897))
    );
    assert_eq!(
        order["payment"]["captured"], 8897,
        "the buyer pays the total"
    );

    // A seller sees its own part with its charges.
    let seen = app
        .get_as(&format!("/v1/orders/{id}"), Some(&north.access_token))
        .await;
    assert_eq!(seen.body["sub_orders"][0]["total"], 6598);

    // Settings changed later do not reprice a placed order.
    let set = settings(&app, &north, json!({"tax": {"default_rate_bp": 0}})).await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    let again = order_in(&app, &buyer, &id, &["paid"]).await;
    assert_eq!(again["total"], 8897);

    // Express is free from 50.00: 3 × 19.99 = 59.97 ships free, untaxed now.
    add(&app, &buyer, "N-TEE", 3).await;
    let placed = checkout(&app, &buyer, json!({ north_id: "express" }), None).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    let free = part(&placed.body, &north);
    assert_eq!(
        (&free["shipping_method"], &free["shipping"], &free["tax"]),
        (&json!("express"), &json!(0), &json!(0))
    );
    assert_eq!(placed.body["total"], 5997);
    app.stop().await;
}

#[actix_web::test]
async fn bad_shipping_choices_and_methods_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let (north, south) = two_priced_stores(&app).await;
    let buyer = app.buyer("bea").await.access_token;
    add(&app, &buyer, "N-TEE", 1).await;
    let north_id = north.tenant_id.clone().unwrap();
    let south_id = south.tenant_id.clone().unwrap();
    let cases = [
        (
            json!({ north_id.clone(): "pigeon" }),
            format!("shipping.{north_id}"),
        ),
        (
            json!({ south_id.clone(): "post" }),
            format!("shipping.{south_id}"),
        ),
        (
            json!({"not-a-store": "post"}),
            "shipping.not-a-store".to_owned(),
        ),
        (
            json!({ north_id.clone(): "" }),
            format!("shipping.{north_id}"),
        ),
    ];
    for (shipping, field) in cases {
        let refused = checkout(&app, &buyer, shipping.clone(), None).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{shipping}: {:?}",
            refused.body
        );
        assert_eq!(
            refused.body["errors"][0]["field"],
            field.as_str(),
            "{:?}",
            refused.body
        );
    }
    // One store named twice (ids parse in either case) is refused.
    let twice = checkout(
        &app,
        &buyer,
        json!({ north_id.clone(): "standard", north_id.to_uppercase(): "express" }),
        None,
    )
    .await;
    assert_eq!(
        twice.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        twice.body
    );
    assert!(
        twice.body["errors"][0]["field"]
            .as_str()
            .is_some_and(|f| f.to_lowercase() == format!("shipping.{north_id}")),
        "{:?}",
        twice.body
    );
    let orders = app.get_as("/v1/orders", Some(&buyer)).await;
    assert_eq!(orders.body["items"], json!([]), "no order was placed");
    let tee = app.stock("N-TEE").await;
    assert_eq!(tee["sold"], 0);
    let cart = app.get_as("/v1/cart", Some(&buyer)).await;
    assert_eq!(
        cart.body["items"].as_array().unwrap().len(),
        1,
        "the cart stays"
    );

    // A key answers its first checkout; another shipping pick is another request.
    let first = checkout(
        &app,
        &buyer,
        json!({ north_id.clone(): "standard" }),
        Some("k1"),
    )
    .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    let same = checkout(
        &app,
        &buyer,
        json!({ north_id.clone(): "standard" }),
        Some("k1"),
    )
    .await;
    assert_eq!(same.body["order_id"], first.body["order_id"]);
    let other = checkout(&app, &buyer, json!({ north_id: "express" }), Some("k1")).await;
    assert_eq!(other.code(), "idempotency_key_reused", "{:?}", other.body);

    // A store's methods are checked as a whole, and a refusal keeps the old ones.
    let method = |code: &str| json!({"code": code, "name": "Ship", "price_minor": 100});
    let bad = [
        json!([method("Upper")]),
        json!([method("twice"), method("twice")]),
        json!([{"code": "dear", "name": "Dear", "price_minor": 1_000_000_000_001_u64}]),
        json!([{"code": "blank", "name": "  ", "price_minor": 1}]),
        json!((0..21)
            .map(|i| method(&format!("m{i}")))
            .collect::<Vec<_>>()),
        json!([{"code": "x", "name": "X"}]),
    ];
    for methods in bad {
        let refused = settings(&app, &north, json!({"shipping": {"methods": methods}})).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{methods}: {:?}",
            refused.body
        );
    }
    let store = app
        .get_as(
            &format!("/v1/tenants/{}", north.tenant_id.as_deref().unwrap()),
            Some(&north.access_token),
        )
        .await;
    let codes: Vec<&str> = store.body["shipping"]["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["standard", "express"]);
    app.stop().await;
}

#[actix_web::test]
async fn a_stores_methods_and_an_orders_charges_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let app = spawn_config(config.clone(), None).await;
    let (north, _) = two_priced_stores(&app).await;
    let buyer = app.buyer("cy").await.access_token;
    add(&app, &buyer, "N-TEE", 1).await;
    let placed = checkout(&app, &buyer, json!({}), None).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    let before = order_in(&app, &buyer, &id, &["paid"]).await;
    // Standard by default: 19.99 + 5.00, and 20% of 24.99 = 5.00 (4.998).
    assert_eq!(
        (&before["shipping"], &before["tax"], &before["total"]),
        (&json!(500), &json!(500), &json!(2999))
    );
    let identities = app.identities();
    app.stop().await;
    let app = spawn_config(config, Some(dir)).await;
    app.adopt(identities);
    let after = order_in(&app, &buyer, &id, &["paid"]).await;
    assert_eq!(
        (&after["sub_orders"], &after["total"]),
        (&before["sub_orders"], &before["total"])
    );
    let store = app
        .get_as(
            &format!("/v1/tenants/{}", north.tenant_id.as_deref().unwrap()),
            Some(&north.access_token),
        )
        .await;
    assert_eq!(
        store.body["shipping"]["methods"][1]["free_over_minor"],
        5000
    );
    app.stop().await;
}
