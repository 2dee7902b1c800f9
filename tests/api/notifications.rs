//! Order notifications leave the engine: e-mail to the buyer over SMTP (a
//! real SMTP conversation with a server the test runs on loopback) and a
//! signed webhook to each seller, retried, dead-lettered, and sent again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use super::helpers::*;

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[actix_web::test]
async fn buyers_get_email_and_sellers_signed_webhooks_with_retries_and_dead_letters() {
    let (smtp_port, inbox) = smtp_server().await;
    let (hook_port, hooks) = webhook_server();
    let app = spawn_with(|c| {
        with_admin(c);
        c.notifications.smtp_host = "127.0.0.1".into();
        c.notifications.smtp_port = smtp_port;
        c.notifications.backoff_ms = 50;
        c.notifications.max_attempts = 3;
        // The test's webhook receiver is on loopback.
        c.outbound.allowed_networks = vec!["127.0.0.1/32".into()];
    })
    .await;
    let admin = app.platform_admin().await;
    app.stocked_sku("mail", "M-BOOK", 10).await;
    let seller = app.seller("mail").await;
    let store = seller.tenant_id.clone().unwrap();
    let url = format!("http://127.0.0.1:{hook_port}/hooks/flashdrop");
    let bad = send(
        app.client
            .put(app.url(&format!("/v1/tenants/{store}")))
            .insert_header(bearer(&seller.access_token)),
        Some(json!({"webhook_url": "ftp://nope"})),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let set = send(
        app.client
            .put(app.url(&format!("/v1/tenants/{store}")))
            .insert_header(bearer(&seller.access_token)),
        Some(json!({"webhook_url": url})),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    let key = set.body["webhook_secret"]
        .as_str()
        .expect("the store's signing key")
        .to_owned();

    let buyer = app.buyer("ivy").await;
    let placed = place(
        &app,
        &buyer.access_token,
        json!([{"sku": "M-BOOK", "quantity": 1}]),
        "pm_card_visa",
        true,
    )
    .await;
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    order_in(&app, &buyer.access_token, &id, &["paid"]).await;
    for state in ["packed", "shipped", "delivered"] {
        let moved = app
            .post_json(
                &format!("/v1/orders/{id}/fulfillment"),
                Some(&seller.access_token),
                json!({"state": state, "tracking": "TRK-1"}),
            )
            .await;
        assert_eq!(moved.status, StatusCode::OK);
    }
    let events = [
        "order.placed",
        "order.paid",
        "order.shipped",
        "order.delivered",
    ];
    let webhooks = eventually(Duration::from_secs(10), || async {
        let got = hooks.received.lock().clone();
        (got.len() >= 4).then_some(got)
    })
    .await
    .expect("the seller's webhooks arrive");
    let names: Vec<&str> = webhooks.iter().map(|(e, _, _)| e.as_str()).collect();
    for event in events {
        assert!(names.contains(&event), "{event}: {names:?}");
    }
    for (event, signature, body) in &webhooks {
        flashdrop::payments::signature::verify(
            key.as_bytes(),
            signature,
            body.as_bytes(),
            now_s(),
            300,
        )
        .unwrap_or_else(|e| panic!("{event}: {e}"));
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["order_id"], id.as_str());
        assert_eq!(body["event"], event.as_str());
        assert_eq!(body["lines"][0]["sku"], "M-BOOK");
    }
    let mail = eventually(Duration::from_secs(10), || async {
        let got = inbox.lock().clone();
        (got.len() >= 4).then_some(got)
    })
    .await
    .expect("the buyer's e-mails arrive");
    let all = mail.join("\n---\n");
    for state in ["payment pending", "paid", "shipped", "delivered"] {
        assert!(all.contains(&format!("is {state}")), "{state}: {all}");
    }
    assert!(all.contains(&buyer.email), "addressed to the buyer: {all}");

    // A seller endpoint that keeps failing: retried, then dead-lettered.
    hooks.failing.store(true, Ordering::Relaxed);
    let before = hooks.received.lock().len();
    let second = place(
        &app,
        &buyer.access_token,
        json!([{"sku": "M-BOOK", "quantity": 1}]),
        "pm_card_visa",
        true,
    )
    .await;
    let second_id = second.body["order_id"].as_str().unwrap().to_owned();
    let dead = eventually(Duration::from_secs(10), || async {
        let list = app
            .get_as("/v1/admin/notifications/dead-letters", Some(&admin))
            .await;
        let items = list.body["items"].as_array().cloned().unwrap_or_default();
        (items.len() >= 2).then_some(items)
    })
    .await
    .expect("failed deliveries reach the dead-letter list");
    assert!(
        dead.iter()
            .all(|d| d["attempts"] == 3 && d["channel"] == "webhook"),
        "{dead:?}"
    );
    // A page at a time, oldest first: the pages together are the list.
    let first = app
        .get_as("/v1/admin/notifications/dead-letters?limit=1", Some(&admin))
        .await;
    assert_eq!(first.body["items"].as_array().map(Vec::len), Some(1));
    let cursor = first.body["next_cursor"].as_str().expect("more follow");
    let rest = app
        .get_as(
            &format!("/v1/admin/notifications/dead-letters?limit=100&cursor={cursor}"),
            Some(&admin),
        )
        .await;
    assert_eq!(rest.body["next_cursor"], json!(null));
    let paged: Vec<&serde_json::Value> = first.body["items"]
        .as_array()
        .into_iter()
        .chain(rest.body["items"].as_array())
        .flatten()
        .collect();
    assert_eq!(first.body["total"], paged.len());
    assert_eq!(paged[..dead.len()], dead.iter().collect::<Vec<_>>());
    for bad in ["limit=0", "limit=101", "cursor=abc", "cursor=-1"] {
        let refused = app
            .get_as(
                &format!("/v1/admin/notifications/dead-letters?{bad}"),
                Some(&admin),
            )
            .await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let as_seller = app
        .get_as(
            "/v1/admin/notifications/dead-letters",
            Some(&seller.access_token),
        )
        .await;
    assert_eq!(as_seller.status, StatusCode::FORBIDDEN);
    hooks.failing.store(false, Ordering::Relaxed);
    for letter in &dead {
        let retried = app
            .post_json(
                &format!(
                    "/v1/admin/notifications/dead-letters/{}/retry",
                    letter["id"].as_str().unwrap()
                ),
                Some(&admin),
                json!({}),
            )
            .await;
        assert_eq!(retried.status, StatusCode::ACCEPTED, "{:?}", retried.body);
    }
    let missing = app
        .post_json(
            "/v1/admin/notifications/dead-letters/999999/retry",
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(missing.code(), "notification_not_found");
    let redelivered = eventually(Duration::from_secs(10), || async {
        let got = hooks.received.lock().clone();
        (got.len() >= before + dead.len()).then_some(got)
    })
    .await
    .expect("retried dead letters are delivered");
    assert!(redelivered[before..]
        .iter()
        .all(|(_, _, body)| body.contains(&second_id)));
    let empty = app
        .get_as("/v1/admin/notifications/dead-letters", Some(&admin))
        .await;
    assert_eq!(empty.body["items"], json!([]));
    app.stop().await;
}

/// Sets a store's webhook URL as its seller admin.
async fn set_webhook(app: &TestApp, seller: &Identity, url: &str) -> Response {
    let store = seller.tenant_id.clone().unwrap();
    send(
        app.client
            .put(app.url(&format!("/v1/tenants/{store}")))
            .insert_header(bearer(&seller.access_token)),
        Some(json!({"webhook_url": url})),
    )
    .await
}

#[actix_web::test]
async fn webhook_urls_inside_the_network_are_refused_when_set() {
    let app = spawn_app().await;
    let seller = app.seller("inside").await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.7/hook",
        "http://172.20.1.1/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9000/hook",
        "http://[fd00:ec2::254]/latest",
        "http://[fe80::1]/hook",
        "http://224.0.0.1/hook",
        "http://localhost:9000/hook",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://2130706433/hook",
    ] {
        let refused = set_webhook(&app, &seller, url).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        assert_eq!(refused.body["errors"][0]["field"], "webhook_url", "{url}");
    }
    let store = seller.tenant_id.clone().unwrap();
    let view = app
        .get_as(&format!("/v1/tenants/{store}"), Some(&seller.access_token))
        .await;
    assert_eq!(view.body["webhook_url"], Value::Null, "nothing was set");
    app.stop().await;
}

#[actix_web::test]
async fn a_name_that_resolves_inside_is_refused_when_set_and_at_delivery_and_the_allow_list_admits_the_receiver(
) {
    let (hook_port, hooks) = webhook_server();
    let resolver = Arc::new(TestResolver::default());
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_admin(&mut config);
    let externals = flashdrop::app::Externals {
        resolver: resolver.clone(),
        ..flashdrop::app::Externals::system()
    };
    let app = spawn_externals(config, Some(dir), externals).await;
    let admin = app.platform_admin().await;
    app.stocked_sku("rebind", "RB-1", 10).await;
    let seller = app.seller("rebind").await;
    let url = format!("http://hooks.rebind.test:{hook_port}/hook");

    // A name that resolves inside is refused when set ...
    resolver.set("hooks.rebind.test", "127.0.0.1");
    let refused = set_webhook(&app, &seller, &url).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body["detail"]
        .as_str()
        .unwrap()
        .contains("loopback"));
    // ... and one that resolved outside when set, then inside (DNS
    // rebinding), is refused when the message is delivered.
    resolver.set("hooks.rebind.test", "203.0.113.50");
    assert_eq!(
        set_webhook(&app, &seller, &url).await.status,
        StatusCode::OK
    );
    resolver.set("hooks.rebind.test", "127.0.0.1");
    let buyer = app.buyer("rb-buyer").await;
    let placed = place(
        &app,
        &buyer.access_token,
        json!([{"sku": "RB-1", "quantity": 1}]),
        "pm_card_visa",
        true,
    )
    .await;
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    order_in(&app, &buyer.access_token, &id, &["paid"]).await;
    let dead = eventually(Duration::from_secs(10), || async {
        let list = app
            .get_as("/v1/admin/notifications/dead-letters", Some(&admin))
            .await;
        let items = list.body["items"].as_array().cloned().unwrap_or_default();
        (!items.is_empty()).then_some(items)
    })
    .await
    .expect("the refused delivery is a dead letter at once");
    assert!(
        dead.iter().all(|d| d["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused") && e.contains("loopback"))),
        "{dead:?}"
    );
    assert!(
        hooks.received.lock().is_empty(),
        "nothing reached the receiver"
    );
    app.stop().await;

    // The allow-list admits the test's receiver, by the same name.
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.outbound.allowed_networks = vec!["127.0.0.1/32".into()];
    let externals = flashdrop::app::Externals {
        resolver: resolver.clone(),
        ..flashdrop::app::Externals::system()
    };
    let app = spawn_externals(config, Some(dir), externals).await;
    app.stocked_sku("allowed", "AL-1", 10).await;
    let seller = app.seller("allowed").await;
    assert_eq!(
        set_webhook(&app, &seller, &url).await.status,
        StatusCode::OK
    );
    let buyer = app.buyer("al-buyer").await;
    let placed = place(
        &app,
        &buyer.access_token,
        json!([{"sku": "AL-1", "quantity": 1}]),
        "pm_card_visa",
        true,
    )
    .await;
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    order_in(&app, &buyer.access_token, &id, &["paid"]).await;
    let delivered = eventually(Duration::from_secs(10), || async {
        let got = hooks.received.lock().clone();
        (!got.is_empty()).then_some(got)
    })
    .await
    .expect("the allowed receiver gets the webhook");
    assert_eq!(delivered[0].0, "order.placed");
    app.stop().await;
}

#[actix_web::test]
async fn once_its_marks_are_purged_an_old_order_is_not_announced_again_after_a_restart() {
    let (hook_port, hooks) = webhook_server();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_admin(&mut config);
    config.outbound.allowed_networks = vec!["127.0.0.1/32".into()];
    config.retention.sweep_interval_s = 1;
    config.retention.notification_keys_s = 3_600;
    let clock = Arc::new(flashdrop::clock::ManualClock::new(1_795_000_000_000));
    let app = spawn_clocked(config.clone(), None, clock.clone()).await;
    app.stocked_sku("olds", "O-LAMP", 10).await;
    let seller = app.seller("olds").await;
    let url = format!("http://127.0.0.1:{hook_port}/hooks");
    assert_eq!(
        set_webhook(&app, &seller, &url).await.status,
        StatusCode::OK
    );
    let buyer = app.buyer("old").await;
    let first = place(
        &app,
        &buyer.access_token,
        json!([{"sku": "O-LAMP", "quantity": 1}]),
        "pm_card_visa",
        true,
    )
    .await;
    let first = first.body["order_id"].as_str().unwrap().to_owned();
    order_in(&app, &buyer.access_token, &first, &["paid"]).await;
    let delivered = |n: usize| {
        let hooks = hooks.clone();
        async move {
            eventually(Duration::from_secs(20), || async {
                let got = hooks.received.lock().clone();
                (got.len() >= n).then_some(got)
            })
            .await
            .expect("the webhooks arrive")
        }
    };
    let before: Vec<String> = delivered(2).await.into_iter().map(|(e, _, _)| e).collect();
    assert_eq!(before, ["order.placed", "order.paid"]);
    let notifier = app.engine.notifier().clone();
    assert!(notifier.marked_keys() >= 2);

    clock.advance_ms(3_600_000);
    let purged = eventually(Duration::from_secs(30), || async {
        (notifier.marked_keys() == 0).then_some(())
    })
    .await;
    assert!(purged.is_some(), "the marks went after an hour");
    drop(notifier);
    app.stop().await;

    // The restart announces only what is younger than the marks' retention:
    // a new order's webhooks arrive, the old order's never again.
    let app = spawn_clocked(config, Some(dir), clock.clone()).await;
    let fresh = app
        .post_json(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": buyer.refresh_token}),
        )
        .await;
    let token = fresh.body["access_token"].as_str().unwrap().to_owned();
    let second = place(
        &app,
        &token,
        json!([{"sku": "O-LAMP", "quantity": 1}]),
        "pm_card_visa",
        true,
    )
    .await;
    let second = second.body["order_id"].as_str().unwrap().to_owned();
    order_in(&app, &token, &second, &["paid"]).await;
    let after = delivered(4).await;
    let orders: Vec<String> = after
        .iter()
        .map(|(_, _, body)| {
            let body: Value = serde_json::from_str(body).unwrap();
            body["order_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        orders,
        [&first, &first, &second, &second].map(String::as_str),
        "{after:?}"
    );
    // The last delivery is settled just after the receiver answered it.
    let drained = eventually(Duration::from_secs(20), || async {
        (app.engine.notifier().pending_count() == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "nothing else is queued");
    assert_eq!(hooks.received.lock().len(), 4, "and nothing else arrived");
    app.stop().await;
}
