//! Durable reservations per second through the SKU actors and the WAL, in
//! process: spread over 1,000 SKUs and on one hot SKU, in each sync mode. After
//! the criterion run, a table gives each figure and its ratio to `none`.
//!
//! Run: `cargo bench --bench reserve`

mod support;

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput};

use flashdrop::app::Node;
use flashdrop::domain::SkuCode;
use flashdrop::persistence::SyncMode;

use support::{bench_config, reserve_many, start_engine, stock_skus};

/// Reservations kept in flight by the driver (the load of many HTTP workers).
const IN_FLIGHT: usize = 4096;
const MODES: [SyncMode; 3] = [SyncMode::None, SyncMode::Flush, SyncMode::Fdatasync];
const SCENARIOS: [(&str, usize); 2] = [("spread_1000_skus", 1000), ("hot_sku", 1)];

struct Rig {
    system: actix_rt::SystemRunner,
    engine: Arc<Node>,
    codes: Arc<Vec<SkuCode>>,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new(sync: SyncMode, skus: usize) -> Self {
        let system = actix_rt::System::new();
        let dir = tempfile::tempdir().unwrap();
        let config = bench_config(dir.path(), sync);
        let (engine, codes) = system.block_on(async {
            let engine = start_engine(config).await;
            let codes = stock_skus(&engine, "R", skus, 1_000_000_000_000).await;
            (engine, codes)
        });
        Self {
            system,
            engine,
            codes: Arc::new(codes),
            _dir: dir,
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.system.block_on(self.engine.shutdown());
    }
}

fn reserve(c: &mut Criterion) {
    let mut group = c.benchmark_group("reserve");
    group.sample_size(15);
    group.warm_up_time(std::time::Duration::from_secs(2));
    group.measurement_time(std::time::Duration::from_secs(12));
    group.throughput(Throughput::Elements(1));
    for (scenario, skus) in SCENARIOS {
        for mode in MODES {
            let rig = Rig::new(mode, skus);
            group.bench_function(BenchmarkId::new(scenario, mode.as_str()), |b| {
                b.iter_custom(|iters| {
                    rig.system
                        .block_on(reserve_many(&rig.engine, &rig.codes, iters, IN_FLIGHT))
                });
            });
        }
    }
    group.finish();
}

/// Reads criterion's estimates and prints reservations/s (mean, with its 95%
/// confidence interval) and the ratio to `none` in the same run.
fn summary() {
    let root = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let estimate = |scenario: &str, mode: SyncMode| -> Option<(f64, f64, f64)> {
        let path = format!(
            "{root}/criterion/reserve/{scenario}/{}/new/estimates.json",
            mode.as_str()
        );
        let text = std::fs::read_to_string(path).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        let mean = &value["mean"];
        Some((
            mean["point_estimate"].as_f64()?,
            mean["confidence_interval"]["lower_bound"].as_f64()?,
            mean["confidence_interval"]["upper_bound"].as_f64()?,
        ))
    };
    println!("\nDurable reservations/s on {}:", support::machine());
    println!(
        "| scenario | sync | reservations/s (mean) | 95% interval | ratio to none | WAL cost |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for (scenario, _) in SCENARIOS {
        let Some((none, _, _)) = estimate(scenario, SyncMode::None) else {
            continue;
        };
        for mode in MODES {
            let Some((ns, low_ns, high_ns)) = estimate(scenario, mode) else {
                continue;
            };
            let ratio = none / ns;
            println!(
                "| {scenario} | {} | {:.0} | {:.0}–{:.0} | {:.2} | {:.0}% |",
                mode.as_str(),
                1e9 / ns,
                1e9 / high_ns,
                1e9 / low_ns,
                ratio,
                (1.0 - ratio) * 100.0
            );
        }
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    reserve(&mut criterion);
    criterion.final_summary();
    summary();
}
