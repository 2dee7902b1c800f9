//! Browsing `GET /v1/products`: each caller sees only what it may (shoppers
//! active products of active stores, sellers their own drafts too), a
//! category takes its descendants as the tree is now, filters and orders
//! agree with the products, and pages neither repeat nor skip while
//! products are added.

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{bearer, send, spawn_config, test_config, with_admin, TestApp};

/// Creates a product in the store of `seller`; answers its id.
async fn product(app: &TestApp, seller: &str, body: Value) -> String {
    let created = send(
        app.client
            .post(app.url("/v1/products"))
            .insert_header(bearer(seller)),
        Some(body),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    created.body["id"].as_str().unwrap().to_owned()
}

fn priced(sku: &str, title: &str, amount: i64) -> Value {
    json!({"title": title, "skus": [{"sku": sku, "price": {"amount": amount, "currency": "EUR"}}]})
}

/// Titles of one page of `query` as `token` sees it, and the next cursor.
async fn page(app: &TestApp, token: Option<&str>, query: &str) -> (Vec<String>, Option<String>) {
    let answer = app.get_as(&format!("/v1/products?{query}"), token).await;
    assert_eq!(answer.status, StatusCode::OK, "{query}: {:?}", answer.body);
    let titles = answer.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap().to_owned())
        .collect();
    (
        titles,
        answer.body["next_cursor"].as_str().map(str::to_owned),
    )
}

/// Every title `query` lists for `token`, following cursors.
async fn all(app: &TestApp, token: Option<&str>, query: &str) -> Vec<String> {
    let mut titles = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_owned(),
        };
        let (page_titles, next) = page(app, token, &q).await;
        titles.extend(page_titles);
        match next {
            Some(next) => cursor = Some(next),
            None => return titles,
        }
    }
}

fn sorted(mut titles: Vec<String>) -> Vec<String> {
    titles.sort();
    titles
}

fn names(titles: &[&str]) -> Vec<String> {
    titles.iter().map(|t| (*t).to_owned()).collect()
}

#[actix_web::test]
async fn each_caller_browses_only_what_it_may_see() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_admin(&mut config);
    let app = spawn_config(config, None).await;
    let admin = app.platform_admin().await;
    let ana = app.seller("ana").await;
    let bob = app.seller("bob").await;
    let cy = app.seller("cy").await;
    product(&app, &ana.access_token, priced("A-1", "ana live", 100)).await;
    let mut draft = priced("A-2", "ana draft", 100);
    draft["status"] = json!("draft");
    product(&app, &ana.access_token, draft).await;
    let archived = product(&app, &ana.access_token, priced("A-3", "ana archived", 100)).await;
    let archiving = send(
        app.client
            .post(app.url(&format!("/v1/products/{archived}/archive")))
            .insert_header(bearer(&ana.access_token)),
        None,
    )
    .await;
    assert_eq!(archiving.status, StatusCode::OK, "{:?}", archiving.body);
    product(&app, &bob.access_token, priced("B-1", "bob live", 100)).await;
    product(&app, &cy.access_token, priced("C-1", "cy live", 100)).await;
    let cy_store = cy.tenant_id.clone().unwrap();
    let suspended = send(
        app.client
            .put(app.url(&format!("/v1/tenants/{cy_store}")))
            .insert_header(bearer(&admin)),
        Some(json!({"status": "suspended"})),
    )
    .await;
    assert_eq!(suspended.status, StatusCode::OK, "{:?}", suspended.body);
    let shopper = app.buyer("sam").await.access_token;

    for token in [
        None,
        Some(shopper.as_str()),
        Some(bob.access_token.as_str()),
    ] {
        assert_eq!(
            sorted(all(&app, token, "limit=2").await),
            names(&["ana live", "bob live"]),
            "shoppers and other stores see active products of active stores"
        );
    }
    assert_eq!(
        sorted(all(&app, Some(&ana.access_token), "limit=2").await),
        names(&["ana archived", "ana draft", "ana live", "bob live"]),
        "a seller sees its own drafts and archived products too"
    );
    assert_eq!(
        all(&app, Some(&cy.access_token), "status=active").await,
        names(&["cy live", "bob live", "ana live"]),
        "a suspended store's sellers still see their products"
    );
    assert_eq!(
        sorted(all(&app, Some(&admin), "").await),
        names(&[
            "ana archived",
            "ana draft",
            "ana live",
            "bob live",
            "cy live"
        ]),
        "a platform admin sees everything"
    );
    let ana_store = ana.tenant_id.clone().unwrap();
    assert_eq!(
        all(
            &app,
            Some(&ana.access_token),
            &format!("store={ana_store}&status=draft")
        )
        .await,
        names(&["ana draft"])
    );
    assert!(
        all(&app, None, &format!("store={ana_store}&status=draft"))
            .await
            .is_empty(),
        "asking for drafts shows nobody else's"
    );
    assert!(all(&app, None, &format!("store={cy_store}"))
        .await
        .is_empty());
}

#[actix_web::test]
async fn filters_and_orders_follow_categories_prices_stock_and_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_admin(&mut config);
    let app = spawn_config(config.clone(), None).await;
    let admin = app.platform_admin().await;
    let category = |name: &'static str, parent: Option<String>| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let created = app
                .post_json(
                    "/v1/categories",
                    Some(&admin),
                    json!({"name": name, "parent_id": parent}),
                )
                .await;
            assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
            created.body["id"].as_str().unwrap().to_owned()
        }
    };
    let apparel = category("Apparel", None).await;
    let tops = category("Tops", Some(apparel.clone())).await;
    let tees = category("Tees", Some(tops.clone())).await;
    let shoes = category("Shoes", None).await;
    let seller = app.seller("filters").await.access_token;
    let filed = |sku: &str, title: &str, amount: i64, category: &str, colour: &str| {
        json!({"title": title, "category": category, "attributes": {"material": "cotton"},
               "skus": [{"sku": sku, "price": {"amount": amount, "currency": "EUR"}, "attributes": {"colour": colour}}]})
    };
    product(&app, &seller, filed("F-1", "Basic tee", 1500, &tees, "red")).await;
    let hoodie = product(&app, &seller, filed("F-2", "Hoodie", 4500, &tops, "blue")).await;
    product(&app, &seller, filed("F-3", "Runner", 9000, &shoes, "Red")).await;
    product(&app, &seller, filed("F-4", "Loafer", 7000, &shoes, "black")).await;

    assert_eq!(
        all(&app, None, &format!("category={apparel}&sort=price")).await,
        names(&["Basic tee", "Hoodie"]),
        "a category takes its descendants"
    );
    assert_eq!(
        all(
            &app,
            None,
            &format!("category={shoes}&min_price=7000&max_price=8000")
        )
        .await,
        names(&["Loafer"])
    );
    assert_eq!(
        all(&app, None, "sort=-price&limit=3").await,
        names(&["Runner", "Loafer", "Hoodie", "Basic tee"])
    );
    assert_eq!(
        all(&app, None, "sort=title&limit=1").await,
        names(&["Basic tee", "Hoodie", "Loafer", "Runner"])
    );
    assert_eq!(
        sorted(all(&app, None, "attr.colour=red&attr.MATERIAL=Cotton").await),
        names(&["Basic tee", "Runner"])
    );
    assert!(all(&app, None, "currency=USD").await.is_empty());

    // Stock: a SKU with units available is in stock once its change is durable.
    assert!(all(&app, None, "in_stock=true").await.is_empty());
    let stocked = app.set_stock("filters", "F-4", json!({"main": 3})).await;
    assert_eq!(stocked.status, StatusCode::OK, "{:?}", stocked.body);
    assert_eq!(all(&app, None, "in_stock=true").await, names(&["Loafer"]));
    assert_eq!(all(&app, None, "in_stock=false").await.len(), 3);
    let listed = app.get_as("/v1/products?in_stock=true", None).await;
    assert_eq!(listed.body["items"][0]["in_stock"], true);
    assert_eq!(listed.body["items"][0]["price"]["amount"], 7000);

    // Moving a subtree moves what browsing finds, at once.
    let moved = send(
        app.client
            .patch(app.url(&format!("/v1/categories/{tees}")))
            .insert_header(bearer(&admin)),
        Some(json!({"parent_id": shoes})),
    )
    .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    assert_eq!(
        all(&app, None, &format!("category={apparel}")).await,
        names(&["Hoodie"])
    );
    assert_eq!(
        all(&app, None, &format!("category={shoes}&sort=price")).await,
        names(&["Basic tee", "Loafer", "Runner"])
    );

    // A price change moves the product in the price order at once.
    let repriced = send(
        app.client
            .patch(app.url(&format!("/v1/products/{hoodie}")))
            .insert_header(bearer(&seller)),
        Some(json!({"skus": [{"sku": "F-2", "price": {"amount": 100, "currency": "EUR"}}]})),
    )
    .await;
    assert_eq!(repriced.status, StatusCode::OK, "{:?}", repriced.body);
    assert_eq!(all(&app, None, "sort=price&limit=1").await[0], "Hoodie");
    assert_eq!(
        all(&app, None, &format!("category={tops}&max_price=100")).await,
        names(&["Hoodie"])
    );

    // Every unit held: out of stock once the hold is durable, and after a restart.
    let held = app
        .reserve("shopper", "F-4", json!({"quantity": 3}), None)
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{:?}", held.body);
    assert!(all(&app, None, "in_stock=true").await.is_empty());
    let identities = app.identities();
    app.stop().await;
    let app = spawn_config(config, Some(dir)).await;
    app.adopt(identities);
    assert!(all(&app, None, "in_stock=true").await.is_empty());
    assert_eq!(all(&app, None, "in_stock=false").await.len(), 4);
    assert_eq!(
        all(&app, None, &format!("category={shoes}&sort=price")).await,
        names(&["Basic tee", "Loafer", "Runner"]),
        "the index is rebuilt from the recovered catalog"
    );
    let restocked = app.set_stock("filters", "F-4", json!({"main": 5})).await;
    assert_eq!(restocked.status, StatusCode::OK, "{:?}", restocked.body);
    assert_eq!(all(&app, None, "in_stock=true").await, names(&["Loafer"]));
    app.stop().await;
}

#[actix_web::test]
async fn pages_neither_repeat_nor_skip_while_products_are_added() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_config(test_config(dir.path()), None).await;
    let seller = app.seller("pages").await.access_token;
    for n in 0..12 {
        product(
            &app,
            &seller,
            priced(&format!("P-{n}"), &format!("old {n:02}"), 100 * (n % 4)),
        )
        .await;
    }
    for sort in ["newest", "price", "-price", "title"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut added = 0;
        loop {
            let q = match &cursor {
                Some(c) => format!("sort={sort}&limit=5&cursor={c}"),
                None => format!("sort={sort}&limit=5"),
            };
            let (titles, next) = page(&app, None, &q).await;
            seen.extend(titles);
            // Products at the cheapest, the dearest and a middle price arrive between pages.
            for amount in [0, 150, 10_000] {
                product(
                    &app,
                    &seller,
                    priced(
                        &format!("N-{sort}-{added}"),
                        &format!("new {sort} {added:02}"),
                        amount,
                    ),
                )
                .await;
                added += 1;
            }
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let old: Vec<&String> = seen.iter().filter(|t| t.starts_with("old")).collect();
        assert_eq!(
            old.len(),
            12,
            "{sort}: every product there at the start, once: {seen:?}"
        );
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "{sort}: no product twice");
    }
}

#[actix_web::test]
async fn bad_questions_are_refused_by_parameter_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_config(test_config(dir.path()), None).await;
    let seller = app.seller("bad").await.access_token;
    product(&app, &seller, priced("BQ-1", "only", 100)).await;
    let newest_cursor = {
        let (_, next) = page(&app, None, "limit=1").await;
        next.unwrap()
    };
    for (query, field) in [
        ("colour=red", "colour"),
        ("limit=0", "limit"),
        ("sort=rating", "sort"),
        ("min_price=9&max_price=1", "min_price"),
        ("category=77", "category"),
        ("store=0190a1b2-0000-7000-8000-00000000000c", "store"),
        ("store=nope", "store"),
        ("limit=1&limit=2", "limit"),
        (&format!("sort=title&cursor={newest_cursor}"), "cursor"),
    ] {
        let refused = app.get_as(&format!("/v1/products?{query}"), None).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {:?}",
            refused.body
        );
        assert_eq!(refused.body["errors"][0]["field"], field, "{query}");
    }
    assert_eq!(all(&app, None, "").await, names(&["only"]));
}
