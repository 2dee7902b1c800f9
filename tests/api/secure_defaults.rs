//! Secure defaults: no published secret is accepted or used, secrets never
//! reach a log line or an error, the client address cannot be spoofed past a
//! trusted proxy, and responses carry security headers and CORS only for
//! configured origins.

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{send, spawn_with, PASSWORD, TEST_SECRET};

const OLD_PAYMENTS_DEFAULT: &str = "whsec_sandbox_dev_only_change_me";
const OLD_NOTIFY_DEFAULT: &str = "notify_dev_only_change_me_0123456789";

fn serve(env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_flashdrop"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .env("FLASHDROP__AUTH__JWT_SECRET", TEST_SECRET)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[actix_web::test]
async fn start_up_refuses_the_old_default_secrets_and_never_echoes_a_secret() {
    for (key, value) in [
        ("FLASHDROP__PAYMENTS__WEBHOOK_SECRET", OLD_PAYMENTS_DEFAULT),
        (
            "FLASHDROP__NOTIFICATIONS__SIGNING_SECRET",
            OLD_NOTIFY_DEFAULT,
        ),
    ] {
        let output = serve(&[(key, value)]);
        assert_eq!(output.status.code(), Some(2), "{key}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("published"), "{stderr}");
        assert!(!stderr.contains(value), "the value is not echoed: {stderr}");
        assert!(output.stdout.is_empty(), "no listening line");
    }
    // A short secret, or a secret of digits (once refused with its value in
    // the message), never shows up in the error.
    let output = serve(&[("FLASHDROP__PAYMENTS__WEBHOOK_SECRET", "8675309")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("payments.webhook_secret"), "{stderr}");
    assert!(!stderr.contains("8675309"), "{stderr}");
    let output = serve(&[("FLASHDROP__AUTH__JWT_SECRET", "12345678901234567890")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("12345678901234567890"), "{stderr}");
}

#[actix_web::test]
async fn webhooks_signed_with_the_old_default_keys_are_refused() {
    let app = spawn_with(|_| {}).await;
    let event = json!({"id": "evt_old", "type": "payment.captured", "created_ms": 0,
                       "data": {"id": "pay_x", "reference": "nothing", "status": "captured"}});
    let body = event.to_string();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let forged = flashdrop::payments::signature::sign(
        OLD_PAYMENTS_DEFAULT.as_bytes(),
        now_s,
        body.as_bytes(),
    );
    let refused = send(
        app.client
            .post(app.url("/v1/payments/webhook"))
            .insert_header(("flashdrop-signature", forged)),
        Some(event),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.code(), "invalid_signature");

    // A store's webhook key is no longer derived from the published default.
    let seller = app.seller("shop").await;
    let tenant = seller.tenant_id.clone().unwrap();
    let view = send(
        app.client
            .put(app.url(&format!("/v1/tenants/{tenant}")))
            .insert_header(crate::helpers::bearer(&seller.access_token)),
        Some(json!({"webhook_url": "https://hooks.example.com/flashdrop"})),
    )
    .await;
    let key = view.body["webhook_secret"].as_str().unwrap();
    let tenant_id = flashdrop::domain::TenantId::parse(&tenant).unwrap();
    assert_ne!(
        key,
        flashdrop::events::notify::store_key(OLD_NOTIFY_DEFAULT, tenant_id)
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_spoofed_forwarded_for_behind_a_trusted_proxy_does_not_escape_the_address_limit() {
    let app = spawn_with(|c| {
        // The test client plays the proxy: it connects from loopback.
        c.server.trusted_proxies = vec!["127.0.0.1/32".into(), "10.0.0.0/8".into()];
        c.auth.login_burst_per_address = 3;
        c.auth.login_refill_per_address_s = 3_600;
    })
    .await;
    let login = |spoofed: String, client: &'static str| {
        let request = app
            .client
            .post(app.url("/v1/auth/login"))
            // What the client wrote, then what our proxies appended.
            .insert_header(("x-forwarded-for", format!("{spoofed}, {client}, 10.1.2.3")));
        send(
            request,
            Some(json!({"email": "nobody@test.example", "password": "wrong-Password-1"})),
        )
    };
    let mut statuses = Vec::new();
    for i in 0..6 {
        // A new left-most address every time: it must not count.
        let answer = login(format!("198.51.100.{i}"), "203.0.113.7").await;
        statuses.push(answer.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429]);
    // Another real client behind the same proxies has its own allowance.
    let other = login("198.51.100.99".into(), "203.0.113.8").await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    app.stop().await;

    // Without trusted proxies the header is ignored: the peer is the client.
    let app = spawn_with(|c| {
        c.auth.login_burst_per_address = 2;
        c.auth.login_refill_per_address_s = 3_600;
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let answer = send(
            app.client
                .post(app.url("/v1/auth/login"))
                .insert_header(("x-forwarded-for", format!("203.0.113.{i}"))),
            Some(json!({"email": "nobody@test.example", "password": PASSWORD})),
        )
        .await;
        statuses.push(answer.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 429]);
    app.stop().await;
}

#[actix_web::test]
async fn answers_carry_security_headers_and_cors_serves_only_configured_origins() {
    let app = spawn_with(|_| {}).await;
    let health = send(app.client.get(app.url("/healthz")), None).await;
    assert_eq!(health.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(health.header("cache-control"), Some("no-store"));
    // An API answer is not a page: the page-only headers stay off the wire.
    for name in [
        "x-frame-options",
        "content-security-policy",
        "referrer-policy",
    ] {
        assert!(health.header(name).is_none(), "{name} on JSON");
    }
    // A POST answer is not stored by a cache; it is still never sniffed.
    let refused = send(
        app.client.post(app.url("/v1/auth/login")),
        Some(serde_json::json!({"email": "nobody@example.com", "password": "wrong-password-1"})),
    )
    .await;
    assert_eq!(refused.header("x-content-type-options"), Some("nosniff"));
    assert!(refused.header("cache-control").is_none());
    // The page a browser renders carries the page's defences.
    let docs = send(app.client.get(app.url("/docs")), None).await;
    assert_eq!(docs.status, StatusCode::OK);
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-cache"),
    ] {
        assert_eq!(docs.header(name), Some(value), "{name} on /docs");
    }
    assert!(docs
        .header("content-security-policy")
        .is_some_and(|csp| csp.contains("frame-ancestors 'none'")));
    // No origin is allowed by default: a preflight is a plain OPTIONS (405).
    let preflight = send(
        app.client
            .request(actix_web::http::Method::OPTIONS, app.url("/v1/cart/items"))
            .insert_header(("origin", "https://shop.example"))
            .insert_header(("access-control-request-method", "POST")),
        None,
    )
    .await;
    assert_eq!(preflight.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(preflight.header("access-control-allow-origin").is_none());
    app.stop().await;

    let app =
        spawn_with(|c| c.server.cors_allowed_origins = vec!["https://shop.example".into()]).await;
    let preflight = send(
        app.client
            .request(actix_web::http::Method::OPTIONS, app.url("/v1/cart/items"))
            .insert_header(("origin", "https://shop.example"))
            .insert_header(("access-control-request-method", "POST"))
            .insert_header((
                "access-control-request-headers",
                "authorization, content-type, idempotency-key",
            )),
        None,
    )
    .await;
    assert_eq!(preflight.status, StatusCode::OK, "{:?}", preflight.body);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    assert!(preflight
        .header("access-control-allow-methods")
        .is_some_and(|m| m.contains("POST")));
    let simple = send(
        app.client
            .get(app.url("/healthz"))
            .insert_header(("origin", "https://shop.example")),
        None,
    )
    .await;
    assert_eq!(
        simple.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let stranger = send(
        app.client
            .get(app.url("/healthz"))
            .insert_header(("origin", "https://evil.example")),
        None,
    )
    .await;
    assert!(stranger.header("access-control-allow-origin").is_none());
    app.stop().await;
}
