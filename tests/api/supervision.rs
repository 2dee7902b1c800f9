//! Actor lifecycle: supervised restart rebuilds from durable state, idle actors
//! are passivated and come back intact, and a full mailbox pushes back with 503.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use futures_util::future::join_all;
use serde_json::json;

use flashdrop::domain::SkuCode;

use crate::helpers::{eventually, send, spawn_app, spawn_with};

#[actix_web::test]
async fn a_restarted_sku_actor_rebuilds_its_state_from_snapshot_and_wal() {
    // Snapshots every 3 records, so the rebuild needs a snapshot and a WAL tail.
    let app = spawn_with(|c| c.snapshots.every_records = 3).await;
    app.stocked_sku("t", "SUP-1", 20).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let r = app
            .reserve(
                "ana",
                "SUP-1",
                json!({"quantity": 1 + i % 2}),
                Some(&format!("k{i}")),
            )
            .await;
        ids.push(r.body["reservation_id"].as_str().unwrap().to_owned());
    }
    app.commit_as_seller("t", &ids[0]).await;
    app.release("ana", &ids[1]).await;
    let before = app.stock("SUP-1").await;

    app.engine
        .inventory()
        .restart_sku(&SkuCode::parse("SUP-1").unwrap())
        .await
        .unwrap();

    assert_eq!(
        app.stock("SUP-1").await,
        before,
        "same counts after the rebuild"
    );
    assert_eq!(
        app.reservation("ana", &ids[0]).await.body["state"],
        "committed"
    );
    assert_eq!(
        app.reservation("ana", &ids[1]).await.body["state"],
        "released"
    );
    assert_eq!(app.reservation("ana", &ids[6]).await.body["state"], "held");
    // The idempotency memory came back too.
    let replay = app
        .reserve("ana", "SUP-1", json!({"quantity": 1}), Some("k6"))
        .await;
    assert_eq!(replay.body["reservation_id"], ids[6].as_str());
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    app.stop().await;
}

#[actix_web::test]
async fn an_idle_sku_is_passivated_and_comes_back_with_its_state() {
    let app = spawn_with(|c| c.actors.idle_timeout_s = 1).await;
    app.stocked_sku("t", "IDLE-1", 8).await;
    let r = app
        .reserve("ana", "IDLE-1", json!({"quantity": 3}), Some("idle-key"))
        .await;
    let id = r.body["reservation_id"].as_str().unwrap().to_owned();
    app.commit_as_seller("t", &id).await;
    let before = app.stock("IDLE-1").await;

    let parked = eventually(Duration::from_secs(10), || async {
        let census = app.engine.census();
        (census["active"] == 0).then_some(census)
    })
    .await;
    assert!(parked.is_some(), "the idle actor was passivated");

    assert_eq!(app.stock("IDLE-1").await, before);
    let replay = app
        .reserve("ana", "IDLE-1", json!({"quantity": 3}), Some("idle-key"))
        .await;
    assert_eq!(replay.body["reservation_id"], id.as_str());
    assert_eq!(app.engine.census()["active"], 1, "reactivated on use");
    app.stop().await;
}

#[actix_web::test]
async fn a_full_mailbox_answers_503_with_retry_after() {
    let app = spawn_with(|c| {
        c.actors.placement = flashdrop::config::Placement::Arbiters;
        c.actors.shards = 1;
        c.actors.mailbox_capacity = 4;
    })
    .await;
    app.stocked_sku("t", "FULL-1", 100).await;

    // Block the only arbiter so nothing leaves the mailbox, until the test
    // has seen every refusal it expects (then the held four are answered).
    let blocked = Arc::new(AtomicBool::new(false));
    let flag = blocked.clone();
    let (release, released) = std::sync::mpsc::channel::<()>();
    app.engine.arbiter_handles()[0].spawn_fn(move || {
        flag.store(true, Ordering::SeqCst);
        // A bound, so a failing test cannot hang the arbiter forever.
        let _ = released.recv_timeout(Duration::from_secs(60));
    });
    let started = eventually(Duration::from_secs(5), || {
        let blocked = blocked.clone();
        async move { blocked.load(Ordering::SeqCst).then_some(()) }
    })
    .await;
    assert!(started.is_some());

    let refused = Arc::new(AtomicUsize::new(0));
    let attempts = (0..20).map(|i| {
        let app = &app;
        let refused = refused.clone();
        async move {
            let response = app
                .reserve(&format!("b{i}"), "FULL-1", json!({"quantity": 1}), None)
                .await;
            if response.status == StatusCode::SERVICE_UNAVAILABLE {
                refused.fetch_add(1, Ordering::SeqCst);
            }
            response
        }
    });
    let unblock = async {
        let all_refused = eventually(Duration::from_secs(30), || {
            let refused = refused.clone();
            async move { (refused.load(Ordering::SeqCst) >= 16).then_some(()) }
        })
        .await;
        release.send(()).expect("the arbiter waits");
        all_refused
    };
    let (responses, all_refused) = futures_util::future::join(join_all(attempts), unblock).await;
    assert!(
        all_refused.is_some(),
        "16 of 20 were refused while the mailbox was full"
    );
    let created = responses
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let overloaded: Vec<_> = responses
        .iter()
        .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!(created, 4, "the mailbox held exactly its capacity");
    assert_eq!(overloaded.len(), 16);
    for response in overloaded {
        assert_eq!(response.code(), "overloaded");
        assert_eq!(response.header("retry-after"), Some("1"));
    }
    assert_eq!(app.stock("FULL-1").await["reserved"], 4);
    let metrics = send(app.client.get(app.url("/metrics")), None).await;
    assert!(metrics
        .body
        .as_str()
        .unwrap()
        .contains("flashdrop_mailbox_full_total"));
    app.stop().await;
}

#[actix_web::test]
async fn many_skus_spread_over_arbiters_keep_their_own_counts() {
    let app = spawn_app().await;
    let codes: Vec<String> = (0..24).map(|i| format!("SPREAD-{i}")).collect();
    let refs: Vec<&str> = codes.iter().map(String::as_str).collect();
    app.create_product("t", &refs).await;
    for code in &codes {
        app.set_stock("t", code, json!({"main": 5})).await;
    }
    let attempts = (0..24 * 7).map(|i| {
        let app = &app;
        let code = codes[i % 24].clone();
        async move {
            app.reserve(&format!("b{i}"), &code, json!({"quantity": 1}), None)
                .await
        }
    });
    let responses = join_all(attempts).await;
    assert_eq!(
        responses
            .iter()
            .filter(|r| r.status == StatusCode::CREATED)
            .count(),
        24 * 5
    );
    for code in &codes {
        let stock = app.stock(code).await;
        assert_eq!(
            (stock["available"].as_u64(), stock["reserved"].as_u64()),
            (Some(0), Some(5))
        );
    }
    app.stop().await;
}

/// Bytes of the WAL batches in the store.
fn wal_bytes(app: &crate::helpers::TestApp) -> u64 {
    app.engine
        .store()
        .wal
        .iter()
        .values()
        .map(|v| v.unwrap().len() as u64)
        .sum()
}

#[actix_web::test]
async fn a_wal_over_its_bound_makes_changed_skus_snapshot_before_their_interval() {
    // A SKU alone would snapshot after an hour; the WAL bound is 1 MiB.
    let app = spawn_with(|c| {
        c.snapshots.interval_s = 3_600;
        c.snapshots.wal_max_mb = 1;
    })
    .await;
    app.stocked_sku("t", "WAL-1", 1_000).await;
    // Reserve and release with long keys until the WAL holds over 1 MiB.
    let streams = (0..8).map(|stream| {
        let app = &app;
        async move {
            let buyer = format!("w{stream}");
            for round in 0..500 {
                let key = format!("{stream}-{round}-{}", "k".repeat(240));
                let held = app
                    .reserve(&buyer, "WAL-1", json!({"quantity": 1}), Some(&key))
                    .await;
                assert_eq!(held.status, StatusCode::CREATED, "{:?}", held.body);
                let id = held.body["reservation_id"].as_str().unwrap().to_owned();
                let released = app.release(&buyer, &id).await;
                assert!(released.status.is_success(), "{:?}", released.body);
            }
        }
    });
    join_all(streams).await;
    let written = wal_bytes(&app);
    assert!(
        written > 1 << 20,
        "the run wrote {written} B of WAL, not enough to test"
    );

    // The SKU's next housekeeping tick (at most 5 s) snapshots it, and the
    // WAL behind the snapshot is truncated.
    let shrunk = eventually(Duration::from_secs(20), || async {
        let now = wal_bytes(&app);
        (now < 1 << 20).then_some(now)
    })
    .await;
    assert!(
        shrunk.is_some(),
        "the WAL still holds {} B, over its 1 MiB bound",
        wal_bytes(&app)
    );
    let stock = app.stock("WAL-1").await;
    assert_eq!(
        (stock["available"].as_u64(), stock["reserved"].as_u64()),
        (Some(1_000), Some(0))
    );
    app.stop().await;
}
