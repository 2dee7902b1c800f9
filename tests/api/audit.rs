//! Every state-changing route leaves an audit line: the test takes the list of
//! routes from the served OpenAPI document, calls each one, and finds the line
//! with the right action, actor, target and correlation id. The reservation
//! routes (the flash-sale data plane) are journaled by their own WAL record,
//! which names the buyer and the time; the test checks that record instead.

use crate::helpers::eventually;
use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    bearer, email_for, send, send_raw, spawn_with, spawn_with_admin, with_admin, Response, TestApp,
    ADMIN_EMAIL, PASSWORD,
};

/// The routes the OpenAPI document lists with a state-changing verb.
async fn state_changing_routes(app: &TestApp) -> BTreeSet<String> {
    let spec = send(app.client.get(app.url("/openapi.json")), None).await;
    let mut routes = BTreeSet::new();
    for (path, item) in spec.body["paths"].as_object().unwrap() {
        for method in ["post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                routes.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    routes
}

struct Walk<'a> {
    app: &'a TestApp,
    root: String,
    walked: BTreeSet<String>,
    step: u32,
}

impl Walk<'_> {
    /// Calls `route` (with `path` filled in) and checks the newest audit lines
    /// hold `action` by `actor` on a target starting with `target`.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &mut self,
        route: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        action: &str,
        actor: Option<&str>,
        target: &str,
    ) -> Response {
        let (correlation, request) = self.request(route, path, token);
        let response = send(request, body).await;
        self.audited(route, &correlation, response, action, actor, target)
            .await
    }

    /// As `call`, with a body that is not JSON.
    #[allow(clippy::too_many_arguments)]
    async fn call_raw(
        &mut self,
        route: &str,
        path: &str,
        token: Option<&str>,
        content: (&str, String),
        action: &str,
        actor: Option<&str>,
        target: &str,
    ) -> Response {
        let (correlation, request) = self.request(route, path, token);
        let response = send_raw(request, content.0, content.1).await;
        self.audited(route, &correlation, response, action, actor, target)
            .await
    }

    fn request(
        &mut self,
        route: &str,
        path: &str,
        token: Option<&str>,
    ) -> (String, awc::ClientRequest) {
        self.step += 1;
        let correlation = format!("audit-walk-{}", self.step);
        let (method, _) = route.split_once(' ').unwrap();
        let url = self.app.url(path);
        let mut request = match method {
            "PUT" => self.app.client.put(url),
            "DELETE" => self.app.client.delete(url),
            "PATCH" => self.app.client.patch(url),
            _ => self.app.client.post(url),
        }
        .insert_header(("x-correlation-id", correlation.as_str()));
        if let Some(token) = token {
            request = request.insert_header(bearer(token));
        }
        (correlation, request)
    }

    async fn audited(
        &mut self,
        route: &str,
        correlation: &str,
        response: Response,
        action: &str,
        actor: Option<&str>,
        target: &str,
    ) -> Response {
        assert!(
            response.status.is_success(),
            "{route}: {} {:?}",
            response.status,
            response.body
        );
        let audit = send(
            self.app
                .client
                .get(
                    self.app
                        .url(&format!("/v1/admin/audit?action={action}&limit=100")),
                )
                .insert_header(bearer(&self.root)),
            None,
        )
        .await;
        let line = audit.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["correlation_id"] == correlation)
            .unwrap_or_else(|| panic!("{route}: no {action} line; {:?}", audit.body))
            .clone();
        assert_eq!(line["action"], action, "{route}");
        assert!(
            line["target"].as_str().unwrap().starts_with(target),
            "{route}: target {}",
            line["target"]
        );
        match actor {
            Some(user) => assert_eq!(line["actor"]["user_id"], user, "{route}: who"),
            None => assert!(line["actor"].is_null(), "{route}: anonymous"),
        }
        assert!(line["at"].as_str().unwrap().ends_with('Z'), "{route}: when");
        self.walked.insert(route.to_owned());
        response
    }
}

#[actix_web::test]
async fn every_state_changing_route_leaves_an_audit_entry() {
    let app = spawn_with(|c| {
        with_admin(c);
        // The walk's store webhook points nowhere (a loopback port the
        // allow-list admits): its first failure is a dead letter.
        c.notifications.max_attempts = 1;
        c.outbound.allowed_networks = vec!["127.0.0.1/32".into()];
    })
    .await;
    let root_login = app
        .post_json(
            "/v1/auth/login",
            None,
            json!({"email": ADMIN_EMAIL, "password": PASSWORD}),
        )
        .await;
    let mut walk = Walk {
        app: &app,
        root: root_login.body["access_token"].as_str().unwrap().to_owned(),
        walked: BTreeSet::new(),
        step: 0,
    };

    // Accounts and sessions.
    let email = email_for("walker");
    let credentials = json!({"email": email, "password": PASSWORD});
    walk.call(
        "POST /v1/auth/register",
        "/v1/auth/register",
        None,
        Some(credentials.clone()),
        "user.register",
        None,
        "user:",
    )
    .await;
    let login = app
        .post_json("/v1/auth/login", None, credentials.clone())
        .await;
    let user = login.body["account"]["id"].as_str().unwrap().to_owned();
    let login = walk
        .call(
            "POST /v1/auth/login",
            "/v1/auth/login",
            None,
            Some(credentials.clone()),
            "session.login",
            Some(&user),
            "session:",
        )
        .await;
    let refresh = json!({"refresh_token": login.body["refresh_token"]});
    let refreshed = walk
        .call(
            "POST /v1/auth/refresh",
            "/v1/auth/refresh",
            None,
            Some(refresh),
            "session.refresh",
            Some(&user),
            "session:",
        )
        .await;
    let token = refreshed.body["access_token"].as_str().unwrap().to_owned();

    // A store, its settings, products and stock.
    let store = walk
        .call(
            "POST /v1/tenants",
            "/v1/tenants",
            Some(&token),
            Some(json!({"name": "Walk shop"})),
            "tenant.create",
            Some(&user),
            "tenant:",
        )
        .await;
    let tenant = store.body["tenant"]["id"].as_str().unwrap().to_owned();
    let seller = store.body["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let updated = walk
        .call(
            "PUT /v1/tenants/{id}",
            &format!("/v1/tenants/{tenant}"),
            Some(&seller),
            Some(json!({"name": "Walk shop 2", "webhook_url": "http://127.0.0.1:9/refused"})),
            "tenant.update",
            Some(&user),
            "tenant:",
        )
        .await;
    assert_eq!(updated.body["name"], "Walk shop 2");
    let product = walk
        .call(
            "POST /v1/products",
            "/v1/products",
            Some(&seller),
            Some(json!({"title": "Walk tee", "skus": [{"sku": "WALK-1", "price": {"amount": 900, "currency": "USD"}}]})),
            "product.create",
            Some(&user),
            "product:",
        )
        .await;
    let product = product.body["id"].as_str().unwrap().to_owned();
    let walk_product = product.clone();
    walk.call(
        "PATCH /v1/products/{id}",
        &format!("/v1/products/{product}"),
        Some(&seller),
        Some(json!({"title": "Walk tee, second run"})),
        "product.update",
        Some(&user),
        &format!("product:{product}"),
    )
    .await;
    walk.call(
        "POST /v1/products/{id}/rollback",
        &format!("/v1/products/{product}/rollback"),
        Some(&seller),
        Some(json!({"version": 1})),
        "product.rollback",
        Some(&user),
        &format!("product:{product}"),
    )
    .await;
    walk.call(
        "POST /v1/products/{id}/variants",
        &format!("/v1/products/{product}/variants"),
        Some(&seller),
        Some(json!({"sku": "WALK-2", "price": {"amount": 900, "currency": "USD"}})),
        "product.variant.add",
        Some(&user),
        &format!("product:{product}"),
    )
    .await;
    walk.call(
        "DELETE /v1/products/{id}/variants/{sku}",
        &format!("/v1/products/{product}/variants/WALK-2"),
        Some(&seller),
        None,
        "product.variant.remove",
        Some(&user),
        &format!("product:{product}"),
    )
    .await;
    walk.call(
        "PUT /v1/products/{id}",
        &format!("/v1/products/{product}"),
        Some(&seller),
        Some(json!({"title": "Walk tee, replaced", "skus": [{"sku": "WALK-1", "price": {"amount": 900, "currency": "USD"}}]})),
        "product.replace",
        Some(&user),
        &format!("product:{product}"),
    )
    .await;
    walk.call(
        "PUT /v1/skus/{sku}/stock",
        "/v1/skus/WALK-1/stock",
        Some(&seller),
        Some(json!({"warehouses": {"main": 10}})),
        "stock.set",
        Some(&user),
        "sku:WALK-1",
    )
    .await;
    walk.call(
        "POST /v1/skus/{sku}/stock/adjust",
        "/v1/skus/WALK-1/stock/adjust",
        Some(&seller),
        Some(json!({"warehouse": "main", "delta": -1, "reason": "count"})),
        "stock.adjust",
        Some(&user),
        "sku:WALK-1",
    )
    .await;
    // Stock lines carry the counts before and after.
    let stock_lines = send(
        app.client
            .get(app.url("/v1/admin/audit?target=sku:WALK-1"))
            .insert_header(bearer(&seller)),
        None,
    )
    .await;
    let adjust = &stock_lines.body["items"][0];
    assert_eq!(adjust["before"]["available"], 10);
    assert_eq!(adjust["after"]["available"], 9);

    // Staff.
    let staff_email = email_for("walk-staff");
    let invite = walk
        .call(
            "POST /v1/tenants/{id}/staff",
            &format!("/v1/tenants/{tenant}/staff"),
            Some(&seller),
            Some(json!({"email": staff_email, "role": "seller_staff"})),
            "staff.invite",
            Some(&user),
            "invitation:",
        )
        .await;
    let staff_login = app.sign_up(&staff_email).await;
    let staff_user = staff_login["account"]["id"].as_str().unwrap().to_owned();
    walk.call(
        "POST /v1/invitations/accept",
        "/v1/invitations/accept",
        staff_login["access_token"].as_str(),
        Some(json!({"token": invite.body["token"]})),
        "staff.join",
        Some(&staff_user),
        "user:",
    )
    .await;
    walk.call(
        "DELETE /v1/tenants/{id}/staff/{user_id}",
        &format!("/v1/tenants/{tenant}/staff/{staff_user}"),
        Some(&seller),
        None,
        "staff.remove",
        Some(&user),
        &format!("user:{staff_user}"),
    )
    .await;

    // Follows, by a buyer.
    let fan = app.buyer("walk-fan").await;
    let follow = format!("/v1/users/{tenant}/follow");
    walk.call(
        "POST /v1/users/{id}/follow",
        &follow,
        Some(&fan.access_token),
        None,
        "follow.create",
        Some(&fan.user_id),
        "creator:",
    )
    .await;
    walk.call(
        "DELETE /v1/users/{id}/follow",
        &follow,
        Some(&fan.access_token),
        None,
        "follow.delete",
        Some(&fan.user_id),
        "creator:",
    )
    .await;

    // The data plane: each reservation's own durable record says who and when.
    let held = app
        .reserve("walk-fan", "WALK-1", json!({"quantity": 1}), None)
        .await;
    assert_eq!(held.status, StatusCode::CREATED);
    assert_eq!(held.body["buyer_id"], fan.user_id.as_str());
    let second = app
        .reserve("walk-fan", "WALK-1", json!({"quantity": 1}), None)
        .await;
    for (route, id, verb, state) in [
        (
            "DELETE /v1/reservations/{id}",
            held.body["reservation_id"].as_str().unwrap(),
            "DELETE",
            "released",
        ),
        (
            "POST /v1/reservations/{id}/commit",
            second.body["reservation_id"].as_str().unwrap(),
            "POST",
            "committed",
        ),
    ] {
        let path = if verb == "DELETE" {
            format!("/v1/reservations/{id}")
        } else {
            format!("/v1/reservations/{id}/commit")
        };
        let request = if verb == "DELETE" {
            app.client.delete(app.url(&path))
        } else {
            app.client.post(app.url(&path))
        };
        // The buyer releases its own hold; a seller sells one at the till (audited).
        let actor = if verb == "DELETE" {
            &fan.access_token
        } else {
            &seller
        };
        let done = send(request.insert_header(bearer(actor)), None).await;
        assert!(done.status.is_success(), "{route}");
        if verb == "POST" {
            let audit = app
                .get_as("/v1/admin/audit?action=reservation.commit", Some(&seller))
                .await;
            assert_eq!(
                audit.body["items"][0]["target"],
                format!("reservation:{id}")
            );
        }
        let record = app
            .get_as(&format!("/v1/reservations/{id}"), Some(&seller))
            .await;
        assert_eq!(record.body["state"], state, "{route}");
        assert_eq!(
            record.body["buyer_id"],
            fan.user_id.as_str(),
            "{route}: who"
        );
        assert!(record.body["created_at"].as_str().unwrap().ends_with('Z'));
        walk.walked.insert(route.to_owned());
    }
    walk.walked
        .insert("POST /v1/skus/{sku}/reservations".to_owned());

    // Drops.
    let product = app
        .post_json(
            "/v1/products",
            Some(&seller),
            json!({"title": "Walk drop", "skus": [{"sku": "WALK-D", "price": {"amount": 900, "currency": "USD"}}]}),
        )
        .await;
    assert_eq!(product.status, StatusCode::CREATED);
    let now = app.engine.clock().now_ms();
    let drop = walk
        .call(
            "POST /v1/drops",
            "/v1/drops",
            Some(&seller),
            Some(json!({"title": "Walk drop", "skus": ["WALK-D"],
                        "starts_at": flashdrop::clock::rfc3339_ms(now + 60_000),
                        "ends_at": flashdrop::clock::rfc3339_ms(now + 120_000),
                        "waiting_room": {"admit_per_s": 10}})),
            "drop.create",
            Some(&user),
            "drop:",
        )
        .await;
    let drop_id = drop.body["id"].as_str().unwrap().to_owned();
    // A waiting-room ticket lives in memory only and changes no durable state:
    // like a reservation, it is data plane, not an audited change.
    let ticket = app
        .post_json(
            &format!("/v1/drops/{drop_id}/queue"),
            Some(&fan.access_token),
            json!({}),
        )
        .await;
    assert_eq!(ticket.body["state"], "waiting");
    walk.walked.insert("POST /v1/drops/{id}/queue".to_owned());
    let edited = walk
        .call(
            "PATCH /v1/drops/{id}",
            &format!("/v1/drops/{drop_id}"),
            Some(&seller),
            Some(json!({"title": "Walk drop, later", "after_drop": "sell",
                        "ends_at": flashdrop::clock::rfc3339_ms(now + 180_000)})),
            "drop.update",
            Some(&user),
            &format!("drop:{drop_id}"),
        )
        .await;
    assert_eq!(edited.body["edits"], 1, "{:?}", edited.body);
    walk.call(
        "POST /v1/drops/{id}/cancel",
        &format!("/v1/drops/{drop_id}/cancel"),
        Some(&seller),
        None,
        "drop.cancel",
        Some(&user),
        &format!("drop:{drop_id}"),
    )
    .await;

    // Orders. Placing one is data plane, like a reservation: the order's own
    // durable record names the buyer and the time (checked here), and so is a
    // payment webhook (the provider is no account; the order records what changed).
    let place = |method: &'static str| {
        let token = fan.access_token.clone();
        let app = &app;
        async move {
            send(
                app.client
                    .post(app.url("/v1/orders"))
                    .insert_header(bearer(&token))
                    .insert_header(("prefer", "wait=5")),
                Some(json!({"items": [{"sku": "WALK-1", "quantity": 1}], "shipping_address": "1 Walk Way", "payment_method": method})),
            )
            .await
        }
    };
    let order = place("pm_card_declined").await;
    assert_eq!(order.status, StatusCode::ACCEPTED, "{:?}", order.body);
    assert_eq!(order.body["buyer_id"], fan.user_id.as_str(), "who");
    assert!(
        order.body["created_at"].as_str().unwrap().ends_with('Z'),
        "when"
    );
    walk.walked.insert("POST /v1/orders".to_owned());
    walk.walked.insert("POST /v1/payments/webhook".to_owned());
    let order_id = order.body["order_id"].as_str().unwrap().to_owned();
    walk.call(
        "POST /v1/orders/{id}/pay",
        &format!("/v1/orders/{order_id}/pay"),
        Some(&fan.access_token),
        Some(json!({"payment_method": "pm_card_visa"})),
        "order.pay",
        Some(&fan.user_id),
        &format!("order:{order_id}"),
    )
    .await;
    let paid = eventually(std::time::Duration::from_secs(10), || async {
        let o = app
            .get_as(&format!("/v1/orders/{order_id}"), Some(&fan.access_token))
            .await;
        (o.body["state"] == "paid").then_some(())
    })
    .await;
    assert!(paid.is_some());
    walk.call(
        "POST /v1/orders/{id}/fulfillment",
        &format!("/v1/orders/{order_id}/fulfillment"),
        Some(&seller),
        Some(json!({"state": "packed"})),
        "order.fulfillment",
        Some(&user),
        &format!("order:{order_id}"),
    )
    .await;
    for state in ["shipped", "delivered"] {
        let moved = app
            .post_json(
                &format!("/v1/orders/{order_id}/fulfillment"),
                Some(&seller),
                json!({"state": state}),
            )
            .await;
        assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    }
    walk.call(
        "POST /v1/orders/{id}/returns",
        &format!("/v1/orders/{order_id}/returns"),
        Some(&fan.access_token),
        Some(json!({"reason": "too small"})),
        "order.return_requested",
        Some(&fan.user_id),
        &format!("order:{order_id}"),
    )
    .await;
    let unpaid = place("pm_card_declined").await;
    let unpaid_id = unpaid.body["order_id"].as_str().unwrap().to_owned();
    walk.call(
        "POST /v1/orders/{id}/cancel",
        &format!("/v1/orders/{unpaid_id}/cancel"),
        Some(&fan.access_token),
        None,
        "order.cancel",
        Some(&fan.user_id),
        &format!("order:{unpaid_id}"),
    )
    .await;

    // Carts are data plane too: each change is the cart's own durable record
    // (checked through GET /v1/cart), and checkout is the order's.
    let cart_path = |p: &str| app.url(p);
    let added = send(
        app.client
            .post(cart_path("/v1/cart/items"))
            .insert_header(bearer(&fan.access_token)),
        Some(json!({"sku": "WALK-1", "quantity": 2})),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    let set = send(
        app.client
            .put(cart_path("/v1/cart/items/WALK-1"))
            .insert_header(bearer(&fan.access_token)),
        Some(json!({"quantity": 1})),
    )
    .await;
    assert_eq!(set.body["items"][0]["quantity"], 1);
    let removed = send(
        app.client
            .delete(cart_path("/v1/cart/items/WALK-1"))
            .insert_header(bearer(&fan.access_token)),
        None,
    )
    .await;
    assert_eq!(removed.body["items"], json!([]));
    send(
        app.client
            .post(cart_path("/v1/cart/items"))
            .insert_header(bearer(&fan.access_token)),
        Some(json!({"sku": "WALK-1", "quantity": 1})),
    )
    .await;
    let checked_out = send(
        app.client
            .post(cart_path("/v1/cart/checkout"))
            .insert_header(bearer(&fan.access_token)),
        Some(json!({"shipping_address": "1 Walk Way", "payment_method": "pm_card_visa"})),
    )
    .await;
    assert_eq!(
        checked_out.status,
        StatusCode::ACCEPTED,
        "{:?}",
        checked_out.body
    );
    assert_eq!(checked_out.body["buyer_id"], fan.user_id.as_str(), "who");
    for route in [
        "POST /v1/cart/items",
        "PUT /v1/cart/items/{sku}",
        "DELETE /v1/cart/items/{sku}",
        "POST /v1/cart/checkout",
    ] {
        walk.walked.insert(route.to_owned());
    }

    // A notification that failed: an operator sends it again.
    let dead = eventually(std::time::Duration::from_secs(10), || async {
        let list = app
            .get_as("/v1/admin/notifications/dead-letters", Some(&walk.root))
            .await;
        list.body["items"][0]["id"].as_str().map(str::to_owned)
    })
    .await
    .expect("a dead letter");
    let root_id = root_login.body["account"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    walk.call(
        "POST /v1/admin/notifications/dead-letters/{id}/retry",
        &format!("/v1/admin/notifications/dead-letters/{dead}/retry"),
        Some(&walk.root.clone()),
        None,
        "notification.retry",
        Some(&root_id),
        &format!("notification:{dead}"),
    )
    .await;

    // Operations.
    let root = walk.root.clone();
    let root_user = root_login.body["account"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = walk
        .call(
            "POST /v1/categories",
            "/v1/categories",
            Some(&root),
            Some(json!({"name": "Walk category"})),
            "category.create",
            Some(&root_user),
            "category:",
        )
        .await;
    let category = created.body["id"].as_str().unwrap().to_owned();
    walk.call(
        "PATCH /v1/categories/{id}",
        &format!("/v1/categories/{category}"),
        Some(&root),
        Some(json!({"name": "Walk category, renamed"})),
        "category.update",
        Some(&root_user),
        &format!("category:{category}"),
    )
    .await;
    walk.call(
        "DELETE /v1/categories/{id}",
        &format!("/v1/categories/{category}"),
        Some(&root),
        None,
        "category.delete",
        Some(&root_user),
        &format!("category:{category}"),
    )
    .await;
    walk.call(
        "POST /v1/admin/skus/{sku}/restart",
        "/v1/admin/skus/WALK-1/restart",
        Some(&root),
        None,
        "sku.restart",
        Some(&root_user),
        "sku:WALK-1",
    )
    .await;
    let as_seller = send(
        app.client
            .post(app.url("/v1/admin/skus/WALK-1/restart"))
            .insert_header(bearer(&seller)),
        None,
    )
    .await;
    assert_eq!(as_seller.status, StatusCode::FORBIDDEN);

    // A catalog import: the upload is the audit line (the job's versions
    // carry its correlation id `import-<job id>`).
    walk.call_raw(
        "POST /v1/products/import",
        "/v1/products/import",
        Some(&seller),
        (
            "text/csv",
            "handle,title,sku,price,currency\nwalk-import,Walk import,WALK-IMPORT-1,500,EUR\n"
                .to_owned(),
        ),
        "product.import",
        Some(&user),
        "import:",
    )
    .await;

    // Late: archiving stops WALK-1's product taking holds.
    walk.call(
        "POST /v1/products/{id}/archive",
        &format!("/v1/products/{walk_product}/archive"),
        Some(&seller),
        None,
        "product.archive",
        Some(&user),
        &format!("product:{walk_product}"),
    )
    .await;

    // Last: log out (it ends the session the walk used).
    walk.call(
        "POST /v1/auth/logout",
        "/v1/auth/logout",
        Some(&seller),
        None,
        "session.logout",
        Some(&user),
        "session:",
    )
    .await;

    let routes = state_changing_routes(&app).await;
    let missing: Vec<&String> = routes.difference(&walk.walked).collect();
    assert!(
        missing.is_empty(),
        "routes the walk did not check: {missing:?}"
    );
    assert!(routes.len() >= 18, "{routes:?}");
    app.stop().await;
}

#[actix_web::test]
async fn audit_pages_are_filtered_and_paginated() {
    let app = spawn_with_admin().await;
    let seller = app.seller("pages").await;
    for i in 0..7 {
        let r = app.set_stock("pages", "PG-1", json!({"main": i})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "no such SKU yet: no line");
    }
    app.stocked_sku("pages", "PG-1", 1).await;
    for i in 2..=6 {
        app.set_stock("pages", "PG-1", json!({"main": i})).await;
    }
    let get = |query: String| {
        let app = &app;
        let token = seller.access_token.clone();
        async move {
            send(
                app.client
                    .get(app.url(&format!("/v1/admin/audit?{query}")))
                    .insert_header(bearer(&token)),
                None,
            )
            .await
        }
    };
    let first = get("action=stock.set&limit=2".into()).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let items = first.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["after"]["warehouses"]["main"], 6, "newest first");
    let mut seen = 2;
    let mut cursor = first.body["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let page = get(format!("action=stock.set&limit=2&cursor={c}")).await;
        seen += page.body["items"].as_array().unwrap().len();
        cursor = page.body["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, 6, "one line per successful stock change");
    let product = get("action=product".into()).await;
    assert_eq!(
        product.body["items"].as_array().unwrap().len(),
        1,
        "a prefix matches"
    );
    let future = get("since=2999-01-01T00:00:00Z".into()).await;
    assert!(future.body["items"].as_array().unwrap().is_empty());
    let past = get("until=2000-01-01T00:00:00Z".into()).await;
    assert!(past.body["items"].as_array().unwrap().is_empty());
    for bad in [
        "since=yesterday",
        "limit=0",
        "limit=101",
        "cursor=x",
        "actor=nobody",
        "colour=red",
    ] {
        let r = get(bad.into()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {:?}",
            r.body
        );
    }
    let mine = get(format!("actor={}", seller.user_id)).await;
    assert!(mine.body["items"].as_array().unwrap().len() >= 7);
    app.stop().await;
}
