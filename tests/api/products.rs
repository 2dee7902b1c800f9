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

#[actix_web::test]
async fn variants_on_option_axes_images_and_brand_are_kept_and_read_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::test_config(dir.path());
    let app = crate::helpers::spawn_config(config.clone(), None).await;
    let seller = app.seller("atelier").await.access_token;
    let body = json!({
        "title": "Field jacket",
        "brand": "Atelier Nord",
        "category": "outerwear",
        "images": [
            {"url": "https://cdn.example.com/jacket-front.jpg", "alt": "front"},
            {"url": "http://cdn.example.com:8080/jacket-back.jpg?w=800"}
        ],
        "options": [
            {"name": "size", "values": ["S", "M"]},
            {"name": "colour", "values": ["olive"]}
        ],
        "skus": [
            {"sku": "JKT-S", "price": {"amount": 19900, "currency": "EUR"}, "compare_at": 24900, "options": ["S", "olive"]},
            {"sku": "JKT-M", "price": {"amount": 19900, "currency": "EUR"}, "options": ["M", "olive"]}
        ]
    });
    let created = send(
        app.client
            .post(app.url("/v1/products"))
            .insert_header(bearer(&seller)),
        Some(body),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.header("etag"), Some("\"1\""));
    let id = created.body["id"].as_str().unwrap().to_owned();
    app.stop().await;

    let app = crate::helpers::spawn_config(config, None).await;
    let read = send(app.client.get(app.url(&format!("/v1/products/{id}"))), None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.header("etag"), Some("\"1\""));
    let p = &read.body;
    assert_eq!(
        (p["version"].as_u64(), p["status"].as_str()),
        (Some(1), Some("active"))
    );
    assert_eq!(p["brand"], "Atelier Nord");
    assert_eq!(p["created_at"], p["updated_at"]);
    assert_eq!(
        p["images"],
        json!([
            {"url": "https://cdn.example.com/jacket-front.jpg", "alt": "front"},
            {"url": "http://cdn.example.com:8080/jacket-back.jpg?w=800", "alt": ""}
        ]),
        "images keep their order"
    );
    assert_eq!(
        p["options"],
        json!([{"name": "size", "values": ["S", "M"]}, {"name": "colour", "values": ["olive"]}])
    );
    assert_eq!(p["skus"][0]["options"], json!(["S", "olive"]));
    assert_eq!(p["skus"][0]["compare_at"], 24900);
    assert_eq!(p["skus"][1]["compare_at"], serde_json::Value::Null);
    app.stop().await;
}

#[actix_web::test]
async fn a_product_breaking_variant_image_or_price_rules_is_refused_and_nothing_is_created() {
    let app = spawn_app().await;
    let seller = app.seller("atelier").await.access_token;
    let sku = |code: &str, options: serde_json::Value| json!({"sku": code, "price": {"amount": 1000, "currency": "EUR"}, "options": options});
    let axes = json!([{"name": "size", "values": ["S", "M"]}]);
    for (body, field) in [
        (
            json!({"title": "t", "options": axes, "skus": [sku("BAD-1", json!(["S"])), sku("BAD-2", json!(["S"]))]}),
            "skus[].options",
        ),
        (
            json!({"title": "t", "options": axes, "skus": [sku("BAD-1", json!(["XL"]))]}),
            "skus[].options",
        ),
        (
            json!({"title": "t", "skus": [sku("BAD-1", json!(["S"]))]}),
            "skus[].options",
        ),
        (
            json!({"title": "t", "options": [{"name": "Size", "values": ["S"]}, {"name": "size", "values": ["M"]}],
                   "skus": [sku("BAD-1", json!(["S", "M"]))]}),
            "options[].name",
        ),
        (
            json!({"title": "t", "skus": [{"sku": "BAD-1", "price": {"amount": 1000, "currency": "EUR"}, "compare_at": 1000}]}),
            "skus[].compare_at",
        ),
        (
            json!({"title": "t", "images": [{"url": "javascript:alert(1)"}], "skus": [sku("BAD-1", json!([]))]}),
            "images[].url",
        ),
        (
            json!({"title": "t", "images": [{"url": "https://cdn.example.com/a b.jpg"}], "skus": [sku("BAD-1", json!([]))]}),
            "images[].url",
        ),
    ] {
        let refused = send(
            app.client
                .post(app.url("/v1/products"))
                .insert_header(bearer(&seller)),
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            refused.body
        );
        assert!(
            refused.body.to_string().contains(field),
            "{body}: {field} not named in {:?}",
            refused.body
        );
    }
    // Nothing was created: every code is still free.
    let created = app.create_product("atelier", &["BAD-1", "BAD-2"]).await;
    assert_eq!(created["version"], 1);
    app.stop().await;
}

async fn patch(
    app: &crate::helpers::TestApp,
    token: &str,
    id: &str,
    if_match: Option<&str>,
    body: serde_json::Value,
) -> crate::helpers::Response {
    let mut request = app
        .client
        .patch(app.url(&format!("/v1/products/{id}")))
        .insert_header(bearer(token));
    if let Some(tag) = if_match {
        request = request.insert_header(("if-match", tag));
    }
    send(request, Some(body)).await
}

#[actix_web::test]
async fn a_price_changed_by_a_patch_reaches_the_cart_at_checkout() {
    let app = spawn_app().await;
    let created = app.create_product("north", &["PC-TEE", "PC-CAP"]).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.set_stock("north", "PC-TEE", json!({"main": 10})).await;
    let buyer = app.buyer("ivy").await.access_token;
    let added = send(
        app.client
            .post(app.url("/v1/cart/items"))
            .insert_header(bearer(&buyer)),
        Some(json!({"sku": "PC-TEE", "quantity": 2})),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);

    let seller = app.seller("north").await.access_token;
    let changed = patch(
        &app,
        &seller,
        &id,
        Some("\"1\""),
        json!({"title": "Drop tee, restocked", "skus": [{"sku": "PC-TEE", "price": {"amount": 2499, "currency": "USD"}, "compare_at": 2999}]}),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    assert_eq!(changed.header("etag"), Some("\"2\""));
    assert_eq!(changed.body["version"], 2);
    assert_eq!(changed.body["title"], "Drop tee, restocked");
    assert_eq!(changed.body["skus"][0]["price"]["amount"], 2499);
    assert_eq!(changed.body["skus"][0]["compare_at"], 2999);
    assert_eq!(
        changed.body["skus"][1]["price"]["amount"], 1999,
        "untouched"
    );
    assert_eq!(changed.body["created_at"], created["created_at"]);

    let checkout = || {
        send(
            app.client
                .post(app.url("/v1/cart/checkout"))
                .insert_header(bearer(&buyer))
                .insert_header(("prefer", "wait=10")),
            Some(json!({"shipping_address": "2 Cart Lane", "payment_method": "pm_card_visa"})),
        )
    };
    let refused = checkout().await;
    assert_eq!(refused.code(), "price_changed", "{:?}", refused.body);
    assert_eq!(
        refused.body["changes"],
        json!([{"sku": "PC-TEE", "was": 1999, "now": 2499}])
    );
    // The cart took the new price: checking out again pays it.
    let placed = checkout().await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    let order = crate::helpers::order_in(
        &app,
        &buyer,
        placed.body["order_id"].as_str().unwrap(),
        &["paid"],
    )
    .await;
    assert_eq!(order["total"], 2 * 2499);

    // The change is audited with the fields it changed.
    let audit = send(
        app.client
            .get(app.url("/v1/admin/audit?action=product.update&limit=100"))
            .insert_header(bearer(&seller)),
        None,
    )
    .await;
    let line = audit.body.to_string();
    assert!(line.contains("skus[PC-TEE].price"), "{line}");
    assert!(line.contains("skus[PC-TEE].compare_at"), "{line}");
    app.stop().await;
}

#[actix_web::test]
async fn of_twenty_concurrent_patches_of_one_version_exactly_one_wins() {
    let app = spawn_app().await;
    let created = app.create_product("north", &["RACE-1"]).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let seller = app.seller("north").await.access_token;
    let answers = futures_util::future::join_all((0..20).map(|n| {
        let (app, seller, id) = (&app, seller.clone(), id.clone());
        async move {
            patch(
                app,
                &seller,
                &id,
                Some("\"1\""),
                json!({"title": format!("title {n}")}),
            )
            .await
        }
    }))
    .await;
    let winners: Vec<usize> = (0..20)
        .filter(|n| answers[*n].status == StatusCode::OK)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    for (n, answer) in answers.iter().enumerate() {
        if n != winners[0] {
            assert_eq!(
                answer.status,
                StatusCode::PRECONDITION_FAILED,
                "{:?}",
                answer.body
            );
            assert_eq!(answer.code(), "version_mismatch");
            assert_eq!(answer.body["current_version"], 2);
        }
    }
    let read = send(app.client.get(app.url(&format!("/v1/products/{id}"))), None).await;
    assert_eq!(read.body["version"], 2);
    assert_eq!(
        read.body["title"],
        format!("title {}", winners[0]),
        "the winner's change, not a merge"
    );
    app.stop().await;
}

#[actix_web::test]
async fn bad_patches_change_nothing() {
    let app = spawn_app().await;
    let created = app.create_product("north", &["BP-1"]).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let seller = app.seller("north").await.access_token;
    let cases = [
        (
            Some("3"),
            json!({"title": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "If-Match",
        ),
        (
            None,
            json!({"skus": [{"sku": "NOPE-1", "price": {"amount": 1, "currency": "USD"}}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "skus[].sku",
        ),
        (
            None,
            json!({"skus": [{"sku": "BP-1", "compare_at": 5}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "skus[].compare_at",
        ),
        (
            None,
            json!({"title": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "title",
        ),
        (
            None,
            json!({"title": null}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "title",
        ),
        (
            None,
            json!({"colour": "red"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "colour",
        ),
    ];
    for (tag, body, status, field) in cases {
        let refused = patch(&app, &seller, &id, tag, body.clone()).await;
        assert_eq!(refused.status, status, "{body}: {:?}", refused.body);
        assert!(
            refused.body.to_string().contains(field),
            "{body}: {:?}",
            refused.body
        );
    }
    // Another store's seller does not find it; a buyer may not change products.
    let other = app.seller("south").await.access_token;
    let hidden = patch(&app, &other, &id, None, json!({"title": "mine"})).await;
    assert_eq!(
        (hidden.status, hidden.code()),
        (StatusCode::NOT_FOUND, "product_not_found")
    );
    let buyer = app.buyer("ivy").await.access_token;
    let refused = patch(&app, &buyer, &id, None, json!({"title": "mine"})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // A patch that changes nothing makes no version.
    let same = patch(&app, &seller, &id, Some("*"), json!({"title": "Drop tee"})).await;
    assert_eq!(same.status, StatusCode::OK, "{:?}", same.body);
    let read = send(app.client.get(app.url(&format!("/v1/products/{id}"))), None).await;
    assert_eq!(read.body["version"], 1);
    assert_eq!(read.body["title"], "Drop tee");
    assert_eq!(read.body["skus"][0]["price"]["amount"], 1999);
    app.stop().await;
}

#[actix_web::test]
async fn changed_products_keep_their_latest_version_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::test_config(dir.path());
    let app = crate::helpers::spawn_config(config.clone(), None).await;
    let created = app.create_product("north", &["RS-1"]).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let seller = app.seller("north").await.access_token;
    for (tag, amount) in [("\"1\"", 2100), ("\"2\"", 2200)] {
        let changed = patch(
            &app,
            &seller,
            &id,
            Some(tag),
            json!({"skus": [{"sku": "RS-1", "price": {"amount": amount, "currency": "USD"}}]}),
        )
        .await;
        assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    }
    app.stop().await;

    let app = crate::helpers::spawn_config(config, None).await;
    let read = send(app.client.get(app.url(&format!("/v1/products/{id}"))), None).await;
    assert_eq!(read.header("etag"), Some("\"3\""));
    assert_eq!(read.body["skus"][0]["price"]["amount"], 2200);
    // The SKU's price for carts and orders is the latest one too.
    app.set_stock("north", "RS-1", json!({"main": 5})).await;
    let buyer = app.buyer("ivy").await.access_token;
    let added = send(
        app.client
            .post(app.url("/v1/cart/items"))
            .insert_header(bearer(&buyer)),
        Some(json!({"sku": "RS-1", "quantity": 1})),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    assert!(added.body.to_string().contains("2200"), "{:?}", added.body);
    // A stale tag is refused after the restart as before it.
    let stale = patch(&app, &seller, &id, Some("\"2\""), json!({"title": "late"})).await;
    assert_eq!(stale.code(), "version_mismatch");
    app.stop().await;
}

#[actix_web::test]
async fn a_draft_is_seen_by_its_sellers_only_sells_once_published_and_stops_taking_holds_when_archived(
) {
    let app = crate::helpers::spawn_app().await;
    let seller = app.seller("life").await.access_token;
    let store = app.seller("life").await.tenant_id.unwrap();
    let created = app
        .post_json(
            "/v1/products",
            Some(&seller),
            json!({"status": "draft", "title": "Soon", "skus": [{"sku": "LC-1", "price": {"amount": 500, "currency": "EUR"}}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["status"], "draft");
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/products/{id}");
    let listing = format!("/v1/creators/{store}/products");
    let listed = |page: &serde_json::Value| page["items"].as_array().unwrap().len();

    // A draft: its sellers read and list it; nobody else sees it or holds it.
    let buyer = app.buyer("eve").await.access_token;
    let other = app.seller("elsewhere").await.access_token;
    for token in [None, Some(buyer.as_str()), Some(other.as_str())] {
        assert_eq!(app.get_as(&path, token).await.code(), "product_not_found");
        assert_eq!(listed(&app.get_as(&listing, token).await.body), 0);
    }
    assert_eq!(
        app.get_as(&path, Some(&seller)).await.status,
        StatusCode::OK
    );
    assert_eq!(listed(&app.get_as(&listing, Some(&seller)).await.body), 1);
    app.set_stock("life", "LC-1", json!({"main": 10})).await;
    let early = app
        .reserve("eve", "LC-1", json!({"quantity": 1}), None)
        .await;
    assert_eq!(early.code(), "product_not_on_sale", "{:?}", early.body);

    // Published: everyone sees it and it sells.
    let published = patch(
        &app,
        &seller,
        &id,
        Some("\"1\""),
        json!({"status": "active"}),
    )
    .await;
    assert_eq!(published.status, StatusCode::OK, "{:?}", published.body);
    assert_eq!(published.body["status"], "active");
    assert_eq!(app.get_as(&path, None).await.status, StatusCode::OK);
    assert_eq!(listed(&app.get_as(&listing, None).await.body), 1);
    let held = app
        .reserve("eve", "LC-1", json!({"quantity": 1}), None)
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{:?}", held.body);
    let back_to_draft = patch(&app, &seller, &id, None, json!({"status": "draft"})).await;
    assert_eq!(back_to_draft.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(back_to_draft.body["errors"][0]["field"], "status");

    // Archived: still readable, not listed for shoppers, no new holds; a
    // hold made before is still sold.
    let archive = format!("/v1/products/{id}/archive");
    let archived = app.post_json(&archive, Some(&seller), json!({})).await;
    assert_eq!(archived.status, StatusCode::OK, "{:?}", archived.body);
    assert_eq!(archived.body["status"], "archived");
    assert_eq!(archived.header("etag"), Some("\"3\""));
    assert_eq!(app.get_as(&path, None).await.body["status"], "archived");
    assert_eq!(listed(&app.get_as(&listing, None).await.body), 0);
    assert_eq!(listed(&app.get_as(&listing, Some(&seller)).await.body), 1);
    let late = app
        .reserve("eve", "LC-1", json!({"quantity": 1}), None)
        .await;
    assert_eq!(late.code(), "product_not_on_sale", "{:?}", late.body);
    let hold = held.body["reservation_id"].as_str().unwrap();
    let sold = app
        .post_json(
            &format!("/v1/reservations/{hold}/commit"),
            Some(&seller),
            json!({}),
        )
        .await;
    assert_eq!(sold.status, StatusCode::OK, "{:?}", sold.body);
    let again = app.post_json(&archive, Some(&seller), json!({})).await;
    assert_eq!(again.code(), "invalid_transition", "{:?}", again.body);
    assert_eq!(again.body["allowed"], json!([]));
    let revived = patch(&app, &seller, &id, None, json!({"status": "active"})).await;
    assert_eq!(revived.body["errors"][0]["field"], "status");
    for token in [&buyer, &other] {
        let refused = app.post_json(&archive, Some(token), json!({})).await;
        assert!(refused.status.is_client_error(), "{:?}", refused.body);
    }

    // A rollback brings an earlier status back, and the SKU sells again.
    let rolled = app
        .post_json(
            &format!("/v1/products/{id}/rollback"),
            Some(&seller),
            json!({"version": 2}),
        )
        .await;
    assert_eq!(rolled.body["status"], "active", "{:?}", rolled.body);
    let held = app
        .reserve("eve", "LC-1", json!({"quantity": 1}), None)
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{:?}", held.body);
    let history = app
        .get_as(&format!("/v1/products/{id}/versions"), Some(&seller))
        .await;
    let statuses: Vec<&str> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["changes"][0]["after"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(statuses, ["active", "archived", "active", "-"]);
    app.stop().await;
}
