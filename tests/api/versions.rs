//! Product version histories: every change is a version with its author,
//! time, correlation id and field-level diff; a rollback makes an earlier
//! version current again as the next version; histories keep the newest
//! `retention.product_versions`, survive a restart, and are shown only to
//! the store's sellers and platform admins.

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    bearer, send, spawn_app, spawn_config, spawn_with_admin, test_config, Response, TestApp,
};

async fn patch(app: &TestApp, token: &str, id: &str, request_id: &str, body: Value) -> Response {
    let patched = send(
        app.client
            .patch(app.url(&format!("/v1/products/{id}")))
            .insert_header(bearer(token))
            .insert_header(("x-correlation-id", request_id)),
        Some(body),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    patched
}

async fn roll_back(
    app: &TestApp,
    token: &str,
    id: &str,
    if_match: Option<&str>,
    body: Value,
) -> Response {
    let mut request = app
        .client
        .post(app.url(&format!("/v1/products/{id}/rollback")))
        .insert_header(bearer(token));
    if let Some(tag) = if_match {
        request = request.insert_header(("if-match", tag));
    }
    send(request, Some(body)).await
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

fn versions_of(page: &Value) -> Vec<u64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect()
}

#[actix_web::test]
async fn five_more_edits_then_a_rollback_to_version_2_reads_as_version_2_with_every_version_listed()
{
    let app = spawn_app().await;
    let seller = app.seller("hist").await;
    let token = seller.access_token.clone();
    let created = app.create_product("hist", &["HV-1", "HV-2"]).await;
    let id = created["id"].as_str().unwrap().to_owned();

    // Version 2: a price change, then five more edits.
    patch(
        &app,
        &token,
        &id,
        "req-2",
        json!({"skus": [{"sku": "HV-1", "price": {"amount": 2500, "currency": "USD"}}]}),
    )
    .await;
    let edits = [
        json!({"title": "Tee, second cut"}),
        json!({"images": [{"url": "https://img.example/tee.png", "alt": "front"}]}),
        json!({"description": "Heavier cotton", "brand": "North"}),
        json!({"attributes": {"fit": "boxy"}}),
        json!({"skus": [{"sku": "HV-2", "price": {"amount": 3100, "currency": "USD"}, "compare_at": 3900}]}),
    ];
    for (n, edit) in edits.into_iter().enumerate() {
        let changed = patch(&app, &token, &id, &format!("req-{}", n + 3), edit).await;
        assert_eq!(changed.body["version"], n + 3);
    }
    let version_2 = app
        .get_as(&format!("/v1/products/{id}/versions/2"), Some(&token))
        .await;
    assert_eq!(version_2.status, StatusCode::OK, "{:?}", version_2.body);
    assert_eq!(
        version_2.body["product"]["skus"][0]["price"]["amount"],
        2500
    );
    assert_eq!(version_2.body["product"]["title"], "Drop tee");

    let rolled = roll_back(&app, &token, &id, Some("\"7\""), json!({"version": 2})).await;
    assert_eq!(rolled.status, StatusCode::OK, "{:?}", rolled.body);
    assert_eq!(rolled.header("etag"), Some("\"8\""));
    let read = app.get_as(&format!("/v1/products/{id}"), None).await;
    assert_eq!(read.body["version"], 8);
    // Exactly as version 2 read.
    assert_eq!(content(&read.body), content(&version_2.body["product"]));

    // The history lists every version, newest first, the rollback included.
    let history = app
        .get_as(&format!("/v1/products/{id}/versions"), Some(&token))
        .await;
    assert_eq!(history.status, StatusCode::OK, "{:?}", history.body);
    assert_eq!(versions_of(&history.body), [8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(history.body["current_version"], 8);
    assert_eq!(history.body["oldest_version"], 1);
    assert_eq!(history.body["next_cursor"], Value::Null);
    let items = history.body["items"].as_array().unwrap();
    let author = format!("user:{}", seller.user_id);
    for item in items {
        assert_eq!(item["author"], author.as_str(), "{item}");
        assert!(item["created_at"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(items[0]["cause"], "rolled_back");
    assert_eq!(items[0]["restored_version"], 2);
    let undone: Vec<&str> = items[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        undone,
        [
            "title",
            "description",
            "brand",
            "attributes",
            "images",
            "skus[HV-2].price",
            "skus[HV-2].compare_at"
        ]
    );
    let second = &items[6];
    assert_eq!(second["cause"], "changed");
    assert_eq!(second["correlation_id"], "req-2");
    assert_eq!(
        second["changes"],
        json!([{
            "field": "skus[HV-1].price",
            "before": {"amount": 1999, "currency": "USD"},
            "after": {"amount": 2500, "currency": "USD"}
        }])
    );
    assert_eq!(items[7]["cause"], "created");
    assert_eq!(items[7]["changes"], json!([]));

    // Pages of three, newest first, each continuing where the last ended.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/products/{id}/versions?limit=3&cursor={c}"),
            None => format!("/v1/products/{id}/versions?limit=3"),
        };
        let page = app.get_as(&path, Some(&token)).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        seen.extend(versions_of(&page.body));
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, [8, 7, 6, 5, 4, 3, 2, 1]);

    // A stale tag, an unknown version and a rollback to the content already
    // current: refused, refused, and no new version.
    let stale = roll_back(&app, &token, &id, Some("\"7\""), json!({"version": 3})).await;
    assert_eq!(stale.code(), "version_mismatch", "{:?}", stale.body);
    assert_eq!(stale.body["current_version"], 8);
    let unknown = roll_back(&app, &token, &id, None, json!({"version": 9})).await;
    assert_eq!(unknown.code(), "version_not_found", "{:?}", unknown.body);
    let same = roll_back(&app, &token, &id, Some("\"8\""), json!({"version": 2})).await;
    assert_eq!(same.status, StatusCode::OK, "{:?}", same.body);
    assert_eq!(same.header("etag"), Some("\"8\""));

    // The rollback is audited with the version it restored.
    let audit = app
        .get_as("/v1/admin/audit?action=product.rollback", Some(&token))
        .await;
    assert_eq!(audit.status, StatusCode::OK, "{:?}", audit.body);
    let entries = audit.body["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{:?}", audit.body);
    assert!(
        entries[0].to_string().contains("restored_version"),
        "{}",
        entries[0]
    );
    app.stop().await;
}

#[actix_web::test]
async fn only_the_newest_versions_are_kept_and_histories_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.retention.product_versions = 3;
    let app = spawn_config(config.clone(), None).await;
    let token = app.seller("keep").await.access_token;
    let created = app.create_product("keep", &["KV-1"]).await;
    let id = created["id"].as_str().unwrap().to_owned();
    for n in 2..=5 {
        patch(&app, &token, &id, "r", json!({"title": format!("v{n}")})).await;
    }
    let history = app
        .get_as(&format!("/v1/products/{id}/versions"), Some(&token))
        .await;
    assert_eq!(versions_of(&history.body), [5, 4, 3]);
    assert_eq!(history.body["oldest_version"], 3);
    assert_eq!(history.body["versions_kept"], 3);
    let forgotten = app
        .get_as(&format!("/v1/products/{id}/versions/2"), Some(&token))
        .await;
    assert_eq!(
        forgotten.code(),
        "version_not_found",
        "{:?}",
        forgotten.body
    );
    assert_eq!(forgotten.body["oldest_version"], 3);
    let too_old = roll_back(&app, &token, &id, None, json!({"version": 1})).await;
    assert_eq!(too_old.code(), "version_not_found", "{:?}", too_old.body);
    let identities = app.identities();
    app.stop().await;

    let app = spawn_config(config, Some(dir)).await;
    app.adopt(identities);
    let history = app
        .get_as(&format!("/v1/products/{id}/versions"), Some(&token))
        .await;
    assert_eq!(versions_of(&history.body), [5, 4, 3]);
    assert_eq!(history.body["items"][0]["changes"][0]["after"], "v5");
    // Rolling back after the restart continues the numbering.
    let rolled = roll_back(&app, &token, &id, Some("\"5\""), json!({"version": 3})).await;
    assert_eq!(rolled.status, StatusCode::OK, "{:?}", rolled.body);
    assert_eq!(rolled.body["title"], "v3");
    let history = app
        .get_as(&format!("/v1/products/{id}/versions"), Some(&token))
        .await;
    assert_eq!(versions_of(&history.body), [6, 5, 4]);
    app.stop().await;
}

#[actix_web::test]
async fn histories_are_for_the_stores_sellers_and_platform_admins_and_bad_requests_change_nothing()
{
    let app = spawn_with_admin().await;
    let created = app.create_product("own", &["OV-1"]).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let owner = app.seller("own").await.access_token;
    patch(&app, &owner, &id, "r", json!({"title": "second"})).await;
    let versions = format!("/v1/products/{id}/versions");
    let one = format!("/v1/products/{id}/versions/1");

    let admin = app.platform_admin().await;
    assert_eq!(
        app.get_as(&versions, Some(&admin)).await.status,
        StatusCode::OK
    );
    assert_eq!(app.get_as(&one, Some(&admin)).await.status, StatusCode::OK);
    let other = app.seller("other").await.access_token;
    assert_eq!(
        app.get_as(&versions, Some(&other)).await.code(),
        "product_not_found"
    );
    assert_eq!(
        app.get_as(&one, Some(&other)).await.code(),
        "product_not_found"
    );
    let buyer = app.buyer("bo").await.access_token;
    assert_eq!(
        app.get_as(&versions, Some(&buyer)).await.code(),
        "forbidden"
    );
    assert_eq!(
        app.get_as(&versions, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Only the owner's sellers roll back.
    for (token, code) in [(&other, "product_not_found"), (&buyer, "forbidden")] {
        let refused = roll_back(&app, token, &id, None, json!({"version": 1})).await;
        assert_eq!(refused.code(), code, "{:?}", refused.body);
    }

    for (path, code) in [
        (format!("{versions}?limit=0"), "validation_failed"),
        (format!("{versions}?limit=101"), "validation_failed"),
        (format!("{versions}?cursor=x"), "validation_failed"),
        (format!("{versions}?what=1"), "validation_failed"),
        (format!("/v1/products/{id}/versions/0"), "version_not_found"),
        (format!("/v1/products/{id}/versions/3"), "version_not_found"),
        (format!("/v1/products/{id}/versions/x"), "version_not_found"),
        ("/v1/products/nope/versions".to_owned(), "product_not_found"),
    ] {
        let refused = app.get_as(&path, Some(&owner)).await;
        assert_eq!(refused.code(), code, "{path}: {:?}", refused.body);
    }
    for (body, tag, field) in [
        (json!({"version": 0}), None, "version"),
        (json!({"version": "1"}), None, "version"),
        (json!({}), None, "version"),
        (json!({"version": 1, "more": true}), None, "more"),
        (json!({"version": 1}), Some("2"), "If-Match"),
    ] {
        let refused = roll_back(&app, &owner, &id, tag, body.clone()).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            refused.body
        );
        assert!(
            refused.body.to_string().contains(field),
            "{body}: {:?}",
            refused.body
        );
    }
    let read = app.get_as(&format!("/v1/products/{id}"), None).await;
    assert_eq!(read.body["version"], 2);
    assert_eq!(read.body["title"], "second");
    app.stop().await;
}
