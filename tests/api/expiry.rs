//! Reservations past their TTL give their units back on the actor's own timer,
//! and the release is in the WAL.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::json;

use flashdrop::clock::ManualClock;
use flashdrop::domain::{ReleaseReason, ReservationId, StockEvent};
use flashdrop::persistence::batch::decode_batch;
use flashdrop::persistence::record::decode_record;
use flashdrop::persistence::{EntityKey, RecordBody};

use crate::helpers::{bearer, eventually, spawn_app, spawn_clocked};

/// Every stock event of one SKU still in the WAL, in order.
fn wal_events(app: &crate::helpers::TestApp, sku: u64) -> Vec<StockEvent> {
    let mut events = Vec::new();
    for item in app.engine.store().wal.iter() {
        let (_, value) = item.unwrap();
        let batch = decode_batch(&value).unwrap();
        for frame in batch.frames() {
            let (_, payload) = frame.unwrap();
            let record = decode_record(payload, batch.format).unwrap();
            if record.entity == EntityKey::Sku(sku) {
                if let RecordBody::Stock(mut stock) = record.body {
                    events.append(&mut stock);
                }
            }
        }
    }
    events
}

#[actix_web::test]
async fn expired_reservation_returns_its_units_and_the_wal_holds_the_release() {
    let app = spawn_app().await;
    app.stocked_sku("s", "EXP-1", 5).await;
    let held = app
        .reserve("ana", "EXP-1", json!({"quantity": 3, "ttl_s": 1}), None)
        .await;
    assert_eq!(held.status, StatusCode::CREATED);
    let id = held.body["reservation_id"].as_str().unwrap().to_owned();
    assert_eq!(app.stock("EXP-1").await["available"], 2);

    // No request touches the SKU: only its timer can release the units.
    let released = eventually(Duration::from_secs(10), || async {
        let stock = app.stock("EXP-1").await;
        (stock["available"] == 5 && stock["reserved"] == 0).then_some(stock)
    })
    .await;
    assert!(released.is_some(), "units came back after the TTL");

    let view = app.reservation("ana", &id).await;
    assert_eq!(view.status, StatusCode::OK);
    assert_eq!(view.body["state"], "expired");

    let rid = ReservationId::parse(&id).unwrap();
    let events = wal_events(&app, rid.sku.0);
    assert!(
        events.iter().any(|e| matches!(
            e,
            StockEvent::Released { seq, reason: ReleaseReason::Expired, .. } if *seq == rid.seq
        )),
        "the WAL holds the expiry: {events:?}"
    );

    // An expired reservation cannot be sold; releasing it again is harmless.
    let commit = app.commit_as_seller("s", &id).await;
    assert_eq!(commit.code(), "reservation_expired");
    let release = crate::helpers::send(
        app.client
            .delete(app.url(&format!("/v1/reservations/{id}")))
            .insert_header(bearer(&app.buyer("ana").await.access_token)),
        None,
    )
    .await;
    assert_eq!(release.status, StatusCode::NO_CONTENT);
    app.stop().await;
}

#[actix_web::test]
async fn reservations_expired_while_down_are_released_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::test_config(dir.path());
    let clock = ManualClock::new(1_800_000_000_000);
    let app = spawn_clocked(config.clone(), None, Arc::new(clock.clone())).await;
    app.stocked_sku("s", "EXP-2", 4).await;
    let held = app
        .reserve("ana", "EXP-2", json!({"quantity": 4, "ttl_s": 60}), None)
        .await;
    assert_eq!(held.status, StatusCode::CREATED);
    app.stop().await;

    // Down for two minutes: the hold ran out meanwhile.
    clock.advance_ms(120_000);
    let app = spawn_clocked(config, None, Arc::new(clock)).await;
    let released = eventually(Duration::from_secs(10), || async {
        (app.stock("EXP-2").await["available"] == 4).then_some(())
    })
    .await;
    assert!(released.is_some());
    app.stop().await;
}
