//! Flash-sale load over loopback HTTP: many keep-alive clients hammer
//! `POST /v1/skus/{sku}/reservations` on one hot SKU and spread over 1,000
//! SKUs, against flashdrop (fdatasync) and, in the same run, against a trivial
//! actix-web endpoint that parses the same body and answers 201 (the ceiling).
//! A sell-out phase checks that exactly the stock is sold (oversell must be 0).
//! Every request carries both identities, so every server reads the same bytes:
//! the HTTP-layer rows compare header identity (the engine core's, pre-auth)
//! with bearer-token verification, the cost issue 3 asks for.
//!
//! With `FLASH_PREAUTH_BIN` set to a flashdrop binary from before tokens
//! (commit 8e4aaf7, see README), the end-to-end cost of authentication is
//! measured too: that binary and this one as processes, alternating, the same
//! load against each (it sends both identities), same run.
//!
//! With `FLASH_BEFORE_BIN` set to an earlier flashdrop binary that already
//! takes bearer tokens, the same end-to-end comparison measures what a change
//! costs the reserve path (this build / the earlier one).
//!
//! Run: `cargo bench --bench flash_sale`
//! Knobs (environment): FLASH_CONNECTIONS (256), FLASH_SECONDS (10),
//! FLASH_CLIENT_THREADS (1), FLASH_SELLOUT_UNITS (20000), FLASH_ONLY=flashdrop
//! (skip the ceiling and sell-out runs, for profiling), FLASH_PREAUTH_BIN and
//! FLASH_PREAUTH_ROUNDS (3).

mod support;

use support::knob;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use hdrhistogram::Histogram;
use serde_json::json;

use flashdrop::app::Node;
use flashdrop::persistence::SyncMode;
use flashdrop::startup::Application;

use support::{bench_config, machine, stock_skus};

struct Target {
    port: u16,
    stop: Box<dyn FnOnce()>,
}

/// flashdrop on its own threads, with `skus` SKUs named `{prefix}-{i}`.
fn start_flashdrop(
    dir: &std::path::Path,
    prefix: &str,
    skus: usize,
    units: u64,
) -> (Target, Arc<Node>) {
    let config = bench_config(dir, SyncMode::Fdatasync);
    let (tx, rx) = std::sync::mpsc::channel();
    let prefix = prefix.to_owned();
    let thread = std::thread::spawn(move || {
        let system = actix_rt::System::new();
        system.block_on(async move {
            let app = Application::build(config).await.unwrap();
            let port = app.port();
            let slot: Arc<OnceLock<Arc<Node>>> = app.engine();
            let handle = app.server_handle();
            let running = actix_rt::spawn(app.run_until_stopped());
            let engine = loop {
                if let Some(engine) = slot.get() {
                    break engine.clone();
                }
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            };
            stock_skus(&engine, &prefix, skus, units).await;
            tx.send((port, handle, engine)).unwrap();
            let _ = running.await;
        });
    });
    let (port, handle, engine) = rx.recv().unwrap();
    let stop = Box::new(move || {
        actix_rt::System::new().block_on(handle.stop(true));
        thread.join().unwrap();
    });
    (Target { port, stop }, engine)
}

#[derive(serde::Deserialize)]
struct ReserveBody {
    quantity: u32,
}

/// The ceiling: same route shape, same body parsing, a fixed 201 answer.
async fn trivial_reserve(path: web::Path<String>, body: web::Json<ReserveBody>) -> HttpResponse {
    HttpResponse::Created().json(json!({
        "reservation_id": "00000000000000010000000000000001",
        "sku": path.into_inner(),
        "quantity": body.quantity,
        "state": "held",
        "created_at": "2026-11-24T00:00:00.000Z",
        "expires_at": "2026-11-24T00:10:00.000Z",
    }))
}

/// The engine core's identity before tokens: a buyer id read from a header.
struct HeaderBuyer;

impl actix_web::FromRequest for HeaderBuyer {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, actix_web::Error>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let parsed = req
            .headers()
            .get("x-buyer-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| flashdrop::domain::BuyerId::parse(v).ok());
        std::future::ready(
            parsed
                .map(|_| HeaderBuyer)
                .ok_or_else(|| actix_web::error::ErrorUnauthorized("x-buyer-id")),
        )
    }
}

/// Identity from a bearer token, verified exactly as flashdrop's `Shopper`
/// extractor does (signature, claims, expiry, buyer id) minus the engine;
/// `CACHED = false` verifies every request from scratch.
struct TokenBuyer<const CACHED: bool>;

static KEYS: OnceLock<flashdrop::auth::TokenKeys> = OnceLock::new();
static KEYS_UNCACHED: OnceLock<flashdrop::auth::TokenKeys> = OnceLock::new();

impl<const CACHED: bool> actix_web::FromRequest for TokenBuyer<CACHED> {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, actix_web::Error>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let keys = if CACHED { &KEYS } else { &KEYS_UNCACHED }
            .get()
            .expect("keys set before the server starts");
        let now_ms = flashdrop::clock::Clock::now_ms(&flashdrop::clock::SystemClock);
        let verified = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| keys.verify_access(t, now_ms).ok())
            .map(|caller| flashdrop::domain::BuyerId::of_account(caller.user));
        std::future::ready(
            verified
                .map(|_| TokenBuyer)
                .ok_or_else(|| actix_web::error::ErrorUnauthorized("token")),
        )
    }
}

/// flashdrop's HTTP layer without the engine: its middleware, identity
/// (`I`: header or token), idempotency and JSON extractors, and a response
/// built the same way. The gap between this and flashdrop is the actor + WAL path.
async fn http_layer_reserve<I>(
    _buyer: I,
    path: web::Path<String>,
    _key: flashdrop::http::extract::IdempotencyHeader,
    body: flashdrop::http::input::Json<ReserveBody>,
) -> HttpResponse {
    let id = format!("{:016x}{:016x}", 1u64, 1u64);
    HttpResponse::Created()
        .insert_header(("location", format!("/v1/reservations/{id}")))
        .insert_header(("idempotent-replayed", "false"))
        .json(json!({
            "reservation_id": id,
            "sku": path.into_inner(),
            "quantity": body.quantity,
            "state": "held",
            "created_at": flashdrop::clock::rfc3339_ms(1_795_000_000_000),
            "expires_at": flashdrop::clock::rfc3339_ms(1_795_000_600_000),
        }))
}

/// An actix-web server on its own threads, built by `app` on every worker.
fn start_server<F, A, B>(workers: usize, app: F) -> Target
where
    F: Fn() -> App<A> + Send + Clone + 'static,
    A: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: actix_web::body::MessageBody + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let system = actix_rt::System::new();
        system.block_on(async move {
            let server = HttpServer::new(app)
                .workers(workers)
                .bind(("127.0.0.1", 0))
                .unwrap();
            let port = server.addrs()[0].port();
            let server = server.run();
            tx.send((port, server.handle())).unwrap();
            let _ = server.await;
        });
    });
    let (port, handle) = rx.recv().unwrap();
    Target {
        port,
        stop: Box::new(move || {
            actix_rt::System::new().block_on(handle.stop(true));
            thread.join().unwrap();
        }),
    }
}

fn start_http_layer<I: actix_web::FromRequest + 'static>(workers: usize) -> Target {
    start_server(workers, || {
        App::new()
            .wrap(actix_web::middleware::from_fn(flashdrop::http::observe))
            .route(
                "/v1/skus/{sku}/reservations",
                web::post().to(http_layer_reserve::<I>),
            )
    })
}

fn start_trivial(workers: usize) -> Target {
    start_server(workers, || {
        App::new().route(
            "/v1/skus/{sku}/reservations",
            web::post().to(trivial_reserve),
        )
    })
}

/// How a server learns who calls: the engine core's headers, or tokens.
#[derive(Clone, Copy, PartialEq)]
enum Identity {
    Headers,
    Tokens,
}

/// A flashdrop binary on a free port with a data directory of its own, its
/// products and stock set up over HTTP as a seller would.
fn start_binary(
    bin: &std::path::Path,
    dir: &std::path::Path,
    identity: Identity,
    skus: &[String],
    units: u64,
) -> Target {
    let server = support::ServerProcess::start(bin, dir, |command| {
        if identity == Identity::Tokens {
            // The binary before tokens knows no [auth] section and would refuse it.
            command.env("FLASHDROP__AUTH__JWT_SECRET", support::BENCH_SECRET);
        }
        if knows(bin, b"tenant_shopper_multiplier") {
            // Synthetic buyers send thousands of requests a second each.
            command
                .env("FLASHDROP__ADMISSION__BUYER_BURST", "4000000000")
                .env("FLASHDROP__ADMISSION__TENANT_SHOPPER_MULTIPLIER", "1000000");
        }
        if knows(bin, b"shopper_holds_max") {
            // Each synthetic buyer keeps its holds for the whole run.
            command
                .env(
                    "FLASHDROP__RESERVATIONS__SHOPPER_UNITS_PER_SKU_MAX",
                    "4000000000",
                )
                .env("FLASHDROP__RESERVATIONS__SHOPPER_HOLDS_MAX", "4000000000");
        }
    });
    let port = server.port;
    actix_rt::System::new().block_on(prepare(port, identity, skus, units));
    Target {
        port,
        stop: Box::new(move || drop(server)),
    }
}

/// Whether a flashdrop binary knows a config key (binaries from before it
/// refuse unknown keys), e.g. `tenant_shopper_multiplier` of `[admission]`.
fn knows(bin: &std::path::Path, key: &[u8]) -> bool {
    std::fs::read(bin).is_ok_and(|bytes| bytes.windows(key.len()).any(|w| w == key))
}

async fn prepare(port: u16, identity: Identity, skus: &[String], units: u64) {
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let base = format!("http://127.0.0.1:{port}");
    support::wait_ready(&http, &base).await;
    let call = support::call;
    let seller: (&str, String) = match identity {
        Identity::Headers => ("x-tenant-id", support::TENANT.to_owned()),
        Identity::Tokens => (
            "authorization",
            support::onboard_seller(&http, &base, "seller@bench.example").await,
        ),
    };
    for chunk in skus.chunks(100) {
        let list: Vec<_> = chunk
            .iter()
            .map(|s| json!({"sku": s, "price": {"amount": 1000, "currency": "USD"}}))
            .collect();
        call(
            http.post(format!("{base}/v1/products"))
                .insert_header(seller.clone()),
            json!({"title": "bench", "skus": list}),
        )
        .await;
    }
    for sku in skus {
        call(
            http.put(format!("{base}/v1/skus/{sku}/stock"))
                .insert_header(seller.clone()),
            json!({"warehouses": {"main": units}}),
        )
        .await;
    }
}

#[derive(Default)]
struct Tally {
    created: u64,
    sold_out: u64,
    errors: u64,
}

struct Outcome {
    tally: Tally,
    latency_us: Histogram<u64>,
    elapsed: Duration,
}

/// `connections` keep-alive clients per client thread, each sending one request
/// at a time, for `warmup` then `measure`. Only the measured part is counted.
/// Stops early once `stop_after_sold_out` sold-out answers are seen.
fn load(
    port: u16,
    skus: &[String],
    connections: usize,
    threads: usize,
    warmup: Duration,
    measure: Duration,
    stop_after_sold_out: Option<u64>,
) -> Outcome {
    let started = Instant::now();
    let measure_from = started + warmup;
    let deadline = measure_from + measure;
    let sold_out_seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let skus = skus.to_vec();
            let sold_out_seen = sold_out_seen.clone();
            std::thread::spawn(move || {
                let system = actix_rt::System::new();
                system.block_on(async move {
                    let client = awc::Client::builder()
                        .connector(awc::Connector::new().limit(connections))
                        .timeout(Duration::from_secs(30))
                        .finish();
                    let shared = Rc::new(RefCell::new((
                        Tally::default(),
                        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
                    )));
                    let tasks: Vec<_> = (0..connections)
                        .map(|c| {
                            let client = client.clone();
                            let skus = skus.clone();
                            let shared = shared.clone();
                            let sold_out_seen = sold_out_seen.clone();
                            actix_rt::spawn(async move {
                                let buyer = format!("buyer-{t}-{c}");
                                let bearer = format!(
                                    "Bearer {}",
                                    support::buyer_token((t * 100_000 + c) as u64)
                                );
                                let mut i = c;
                                loop {
                                    let now = Instant::now();
                                    if now >= deadline {
                                        return;
                                    }
                                    if let Some(limit) = stop_after_sold_out {
                                        if sold_out_seen.load(std::sync::atomic::Ordering::Relaxed)
                                            >= limit
                                        {
                                            return;
                                        }
                                    }
                                    let sku = &skus[i % skus.len()];
                                    i += connections;
                                    let sent = Instant::now();
                                    let result = client
                                        .post(format!(
                                            "http://127.0.0.1:{port}/v1/skus/{sku}/reservations"
                                        ))
                                        .insert_header(("x-buyer-id", buyer.as_str()))
                                        .insert_header(("authorization", bearer.as_str()))
                                        .insert_header(("content-type", "application/json"))
                                        .send_body(r#"{"quantity":1}"#)
                                        .await;
                                    let status = match result {
                                        Ok(mut response) => match response.body().await {
                                            Ok(_) => Some(response.status().as_u16()),
                                            Err(_) => None,
                                        },
                                        Err(_) => None,
                                    };
                                    let done = Instant::now();
                                    if status == Some(409) {
                                        sold_out_seen
                                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    }
                                    // The sell-out phase counts everything; timed phases skip warm-up.
                                    if sent < measure_from && stop_after_sold_out.is_none() {
                                        continue;
                                    }
                                    let mut shared = shared.borrow_mut();
                                    match status {
                                        Some(201) => shared.0.created += 1,
                                        Some(409) => shared.0.sold_out += 1,
                                        _ => shared.0.errors += 1,
                                    }
                                    let us = (done - sent).as_micros().max(1) as u64;
                                    let _ = shared.1.record(us.min(60_000_000));
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        let _ = task.await;
                    }
                    Rc::try_unwrap(shared).ok().unwrap().into_inner()
                })
            })
        })
        .collect();
    let mut tally = Tally::default();
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for handle in handles {
        let (t, h) = handle.join().unwrap();
        tally.created += t.created;
        tally.sold_out += t.sold_out;
        tally.errors += t.errors;
        latency_us.add(h).unwrap();
    }
    let elapsed = if stop_after_sold_out.is_some() {
        started.elapsed()
    } else {
        measure
    };
    Outcome {
        tally,
        latency_us,
        elapsed,
    }
}

fn row(
    target: &str,
    scenario: &str,
    outcome: &Outcome,
    ceiling: Option<f64>,
    oversell: &str,
) -> String {
    let answered = outcome.tally.created + outcome.tally.sold_out;
    let rate = answered as f64 / outcome.elapsed.as_secs_f64();
    let ms = |q: f64| outcome.latency_us.value_at_quantile(q) as f64 / 1000.0;
    let ratio = ceiling.map_or("-".to_owned(), |c| format!("{:.2}", rate / c));
    format!(
        "| {target} | {scenario} | {rate:.0} | {:.2} | {:.2} | {:.2} | {} | {oversell} | {ratio} |",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        outcome.tally.errors
    )
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: stay quick then.
    let full = std::env::args().any(|a| a == "--bench");
    let connections = knob("FLASH_CONNECTIONS", 256) as usize;
    let seconds = knob("FLASH_SECONDS", if full { 10 } else { 1 });
    let threads = knob("FLASH_CLIENT_THREADS", 1) as usize;
    let sellout_units = knob("FLASH_SELLOUT_UNITS", 20_000);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let warmup = Duration::from_secs(2.min(seconds));
    let measure = Duration::from_secs(seconds);

    let hot = vec!["HOT-0".to_owned()];
    let spread: Vec<String> = (0..1000).map(|i| format!("SPREAD-{i}")).collect();
    let mut rows = Vec::new();
    let mut auth_ratios = Vec::new();
    let a = flashdrop::config::AuthConfig::default();
    let keys = || {
        flashdrop::auth::TokenKeys::new(
            support::BENCH_SECRET.as_bytes(),
            &a.issuer,
            &a.audience,
            3600,
            3600,
        )
        .with_cache(a.token_cache_entries)
    };
    let _ = KEYS.set(keys());
    let _ = KEYS_UNCACHED.set(keys().with_cache(0));

    let only_flashdrop = std::env::var("FLASH_ONLY").is_ok_and(|v| v == "flashdrop");
    for (scenario, skus) in [("hot SKU", &hot), ("1,000 SKUs", &spread)] {
        let timed = |port| load(port, skus, connections, threads, warmup, measure, None);
        let mut ceiling_rate = None;
        if !only_flashdrop {
            let trivial = start_trivial(workers);
            let ceiling = timed(trivial.port);
            (trivial.stop)();
            let answered = ceiling.tally.created + ceiling.tally.sold_out;
            ceiling_rate = Some(answered as f64 / ceiling.elapsed.as_secs_f64());
            rows.push(row("trivial actix-web", scenario, &ceiling, None, "-"));

            let layer = start_http_layer::<HeaderBuyer>(workers);
            let header = timed(layer.port);
            (layer.stop)();
            let name = "flashdrop HTTP layer, no engine, header identity (pre-auth)";
            rows.push(row(name, scenario, &header, ceiling_rate, "-"));

            let layer = start_http_layer::<TokenBuyer<true>>(workers);
            let token = timed(layer.port);
            (layer.stop)();
            let name = "flashdrop HTTP layer, no engine, bearer token";
            rows.push(row(name, scenario, &token, ceiling_rate, "-"));

            let layer = start_http_layer::<TokenBuyer<false>>(workers);
            let uncached = timed(layer.port);
            (layer.stop)();
            let name = "flashdrop HTTP layer, no engine, bearer token, every request verified";
            rows.push(row(name, scenario, &uncached, ceiling_rate, "-"));
            let rate =
                |o: &Outcome| (o.tally.created + o.tally.sold_out) as f64 / o.elapsed.as_secs_f64();
            auth_ratios.push(format!(
                "{scenario}: bearer token / header identity = {:.3} ({:.0} vs {:.0} req/s); \
                 with every request verified (token cache off) {:.3}",
                rate(&token) / rate(&header),
                rate(&token),
                rate(&header),
                rate(&uncached) / rate(&header),
            ));
        }

        let dir = tempfile::tempdir().unwrap();
        let prefix = skus[0].split('-').next().unwrap();
        let (target, engine) = start_flashdrop(dir.path(), prefix, skus.len(), 1_000_000_000_000);
        let outcome = timed(target.port);
        drop(engine);
        (target.stop)();
        rows.push(row(
            "flashdrop (fdatasync)",
            scenario,
            &outcome,
            ceiling_rate,
            "-",
        ));
    }

    // End to end against an earlier binary, as processes, alternating rounds.
    let current = std::path::PathBuf::from(env!("CARGO_BIN_EXE_flashdrop"));
    let comparisons = [
        (
            "FLASH_PREAUTH_BIN",
            Identity::Headers,
            "flashdrop before tokens (8e4aaf7), process",
            "with tokens / before tokens",
        ),
        (
            "FLASH_BEFORE_BIN",
            Identity::Tokens,
            "flashdrop, the earlier build, process",
            "this build / the earlier build",
        ),
    ];
    for (variable, identity, before_name, ratio_name) in comparisons {
        let Ok(before) = std::env::var(variable) else {
            continue;
        };
        let before = std::path::PathBuf::from(before);
        for (scenario, skus) in [("hot SKU", &hot), ("1,000 SKUs", &spread)] {
            let mut rates = [Vec::new(), Vec::new()];
            let rounds = knob("FLASH_PREAUTH_ROUNDS", 3);
            for round in 0..rounds {
                for (i, (bin, identity, name)) in [
                    (&before, identity, before_name),
                    (&current, Identity::Tokens, "flashdrop, this build, process"),
                ]
                .into_iter()
                .enumerate()
                {
                    let dir = tempfile::tempdir().unwrap();
                    let target = start_binary(bin, dir.path(), identity, skus, 1_000_000_000_000);
                    let outcome = load(
                        target.port,
                        skus,
                        connections,
                        threads,
                        warmup,
                        measure,
                        None,
                    );
                    (target.stop)();
                    let answered = outcome.tally.created + outcome.tally.sold_out;
                    rates[i].push(answered as f64 / outcome.elapsed.as_secs_f64());
                    rows.push(row(
                        name,
                        &format!("{scenario}, round {}", round + 1),
                        &outcome,
                        None,
                        "-",
                    ));
                }
            }
            let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
            auth_ratios.push(format!(
                "{scenario}, end to end: {ratio_name} = {:.3} ({:.0} vs {:.0} req/s, mean of {rounds} alternating rounds; per round {})",
                mean(&rates[1]) / mean(&rates[0]),
                mean(&rates[1]),
                mean(&rates[0]),
                rates[1]
                    .iter()
                    .zip(&rates[0])
                    .map(|(t, h)| format!("{:.2}", t / h))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
    }

    if only_flashdrop {
        for row in &rows {
            println!("{row}");
        }
        for line in &auth_ratios {
            println!("- {line}");
        }
        return;
    }
    // Sell-out: a hot SKU with little stock; clients keep going until the
    // answers are sold out. Exactly the stock must be reserved.
    let dir = tempfile::tempdir().unwrap();
    let (target, engine) = start_flashdrop(dir.path(), "SELL", 1, sellout_units);
    let outcome = load(
        target.port,
        &["SELL-0".to_owned()],
        connections,
        threads,
        Duration::ZERO,
        Duration::from_secs(120),
        Some(connections as u64 * 4),
    );
    let stock = actix_rt::System::new().block_on(async {
        let code = flashdrop::domain::SkuCode::parse("SELL-0").unwrap();
        engine.inventory().stock(&code).await.unwrap().1
    });
    drop(engine);
    (target.stop)();
    let oversell = outcome.tally.created.saturating_sub(sellout_units);
    let consistent = stock.available == sellout_units - outcome.tally.created.min(sellout_units)
        && stock.reserved == outcome.tally.created;
    rows.push(row(
        "flashdrop (fdatasync)",
        &format!("sell-out of {sellout_units}"),
        &outcome,
        None,
        &format!(
            "{oversell} ({} sold, stock reads {} reserved)",
            outcome.tally.created, stock.reserved
        ),
    ));

    println!("\nFlash-sale load over loopback HTTP on {}", machine());
    println!("{connections} keep-alive connections on {threads} client thread(s), {seconds} s measured after {} s warm-up, {workers} server workers", warmup.as_secs());
    println!("| server | scenario | requests/s | p50 ms | p99 ms | p999 ms | errors | oversell | ratio to trivial |");
    println!("|---|---|---:|---:|---:|---:|---:|---|---:|");
    for row in &rows {
        println!("{row}");
    }
    println!("\nCost of token verification on the reserve path (same run):");
    for line in &auth_ratios {
        println!("- {line}");
    }
    assert_eq!(oversell, 0, "oversold");
    assert!(consistent, "stock disagrees with the answers: {stock:?}");
}
