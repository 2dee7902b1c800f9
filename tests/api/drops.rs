//! Drops over HTTP and WebSocket on an injected clock: nothing sells before
//! the start or after the end, transitions arrive in order, a sold-out drop
//! comes back when reservations expire, per-buyer limits hold under
//! concurrency, cancellation, edits and rescheduling before the start,
//! `after_drop` (back to normal sale or closed), and bad requests.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use flashdrop::clock::{rfc3339_ms, ManualClock};

use crate::helpers::{
    bearer, create_drop, edit_drop, eventually, minted_buyer, reserve_as, scheduled, send,
    spawn_app, spawn_clocked, test_config, Response, TestApp, WsClient,
};

const T0: u64 = 1_800_000_000_000;

async fn drop_state(app: &TestApp, id: &str) -> Value {
    let response = app.get_as(&format!("/v1/drops/{id}"), None).await;
    assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);
    response.body
}

async fn clocked_app() -> (TestApp, ManualClock) {
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_clocked(test_config(dir.path()), Some(dir), Arc::new(clock.clone())).await;
    (app, clock)
}

/// The next drop message for `id` on `ws`; its state.
async fn next_drop_state(ws: &mut WsClient, id: &str) -> (String, u64) {
    let message = ws
        .until(Duration::from_secs(10), |m| {
            m["type"] == "drop" && m["id"] == id
        })
        .await
        .expect("a drop message");
    (
        message["state"].as_str().unwrap().to_owned(),
        message["seq"].as_u64().unwrap(),
    )
}

#[actix_web::test]
async fn a_drop_sells_only_while_live_and_announces_every_move_in_order() {
    let (app, clock) = clocked_app().await;
    app.stocked_sku("kicks", "KICKS-1", 3).await;
    let id = scheduled(
        &app,
        "kicks",
        &["KICKS-1"],
        T0 + 60_000,
        T0 + 120_000,
        json!({"per_buyer_limit": 2}),
    )
    .await;
    let mut ws = WsClient::connect(&app, None).await;
    ws.subscribe(&[&format!("drop:{id}"), "sku:KICKS-1"]).await;
    let (first, _) = next_drop_state(&mut ws, &id).await;
    assert_eq!(first, "scheduled", "a new watcher hears the current state");

    let (ana, _) = minted_buyer(&app.engine, 1);
    let (bo, _) = minted_buyer(&app.engine, 2);
    let early = reserve_as(&app, &ana, "KICKS-1", json!({"quantity": 1})).await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{:?}", early.body);
    assert_eq!(early.code(), "drop_not_live");
    assert_eq!(early.body["starts_at"], rfc3339_ms(T0 + 60_000));
    assert_eq!(app.stock("KICKS-1").await["available"], 3);

    clock.advance_ms(60_000);
    let mut seqs = Vec::new();
    let (state, seq) = next_drop_state(&mut ws, &id).await;
    assert_eq!(state, "live");
    seqs.push(seq);
    let held = reserve_as(&app, &ana, "KICKS-1", json!({"quantity": 2, "ttl_s": 30})).await;
    assert_eq!(held.status, StatusCode::CREATED, "{:?}", held.body);
    let over = reserve_as(&app, &ana, "KICKS-1", json!({"quantity": 1})).await;
    assert_eq!(over.code(), "purchase_limit_exceeded", "{:?}", over.body);
    assert_eq!(
        (over.body["limit"].clone(), over.body["used"].clone()),
        (json!(2), json!(2))
    );
    let last = reserve_as(&app, &bo, "KICKS-1", json!({"quantity": 1})).await;
    assert_eq!(last.status, StatusCode::CREATED, "{:?}", last.body);
    let (state, seq) = next_drop_state(&mut ws, &id).await;
    assert_eq!(state, "sold_out");
    seqs.push(seq);

    // Ana's hold expires: stock comes back and so does the drop.
    clock.advance_ms(31_000);
    assert_eq!(app.stock("KICKS-1").await["available"], 2);
    let (state, seq) = next_drop_state(&mut ws, &id).await;
    assert_eq!(state, "live");
    seqs.push(seq);
    let again = reserve_as(&app, &ana, "KICKS-1", json!({"quantity": 2})).await;
    assert_eq!(
        again.status,
        StatusCode::CREATED,
        "an expired hold frees the allowance"
    );

    // Sold out again (Ana took the last two) before the clock ends the drop.
    let (state, seq) = next_drop_state(&mut ws, &id).await;
    assert_eq!(state, "sold_out");
    seqs.push(seq);
    clock.advance_ms(30_000);
    let (state, seq) = next_drop_state(&mut ws, &id).await;
    assert_eq!(state, "ended");
    seqs.push(seq);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let late = reserve_as(&app, &bo, "KICKS-1", json!({"quantity": 1})).await;
    assert_eq!(late.code(), "drop_not_live", "{:?}", late.body);
    assert!(late.body["ended_at"].is_string());

    let view = drop_state(&app, &id).await;
    assert_eq!(view["state"], "ended");
    let history: Vec<&str> = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        ["scheduled", "live", "sold_out", "live", "sold_out", "ended"]
    );
    let stock = app.stock("KICKS-1").await;
    assert_eq!(stock["reserved"], 3);
    assert_eq!(stock["available"], 0);
    app.stop().await;
}

#[actix_web::test]
async fn a_restart_keeps_drops_and_their_gates() {
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let app = spawn_clocked(config.clone(), None, Arc::new(clock.clone())).await;
    app.stocked_sku("keep", "KEEP-1", 5).await;
    let id = scheduled(
        &app,
        "keep",
        &["KEEP-1"],
        T0 + 10_000,
        T0 + 20_000,
        json!({}),
    )
    .await;
    let identities = app.identities();
    app.stop().await;

    let app = spawn_clocked(config, Some(dir), Arc::new(clock.clone())).await;
    app.adopt(identities);
    assert_eq!(drop_state(&app, &id).await["state"], "scheduled");
    let (token, _) = minted_buyer(&app.engine, 1);
    let early = reserve_as(&app, &token, "KEEP-1", json!({"quantity": 1})).await;
    assert_eq!(early.code(), "drop_not_live");
    clock.advance_ms(10_000);
    let live = eventually(Duration::from_secs(10), || async {
        (drop_state(&app, &id).await["state"] == "live").then_some(())
    })
    .await;
    assert!(live.is_some(), "the recovered drop opens on time");
    let bought = reserve_as(&app, &token, "KEEP-1", json!({"quantity": 1})).await;
    assert_eq!(bought.status, StatusCode::CREATED, "{:?}", bought.body);
    app.stop().await;
}

/// Waits until the one open drop is all that is left in memory.
async fn only_the_open_drop_stays(app: &TestApp) {
    let left = eventually(Duration::from_secs(10), || async {
        (app.engine.drops().resident() == 1).then_some(())
    })
    .await;
    let resident = app.engine.drops().resident();
    assert!(left.is_some(), "drops in memory: {resident}");
}

#[actix_web::test]
async fn ended_drops_leave_memory_past_the_cap_and_answer_from_disk() {
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.drops.resident_max = 1;
    let app = spawn_clocked(config.clone(), None, Arc::new(clock.clone())).await;
    let mut ended = Vec::new();
    for n in 0..3 {
        let sku = format!("PAST-{n}");
        app.stocked_sku("past", &sku, 5).await;
        ended.push(scheduled(&app, "past", &[&sku], T0 + 10_000, T0 + 20_000, json!({})).await);
    }
    app.stocked_sku("past", "PAST-C", 5).await;
    let cancelled = scheduled(
        &app,
        "past",
        &["PAST-C"],
        T0 + 10_000,
        T0 + 90_000,
        json!({}),
    )
    .await;
    app.stocked_sku("past", "PAST-OPEN", 5).await;
    let open = scheduled(
        &app,
        "past",
        &["PAST-OPEN"],
        T0 + 60_000,
        T0 + 90_000,
        json!({}),
    )
    .await;
    let seller = app.seller("past").await;
    let path = format!("/v1/drops/{cancelled}/cancel");
    let cancel = app
        .post_json(&path, Some(&seller.access_token), json!({}))
        .await;
    assert_eq!(cancel.status, StatusCode::OK, "{:?}", cancel.body);
    clock.advance_ms(20_000);

    // Only the open drop stays: the ended and cancelled ones leave.
    only_the_open_drop_stays(&app).await;
    for id in &ended {
        let view = drop_state(&app, id).await;
        assert_eq!(view["state"], "ended", "{view:?}");
        let history: Vec<&str> = view["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["state"].as_str().unwrap())
            .collect();
        assert_eq!(history, ["scheduled", "live", "ended"]);
    }
    assert_eq!(drop_state(&app, &cancelled).await["state"], "cancelled");
    assert_eq!(drop_state(&app, &open).await["state"], "scheduled");
    // An ended drop's SKU still sells only through it.
    let (token, _) = minted_buyer(&app.engine, 1);
    let late = reserve_as(&app, &token, "PAST-0", json!({"quantity": 1})).await;
    assert_eq!(late.code(), "drop_not_live", "{:?}", late.body);
    assert!(late.body["ended_at"].is_string(), "{:?}", late.body);
    let again = app
        .post_json(
            &format!("/v1/drops/{}/cancel", ended[1]),
            Some(&seller.access_token),
            json!({}),
        )
        .await;
    assert_eq!(again.code(), "invalid_transition", "{:?}", again.body);
    let identities = app.identities();
    app.stop().await;

    // After a restart the same: every drop answers, only the open one stays.
    let app = spawn_clocked(config, Some(dir), Arc::new(clock.clone())).await;
    app.adopt(identities);
    only_the_open_drop_stays(&app).await;
    for id in &ended {
        assert_eq!(drop_state(&app, id).await["state"], "ended");
    }
    assert_eq!(drop_state(&app, &cancelled).await["state"], "cancelled");
    clock.advance_ms(40_000);
    let live = eventually(Duration::from_secs(10), || async {
        (drop_state(&app, &open).await["state"] == "live").then_some(())
    })
    .await;
    assert!(live.is_some(), "the open drop goes live on time");
    app.stop().await;
}

#[actix_web::test]
async fn the_per_buyer_limit_holds_under_50_concurrent_requests_from_one_buyer() {
    let app = spawn_app().await;
    app.stocked_sku("limits", "LIM-1", 100).await;
    app.stocked_sku("limits", "LIM-2", 100).await;
    app.stocked_sku("limits", "LIM-3", 100).await;
    let now = app.engine.clock().now_ms();
    scheduled(
        &app,
        "limits",
        &["LIM-1"],
        now,
        now + 600_000,
        json!({"per_buyer_limit": 3}),
    )
    .await;
    scheduled(
        &app,
        "limits",
        &["LIM-2", "LIM-3"],
        now,
        now + 600_000,
        json!({"per_buyer_limit": 3}),
    )
    .await;
    let (token, _) = minted_buyer(&app.engine, 42);

    // One SKU: 50 at once, one unit each.
    let requests = (0..50).map(|_| reserve_as(&app, &token, "LIM-1", json!({"quantity": 1})));
    let answers = futures_util::future::join_all(requests).await;
    let created = answers
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let limited = answers
        .iter()
        .filter(|r| r.code() == "purchase_limit_exceeded")
        .count();
    assert_eq!(
        (created, limited),
        (3, 47),
        "{:?}",
        answers.iter().map(|r| r.code()).collect::<Vec<_>>()
    );
    assert_eq!(app.stock("LIM-1").await["reserved"], 3);

    // Two SKUs of one drop: the limit is over both.
    let requests = (0..50).map(|i| {
        let sku = if i % 2 == 0 { "LIM-2" } else { "LIM-3" };
        reserve_as(&app, &token, sku, json!({"quantity": 1}))
    });
    let answers = futures_util::future::join_all(requests).await;
    let created: Vec<&Response> = answers
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .collect();
    assert_eq!(
        created.len(),
        3,
        "{:?}",
        answers.iter().map(|r| r.code()).collect::<Vec<_>>()
    );
    assert!(answers
        .iter()
        .all(|r| r.status == StatusCode::CREATED || r.code() == "purchase_limit_exceeded"));
    let held = app.stock("LIM-2").await["reserved"].as_u64().unwrap()
        + app.stock("LIM-3").await["reserved"].as_u64().unwrap();
    assert_eq!(held, 3);

    // A release gives the allowance back; another buyer has their own.
    let id = created[0].body["reservation_id"].as_str().unwrap();
    let released = send(
        app.client
            .delete(app.url(&format!("/v1/reservations/{id}")))
            .insert_header(bearer(&token)),
        None,
    )
    .await;
    assert_eq!(released.status, StatusCode::NO_CONTENT);
    let again = reserve_as(&app, &token, "LIM-3", json!({"quantity": 1})).await;
    assert_eq!(again.status, StatusCode::CREATED, "{:?}", again.body);
    let (other, _) = minted_buyer(&app.engine, 43);
    let theirs = reserve_as(&app, &other, "LIM-2", json!({"quantity": 3})).await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{:?}", theirs.body);
    app.stop().await;
}

#[actix_web::test]
async fn cancelling_stops_sales_and_only_open_drops_of_ones_own_store_cancel() {
    let app = spawn_app().await;
    app.stocked_sku("cancel", "CAN-1", 10).await;
    let now = app.engine.clock().now_ms();
    let id = scheduled(&app, "cancel", &["CAN-1"], now, now + 600_000, json!({})).await;
    let (token, _) = minted_buyer(&app.engine, 1);
    let open = eventually(Duration::from_secs(10), || async {
        let r = reserve_as(&app, &token, "CAN-1", json!({"quantity": 1})).await;
        (r.status == StatusCode::CREATED).then_some(())
    })
    .await;
    assert!(open.is_some(), "the drop opens");

    let path = format!("/v1/drops/{id}/cancel");
    let intruder = app.seller("other-store").await;
    let foreign = app
        .post_json(&path, Some(&intruder.access_token), json!({}))
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{:?}", foreign.body);
    let buyer = app.post_json(&path, Some(&token), json!({})).await;
    assert_eq!(buyer.status, StatusCode::FORBIDDEN);
    let seller = app.seller("cancel").await;
    let cancelled = app
        .post_json(&path, Some(&seller.access_token), json!({}))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["state"], "cancelled");
    let after = reserve_as(&app, &token, "CAN-1", json!({"quantity": 1})).await;
    assert_eq!(after.code(), "drop_not_live", "{:?}", after.body);
    assert_eq!(after.body["cancelled"], true);
    let twice = app
        .post_json(&path, Some(&seller.access_token), json!({}))
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert_eq!(twice.code(), "invalid_transition");
    assert_eq!(twice.body["allowed"], json!([]));
    assert_eq!(
        app.stock("CAN-1").await["reserved"],
        1,
        "the hold made before stays"
    );

    // The SKU is free for a new drop.
    let again = scheduled(&app, "cancel", &["CAN-1"], now, now + 600_000, json!({})).await;
    assert_ne!(again, id);
    app.stop().await;
}

#[actix_web::test]
async fn bad_drop_requests_get_the_documented_codes_and_change_nothing() {
    let app = spawn_app().await;
    app.stocked_sku("mine", "MINE-1", 5).await;
    app.stocked_sku("theirs", "THEIRS-1", 5).await;
    let now = app.engine.clock().now_ms();
    let at = |ms: u64| rfc3339_ms(ms);
    let cases = [
        (
            json!({"title": "x", "skus": ["MINE-1"], "starts_at": "soon", "ends_at": at(now + 1000)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"title": "x", "skus": ["MINE-1"], "starts_at": at(now + 5000), "ends_at": at(now + 1000)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"title": "", "skus": [], "starts_at": at(now), "ends_at": at(now + 1000)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"title": "x", "skus": ["MINE-1"], "starts_at": at(now), "ends_at": at(now + 1000), "per_buyer_limit": 1_000_000}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"title": "x", "skus": ["MINE-1"], "starts_at": at(now), "ends_at": at(now + 1000), "waiting_room": {"admit_per_s": 0}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"title": "x", "skus": ["MINE-1"], "starts_at": at(now), "ends_at": at(now + 1000), "colour": "red"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"title": "x", "skus": ["THEIRS-1"], "starts_at": at(now), "ends_at": at(now + 60_000)}),
            StatusCode::NOT_FOUND,
            "sku_not_found",
        ),
        (
            json!({"title": "x", "skus": ["NOPE-1"], "starts_at": at(now), "ends_at": at(now + 60_000)}),
            StatusCode::NOT_FOUND,
            "sku_not_found",
        ),
    ];
    for (body, status, code) in cases {
        let response = create_drop(&app, "mine", body.clone()).await;
        assert_eq!(
            (response.status, response.code()),
            (status, code),
            "{body}: {:?}",
            response.body
        );
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json")
        );
    }
    let upcoming = app.get_as("/v1/drops/upcoming", None).await;
    assert_eq!(upcoming.body["items"], json!([]), "nothing was created");

    let first = scheduled(
        &app,
        "mine",
        &["MINE-1"],
        now + 60_000,
        now + 120_000,
        json!({}),
    )
    .await;
    let clash = create_drop(
        &app,
        "mine",
        json!({"title": "y", "skus": ["MINE-1"], "starts_at": at(now + 60_000), "ends_at": at(now + 120_000)}),
    )
    .await;
    assert_eq!(clash.code(), "sku_in_drop", "{:?}", clash.body);
    let buyer = app.buyer("shopper").await;
    let forbidden = app
        .post_json(
            "/v1/drops",
            Some(&buyer.access_token),
            json!({"title": "y", "skus": ["MINE-1"], "starts_at": at(now), "ends_at": at(now + 1000)}),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get_as("/v1/drops/not-a-uuid", None).await.code(),
        "drop_not_found"
    );
    assert_eq!(
        app.get_as(&format!("/v1/drops/{}", uuid_like()), None)
            .await
            .code(),
        "drop_not_found"
    );
    let bad_cursor = app.get_as("/v1/drops/upcoming?cursor=zzz", None).await;
    assert_eq!(bad_cursor.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Upcoming pages through open drops, soonest first.
    app.stocked_sku("mine", "MINE-2", 5).await;
    let second = scheduled(
        &app,
        "mine",
        &["MINE-2"],
        now + 30_000,
        now + 90_000,
        json!({}),
    )
    .await;
    let page = app.get_as("/v1/drops/upcoming?limit=1", None).await;
    assert_eq!(page.body["items"][0]["id"], second.as_str());
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let next = app
        .get_as(&format!("/v1/drops/upcoming?limit=1&cursor={cursor}"), None)
        .await;
    assert_eq!(next.body["items"][0]["id"], first.as_str());
    assert_eq!(next.body["next_cursor"], Value::Null);
    app.stop().await;
}

fn uuid_like() -> String {
    "0190f0f0-0000-7000-8000-000000000000".into()
}

#[actix_web::test]
async fn announcements_reach_drops_watchers_and_connected_followers_only() {
    let (app, clock) = clocked_app().await;
    app.stocked_sku("fame", "FAME-1", 5).await;
    let store = app.seller("fame").await.tenant_id.unwrap();
    let fan = app.buyer("fan").await;
    let followed = send(
        app.client
            .post(app.url(&format!("/v1/users/{store}/follow")))
            .insert_header(bearer(&fan.access_token)),
        None,
    )
    .await;
    assert_eq!(followed.status, StatusCode::NO_CONTENT);
    let stranger = app.buyer("stranger").await;
    let mut follower = WsClient::connect(&app, Some(&fan.access_token)).await;
    let mut watcher = WsClient::connect(&app, None).await;
    watcher.subscribe(&["drops"]).await;
    let mut other = WsClient::connect(&app, Some(&stranger.access_token)).await;

    let id = scheduled(
        &app,
        "fame",
        &["FAME-1"],
        T0 + 1_000,
        T0 + 60_000,
        json!({}),
    )
    .await;
    clock.advance_ms(1_000);
    for socket in [&mut follower, &mut watcher] {
        let (state, _) = next_drop_state(socket, &id).await;
        assert_eq!(state, "live");
    }
    let heard = other
        .until(Duration::from_millis(500), |m| m["type"] == "drop")
        .await;
    assert!(heard.is_none(), "a stranger hears nothing: {heard:?}");
    app.stop().await;
}

#[actix_web::test]
async fn a_drop_is_rescheduled_before_it_starts_and_sells_on_after_it_ends() {
    let (app, clock) = clocked_app().await;
    app.stocked_sku("resched", "RES-1", 10).await;
    let id = scheduled(
        &app,
        "resched",
        &["RES-1"],
        T0 + 60_000,
        T0 + 120_000,
        json!({"per_buyer_limit": 1}),
    )
    .await;
    let seller = app.seller("resched").await.access_token;
    let before = drop_state(&app, &id).await;
    assert_eq!(before["after_drop"], "close", "the default");
    assert_eq!(before["edits"], 0);

    // Earlier, shorter, a higher limit: the SKU enforces it before the answer.
    let moved = edit_drop(
        &app,
        &seller,
        &id,
        json!({"title": "Moved up", "starts_at": rfc3339_ms(T0 + 30_000),
               "ends_at": rfc3339_ms(T0 + 90_000), "per_buyer_limit": 2}),
    )
    .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    assert_eq!(moved.body["title"], "Moved up");
    assert_eq!(moved.body["starts_at"], rfc3339_ms(T0 + 30_000));
    assert_eq!(moved.body["per_buyer_limit"], 2);
    assert_eq!(moved.body["edits"], 1);
    assert_eq!(moved.body["state"], "scheduled");
    assert_eq!(
        drop_state(&app, &id).await,
        moved.body,
        "the answer is the drop"
    );
    let (ana, _) = minted_buyer(&app.engine, 1);
    let early = reserve_as(&app, &ana, "RES-1", json!({"quantity": 1})).await;
    assert_eq!(early.code(), "drop_not_live", "{:?}", early.body);
    assert_eq!(early.body["starts_at"], rfc3339_ms(T0 + 30_000));
    let same = edit_drop(&app, &seller, &id, json!({"per_buyer_limit": 2})).await;
    assert_eq!(
        same.body["edits"], 1,
        "an edit that changes nothing is none"
    );

    clock.advance_ms(30_000);
    let live = eventually(Duration::from_secs(10), || async {
        (drop_state(&app, &id).await["state"] == "live").then_some(())
    })
    .await;
    assert!(live.is_some(), "the drop opens at its new start");
    let two = reserve_as(&app, &ana, "RES-1", json!({"quantity": 2})).await;
    assert_eq!(two.status, StatusCode::CREATED, "{:?}", two.body);
    let third = reserve_as(&app, &ana, "RES-1", json!({"quantity": 1})).await;
    assert_eq!(third.code(), "purchase_limit_exceeded", "{:?}", third.body);
    assert_eq!(third.body["limit"], 2, "the new limit");

    // Started: the window and the limit are fixed, the rest may change.
    let fixed = edit_drop(
        &app,
        &seller,
        &id,
        json!({"per_buyer_limit": 5, "ends_at": rfc3339_ms(T0 + 100_000), "title": "Late"}),
    )
    .await;
    assert_eq!(fixed.status, StatusCode::CONFLICT, "{:?}", fixed.body);
    assert_eq!(fixed.code(), "drop_started");
    assert_eq!(fixed.body["fields"], json!(["ends_at", "per_buyer_limit"]));
    assert_eq!(
        drop_state(&app, &id).await["title"],
        "Moved up",
        "nothing changed"
    );
    let sell = edit_drop(&app, &seller, &id, json!({"after_drop": "sell"})).await;
    assert_eq!(sell.status, StatusCode::OK, "{:?}", sell.body);
    assert_eq!(sell.body["after_drop"], "sell");
    assert_eq!(sell.body["edits"], 2);

    // It ends: the SKU is back on normal sale, the limit lifted.
    clock.advance_ms(60_000);
    let released = eventually(Duration::from_secs(10), || async {
        let view = drop_state(&app, &id).await;
        view["skus_released_at"].is_string().then_some(view)
    })
    .await
    .expect("the ended drop lets go of its SKUs");
    assert_eq!(released["state"], "ended");
    let more = reserve_as(&app, &ana, "RES-1", json!({"quantity": 1})).await;
    assert_eq!(more.status, StatusCode::CREATED, "{:?}", more.body);
    let ended = edit_drop(&app, &seller, &id, json!({"title": "Over"})).await;
    assert_eq!(ended.code(), "drop_started", "{:?}", ended.body);
    assert_eq!(ended.body["state"], "ended");
    let stock = app.stock("RES-1").await;
    assert_eq!(
        (stock["reserved"].clone(), stock["available"].clone()),
        (json!(3), json!(7))
    );

    // The SKU is free for another drop, which gates it afresh.
    let again = scheduled(
        &app,
        "resched",
        &["RES-1"],
        T0 + 200_000,
        T0 + 300_000,
        json!({}),
    )
    .await;
    let gated = reserve_as(&app, &ana, "RES-1", json!({"quantity": 1})).await;
    assert_eq!(gated.code(), "drop_not_live", "{:?}", gated.body);
    assert_ne!(again, id);
    app.stop().await;
}

#[actix_web::test]
async fn after_drop_and_edits_survive_a_restart_and_a_drop_that_ended_meanwhile_releases() {
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let app = spawn_clocked(config.clone(), None, Arc::new(clock.clone())).await;
    app.stocked_sku("keepsell", "KS-1", 5).await;
    app.stocked_sku("keepsell", "KS-2", 5).await;
    let sells = scheduled(
        &app,
        "keepsell",
        &["KS-1"],
        T0 + 10_000,
        T0 + 20_000,
        json!({"after_drop": "sell"}),
    )
    .await;
    let closes = scheduled(
        &app,
        "keepsell",
        &["KS-2"],
        T0 + 10_000,
        T0 + 20_000,
        json!({}),
    )
    .await;
    let seller = app.seller("keepsell").await.access_token;
    let edited = edit_drop(
        &app,
        &seller,
        &sells,
        json!({"ends_at": rfc3339_ms(T0 + 30_000)}),
    )
    .await;
    assert_eq!(edited.status, StatusCode::OK, "{:?}", edited.body);
    let identities = app.identities();
    app.stop().await;

    // Both end while the server is down.
    clock.advance_ms(40_000);
    let app = spawn_clocked(config, Some(dir), Arc::new(clock.clone())).await;
    app.adopt(identities);
    let (token, _) = minted_buyer(&app.engine, 1);
    let on_sale = eventually(Duration::from_secs(10), || async {
        let r = reserve_as(&app, &token, "KS-1", json!({"quantity": 1})).await;
        (r.status == StatusCode::CREATED).then_some(())
    })
    .await;
    assert!(on_sale.is_some(), "the ended sell drop's SKU sells again");
    let view = drop_state(&app, &sells).await;
    assert_eq!(
        (view["state"].as_str(), view["after_drop"].as_str()),
        (Some("ended"), Some("sell"))
    );
    assert_eq!(
        view["ends_at"],
        rfc3339_ms(T0 + 30_000),
        "the edit was kept"
    );
    assert_eq!(view["edits"], 1);
    let closed = eventually(Duration::from_secs(10), || async {
        (drop_state(&app, &closes).await["state"] == "ended").then_some(())
    })
    .await;
    assert!(closed.is_some());
    let refused = reserve_as(&app, &token, "KS-2", json!({"quantity": 1})).await;
    assert_eq!(
        refused.code(),
        "drop_not_live",
        "a close drop keeps its SKU closed"
    );
    app.stop().await;
}

#[actix_web::test]
async fn bad_drop_edits_get_the_documented_codes_and_change_nothing() {
    let app = spawn_app().await;
    app.stocked_sku("edits", "ED-1", 5).await;
    let now = app.engine.clock().now_ms();
    let id = scheduled(
        &app,
        "edits",
        &["ED-1"],
        now + 600_000,
        now + 1_200_000,
        json!({}),
    )
    .await;
    let seller = app.seller("edits").await.access_token;
    let at = |ms: u64| rfc3339_ms(ms);
    let before = drop_state(&app, &id).await;
    let cases = [
        (
            json!({"starts_at": "soon"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"ends_at": at(now + 300_000)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"starts_at": at(now - 60_000)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"title": "   "}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"per_buyer_limit": 1_000_000}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"ends_at": at(now + 400 * 86_400_000)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"after_drop": "maybe"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"skus": ["ED-1"]}), StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (body, status) in cases {
        let response = edit_drop(&app, &seller, &id, body.clone()).await;
        assert_eq!(response.status, status, "{body}: {:?}", response.body);
    }
    let missing = edit_drop(&app, &seller, &uuid_like(), json!({"title": "x"})).await;
    assert_eq!(missing.code(), "drop_not_found");
    let intruder = app.seller("not-edits").await.access_token;
    let foreign = edit_drop(&app, &intruder, &id, json!({"title": "mine now"})).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{:?}", foreign.body);
    let (buyer, _) = minted_buyer(&app.engine, 1);
    let shopper = edit_drop(&app, &buyer, &id, json!({"title": "x"})).await;
    assert_eq!(shopper.status, StatusCode::FORBIDDEN);
    let anonymous = send(
        app.client.patch(app.url(&format!("/v1/drops/{id}"))),
        Some(json!({"title": "x"})),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(drop_state(&app, &id).await, before, "nothing changed");

    // A cancelled drop is no longer edited.
    let cancel = app
        .post_json(&format!("/v1/drops/{id}/cancel"), Some(&seller), json!({}))
        .await;
    assert_eq!(cancel.status, StatusCode::OK);
    let late = edit_drop(&app, &seller, &id, json!({"after_drop": "sell"})).await;
    assert_eq!(late.code(), "drop_started", "{:?}", late.body);
    app.stop().await;
}
