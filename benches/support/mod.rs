//! Shared by the benchmarks: an engine on a temp dir with products and stock,
//! a driver that keeps many reservations in flight, and process memory.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::json;

use flashdrop::app::Node;
use flashdrop::clock::SystemClock;
use flashdrop::config::Config;
use flashdrop::domain::identity::Role;
use flashdrop::domain::product::{NewProduct, NewSku};
use flashdrop::domain::stock::ReserveCmd;
use flashdrop::domain::{BuyerId, SkuCode, TenantKey, WarehouseId};
use flashdrop::persistence::SyncMode;

pub const TENANT: &str = "bench-seller";
/// The HS256 secret of bench servers, so the load can mint buyer tokens.
pub const BENCH_SECRET: &str = "flashdrop-bench-secret-0123456789abcdef";

/// A bearer token for buyer number `n` (access tokens need no account).
pub fn buyer_token(n: u64) -> String {
    mint((1u128 << 100) | u128::from(n), Role::Buyer, None)
}

/// A bearer token for a seller of a store that exists only in the token: the
/// comparison's baseline stores (Redis, PostgreSQL) take it for commits, as
/// flashdrop takes its real seller's.
pub fn seller_token(n: u64) -> String {
    let user = (1u128 << 101) | u128::from(n);
    mint(user, Role::SellerAdmin, Some(user))
}

fn mint(user: u128, role: Role, tenant: Option<u128>) -> String {
    let a = flashdrop::config::AuthConfig::default();
    let keys = flashdrop::auth::TokenKeys::new(
        BENCH_SECRET.as_bytes(),
        &a.issuer,
        &a.audience,
        3600,
        3600,
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    keys.issue_access(
        flashdrop::domain::UserId(user),
        role,
        tenant.map(flashdrop::domain::TenantId),
        user,
        now_ms,
    )
    .0
}

/// A bench config: defaults, then `FLASHDROP__SECTION__KEY` overrides from the
/// environment (to try knobs), then what the benchmark itself needs.
pub fn bench_config(dir: &std::path::Path, sync: SyncMode) -> Config {
    // Loaded in dev mode so a missing secret passes; the bench sets its own below.
    let dev = flashdrop::config::Overrides {
        dev: true,
        ..Default::default()
    };
    let mut config = Config::load(None, &dev).unwrap_or_else(|e| panic!("{e}"));
    config.auth.dev_mode = false;
    config.storage.data_dir = dir.to_path_buf();
    config.wal.sync = sync;
    config.server.port = 0;
    // Millions of reservations stay open for the whole run.
    config.reservations.open_max_per_sku = 50_000_000;
    config.log.level = "warn".into();
    config.auth.jwt_secret = BENCH_SECRET.into();
    // A few hundred synthetic buyers send thousands of requests a second
    // each: per-buyer and per-store limits would measure the limiter.
    config.admission.buyer_burst = u32::MAX;
    config.admission.tenant_shopper_multiplier = 1_000_000;
    config.admission.max_in_flight = 10_000_000;
    // Each synthetic buyer holds many units for the whole run: the per-shopper
    // hold bounds would measure the bound, not the reserve path.
    config.reservations.shopper_units_per_sku_max = u32::MAX;
    config.reservations.shopper_holds_max = u32::MAX;
    config
}

/// Creates `count` SKUs (100 per product) and gives each `units` in "main".
pub async fn stock_skus(engine: &Node, prefix: &str, count: usize, units: u64) -> Vec<SkuCode> {
    let tenant = TenantKey::parse(TENANT).unwrap();
    let codes: Vec<SkuCode> = (0..count)
        .map(|i| SkuCode::parse(&format!("{prefix}-{i}")).unwrap())
        .collect();
    let creations = codes.chunks(100).map(|chunk| {
        let draft = NewProduct {
            status: flashdrop::domain::product::ProductStatus::Active,
            title: format!("bench {prefix}"),
            description: String::new(),
            brand: String::new(),
            images: Vec::new(),
            options: Vec::new(),
            category: "bench".into(),
            attributes: Default::default(),
            skus: chunk
                .iter()
                .map(|code| NewSku {
                    code: code.to_string(),
                    price_amount: 1000,
                    price_currency: "USD".into(),
                    compare_at: None,
                    options: Vec::new(),
                    attributes: Default::default(),
                    low_stock_threshold: None,
                })
                .collect(),
        };
        let valid = draft.validate(u64::MAX).unwrap();
        let tenant = tenant.clone();
        async move {
            engine
                .catalog()
                .create_product(
                    &tenant,
                    valid,
                    u32::MAX,
                    flashdrop::services::catalog::Author {
                        by: "bench",
                        correlation_id: "",
                    },
                )
                .await
                .unwrap()
        }
    });
    run_bounded(creations, 64).await;
    if units > 0 {
        let sets = codes.iter().map(|code| {
            let tenant = tenant.clone();
            async move {
                let warehouse = vec![(WarehouseId::parse("main").unwrap(), units)];
                engine
                    .inventory()
                    .set_stock(code, &tenant, warehouse, None)
                    .await
                    .unwrap();
            }
        });
        run_bounded(sets, 512).await;
    }
    codes
}

/// Polls futures with at most `limit` in flight.
pub async fn run_bounded<F: std::future::Future>(futures: impl Iterator<Item = F>, limit: usize) {
    let mut futures = futures;
    let mut pending = FuturesUnordered::new();
    loop {
        while pending.len() < limit {
            match futures.next() {
                Some(f) => pending.push(f),
                None => break,
            }
        }
        if pending.next().await.is_none() {
            return;
        }
    }
}

/// `n` one-unit reservations round-robin over `codes` from `in_flight` tasks,
/// each awaiting its own reply as an HTTP handler does.
pub async fn reserve_many(
    engine: &Arc<Node>,
    codes: &Arc<Vec<SkuCode>>,
    n: u64,
    in_flight: usize,
) -> Duration {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight.min(n as usize).max(1))
        .map(|_| {
            let (engine, codes, next) = (engine.clone(), codes.clone(), next.clone());
            actix_rt::spawn(async move {
                let buyer = BuyerId::parse("bench-buyer").unwrap();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let cmd = ReserveCmd {
                        buyer: buyer.clone(),
                        quantity: 1,
                        ttl_ms: 600_000,
                        idempotency: None,
                        shopper_units_max: None,
                    };
                    let code = &codes[i as usize % codes.len()];
                    engine
                        .inventory()
                        .reserve(code, cmd)
                        .await
                        .expect("reserved");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("driver task");
    }
    started.elapsed()
}

pub async fn start_engine(config: Config) -> Arc<Node> {
    Node::start(config, Arc::new(SystemClock)).await.unwrap()
}

/// A numeric knob from the environment (`ORDERS=...`), or `default`.
pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// What machine a figure was taken on.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|r| {
                    r.split_whitespace()
                        .next()
                        .and_then(|k| k.parse::<u64>().ok())
                })
        })
        .unwrap_or(0);
    format!(
        "{cores} cores ({cpu}), {:.0} GiB RAM",
        mem_kb as f64 / 1048576.0
    )
}

pub fn json_line(value: serde_json::Value) {
    println!("{}", json!({ "bench": value }));
}

/// A flashdrop binary serving on a free port of its own choosing; it gets
/// SIGTERM and is waited for when dropped, so no server outlives a bench.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub port: u16,
}

impl ServerProcess {
    /// Starts `bin serve --port 0 --data-dir dir`, with `configure` adding its
    /// environment, and waits for its listening line.
    pub fn start(
        bin: &std::path::Path,
        dir: &std::path::Path,
        configure: impl FnOnce(&mut std::process::Command),
    ) -> ServerProcess {
        use std::io::BufRead;
        let mut command = std::process::Command::new(bin);
        command
            .args(["serve", "--port", "0", "--data-dir"])
            .arg(dir)
            .env("FLASHDROP__LOG__LEVEL", "warn")
            .stdout(std::process::Stdio::piped());
        configure(&mut command);
        let mut child = command.spawn().expect("the flashdrop binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let port: u16 = loop {
            let line = lines.next().expect("a listening line").unwrap();
            if let Some(address) = line.strip_prefix("flashdrop listening on http://") {
                break address.rsplit(':').next().unwrap().parse().unwrap();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        ServerProcess { child, port }
    }

    /// Resident set size of the server process, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// Waits until the server at `base` answers `/readyz` (at most a minute).
pub async fn wait_ready(http: &awc::Client, base: &str) {
    for _ in 0..1200 {
        if let Ok(response) = http.get(format!("{base}/readyz")).send().await {
            if response.status().is_success() {
                return;
            }
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `body`, insists on success, answers the JSON body.
pub async fn call(request: awc::ClientRequest, body: serde_json::Value) -> serde_json::Value {
    let mut response = request.send_json(&body).await.expect("the server answers");
    let bytes = response.body().await.unwrap_or_default();
    assert!(
        response.status().is_success(),
        "{}: {}",
        response.status(),
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default()
}

/// Registers a seller, opens a store for it, answers `Bearer <token>` of its admin.
pub async fn onboard_seller(http: &awc::Client, base: &str, email: &str) -> String {
    let credentials = json!({"email": email, "password": "load-Test-password-1"});
    call(
        http.post(format!("{base}/v1/auth/register")),
        credentials.clone(),
    )
    .await;
    let login = call(http.post(format!("{base}/v1/auth/login")), credentials).await;
    let token = login["access_token"].as_str().unwrap();
    let store = call(
        http.post(format!("{base}/v1/tenants"))
            .insert_header(("authorization", format!("Bearer {token}"))),
        json!({"name": "Bench store"}),
    )
    .await;
    format!(
        "Bearer {}",
        store["tokens"]["access_token"].as_str().unwrap()
    )
}
