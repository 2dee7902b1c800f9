//! End-to-end checkouts: `POST /v1/orders` with `Prefer: wait=10`, so each
//! request returns once its saga has reserved, authorised, captured and
//! committed (the order is `paid`). Single-seller orders (one line) and
//! three-seller orders (one line from each of three stores), against the
//! sandbox gateway at zero latency. The baseline, same run and same server,
//! is a plain reservation (`POST /v1/skus/{sku}/reservations`): the ratio
//! says what a whole paid order costs against one hold.
//!
//! The server is the real release binary as a child process, fdatasync, its
//! defaults except admission limits opened for synthetic buyers.
//!
//! Run: `cargo bench --bench checkout`
//! Knobs: CHECKOUT_SECONDS (10), CHECKOUT_CLIENTS (64).

mod support;

use support::knob;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use support::machine;

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Reserve,
    OneSeller,
    ThreeSellers,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Reserve => "reservation (baseline)",
            Scenario::OneSeller => "checkout, 1 seller",
            Scenario::ThreeSellers => "checkout, 3 sellers",
        }
    }
}

struct Outcome {
    done: u64,
    errors: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
}

async fn drive(
    base: &str,
    scenario: Scenario,
    clients: usize,
    seconds: u64,
    first_buyer: u64,
) -> Outcome {
    let http = awc::Client::builder()
        .connector(awc::Connector::new().limit(clients * 2))
        .timeout(Duration::from_secs(30))
        .finish();
    let latency = Rc::new(RefCell::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
    ));
    let counts = Rc::new(RefCell::new((0u64, 0u64)));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, latency, counts) = (http.clone(), latency.clone(), counts.clone());
            let base = base.to_owned();
            actix_rt::spawn(async move {
                let auth = format!("Bearer {}", support::buyer_token(first_buyer + c as u64));
                while Instant::now() < until {
                    let t = Instant::now();
                    let (url, body) = match scenario {
                        Scenario::Reserve => (format!("{base}/v1/skus/CK-0/reservations"), json!({"quantity": 1})),
                        Scenario::OneSeller => (
                            format!("{base}/v1/orders"),
                            json!({"items": [{"sku": "CK-0", "quantity": 1}], "shipping_address": "1 Bench St", "payment_method": "pm_card_visa"}),
                        ),
                        Scenario::ThreeSellers => (
                            format!("{base}/v1/orders"),
                            json!({"items": [{"sku": "CK-0", "quantity": 1}, {"sku": "CK-1", "quantity": 1}, {"sku": "CK-2", "quantity": 1}], "shipping_address": "1 Bench St", "payment_method": "pm_card_visa"}),
                        ),
                    };
                    let sent = http
                        .post(url)
                        .insert_header(("authorization", auth.as_str()))
                        .insert_header(("prefer", "wait=10"))
                        .send_json(&body)
                        .await;
                    let ok = match sent {
                        Ok(mut response) => {
                            let bytes = response.body().await.unwrap_or_default();
                            match scenario {
                                Scenario::Reserve => response.status().as_u16() == 201,
                                _ => serde_json::from_slice::<serde_json::Value>(&bytes)
                                    .is_ok_and(|b| b["state"] == "paid"),
                            }
                        }
                        Err(_) => false,
                    };
                    let mut counts = counts.borrow_mut();
                    if ok {
                        counts.0 += 1;
                        let _ = latency.borrow_mut().record(t.elapsed().as_micros() as u64);
                    } else {
                        counts.1 += 1;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let (done, errors) = *counts.borrow();
    let latency_us = latency.borrow().clone();
    Outcome {
        done,
        errors,
        elapsed: started.elapsed(),
        latency_us,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let seconds = knob("CHECKOUT_SECONDS", if full { 10 } else { 1 });
    let clients = knob("CHECKOUT_CLIENTS", 64) as usize;
    let dir = tempfile::tempdir().unwrap();
    let server = support::ServerProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_flashdrop")),
        dir.path(),
        |command| {
            command
                .env("FLASHDROP__AUTH__JWT_SECRET", support::BENCH_SECRET)
                .env("FLASHDROP__ADMISSION__BUYER_BURST", "4000000000")
                .env("FLASHDROP__ADMISSION__TENANT_SHOPPER_MULTIPLIER", "1000000")
                .env("FLASHDROP__RESERVATIONS__OPEN_MAX_PER_SKU", "10000000")
                .env("FLASHDROP__PAYMENTS__SANDBOX_LATENCY_MS", "0");
        },
    );
    let base = format!("http://127.0.0.1:{}", server.port);
    let rows = actix_rt::System::new().block_on(async {
        let http = awc::Client::default();
        support::wait_ready(&http, &base).await;
        for s in 0..3 {
            let seller = support::onboard_seller(&http, &base, &format!("seller-{s}@bench.example")).await;
            let sku = format!("CK-{s}");
            support::call(
                http.post(format!("{base}/v1/products")).insert_header(("authorization", seller.as_str())),
                json!({"title": "bench", "skus": [{"sku": sku, "price": {"amount": 1500, "currency": "EUR"}}]}),
            )
            .await;
            support::call(
                http.put(format!("{base}/v1/skus/{sku}/stock")).insert_header(("authorization", seller.as_str())),
                json!({"warehouses": {"main": 100_000_000u64}}),
            )
            .await;
        }
        // Warm-up: connections, actors, caches.
        drive(&base, Scenario::OneSeller, clients, 1, 0).await;
        let mut rows = Vec::new();
        for (i, scenario) in [Scenario::Reserve, Scenario::OneSeller, Scenario::ThreeSellers].into_iter().enumerate() {
            let outcome = drive(&base, scenario, clients, seconds, 1_000_000 * (i as u64 + 1)).await;
            rows.push((scenario, outcome));
        }
        rows
    });
    drop(server);

    let baseline = rows[0].1.done as f64 / rows[0].1.elapsed.as_secs_f64();
    println!();
    println!("End-to-end checkouts (Prefer: wait until paid), sandbox gateway at zero latency");
    println!("machine: {}", machine());
    println!("load: {clients} keep-alive HTTP clients for {seconds} s per scenario; server: the release binary, fdatasync, defaults");
    println!();
    println!(
        "| scenario | completed/s | ratio to a reservation | p50 ms | p99 ms | p999 ms | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (scenario, o) in &rows {
        let rate = o.done as f64 / o.elapsed.as_secs_f64();
        let ms = |q: f64| o.latency_us.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "| {} | {:.0} | {:.3} | {:.2} | {:.2} | {:.2} | {} |",
            scenario.name(),
            rate,
            rate / baseline,
            ms(0.5),
            ms(0.99),
            ms(0.999),
            o.errors
        );
        support::json_line(json!({
            "scenario": scenario.name(),
            "per_s": rate,
            "ratio_to_reservation": rate / baseline,
            "latency_ms": {"p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999)},
            "errors": o.errors,
        }));
    }
}
