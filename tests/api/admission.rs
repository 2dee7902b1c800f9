//! Admission control: per-buyer and per-store limits answer 429 with
//! `Retry-After` and `X-RateLimit-Remaining`; a drop's waiting room admits
//! shoppers in arrival order and tells everyone still waiting at once when
//! the drop sells out.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::json;

use flashdrop::clock::ManualClock;

use crate::helpers::{
    eventually, minted_buyer, reserve_as, scheduled, spawn_clocked, spawn_with, test_config,
    WsClient,
};

const T0: u64 = 1_800_000_000_000;

#[actix_web::test]
async fn a_buyer_past_their_rate_gets_429_with_the_headers_and_others_do_not() {
    let app = spawn_with(|c| {
        c.admission.buyer_burst = 3;
        c.admission.buyer_refill_ms = 60_000;
    })
    .await;
    app.stocked_sku("rate", "RATE-1", 100).await;
    let (token, _) = minted_buyer(&app.engine, 1);
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let ok = reserve_as(&app, &token, "RATE-1", json!({"quantity": 1})).await;
        assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);
        remaining.push(ok.header("x-ratelimit-remaining").unwrap().to_owned());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let limited = reserve_as(&app, &token, "RATE-1", json!({"quantity": 1})).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        app.stock("RATE-1").await["reserved"],
        3,
        "the refused one reserved nothing"
    );
    let (other, _) = minted_buyer(&app.engine, 2);
    let fine = reserve_as(&app, &other, "RATE-1", json!({"quantity": 1})).await;
    assert_eq!(fine.status, StatusCode::CREATED);
    app.stop().await;
}

#[actix_web::test]
async fn a_stores_shopper_traffic_is_limited_by_its_plan() {
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    // 120 requests a minute on the plan, shoppers get the same: 2 a second.
    config.tenants.default_requests_per_minute = 120;
    config.admission.tenant_shopper_multiplier = 1;
    let app = spawn_clocked(config, Some(dir), Arc::new(clock.clone())).await;
    app.stocked_sku("small-plan", "PLAN-1", 100).await;
    let mut statuses = Vec::new();
    for n in 0..3 {
        let (token, _) = minted_buyer(&app.engine, n);
        let answer = reserve_as(&app, &token, "PLAN-1", json!({"quantity": 1})).await;
        statuses.push(answer.status);
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(answer.header("retry-after").is_some());
            assert_eq!(answer.header("x-ratelimit-remaining"), Some("0"));
        }
    }
    assert_eq!(
        statuses,
        [
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    clock.advance_ms(1_000);
    let (token, _) = minted_buyer(&app.engine, 9);
    let next_second = reserve_as(&app, &token, "PLAN-1", json!({"quantity": 1})).await;
    assert_eq!(next_second.status, StatusCode::CREATED);
    app.stop().await;
}

#[actix_web::test]
async fn the_waiting_room_admits_in_arrival_order_and_tells_the_line_at_once_on_sell_out() {
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_clocked(test_config(dir.path()), Some(dir), Arc::new(clock.clone())).await;
    app.stocked_sku("queue", "Q-1", 3).await;
    let id = scheduled(
        &app,
        "queue",
        &["Q-1"],
        T0 + 10_000,
        T0 + 600_000,
        json!({"waiting_room": {"admit_per_s": 2, "pass_ttl_s": 120}}),
    )
    .await;
    let queue = format!("/v1/drops/{id}/queue");
    let buyers: Vec<(String, u128)> = (0..8).map(|n| minted_buyer(&app.engine, 100 + n)).collect();
    // Everyone still waiting at the sell-out listens on a WebSocket.
    let mut sockets = Vec::new();
    for (token, _) in &buyers[4..] {
        sockets.push(WsClient::connect(&app, Some(token)).await);
    }
    for (i, (token, _)) in buyers.iter().enumerate() {
        let joined = app.post_json(&queue, Some(token), json!({})).await;
        assert_eq!(joined.status, StatusCode::OK, "{:?}", joined.body);
        assert_eq!(
            joined.body["state"], "waiting",
            "nobody is admitted before the start"
        );
        assert_eq!(joined.body["position"], i as u64 + 1);
    }
    let again = app.post_json(&queue, Some(&buyers[3].0), json!({})).await;
    assert_eq!(again.body["position"], 4, "joining twice keeps the place");
    let no_pass = reserve_as(&app, &buyers[0].0, "Q-1", json!({"quantity": 1})).await;
    assert_eq!(no_pass.code(), "drop_not_live", "before the start");

    // Admissions come two a second, in arrival order.
    let standing = |token: String| {
        let app = &app;
        let queue = queue.clone();
        async move { app.get_as(&queue, Some(&token)).await.body }
    };
    let mut admitted_order = Vec::new();
    for step in 0..2u64 {
        if step == 0 {
            clock.advance_ms(10_000);
        } else {
            clock.advance_ms(1_000);
        }
        let expected = 2 * (step as usize + 1);
        let all_in = eventually(Duration::from_secs(10), || async {
            let mut admitted = Vec::new();
            for (i, (token, _)) in buyers.iter().enumerate() {
                if standing(token.clone()).await["state"] == "admitted" {
                    admitted.push(i);
                }
            }
            (admitted.len() >= expected).then_some(admitted)
        })
        .await
        .expect("admissions");
        for i in all_in {
            if !admitted_order.contains(&i) {
                admitted_order.push(i);
            }
        }
    }
    assert_eq!(admitted_order, [0, 1, 2, 3], "first come, first served");
    let waiting = standing(buyers[6].0.clone()).await;
    assert_eq!(waiting["state"], "waiting");
    assert_eq!(waiting["position"], 3);

    // Without a pass no reservation; with one, yes.
    let skipped = reserve_as(&app, &buyers[7].0, "Q-1", json!({"quantity": 1})).await;
    assert_eq!(skipped.code(), "queue_pass_required", "{:?}", skipped.body);
    for (token, _) in &buyers[..3] {
        let bought = reserve_as(&app, token, "Q-1", json!({"quantity": 1})).await;
        assert_eq!(bought.status, StatusCode::CREATED, "{:?}", bought.body);
    }
    // Sold out: buyers 4..8 are told at once, on their sockets and when they ask.
    for socket in &mut sockets {
        let told = socket
            .until(Duration::from_secs(10), |m| m["type"] == "queue")
            .await
            .expect("a queue message");
        assert_eq!(told["standing"]["state"], "sold_out", "{told}");
    }
    for (token, _) in &buyers[4..] {
        assert_eq!(standing(token.clone()).await["state"], "sold_out");
    }
    let late = app
        .post_json(&queue, Some(&minted_buyer(&app.engine, 999).0), json!({}))
        .await;
    assert_eq!(late.code(), "sold_out");
    app.stop().await;
}
