//! Crash safety of the checkout saga in the real binary: shoppers place
//! orders (card, asynchronous and declined payments, a provider that fails a
//! fifth of its calls and sometimes loses its answers) while the process is
//! killed with SIGKILL at random moments, 20 times. After the last restart
//! every saga finishes, paid or cancelled; the provider's own books show no
//! order charged twice; every paid order's holds are committed and every
//! cancelled order's released; the SKUs' sold counts are exactly the paid
//! orders' units and nothing stays reserved.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::crash::{buyer_auth, open_store, start_with, wait_ready};
use crate::helpers::{client, sandbox_payments, send};

const CYCLES: usize = 20;
const WORKERS: usize = 16;
const SKUS: &[(&str, u64)] = &[
    ("SAGA-A", 1_000_000),
    ("SAGA-B", 1_000_000),
    ("SAGA-SCARCE", 60),
];
const ADMIN: &str = "saga-admin@test.example";
const ADMIN_PASSWORD: &str = "Crash-resistant-Pass-9";

const ENV: &[(&str, &str)] = &[
    ("FLASHDROP__PAYMENTS__SANDBOX_FAILURE_RATE", "0.2"),
    ("FLASHDROP__PAYMENTS__SANDBOX_LATENCY_MS", "3"),
    ("FLASHDROP__PAYMENTS__SANDBOX_ASYNC_DELAY_MS", "100"),
    ("FLASHDROP__PAYMENTS__POLL_INTERVAL_MS", "300"),
    ("FLASHDROP__ORDERS__PAYMENT_DEADLINE_S", "3"),
    ("FLASHDROP__ORDERS__HOLD_TTL_S", "600"),
    ("FLASHDROP__ORDERS__RETRY_BACKOFF_MS", "20"),
    ("FLASHDROP__AUTH__BOOTSTRAP_ADMIN_EMAIL", ADMIN),
    ("FLASHDROP__AUTH__BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD),
];

fn buyer_name(worker: usize) -> String {
    format!("saga-buyer-{worker}")
}

/// One shopper: places orders until stopped; answers how many were acknowledged.
async fn shopper(
    base: String,
    http: awc::Client,
    id: usize,
    acked: Rc<RefCell<HashSet<String>>>,
    stop: Rc<Cell<bool>>,
    run: usize,
) {
    let auth = buyer_auth(&buyer_name(id));
    let mut rng = fastrand::Rng::with_seed((id + run * 100) as u64);
    let mut n = 0;
    while !stop.get() {
        n += 1;
        let mut lines = vec![json!({"sku": SKUS[rng.usize(0..3)].0, "quantity": rng.u32(1..3)})];
        if rng.bool() {
            let other = SKUS
                .iter()
                .map(|s| s.0)
                .find(|s| *s != lines[0]["sku"])
                .unwrap();
            lines.push(json!({"sku": other, "quantity": 1}));
        }
        let method = match rng.u8(0..10) {
            0 => "pm_card_declined",
            1 | 2 => "pm_async",
            _ => "pm_card_visa",
        };
        let sent = http
            .post(format!("{base}/v1/orders"))
            .insert_header(auth.clone())
            .insert_header(("idempotency-key", format!("run{run}-w{id}-{n}")))
            .insert_header(("content-type", "application/json"))
            .send_body(json!({"items": lines, "shipping_address": "9 Crash Road", "payment_method": method}).to_string())
            .await;
        let Ok(mut response) = sent else { break };
        let Ok(body) = response.body().await else {
            break;
        };
        if response.status() == StatusCode::ACCEPTED {
            let body: Value = serde_json::from_slice(&body).unwrap();
            acked
                .borrow_mut()
                .insert(body["order_id"].as_str().unwrap().to_owned());
        }
    }
}

/// Every order of every shopper (paged), by id.
async fn all_orders(http: &awc::Client, base: &str) -> HashMap<String, Value> {
    let mut orders = HashMap::new();
    for worker in 0..WORKERS {
        let auth = buyer_auth(&buyer_name(worker));
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("{base}/v1/orders?limit=100&cursor={c}"),
                None => format!("{base}/v1/orders?limit=100"),
            };
            let page = send(http.get(path).insert_header(auth.clone()), None).await;
            assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
            for order in page.body["items"].as_array().unwrap() {
                orders.insert(
                    order["order_id"].as_str().unwrap().to_owned(),
                    order.clone(),
                );
            }
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
    }
    orders
}

#[actix_web::test]
async fn every_saga_finishes_exactly_once_after_sigkill_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let acked = Rc::new(RefCell::new(HashSet::new()));
    let mut rng = fastrand::Rng::with_seed(5_2026);
    for run in 1..=CYCLES {
        let mut server = start_with(dir.path(), run, ENV);
        let http = client();
        wait_ready(&http, &server.base).await;
        if run == 1 {
            let seller = (
                "authorization",
                format!("Bearer {}", open_store(&http, &server.base).await),
            );
            let skus: Vec<Value> = SKUS
                .iter()
                .map(|(s, _)| json!({"sku": s, "price": {"amount": 700, "currency": "EUR"}}))
                .collect();
            let created = send(
                http.post(format!("{}/v1/products", server.base))
                    .insert_header(seller.clone()),
                Some(json!({"title": "saga crash", "skus": skus})),
            )
            .await;
            assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
            for (sku, units) in SKUS {
                let set = send(
                    http.put(format!("{}/v1/skus/{sku}/stock", server.base))
                        .insert_header(seller.clone()),
                    Some(json!({"warehouses": {"main": units}})),
                )
                .await;
                assert_eq!(set.status, StatusCode::OK);
            }
        }
        let stop = Rc::new(Cell::new(false));
        let shoppers: Vec<_> = (0..WORKERS)
            .map(|id| {
                actix_web::rt::spawn(shopper(
                    server.base.clone(),
                    http.clone(),
                    id,
                    acked.clone(),
                    stop.clone(),
                    run,
                ))
            })
            .collect();
        actix_web::rt::time::sleep(Duration::from_millis(rng.u64(100..700))).await;
        server.child.kill().unwrap();
        stop.set(true);
        for handle in join_all(shoppers).await {
            handle.expect("a shopper finished without a failed assertion");
        }
        server.child.wait().unwrap();
    }

    // The last start: every saga must finish on its own.
    let server = start_with(dir.path(), CYCLES + 1, ENV);
    let http = client();
    wait_ready(&http, &server.base).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let orders = loop {
        let orders = all_orders(&http, &server.base).await;
        let open: Vec<&Value> = orders
            .values()
            .filter(|o| o["state"] != "paid" && o["state"] != "cancelled")
            .collect();
        if open.is_empty() {
            break orders;
        }
        assert!(
            Instant::now() < deadline,
            "{} sagas never finished, e.g. {:#}",
            open.len(),
            open[0]
        );
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    };
    let acked = acked.borrow().clone();
    assert!(
        acked.len() > 200,
        "only {} orders were acknowledged",
        acked.len()
    );
    for id in &acked {
        assert!(orders.contains_key(id), "acknowledged order {id} was lost");
    }

    // The provider's books: no order charged twice, paid orders charged
    // their total, cancelled ones charged nothing that was not given back.
    let login = send(
        http.post(format!("{}/v1/auth/login", server.base)),
        Some(json!({"email": ADMIN, "password": ADMIN_PASSWORD})),
    )
    .await;
    let admin = login.body["access_token"].as_str().unwrap();
    let payments = sandbox_payments(&http, &server.base, admin, None).await;
    let mut charged: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for payment in &payments {
        let captured = payment["captured_minor"].as_i64().unwrap();
        if captured > 0 {
            charged
                .entry(payment["reference"].as_str().unwrap().to_owned())
                .or_default()
                .push((captured, payment["refunded_minor"].as_i64().unwrap()));
        }
    }
    let mut sold: HashMap<String, u64> = HashMap::new();
    let (mut paid, mut cancelled) = (0, 0);
    for (id, order) in &orders {
        let captures = charged.get(id).cloned().unwrap_or_default();
        assert!(
            captures.len() <= 1,
            "order {id} was charged {} times",
            captures.len()
        );
        let auth = buyer_auth(&buyer_name(
            (0..WORKERS)
                .find(|w| {
                    crate::crash::buyer_user_id(&buyer_name(*w))
                        == order["buyer_id"].as_str().unwrap()
                })
                .expect("a shopper's order"),
        ));
        let holds: Vec<String> = order["lines"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|l| {
                l["reservation_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
            })
            .collect();
        if order["state"] == "paid" {
            paid += 1;
            assert_eq!(
                captures,
                vec![(order["total"].as_i64().unwrap(), 0)],
                "order {id}"
            );
            for line in order["lines"].as_array().unwrap() {
                *sold
                    .entry(line["sku"].as_str().unwrap().to_owned())
                    .or_default() += line["quantity"].as_u64().unwrap();
            }
            for hold in &holds {
                let r = send(
                    http.get(format!("{}/v1/reservations/{hold}", server.base))
                        .insert_header(auth.clone()),
                    None,
                )
                .await;
                assert_eq!(
                    r.body["state"], "committed",
                    "paid order {id}: {:?}",
                    r.body
                );
            }
        } else {
            cancelled += 1;
            for (captured, refunded) in &captures {
                assert_eq!(captured, refunded, "cancelled order {id} kept money");
            }
            for hold in &holds {
                let r = send(
                    http.get(format!("{}/v1/reservations/{hold}", server.base))
                        .insert_header(auth.clone()),
                    None,
                )
                .await;
                let state = r.body["state"].as_str().unwrap_or("gone").to_owned();
                assert!(
                    state != "held" && state != "committed",
                    "cancelled order {id}: hold {state}"
                );
            }
        }
    }
    for (sku, _) in SKUS {
        let stock = send(
            http.get(format!("{}/v1/skus/{sku}/stock", server.base)),
            None,
        )
        .await;
        assert_eq!(stock.body["reserved"], 0, "{sku}: {:?}", stock.body);
        assert_eq!(
            stock.body["sold"].as_u64(),
            Some(sold.get(*sku).copied().unwrap_or(0)),
            "{sku}"
        );
    }
    eprintln!("saga crash test: {CYCLES} kills, {} orders ({} acknowledged): {paid} paid, {cancelled} cancelled", orders.len(), acked.len());
    let mut child = server.child;
    child.kill().unwrap();
    child.wait().unwrap();
}
