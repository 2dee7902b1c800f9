//! Carts over HTTP: several sellers, guests and their tokens, drop SKUs held
//! on add, checkout into one order, and a cart that survives a restart.

use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use super::helpers::*;

async fn cart_call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    cart_token: Option<&str>,
    body: Option<Value>,
) -> Response {
    let mut request = match method {
        "GET" => app.client.get(app.url(path)),
        "PUT" => app.client.put(app.url(path)),
        "DELETE" => app.client.delete(app.url(path)),
        _ => app.client.post(app.url(path)),
    };
    if let Some(token) = token {
        request = request.insert_header(bearer(token));
    }
    if let Some(cart) = cart_token {
        request = request.insert_header(("cart-token", cart));
    }
    if method == "POST" && path.ends_with("checkout") {
        request = request.insert_header(("prefer", "wait=10"));
    }
    send(request, body).await
}

fn checkout_body() -> Value {
    json!({"shipping_address": "2 Cart Lane", "payment_method": "pm_card_visa"})
}

#[actix_web::test]
async fn a_multi_seller_cart_survives_a_restart_and_checks_out_into_one_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let app = spawn_config(config.clone(), None).await;
    app.stocked_sku("north", "C-TEE", 10).await;
    app.stocked_sku("south", "C-CAP", 10).await;
    let buyer = app.buyer("fay").await;
    let token = Some(buyer.access_token.as_str());
    let added = cart_call(
        &app,
        "POST",
        "/v1/cart/items",
        token,
        None,
        Some(json!({"sku": "C-TEE", "quantity": 2})),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    assert_eq!(added.body["owner"], "account");
    assert!(added.header("cart-token").is_none());
    cart_call(
        &app,
        "POST",
        "/v1/cart/items",
        token,
        None,
        Some(json!({"sku": "C-TEE", "quantity": 1})),
    )
    .await;
    cart_call(
        &app,
        "POST",
        "/v1/cart/items",
        token,
        None,
        Some(json!({"sku": "C-CAP", "quantity": 1})),
    )
    .await;
    let set = cart_call(
        &app,
        "PUT",
        "/v1/cart/items/C-CAP",
        token,
        None,
        Some(json!({"quantity": 2})),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    let items: Vec<(String, u64)> = set.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["sku"].as_str().unwrap().to_owned(),
                i["quantity"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(items, [("C-TEE".to_owned(), 3), ("C-CAP".to_owned(), 2)]);
    assert_eq!(set.body["total"], 5 * 1999);
    assert_eq!(
        set.body["items"][0]["unit_price"], 1999,
        "the price seen when added"
    );
    assert_eq!(
        app.stock("C-TEE").await["reserved"],
        0,
        "plain SKUs are not held by a cart"
    );

    // Bad changes answer their codes and change nothing.
    for (method, path, body, status, code) in [
        (
            "POST",
            "/v1/cart/items",
            json!({"sku": "C-TEE", "quantity": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "POST",
            "/v1/cart/items",
            json!({"sku": "C-TEE", "quantity": 98}),
            StatusCode::CONFLICT,
            "cart_limit_exceeded",
        ),
        (
            "POST",
            "/v1/cart/items",
            json!({"sku": "NOPE-9", "quantity": 1}),
            StatusCode::NOT_FOUND,
            "sku_not_found",
        ),
        (
            "PUT",
            "/v1/cart/items/C-HAT",
            json!({"quantity": 1}),
            StatusCode::NOT_FOUND,
            "cart_item_not_found",
        ),
        (
            "POST",
            "/v1/cart/items",
            json!({"sku": "C-TEE"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
    ] {
        let response = cart_call(&app, method, path, token, None, Some(body.clone())).await;
        assert_eq!(
            (response.status, response.code()),
            (status, code),
            "{body}: {:?}",
            response.body
        );
    }
    let unchanged = cart_call(&app, "GET", "/v1/cart", token, None, None).await;
    assert_eq!(unchanged.body["items"], set.body["items"]);

    // The cart is durable: a restart finds it as it was.
    let identities = app.identities();
    app.stop().await;
    let app = spawn_config(config, Some(dir)).await;
    app.adopt(identities);
    let after = cart_call(&app, "GET", "/v1/cart", token, None, None).await;
    assert_eq!(after.body["items"], set.body["items"]);

    let removed = cart_call(&app, "DELETE", "/v1/cart/items/C-CAP", token, None, None).await;
    assert_eq!(removed.body["items"].as_array().unwrap().len(), 1);
    cart_call(
        &app,
        "POST",
        "/v1/cart/items",
        token,
        None,
        Some(json!({"sku": "C-CAP", "quantity": 1})),
    )
    .await;
    let placed = cart_call(
        &app,
        "POST",
        "/v1/cart/checkout",
        token,
        None,
        Some(checkout_body()),
    )
    .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    assert!(placed.body["order_id"].is_string());
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    let order = order_in(&app, &buyer.access_token, &id, &["paid"]).await;
    assert_eq!(order["sub_orders"].as_array().unwrap().len(), 2);
    assert_eq!(order["total"], 4 * 1999);
    let emptied = cart_call(&app, "GET", "/v1/cart", token, None, None).await;
    assert_eq!(emptied.body["items"], json!([]));
    let again = cart_call(
        &app,
        "POST",
        "/v1/cart/checkout",
        token,
        None,
        Some(checkout_body()),
    )
    .await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "cart_empty")
    );
    assert_eq!(app.stock("C-TEE").await["sold"], 3);
    app.stop().await;
}

#[actix_web::test]
async fn a_guest_cart_has_a_token_and_merges_into_the_account_at_checkout() {
    let app = spawn_app().await;
    app.stocked_sku("shop", "G-MUG", 10).await;
    let added = cart_call(
        &app,
        "POST",
        "/v1/cart/items",
        None,
        None,
        Some(json!({"sku": "G-MUG", "quantity": 2})),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    assert_eq!(added.body["owner"], "guest");
    let cart_token = added
        .header("cart-token")
        .expect("a guest cart token")
        .to_owned();
    let seen = cart_call(&app, "GET", "/v1/cart", None, Some(&cart_token), None).await;
    assert_eq!(seen.body["items"][0]["quantity"], 2);
    let nobody = cart_call(&app, "GET", "/v1/cart", None, None, None).await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
    let forged = cart_call(&app, "GET", "/v1/cart", None, Some("not-a-token"), None).await;
    assert_eq!(forged.status, StatusCode::UNPROCESSABLE_ENTITY);
    let anonymous = cart_call(
        &app,
        "POST",
        "/v1/cart/checkout",
        None,
        Some(&cart_token),
        Some(checkout_body()),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let buyer = app.buyer("gus").await;
    let placed = cart_call(
        &app,
        "POST",
        "/v1/cart/checkout",
        Some(&buyer.access_token),
        Some(&cart_token),
        Some(checkout_body()),
    )
    .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    let order = order_in(&app, &buyer.access_token, &id, &["paid"]).await;
    assert_eq!(order["lines"][0]["quantity"], 2);
    let guest_after = cart_call(&app, "GET", "/v1/cart", None, Some(&cart_token), None).await;
    assert_eq!(
        guest_after.body["items"],
        json!([]),
        "the guest cart was checked out"
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_drop_sku_is_held_when_added_and_the_order_takes_over_the_hold() {
    let app = spawn_app().await;
    app.stocked_sku("hype", "D-SNK", 5).await;
    let now = app.engine.clock().now_ms();
    let drop = scheduled(
        &app,
        "hype",
        &["D-SNK"],
        now + 200,
        now + 600_000,
        json!({"per_buyer_limit": 2}),
    )
    .await;
    let live = eventually(Duration::from_secs(10), || async {
        let d = app.get_as(&format!("/v1/drops/{drop}"), None).await;
        (d.body["state"] == "live").then_some(())
    })
    .await;
    assert!(live.is_some());
    let buyer = app.buyer("hal").await;
    let token = Some(buyer.access_token.as_str());
    let guest = cart_call(
        &app,
        "POST",
        "/v1/cart/items",
        None,
        None,
        Some(json!({"sku": "D-SNK", "quantity": 1})),
    )
    .await;
    assert_eq!(
        guest.status,
        StatusCode::UNAUTHORIZED,
        "guests cannot hold drop stock"
    );

    let added = cart_call(
        &app,
        "POST",
        "/v1/cart/items",
        token,
        None,
        Some(json!({"sku": "D-SNK", "quantity": 1})),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    assert_eq!(
        added.body["items"][0]["reservation_ids"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(added.body["items"][0]["hold_expires_at"].is_string());
    assert_eq!(app.stock("D-SNK").await["reserved"], 1);
    let more = cart_call(
        &app,
        "PUT",
        "/v1/cart/items/D-SNK",
        token,
        None,
        Some(json!({"quantity": 2})),
    )
    .await;
    assert_eq!(more.status, StatusCode::OK, "{:?}", more.body);
    let stock = app.stock("D-SNK").await;
    assert_eq!(
        (stock["reserved"].as_u64(), stock["available"].as_u64()),
        (Some(2), Some(3)),
        "the hold follows the cart"
    );
    let fewer = cart_call(
        &app,
        "PUT",
        "/v1/cart/items/D-SNK",
        token,
        None,
        Some(json!({"quantity": 1})),
    )
    .await;
    assert_eq!(fewer.body["items"][0]["quantity"], 1);
    assert_eq!(
        app.stock("D-SNK").await["reserved"],
        1,
        "a decrease gives units back"
    );
    cart_call(
        &app,
        "PUT",
        "/v1/cart/items/D-SNK",
        token,
        None,
        Some(json!({"quantity": 2})),
    )
    .await;
    let too_many = cart_call(
        &app,
        "POST",
        "/v1/cart/items",
        token,
        None,
        Some(json!({"sku": "D-SNK", "quantity": 1})),
    )
    .await;
    assert_eq!(
        (too_many.status, too_many.code()),
        (StatusCode::CONFLICT, "purchase_limit_exceeded")
    );
    assert_eq!(
        app.stock("D-SNK").await["reserved"],
        2,
        "the refused add changed nothing"
    );
    let removed = cart_call(&app, "DELETE", "/v1/cart/items/D-SNK", token, None, None).await;
    assert_eq!(removed.status, StatusCode::OK);
    assert_eq!(
        app.stock("D-SNK").await["reserved"],
        0,
        "removing releases the hold"
    );

    let held = cart_call(
        &app,
        "POST",
        "/v1/cart/items",
        token,
        None,
        Some(json!({"sku": "D-SNK", "quantity": 2})),
    )
    .await;
    let hold = held.body["items"][0]["reservation_ids"].clone();
    let placed = cart_call(
        &app,
        "POST",
        "/v1/cart/checkout",
        token,
        None,
        Some(checkout_body()),
    )
    .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    let order = order_in(&app, &buyer.access_token, &id, &["paid"]).await;
    assert_eq!(
        order["lines"][0]["reservation_ids"], hold,
        "the order took the cart's hold"
    );
    let stock = app.stock("D-SNK").await;
    assert_eq!(
        (stock["reserved"].as_u64(), stock["sold"].as_u64()),
        (Some(0), Some(2))
    );
    app.stop().await;
}

#[actix_web::test]
async fn carts_are_bounded_and_orders_page_newest_first() {
    let app = spawn_with(|c| c.cart.carts_max = 1).await;
    app.stocked_sku("shop", "B-PEN", 50).await;
    let first = cart_call(
        &app,
        "POST",
        "/v1/cart/items",
        None,
        None,
        Some(json!({"sku": "B-PEN", "quantity": 1})),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let token = first.header("cart-token").unwrap().to_owned();
    // A malformed Cart-Token is 422 naming the header.
    for (method, path, body) in [
        ("GET", "/v1/cart", None),
        (
            "POST",
            "/v1/cart/items",
            Some(json!({"sku": "B-PEN", "quantity": 1})),
        ),
    ] {
        let bad = cart_call(&app, method, path, None, Some("not-a-token"), body).await;
        assert_eq!(
            bad.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {:?}",
            bad.body
        );
        assert_eq!(bad.body["errors"][0]["field"], "Cart-Token", "{path}");
    }
    let second = cart_call(
        &app,
        "POST",
        "/v1/cart/items",
        None,
        None,
        Some(json!({"sku": "B-PEN", "quantity": 1})),
    )
    .await;
    assert_eq!(
        (second.status, second.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        "past cart.carts_max"
    );
    let same = cart_call(
        &app,
        "POST",
        "/v1/cart/items",
        None,
        Some(&token),
        Some(json!({"sku": "B-PEN", "quantity": 1})),
    )
    .await;
    assert_eq!(
        same.status,
        StatusCode::CREATED,
        "an existing cart still changes"
    );

    let buyer = app.buyer("pat").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let placed = place(
            &app,
            &buyer.access_token,
            json!([{"sku": "B-PEN", "quantity": 1}]),
            "pm_card_visa",
            false,
        )
        .await;
        ids.push(placed.body["order_id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/orders?limit=2&cursor={c}"),
            None => "/v1/orders?limit=2".to_owned(),
        };
        let page = app.get_as(&path, Some(&buyer.access_token)).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        seen.extend(
            page.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["order_id"].as_str().unwrap().to_owned()),
        );
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "every order once, newest first");
    let bad = app
        .get_as("/v1/orders?limit=0", Some(&buyer.access_token))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[actix_web::test]
async fn a_cart_refuses_an_item_in_another_currency_naming_it_and_unknown_currencies_are_refused() {
    let app = spawn_app().await;
    app.stocked_sku("dollars", "FX-USD", 10).await;
    let seller = app.seller("euros").await.access_token;
    let euro = app
        .post_json(
            "/v1/products",
            Some(&seller),
            json!({"title": "Euro tee", "skus": [{"sku": "FX-EUR", "price": {"amount": 1500, "currency": "EUR"}}]}),
        )
        .await;
    assert_eq!(euro.status, StatusCode::CREATED, "{:?}", euro.body);
    for currency in ["ABC", "usd", "XXX", "EURO", ""] {
        let refused = app
            .post_json(
                "/v1/products",
                Some(&seller),
                json!({"title": "Odd", "skus": [{"sku": format!("FX-{currency}-1"), "price": {"amount": 1, "currency": currency}}]}),
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{currency}: {:?}",
            refused.body
        );
        assert!(refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("ISO 4217"));
    }

    let buyer = app.buyer("traveller").await;
    let token = Some(buyer.access_token.as_str());
    let first = cart_call(
        &app,
        "POST",
        "/v1/cart/items",
        token,
        None,
        Some(json!({"sku": "FX-USD", "quantity": 1})),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let mixed = cart_call(
        &app,
        "POST",
        "/v1/cart/items",
        token,
        None,
        Some(json!({"sku": "FX-EUR", "quantity": 1})),
    )
    .await;
    assert_eq!(mixed.status, StatusCode::CONFLICT, "{:?}", mixed.body);
    assert_eq!(mixed.code(), "currency_mismatch");
    assert_eq!(mixed.body["sku"], "FX-EUR");
    assert_eq!(mixed.body["currency"], "EUR");
    assert_eq!(mixed.body["cart_currency"], "USD");
    assert!(mixed.body["detail"].as_str().unwrap().contains("FX-EUR"));
    let cart = cart_call(&app, "GET", "/v1/cart", token, None, None).await;
    let codes: Vec<&str> = cart.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sku"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["FX-USD"], "nothing was added");
    app.stop().await;
}

#[actix_web::test]
async fn expired_and_merged_carts_leave_memory_and_disk_and_a_new_cart_survives_a_restart() {
    use flashdrop::domain::identity::parse_id;
    use flashdrop::persistence::EntityKey;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.retention.sweep_interval_s = 1;
    // One cart per batch: the two that expire together take a repeat.
    config.retention.sweep_batch_max = 1;
    config.cart.actor_idle_s = 1;
    config.cart.guest_ttl_s = 60;
    config.cart.account_ttl_s = 120;
    let clock = std::sync::Arc::new(flashdrop::clock::ManualClock::new(1_795_000_000_000));
    let app = spawn_clocked(config.clone(), None, clock.clone()).await;
    app.stocked_sku("shop", "E-MUG", 10).await;
    let add = |token: Option<String>, cart: Option<String>| {
        let app = &app;
        async move {
            let added = cart_call(
                app,
                "POST",
                "/v1/cart/items",
                token.as_deref(),
                cart.as_deref(),
                Some(json!({"sku": "E-MUG", "quantity": 1})),
            )
            .await;
            assert!(added.status.is_success(), "{:?}", added.body);
            added
        }
    };
    let kim = app.buyer("kim").await;
    let kim_cart = EntityKey::Cart(parse_id(&kim.user_id).unwrap());
    add(Some(kim.access_token.clone()), None).await;
    // A guest cart merged at checkout ends at once.
    let guest = add(None, None).await;
    let guest_token = guest.header("cart-token").unwrap().to_owned();
    let gus = app.buyer("gus").await;
    let placed = cart_call(
        &app,
        "POST",
        "/v1/cart/checkout",
        Some(&gus.access_token),
        Some(&guest_token),
        Some(checkout_body()),
    )
    .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    let store = app.engine.store().clone();
    assert!(store.snapshot_header(kim_cart).unwrap().is_some());
    let carts = || app.engine.carts().count();
    assert_eq!(carts(), 2, "kim's and gus's (emptied by checkout)");

    // Kim's cart expires 120 s after its last use: then it goes from memory,
    // and its snapshot from disk.
    clock.advance_ms(119_000);
    let lee = app.buyer("lee").await;
    add(Some(lee.access_token.clone()), None).await;
    assert_eq!(carts(), 3);
    clock.advance_ms(1_000);
    let swept = eventually(Duration::from_secs(30), || async {
        (store.snapshot_header(kim_cart).unwrap().is_none()).then_some(())
    })
    .await;
    assert!(swept.is_some(), "kim's expired cart left the disk");
    let live = eventually(Duration::from_secs(30), || async {
        (carts() == 1).then_some(())
    })
    .await;
    assert!(live.is_some(), "only lee's cart is live: {}", carts());
    let kim_token = kim.access_token.clone();
    let seen = cart_call(&app, "GET", "/v1/cart", Some(&kim_token), None, None).await;
    assert_eq!(seen.body["items"], json!([]));

    // Kim comes back: a new cart, which a restart keeps.
    add(Some(kim_token.clone()), None).await;
    drop(store);
    app.stop().await;
    let app = spawn_clocked(config.clone(), None, clock.clone()).await;
    assert_eq!(app.engine.carts().count(), 2, "lee's and kim's new cart");
    let seen = cart_call(&app, "GET", "/v1/cart", Some(&kim_token), None, None).await;
    assert_eq!(seen.body["items"][0]["quantity"], 1, "{:?}", seen.body);
    let guest_after = cart_call(&app, "GET", "/v1/cart", None, Some(&guest_token), None).await;
    assert_eq!(
        guest_after.body["items"],
        json!([]),
        "the merged guest cart stays gone"
    );
    app.stop().await;

    // Carts that expire while the server is down are never loaded, and
    // recovery's pass sends them off the disk too.
    clock.advance_ms(121_000);
    let app = spawn_clocked(config, Some(dir), clock.clone()).await;
    assert_eq!(app.engine.carts().count(), 0);
    let store = app.engine.store().clone();
    let gone = eventually(Duration::from_secs(30), || async {
        (store.snapshot_header(kim_cart).unwrap().is_none()).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "a cart that expired while down left the disk"
    );
    drop(store);
    app.stop().await;
}
