//! Memory: resident set size with 1M SKUs registered (10k products of 100
//! SKUs), then with 10k of them active (stock set and one reservation held, so
//! each has a live actor, a ledger and an open reservation).
//!
//! Run: `cargo bench --bench memory`   (MEMORY_SKUS, MEMORY_ACTIVE to change)

mod support;

use support::{knob, mib};

use std::sync::Arc;
use std::time::Instant;

use flashdrop::domain::stock::ReserveCmd;
use flashdrop::domain::{BuyerId, TenantKey, WarehouseId};
use flashdrop::persistence::SyncMode;

use support::{bench_config, rss_bytes, run_bounded, start_engine, stock_skus};

fn main() {
    let skus = knob("MEMORY_SKUS", 1_000_000) as usize;
    let active = knob("MEMORY_ACTIVE", 10_000) as usize;
    let dir = tempfile::tempdir().unwrap();
    let config = bench_config(dir.path(), SyncMode::Fdatasync);
    let cache_mib = config.storage.cache_capacity_mb;
    let system = actix_rt::System::new();
    let engine = system.block_on(start_engine(config));
    let empty = rss_bytes();

    let started = Instant::now();
    let codes = system.block_on(stock_skus(&engine, "MEM", skus, 0));
    let registering = started.elapsed();
    let registered = rss_bytes();
    let active_after_registering = engine.census()["active"];

    let tenant = TenantKey::parse(support::TENANT).unwrap();
    let buyer = BuyerId::parse("memory-buyer").unwrap();
    system.block_on(async {
        let activations = codes.iter().take(active).map(|code| {
            let (engine, tenant, buyer) = (engine.clone(), tenant.clone(), buyer.clone());
            async move {
                let main = vec![(WarehouseId::parse("main").unwrap(), 100)];
                engine
                    .inventory()
                    .set_stock(code, &tenant, main, None)
                    .await
                    .unwrap();
                let cmd = ReserveCmd {
                    buyer,
                    quantity: 1,
                    ttl_ms: 3_600_000,
                    idempotency: None,
                    shopper_units_max: None,
                };
                engine.inventory().reserve(code, cmd).await.unwrap();
            }
        });
        run_bounded(activations, 512).await;
    });
    let census = engine.census();
    let with_active = rss_bytes();
    let engine: Arc<_> = engine;
    system.block_on(engine.shutdown());

    println!(
        "\nMemory on {} (sled cache capacity {cache_mib} MiB)",
        support::machine()
    );
    println!("| state | SKUs registered | active actors | RSS | per SKU / per actor |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| engine started, empty | 0 | 0 | {:.0} MiB | - |",
        mib(empty)
    );
    println!(
        "| SKUs registered | {skus} | {} | {:.0} MiB | {:.0} B per SKU |",
        active_after_registering,
        mib(registered),
        (registered - empty) as f64 / skus as f64
    );
    println!(
        "| + actors active | {skus} | {} | {:.0} MiB | {:.0} B per actor |",
        census["active"],
        mib(with_active),
        (with_active.saturating_sub(registered)) as f64 / active as f64
    );
    println!("(registering took {:.1} s)", registering.as_secs_f64());
    assert_eq!(
        census["active"], active,
        "every touched SKU has a live actor"
    );
}
