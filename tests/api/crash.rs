//! Crash safety of the real binary: concurrent clients reserve, commit and
//! release while the process is killed with SIGKILL at random moments, at least
//! 20 times. After every restart: every acknowledged reservation is there in a
//! state its acknowledged actions allow, units are conserved, nothing is
//! negative. Ends with a SIGTERM that must exit 0 with nothing lost.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use flashdrop::auth::TokenKeys;
use flashdrop::domain::identity::Role;
use flashdrop::domain::UserId;

use crate::helpers::{client, send};

const CYCLES: usize = 20;
const WORKERS: usize = 48;
/// The server's HS256 secret, so the test can mint buyer tokens.
const SECRET: &str = "crash-test-secret-that-is-long-enough-0123";
/// (SKU, units set once at the start). The scarce one sells out on the way.
const SKUS: &[(&str, u64)] = &[
    ("CRASH-A", 1_000_000),
    ("CRASH-B", 1_000_000),
    ("CRASH-C", 1_000_000),
    ("CRASH-SCARCE", 300),
];

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
}

pub(crate) fn start(dir: &Path, run: usize) -> Server {
    start_with(dir, run, &[])
}

/// `start` with extra environment (configuration overrides): waits for the
/// listening line, which comes once recovery is done.
pub(crate) fn start_with(dir: &Path, run: usize, env: &[(&str, &str)]) -> Server {
    let mut child = spawn(dir, run, env);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(address) = line.strip_prefix("flashdrop listening on ") {
                let _ = tx.send(address.to_owned());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("no listening line; see {}", dir.display()));
    Server { child, base }
}

/// The server process, not waited for (to kill it while it recovers).
pub(crate) fn spawn(dir: &Path, run: usize, env: &[(&str, &str)]) -> Child {
    let log = std::fs::File::create(dir.join(format!("server-{run}.log"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_flashdrop"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(dir.join("data"))
        .env("FLASHDROP__LOG__LEVEL", "warn")
        .env("FLASHDROP__SNAPSHOTS__EVERY_RECORDS", "500")
        .env("FLASHDROP__AUTH__JWT_SECRET", SECRET)
        .env("FLASHDROP__AUTH__ARGON2_MEMORY_KIB", "8192")
        .env("FLASHDROP__AUTH__ARGON2_ITERATIONS", "1")
        // 48 clients share few buyer accounts; the limiter is not under test here.
        .env("FLASHDROP__ADMISSION__BUYER_BURST", "100000000")
        // ... nor are the per-shopper hold bounds: each client holds many.
        .env(
            "FLASHDROP__RESERVATIONS__SHOPPER_UNITS_PER_SKU_MAX",
            "1000000000",
        )
        .env("FLASHDROP__RESERVATIONS__SHOPPER_HOLDS_MAX", "1000000000")
        .env("FLASHDROP__ADMISSION__TENANT_SHOPPER_MULTIPLIER", "1000000")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("the flashdrop binary starts")
}

pub(crate) async fn wait_ready(http: &awc::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(mut response) = http.get(format!("{base}/readyz")).send().await {
            let _ = response.body().await;
            if response.status() == StatusCode::OK {
                return;
            }
        }
        assert!(Instant::now() < deadline, "server never became ready");
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `Authorization` for a buyer named `name`: a token signed with the server's
/// secret (access tokens are checked without a lookup, so no account is needed;
/// registering a thousand buyers would only slow the kill loop down).
pub(crate) fn buyer_auth(name: &str) -> (&'static str, String) {
    let keys = TokenKeys::new(SECRET.as_bytes(), "flashdrop", "flashdrop-api", 3600, 3600);
    let user = buyer_user(name);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (token, _) = keys.issue_access(UserId(user), Role::Buyer, None, user, now_ms);
    ("authorization", format!("Bearer {token}"))
}

fn buyer_user(name: &str) -> u128 {
    u128::from(flashdrop::domain::stable_hash(&[name.as_bytes()])) << 64 | 1
}

/// The account id (as clients see it) of the buyer `buyer_auth` names.
pub(crate) fn buyer_user_id(name: &str) -> String {
    flashdrop::domain::identity::id_text(buyer_user(name))
}

/// A real seller: account, login, store; answers its access token.
pub(crate) async fn open_store(http: &awc::Client, base: &str) -> String {
    let credentials =
        json!({"email": "crash-seller@test.example", "password": "crash-Test-password-1"});
    let registered = send(
        http.post(format!("{base}/v1/auth/register")),
        Some(credentials.clone()),
    )
    .await;
    assert_eq!(
        registered.status,
        StatusCode::ACCEPTED,
        "{:?}",
        registered.body
    );
    let login = send(
        http.post(format!("{base}/v1/auth/login")),
        Some(credentials),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK, "{:?}", login.body);
    let token = login.body["access_token"].as_str().unwrap();
    let store = send(
        http.post(format!("{base}/v1/tenants"))
            .insert_header(("authorization", format!("Bearer {token}"))),
        Some(json!({"name": "Crash store"})),
    )
    .await;
    assert_eq!(store.status, StatusCode::CREATED, "{:?}", store.body);
    store.body["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[derive(Debug, Clone)]
struct Tracked {
    buyer: String,
    sku: &'static str,
    quantity: u64,
    acked_release: bool,
    acked_commit: bool,
}

#[derive(Default)]
struct Book {
    reservations: HashMap<String, Tracked>,
    /// Keyed reservation requests that got no answer: retried after restart.
    unanswered: Vec<(String, &'static str, String, u64)>,
    recent: Vec<String>,
}

impl Book {
    /// What was acknowledged so far, to check without holding the shared book.
    fn copy(&self) -> Book {
        Book {
            reservations: self.reservations.clone(),
            ..Book::default()
        }
    }
}

/// One client: reserves, and releases its own reservations or has the
/// store's seller sell them (a till sale; shoppers cannot commit).
async fn worker(
    base: String,
    http: awc::Client,
    id: usize,
    seller: (&'static str, String),
    book: Rc<RefCell<Book>>,
    stop: Rc<Cell<bool>>,
) {
    let buyer = format!("crash-buyer-{id}");
    let auth = buyer_auth(&buyer);
    let mut rng = fastrand::Rng::with_seed(id as u64 ^ 0x5eed);
    let mut mine: Vec<String> = Vec::new();
    let mut n = 0u64;
    while !stop.get() {
        n += 1;
        let roll = rng.u8(0..10);
        if roll < 6 || mine.is_empty() {
            let sku = SKUS[rng.usize(0..SKUS.len())].0;
            let quantity = rng.u64(1..4);
            let key = rng.bool().then(|| format!("{buyer}-{n}"));
            let mut request = http
                .post(format!("{base}/v1/skus/{sku}/reservations"))
                .insert_header(auth.clone())
                .insert_header(("content-type", "application/json"));
            if let Some(key) = &key {
                request = request.insert_header(("idempotency-key", key.as_str()));
            }
            let body = json!({"quantity": quantity}).to_string();
            let result = request.send_body(body).await;
            let Ok(mut response) = result else {
                if let Some(key) = key {
                    book.borrow_mut()
                        .unanswered
                        .push((buyer.clone(), sku, key, quantity));
                }
                break;
            };
            let Ok(bytes) = response.body().await else {
                break;
            };
            match response.status() {
                StatusCode::CREATED => {
                    let value: Value = serde_json::from_slice(&bytes).unwrap();
                    let rid = value["reservation_id"].as_str().unwrap().to_owned();
                    let mut book = book.borrow_mut();
                    book.reservations.insert(
                        rid.clone(),
                        Tracked {
                            buyer: buyer.clone(),
                            sku,
                            quantity,
                            acked_release: false,
                            acked_commit: false,
                        },
                    );
                    book.recent.push(rid.clone());
                    mine.push(rid);
                }
                StatusCode::CONFLICT => {
                    let value: Value = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(value["code"], "out_of_stock", "{value}");
                }
                other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&bytes)),
            }
        } else {
            let rid = mine.swap_remove(rng.usize(0..mine.len()));
            let commit = rng.bool();
            let request = if commit {
                http.post(format!("{base}/v1/reservations/{rid}/commit"))
            } else {
                http.delete(format!("{base}/v1/reservations/{rid}"))
            };
            let actor = if commit { seller.clone() } else { auth.clone() };
            let Ok(mut response) = request.insert_header(actor).send().await else {
                break;
            };
            if response.body().await.is_err() {
                break;
            }
            let expected = if commit {
                StatusCode::OK
            } else {
                StatusCode::NO_CONTENT
            };
            assert_eq!(response.status(), expected, "{rid}");
            let mut book = book.borrow_mut();
            let tracked = book.reservations.get_mut(&rid).unwrap();
            if commit {
                tracked.acked_commit = true;
            } else {
                tracked.acked_release = true;
            }
            book.recent.push(rid);
        }
    }
}

/// Checks every invariant against the restarted server.
async fn verify(http: &awc::Client, base: &str, book: Book, ids: Vec<String>) {
    let mut sold_acked: HashMap<&str, u64> = HashMap::new();
    for tracked in book.reservations.values() {
        if tracked.acked_commit {
            *sold_acked.entry(tracked.sku).or_default() += tracked.quantity;
        }
    }
    let mut held_seen: HashMap<&str, u64> = HashMap::new();
    let checks = stream::iter(ids.into_iter().map(|id| {
        let tracked = book.reservations[&id].clone();
        async move {
            let response = send(
                http.get(format!("{base}/v1/reservations/{id}"))
                    .insert_header(buyer_auth(&tracked.buyer)),
                None,
            )
            .await;
            (id, tracked, response)
        }
    }))
    .buffer_unordered(64)
    .collect::<Vec<_>>()
    .await;
    for (id, tracked, response) in checks {
        assert_eq!(
            response.status,
            StatusCode::OK,
            "acknowledged reservation {id} is lost"
        );
        assert_eq!(response.body["quantity"], tracked.quantity);
        let state = response.body["state"].as_str().unwrap();
        if tracked.acked_commit {
            assert_eq!(state, "committed", "{id}");
        } else if tracked.acked_release {
            assert_eq!(state, "released", "{id}");
        } else {
            assert!(
                ["held", "released", "committed"].contains(&state),
                "{id}: {state}"
            );
        }
        if state == "held" {
            *held_seen.entry(tracked.sku).or_default() += tracked.quantity;
        }
    }
    for (sku, total) in SKUS {
        let stock = send(http.get(format!("{base}/v1/skus/{sku}/stock")), None).await;
        assert_eq!(stock.status, StatusCode::OK);
        let count = |k: &str| {
            stock.body[k].as_u64().unwrap_or_else(|| {
                panic!("{sku} {k} is not a non-negative integer: {}", stock.body)
            })
        };
        let (available, reserved, sold) = (count("available"), count("reserved"), count("sold"));
        assert_eq!(
            available + reserved + sold,
            *total,
            "{sku} conserves units: {}",
            stock.body
        );
        assert!(
            sold >= sold_acked.get(sku).copied().unwrap_or(0),
            "{sku}: acknowledged sales lost"
        );
        assert!(
            reserved >= held_seen.get(sku).copied().unwrap_or(0),
            "{sku}: held units lost"
        );
        let on_hand: u64 = stock.body["warehouses"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(
            on_hand,
            available + reserved,
            "{sku}: warehouses hold the unsold units"
        );
    }
}

#[actix_web::test]
async fn acknowledged_reservations_survive_sigkill_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let book = Rc::new(RefCell::new(Book::default()));
    let mut rng = fastrand::Rng::with_seed(2026);
    let mut run = 0;
    let mut loaded_cycles = 0;
    let mut kills_during_recovery = 0;
    let mut seller_auth: Option<(&'static str, String)> = None;

    while loaded_cycles < CYCLES {
        run += 1;
        if loaded_cycles % 4 == 3 && kills_during_recovery < loaded_cycles / 4 + 1 {
            // Sometimes die while recovering or checkpointing (before the
            // listening line, which comes once recovery is done).
            let mut child = spawn(dir.path(), run, &[]);
            std::thread::sleep(Duration::from_millis(rng.u64(0..120)));
            child.kill().unwrap();
            child.wait().unwrap();
            kills_during_recovery += 1;
            continue;
        }
        let mut server = start(dir.path(), run);
        let http = client();
        wait_ready(&http, &server.base).await;
        if loaded_cycles == 0 {
            let skus: Vec<Value> = SKUS
                .iter()
                .map(|(s, _)| json!({"sku": s, "price": {"amount": 500, "currency": "USD"}}))
                .collect();
            let seller = (
                "authorization",
                format!("Bearer {}", open_store(&http, &server.base).await),
            );
            seller_auth = Some(seller.clone());
            let created = send(
                http.post(format!("{}/v1/products", server.base))
                    .insert_header(seller.clone()),
                Some(json!({"title": "crash test", "skus": skus})),
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
        } else {
            // Everything acknowledged in the last cycle, plus a sample of older ones.
            let ids = {
                let mut book = book.borrow_mut();
                let mut ids: Vec<String> = std::mem::take(&mut book.recent);
                let all: Vec<&String> = book.reservations.keys().collect();
                for _ in 0..200.min(all.len()) {
                    ids.push(all[rng.usize(0..all.len())].clone());
                }
                ids.sort();
                ids.dedup();
                ids
            };
            let acknowledged = book.borrow().copy();
            verify(&http, &server.base, acknowledged, ids).await;
            // A keyed request that got no answer is retried: exactly one
            // reservation exists for the key either way.
            let unanswered = std::mem::take(&mut book.borrow_mut().unanswered);
            for (buyer, sku, key, quantity) in unanswered {
                let response = send(
                    http.post(format!("{}/v1/skus/{sku}/reservations", server.base))
                        .insert_header(buyer_auth(&buyer))
                        .insert_header(("idempotency-key", key.as_str())),
                    Some(json!({"quantity": quantity})),
                )
                .await;
                if response.status == StatusCode::CREATED {
                    let rid = response.body["reservation_id"].as_str().unwrap().to_owned();
                    let again = send(
                        http.post(format!("{}/v1/skus/{sku}/reservations", server.base))
                            .insert_header(buyer_auth(&buyer))
                            .insert_header(("idempotency-key", key.as_str())),
                        Some(json!({"quantity": quantity})),
                    )
                    .await;
                    assert_eq!(again.body["reservation_id"], rid.as_str());
                    book.borrow_mut().reservations.insert(
                        rid,
                        Tracked {
                            buyer,
                            sku,
                            quantity,
                            acked_release: false,
                            acked_commit: false,
                        },
                    );
                } else {
                    assert_eq!(response.code(), "out_of_stock", "{:?}", response.body);
                }
            }
        }

        let stop = Rc::new(Cell::new(false));
        let workers: Vec<_> = (0..WORKERS)
            .map(|id| {
                actix_web::rt::spawn(worker(
                    server.base.clone(),
                    http.clone(),
                    id + run * 1000,
                    seller_auth
                        .clone()
                        .expect("the store opens in the first cycle"),
                    book.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        actix_web::rt::time::sleep(Duration::from_millis(rng.u64(20..400))).await;
        server.child.kill().unwrap();
        stop.set(true);
        for handle in join_all(workers).await {
            handle.expect("worker finished without a failed assertion");
        }
        server.child.wait().unwrap();
        loaded_cycles += 1;
    }

    // A last start: everything ever acknowledged is checked, then SIGTERM must
    // flush and exit 0 with nothing lost.
    run += 1;
    let mut server = start(dir.path(), run);
    let http = client();
    wait_ready(&http, &server.base).await;
    let all: Vec<String> = book.borrow().reservations.keys().cloned().collect();
    assert!(
        all.len() > 1_000,
        "the load made {} reservations",
        all.len()
    );
    let acknowledged = book.borrow().copy();
    verify(&http, &server.base, acknowledged, all.clone()).await;
    let status = send(
        http.post(format!("{}/v1/skus/CRASH-A/reservations", server.base))
            .insert_header(buyer_auth("last")),
        Some(json!({"quantity": 1})),
    )
    .await;
    assert_eq!(status.status, StatusCode::CREATED);
    let last = status.body["reservation_id"].as_str().unwrap().to_owned();
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGTERM);
    }
    let exit = server.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "SIGTERM exits cleanly");

    run += 1;
    let server = start(dir.path(), run);
    let http = client();
    wait_ready(&http, &server.base).await;
    let after = send(
        http.get(format!("{}/v1/reservations/{last}", server.base))
            .insert_header(buyer_auth("last")),
        None,
    )
    .await;
    assert_eq!(after.body["state"], "held");
    let acknowledged = book.borrow().copy();
    verify(&http, &server.base, acknowledged, all).await;
    let mut child = server.child;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(kills_during_recovery >= 4);
    eprintln!(
        "crash test: {loaded_cycles} loaded kills, {kills_during_recovery} kills during recovery, {} reservations tracked",
        book.borrow().reservations.len()
    );
}
