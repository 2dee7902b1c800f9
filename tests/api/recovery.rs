//! Recovery: snapshots + the truncated WAL give exactly the state a full replay
//! gives, and corruption stops start-up loudly instead of serving wrong stock.

use std::collections::HashMap;
use std::sync::Arc;

use flashdrop::domain::stock::{LedgerLimits, ReserveCmd, StockLedger};
use flashdrop::domain::{BuyerId, IdempotencyKey, SkuId, UserId, WarehouseId};
use flashdrop::persistence::wal::{self, WalSettings, WriterStart};
use flashdrop::persistence::{
    load_ledger, recover, EntityKey, RecordBody, RecoveryMode, SnapshotBody, Store, SyncMode,
    WalHandle, WalRecord,
};

fn limits() -> LedgerLimits {
    LedgerLimits {
        idempotency_keys_max: 50,
        finished_max: 50,
        ..LedgerLimits::default()
    }
}

fn open(dir: &std::path::Path) -> Arc<Store> {
    Arc::new(
        Store::open(
            dir,
            16 << 20,
            SyncMode::Flush,
            std::time::Duration::from_secs(10),
        )
        .unwrap(),
    )
}

fn start(store: &Arc<Store>) -> (WalHandle, std::thread::JoinHandle<()>) {
    let settings = WalSettings {
        sync: SyncMode::Flush,
        batch_records_max: 16,
        ..WalSettings::default()
    };
    let start = WriterStart {
        cursor: store.cursor().unwrap(),
        ..WriterStart::default()
    };
    wal::start(store.clone(), settings, start)
}

fn stop(wal: &WalHandle, thread: std::thread::JoinHandle<()>) {
    wal.shutdown_blocking(thread).unwrap();
}

/// Random commands on a few SKUs; every record goes to both WALs, snapshots
/// only to the first.
fn run_workload(
    seed: u64,
    with_snapshots: &WalHandle,
    full: &WalHandle,
) -> HashMap<u64, StockLedger> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut ledgers: HashMap<u64, StockLedger> = (1..=6)
        .map(|id| (id, StockLedger::new(SkuId(id), limits())))
        .collect();
    let mut now = 1_000_000u64;
    for _ in 0..3_000 {
        let id = rng.u64(1..=6);
        let ledger = ledgers.get_mut(&id).unwrap();
        now += rng.u64(0..400);
        let mut events = Vec::new();
        ledger.expire_due(now, &mut events).unwrap();
        let buyer = BuyerId::parse(&format!("b{}", rng.u8(0..4))).unwrap();
        let _ = match rng.u8(0..10) {
            0 => ledger.set_stock(
                vec![(WarehouseId::parse("main").unwrap(), rng.u64(0..200))],
                Some(rng.u64(0..20)),
                &mut events,
            ),
            1 => ledger.adjust(
                WarehouseId::parse("east").unwrap(),
                rng.i64(-5..30),
                "count".into(),
                &mut events,
            ),
            2..=5 => ledger
                .reserve(
                    ReserveCmd {
                        buyer: buyer.clone(),
                        quantity: rng.u32(1..6),
                        ttl_ms: rng.u64(100..5_000),
                        idempotency: rng.bool().then(|| {
                            (
                                IdempotencyKey::parse(&format!("k{}", rng.u8(0..30))).unwrap(),
                                1,
                            )
                        }),
                        shopper_units_max: None,
                    },
                    now,
                    &mut events,
                )
                .map(|_| ()),
            6 | 7 => ledger
                .release(rng.u64(1..200), &buyer, now, &mut events)
                .map(|_| ()),
            _ => ledger
                .commit(rng.u64(1..200), &buyer, now, &mut events)
                .map(|_| ()),
        };
        if !events.is_empty() {
            let record = WalRecord {
                entity: EntityKey::Sku(id),
                body: RecordBody::Stock(events),
            };
            with_snapshots.append(&record, None).unwrap();
            full.append(&record, None).unwrap();
        }
        if rng.u8(0..40) == 0 {
            let body = SnapshotBody::Ledger(ledger.snapshot());
            with_snapshots
                .snapshot(EntityKey::Sku(id), &body, None)
                .unwrap();
        }
    }
    ledgers
}

#[test]
fn recovery_from_snapshots_and_truncated_wal_matches_full_replay() {
    for seed in [1, 2, 3, 42] {
        let snap_dir = tempfile::tempdir().unwrap();
        let full_dir = tempfile::tempdir().unwrap();
        let snap_store = open(snap_dir.path());
        let full_store = open(full_dir.path());
        let (snap_wal, snap_thread) = start(&snap_store);
        let (full_wal, full_thread) = start(&full_store);
        let live = run_workload(seed, &snap_wal, &full_wal);
        stop(&snap_wal, snap_thread);
        stop(&full_wal, full_thread);

        let snap_batches = snap_store.wal.len();
        let full_batches = full_store.wal.len();
        assert!(
            snap_batches < full_batches / 2,
            "seed {seed}: the WAL was truncated behind snapshots ({snap_batches} of {full_batches} batches left)"
        );
        assert!(!snap_store.snapshots.is_empty());

        let from_snapshots = recover(&snap_store, &limits(), RecoveryMode::Snapshots).unwrap();
        let from_full = recover(&full_store, &limits(), RecoveryMode::FullReplay).unwrap();
        assert!(from_snapshots.stats.records < from_full.stats.records);
        for (id, ledger) in &live {
            let sku = SkuId(*id);
            let recovered = match from_snapshots.ledgers.get(&sku) {
                Some(ledger) => ledger.clone(),
                None => load_ledger(&snap_store, sku, &limits(), 0).unwrap(),
            };
            let replayed = &from_full.ledgers[&sku];
            assert!(
                recovered == *ledger,
                "seed {seed}: snapshot recovery of {id} differs from live"
            );
            assert!(
                *replayed == *ledger,
                "seed {seed}: full replay of {id} differs from live"
            );
        }
    }
}

#[test]
fn a_corrupt_wal_batch_stops_recovery_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (wal, thread) = start(&store);
    let record = WalRecord {
        entity: EntityKey::Sku(1),
        body: RecordBody::Stock(vec![flashdrop::domain::StockEvent::StockSet {
            warehouses: vec![("main".into(), 5)],
            low_stock_threshold: None,
        }]),
    };
    wal.append(&record, None).unwrap();
    stop(&wal, thread);

    let (key, value) = store.wal.iter().next().unwrap().unwrap();
    let mut bad = value.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    store.wal.insert(key, bad).unwrap();
    let error = recover(&store, &limits(), RecoveryMode::Snapshots)
        .err()
        .expect("corruption is refused");
    assert!(error.to_string().contains("checksum"), "{error}");
}

fn user(id: u128, email: &str) -> flashdrop::domain::identity::User {
    flashdrop::domain::identity::User {
        id: UserId(id),
        email: email.into(),
        password_hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        role: flashdrop::domain::identity::Role::Buyer,
        tenant: None,
        created_at_ms: 1,
        updated_at_ms: 1,
    }
}

fn directory_record(entity: &flashdrop::domain::identity::Entity) -> WalRecord {
    WalRecord {
        entity: EntityKey::of(entity),
        body: RecordBody::Directory(Box::new(entity.clone())),
    }
}

fn recovered_users(recovered: &flashdrop::persistence::Recovered) -> Vec<(u128, String)> {
    use flashdrop::domain::identity::Entity;
    let mut users: Vec<_> = recovered
        .directory
        .iter()
        .filter_map(|e| match e {
            Entity::User(u) => Some((u.id.0, u.email.clone())),
            _ => None,
        })
        .collect();
    users.sort();
    users
}

#[test]
fn directory_state_only_in_the_wal_is_recovered_and_marked_for_a_snapshot() {
    use flashdrop::domain::identity::Entity;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (wal, thread) = start(&store);
    // Ana: record and snapshot (a completed change). Bo: the record only, as
    // after a crash between the two. Ana again: a newer record, no snapshot.
    let ana = user(1, "ana@test.example");
    let bo = user(2, "bo@test.example");
    let ana_entity = Entity::User(ana.clone());
    wal.append(&directory_record(&ana_entity), None).unwrap();
    wal.snapshot(
        EntityKey::User(UserId(1)),
        &SnapshotBody::Directory(ana_entity),
        None,
    )
    .unwrap();
    let bo_entity = Entity::User(bo.clone());
    wal.append(&directory_record(&bo_entity), None).unwrap();
    let ana_renamed = Entity::User(flashdrop::domain::identity::User {
        email: "ana.new@test.example".into(),
        ..ana
    });
    wal.append(&directory_record(&ana_renamed), None).unwrap();
    let audit = Entity::Audit(flashdrop::domain::identity::AuditEntry {
        seq: 41,
        at_ms: 5,
        actor: None,
        tenant: None,
        action: "user.register".into(),
        target: "user:2".into(),
        before: None,
        after: None,
        correlation_id: None,
    });
    wal.append(&directory_record(&audit), None).unwrap();
    stop(&wal, thread);

    let recovered = recover(&store, &limits(), RecoveryMode::Snapshots).unwrap();
    assert_eq!(
        recovered_users(&recovered),
        vec![
            (1, "ana.new@test.example".to_owned()),
            (2, "bo@test.example".to_owned())
        ],
        "the newest state of each, snapshot or not"
    );
    assert_eq!(recovered.next_audit_seq, 42);
    let mut pending: Vec<EntityKey> = recovered
        .directory_unsnapshotted
        .iter()
        .map(EntityKey::of)
        .collect();
    pending.sort();
    assert_eq!(
        pending,
        vec![
            EntityKey::User(UserId(1)),
            EntityKey::User(UserId(2)),
            EntityKey::Audit(41)
        ],
        "what only the WAL holds needs a snapshot"
    );
    assert!(
        recovered
            .directory
            .iter()
            .all(|e| !matches!(e, Entity::Audit(_))),
        "audit lines stay on disk"
    );
}

#[test]
fn a_forgotten_entity_leaves_the_wal_and_its_snapshot_and_stays_gone() {
    use flashdrop::domain::identity::Entity;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (wal, thread) = start(&store);
    for (id, email) in [(1, "ana@test.example"), (2, "bo@test.example")] {
        let entity = Entity::User(user(id, email));
        wal.append(&directory_record(&entity), None).unwrap();
        wal.snapshot(
            EntityKey::User(UserId(id)),
            &SnapshotBody::Directory(entity),
            None,
        )
        .unwrap();
    }
    let (acked, durable) = std::sync::mpsc::channel();
    wal.forget(
        EntityKey::User(UserId(1)),
        Some(Box::new(move || {
            let _ = acked.send(());
        })),
    )
    .unwrap();
    durable
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the Deleted record is acknowledged once durable");
    stop(&wal, thread);

    assert!(
        store
            .snapshot_header(EntityKey::User(UserId(1)))
            .unwrap()
            .is_none(),
        "the forgotten entity's snapshot is deleted"
    );
    assert!(store
        .snapshot_header(EntityKey::User(UserId(2)))
        .unwrap()
        .is_some());
    assert_eq!(
        store.wal.iter().count(),
        0,
        "every record, the Deleted one too, is truncated once nothing needs it"
    );
    let recovered = recover(&store, &limits(), RecoveryMode::Snapshots).unwrap();
    assert_eq!(
        recovered_users(&recovered),
        vec![(2, "bo@test.example".to_owned())]
    );
}

#[test]
fn a_crash_after_the_deleted_record_but_before_the_snapshot_went_still_forgets_it() {
    use flashdrop::domain::identity::Entity;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (wal, thread) = start(&store);
    let ana = Entity::User(user(1, "ana@test.example"));
    wal.append(&directory_record(&ana), None).unwrap();
    wal.snapshot(
        EntityKey::User(UserId(1)),
        &SnapshotBody::Directory(ana),
        None,
    )
    .unwrap();
    // The record written as `forget` writes it, but without the writer's
    // follow-up: on disk it is what a crash between the two commits leaves.
    wal.append(
        &WalRecord {
            entity: EntityKey::User(UserId(1)),
            body: RecordBody::Deleted,
        },
        None,
    )
    .unwrap();
    stop(&wal, thread);
    assert!(store
        .snapshot_header(EntityKey::User(UserId(1)))
        .unwrap()
        .is_some());

    let full = recover(&store, &limits(), RecoveryMode::FullReplay).unwrap();
    assert!(
        recovered_users(&full).is_empty(),
        "a full replay forgets it"
    );
    let recovered = recover(&store, &limits(), RecoveryMode::Snapshots).unwrap();
    assert!(recovered_users(&recovered).is_empty());
    assert_eq!(recovered.stats.forgotten, 1);
    assert!(
        recovered.directory_unsnapshotted.is_empty(),
        "a forgotten entity needs no snapshot"
    );
    assert!(
        store
            .snapshot_header(EntityKey::User(UserId(1)))
            .unwrap()
            .is_none(),
        "recovery deletes the stale snapshot, so truncating the record cannot bring it back"
    );
}

#[test]
fn an_entity_created_anew_after_it_was_forgotten_survives_recovery() {
    use flashdrop::domain::identity::Entity;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (wal, thread) = start(&store);
    let ana = Entity::User(user(1, "ana@test.example"));
    let bo = Entity::User(user(2, "bo@test.example"));
    for (id, entity) in [(1, &ana), (2, &bo)] {
        wal.append(&directory_record(entity), None).unwrap();
        wal.snapshot(
            EntityKey::User(UserId(id)),
            &SnapshotBody::Directory(entity.clone()),
            None,
        )
        .unwrap();
        wal.forget(EntityKey::User(UserId(id)), None).unwrap();
    }
    // Ana comes back with a record only, Bo with a record and a snapshot,
    // both possibly in the very commit that forgot them.
    let ana_again = Entity::User(user(1, "ana.again@test.example"));
    wal.append(&directory_record(&ana_again), None).unwrap();
    let bo_again = Entity::User(user(2, "bo.again@test.example"));
    wal.append(&directory_record(&bo_again), None).unwrap();
    wal.snapshot(
        EntityKey::User(UserId(2)),
        &SnapshotBody::Directory(bo_again),
        None,
    )
    .unwrap();
    stop(&wal, thread);

    let recovered = recover(&store, &limits(), RecoveryMode::Snapshots).unwrap();
    assert_eq!(
        recovered_users(&recovered),
        vec![
            (1, "ana.again@test.example".to_owned()),
            (2, "bo.again@test.example".to_owned())
        ]
    );
    assert_eq!(recovered.stats.forgotten, 0);
    let again = recover(&store, &limits(), RecoveryMode::Snapshots).unwrap();
    assert_eq!(
        recovered_users(&again),
        recovered_users(&recovered),
        "a second recovery finds the same"
    );
}
