//! Bulk import rate: the release binary (`wal.sync = fdatasync`, defaults,
//! a store whose plan allows the products) imports IMPORT_ROWS (100,000)
//! CSV rows, one variant each, through `POST /v1/products/import`, then the
//! same file again (every row unchanged). Rows/s is rows over the job's own
//! start-to-finish time (from its `started_at` and `finished_at`); the wall
//! time from upload to the finished job is shown too. Baseline, same run
//! and server: products created one per request with `POST /v1/products`
//! by IMPORT_CLIENTS (64) keep-alive clients, for IMPORT_BASELINE products.
//!
//! Run: `cargo bench --bench import`

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::{knob, machine, ServerProcess};

fn csv(rows: u64) -> String {
    let mut text = String::from("handle,title,brand,category,sku,price,currency,sku_attributes\n");
    for i in 0..rows {
        text.push_str(&format!(
            "h{i},Imported item {i},Brand {},,IM-{i},{},EUR,size=M;colour=red\n",
            i % 40,
            100 + i % 9_000
        ));
    }
    text
}

async fn job(http: &awc::Client, base: &str, auth: &str, id: &str) -> Value {
    let mut response = http
        .get(format!("{base}/v1/imports/{id}"))
        .insert_header(("authorization", auth))
        .send()
        .await
        .expect("the server answers");
    let bytes = response.body().limit(1 << 22).await.unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

/// Uploads `file` and waits for its job; answers the job and the wall time.
async fn import(http: &awc::Client, base: &str, auth: &str, file: String) -> (Value, Duration) {
    let started = Instant::now();
    let mut response = http
        .post(format!("{base}/v1/products/import"))
        .insert_header(("authorization", auth))
        .insert_header(("content-type", "text/csv"))
        .send_body(file)
        .await
        .expect("the upload is answered");
    let bytes = response.body().await.unwrap_or_default();
    assert_eq!(
        response.status().as_u16(),
        202,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let id = serde_json::from_slice::<Value>(&bytes).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    loop {
        let job = job(http, base, auth, &id).await;
        if matches!(job["state"].as_str(), Some("completed" | "failed")) {
            return (job, started.elapsed());
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Seconds between a job's `started_at` and `finished_at`.
fn job_seconds(job: &Value) -> f64 {
    let at = |field: &str| {
        let text = job[field].as_str().unwrap();
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp_nanos() as f64
            / 1e9
    };
    at("finished_at") - at("started_at")
}

fn main() {
    let rows = knob("IMPORT_ROWS", 100_000);
    let baseline_products = knob("IMPORT_BASELINE", 20_000);
    let clients = knob("IMPORT_CLIENTS", 64) as usize;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_flashdrop")),
        dir.path(),
        |command| {
            command
                .env("FLASHDROP__AUTH__JWT_SECRET", support::BENCH_SECRET)
                .env("FLASHDROP__TENANTS__DEFAULT_MAX_PRODUCTS", "10000000")
                .env("FLASHDROP__TENANTS__DEFAULT_REQUESTS_PER_MINUTE", "1000000");
        },
    );
    let base = format!("http://127.0.0.1:{}", server.port);
    let file = csv(rows);
    let bytes = file.len();
    let (baseline, first, second) = actix_rt::System::new().block_on(async {
        let http = awc::Client::builder()
            .connector(awc::Connector::new().limit(clients * 2))
            .timeout(Duration::from_secs(600))
            .finish();
        support::wait_ready(&http, &base).await;
        let auth = support::onboard_seller(&http, &base, "importer@bench.example").await;

        // Baseline: one product per request.
        let next = Rc::new(Cell::new(0u64));
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (http, base, auth, next) = (http.clone(), base.clone(), auth.clone(), next.clone());
                actix_rt::spawn(async move {
                    loop {
                        let n = next.get();
                        if n >= baseline_products {
                            break;
                        }
                        next.set(n + 1);
                        support::call(
                            http.post(format!("{base}/v1/products"))
                                .insert_header(("authorization", auth.as_str())),
                            json!({"title": format!("Single {n}"), "brand": "Brand", "skus": [{"sku": format!("ONE-{n}"), "price": {"amount": 100 + n as i64 % 9_000, "currency": "EUR"}, "attributes": {"size": "M", "colour": "red"}}]}),
                        )
                        .await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let baseline = started.elapsed();
        let first = import(&http, &base, &auth, file.clone()).await;
        let second = import(&http, &base, &auth, file).await;
        (baseline, first, second)
    });
    drop(server);

    let baseline_rate = baseline_products as f64 / baseline.as_secs_f64();
    println!();
    println!(
        "Bulk import of {rows} CSV rows ({:.1} MiB), one variant each",
        bytes as f64 / 1_048_576.0
    );
    println!("machine: {}", machine());
    println!("server: the release binary, wal.sync = fdatasync, defaults (catalog.import_batch_products 512)");
    println!();
    println!("| what | rows | rows/s (job time) | wall s (upload to finished) | ratio to baseline | created | unchanged | failed |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| POST /v1/products, {clients} clients (baseline) | {baseline_products} | {baseline_rate:.0} | {:.2} | 1.000 | {baseline_products} | 0 | 0 |",
        baseline.as_secs_f64()
    );
    for (what, (job, wall)) in [
        ("import, new products", &first),
        ("the same file again", &second),
    ] {
        let rate = rows as f64 / job_seconds(job);
        println!(
            "| {what} | {rows} | {rate:.0} | {:.2} | {:.3} | {} | {} | {} |",
            wall.as_secs_f64(),
            rate / baseline_rate,
            job["rows"]["created"],
            job["rows"]["unchanged"],
            job["rows"]["failed"]
        );
    }
    let rate = rows as f64 / job_seconds(&first.0);
    println!();
    println!(
        "goal: >= 20,000 rows/s through the WAL with fdatasync: {} ({rate:.0} rows/s)",
        if rate >= 20_000.0 { "met" } else { "NOT met" }
    );
}
