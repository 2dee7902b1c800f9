//! Bad input of every kind gets the right status and problem+json code, changes
//! nothing, and the server keeps serving.

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{bearer, send, spawn_app, Response, TestApp};

async fn raw_reserve(app: &TestApp, headers: &[(&str, &str)], body: &str) -> Response {
    let mut request = app.client.post(app.url("/v1/skus/BAD-1/reservations"));
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    let mut response = request.send_body(body.to_owned()).await.unwrap();
    let bytes = response.body().await.unwrap();
    Response {
        status: response.status(),
        headers: response.headers().clone(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn assert_problem(response: &Response, status: StatusCode, code: &str) {
    assert_eq!(response.status, status, "{:?}", response.body);
    assert_eq!(response.code(), code, "{:?}", response.body);
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    for member in ["type", "title", "status", "detail", "code"] {
        assert!(!response.body[member].is_null(), "problem lacks {member}");
    }
    assert_eq!(response.body["status"], status.as_u16());
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[actix_web::test]
async fn bad_reservation_requests_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    app.stocked_sku("seller", "BAD-1", 10).await;
    let before = app.stock("BAD-1").await;
    let token = format!("Bearer {}", app.buyer("ana").await.access_token);
    let buyer = ("authorization", token.as_str());

    // (case, headers, body, status, code)
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        String,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            vec![JSON, buyer],
            "{\"quantity\": ".into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "not JSON at all",
            vec![JSON, buyer],
            "quantity=1".into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "wrong type",
            vec![JSON, buyer],
            r#"{"quantity": "two"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "float",
            vec![JSON, buyer],
            r#"{"quantity": 1.5}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "missing quantity",
            vec![JSON, buyer],
            "{}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "unknown field",
            vec![JSON, buyer],
            r#"{"quantity": 1, "discount": 50}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "zero",
            vec![JSON, buyer],
            r#"{"quantity": 0}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "negative",
            vec![JSON, buyer],
            r#"{"quantity": -1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "above the per-request maximum",
            vec![JSON, buyer],
            r#"{"quantity": 1001}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "beyond u32",
            vec![JSON, buyer],
            r#"{"quantity": 4294967296}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "huge",
            vec![JSON, buyer],
            r#"{"quantity": 1e300}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "ttl too long",
            vec![JSON, buyer],
            r#"{"quantity": 1, "ttl_s": 99999999}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "ttl zero",
            vec![JSON, buyer],
            r#"{"quantity": 1, "ttl_s": 0}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "no identity",
            vec![JSON],
            r#"{"quantity": 1}"#.into(),
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        ),
        (
            "garbage token",
            vec![JSON, ("authorization", "Bearer not-a-token")],
            r#"{"quantity": 1}"#.into(),
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        ),
        (
            "not a bearer scheme",
            vec![JSON, ("authorization", "Basic YW5hOnB3")],
            r#"{"quantity": 1}"#.into(),
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        ),
        (
            "the old header identity",
            vec![JSON, ("x-buyer-id", "ana")],
            r#"{"quantity": 1}"#.into(),
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        ),
        (
            "not JSON content type",
            vec![("content-type", "text/plain"), buyer],
            r#"{"quantity": 1}"#.into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "bad idempotency key",
            vec![JSON, buyer, ("idempotency-key", "has space")],
            r#"{"quantity": 1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "oversized body",
            vec![JSON, buyer],
            format!(r#"{{"quantity": 1, "pad": "{}"}}"#, "x".repeat(70_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (name, headers, body, status, code) in cases {
        let response = raw_reserve(&app, &headers, &body).await;
        assert_eq!(response.status, status, "case {name}: {:?}", response.body);
        assert_problem(&response, status, code);
    }

    assert_eq!(app.stock("BAD-1").await, before, "state unchanged");
    let health = send(app.client.get(app.url("/healthz")), None).await;
    assert_eq!(health.status, StatusCode::OK, "still serving");
    let ok = app
        .reserve("ana", "BAD-1", json!({"quantity": 1}), None)
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "still reserving");
    app.stop().await;
}

#[actix_web::test]
async fn unknown_skus_and_reservations_are_not_found() {
    let app = spawn_app().await;
    app.stocked_sku("seller", "KNOWN-1", 3).await;
    let ana = app.buyer("ana").await.access_token;

    let unknown = app
        .reserve("ana", "NOPE-1", json!({"quantity": 1}), None)
        .await;
    assert_problem(&unknown, StatusCode::NOT_FOUND, "sku_not_found");
    let invalid_code = app
        .reserve("ana", "not%20a%20code", json!({"quantity": 1}), None)
        .await;
    assert_problem(&invalid_code, StatusCode::NOT_FOUND, "sku_not_found");
    let stock = send(app.client.get(app.url("/v1/skus/NOPE-1/stock")), None).await;
    assert_problem(&stock, StatusCode::NOT_FOUND, "sku_not_found");

    // Well-formed ids of nothing, ids of an unknown SKU, and garbage.
    for id in [
        "00000000000000010000000000000999",
        "00000000ffffffff0000000000000001",
        "xyz",
    ] {
        let get = app.reservation("ana", id).await;
        assert_problem(&get, StatusCode::NOT_FOUND, "reservation_not_found");
        let delete = send(
            app.client
                .delete(app.url(&format!("/v1/reservations/{id}")))
                .insert_header(bearer(&ana)),
            None,
        )
        .await;
        assert_problem(&delete, StatusCode::NOT_FOUND, "reservation_not_found");
        let commit = send(
            app.client
                .post(app.url(&format!("/v1/reservations/{id}/commit")))
                .insert_header(bearer(&ana)),
            None,
        )
        .await;
        if id == "xyz" {
            assert_problem(&commit, StatusCode::NOT_FOUND, "reservation_not_found");
        } else {
            // A shopper never commits; whether the hold exists is not said.
            assert_problem(&commit, StatusCode::FORBIDDEN, "forbidden");
        }
    }
    let product = send(app.client.get(app.url("/v1/products/not-a-uuid")), None).await;
    assert_problem(&product, StatusCode::NOT_FOUND, "product_not_found");
    let product = send(
        app.client
            .get(app.url("/v1/products/01936b2e-7d2f-7000-8000-000000000000")),
        None,
    )
    .await;
    assert_problem(&product, StatusCode::NOT_FOUND, "product_not_found");
    let route = send(app.client.get(app.url("/v1/nothing-here")), None).await;
    assert_problem(&route, StatusCode::NOT_FOUND, "not_found");
    let method = send(app.client.patch(app.url("/v1/skus/KNOWN-1/stock")), None).await;
    assert_problem(
        &method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_eq!(app.stock("KNOWN-1").await["available"], 3);
    app.stop().await;
}

#[actix_web::test]
async fn seller_routes_need_the_products_tenant() {
    let app = spawn_app().await;
    app.stocked_sku("tenant-a", "OWN-1", 5).await;
    let before = app.stock("OWN-1").await;

    let no_tenant = send(
        app.client.put(app.url("/v1/skus/OWN-1/stock")),
        Some(json!({"warehouses": {"main": 1}})),
    )
    .await;
    assert_problem(&no_tenant, StatusCode::UNAUTHORIZED, "unauthenticated");

    // Another tenant cannot tell the SKU exists.
    let other = app.set_stock("tenant-b", "OWN-1", json!({"main": 1})).await;
    assert_problem(&other, StatusCode::NOT_FOUND, "sku_not_found");
    let other_adjust = send(
        app.client
            .post(app.url("/v1/skus/OWN-1/stock/adjust"))
            .insert_header(bearer(&app.seller("tenant-b").await.access_token)),
        Some(json!({"warehouse": "main", "delta": -5, "reason": "theft"})),
    )
    .await;
    assert_problem(&other_adjust, StatusCode::NOT_FOUND, "sku_not_found");

    let no_tenant_product = send(
        app.client.post(app.url("/v1/products")),
        Some(json!({"title": "x", "skus": [{"sku": "X-1", "price": {"amount": 1, "currency": "USD"}}]})),
    )
    .await;
    assert_problem(
        &no_tenant_product,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    assert_eq!(app.stock("OWN-1").await, before);
    app.stop().await;
}

#[actix_web::test]
async fn bad_stock_changes_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    app.stocked_sku("t", "STK-1", 10).await;
    let held = app
        .reserve("ana", "STK-1", json!({"quantity": 6}), None)
        .await;
    assert_eq!(held.status, StatusCode::CREATED);
    let before = app.stock("STK-1").await;

    let below = app.set_stock("t", "STK-1", json!({"main": 5})).await;
    assert_problem(&below, StatusCode::CONFLICT, "stock_below_reserved");
    let bad_name = app.set_stock("t", "STK-1", json!({"main hall": 50})).await;
    assert_problem(
        &bad_name,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let negative = app.set_stock("t", "STK-1", json!({"main": -5})).await;
    assert_problem(
        &negative,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let too_many = app
        .set_stock("t", "STK-1", json!({"main": 2_000_000_000_000u64}))
        .await;
    assert_problem(
        &too_many,
        StatusCode::UNPROCESSABLE_ENTITY,
        "limit_exceeded",
    );

    let token = app.seller("t").await.access_token;
    let adjust = |body: Value| {
        let app = &app;
        let token = &token;
        async move {
            send(
                app.client
                    .post(app.url("/v1/skus/STK-1/stock/adjust"))
                    .insert_header(bearer(token)),
                Some(body),
            )
            .await
        }
    };
    let r = adjust(json!({"warehouse": "main", "delta": -11, "reason": "count"})).await;
    assert_problem(&r, StatusCode::CONFLICT, "insufficient_on_hand");
    let r = adjust(json!({"warehouse": "main", "delta": -5, "reason": "count"})).await;
    assert_problem(&r, StatusCode::CONFLICT, "stock_below_reserved");
    let r = adjust(json!({"warehouse": "main", "delta": 0, "reason": "count"})).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let r = adjust(json!({"warehouse": "main", "delta": 1, "reason": ""})).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let r = adjust(json!({"warehouse": "main", "delta": "1", "reason": "x"})).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

    assert_eq!(app.stock("STK-1").await, before);
    let ok = adjust(json!({"warehouse": "east", "delta": 4, "reason": "transfer in"})).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["warehouses"]["east"], 4);
    assert_eq!(ok.body["available"], 8);
    app.stop().await;
}

#[actix_web::test]
async fn bad_products_are_refused() {
    let app = spawn_app().await;
    app.create_product("t", &["DUP-1"]).await;
    let token = app.seller("t").await.access_token;
    let create = |body: Value| {
        let app = &app;
        let token = &token;
        async move {
            send(
                app.client
                    .post(app.url("/v1/products"))
                    .insert_header(bearer(token)),
                Some(body),
            )
            .await
        }
    };
    let price = json!({"amount": 100, "currency": "USD"});
    let r = create(json!({"title": "x", "skus": []})).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let r = create(json!({"title": "", "skus": [{"sku": "A-1", "price": price}]})).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "title");
    let r = create(
        json!({"title": "x", "skus": [{"sku": "A-1", "price": {"amount": 1, "currency": "usd"}}]}),
    )
    .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let r = create(
        json!({"title": "x", "skus": [{"sku": "A-1", "price": {"amount": -1, "currency": "USD"}}]}),
    )
    .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let r = create(json!({"title": "x", "skus": [{"sku": "A-1", "price": price}, {"sku": "A-1", "price": price}]})).await;
    assert_problem(&r, StatusCode::CONFLICT, "sku_exists");
    assert_eq!(r.body["skus"], json!(["A-1"]), "named once");
    let r = create(json!({"title": "x", "skus": [{"sku": "DUP-1", "price": price}]})).await;
    assert_problem(&r, StatusCode::CONFLICT, "sku_exists");
    assert_eq!(r.body["skus"], json!(["DUP-1"]));
    // The refused product's codes were not taken.
    let r = create(json!({"title": "x", "skus": [{"sku": "A-1", "price": price}]})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    app.stop().await;
}

/// Fragments only a deserialiser writes; no error a client reads has them.
const DESERIALISER_WORDS: &[&str] = &[
    "invalid type",
    "invalid value",
    "expected",
    "u32",
    "u64",
    "i64",
    "usize",
    "f64",
    "at line",
    "struct ",
    "variant",
    "sequence",
    "deserialize",
    "Query",
    "Json",
    "EOF",
];

fn speaks_the_apis_language(route: &str, response: &Response) {
    if !response.status.is_client_error() {
        return;
    }
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{route}: {:?}",
        response.body
    );
    let text = response.body.to_string();
    for fragment in DESERIALISER_WORDS {
        assert!(!text.contains(fragment), "{route}: {fragment:?} in {text}");
    }
}

#[actix_web::test]
async fn no_error_on_any_route_speaks_a_deserialisers_language() {
    let app = crate::helpers::spawn_with_admin().await;
    app.stocked_sku("words", "WORD-1", 5).await;
    let seller = app.seller("words").await.access_token;
    let admin = app.platform_admin().await;
    let spec = send(app.client.get(app.url("/openapi.json")), None).await;
    let bodies = [
        "{}",
        "[]",
        "[1, 2]",
        "1",
        "\"text\"",
        "null",
        "{\"a\":",
        "{} {}",
        r#"{"quantity": "two"}"#,
        r#"{"quantity": -1, "ttl_s": 1.5}"#,
        r#"{"items": {}, "title": 5, "skus": "x"}"#,
        r#"{"email": 7, "password": []}"#,
        r#"{"warehouses": [], "warehouse": 3, "delta": "x", "reason": {}}"#,
        r#"{"state": 9, "tracking": []}"#,
        r#"{"starts_at": 1, "ends_at": true, "per_buyer_limit": -2}"#,
        r#"{"webhook_url": 2, "name": {}, "plan": "gold"}"#,
        r#"{"items": [{"sku": 1, "quantity": "x"}], "shipping_address": 5}"#,
        r#"{"unknown_field_of_any_request": 1}"#,
    ];
    let queries = [
        "limit=ten",
        "limit=-5",
        "limit=0",
        "limit=1000000000000000000000",
        "cursor=%FF%FE",
        "since=yesterday",
        "unknown=1",
        "limit=1&limit=2",
    ];
    let mut checked = 0;
    for (path, item) in spec.body["paths"].as_object().unwrap() {
        if path == "/v1/auth/logout" || path == "/v1/ws" {
            continue;
        }
        let concrete = path
            .replace("{sku}", "WORD-1")
            .replace("{user_id}", "not-an-id")
            .replace("{id}", "not-an-id");
        for (method, operation) in item.as_object().unwrap() {
            for token in [&seller, &admin] {
                if operation.get("requestBody").is_some() {
                    for body in bodies {
                        let request = app
                            .client
                            .request(method.to_uppercase().parse().unwrap(), app.url(&concrete))
                            .insert_header(crate::helpers::bearer(token))
                            .insert_header(("content-type", "application/json"));
                        let mut response = request.send_body(body.to_owned()).await.unwrap();
                        let bytes = response.body().limit(1 << 20).await.unwrap();
                        let answer = Response {
                            status: response.status(),
                            headers: response.headers().clone(),
                            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                        };
                        speaks_the_apis_language(&format!("{method} {path} {body}"), &answer);
                        checked += 1;
                    }
                }
                if method == "get" {
                    for query in queries {
                        let answer = send(
                            app.client
                                .get(app.url(&format!("{concrete}?{query}")))
                                .insert_header(crate::helpers::bearer(token)),
                            None,
                        )
                        .await;
                        speaks_the_apis_language(&format!("GET {path}?{query}"), &answer);
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 500, "only {checked} requests checked");
    let health = send(app.client.get(app.url("/healthz")), None).await;
    assert_eq!(health.status, StatusCode::OK);
    app.stop().await;
}
