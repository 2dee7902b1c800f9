//! Stores end to end with tokens only: onboarding, products, stock, a buyer's
//! reservation; settings and platform fields; suspension; plan quotas; staff
//! invitations; follows and creators.

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{bearer, email_for, send, spawn_with_admin, PASSWORD};

#[actix_web::test]
async fn onboarding_product_stock_and_reservation_work_with_tokens_only() {
    let app = spawn_with_admin().await;
    // A seller signs up, opens a store and gets tokens that carry the new role.
    let seller_email = email_for("maker");
    let login = app.sign_up(&seller_email).await;
    assert_eq!(login["account"]["role"], "buyer");
    let token = login["access_token"].as_str().unwrap();
    let store = app
        .post_json(
            "/v1/tenants",
            Some(token),
            json!({
                "name": "Maker Goods",
                "branding": {"logo_url": "https://cdn.example/logo.png", "primary_color": "#112233"},
                "tax": {"prices_include_tax": true, "default_rate_bp": 1900, "tax_id": "DE123"},
                "shipping": {"origin_country": "DE", "ships_to": ["DE", "AT"], "handling_days": 2},
            }),
        )
        .await;
    assert_eq!(store.status, StatusCode::CREATED, "{:?}", store.body);
    assert_eq!(store.body["tenant"]["status"], "active");
    assert_eq!(store.body["tenant"]["plan"]["name"], "starter");
    assert_eq!(
        store.body["tenant"]["shipping"]["ships_to"],
        json!(["DE", "AT"])
    );
    let seller = store.body["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let tenant = store.body["tenant"]["id"].as_str().unwrap().to_owned();
    assert_eq!(store.body["tokens"]["account"]["role"], "seller_admin");
    assert_eq!(
        store.body["tokens"]["account"]["tenant_id"],
        tenant.as_str()
    );
    let again = app
        .post_json("/v1/tenants", Some(&seller), json!({"name": "Second"}))
        .await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "one store per account");

    let product = app
        .post_json(
            "/v1/products",
            Some(&seller),
            json!({"title": "Tee", "skus": [{"sku": "MK-1", "price": {"amount": 2500, "currency": "EUR"}}]}),
        )
        .await;
    assert_eq!(product.status, StatusCode::CREATED, "{:?}", product.body);
    assert_eq!(product.body["tenant_id"], tenant.as_str());
    let stock = send(
        app.client
            .put(app.url("/v1/skus/MK-1/stock"))
            .insert_header(bearer(&seller)),
        Some(json!({"warehouses": {"main": 5}})),
    )
    .await;
    assert_eq!(stock.status, StatusCode::OK, "{:?}", stock.body);

    let buyer = app.buyer("shopper").await;
    let held = app
        .reserve("shopper", "MK-1", json!({"quantity": 2}), Some("k-1"))
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{:?}", held.body);
    let id = held.body["reservation_id"].as_str().unwrap();
    let as_buyer = app
        .get_as(&format!("/v1/reservations/{id}"), Some(&buyer.access_token))
        .await;
    assert_eq!(as_buyer.status, StatusCode::OK);
    let as_seller = app
        .get_as(&format!("/v1/reservations/{id}"), Some(&seller))
        .await;
    assert_eq!(as_seller.status, StatusCode::OK, "the SKU's seller sees it");
    let stranger = app.buyer("stranger").await;
    let as_stranger = app
        .get_as(
            &format!("/v1/reservations/{id}"),
            Some(&stranger.access_token),
        )
        .await;
    assert_eq!(as_stranger.status, StatusCode::NOT_FOUND);
    let by_buyer = send(
        app.client
            .post(app.url(&format!("/v1/reservations/{id}/commit")))
            .insert_header(bearer(&buyer.access_token)),
        None,
    )
    .await;
    assert_eq!(
        by_buyer.status,
        StatusCode::FORBIDDEN,
        "{:?}",
        by_buyer.body
    );
    let committed = send(
        app.client
            .post(app.url(&format!("/v1/reservations/{id}/commit")))
            .insert_header(bearer(&seller)),
        None,
    )
    .await;
    assert_eq!(committed.status, StatusCode::OK, "{:?}", committed.body);
    let stock = app.stock("MK-1").await;
    assert_eq!(
        (stock["available"].as_u64(), stock["sold"].as_u64()),
        (Some(3), Some(2))
    );

    // The seller's audit view tells the story of the store.
    let audit = app.get_as("/v1/admin/audit", Some(&seller)).await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "reservation.commit",
            "stock.set",
            "product.create",
            "session.login",
            "user.role",
            "tenant.create"
        ]
    );
    app.stop().await;
}

#[actix_web::test]
async fn settings_suspension_and_plan_quotas() {
    let app = spawn_with_admin().await;
    app.stocked_sku("shop", "Q-1", 5).await;
    let seller = app.seller("shop").await;
    let tenant = seller.tenant_id.clone().unwrap();
    let path = format!("/v1/tenants/{tenant}");
    let put = |token: String, body: serde_json::Value| {
        let app = &app;
        let path = path.clone();
        async move {
            send(
                app.client.put(app.url(&path)).insert_header(bearer(&token)),
                Some(body),
            )
            .await
        }
    };
    let renamed = put(
        seller.access_token.clone(),
        json!({"name": "Shop 2", "tax": {"default_rate_bp": 700}}),
    )
    .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    assert_eq!(renamed.body["name"], "Shop 2");
    assert_eq!(renamed.body["tax"]["default_rate_bp"], 700);
    for bad in [
        json!({"branding": {"logo_url": "http://insecure.example/x.png"}}),
        json!({"branding": {"primary_color": "red"}}),
        json!({"shipping": {"origin_country": "Germany"}}),
        json!({"tax": {"default_rate_bp": 20000}}),
        json!({"name": ""}),
        // The schema says a name is text: null is refused, not "left as is".
        json!({"name": null}),
        // A settings group is an object, not its fields in a list.
        json!({"branding": [null, null]}),
        json!({"tax": [false, 0]}),
        json!({"status": "closed"}),
    ] {
        let r = put(seller.access_token.clone(), bad.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {:?}",
            r.body
        );
    }
    let self_suspend = put(seller.access_token.clone(), json!({"status": "active"})).await;
    assert_eq!(
        self_suspend.status,
        StatusCode::FORBIDDEN,
        "status is the platform's"
    );
    let self_plan = put(
        seller.access_token.clone(),
        json!({"plan": {"name": "max", "requests_per_minute": 1000000, "max_products": 1000000}}),
    )
    .await;
    assert_eq!(
        self_plan.status,
        StatusCode::FORBIDDEN,
        "plan is the platform's"
    );

    let root = app.platform_admin().await;
    let suspended = put(root.clone(), json!({"status": "suspended"})).await;
    assert_eq!(suspended.status, StatusCode::OK, "{:?}", suspended.body);
    let refused = app
        .reserve("ana", "Q-1", json!({"quantity": 1}), None)
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.code(), "tenant_suspended");
    let creator = app.get_as(&format!("/v1/creators/{tenant}"), None).await;
    assert_eq!(
        creator.status,
        StatusCode::NOT_FOUND,
        "a suspended store is no creator"
    );
    assert_eq!(app.stock("Q-1").await["available"], 5);
    put(root.clone(), json!({"status": "active"})).await;
    let ok = app
        .reserve("ana", "Q-1", json!({"quantity": 1}), None)
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);

    // Product quota: the store has one product; the plan now allows one.
    let plan = put(
        root.clone(),
        json!({"plan": {"name": "tiny", "requests_per_minute": 4, "max_products": 1}}),
    )
    .await;
    assert_eq!(plan.status, StatusCode::OK, "{:?}", plan.body);
    let second = app
        .post_json(
            "/v1/products",
            Some(&seller.access_token),
            json!({"title": "x", "skus": [{"sku": "Q-2", "price": {"amount": 1, "currency": "USD"}}]}),
        )
        .await;
    assert_eq!(second.status, StatusCode::CONFLICT, "{:?}", second.body);
    assert_eq!(second.code(), "quota_exceeded");
    // Requests per minute: 4, of which the product attempt spent 1.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = app.set_stock("shop", "Q-1", json!({"main": 6})).await;
        statuses.push(r.status.as_u16());
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.header("retry-after").is_some());
            assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
        }
    }
    assert_eq!(statuses, vec![200, 200, 200, 429]);
    app.stop().await;
}

#[actix_web::test]
async fn staff_join_by_invitation_and_leave_with_their_sessions() {
    let app = spawn_with_admin().await;
    app.stocked_sku("shop", "ST-1", 5).await;
    let admin = app.seller("shop").await;
    let tenant = admin.tenant_id.clone().unwrap();
    let email = email_for("helper");
    let invite = app
        .post_json(
            &format!("/v1/tenants/{tenant}/staff"),
            Some(&admin.access_token),
            json!({"email": email, "role": "seller_staff"}),
        )
        .await;
    assert_eq!(invite.status, StatusCode::CREATED, "{:?}", invite.body);
    let bad_role = app
        .post_json(
            &format!("/v1/tenants/{tenant}/staff"),
            Some(&admin.access_token),
            json!({"email": email, "role": "platform_admin"}),
        )
        .await;
    assert_eq!(bad_role.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Someone else cannot use it; the invitee can, once.
    let other = app.buyer("other").await;
    let wrong = app
        .post_json(
            "/v1/invitations/accept",
            Some(&other.access_token),
            json!({"token": invite.body["token"]}),
        )
        .await;
    assert_eq!(wrong.code(), "invitation_not_found");
    let helper = app.sign_up(&email).await;
    let helper_token = helper["access_token"].as_str().unwrap();
    let joined = app
        .post_json(
            "/v1/invitations/accept",
            Some(helper_token),
            json!({"token": invite.body["token"]}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{:?}", joined.body);
    assert_eq!(joined.body["role"], "seller_staff");
    let staff_token = joined.body["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let staff_id = joined.body["tokens"]["account"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let twice = app
        .post_json(
            "/v1/invitations/accept",
            Some(helper_token),
            json!({"token": invite.body["token"]}),
        )
        .await;
    assert_eq!(twice.code(), "invitation_not_found");
    let forged = app
        .post_json(
            "/v1/invitations/accept",
            Some(helper_token),
            json!({"token": "inv1.00.0.00"}),
        )
        .await;
    assert_eq!(forged.code(), "invitation_not_found");

    // Staff run the store's stock...
    let stock = send(
        app.client
            .put(app.url("/v1/skus/ST-1/stock"))
            .insert_header(bearer(&staff_token)),
        Some(json!({"warehouses": {"main": 9}})),
    )
    .await;
    assert_eq!(stock.status, StatusCode::OK, "{:?}", stock.body);
    let listed = app
        .get_as(
            &format!("/v1/tenants/{tenant}/staff"),
            Some(&admin.access_token),
        )
        .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);

    // ...until removed: then their tokens stop working at once.
    let admin_id = admin.user_id.clone();
    let last_admin = send(
        app.client
            .delete(app.url(&format!("/v1/tenants/{tenant}/staff/{admin_id}")))
            .insert_header(bearer(&admin.access_token)),
        None,
    )
    .await;
    assert_eq!(last_admin.status, StatusCode::CONFLICT);
    assert_eq!(last_admin.code(), "last_seller_admin");
    let removed = send(
        app.client
            .delete(app.url(&format!("/v1/tenants/{tenant}/staff/{staff_id}")))
            .insert_header(bearer(&admin.access_token)),
        None,
    )
    .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{:?}", removed.body);
    let after = send(
        app.client
            .put(app.url("/v1/skus/ST-1/stock"))
            .insert_header(bearer(&staff_token)),
        Some(json!({"warehouses": {"main": 1}})),
    )
    .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.stock("ST-1").await["available"], 9);
    let unknown = send(
        app.client
            .delete(app.url(&format!("/v1/tenants/{tenant}/staff/{staff_id}")))
            .insert_header(bearer(&admin.access_token)),
        None,
    )
    .await;
    assert_eq!(unknown.code(), "user_not_found");
    app.stop().await;
}

#[actix_web::test]
async fn follows_and_creators() {
    let app = spawn_with_admin().await;
    app.stocked_sku("maker", "CR-1", 4).await;
    app.create_product("maker", &["CR-2"]).await;
    let maker = app.seller("maker").await.tenant_id.unwrap();
    let fan = app.buyer("fan").await;
    let path = format!("/v1/users/{maker}/follow");
    for _ in 0..2 {
        let r = app
            .post_json(&path, Some(&fan.access_token), json!({}))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    }
    let creator = app.get_as(&format!("/v1/creators/{maker}"), None).await;
    assert_eq!(creator.status, StatusCode::OK);
    assert_eq!(creator.body["followers"], 1, "following twice counts once");
    assert_eq!(creator.body["products"], 2);
    assert_eq!(creator.body["name"], "Store maker");
    let me = app.get_as("/v1/auth/me", Some(&fan.access_token)).await;
    assert_eq!(me.body["following"], 1);
    let followers = app.engine.directory().followers(
        flashdrop::domain::TenantId::parse(&maker).unwrap(),
        None,
        10,
    );
    assert_eq!(
        followers,
        vec![flashdrop::domain::UserId::parse(&fan.user_id).unwrap()],
        "kept for drop announcements"
    );

    let products = app
        .get_as(&format!("/v1/creators/{maker}/products?limit=1"), None)
        .await;
    assert_eq!(products.status, StatusCode::OK, "{:?}", products.body);
    assert_eq!(products.body["items"][0]["skus"][0]["sku"], "CR-1");
    assert_eq!(
        products.body["items"][0]["skus"][0]["stock"]["available"],
        4
    );
    let cursor = products.body["next_cursor"].as_str().unwrap();
    let next = app
        .get_as(
            &format!("/v1/creators/{maker}/products?limit=1&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(next.body["items"][0]["skus"][0]["sku"], "CR-2");
    let bad_limit = app
        .get_as(&format!("/v1/creators/{maker}/products?limit=101"), None)
        .await;
    assert_eq!(bad_limit.status, StatusCode::UNPROCESSABLE_ENTITY);

    let unfollow = send(
        app.client
            .delete(app.url(&path))
            .insert_header(bearer(&fan.access_token)),
        None,
    )
    .await;
    assert_eq!(unfollow.status, StatusCode::NO_CONTENT);
    let creator = app.get_as(&format!("/v1/creators/{maker}"), None).await;
    assert_eq!(creator.body["followers"], 0);
    // A buyer is not a creator; nor is garbage.
    let not_creator = app
        .post_json(
            &format!("/v1/users/{}/follow", fan.user_id),
            Some(&fan.access_token),
            json!({}),
        )
        .await;
    assert_eq!(not_creator.code(), "creator_not_found");
    let garbage = app.get_as("/v1/creators/xyz", None).await;
    assert_eq!(garbage.code(), "creator_not_found");
    let anonymous = app.post_json(&path, None, json!({})).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[actix_web::test]
async fn stores_accounts_follows_and_the_audit_log_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::test_config(dir.path());
    crate::helpers::with_admin(&mut config);
    let app = crate::helpers::spawn_config(config.clone(), None).await;
    app.stocked_sku("keeper", "KEEP-1", 3).await;
    let seller = app.seller("keeper").await;
    let tenant = seller.tenant_id.clone().unwrap();
    let renamed = send(
        app.client
            .put(app.url(&format!("/v1/tenants/{tenant}")))
            .insert_header(bearer(&seller.access_token)),
        Some(json!({"name": "Keeper & Co", "shipping": {"ships_to": ["FR"]}})),
    )
    .await;
    assert_eq!(renamed.status, StatusCode::OK);
    let fan = app.buyer("fan").await;
    app.post_json(
        &format!("/v1/users/{tenant}/follow"),
        Some(&fan.access_token),
        json!({}),
    )
    .await;
    let before = app
        .get_as("/v1/admin/audit?limit=100", Some(&seller.access_token))
        .await;
    let accounts = app.identities();
    app.stop().await;

    let app = crate::helpers::spawn_config(config, Some(dir)).await;
    app.adopt(accounts);
    // Tokens issued before the restart still work; the store kept its settings.
    let store = app
        .get_as(&format!("/v1/tenants/{tenant}"), Some(&seller.access_token))
        .await;
    assert_eq!(store.status, StatusCode::OK, "{:?}", store.body);
    assert_eq!(store.body["name"], "Keeper & Co");
    assert_eq!(store.body["shipping"]["ships_to"], json!(["FR"]));
    let creator = app.get_as(&format!("/v1/creators/{tenant}"), None).await;
    assert_eq!(creator.body["followers"], 1);
    assert_eq!(creator.body["products"], 1);
    let after = app
        .get_as("/v1/admin/audit?limit=100", Some(&seller.access_token))
        .await;
    assert_eq!(
        after.body["items"], before.body["items"],
        "the audit log is unchanged"
    );
    // New lines continue the sequence.
    app.set_stock("keeper", "KEEP-1", json!({"main": 4})).await;
    let newest = app
        .get_as("/v1/admin/audit?limit=1", Some(&seller.access_token))
        .await;
    let newest_seq = newest.body["items"][0]["seq"].as_u64().unwrap();
    let old_max = before.body["items"][0]["seq"].as_u64().unwrap();
    assert!(newest_seq > old_max, "{newest_seq} after {old_max}");
    let relogin = app
        .post_json(
            "/v1/auth/login",
            None,
            json!({"email": seller.email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(relogin.status, StatusCode::OK);
    assert_eq!(relogin.body["account"]["role"], "seller_admin");
    // One bootstrap admin, not re-created: its login still works.
    app.platform_admin().await;
    app.stop().await;
}
