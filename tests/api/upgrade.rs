//! Upgrades keep the data: a data directory written by an earlier flashdrop
//! (`tests/fixtures/upgrade-v1/`, see its README) is recovered by this code,
//! and everything a client can see of it (stock, holds, carts, orders,
//! accounts and their sessions, stores, staff, follows, drops, products, the
//! audit log) answers exactly what the earlier code answered.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::http::StatusCode;
use flashdrop::clock::{rfc3339_ms, ManualClock};
use serde_json::{json, Value};

use super::helpers::*;

/// The fixture's clock: every timestamp in it, and the instant it is read at
/// (holds still held, tokens still valid, the drop still scheduled).
const T0: u64 = 1_800_000_000_000;

const STAFF_EMAIL: &str = "staff@fixture.example";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade-v1")
}

fn fixture_config(dir: &Path) -> flashdrop::config::Config {
    let mut config = test_config(dir);
    with_admin(&mut config);
    config
}

/// Every client-visible view of the fixture's entities, as `who` sees them.
async fn observe(app: &TestApp, ids: &Value) -> Value {
    let token = |name: &str| ids["tokens"][name].as_str().unwrap().to_owned();
    let mut seen = serde_json::Map::new();
    let mut look = |key: String, response: Response| {
        assert!(
            response.status.is_success(),
            "{key}: {} {:?}",
            response.status,
            response.body
        );
        seen.insert(key, response.body);
    };
    for sku in ["U-TEE", "U-CAP", "U-MUG", "U-DROP"] {
        let path = format!("/v1/skus/{sku}/stock");
        look(path.clone(), app.get_as(&path, None).await);
    }
    for name in ["alice", "bob", "carol", "north", "south", "admin", "staff"] {
        let path = "/v1/auth/me";
        look(
            format!("{path} as {name}"),
            app.get_as(path, Some(&token(name))).await,
        );
    }
    for (name, orders) in [("bob", "bob_orders"), ("carol", "carol_orders")] {
        for order in ids[orders].as_array().unwrap() {
            let path = format!("/v1/orders/{}", order.as_str().unwrap());
            look(
                format!("{path} as {name}"),
                app.get_as(&path, Some(&token(name))).await,
            );
        }
    }
    for name in ["bob", "carol", "north", "south"] {
        let path = "/v1/orders?limit=100";
        look(
            format!("{path} as {name}"),
            app.get_as(path, Some(&token(name))).await,
        );
    }
    let hold = format!("/v1/reservations/{}", ids["hold"].as_str().unwrap());
    look(
        format!("{hold} as alice"),
        app.get_as(&hold, Some(&token("alice"))).await,
    );
    let holds = "/v1/skus/U-CAP/reservations";
    look(
        format!("{holds} as north"),
        app.get_as(holds, Some(&token("north"))).await,
    );
    look(
        "/v1/cart as alice".into(),
        app.get_as("/v1/cart", Some(&token("alice"))).await,
    );
    let drop = format!("/v1/drops/{}", ids["drop"].as_str().unwrap());
    look(drop.clone(), app.get_as(&drop, None).await);
    for store in ["north", "south"] {
        let tenant = ids["tenants"][store].as_str().unwrap();
        let path = format!("/v1/tenants/{tenant}");
        look(
            format!("{path} as {store}"),
            app.get_as(&path, Some(&token(store))).await,
        );
        let staff = format!("/v1/tenants/{tenant}/staff");
        look(
            format!("{staff} as {store}"),
            app.get_as(&staff, Some(&token(store))).await,
        );
        let creator = format!("/v1/creators/{tenant}");
        look(creator.clone(), app.get_as(&creator, None).await);
        let products = format!("/v1/creators/{tenant}/products");
        look(products.clone(), app.get_as(&products, None).await);
    }
    for product in ids["products"].as_array().unwrap() {
        let path = format!("/v1/products/{}", product.as_str().unwrap());
        look(path.clone(), app.get_as(&path, None).await);
    }
    let audit = "/v1/admin/audit?limit=100";
    look(
        format!("{audit} as admin"),
        app.get_as(audit, Some(&token("admin"))).await,
    );
    look(
        "/v1/tenants as admin".into(),
        app.get_as("/v1/tenants?limit=100", Some(&token("admin")))
            .await,
    );
    Value::Object(seen)
}

/// Every account still signs in with its password.
async fn sign_in_all(app: &TestApp, ids: &Value) {
    for (name, email) in ids["emails"].as_object().unwrap() {
        let login = app
            .post_json(
                "/v1/auth/login",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(login.status, StatusCode::OK, "{name}: {:?}", login.body);
    }
}

/// Whether `now` says everything `was` said: equal scalars, arrays of the
/// same length that hold all of each element, and objects with every field of
/// `was` holding all of it. Fields added to an answer since the fixture was
/// written are additions, as in `/openapi.json`; a changed or missing one is not.
fn holds_all_of(now: &Value, was: &Value) -> bool {
    match (now, was) {
        (Value::Object(now), Value::Object(was)) => was
            .iter()
            .all(|(k, v)| now.get(k).is_some_and(|n| holds_all_of(n, v))),
        (Value::Array(now), Value::Array(was)) => {
            now.len() == was.len() && now.iter().zip(was).all(|(n, w)| holds_all_of(n, w))
        }
        _ => now == was,
    }
}

#[actix_web::test]
async fn a_data_directory_of_the_previous_format_recovers_to_identical_state() {
    let fixture = fixture_dir();
    let expected: Value = serde_json::from_slice(
        &std::fs::read(fixture.join("expected.json")).expect("the fixture's expected.json"),
    )
    .expect("expected.json is JSON");
    let dir = tempfile::tempdir().unwrap();
    let unpacked = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(fixture.join("data.tar.gz"))
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("tar runs");
    assert!(unpacked.success(), "unpacking the fixture");
    let app = spawn_clocked(
        fixture_config(dir.path()),
        Some(dir),
        Arc::new(ManualClock::new(T0)),
    )
    .await;
    let seen = observe(&app, &expected["ids"]).await;
    for (key, want) in expected["state"].as_object().unwrap() {
        assert!(
            holds_all_of(&seen[key], want),
            "{key} changed across the upgrade:\n  now: {}\n  was: {want}",
            seen[key]
        );
    }
    // Fields added since the fixture read as what the old data meant: a
    // product written before versions is version 1, active; an order made
    // before checkout pricing cost its lines (no shipping, no tax); a store
    // of then lists no shipping methods.
    let mut priced = 0;
    for (key, now) in seen.as_object().unwrap() {
        if let Some(subs) = now["sub_orders"].as_array() {
            for sub in subs {
                assert_eq!(
                    (&sub["shipping"], &sub["tax"]),
                    (&json!(0), &json!(0)),
                    "{key}"
                );
                assert_eq!(sub["subtotal"], sub["total"], "{key}");
                assert_eq!(sub["shipping_method"], Value::Null, "{key}");
                priced += 1;
            }
            assert_eq!(now["subtotal"], now["total"], "{key}");
        }
        if let Some(methods) = now["shipping"]["methods"].as_array() {
            assert!(methods.is_empty(), "{key}");
        }
    }
    assert!(priced > 0, "the fixture's orders were read");
    for (key, now) in seen.as_object().unwrap() {
        if key.ends_with("/products") {
            for product in now["items"].as_array().unwrap() {
                assert_eq!(product["version"], 1, "{key}");
                assert_eq!(product["status"], "active", "{key}");
            }
        }
    }
    assert_eq!(
        seen.as_object().unwrap().len(),
        expected["state"].as_object().unwrap().len()
    );
    sign_in_all(&app, &expected["ids"]).await;
    // And the recovered engine keeps working: the hold commits at the till.
    let hold = expected["ids"]["hold"].as_str().unwrap();
    let north = expected["ids"]["tokens"]["north"].as_str().unwrap();
    let sold = send(
        app.client
            .post(app.url(&format!("/v1/reservations/{hold}/commit")))
            .insert_header(bearer(north)),
        None,
    )
    .await;
    assert_eq!(sold.status, StatusCode::OK, "{:?}", sold.body);
    // Products written before histories start theirs at their current
    // version: north's seller sees version 1, created, for each of its own.
    let mut histories = 0;
    for product in expected["ids"]["products"].as_array().unwrap() {
        let path = format!("/v1/products/{}/versions", product.as_str().unwrap());
        let history = app.get_as(&path, Some(north)).await;
        if history.status == StatusCode::NOT_FOUND {
            continue; // another store's product
        }
        assert_eq!(history.status, StatusCode::OK, "{:?}", history.body);
        assert_eq!(history.body["current_version"], 1);
        let items = history.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{:?}", history.body);
        assert_eq!(items[0]["version"], 1);
        assert_eq!(items[0]["cause"], "created");
        histories += 1;
    }
    assert!(histories > 0, "north owns a product of the fixture");
    app.stop().await;
}

/// Writes the fixture. Run only to make a new fixture version, with the code
/// of the format it preserves:
/// `FLASHDROP_WRITE_FIXTURE=/path cargo test --release --test api write_upgrade_fixture -- --ignored`
#[actix_web::test]
#[ignore = "writes a fixture; run by hand with FLASHDROP_WRITE_FIXTURE"]
async fn write_upgrade_fixture() {
    let out = PathBuf::from(
        std::env::var("FLASHDROP_WRITE_FIXTURE")
            .expect("FLASHDROP_WRITE_FIXTURE names a directory"),
    );
    std::fs::create_dir_all(&out).unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = fixture_config(data.path());
    let clock = ManualClock::new(T0);
    let app = spawn_clocked(config.clone(), None, Arc::new(clock.clone())).await;

    let admin = app.platform_admin().await;
    app.stocked_sku("north", "U-TEE", 10).await;
    app.stocked_sku("north", "U-CAP", 3).await;
    app.stocked_sku("north", "U-DROP", 50).await;
    app.stocked_sku("south", "U-MUG", 7).await;
    let north = app.seller("north").await;
    let south = app.seller("south").await;
    let north_store = north.tenant_id.clone().unwrap();
    let south_store = south.tenant_id.clone().unwrap();
    let split = app
        .set_stock("north", "U-TEE", json!({"main": 10, "east": 5}))
        .await;
    assert_eq!(split.status, StatusCode::OK, "{:?}", split.body);

    // An open hold, a cart with an item, and a follow.
    let alice = app.buyer("alice").await;
    let hold = app
        .reserve("alice", "U-CAP", json!({"quantity": 1}), Some("k-1"))
        .await;
    assert_eq!(hold.status, StatusCode::CREATED, "{:?}", hold.body);
    let added = app
        .post_json(
            "/v1/cart/items",
            Some(&alice.access_token),
            json!({"sku": "U-MUG", "quantity": 2}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    let followed = app
        .post_json(
            &format!("/v1/users/{north_store}/follow"),
            Some(&alice.access_token),
            json!({}),
        )
        .await;
    assert_eq!(
        followed.status,
        StatusCode::NO_CONTENT,
        "{:?}",
        followed.body
    );

    // A paid two-store cart, and a declined order.
    let bob = app.buyer("bob").await;
    for (sku, quantity) in [("U-TEE", 2), ("U-MUG", 1)] {
        let added = app
            .post_json(
                "/v1/cart/items",
                Some(&bob.access_token),
                json!({"sku": sku, "quantity": quantity}),
            )
            .await;
        assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    }
    let paid = send(
        app.client
            .post(app.url("/v1/cart/checkout"))
            .insert_header(bearer(&bob.access_token))
            .insert_header(("prefer", "wait=10")),
        Some(json!({"shipping_address": "1 Fixture Street", "payment_method": "pm_card_visa"})),
    )
    .await;
    assert_eq!(paid.status, StatusCode::ACCEPTED, "{:?}", paid.body);
    let paid_id = paid.body["order_id"].as_str().unwrap().to_owned();
    order_in(&app, &bob.access_token, &paid_id, &["paid"]).await;
    let carol = app.buyer("carol").await;
    let declined = place(
        &app,
        &carol.access_token,
        json!([{"sku": "U-TEE", "quantity": 1}]),
        "pm_card_insufficient_funds",
        true,
    )
    .await;
    assert_eq!(declined.status, StatusCode::ACCEPTED, "{:?}", declined.body);
    let declined_id = declined.body["order_id"].as_str().unwrap().to_owned();

    // A scheduled drop, and a staff member who joined by invitation.
    let drop = scheduled(
        &app,
        "north",
        &["U-DROP"],
        T0 + 3_600_000,
        T0 + 7_200_000,
        json!({}),
    )
    .await;
    let invite = app
        .post_json(
            &format!("/v1/tenants/{north_store}/staff"),
            Some(&north.access_token),
            json!({"email": STAFF_EMAIL, "role": "seller_staff"}),
        )
        .await;
    assert_eq!(invite.status, StatusCode::CREATED, "{:?}", invite.body);
    let staff = app.sign_up(STAFF_EMAIL).await;
    let joined = app
        .post_json(
            "/v1/invitations/accept",
            staff["access_token"].as_str(),
            json!({"token": invite.body["token"]}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{:?}", joined.body);
    let pending = app
        .post_json(
            &format!("/v1/tenants/{south_store}/staff"),
            Some(&south.access_token),
            json!({"email": "later@fixture.example", "role": "seller_staff"}),
        )
        .await;
    assert_eq!(pending.status, StatusCode::CREATED, "{:?}", pending.body);

    let mut product_ids = Vec::new();
    for store in [&north_store, &south_store] {
        let listed = app
            .get_as(&format!("/v1/creators/{store}/products"), None)
            .await;
        for product in listed.body["items"].as_array().expect("products listed") {
            product_ids.push(product["id"].clone());
        }
    }
    let ids = json!({
        "tokens": {
            "alice": alice.access_token,
            "bob": bob.access_token,
            "carol": carol.access_token,
            "north": north.access_token,
            "south": south.access_token,
            "admin": admin,
            "staff": joined.body["tokens"]["access_token"],
        },
        "emails": {
            "alice": alice.email,
            "bob": bob.email,
            "carol": carol.email,
            "north": north.email,
            "south": south.email,
            "staff": STAFF_EMAIL,
        },
        "tenants": {"north": north_store, "south": south_store},
        "bob_orders": [paid_id],
        "carol_orders": [declined_id],
        "hold": hold.body["reservation_id"],
        "drop": drop,
        "products": product_ids,
        "written_at": rfc3339_ms(T0),
    });
    let before = observe(&app, &ids).await;
    app.stop().await;

    // What the fixture promises is what a restart of the writing code answers.
    let app = spawn_clocked(config, None, Arc::new(clock)).await;
    let state = observe(&app, &ids).await;
    assert_eq!(before, state, "the writing code recovers its own data");
    app.stop().await;
    let packed = std::process::Command::new("tar")
        .arg("-czf")
        .arg(out.join("data.tar.gz"))
        .arg("-C")
        .arg(data.path())
        .arg(".")
        .status()
        .unwrap();
    assert!(packed.success());
    std::fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&json!({"ids": ids, "state": state})).unwrap(),
    )
    .unwrap();
}

#[test]
fn holding_all_of_an_old_answer_allows_additions_only() {
    let was = serde_json::json!({"a": 1, "items": [{"b": "x"}]});
    assert!(holds_all_of(&was, &was));
    assert!(holds_all_of(
        &serde_json::json!({"a": 1, "new": true, "items": [{"b": "x", "c": 2}]}),
        &was
    ));
    for changed in [
        serde_json::json!({"a": 2, "items": [{"b": "x"}]}),
        serde_json::json!({"items": [{"b": "x"}]}),
        serde_json::json!({"a": 1, "items": [{"b": "y"}]}),
        serde_json::json!({"a": 1, "items": [{"b": "x"}, {"b": "x"}]}),
        serde_json::json!({"a": 1, "items": []}),
    ] {
        assert!(!holds_all_of(&changed, &was), "{changed}");
    }
}
