//! Recovery: replay rate in WAL records/s and time to ready for a WAL of 10M
//! records (reservations, releases and commits over 1,000 SKUs), written by the
//! real WAL writer with no snapshot to start from.
//!
//! Run: `cargo bench --bench recovery`   (RECOVERY_RECORDS=N to change the size)

mod support;

use support::knob;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use flashdrop::domain::product::{NewProduct, NewSku};
use flashdrop::domain::stock::{LedgerLimits, ReserveCmd, StockLedger};
use flashdrop::domain::{BuyerId, SkuId, TenantKey, WarehouseId};
use flashdrop::persistence::wal::{self, WalSettings, WriterStart};
use flashdrop::persistence::{
    recover, EntityKey, RecordBody, RecoveryMode, Store, SyncMode, WalRecord,
};

const SKUS: u64 = 1_000;
const OPEN_PER_SKU: usize = 50;

/// Writes products for the SKUs, then `records` stock records through the WAL
/// writer. Returns the bytes of WAL written.
fn generate(dir: &std::path::Path, records: u64) -> u64 {
    let store = Arc::new(
        Store::open(
            dir,
            256 << 20,
            SyncMode::Flush,
            std::time::Duration::from_secs(10),
        )
        .unwrap(),
    );
    let settings = WalSettings {
        sync: SyncMode::Flush,
        ..WalSettings::default()
    };
    let start = WriterStart {
        cursor: store.cursor().unwrap(),
        ..WriterStart::default()
    };
    let (wal, thread) = wal::start(store.clone(), settings, start);
    let tenant = TenantKey::parse(support::TENANT).unwrap();
    for product in 0..SKUS / 100 {
        let draft = NewProduct {
            status: flashdrop::domain::product::ProductStatus::Active,
            title: "recovery".into(),
            description: String::new(),
            brand: String::new(),
            images: Vec::new(),
            options: Vec::new(),
            category: String::new(),
            attributes: Default::default(),
            skus: (0..100)
                .map(|i| NewSku {
                    code: format!("REC-{}", product * 100 + i),
                    price_amount: 100,
                    price_currency: "USD".into(),
                    compare_at: None,
                    options: Vec::new(),
                    attributes: Default::default(),
                    low_stock_threshold: None,
                })
                .collect(),
        };
        let ids: Vec<SkuId> = (0..100).map(|i| SkuId(product * 100 + i + 1)).collect();
        let product = draft.validate(u64::MAX).unwrap().into_product(
            u128::from(product) + 1,
            &tenant,
            &ids,
            0,
            0,
        );
        let record = WalRecord {
            entity: EntityKey::Product(product.id),
            body: RecordBody::Product(Box::new(product)),
        };
        wal.append(&record, None).unwrap();
    }

    let limits = LedgerLimits::default();
    let mut ledgers: HashMap<u64, (StockLedger, VecDeque<u64>)> = (1..=SKUS)
        .map(|id| {
            (
                id,
                (StockLedger::new(SkuId(id), limits.clone()), VecDeque::new()),
            )
        })
        .collect();
    let buyer = BuyerId::parse("recovery-buyer").unwrap();
    let mut now = 1_800_000_000_000u64;
    let mut events = Vec::new();
    for n in 0..records {
        let id = n % SKUS + 1;
        let (ledger, open) = ledgers.get_mut(&id).unwrap();
        now += 1;
        events.clear();
        if n < SKUS {
            let main = WarehouseId::parse("main").unwrap();
            ledger
                .set_stock(vec![(main, 1_000_000_000_000)], None, &mut events)
                .unwrap();
        } else if open.len() < OPEN_PER_SKU {
            let cmd = ReserveCmd {
                buyer: buyer.clone(),
                quantity: 1,
                ttl_ms: 3_600_000,
                idempotency: None,
                shopper_units_max: None,
            };
            let outcome = ledger.reserve(cmd, now, &mut events).unwrap();
            open.push_back(outcome.receipt.seq);
        } else {
            let seq = open.pop_front().unwrap();
            if n % 2 == 0 {
                ledger.release(seq, &buyer, now, &mut events).unwrap();
            } else {
                ledger.commit(seq, &buyer, now, &mut events).unwrap();
            }
        }
        let record = WalRecord {
            entity: EntityKey::Sku(id),
            body: RecordBody::Stock(std::mem::take(&mut events)),
        };
        wal.append(&record, None).unwrap();
    }
    wal.shutdown_blocking(thread).unwrap();
    store.sync(SyncMode::Fdatasync).unwrap();
    store
        .wal
        .iter()
        .map(|item| item.map(|(_, v)| v.len() as u64).unwrap_or(0))
        .sum()
}

fn main() {
    let records = knob("RECOVERY_RECORDS", 10_000_000);
    let dir = tempfile::tempdir().unwrap();
    let generated = Instant::now();
    let wal_bytes = generate(dir.path(), records);
    let generation = generated.elapsed();

    // Replay alone (no snapshot exists, so every record is applied).
    let store = Store::open(
        dir.path(),
        256 << 20,
        SyncMode::Fdatasync,
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    let replay = recover(&store, &LedgerLimits::default(), RecoveryMode::Snapshots).unwrap();
    let stats = replay.stats.clone();
    assert_eq!(stats.records, records + SKUS / 100);
    drop(replay);
    drop(store);

    // The whole start-up: open, replay, checkpoint snapshots, serve.
    let config = support::bench_config(dir.path(), SyncMode::Fdatasync);
    let system = actix_rt::System::new();
    let started = Instant::now();
    let engine = system.block_on(support::start_engine(config));
    let ready = started.elapsed();
    let rss_mib = support::rss_bytes() as f64 / 1048576.0;
    system.block_on(engine.shutdown());

    println!("\nRecovery on {}", support::machine());
    println!("| WAL records | WAL batches | WAL size | replay | replay rate | time to ready | RSS after |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.0} MiB | {:.2} s | {:.2} M records/s | {:.2} s | {:.0} MiB |",
        stats.records,
        stats.batches,
        wal_bytes as f64 / 1048576.0,
        stats.elapsed.as_secs_f64(),
        stats.records_per_second() / 1e6,
        ready.as_secs_f64(),
        rss_mib
    );
    println!(
        "(generating the WAL took {:.1} s)",
        generation.as_secs_f64()
    );
}
