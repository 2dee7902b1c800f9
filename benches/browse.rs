//! Browsing at scale: `GET /v1/products` with a category (its subtree) and a
//! price window over BROWSE_PRODUCTS products (1,000,000) from BROWSE_STORES
//! stores (1,000), filed under the 100 leaves of a 10 × 10 category tree,
//! one variant each at a price spread over 1.00–1,000.00. The engine and its
//! HTTP server run in this process (served on loopback, load from keep-alive
//! clients on the main thread); products are created through the catalog
//! service, not HTTP, to keep the load phase short (`wal.sync = none`: the
//! load is not what is measured).
//!
//! Measured: resident memory per product (RSS after the load minus RSS of
//! the started, empty engine, over the products: every structure a product
//! costs, its SKU, history, listings and the sled cache's share included);
//! then requests/s, p50, p99 and p999 of three HTTP scenarios, each compared
//! in the same run with reading one product (`GET /v1/products/{id}`); and
//! the index alone (`Catalog::browse`, no HTTP), p50/p99.
//!
//! Run: `cargo bench --bench browse`
//! (BROWSE_PRODUCTS, BROWSE_STORES, BROWSE_SECONDS, BROWSE_CLIENTS to change)

mod support;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use flashdrop::domain::browse::BrowseQuery;
use flashdrop::domain::category::CategoryId;
use flashdrop::domain::product::{NewProduct, NewSku, ProductStatus};
use flashdrop::domain::{TenantId, TenantKey};
use flashdrop::persistence::SyncMode;
use flashdrop::services::catalog::Author;
use flashdrop::startup::Application;

use support::{bench_config, knob, machine, mib, rss_bytes, run_bounded};

const ROOTS: u64 = 10;
const LEAVES_PER_ROOT: u64 = 10;
/// List prices run over 100..=100_000 minor units; a window is 5% of that.
const PRICE_SPAN: u64 = 100_000;
const WINDOW: u64 = 5_000;

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    /// `GET /v1/products/{id}`: the baseline.
    Product,
    /// A root category and a price window, newest first.
    CategoryPrice,
    /// The same, cheapest first (the walk starts at the window).
    CategoryPriceByPrice,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Product => "GET /v1/products/{id} (baseline)",
            Scenario::CategoryPrice => "category subtree + price window, newest",
            Scenario::CategoryPriceByPrice => "category subtree + price window, sort=price",
        }
    }
}

struct Outcome {
    done: u64,
    errors: u64,
    items: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
}

/// A stable spread of `n` over `0..span`.
fn spread(n: u64, span: u64) -> u64 {
    n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) % span
}

fn main() {
    let products = knob("BROWSE_PRODUCTS", 1_000_000);
    let stores = knob("BROWSE_STORES", 1_000);
    let seconds = knob("BROWSE_SECONDS", 10);
    let clients = knob("BROWSE_CLIENTS", 32) as usize;
    let dir = tempfile::tempdir().unwrap();
    let config = bench_config(dir.path(), SyncMode::None);
    let system = actix_rt::System::new();
    let (base, engine, server) = system.block_on(async {
        let app = Application::build(config).await.expect("app builds");
        let port = app.port();
        let slot = app.engine();
        let server = app.server_handle();
        actix_rt::spawn(async move {
            let _ = app.run_until_stopped().await;
        });
        let engine = loop {
            if let Some(engine) = slot.get() {
                break engine.clone();
            }
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        };
        (format!("http://127.0.0.1:{port}"), engine, server)
    });
    let empty = rss_bytes();

    let (roots, leaves) = system.block_on(async {
        let categories = engine.categories();
        let mut roots = Vec::new();
        let mut leaves = Vec::new();
        for r in 0..ROOTS {
            let root = categories
                .create(None, format!("Root {r}"), None)
                .await
                .unwrap();
            for l in 0..LEAVES_PER_ROOT {
                let leaf = categories
                    .create(Some(root.id), format!("Leaf {r}.{l}"), None)
                    .await
                    .unwrap();
                leaves.push(leaf.id);
            }
            roots.push(root.id);
        }
        (roots, leaves)
    });

    let loading = Instant::now();
    let ids: Vec<u128> = system.block_on(async {
        let ids = Rc::new(RefCell::new(Vec::with_capacity(products as usize)));
        let creations = (0..products).map(|n| {
            let engine = engine.clone();
            let ids = ids.clone();
            let leaf: CategoryId = leaves[spread(n, leaves.len() as u64) as usize];
            async move {
                let tenant = TenantKey::of_store(TenantId(u128::from(n % stores) + 1));
                let draft = NewProduct {
                    status: ProductStatus::Active,
                    title: format!("Product {n}"),
                    description: String::new(),
                    brand: format!("Brand {}", n % 50),
                    images: Vec::new(),
                    options: Vec::new(),
                    category: leaf.0.to_string(),
                    attributes: Default::default(),
                    skus: vec![NewSku {
                        code: format!("BR-{n}"),
                        price_amount: 100 + spread(n + 7, PRICE_SPAN) as i64,
                        price_currency: "EUR".into(),
                        compare_at: None,
                        options: Vec::new(),
                        attributes: Default::default(),
                        low_stock_threshold: None,
                    }],
                };
                let valid = draft.validate(u64::MAX).unwrap();
                let product = engine
                    .catalog()
                    .create_product(
                        &tenant,
                        valid,
                        u32::MAX,
                        Author {
                            by: "bench",
                            correlation_id: "",
                        },
                    )
                    .await
                    .unwrap();
                ids.borrow_mut().push(product.id);
            }
        });
        run_bounded(creations, 256).await;
        Rc::try_unwrap(ids).unwrap().into_inner()
    });
    let load_time = loading.elapsed();
    let loaded = rss_bytes();

    // The index alone: the category scenario without HTTP.
    let mut index_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut index_items = 0u64;
    for n in 0..20_000u64 {
        let query = category_query(&roots, n);
        let q = BrowseQuery::parse(form_urlencoded::parse(query.as_bytes())).unwrap();
        let t = Instant::now();
        let page = engine.catalog().browse(&q, |_| true).unwrap();
        index_us
            .record(t.elapsed().as_micros().max(1) as u64)
            .unwrap();
        index_items += page.items.len() as u64;
    }

    let ids = Arc::new(ids);
    let rows = system.block_on(async {
        drive(&base, Scenario::Product, &ids, &roots, clients, 1).await;
        let mut rows = Vec::new();
        for scenario in [
            Scenario::Product,
            Scenario::CategoryPrice,
            Scenario::CategoryPriceByPrice,
        ] {
            let outcome = drive(&base, scenario, &ids, &roots, clients, seconds).await;
            rows.push((scenario, outcome));
        }
        server.stop(true).await;
        rows
    });
    system.block_on(engine.shutdown());

    println!();
    println!("Browsing GET /v1/products over {products} products from {stores} stores");
    println!("machine: {}", machine());
    println!(
        "load: {products} products (1 variant each, 100 leaf categories under 10 roots) created through the catalog in {:.1} s ({:.0}/s, wal.sync = none)",
        load_time.as_secs_f64(),
        products as f64 / load_time.as_secs_f64()
    );
    println!(
        "memory: RSS {:.0} MiB empty, {:.0} MiB loaded: {:.0} B per product",
        mib(empty),
        mib(loaded),
        (loaded.saturating_sub(empty)) as f64 / products as f64
    );
    println!(
        "index alone (Catalog::browse, category subtree + price window, newest, limit 20): p50 {} µs, p99 {} µs, {:.1} items per page",
        index_us.value_at_quantile(0.5),
        index_us.value_at_quantile(0.99),
        index_items as f64 / 20_000.0
    );
    println!("HTTP: {clients} keep-alive clients for {seconds} s per scenario, limit 20");
    println!();
    println!("| scenario | requests/s | ratio to baseline | p50 ms | p99 ms | p999 ms | items per page | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let baseline = rows[0].1.done as f64 / rows[0].1.elapsed.as_secs_f64();
    for (scenario, o) in &rows {
        let rate = o.done as f64 / o.elapsed.as_secs_f64();
        let ms = |q: f64| o.latency_us.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "| {} | {:.0} | {:.3} | {:.2} | {:.2} | {:.2} | {:.1} | {} |",
            scenario.name(),
            rate,
            rate / baseline,
            ms(0.5),
            ms(0.99),
            ms(0.999),
            o.items as f64 / o.done.max(1) as f64,
            o.errors
        );
    }
    let worst = rows
        .iter()
        .filter(|(s, _)| *s != Scenario::Product)
        .map(|(_, o)| o.latency_us.value_at_quantile(0.99))
        .max()
        .unwrap_or(0);
    println!();
    println!(
        "goal: p99 <= 10 ms for a category and price filter: {} (worst browse p99 {:.2} ms)",
        if worst <= 10_000 { "met" } else { "NOT met" },
        worst as f64 / 1000.0
    );
}

/// The `n`th category question: a root's subtree and a 5% price window.
fn category_query(roots: &[CategoryId], n: u64) -> String {
    let root = roots[spread(n, roots.len() as u64) as usize];
    let low = 100 + spread(n + 3, PRICE_SPAN - WINDOW);
    format!(
        "category={}&min_price={low}&max_price={}&limit=20",
        root.0,
        low + WINDOW
    )
}

async fn drive(
    base: &str,
    scenario: Scenario,
    ids: &Arc<Vec<u128>>,
    roots: &[CategoryId],
    clients: usize,
    seconds: u64,
) -> Outcome {
    let http = awc::Client::builder()
        .connector(awc::Connector::new().limit(clients * 2))
        .timeout(Duration::from_secs(30))
        .finish();
    let latency = Rc::new(RefCell::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
    ));
    let counts = Rc::new(RefCell::new((0u64, 0u64, 0u64)));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, latency, counts) = (http.clone(), latency.clone(), counts.clone());
            let (base, ids, roots) = (base.to_owned(), ids.clone(), roots.to_vec());
            actix_rt::spawn(async move {
                let mut n = c as u64 * 1_000_003;
                while Instant::now() < until {
                    n += 1;
                    let url = match scenario {
                        Scenario::Product => {
                            let id = ids[spread(n, ids.len() as u64) as usize];
                            format!("{base}/v1/products/{}", uuid::Uuid::from_u128(id))
                        }
                        Scenario::CategoryPrice => {
                            format!("{base}/v1/products?{}", category_query(&roots, n))
                        }
                        Scenario::CategoryPriceByPrice => {
                            format!(
                                "{base}/v1/products?{}&sort=price",
                                category_query(&roots, n)
                            )
                        }
                    };
                    let t = Instant::now();
                    let answer = match http.get(url).send().await {
                        Ok(mut response) if response.status().is_success() => {
                            let bytes = response.body().limit(1 << 22).await.unwrap_or_default();
                            serde_json::from_slice::<serde_json::Value>(&bytes).ok()
                        }
                        _ => None,
                    };
                    let mut counts = counts.borrow_mut();
                    match answer {
                        Some(body) => {
                            counts.0 += 1;
                            counts.2 += body["items"].as_array().map_or(1, Vec::len) as u64;
                            let _ = latency
                                .borrow_mut()
                                .record(t.elapsed().as_micros().max(1) as u64);
                        }
                        None => counts.1 += 1,
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let (done, errors, items) = *counts.borrow();
    let latency_us = latency.borrow().clone();
    Outcome {
        done,
        errors,
        items,
        elapsed: started.elapsed(),
        latency_us,
    }
}
