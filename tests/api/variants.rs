//! Variants over HTTP: a seller adds a SKU to a product or removes one, or
//! replaces the product whole (`PUT`), each as its next version. A variant
//! with open holds, unsettled orders or an open drop stays; a removed one's
//! stock is forgotten (also across a restart) and its code is free again.

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    bearer, order_in, place, send, spawn_app, spawn_config, test_config, Response, TestApp,
};

async fn add_variant(
    app: &TestApp,
    token: &str,
    id: &str,
    if_match: Option<&str>,
    body: Value,
) -> Response {
    let mut request = app
        .client
        .post(app.url(&format!("/v1/products/{id}/variants")))
        .insert_header(bearer(token));
    if let Some(tag) = if_match {
        request = request.insert_header(("if-match", tag));
    }
    send(request, Some(body)).await
}

async fn remove_variant(app: &TestApp, token: &str, id: &str, sku: &str) -> Response {
    send(
        app.client
            .delete(app.url(&format!("/v1/products/{id}/variants/{sku}")))
            .insert_header(bearer(token)),
        None,
    )
    .await
}

async fn replace(
    app: &TestApp,
    token: &str,
    id: &str,
    if_match: Option<&str>,
    body: Value,
) -> Response {
    let mut request = app
        .client
        .put(app.url(&format!("/v1/products/{id}")))
        .insert_header(bearer(token));
    if let Some(tag) = if_match {
        request = request.insert_header(("if-match", tag));
    }
    send(request, Some(body)).await
}

async fn patch(app: &TestApp, token: &str, id: &str, body: Value) -> Response {
    let patched = send(
        app.client
            .patch(app.url(&format!("/v1/products/{id}")))
            .insert_header(bearer(token)),
        Some(body),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    patched
}

fn codes(product: &Value) -> Vec<&str> {
    product["skus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sku"].as_str().unwrap())
        .collect()
}

/// The product's content as a version shows it: no stock, no version or times.
fn content(product: &Value) -> Value {
    let mut product = product.clone();
    let object = product.as_object_mut().unwrap();
    for field in ["version", "updated_at"] {
        object.remove(field);
    }
    for sku in object["skus"].as_array_mut().unwrap() {
        sku.as_object_mut().unwrap().remove("stock");
    }
    product
}

fn tee(sku: &str, amount: i64, size: &str) -> Value {
    json!({"sku": sku, "price": {"amount": amount, "currency": "USD"}, "options": [size]})
}

#[actix_web::test]
async fn a_draft_gains_variants_is_published_repriced_under_a_cart_edited_and_rolled_back_to_version_2(
) {
    let app = spawn_app().await;
    let seller = app.seller("acc").await.access_token;
    let buyer = app.buyer("acc-shopper").await.access_token;
    let created = send(
        app.client
            .post(app.url("/v1/products"))
            .insert_header(bearer(&seller)),
        Some(json!({
            "status": "draft",
            "title": "Loop tee",
            "options": [{"name": "size", "values": ["S", "M", "L"]}],
            "skus": [tee("LOOP-S", 2000, "S")]
        })),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();

    // Version 2: a variant added to the draft.
    let added = add_variant(&app, &seller, &id, Some("\"1\""), tee("LOOP-M", 2000, "M")).await;
    assert_eq!(added.status, StatusCode::OK, "{:?}", added.body);
    assert_eq!(added.header("etag"), Some("\"2\""));
    assert_eq!(codes(&added.body), ["LOOP-S", "LOOP-M"]);
    assert_eq!(added.body["skus"][1]["stock"]["available"], 0);
    let version_2 = added.body.clone();

    // Version 3: published; the new variant sells like any other.
    let published = patch(&app, &seller, &id, json!({"status": "active"})).await;
    assert_eq!(published.body["version"], 3);
    let stocked = app.set_stock("acc", "LOOP-M", json!({"main": 5})).await;
    assert_eq!(stocked.status, StatusCode::OK, "{:?}", stocked.body);
    let in_cart = send(
        app.client
            .post(app.url("/v1/cart/items"))
            .insert_header(bearer(&buyer)),
        Some(json!({"sku": "LOOP-M", "quantity": 1})),
    )
    .await;
    assert_eq!(in_cart.status, StatusCode::CREATED, "{:?}", in_cart.body);

    // Version 4: the price changes under the cart; checkout says so.
    patch(
        &app,
        &seller,
        &id,
        json!({"skus": [{"sku": "LOOP-M", "price": {"amount": 2600, "currency": "USD"}}]}),
    )
    .await;
    let checkout = send(
        app.client
            .post(app.url("/v1/cart/checkout"))
            .insert_header(bearer(&buyer)),
        Some(json!({"shipping_address": "3 Loop Road", "payment_method": "pm_card_visa"})),
    )
    .await;
    assert_eq!(checkout.code(), "price_changed", "{:?}", checkout.body);
    assert_eq!(
        checkout.body["changes"],
        json!([{"sku": "LOOP-M", "was": 2000, "now": 2600}])
    );

    // Versions 5 to 9: five more edits.
    for (n, edit) in [
        json!({"title": "Loop tee II"}),
        json!({"description": "Organic"}),
        json!({"brand": "Loop"}),
        json!({"attributes": {"fit": "regular"}}),
        json!({"images": [{"url": "https://img.example/loop.png", "alt": "front"}]}),
    ]
    .into_iter()
    .enumerate()
    {
        let edited = patch(&app, &seller, &id, edit).await;
        assert_eq!(edited.body["version"], n + 5);
    }

    // Back to version 2, as version 10: it reads exactly as version 2 did.
    let rolled = send(
        app.client
            .post(app.url(&format!("/v1/products/{id}/rollback")))
            .insert_header(bearer(&seller))
            .insert_header(("if-match", "\"9\"")),
        Some(json!({"version": 2})),
    )
    .await;
    assert_eq!(rolled.status, StatusCode::OK, "{:?}", rolled.body);
    assert_eq!(rolled.header("etag"), Some("\"10\""));
    let read = app
        .get_as(&format!("/v1/products/{id}"), Some(&seller))
        .await;
    assert_eq!(content(&read.body), content(&version_2));
    assert_eq!(read.body["status"], "draft");
    let history = app
        .get_as(&format!("/v1/products/{id}/versions"), Some(&seller))
        .await;
    let listed: Vec<u64> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(history.body["items"][0]["cause"], "rolled_back");
    assert_eq!(
        history.body["items"][8]["changes"][0]["field"], "skus",
        "version 2 lists the variant it added: {:#}",
        history.body["items"][8]
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_variant_stays_while_it_is_held_or_ordered_and_goes_for_good_once_free() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let app = spawn_config(config.clone(), None).await;
    let seller = app.seller("rm").await.access_token;
    let created = app.create_product("rm", &["RM-A", "RM-B", "RM-C"]).await;
    let id = created["id"].as_str().unwrap().to_owned();
    for sku in ["RM-A", "RM-B", "RM-C"] {
        app.set_stock("rm", sku, json!({"main": 10})).await;
    }
    let buyer = app.buyer("rm-shopper").await.access_token;

    // A hold keeps RM-A.
    let held = app
        .reserve("rm-shopper", "RM-A", json!({"quantity": 2}), None)
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{:?}", held.body);
    let refused = remove_variant(&app, &seller, &id, "RM-A").await;
    assert_eq!(refused.code(), "variant_in_use", "{:?}", refused.body);
    assert_eq!(refused.body["open_holds"], 1);
    assert_eq!(refused.body["sku"], "RM-A");
    // Refused, nothing changed: the SKU still sells.
    let more = app
        .reserve("rm-shopper", "RM-A", json!({"quantity": 1}), None)
        .await;
    assert_eq!(more.status, StatusCode::CREATED, "{:?}", more.body);
    let read = app.get_as(&format!("/v1/products/{id}"), None).await;
    assert_eq!(read.body["version"], 1);

    // An order whose payment is still pending keeps RM-B.
    let order = place(
        &app,
        &buyer,
        json!([{"sku": "RM-B", "quantity": 1}]),
        "pm_no_response",
        true,
    )
    .await;
    assert_eq!(order.status, StatusCode::ACCEPTED, "{:?}", order.body);
    let order_id = order.body["order_id"].as_str().unwrap().to_owned();
    order_in(&app, &buyer, &order_id, &["payment_pending"]).await;
    let refused = remove_variant(&app, &seller, &id, "RM-B").await;
    assert_eq!(refused.code(), "variant_in_use", "{:?}", refused.body);
    assert_eq!(refused.body["unsettled_orders"], 1);

    // RM-C holds nothing: it goes, as version 2.
    let in_cart = send(
        app.client
            .post(app.url("/v1/cart/items"))
            .insert_header(bearer(&buyer)),
        Some(json!({"sku": "RM-C", "quantity": 1})),
    )
    .await;
    assert_eq!(in_cart.status, StatusCode::CREATED, "{:?}", in_cart.body);
    let removed = remove_variant(&app, &seller, &id, "RM-C").await;
    assert_eq!(removed.status, StatusCode::OK, "{:?}", removed.body);
    assert_eq!(removed.header("etag"), Some("\"2\""));
    assert_eq!(codes(&removed.body), ["RM-A", "RM-B"]);
    let gone = send(app.client.get(app.url("/v1/skus/RM-C/stock")), None).await;
    assert_eq!(gone.code(), "sku_not_found", "{:?}", gone.body);
    let again = remove_variant(&app, &seller, &id, "RM-C").await;
    assert_eq!(again.code(), "sku_not_found", "{:?}", again.body);
    // The cart that held its code cannot check it out.
    let checkout = send(
        app.client
            .post(app.url("/v1/cart/checkout"))
            .insert_header(bearer(&buyer)),
        Some(json!({"shipping_address": "3 Loop Road", "payment_method": "pm_card_visa"})),
    )
    .await;
    assert_eq!(checkout.code(), "sku_not_found", "{:?}", checkout.body);
    // The history tells which variant went; the audit says who took it.
    let history = app
        .get_as(&format!("/v1/products/{id}/versions/2"), Some(&seller))
        .await;
    assert_eq!(
        history.body["changes"][0]["field"], "skus",
        "{:?}",
        history.body
    );
    let audit = app
        .get_as(
            "/v1/admin/audit?action=product.variant.remove",
            Some(&seller),
        )
        .await;
    assert_eq!(
        audit.body["items"].as_array().unwrap().len(),
        1,
        "{:?}",
        audit.body
    );

    // The last variant of a product stays; another store's seller sees no product.
    let single = app.create_product("rm", &["RM-ONLY"]).await;
    let single_id = single["id"].as_str().unwrap();
    let last = remove_variant(&app, &seller, single_id, "RM-ONLY").await;
    assert_eq!(last.code(), "last_variant", "{:?}", last.body);
    let stranger = app.seller("rm-other").await.access_token;
    let foreign = remove_variant(&app, &stranger, &id, "RM-B").await;
    assert_eq!(foreign.code(), "product_not_found", "{:?}", foreign.body);

    // After a restart the removed variant's stock is gone, its code free.
    let identities = app.identities();
    app.stop().await;
    let app = spawn_config(config, Some(dir)).await;
    app.adopt(identities);
    let read = app.get_as(&format!("/v1/products/{id}"), None).await;
    assert_eq!(codes(&read.body), ["RM-A", "RM-B"]);
    let gone = send(app.client.get(app.url("/v1/skus/RM-C/stock")), None).await;
    assert_eq!(gone.code(), "sku_not_found", "{:?}", gone.body);
    let reused = add_variant(
        &app,
        &seller,
        &id,
        None,
        json!({"sku": "RM-C", "price": {"amount": 500, "currency": "USD"}}),
    )
    .await;
    assert_eq!(reused.status, StatusCode::OK, "{:?}", reused.body);
    assert_eq!(
        reused.body["skus"][2]["stock"]["available"], 0,
        "a fresh SKU, not the old stock"
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_put_replaces_the_product_and_matches_variants_by_code() {
    let app = spawn_app().await;
    let seller = app.seller("put").await.access_token;
    let created = app.create_product("put", &["PUT-A", "PUT-B"]).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.set_stock("put", "PUT-A", json!({"main": 7})).await;
    app.create_product("put-other", &["PUT-TAKEN"]).await;

    let whole = json!({
        "title": "Replaced",
        "category": "tops",
        "skus": [
            {"sku": "PUT-A", "price": {"amount": 2100, "currency": "USD"}},
            {"sku": "PUT-N", "price": {"amount": 900, "currency": "USD"}}
        ]
    });
    let replaced = replace(&app, &seller, &id, Some("\"1\""), whole.clone()).await;
    assert_eq!(replaced.status, StatusCode::OK, "{:?}", replaced.body);
    assert_eq!(replaced.header("etag"), Some("\"2\""));
    assert_eq!(replaced.body["title"], "Replaced");
    assert_eq!(replaced.body["status"], "active", "kept");
    assert_eq!(codes(&replaced.body), ["PUT-A", "PUT-N"]);
    assert_eq!(
        replaced.body["skus"][0]["stock"]["available"], 7,
        "a kept variant keeps its stock"
    );
    assert_eq!(replaced.body["skus"][1]["stock"]["available"], 0);
    let gone = send(app.client.get(app.url("/v1/skus/PUT-B/stock")), None).await;
    assert_eq!(gone.code(), "sku_not_found", "{:?}", gone.body);

    // The same body again makes no version.
    let same = replace(&app, &seller, &id, None, whole).await;
    assert_eq!(same.status, StatusCode::OK, "{:?}", same.body);
    assert_eq!(same.header("etag"), Some("\"2\""));

    // Refused, and nothing changed: a stale tag, a code in use elsewhere, a
    // variant with a hold, bad input, another store's seller.
    let body = |skus: Value| json!({"title": "Third", "skus": skus});
    let a = json!({"sku": "PUT-A", "price": {"amount": 2100, "currency": "USD"}});
    let stale = replace(&app, &seller, &id, Some("\"1\""), body(json!([a]))).await;
    assert_eq!(stale.code(), "version_mismatch", "{:?}", stale.body);
    let taken = json!({"sku": "PUT-TAKEN", "price": {"amount": 1, "currency": "USD"}});
    let clash = replace(&app, &seller, &id, None, body(json!([a, taken]))).await;
    assert_eq!(clash.code(), "sku_exists", "{:?}", clash.body);
    assert_eq!(clash.body["skus"], json!(["PUT-TAKEN"]));
    app.set_stock("put", "PUT-N", json!({"main": 3})).await;
    let held = app
        .reserve("put-shopper", "PUT-N", json!({"quantity": 1}), None)
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{:?}", held.body);
    let busy = replace(&app, &seller, &id, None, body(json!([a]))).await;
    assert_eq!(busy.code(), "variant_in_use", "{:?}", busy.body);
    assert_eq!(busy.body["sku"], "PUT-N");
    let invalid = replace(&app, &seller, &id, None, json!({"title": "", "skus": []})).await;
    assert_eq!(
        invalid.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        invalid.body
    );
    let stranger = app.seller("put-stranger").await.access_token;
    let foreign = replace(&app, &stranger, &id, None, body(json!([a]))).await;
    assert_eq!(foreign.code(), "product_not_found", "{:?}", foreign.body);
    let read = app.get_as(&format!("/v1/products/{id}"), None).await;
    assert_eq!(read.body["version"], 2);
    assert_eq!(read.body["title"], "Replaced");
    assert_eq!(codes(&read.body), ["PUT-A", "PUT-N"]);
    // The refused held variant still sells.
    let more = app
        .reserve("put-shopper", "PUT-N", json!({"quantity": 1}), None)
        .await;
    assert_eq!(more.status, StatusCode::CREATED, "{:?}", more.body);
    app.stop().await;
}

#[actix_web::test]
async fn bad_variant_requests_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let seller = app.seller("badv").await.access_token;
    let created = app.create_product("badv", &["BV-1"]).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.create_product("badv", &["BV-ELSEWHERE"]).await;
    let price = json!({"amount": 100, "currency": "USD"});
    for (body, expected) in [
        (json!({"sku": "BV-1", "price": price}), "validation_failed"),
        (json!({"sku": "BV-ELSEWHERE", "price": price}), "sku_exists"),
        (json!({"sku": "BV 2", "price": price}), "validation_failed"),
        (
            json!({"sku": "BV-2", "price": {"amount": -5, "currency": "USD"}}),
            "validation_failed",
        ),
        (
            json!({"sku": "BV-2", "price": price, "options": ["S"]}),
            "validation_failed",
        ),
        (
            json!({"sku": "BV-2", "price": price, "colour": "red"}),
            "validation_failed",
        ),
        (json!({"sku": "BV-2"}), "validation_failed"),
    ] {
        let refused = add_variant(&app, &seller, &id, None, body.clone()).await;
        assert_eq!(refused.code(), expected, "{body}: {:?}", refused.body);
    }
    let stale = add_variant(
        &app,
        &seller,
        &id,
        Some("\"7\""),
        json!({"sku": "BV-2", "price": price}),
    )
    .await;
    assert_eq!(stale.code(), "version_mismatch", "{:?}", stale.body);
    let buyer = app.buyer("badv-shopper").await.access_token;
    let not_seller = add_variant(
        &app,
        &buyer,
        &id,
        None,
        json!({"sku": "BV-2", "price": price}),
    )
    .await;
    assert_eq!(
        not_seller.status,
        StatusCode::FORBIDDEN,
        "{:?}",
        not_seller.body
    );
    let unknown = add_variant(
        &app,
        &seller,
        "00000000-0000-0000-0000-000000000000",
        None,
        json!({"sku": "BV-2", "price": price}),
    )
    .await;
    assert_eq!(unknown.code(), "product_not_found", "{:?}", unknown.body);
    let read = app.get_as(&format!("/v1/products/{id}"), None).await;
    assert_eq!(read.body["version"], 1);
    assert_eq!(codes(&read.body), ["BV-1"]);
    let free = send(app.client.get(app.url("/v1/skus/BV-2/stock")), None).await;
    assert_eq!(free.code(), "sku_not_found", "{:?}", free.body);
    app.stop().await;
}

/// A data directory as a crash between a variant's removal and the end of
/// its stock leaves it: the product lists SKU 1 only, the WAL holds stock
/// of SKU 2, and (when `marked`) SKU 2's removal marker.
fn crashed_mid_removal(dir: &std::path::Path, marked: bool) {
    use flashdrop::domain::product::{NewProduct, NewSku, ProductStatus};
    use flashdrop::domain::stock::{LedgerLimits, StockLedger};
    use flashdrop::domain::{SkuId, TenantKey, WarehouseId};
    use flashdrop::persistence::wal::{self, WalSettings, WriterStart};
    use flashdrop::persistence::{
        EntityKey, RecordBody, RetiredSkus, SnapshotBody, Store, SyncMode, WalRecord,
    };

    let store = std::sync::Arc::new(
        Store::open(
            dir,
            16 << 20,
            SyncMode::Flush,
            std::time::Duration::from_secs(10),
        )
        .unwrap(),
    );
    let start = WriterStart {
        cursor: store.cursor().unwrap(),
        ..WriterStart::default()
    };
    let (wal, thread) = wal::start(store.clone(), WalSettings::default(), start);
    let product = NewProduct {
        status: ProductStatus::Active,
        title: "Half removed".into(),
        description: String::new(),
        brand: String::new(),
        category: String::new(),
        attributes: Default::default(),
        images: Vec::new(),
        options: Vec::new(),
        skus: vec![NewSku {
            code: "HALF-1".into(),
            price_amount: 100,
            price_currency: "USD".into(),
            compare_at: None,
            options: Vec::new(),
            attributes: Default::default(),
            low_stock_threshold: None,
        }],
    }
    .validate(1_000)
    .unwrap()
    .into_product(7, &TenantKey::parse("half").unwrap(), &[SkuId(1)], 0, 1_000);
    let mut orphan = StockLedger::new(SkuId(2), LedgerLimits::default());
    let mut events = Vec::new();
    orphan
        .set_stock(
            vec![(WarehouseId::parse("main").unwrap(), 9)],
            None,
            &mut events,
        )
        .unwrap();
    wal.append(
        &WalRecord {
            entity: EntityKey::Sku(2),
            body: RecordBody::Stock(events),
        },
        None,
    )
    .unwrap();
    wal.append(
        &WalRecord {
            entity: EntityKey::Product(7),
            body: RecordBody::Product(Box::new(product.clone())),
        },
        None,
    )
    .unwrap();
    wal.snapshot(
        EntityKey::Product(7),
        &SnapshotBody::Product(Box::new(product)),
        None,
    )
    .unwrap();
    if marked {
        wal.send(RetiredSkus::open(&store).unwrap().marking(vec![SkuId(2)]))
            .unwrap();
    }
    wal.shutdown_blocking(thread).unwrap();
}

#[actix_web::test]
async fn a_variant_removed_just_before_a_crash_has_its_stock_forgotten_at_start_up() {
    // Without the marker, stock of no product stops start-up loudly.
    let unmarked = tempfile::tempdir().unwrap();
    crashed_mid_removal(unmarked.path(), false);
    let app = flashdrop::startup::Application::build(test_config(unmarked.path()))
        .await
        .expect("app builds");
    let error = app.run_until_stopped().await.expect_err("start-up refused");
    assert!(
        format!("{error:#}").contains("belong to no product"),
        "{error:#}"
    );

    // With it, the removed variant's stock is forgotten and start-up goes on.
    let dir = tempfile::tempdir().unwrap();
    crashed_mid_removal(dir.path(), true);
    let config = test_config(dir.path());
    let app = spawn_config(config, Some(dir)).await;
    let read = app
        .get_as(&format!("/v1/products/{}", uuid::Uuid::from_u128(7)), None)
        .await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(codes(&read.body), ["HALF-1"]);
    let store = app.engine.store().clone();
    let marked = flashdrop::persistence::RetiredSkus::open(&store).unwrap();
    let cleared = crate::helpers::eventually(std::time::Duration::from_secs(10), || {
        let (store, marked) = (store.clone(), marked.clone());
        async move {
            let header = store
                .snapshot_header(flashdrop::persistence::EntityKey::Sku(2))
                .unwrap();
            (header.is_none() && marked.all().unwrap().is_empty()).then_some(())
        }
    })
    .await;
    assert!(cleared.is_some(), "the marker and the stock stay");
    app.stop().await;
}
