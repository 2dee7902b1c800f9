//! Accounts and tokens: bad tokens of every kind are 401, refresh tokens rotate
//! and a reused one revokes its family, logout revokes, login reveals nothing
//! about which accounts exist, and login attempts are rate limited.

use std::sync::Arc;

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use flashdrop::auth::TokenKeys;
use flashdrop::clock::{Clock, ManualClock, SystemClock};
use flashdrop::domain::identity::Role;
use flashdrop::domain::UserId;

use crate::helpers::{
    bearer, send, spawn_app, spawn_clocked, spawn_config, spawn_with, test_config, Response,
    TestApp, PASSWORD, TEST_SECRET,
};

fn assert_unauthenticated(response: &Response, why: &str) {
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{why}: {:?}",
        response.body
    );
    assert_eq!(response.code(), "unauthenticated", "{why}");
    assert!(
        response
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{why}: no WWW-Authenticate"
    );
}

async fn me(app: &TestApp, token: &str) -> Response {
    app.get_as("/v1/auth/me", Some(token)).await
}

async fn logout(app: &TestApp, token: &str) -> Response {
    send(
        app.client
            .post(app.url("/v1/auth/logout"))
            .insert_header(bearer(token)),
        None,
    )
    .await
}

async fn refresh(app: &TestApp, token: &str) -> Response {
    app.post_json("/v1/auth/refresh", None, json!({ "refresh_token": token }))
        .await
}

fn keys(secret: &str, issuer: &str, audience: &str) -> TokenKeys {
    TokenKeys::new(secret.as_bytes(), issuer, audience, 900, 3600)
}

#[actix_web::test]
async fn expired_tampered_wrong_key_alg_none_and_wrong_audience_tokens_are_rejected() {
    let app = spawn_app().await;
    let ana = app.buyer("ana").await;
    assert_eq!(me(&app, &ana.access_token).await.status, StatusCode::OK);
    let user = UserId::parse(&ana.user_id).unwrap();
    let now = SystemClock.now_ms();

    let (expired, _) = keys(TEST_SECRET, "flashdrop", "flashdrop-api").issue_access(
        user,
        Role::Buyer,
        None,
        1,
        now - 901_000,
    );
    assert_unauthenticated(&me(&app, &expired).await, "expired");

    let (wrong_key, _) = keys(
        "another-secret-that-is-long-enough-000",
        "flashdrop",
        "flashdrop-api",
    )
    .issue_access(user, Role::Buyer, None, 1, now);
    assert_unauthenticated(&me(&app, &wrong_key).await, "wrong key");

    let (wrong_audience, _) =
        keys(TEST_SECRET, "flashdrop", "another-api").issue_access(user, Role::Buyer, None, 1, now);
    assert_unauthenticated(&me(&app, &wrong_audience).await, "wrong audience");

    let (wrong_issuer, _) = keys(TEST_SECRET, "someone-else", "flashdrop-api").issue_access(
        user,
        Role::Buyer,
        None,
        1,
        now,
    );
    assert_unauthenticated(&me(&app, &wrong_issuer).await, "wrong issuer");

    // Same claims, the header swapped for {"alg":"none","typ":"JWT"}, no signature.
    let parts: Vec<&str> = ana.access_token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    assert_unauthenticated(&me(&app, &none).await, "alg none");
    // ... and {"alg":"HS512","typ":"JWT"} with the original signature.
    let other_alg = format!(
        "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.{}.{}",
        parts[1], parts[2]
    );
    assert_unauthenticated(&me(&app, &other_alg).await, "algorithm swapped");

    // One payload character changed: the signature no longer matches.
    let mut payload: Vec<u8> = parts[1].bytes().collect();
    let at = payload.len() / 2;
    payload[at] = if payload[at] == b'A' { b'B' } else { b'A' };
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        String::from_utf8(payload).unwrap(),
        parts[2]
    );
    assert_unauthenticated(&me(&app, &tampered).await, "tampered payload");
    let resigned = format!("{}.{}.{}x", parts[0], parts[1], parts[2]);
    assert_unauthenticated(&me(&app, &resigned).await, "tampered signature");

    for garbage in ["", "Bearer", "a.b", "a.b.c.d", "....", "é"] {
        let response = send(
            app.client
                .get(app.url("/v1/auth/me"))
                .insert_header(("authorization", format!("Bearer {garbage}"))),
            None,
        )
        .await;
        assert_unauthenticated(&response, garbage);
    }
    let none_at_all = send(app.client.get(app.url("/v1/auth/me")), None).await;
    assert_unauthenticated(&none_at_all, "no header");
    // The genuine token still works: nothing above changed anything.
    assert_eq!(me(&app, &ana.access_token).await.status, StatusCode::OK);
    app.stop().await;
}

#[actix_web::test]
async fn access_tokens_expire_by_the_engine_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_795_000_000_000));
    let app = spawn_clocked(test_config(dir.path()), Some(dir), clock.clone()).await;
    let ana = app.buyer("ana").await;
    clock.advance_ms(899_000);
    assert_eq!(me(&app, &ana.access_token).await.status, StatusCode::OK);
    clock.advance_ms(1_000);
    let expired = me(&app, &ana.access_token).await;
    assert_unauthenticated(&expired, "15 minutes later");
    assert!(expired.body["detail"].as_str().unwrap().contains("expired"));
    // The refresh token outlives it and brings a fresh access token.
    let fresh = refresh(&app, &ana.refresh_token).await;
    assert_eq!(fresh.status, StatusCode::OK, "{:?}", fresh.body);
    let token = fresh.body["access_token"].as_str().unwrap();
    assert_eq!(me(&app, token).await.status, StatusCode::OK);
    app.stop().await;
}

#[actix_web::test]
async fn refresh_rotates_and_reuse_of_an_old_token_revokes_the_family() {
    let app = spawn_app().await;
    let ana = app.buyer("ana").await;
    let other_session = app
        .post_json(
            "/v1/auth/login",
            None,
            json!({"email": ana.email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(other_session.status, StatusCode::OK);

    let first = ana.refresh_token.clone();
    let second = refresh(&app, &first).await;
    assert_eq!(second.status, StatusCode::OK, "{:?}", second.body);
    let second_refresh = second.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first, "a new refresh token every time");
    assert_eq!(second.body["token_type"], "Bearer");
    assert_eq!(second.body["expires_in"], 900);
    let third = refresh(&app, &second_refresh).await;
    assert_eq!(third.status, StatusCode::OK);
    let third_refresh = third.body["refresh_token"].as_str().unwrap().to_owned();
    let third_access = third.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(me(&app, &third_access).await.status, StatusCode::OK);

    // A forgery (generation bumped, MAC kept) is refused and revokes nothing.
    let forged = third_refresh.replacen(".3.", ".4.", 1);
    let refused = refresh(&app, &forged).await;
    assert_eq!(refused.code(), "invalid_refresh_token");
    assert_eq!(me(&app, &third_access).await.status, StatusCode::OK);

    // The first token again: theft is assumed and the family dies.
    let reused = refresh(&app, &first).await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reused.code(), "refresh_token_reused", "{:?}", reused.body);
    let after = refresh(&app, &third_refresh).await;
    assert_eq!(
        after.code(),
        "invalid_refresh_token",
        "the newest token died too"
    );
    assert_unauthenticated(&me(&app, &third_access).await, "access of a revoked family");
    assert_unauthenticated(&me(&app, &ana.access_token).await, "older access too");

    // The other login is another family and lives on.
    let other = other_session.body["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&app, other).await.status, StatusCode::OK);
    let audit_actions = audit_actions_of(&app, &ana.user_id).await;
    assert!(audit_actions.contains(&"session.reuse_detected".to_owned()));
    app.stop().await;
}

async fn audit_actions_of(app: &TestApp, user: &str) -> Vec<String> {
    let items = app
        .engine
        .directory()
        .audit_page(
            &flashdrop::services::identity::AuditFilter {
                actor: UserId::parse(user),
                ..Default::default()
            },
            None,
            100,
        )
        .unwrap()
        .0;
    items.into_iter().map(|e| e.action).collect()
}

#[actix_web::test]
async fn logout_revokes_refresh_and_access_tokens_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let app = spawn_config(config.clone(), None).await;
    let ana = app.buyer("ana").await;
    assert_eq!(
        logout(&app, &ana.access_token).await.status,
        StatusCode::NO_CONTENT
    );
    assert_unauthenticated(&me(&app, &ana.access_token).await, "after logout");
    assert_eq!(
        refresh(&app, &ana.refresh_token).await.code(),
        "invalid_refresh_token"
    );
    app.stop().await;

    let app = spawn_config(config, Some(dir)).await;
    assert_unauthenticated(
        &me(&app, &ana.access_token).await,
        "after logout and restart",
    );
    assert_eq!(
        refresh(&app, &ana.refresh_token).await.code(),
        "invalid_refresh_token"
    );
    let again = app
        .post_json(
            "/v1/auth/login",
            None,
            json!({"email": ana.email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "the account itself survives");
    app.stop().await;
}

#[actix_web::test]
async fn ended_sessions_and_unfollows_are_purged_after_their_retention_and_stay_gone() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    crate::helpers::with_admin(&mut config);
    config.retention.sweep_interval_s = 1;
    config.retention.sessions_s = config.auth.access_ttl_s;
    config.retention.unfollows_s = 60;
    let clock = Arc::new(ManualClock::new(1_795_000_000_000));
    let app = spawn_clocked(config.clone(), None, clock.clone()).await;
    let maker = app.seller("maker").await.tenant_id.unwrap();
    let ana = app.buyer("ana").await;
    let fan = app.buyer("fan").await;
    let follow = format!("/v1/users/{maker}/follow");
    let r = app
        .post_json(&follow, Some(&fan.access_token), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let r = send(
        app.client
            .delete(app.url(&follow))
            .insert_header(bearer(&fan.access_token)),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(
        logout(&app, &ana.access_token).await.status,
        StatusCode::NO_CONTENT
    );
    let before = app.engine.directory().resident();
    assert_eq!(before.unfollows, 1);

    // Just short of the retention nothing goes, however many sweeps run.
    clock.advance_ms(config.auth.access_ttl_s * 1000 - 1);
    let purged = crate::helpers::eventually(std::time::Duration::from_secs(30), || async {
        (app.engine.directory().resident().unfollows == 0).then_some(())
    })
    .await;
    assert!(purged.is_some(), "the unfollow went after 60 s");
    assert_eq!(
        app.engine.directory().resident().sessions,
        before.sessions,
        "the logged-out session is kept for its retention"
    );
    assert_eq!(
        refresh(&app, &ana.refresh_token).await.code(),
        "invalid_refresh_token"
    );
    clock.advance_ms(1);
    let after = crate::helpers::eventually(std::time::Duration::from_secs(30), || async {
        let now = app.engine.directory().resident();
        (now.sessions == before.sessions - 1).then_some(now)
    })
    .await
    .expect("the logged-out session is purged once its retention passed");
    assert_eq!(after.unfollows, 0);
    // What went is answered as what never was; everything live still works.
    assert_eq!(
        refresh(&app, &ana.refresh_token).await.code(),
        "invalid_refresh_token"
    );
    let fan_fresh = refresh(&app, &fan.refresh_token).await;
    assert_eq!(fan_fresh.status, StatusCode::OK, "{:?}", fan_fresh.body);
    let fan_token = fan_fresh.body["access_token"].as_str().unwrap().to_owned();
    let r = app.post_json(&follow, Some(&fan_token), json!({})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "following again works");
    let creator = app.get_as(&format!("/v1/creators/{maker}"), None).await;
    assert_eq!(creator.body["followers"], 1);
    app.stop().await;

    // Nothing purged comes back from the WAL or a snapshot.
    let app = spawn_clocked(config, Some(dir), clock.clone()).await;
    let recovered = app.engine.directory().resident();
    assert_eq!(recovered.sessions, after.sessions);
    assert_eq!(recovered.unfollows, 0);
    assert_eq!(
        refresh(&app, &ana.refresh_token).await.code(),
        "invalid_refresh_token"
    );
    let creator = app.get_as(&format!("/v1/creators/{maker}"), None).await;
    assert_eq!(creator.body["followers"], 1, "the new follow survives");
    app.stop().await;
}

async fn verifications(app: &TestApp) -> u64 {
    app.engine.directory().password_verifications()
}

#[actix_web::test]
async fn login_and_registration_reveal_nothing_about_accounts() {
    let app = spawn_app().await;
    let ana = app.buyer("ana").await;
    let before = verifications(&app).await;
    let wrong_password = app
        .post_json(
            "/v1/auth/login",
            None,
            json!({"email": ana.email, "password": "not-the-Password-1"}),
        )
        .await;
    let unknown = app
        .post_json(
            "/v1/auth/login",
            None,
            json!({"email": "nobody@test.example", "password": "not-the-Password-1"}),
        )
        .await;
    let malformed = app
        .post_json(
            "/v1/auth/login",
            None,
            json!({"email": "not an address", "password": "x"}),
        )
        .await;
    for response in [&wrong_password, &unknown, &malformed] {
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
        assert_eq!(response.code(), "invalid_credentials");
        assert_eq!(response.body["detail"], wrong_password.body["detail"]);
    }
    // Every attempt paid for a password hash, known account or not.
    assert_eq!(verifications(&app).await - before, 3);

    let taken = app
        .post_json(
            "/v1/auth/register",
            None,
            json!({"email": ana.email, "password": "a-Different-pass-9"}),
        )
        .await;
    let fresh = app
        .post_json(
            "/v1/auth/register",
            None,
            json!({"email": "new@test.example", "password": "a-Different-pass-9"}),
        )
        .await;
    assert_eq!(taken.status, StatusCode::ACCEPTED);
    assert_eq!(taken.body, fresh.body);
    // The taken address kept its password.
    let login = app
        .post_json(
            "/v1/auth/login",
            None,
            json!({"email": ana.email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
    app.stop().await;
}

#[actix_web::test]
async fn registration_enforces_the_password_policy_and_address_shape() {
    let app = spawn_app().await;
    for (body, field) in [
        (
            json!({"email": "a@test.example", "password": "short-1"}),
            "password",
        ),
        (
            json!({"email": "a@test.example", "password": "aaaaaaaaaaaaaaaa"}),
            "password",
        ),
        (
            json!({"email": "a@test.example", "password": "Password1234"}),
            "password",
        ),
        (
            json!({"email": "nope", "password": "a-Good-password-1"}),
            "email",
        ),
    ] {
        let response = app.post_json("/v1/auth/register", None, body).await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{:?}",
            response.body
        );
        assert_eq!(response.body["errors"][0]["field"], field);
    }
    let unknown_field = app
        .post_json("/v1/auth/register", None, json!({"email": "a@test.example", "password": "a-Good-password-1", "role": "platform_admin"}))
        .await;
    assert_eq!(
        unknown_field.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no choosing a role"
    );
    app.stop().await;
}

#[actix_web::test]
async fn login_attempts_are_limited_per_account_and_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_795_000_000_000));
    let mut config = test_config(dir.path());
    config.auth.login_burst_per_account = 3;
    config.auth.login_refill_per_account_s = 60;
    config.auth.login_burst_per_address = 8;
    config.auth.login_refill_per_address_s = 30;
    let app = spawn_clocked(config, Some(dir), clock.clone()).await;
    // Registration and the helper's login spend 2 of the address's 8.
    let ana = app.buyer("ana").await;
    let wrong = json!({"email": ana.email, "password": "wrong-Password-1"});
    let right = json!({"email": ana.email, "password": PASSWORD});
    for _ in 0..2 {
        let r = app.post_json("/v1/auth/login", None, wrong.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let limited = app.post_json("/v1/auth/login", None, wrong.clone()).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        limited.body
    );
    assert_eq!(limited.code(), "rate_limited");
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let even_right = app.post_json("/v1/auth/login", None, right.clone()).await;
    assert_eq!(
        even_right.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the account is cooling down"
    );

    // Other accounts from the same address: the address limit (8) ends them too.
    let mut statuses = Vec::new();
    for i in 0..4 {
        let r = app
            .post_json(
                "/v1/auth/login",
                None,
                json!({"email": format!("x{i}@test.example"), "password": "wrong-Password-1"}),
            )
            .await;
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses, vec![401, 401, 429, 429], "by address");

    clock.advance_ms(60_000);
    let later = app.post_json("/v1/auth/login", None, right).await;
    assert_eq!(later.status, StatusCode::OK, "{:?}", later.body);
    app.stop().await;
}

#[actix_web::test]
async fn the_first_platform_admin_comes_from_config() {
    let app = spawn_with(|c| {
        c.auth.bootstrap_admin_email = "Root@Platform.example".into();
        c.auth.bootstrap_admin_password = PASSWORD.into();
    })
    .await;
    let login = app
        .post_json(
            "/v1/auth/login",
            None,
            json!({"email": "root@platform.example", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{:?}", login.body);
    assert_eq!(login.body["account"]["role"], "platform_admin");
    let token = login.body["access_token"].as_str().unwrap();
    let me: Value = me(&app, token).await.body;
    assert_eq!(me["role"], "platform_admin");
    // A platform admin cannot open a store (it has the platform already).
    let store = app
        .post_json("/v1/tenants", Some(token), json!({"name": "mine"}))
        .await;
    assert_eq!(store.status, StatusCode::FORBIDDEN);
    app.stop().await;
}

#[actix_web::test]
async fn admin_create_makes_a_platform_admin_in_a_stopped_servers_data() {
    let dir = tempfile::tempdir().unwrap();
    let run = |email: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_flashdrop"))
            .args(["admin", "create", "--email", email, "--data-dir"])
            .arg(dir.path())
            .env("FLASHDROP__AUTH__JWT_SECRET", TEST_SECRET)
            .env("FLASHDROP__LOG__LEVEL", "error")
            .env("FLASHDROP_ADMIN_PASSWORD", PASSWORD)
            .output()
            .expect("the binary runs")
    };
    let created = run("ops@platform.example");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let again = run("ops@platform.example");
    assert!(!again.status.success(), "a second time: the account exists");
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    let weak = std::process::Command::new(env!("CARGO_BIN_EXE_flashdrop"))
        .args([
            "admin",
            "create",
            "--email",
            "x@platform.example",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("FLASHDROP__AUTH__JWT_SECRET", TEST_SECRET)
        .env("FLASHDROP_ADMIN_PASSWORD", "short")
        .output()
        .unwrap();
    assert!(!weak.status.success(), "the password policy applies");

    let mut config = test_config(dir.path());
    config.storage.data_dir = dir.path().to_path_buf();
    let app = spawn_config(config, Some(dir)).await;
    let login = app
        .post_json(
            "/v1/auth/login",
            None,
            json!({"email": "ops@platform.example", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{:?}", login.body);
    assert_eq!(login.body["account"]["role"], "platform_admin");
    app.stop().await;
}

#[actix_web::test]
async fn serve_refuses_to_start_without_a_secret_outside_dev_mode() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flashdrop"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .env_remove("FLASHDROP__AUTH__JWT_SECRET")
        .env("FLASHDROP__AUTH__JWT_SECRET", "")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("auth.jwt_secret"), "{stderr}");
    let short = std::process::Command::new(env!("CARGO_BIN_EXE_flashdrop"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .env("FLASHDROP__AUTH__JWT_SECRET", "short-secret")
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 32"));
}
