//! The isolation matrix: every seller route, called by someone who must not
//! reach it. Store A's seller against store B's objects answers 404 (existence
//! does not leak); buyers get 403 on seller routes; staff cannot manage staff.
//! Every cell is its own test, and every cell checks store B is unchanged.

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{bearer, send, Response, TestApp};

/// Two stores, a buyer, B's staff member, B's SKU with stock and a held
/// reservation, and audit lines of both stores.
struct World {
    app: TestApp,
    a_admin: String,
    a_staff: String,
    own_staff: String,
    buyer: String,
    platform: String,
    b_admin: String,
    b_tenant: String,
    b_staff_id: String,
    b_reservation: String,
    b_product: String,
    b_drop: String,
}

#[derive(Clone, Copy)]
enum Who {
    /// Store A's seller admin.
    OtherAdmin,
    /// Store A's seller staff.
    OtherStaff,
    /// Store B's own staff member.
    OwnStaff,
    Buyer,
}

impl World {
    async fn new() -> Self {
        let app = crate::helpers::spawn_with_admin().await;
        app.stocked_sku("store-a", "A-1", 10).await;
        app.stocked_sku("store-b", "B-1", 10).await;
        let a_admin = app.seller("store-a").await;
        let b_admin = app.seller("store-b").await;
        let a_staff = join_as_staff(&app, &a_admin, "a-staff").await;
        let b_staff = join_as_staff(&app, &b_admin, "b-staff").await;
        let held = app
            .reserve("shopper", "B-1", json!({"quantity": 2}), None)
            .await;
        assert_eq!(held.status, StatusCode::CREATED, "{:?}", held.body);
        let platform = app.platform_admin().await;
        let b_staff_id = b_staff.1;
        let b_tenant = b_admin.tenant_id.clone().unwrap();
        let products = send(
            app.client
                .get(app.url(&format!("/v1/creators/{b_tenant}/products"))),
            None,
        )
        .await;
        let b_product = products.body["items"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("store B's product: {:?}", products.body))
            .to_owned();
        app.stocked_sku("store-b", "B-2", 5).await;
        let now = app.engine.clock().now_ms();
        let b_drop = crate::helpers::scheduled(
            &app,
            "store-b",
            &["B-2"],
            now + 600_000,
            now + 1_200_000,
            json!({}),
        )
        .await;
        Self {
            b_product,
            b_drop,
            buyer: app.buyer("shopper").await.access_token,
            a_admin: a_admin.access_token,
            a_staff: a_staff.0,
            platform,
            b_admin: b_admin.access_token,
            b_tenant,
            b_staff_id,
            b_reservation: held.body["reservation_id"].as_str().unwrap().to_owned(),
            own_staff: b_staff.0,
            app,
        }
    }

    fn token(&self, who: Who) -> &str {
        match who {
            Who::OtherAdmin => &self.a_admin,
            Who::OtherStaff => &self.a_staff,
            Who::OwnStaff => &self.own_staff,
            Who::Buyer => &self.buyer,
        }
    }

    fn path(&self, template: &str) -> String {
        template
            .replace("{b_tenant}", &self.b_tenant)
            .replace("{b_staff}", &self.b_staff_id)
            .replace("{b_reservation}", &self.b_reservation)
            .replace("{b_product}", &self.b_product)
            .replace("{b_drop}", &self.b_drop)
    }

    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Response {
        let url = self.app.url(path);
        let request = match method {
            "GET" => self.app.client.get(url),
            "PUT" => self.app.client.put(url),
            "DELETE" => self.app.client.delete(url),
            "PATCH" => self.app.client.patch(url),
            _ => self.app.client.post(url),
        };
        send(request.insert_header(bearer(token)), body).await
    }

    /// Store B's stock, settings, staff, reservation and audit are as set up.
    async fn assert_b_unchanged(&self) {
        let stock = self.app.stock("B-1").await;
        assert_eq!(
            (&stock["available"], &stock["reserved"], &stock["sold"]),
            (&json!(8), &json!(2), &json!(0)),
            "{stock:?}"
        );
        let admin = &self.b_admin;
        let tenant = self
            .call("GET", &self.path("/v1/tenants/{b_tenant}"), admin, None)
            .await;
        assert_eq!(tenant.body["name"], "Store store-b");
        assert_eq!(tenant.body["status"], "active");
        let staff = self
            .call(
                "GET",
                &self.path("/v1/tenants/{b_tenant}/staff"),
                admin,
                None,
            )
            .await;
        assert_eq!(staff.body["items"].as_array().unwrap().len(), 2);
        let held = self
            .call(
                "GET",
                &self.path("/v1/reservations/{b_reservation}"),
                admin,
                None,
            )
            .await;
        assert_eq!(held.body["state"], "held", "{:?}", held.body);
        let audit = self
            .call("GET", "/v1/admin/audit?limit=100", admin, None)
            .await;
        let invites = audit.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "staff.invite")
            .count();
        assert_eq!(invites, 1, "B's audit holds only its own invitation");
        let product = self
            .call("GET", &self.path("/v1/products/{b_product}"), admin, None)
            .await;
        assert_eq!(
            (&product.body["version"], &product.body["title"]),
            (&json!(1), &json!("Drop tee")),
            "{:?}",
            product.body
        );
        let drop = self
            .call("GET", &self.path("/v1/drops/{b_drop}"), admin, None)
            .await;
        assert_eq!(
            (
                &drop.body["state"],
                &drop.body["title"],
                &drop.body["edits"]
            ),
            (&json!("scheduled"), &json!("Sneaker drop"), &json!(0)),
            "{:?}",
            drop.body
        );
    }
}

/// Invites `name` to the store of `admin` as staff; answers (token, user id).
async fn join_as_staff(
    app: &TestApp,
    admin: &crate::helpers::Identity,
    name: &str,
) -> (String, String) {
    let email = crate::helpers::email_for(name);
    let tenant = admin.tenant_id.clone().unwrap();
    let invite = app
        .post_json(
            &format!("/v1/tenants/{tenant}/staff"),
            Some(&admin.access_token),
            json!({"email": email, "role": "seller_staff"}),
        )
        .await;
    assert_eq!(invite.status, StatusCode::CREATED, "{:?}", invite.body);
    let login = app.sign_up(&email).await;
    let joined = app
        .post_json(
            "/v1/invitations/accept",
            login["access_token"].as_str(),
            json!({"token": invite.body["token"]}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{:?}", joined.body);
    (
        joined.body["tokens"]["access_token"]
            .as_str()
            .unwrap()
            .to_owned(),
        joined.body["tokens"]["account"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

macro_rules! cell {
    ($name:ident: $who:ident $method:literal $path:literal $body:expr => $status:ident $code:literal) => {
        #[actix_web::test]
        async fn $name() {
            let world = World::new().await;
            let path = world.path($path);
            let response = world
                .call($method, &path, world.token(Who::$who), $body)
                .await;
            assert_eq!(
                response.status,
                StatusCode::$status,
                "{} {path}: {:?}",
                $method,
                response.body
            );
            assert_eq!(response.code(), $code, "{:?}", response.body);
            world.assert_b_unchanged().await;
            world.app.stop().await;
        }
    };
}

fn stock_body() -> Option<Value> {
    Some(json!({"warehouses": {"main": 1}}))
}

fn adjust_body() -> Option<Value> {
    Some(json!({"warehouse": "main", "delta": -1, "reason": "count"}))
}

fn settings_body() -> Option<Value> {
    Some(json!({"name": "Taken over"}))
}

fn invite_body() -> Option<Value> {
    Some(json!({"email": "intruder@test.example", "role": "seller_admin"}))
}

// Another store's seller admin: every object of store B is unknown.
cell!(other_store_cannot_set_stock: OtherAdmin "PUT" "/v1/skus/B-1/stock" stock_body() => NOT_FOUND "sku_not_found");
cell!(other_store_cannot_adjust_stock: OtherAdmin "POST" "/v1/skus/B-1/stock/adjust" adjust_body() => NOT_FOUND "sku_not_found");
cell!(other_store_cannot_read_settings: OtherAdmin "GET" "/v1/tenants/{b_tenant}" None => NOT_FOUND "tenant_not_found");
cell!(other_store_cannot_change_settings: OtherAdmin "PUT" "/v1/tenants/{b_tenant}" settings_body() => NOT_FOUND "tenant_not_found");
cell!(other_store_cannot_invite_staff: OtherAdmin "POST" "/v1/tenants/{b_tenant}/staff" invite_body() => NOT_FOUND "tenant_not_found");
cell!(other_store_cannot_list_staff: OtherAdmin "GET" "/v1/tenants/{b_tenant}/staff" None => NOT_FOUND "tenant_not_found");
cell!(other_store_cannot_remove_staff: OtherAdmin "DELETE" "/v1/tenants/{b_tenant}/staff/{b_staff}" None => NOT_FOUND "tenant_not_found");
cell!(other_store_cannot_read_reservations: OtherAdmin "GET" "/v1/reservations/{b_reservation}" None => NOT_FOUND "reservation_not_found");
cell!(other_store_cannot_release_reservations: OtherAdmin "DELETE" "/v1/reservations/{b_reservation}" None => NOT_FOUND "reservation_not_found");
cell!(other_store_cannot_commit_reservations: OtherAdmin "POST" "/v1/reservations/{b_reservation}/commit" None => NOT_FOUND "reservation_not_found");
cell!(other_store_cannot_filter_audit_by_another_store: OtherAdmin "GET" "/v1/admin/audit?tenant={b_tenant}" None => NOT_FOUND "tenant_not_found");
cell!(other_store_staff_cannot_set_stock: OtherStaff "PUT" "/v1/skus/B-1/stock" stock_body() => NOT_FOUND "sku_not_found");
cell!(other_store_cannot_change_products: OtherAdmin "PATCH" "/v1/products/{b_product}" Some(json!({"title": "Taken over"})) => NOT_FOUND "product_not_found");
cell!(other_store_staff_cannot_change_products: OtherStaff "PATCH" "/v1/products/{b_product}" Some(json!({"title": "Taken over"})) => NOT_FOUND "product_not_found");
cell!(other_store_cannot_read_product_history: OtherAdmin "GET" "/v1/products/{b_product}/versions" None => NOT_FOUND "product_not_found");
cell!(other_store_cannot_read_a_product_version: OtherAdmin "GET" "/v1/products/{b_product}/versions/1" None => NOT_FOUND "product_not_found");
cell!(other_store_staff_cannot_read_product_history: OtherStaff "GET" "/v1/products/{b_product}/versions" None => NOT_FOUND "product_not_found");
cell!(other_store_cannot_roll_back_products: OtherAdmin "POST" "/v1/products/{b_product}/rollback" Some(json!({"version": 1})) => NOT_FOUND "product_not_found");
cell!(other_store_staff_cannot_roll_back_products: OtherStaff "POST" "/v1/products/{b_product}/rollback" Some(json!({"version": 1})) => NOT_FOUND "product_not_found");
cell!(other_store_cannot_archive_products: OtherAdmin "POST" "/v1/products/{b_product}/archive" None => NOT_FOUND "product_not_found");
cell!(other_store_staff_cannot_archive_products: OtherStaff "POST" "/v1/products/{b_product}/archive" None => NOT_FOUND "product_not_found");
cell!(other_store_cannot_edit_drops: OtherAdmin "PATCH" "/v1/drops/{b_drop}" Some(json!({"title": "Taken over"})) => NOT_FOUND "drop_not_found");
cell!(other_store_staff_cannot_edit_drops: OtherStaff "PATCH" "/v1/drops/{b_drop}" Some(json!({"after_drop": "sell"})) => NOT_FOUND "drop_not_found");
cell!(other_store_cannot_cancel_drops: OtherAdmin "POST" "/v1/drops/{b_drop}/cancel" None => NOT_FOUND "drop_not_found");
cell!(other_store_staff_cannot_read_settings: OtherStaff "GET" "/v1/tenants/{b_tenant}" None => NOT_FOUND "tenant_not_found");

// A buyer on seller routes: 403.
cell!(other_store_cannot_replace_products: OtherAdmin "PUT" "/v1/products/{b_product}" Some(json!({"title": "Taken over", "skus": [{"sku": "B-1", "price": {"amount": 1, "currency": "USD"}}]})) => NOT_FOUND "product_not_found");
cell!(other_store_staff_cannot_replace_products: OtherStaff "PUT" "/v1/products/{b_product}" Some(json!({"title": "Taken over", "skus": [{"sku": "B-1", "price": {"amount": 1, "currency": "USD"}}]})) => NOT_FOUND "product_not_found");
cell!(other_store_cannot_add_variants: OtherAdmin "POST" "/v1/products/{b_product}/variants" Some(json!({"sku": "B-TAKEN", "price": {"amount": 1, "currency": "USD"}})) => NOT_FOUND "product_not_found");
cell!(other_store_staff_cannot_add_variants: OtherStaff "POST" "/v1/products/{b_product}/variants" Some(json!({"sku": "B-TAKEN", "price": {"amount": 1, "currency": "USD"}})) => NOT_FOUND "product_not_found");
cell!(other_store_cannot_remove_variants: OtherAdmin "DELETE" "/v1/products/{b_product}/variants/B-1" None => NOT_FOUND "product_not_found");
cell!(other_store_staff_cannot_remove_variants: OtherStaff "DELETE" "/v1/products/{b_product}/variants/B-1" None => NOT_FOUND "product_not_found");
cell!(buyer_cannot_replace_products: Buyer "PUT" "/v1/products/{b_product}" Some(json!({"title": "Taken over", "skus": [{"sku": "B-1", "price": {"amount": 1, "currency": "USD"}}]})) => FORBIDDEN "forbidden");
cell!(buyer_cannot_add_variants: Buyer "POST" "/v1/products/{b_product}/variants" Some(json!({"sku": "B-TAKEN", "price": {"amount": 1, "currency": "USD"}})) => FORBIDDEN "forbidden");
cell!(buyer_cannot_remove_variants: Buyer "DELETE" "/v1/products/{b_product}/variants/B-1" None => FORBIDDEN "forbidden");
cell!(store_admin_cannot_create_categories: OtherAdmin "POST" "/v1/categories" Some(json!({"name": "Taken over"})) => FORBIDDEN "forbidden");
cell!(store_staff_cannot_create_categories: OtherStaff "POST" "/v1/categories" Some(json!({"name": "Taken over"})) => FORBIDDEN "forbidden");
cell!(buyer_cannot_create_categories: Buyer "POST" "/v1/categories" Some(json!({"name": "Taken over"})) => FORBIDDEN "forbidden");
cell!(buyer_cannot_create_products: Buyer "POST" "/v1/products" Some(json!({"title": "x", "skus": [{"sku": "BUY-1", "price": {"amount": 1, "currency": "USD"}}]})) => FORBIDDEN "forbidden");
cell!(buyer_cannot_change_products: Buyer "PATCH" "/v1/products/{b_product}" Some(json!({"title": "Taken over"})) => FORBIDDEN "forbidden");
cell!(buyer_cannot_read_product_history: Buyer "GET" "/v1/products/{b_product}/versions" None => FORBIDDEN "forbidden");
cell!(buyer_cannot_roll_back_products: Buyer "POST" "/v1/products/{b_product}/rollback" Some(json!({"version": 1})) => FORBIDDEN "forbidden");
cell!(buyer_cannot_archive_products: Buyer "POST" "/v1/products/{b_product}/archive" None => FORBIDDEN "forbidden");
cell!(buyer_cannot_edit_drops: Buyer "PATCH" "/v1/drops/{b_drop}" Some(json!({"title": "Taken over"})) => FORBIDDEN "forbidden");
cell!(buyer_cannot_set_stock: Buyer "PUT" "/v1/skus/B-1/stock" stock_body() => FORBIDDEN "forbidden");
cell!(buyer_cannot_adjust_stock: Buyer "POST" "/v1/skus/B-1/stock/adjust" adjust_body() => FORBIDDEN "forbidden");
cell!(buyer_cannot_read_store_settings: Buyer "GET" "/v1/tenants/{b_tenant}" None => FORBIDDEN "forbidden");
cell!(buyer_cannot_change_store_settings: Buyer "PUT" "/v1/tenants/{b_tenant}" settings_body() => FORBIDDEN "forbidden");
cell!(buyer_cannot_invite_staff: Buyer "POST" "/v1/tenants/{b_tenant}/staff" invite_body() => FORBIDDEN "forbidden");
cell!(buyer_cannot_list_staff: Buyer "GET" "/v1/tenants/{b_tenant}/staff" None => FORBIDDEN "forbidden");
cell!(buyer_cannot_remove_staff: Buyer "DELETE" "/v1/tenants/{b_tenant}/staff/{b_staff}" None => FORBIDDEN "forbidden");
cell!(buyer_cannot_read_audit: Buyer "GET" "/v1/admin/audit" None => FORBIDDEN "forbidden");
cell!(buyer_cannot_list_stores: Buyer "GET" "/v1/tenants" None => FORBIDDEN "forbidden");

// A store's own staff: no staff management, no settings, no audit.
cell!(staff_cannot_invite_staff: OwnStaff "POST" "/v1/tenants/{b_tenant}/staff" invite_body() => FORBIDDEN "forbidden");
cell!(staff_cannot_list_staff: OwnStaff "GET" "/v1/tenants/{b_tenant}/staff" None => FORBIDDEN "forbidden");
cell!(staff_cannot_remove_staff: OwnStaff "DELETE" "/v1/tenants/{b_tenant}/staff/{b_staff}" None => FORBIDDEN "forbidden");
cell!(staff_cannot_change_store_settings: OwnStaff "PUT" "/v1/tenants/{b_tenant}" settings_body() => FORBIDDEN "forbidden");
cell!(staff_cannot_read_audit: OwnStaff "GET" "/v1/admin/audit" None => FORBIDDEN "forbidden");
cell!(staff_cannot_list_stores: OwnStaff "GET" "/v1/tenants" None => FORBIDDEN "forbidden");

#[actix_web::test]
async fn a_sellers_audit_view_holds_only_its_own_store() {
    let world = World::new().await;
    let audit = world
        .call("GET", "/v1/admin/audit?limit=100", &world.a_admin, None)
        .await;
    assert_eq!(audit.status, StatusCode::OK, "{:?}", audit.body);
    let items = audit.body["items"].as_array().unwrap();
    assert!(!items.is_empty());
    let a_tenant = world.app.seller("store-a").await.tenant_id.unwrap();
    for item in items {
        assert_eq!(item["tenant_id"], a_tenant.as_str(), "{item:?}");
    }
    world.assert_b_unchanged().await;
    world.app.stop().await;
}

#[actix_web::test]
async fn only_platform_admins_see_every_store() {
    let world = World::new().await;
    let b = world
        .call(
            "GET",
            &world.path("/v1/tenants/{b_tenant}"),
            &world.platform,
            None,
        )
        .await;
    assert_eq!(b.status, StatusCode::OK, "{:?}", b.body);
    let all = world
        .call("GET", "/v1/tenants", &world.platform, None)
        .await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2);
    let b_audit = world
        .call(
            "GET",
            &world.path("/v1/admin/audit?tenant={b_tenant}&action=staff"),
            &world.platform,
            None,
        )
        .await;
    let items = b_audit.body["items"].as_array().unwrap();
    assert!(items.iter().any(|e| e["action"] == "staff.invite"));
    assert!(items
        .iter()
        .all(|e| e["tenant_id"] == world.b_tenant.as_str()));
    // The store's own admin reads and changes it; the world is then changed on purpose.
    let renamed = world
        .call(
            "PUT",
            &world.path("/v1/tenants/{b_tenant}"),
            &world.b_admin,
            Some(json!({"name": "Store B renamed"})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    world.app.stop().await;
}

#[actix_web::test]
async fn browsing_shows_a_stores_drafts_only_to_its_own_sellers() {
    let world = World::new().await;
    let draft = world
        .call(
            "POST",
            "/v1/products",
            &world.b_admin,
            Some(json!({"status": "draft", "title": "B secret", "skus": [{"sku": "B-DRAFT", "price": {"amount": 1, "currency": "USD"}}]})),
        )
        .await;
    assert_eq!(draft.status, StatusCode::CREATED, "{:?}", draft.body);
    let titles = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let path = world.path("/v1/products?store={b_tenant}");
    for who in [Who::OtherAdmin, Who::OtherStaff, Who::Buyer] {
        for query in ["", "&status=draft"] {
            let seen = world
                .call("GET", &format!("{path}{query}"), world.token(who), None)
                .await;
            assert_eq!(seen.status, StatusCode::OK, "{:?}", seen.body);
            assert!(
                !titles(&seen.body).contains(&"B secret".to_owned()),
                "{query}: {:?}",
                seen.body
            );
        }
    }
    let own = world
        .call(
            "GET",
            &format!("{path}&status=draft"),
            &world.own_staff,
            None,
        )
        .await;
    assert_eq!(titles(&own.body), vec!["B secret".to_owned()]);
    world.app.stop().await;
}
