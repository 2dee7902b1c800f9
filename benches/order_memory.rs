//! Memory of history: places and settles ORDERS one-unit orders (default
//! 1,000,000) from BUYERS shoppers (100,000), with LOGINS logins and logouts
//! (100,000) of one account alongside, and reports the resident set after
//! each quarter, the growth per order, and what stays resident (orders,
//! sessions). Memory should follow what is active: once orders settle and
//! sessions end, RSS at the end should be close to RSS at the half.
//!
//! Run: `cargo bench --bench order_memory` (ORDERS, BUYERS, LOGINS to change;
//! payments go through the built-in sandbox, whose ledger shares the
//! engine's database; `PSP=outside` charges a stand-in for a provider
//! outside the process instead, which keeps a fixed number of recent
//! payments, to measure the engine alone).
//! RSS is read at rest after each quarter: the median of readings every
//! 200 ms over REST_S seconds (default 20) after sled flushed (and once the
//! moment the quarter ended).
//! The WAL does not sync (`wal.sync = none`): this measures memory, not disks.
//! With `--features system-allocator` the bench also counts the live heap
//! (bytes allocated and not freed), which tells memory in use from memory
//! the allocator keeps after it was freed. `HARD_EXIT=1` ends the process
//! after the RSS table without shutting down (and without the per-tree
//! table, which needs the engine stopped), so a heap profiler run
//! around it (`heaptrack target/release/deps/order_memory-* --bench` on the
//! system-allocator build) reports what was live then as not freed,
//! instead of what is left after shutdown.

mod support;

use support::{knob, mib};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashdrop::actors::orders::{ItemRequest, OrderDraft};
use flashdrop::app::{Externals, Node};
use flashdrop::domain::order::OrderState;
use flashdrop::domain::{SkuCode, TenantKey, UserId, WarehouseId};
use flashdrop::payments::{
    ChargeRequest, GatewayError, GatewayFuture, PaymentGateway, PaymentView, PspStatus,
};
use flashdrop::persistence::SyncMode;

use support::{bench_config, rss_bytes, run_bounded, stock_skus};

/// The live heap: bytes allocated and not yet freed, counted around the
/// system allocator (only with the `system-allocator` feature, when the
/// library does not install mimalloc).
#[cfg(feature = "system-allocator")]
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);

    struct Counting;

    // SAFETY: every call is passed on to `System` unchanged; the counter
    // only observes sizes.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                LIVE_BYTES.fetch_add(layout.size() as u64, Relaxed);
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                LIVE_BYTES.fetch_add(layout.size() as u64, Relaxed);
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            LIVE_BYTES.fetch_sub(layout.size() as u64, Relaxed);
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                LIVE_BYTES.fetch_add(new_size as u64, Relaxed);
                LIVE_BYTES.fetch_sub(layout.size() as u64, Relaxed);
            }
            p
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    pub fn live_bytes() -> Option<u64> {
        Some(LIVE_BYTES.load(Relaxed))
    }
}

#[cfg(not(feature = "system-allocator"))]
mod heap {
    pub fn live_bytes() -> Option<u64> {
        None
    }
}

const SKUS: usize = 100;
const EMAIL: &str = "memory-shopper@bench.example";
const PASSWORD: &str = "memory-Bench-7-battery";

/// After each quarter, RSS is read every `REST_READING_EVERY` for REST_S
/// seconds (default 20: sled's segment work after the flush lifts RSS for
/// the first several seconds, which a 3 s rest read as growth).
const REST_READING_EVERY: Duration = Duration::from_millis(200);

/// A payment provider outside the process, as in production: it approves
/// every charge and remembers only its latest `RECENT_PAYMENTS` payments
/// (a fixed amount, full long before the first reading), so a repeated
/// call finds its payment and the figures are the engine's memory, not a
/// provider's books. Used with `PSP=outside`; by default the bench charges
/// through the built-in sandbox, whose whole ledger lives in the engine's
/// database.
#[derive(Default)]
struct OutsideProvider {
    recent: parking_lot::Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    by_id: HashMap<String, PaymentView>,
    by_key: HashMap<String, String>,
    /// `(key, id)` oldest first.
    order: std::collections::VecDeque<(String, String)>,
}

const RECENT_PAYMENTS: usize = 65_536;

fn answer<T: Send + 'static>(result: Result<T, GatewayError>) -> GatewayFuture<T> {
    Box::pin(std::future::ready(result))
}

impl OutsideProvider {
    fn change(
        &self,
        id: &str,
        f: impl FnOnce(&mut PaymentView) -> Result<(), GatewayError>,
    ) -> GatewayFuture<PaymentView> {
        let mut recent = self.recent.lock();
        let result = match recent.by_id.get_mut(id) {
            Some(view) => f(view).map(|()| view.clone()),
            None => Err(GatewayError::NotFound),
        };
        answer(result)
    }
}

impl PaymentGateway for OutsideProvider {
    fn authorize(&self, request: ChargeRequest) -> GatewayFuture<PaymentView> {
        let mut recent = self.recent.lock();
        if let Some(id) = recent.by_key.get(&request.key) {
            return answer(Ok(recent.by_id[id].clone()));
        }
        let view = PaymentView {
            id: format!("pay_{}", uuid::Uuid::now_v7().simple()),
            reference: request.reference,
            status: PspStatus::Authorized,
            amount_minor: request.amount_minor,
            currency: request.currency,
            captured_minor: 0,
            refunded_minor: 0,
            decline_code: None,
        };
        if recent.order.len() == RECENT_PAYMENTS {
            if let Some((key, id)) = recent.order.pop_front() {
                recent.by_key.remove(&key);
                recent.by_id.remove(&id);
            }
        }
        recent.by_key.insert(request.key.clone(), view.id.clone());
        recent.by_id.insert(view.id.clone(), view.clone());
        recent.order.push_back((request.key, view.id.clone()));
        answer(Ok(view))
    }

    fn capture(&self, payment_id: String, _: String) -> GatewayFuture<PaymentView> {
        self.change(&payment_id, |view| {
            view.status = PspStatus::Captured;
            view.captured_minor = view.amount_minor;
            Ok(())
        })
    }

    fn void(&self, payment_id: String, _: String) -> GatewayFuture<PaymentView> {
        self.change(&payment_id, |view| match view.status {
            PspStatus::Captured => Err(GatewayError::Refused("captured".into())),
            _ => {
                view.status = PspStatus::Voided;
                Ok(())
            }
        })
    }

    fn refund(&self, _: String, _: i64, _: String) -> GatewayFuture<PaymentView> {
        answer(Err(GatewayError::Refused(
            "no refunds in this bench".into(),
        )))
    }

    fn status(&self, payment_id: String) -> GatewayFuture<PaymentView> {
        self.change(&payment_id, |_| Ok(()))
    }

    fn find(&self, authorize_key: String) -> GatewayFuture<Option<PaymentView>> {
        let recent = self.recent.lock();
        let found = recent
            .by_key
            .get(&authorize_key)
            .map(|id| recent.by_id[id].clone());
        answer(Ok(found))
    }
}

/// One reading, after a quarter of the orders.
struct Row {
    orders: u64,
    logins: u64,
    /// RSS the moment the quarter's last order settled.
    busy_rss: u64,
    /// The median RSS over the rest (REST_S), after sled flushed ...
    rss: u64,
    /// ... and the lowest and highest reading.
    rss_range: (u64, u64),
    live: Option<u64>,
    resident_orders: usize,
    sessions: usize,
    at: Duration,
}

/// Places and settles orders `from..to` (buyer = order number mod `buyers`).
async fn orders(node: &Arc<Node>, codes: &Arc<Vec<SkuCode>>, from: u64, to: u64, buyers: u64) {
    let placing = (from..to).map(|n| {
        let (node, codes) = (node.clone(), codes.clone());
        async move {
            let draft = OrderDraft {
                buyer: UserId((1u128 << 100) | u128::from(n % buyers)),
                items: vec![ItemRequest {
                    sku: codes[n as usize % codes.len()].clone(),
                    quantity: 1,
                    reservations: Vec::new(),
                }],
                shipping_address: "1 Bench Street".into(),
                payment_method: "pm_card_visa".into(),
                idempotency: None,
                shipping: Vec::new(),
            };
            let (order, _) = node.orders().place(draft).await.expect("placed");
            let settled = node
                .orders()
                .settle(order.id, Duration::from_secs(60))
                .await
                .expect("settled");
            assert_eq!(settled.state, OrderState::Paid, "order {n}");
        }
    });
    run_bounded(placing, 256).await;
}

/// Logs the account in and out `count` times.
async fn logins(node: &Arc<Node>, count: u64, done: &AtomicU64) {
    let sessions = (0..count).map(|_| async {
        let tokens = node
            .directory()
            .login(EMAIL, PASSWORD.into(), None, None)
            .await
            .expect("logged in");
        let caller =
            flashdrop::http::extract::verify_token(node, &tokens.access_token).expect("token");
        node.directory()
            .logout(&caller, None)
            .await
            .expect("logged out");
        done.fetch_add(1, Ordering::Relaxed);
    });
    run_bounded(sessions, 16).await;
}

fn main() {
    let total = knob("ORDERS", 1_000_000);
    let buyers = knob("BUYERS", 100_000).max(1);
    let login_total = knob("LOGINS", 100_000);
    let dir = tempfile::tempdir().unwrap();
    let mut config = bench_config(dir.path(), SyncMode::None);
    // Cheap password hashing: this measures what a session leaves behind.
    config.auth.dev_mode = true;
    config.auth.argon2_memory_kib = 8;
    config.auth.argon2_iterations = 1;
    config.auth.login_burst_per_account = 1_000_000;
    config.auth.login_burst_per_address = 1_000_000;
    config.orders.active_max = 100_000;
    // Each SKU remembers finished reservations and reservation idempotency
    // keys (every order's hold has a key) for idempotent retries, each up to
    // its own per-SKU cap: PER_SKU here (default 1,000), 100,000 in the
    // engine's defaults. With 100 SKUs the default caps are 10M entries
    // each, which a run of 1M orders never reaches. Caps the run reaches
    // show that they hold; what grows past them is the order history.
    let per_sku = knob("PER_SKU", 1_000) as usize;
    config.reservations.finished_max_per_sku = per_sku;
    config.reservations.idempotency_keys_max_per_sku = per_sku;
    config.payments.sandbox_webhook_queue_max = 1;
    let cache_mib = config.storage.cache_capacity_mb;
    let system = actix_rt::System::new();
    let outside = std::env::var("PSP").is_ok_and(|psp| psp == "outside");
    let mut externals = Externals::system();
    if outside {
        externals.payments = Some(Arc::new(OutsideProvider::default()));
    }
    let node = system
        .block_on(Node::start_on(config, externals, None))
        .expect("started");
    let codes = Arc::new(system.block_on(stock_skus(&node, "ORD", SKUS, 0)));
    let tenant = TenantKey::parse(support::TENANT).unwrap();
    system.block_on(async {
        for code in codes.iter() {
            let units = total / SKUS as u64 + 1;
            let main = vec![(WarehouseId::parse("main").unwrap(), units)];
            node.inventory()
                .set_stock(code, &tenant, main, None)
                .await
                .unwrap();
        }
        node.directory()
            .register(EMAIL, PASSWORD.into(), None, None)
            .await
            .expect("registered");
    });
    let start_rss = rss_bytes();
    let start_heap = heap::live_bytes();
    let started = Instant::now();
    let logged = AtomicU64::new(0);
    let mut rows = Vec::new();
    let quarters = 4;
    let rest_readings =
        (knob("REST_S", 20) as u32 * 1000 / REST_READING_EVERY.as_millis() as u32).max(3);
    for q in 0..quarters {
        let (from, to) = (total * q / quarters, total * (q + 1) / quarters);
        let (login_from, login_to) = (login_total * q / quarters, login_total * (q + 1) / quarters);
        system.block_on(async {
            futures_util::future::join(
                orders(&node, &codes, from, to, buyers),
                logins(&node, login_to - login_from, &logged),
            )
            .await;
        });
        let resident = node.directory().resident();
        let busy_rss = rss_bytes();
        // Read at rest: sled's write buffers (up to a 16 MiB segment each)
        // are written out, and the median of readings over the rest (REST_S) is taken,
        // so what is in flight at one instant does not decide the figure.
        node.store().sync(SyncMode::Flush).expect("flushed");
        let readings: Vec<u64> = (0..rest_readings)
            .map(|_| {
                std::thread::sleep(REST_READING_EVERY);
                rss_bytes()
            })
            .collect();
        let third = readings.len() / 3;
        eprintln!(
            "order_memory: {to} orders, RSS over the rest by thirds (MiB): {:.0} {:.0} {:.0}",
            mib(median(&readings[..third])),
            mib(median(&readings[third..2 * third])),
            mib(median(&readings[2 * third..]))
        );
        rows.push(Row {
            orders: to,
            logins: logged.load(Ordering::Relaxed),
            busy_rss,
            rss: median(&readings),
            rss_range: (
                readings.iter().copied().min().unwrap_or(0),
                readings.iter().copied().max().unwrap_or(0),
            ),
            live: heap::live_bytes(),
            resident_orders: node.orders().count(),
            sessions: resident.sessions,
            at: started.elapsed(),
        });
    }

    println!(
        "\nOrder history in memory on {} (sled cache capacity {cache_mib} MiB, wal.sync = none, payments: {})",
        support::machine(),
        if outside { "a provider outside the process (PSP=outside)" } else { "the built-in sandbox" }
    );
    println!("| orders settled | logins + logouts | RSS at rest (median) | RSS at rest (range) | RSS while busy | growth since start (at rest) | live heap | orders resident | sessions resident | elapsed |");
    println!("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    let heap_text =
        |live: Option<u64>| live.map_or("-".to_owned(), |b| format!("{:.0} MiB", mib(b)));
    println!(
        "| 0 | 0 | {:.0} MiB | - | - | - | {} | 0 | - | - |",
        mib(start_rss),
        heap_text(start_heap)
    );
    for row in &rows {
        println!(
            "| {} | {} | {:.0} MiB | {:.0}–{:.0} MiB | {:.0} MiB | {:.0} MiB | {} | {} | {} | {:.0} s |",
            row.orders,
            row.logins,
            mib(row.rss),
            mib(row.rss_range.0),
            mib(row.rss_range.1),
            mib(row.busy_rss),
            mib(row.rss.saturating_sub(start_rss)),
            heap_text(row.live),
            row.resident_orders,
            row.sessions,
            row.at.as_secs_f64()
        );
    }
    let (half_row, end_row) = (
        &rows[quarters as usize / 2 - 1],
        &rows[quarters as usize - 1],
    );
    let (half, end) = (half_row.rss, end_row.rss);
    println!(
        "RSS while busy, at the end / at the half: {:.2}",
        end_row.busy_rss as f64 / half_row.busy_rss as f64
    );
    if let (Some(half), Some(end)) = (half_row.live, end_row.live) {
        println!(
            "Live heap at the end / at the half: {:.2}; growth per order in the second half: {:.0} B",
            end as f64 / half as f64,
            end.saturating_sub(half) as f64 / (total / 2).max(1) as f64
        );
    }
    println!(
        "RSS at rest, at the end / at the half: {:.2} (target: <= 1.10); growth per order in the second half: {:.0} B",
        end as f64 / half as f64,
        end.saturating_sub(half) as f64 / (total / 2).max(1) as f64
    );
    if std::env::var("HARD_EXIT").is_ok_and(|v| v == "1") {
        // For a heap profiler: what is live now is reported as not freed.
        // The data directory goes (its files stay open until the exit), as
        // `exit` skips the destructor that would remove it.
        eprintln!("order_memory: HARD_EXIT=1, exiting without shutdown");
        let _ = std::fs::remove_dir_all(dir.path());
        std::process::exit(0);
    }
    system.block_on(node.shutdown());
    drop(node);
    let stored = stored_bytes(dir.path());
    println!("\nWhat the data directory holds per settled order, by sled tree (prefixes of the default tree apart):");
    println!("| tree | keys | keys per order | key + value bytes per order |");
    println!("|---|---:|---:|---:|");
    for (name, keys, bytes) in stored {
        println!(
            "| {name} | {keys} | {:.2} | {:.0} B |",
            keys as f64 / total.max(1) as f64,
            bytes as f64 / total.max(1) as f64
        );
    }
}

fn median(readings: &[u64]) -> u64 {
    let mut sorted = readings.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

/// Keys and key + value bytes per sled tree in the data directory (the default
/// tree split by the text before its keys' first `/`), largest first: sled's
/// memory follows the bytes it holds, so this says what each order costs.
fn stored_bytes(dir: &std::path::Path) -> Vec<(String, u64, u64)> {
    // The engine's threads may still hold the directory's lock: read a copy.
    let copy = tempfile::tempdir().unwrap();
    if let Err(error) = copy_dir(&dir.join("sled"), copy.path()) {
        println!("(the data directory could not be copied: {error})");
        return Vec::new();
    }
    let db = sled::Config::new()
        .path(copy.path())
        .segment_size(flashdrop::persistence::store::SLED_SEGMENT_BYTES)
        .open();
    let db = match db {
        Ok(db) => db,
        Err(error) => {
            println!("(the data directory could not be reopened: {error})");
            return Vec::new();
        }
    };
    let mut sizes = std::collections::BTreeMap::<String, (u64, u64)>::new();
    for name in db.tree_names() {
        let tree_name = String::from_utf8_lossy(&name).into_owned();
        let default = tree_name == "__sled__default";
        let Ok(tree) = db.open_tree(&name) else {
            continue;
        };
        for (key, value) in tree.iter().flatten() {
            let label = match key.iter().position(|&b| b == b'/') {
                Some(end) if default && end <= 16 => {
                    format!("default {}/", String::from_utf8_lossy(&key[..end]))
                }
                _ => tree_name.clone(),
            };
            let entry = sizes.entry(label).or_default();
            entry.0 += 1;
            entry.1 += (key.len() + value.len()) as u64;
        }
    }
    let mut sizes: Vec<_> = sizes.into_iter().map(|(n, (k, b))| (n, k, b)).collect();
    sizes.sort_by_key(|s| std::cmp::Reverse(s.2));
    sizes
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
