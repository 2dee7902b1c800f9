//! The category tree: platform admins create, rename, move and delete
//! categories; anyone reads the tree with product counts; products are
//! filed under a category by its id, and counts follow every move at once.

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{bearer, send, spawn_config, test_config, with_admin, Response, TestApp};

async fn create(app: &TestApp, token: &str, body: Value) -> Response {
    send(
        app.client
            .post(app.url("/v1/categories"))
            .insert_header(bearer(token)),
        Some(body),
    )
    .await
}

async fn category(app: &TestApp, token: &str, name: &str, parent: Option<&str>) -> String {
    let created = create(app, token, json!({"name": name, "parent_id": parent})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    created.body["id"].as_str().unwrap().to_owned()
}

async fn patch(app: &TestApp, token: &str, id: &str, body: Value) -> Response {
    send(
        app.client
            .patch(app.url(&format!("/v1/categories/{id}")))
            .insert_header(bearer(token)),
        Some(body),
    )
    .await
}

async fn delete(app: &TestApp, token: &str, id: &str) -> Response {
    send(
        app.client
            .delete(app.url(&format!("/v1/categories/{id}")))
            .insert_header(bearer(token)),
        None,
    )
    .await
}

/// Every node of the tree by slug path: (own count, total count).
fn counts(app_tree: &Value) -> Vec<(String, u64, u64)> {
    fn walk(nodes: &Value, out: &mut Vec<(String, u64, u64)>) {
        for node in nodes.as_array().unwrap() {
            out.push((
                node["path"].as_str().unwrap().to_owned(),
                node["product_count"].as_u64().unwrap(),
                node["total_count"].as_u64().unwrap(),
            ));
            walk(&node["children"], out);
        }
    }
    let mut out = Vec::new();
    walk(&app_tree["items"], &mut out);
    out
}

async fn tree(app: &TestApp) -> Value {
    let tree = app.get_as("/v1/categories", None).await;
    assert_eq!(tree.status, StatusCode::OK, "{:?}", tree.body);
    tree.body
}

fn row(path: &str, own: u64, total: u64) -> (String, u64, u64) {
    (path.to_owned(), own, total)
}

#[actix_web::test]
async fn products_are_filed_by_category_id_and_counts_follow_a_moved_subtree_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_admin(&mut config);
    let app = spawn_config(config.clone(), None).await;
    let admin = app.platform_admin().await;
    let apparel = category(&app, &admin, "Apparel", None).await;
    let tops = category(&app, &admin, "Tops", Some(&apparel)).await;
    let tees = category(&app, &admin, "Tees", Some(&tops)).await;
    let shoes = category(&app, &admin, "Shoes", None).await;

    let seller = app.seller("cats").await.access_token;
    let product = |sku: &str, category: &str| json!({"title": "Tee", "category": category, "skus": [{"sku": sku, "price": {"amount": 900, "currency": "USD"}}]});
    let filed = send(
        app.client
            .post(app.url("/v1/products"))
            .insert_header(bearer(&seller)),
        Some(product("CAT-1", &tees)),
    )
    .await;
    assert_eq!(filed.status, StatusCode::CREATED, "{:?}", filed.body);
    let product_id = filed.body["id"].as_str().unwrap().to_owned();
    // A category id the tree lacks is refused; a label files nowhere.
    let unknown = send(
        app.client
            .post(app.url("/v1/products"))
            .insert_header(bearer(&seller)),
        Some(product("CAT-2", "999")),
    )
    .await;
    assert_eq!(
        unknown.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        unknown.body
    );
    assert_eq!(unknown.body["errors"][0]["field"], "category");
    let labelled = send(
        app.client
            .post(app.url("/v1/products"))
            .insert_header(bearer(&seller)),
        Some(product("CAT-3", "apparel")),
    )
    .await;
    assert_eq!(labelled.status, StatusCode::CREATED, "{:?}", labelled.body);

    assert_eq!(
        counts(&tree(&app).await),
        [
            row("apparel", 0, 1),
            row("apparel/tops", 0, 1),
            row("apparel/tops/tees", 1, 1),
            row("shoes", 0, 0)
        ]
    );
    assert_eq!(tree(&app).await["total"], 4);

    // Tops moves under Shoes with its subtree; the counts follow at once.
    let moved = patch(&app, &admin, &tops, json!({"parent_id": shoes})).await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    assert_eq!(moved.body["path"], "shoes/tops");
    assert_eq!(
        counts(&tree(&app).await),
        [
            row("apparel", 0, 0),
            row("shoes", 0, 1),
            row("shoes/tops", 0, 1),
            row("shoes/tops/tees", 1, 1)
        ]
    );

    // A cycle, a taken slug, a non-empty category: refused, nothing changed.
    let cycle = patch(&app, &admin, &shoes, json!({"parent_id": tees})).await;
    assert_eq!(cycle.code(), "category_cycle", "{:?}", cycle.body);
    let under_itself = patch(&app, &admin, &tees, json!({"parent_id": tees})).await;
    assert_eq!(
        under_itself.code(),
        "category_cycle",
        "{:?}",
        under_itself.body
    );
    let taken = create(
        &app,
        &admin,
        json!({"name": "Tops again", "slug": "tops", "parent_id": shoes}),
    )
    .await;
    assert_eq!(taken.code(), "slug_taken", "{:?}", taken.body);
    let both = patch(
        &app,
        &admin,
        &tops,
        json!({"name": "Upper", "slug": "upper", "parent_id": tees}),
    )
    .await;
    assert_eq!(both.code(), "category_cycle", "{:?}", both.body);
    let with_children = delete(&app, &admin, &shoes).await;
    assert_eq!(
        with_children.code(),
        "category_not_empty",
        "{:?}",
        with_children.body
    );
    assert_eq!(with_children.body["children"], 1);
    let with_products = delete(&app, &admin, &tees).await;
    assert_eq!(
        with_products.code(),
        "category_not_empty",
        "{:?}",
        with_products.body
    );
    assert_eq!(with_products.body["products"], 1);
    assert_eq!(
        counts(&tree(&app).await),
        [
            row("apparel", 0, 0),
            row("shoes", 0, 1),
            row("shoes/tops", 0, 1),
            row("shoes/tops/tees", 1, 1)
        ],
        "the refused rename did not happen either"
    );

    // Renaming keeps the slug unless one is given.
    let renamed = patch(&app, &admin, &shoes, json!({"name": "Footwear"})).await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    assert_eq!(
        (renamed.body["name"].as_str(), renamed.body["slug"].as_str()),
        (Some("Footwear"), Some("shoes"))
    );

    // The product moves to Apparel; Tees is empty and can go.
    let refiled = send(
        app.client
            .patch(app.url(&format!("/v1/products/{product_id}")))
            .insert_header(bearer(&seller)),
        Some(json!({"category": apparel})),
    )
    .await;
    assert_eq!(refiled.status, StatusCode::OK, "{:?}", refiled.body);
    let deleted = delete(&app, &admin, &tees).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    let gone = delete(&app, &admin, &tees).await;
    assert_eq!(gone.code(), "category_not_found", "{:?}", gone.body);

    // The tree and the filings survive a restart.
    let identities = app.identities();
    app.stop().await;
    let app = spawn_config(config, Some(dir)).await;
    app.adopt(identities);
    assert_eq!(
        counts(&tree(&app).await),
        [
            row("apparel", 1, 1),
            row("shoes", 0, 0),
            row("shoes/tops", 0, 0)
        ]
    );
    // Ids continue after the highest one.
    let admin = app.platform_admin().await;
    let next = category(&app, &admin, "Hats", None).await;
    assert!(next.parse::<u64>().unwrap() > shoes.parse::<u64>().unwrap());
    app.stop().await;
}

#[actix_web::test]
async fn only_platform_admins_change_the_tree_and_bad_requests_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_admin(&mut config);
    let app = spawn_config(config, Some(dir)).await;
    let admin = app.platform_admin().await;
    let root = category(&app, &admin, "Root", None).await;
    let seller = app.seller("not-admin").await.access_token;
    let buyer = app.buyer("not-admin-shopper").await.access_token;
    for token in [&seller, &buyer] {
        let refused = create(&app, token, json!({"name": "Mine"})).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
        let refused = patch(&app, token, &root, json!({"name": "Mine"})).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
        let refused = delete(&app, token, &root).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    }
    let anonymous = send(
        app.client.post(app.url("/v1/categories")),
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    for (body, expected) in [
        (json!({"name": ""}), "validation_failed"),
        (json!({"name": "★★★"}), "validation_failed"),
        (
            json!({"name": "Ok", "slug": "Not A Slug"}),
            "validation_failed",
        ),
        (
            json!({"name": "Ok", "parent_id": "abc"}),
            "validation_failed",
        ),
        (
            json!({"name": "Ok", "parent_id": "424242"}),
            "category_not_found",
        ),
        (json!({"name": "Ok", "colour": "red"}), "validation_failed"),
    ] {
        let refused = create(&app, &admin, body.clone()).await;
        assert_eq!(refused.code(), expected, "{body}: {:?}", refused.body);
    }
    let slug_alone = patch(&app, &admin, &root, json!({"slug": "other"})).await;
    assert_eq!(
        slug_alone.code(),
        "validation_failed",
        "{:?}",
        slug_alone.body
    );
    let unknown = patch(&app, &admin, "424242", json!({"name": "x"})).await;
    assert_eq!(unknown.code(), "category_not_found", "{:?}", unknown.body);

    // Six levels at most.
    let mut parent = root.clone();
    for level in 2..=6 {
        parent = category(&app, &admin, &format!("Level {level}"), Some(&parent)).await;
    }
    let too_deep = create(
        &app,
        &admin,
        json!({"name": "Level 7", "parent_id": parent}),
    )
    .await;
    assert_eq!(too_deep.code(), "limit_exceeded", "{:?}", too_deep.body);
    assert_eq!(tree(&app).await["total"], 6, "only what was accepted");
    let audit = app
        .get_as(
            "/v1/admin/audit?action=category.create&limit=100",
            Some(&admin),
        )
        .await;
    assert_eq!(
        audit.body["items"].as_array().unwrap().len(),
        6,
        "{:?}",
        audit.body
    );
    app.stop().await;
}
