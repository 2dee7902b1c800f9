//! The load: `clients` concurrent HTTP/1.1 keep-alive clients on the bench's
//! client threads, each with its own buyer token and one request in flight,
//! every reservation with an Idempotency-Key of its own. The same bytes go to
//! every server under test.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::wire::Connection;

#[derive(Clone)]
pub enum Work {
    /// Reserve one unit of `sku` until the answer is `out_of_stock`.
    SellOut { sku: String },
    /// Reserve one unit of `sku` until the window closes (the ceiling, which
    /// never sells out, runs the hot SKU this way).
    Hammer { sku: String },
    /// Reserve one unit of a random SKU until the window closes.
    Spread { skus: Arc<Vec<String>> },
    /// Reserve one unit of a random SKU, then release or commit it (half
    /// each), until the window closes.
    Mixed { skus: Arc<Vec<String>> },
}

pub struct Plan {
    pub port: u16,
    pub work: Work,
    pub clients: usize,
    pub threads: usize,
    /// Open every connection before the start; otherwise every client
    /// connects at the start (a drop opening from idle).
    pub warm: bool,
    /// (warm-up, measured) for timed work.
    pub window: (Duration, Duration),
    /// Buyer numbers start here, so phases do not share idempotency keys.
    pub buyer_offset: u64,
    /// `Authorization` of the seller who commits holds (shoppers may not).
    pub commit_as: String,
}

#[derive(Default, Clone, Copy)]
pub struct Tally {
    pub created: u64,
    pub sold_out: u64,
    pub released: u64,
    pub committed: u64,
    pub errors: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.created += o.created;
        self.sold_out += o.sold_out;
        self.released += o.released;
        self.committed += o.committed;
        self.errors += o.errors;
    }

    pub fn answered(&self) -> u64 {
        self.created + self.sold_out + self.released + self.committed
    }
}

pub struct Outcome {
    /// Every answer of the phase (what the server's state must agree with).
    pub all: Tally,
    /// Answers to requests sent inside the measured window (sell-out: all).
    pub measured: Tally,
    pub latency_us: Histogram<u64>,
    /// The measured window; for a sell-out, from the start to the last unit sold.
    pub elapsed: Duration,
    /// First error seen, to say why.
    pub first_error: Option<String>,
}

impl Outcome {
    /// Units sold per second (sell-out) or good answers per second (timed).
    pub fn rate(&self, sell_out: bool) -> f64 {
        let n = if sell_out {
            self.measured.created
        } else {
            self.measured.answered()
        };
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).unwrap()
}

struct Shared {
    all: Tally,
    measured: Tally,
    latency_us: Histogram<u64>,
    last_created: Option<Instant>,
    first_error: Option<String>,
}

/// One answer: its status, the id of a created reservation when asked for,
/// and whether it is `out_of_stock`; anything else unexpected is an error.
async fn send(
    connection: &mut Connection,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    want_id: bool,
) -> Result<(u16, Option<String>, bool), String> {
    let answer = connection.send(method, path, headers, body).await?;
    let status = answer.status;
    let bytes = answer.body;
    let sold_out = status == 409 && bytes.windows(12).any(|w| w == b"out_of_stock");
    let id = if want_id && status == 201 {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["reservation_id"].as_str().map(str::to_owned))
    } else {
        None
    };
    if !(200..300).contains(&status) && !sold_out {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
    }
    Ok((status, id, sold_out))
}

/// Runs `plan` and answers what the clients saw.
pub fn run(plan: &Plan) -> Outcome {
    let threads = plan.threads.max(1);
    let (go, start) = tokio::sync::watch::channel(false);
    let ready = Arc::new(AtomicU64::new(0));
    let t0 = Arc::new(parking_lot::Mutex::new(None::<Instant>));
    let nonce = fastrand::u64(..);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let work = plan.work.clone();
            let (start, ready, t0) = (start.clone(), ready.clone(), t0.clone());
            let clients = plan.clients / threads + usize::from(t < plan.clients % threads);
            let (port, warm, window, offset) =
                (plan.port, plan.warm, plan.window, plan.buyer_offset);
            let commit_as: Arc<str> = plan.commit_as.as_str().into();
            std::thread::spawn(move || {
                actix_rt::System::new().block_on(client_thread(
                    t, clients, port, work, warm, window, offset, nonce, start, ready, t0,
                    commit_as,
                ))
            })
        })
        .collect();
    // Everyone connected (or not, for a cold start): go.
    let deadline = Instant::now() + Duration::from_secs(60);
    while (ready.load(Ordering::Acquire) as usize) < plan.clients && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    *t0.lock() = Some(Instant::now());
    let _ = go.send(true);
    let began = t0.lock().unwrap();
    let mut all = Tally::default();
    let mut measured = Tally::default();
    let mut latency_us = histogram();
    let mut last_created = None;
    let mut first_error = None;
    for handle in handles {
        let s = handle.join().expect("client thread");
        all.add(&s.all);
        measured.add(&s.measured);
        latency_us.add(&s.latency_us).unwrap();
        last_created = last_created.max(s.last_created);
        first_error = first_error.or(s.first_error);
    }
    let elapsed = match plan.work {
        Work::SellOut { .. } => last_created.map_or(Duration::ZERO, |t| t - began),
        _ => plan.window.1,
    };
    Outcome {
        all,
        measured,
        latency_us,
        elapsed,
        first_error,
    }
}

#[allow(clippy::too_many_arguments)]
async fn client_thread(
    thread: usize,
    clients: usize,
    port: u16,
    work: Work,
    warm: bool,
    window: (Duration, Duration),
    offset: u64,
    nonce: u64,
    start: tokio::sync::watch::Receiver<bool>,
    ready: Arc<AtomicU64>,
    t0: Arc<parking_lot::Mutex<Option<Instant>>>,
    commit_as: Arc<str>,
) -> Shared {
    let shared = Rc::new(RefCell::new(Shared {
        all: Tally::default(),
        measured: Tally::default(),
        latency_us: histogram(),
        last_created: None,
        first_error: None,
    }));
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (work, shared) = (work.clone(), shared.clone());
            let (start, ready, t0) = (start.clone(), ready.clone(), t0.clone());
            let commit_as = commit_as.clone();
            actix_rt::spawn(async move {
                let buyer = offset + (thread * 100_000 + c) as u64;
                let bearer = format!("Bearer {}", crate::support::buyer_token(buyer));
                let mut connection = Connection::new(port);
                if warm {
                    let _ = connection.connect().await;
                }
                ready.fetch_add(1, Ordering::AcqRel);
                let mut start = start;
                // An error here means the run is over before it began.
                let _ = start.wait_for(|go| *go).await;
                let began = t0.lock().expect("set before start");
                let measure_from = began + window.0;
                let deadline = measure_from + window.1;
                let mut rng = fastrand::Rng::with_seed(nonce ^ buyer);
                let mut n = 0u64;
                loop {
                    // A sell-out's window is its cap, should the server stop answering.
                    if Instant::now() >= deadline {
                        return;
                    }
                    let sku = match &work {
                        Work::SellOut { sku } | Work::Hammer { sku } => sku.as_str(),
                        Work::Spread { skus } | Work::Mixed { skus } => {
                            &skus[rng.usize(..skus.len())]
                        }
                    };
                    n += 1;
                    let mixed = matches!(work, Work::Mixed { .. });
                    let path = format!("/v1/skus/{sku}/reservations");
                    let key = format!("{nonce:x}-{buyer}-{n}");
                    let headers = [
                        ("authorization", bearer.as_str()),
                        ("idempotency-key", key.as_str()),
                    ];
                    let sent = Instant::now();
                    let answer = send(
                        &mut connection,
                        "POST",
                        &path,
                        &headers,
                        br#"{"quantity":1}"#,
                        mixed,
                    )
                    .await;
                    let done = Instant::now();
                    let sold_out = matches!(answer, Ok((_, _, true)));
                    let id = answer.as_ref().ok().and_then(|a| a.1.clone());
                    record(
                        &shared,
                        &work,
                        sent,
                        done,
                        measure_from,
                        deadline,
                        |t| match &answer {
                            Ok((201, _, _)) => t.created += 1,
                            Ok((_, _, true)) => t.sold_out += 1,
                            _ => t.errors += 1,
                        },
                        answer.as_ref().err(),
                    );
                    if matches!(answer, Ok((201, _, _))) {
                        let mut s = shared.borrow_mut();
                        s.last_created = s.last_created.max(Some(done));
                    }
                    if sold_out && matches!(work, Work::SellOut { .. }) {
                        return;
                    }
                    if answer.is_err() {
                        // Do not spin on a broken server.
                        actix_rt::time::sleep(Duration::from_millis(1)).await;
                    }
                    let Some(id) = id else { continue };
                    let commit = rng.bool();
                    let (method, path, who) = if commit {
                        ("POST", format!("/v1/reservations/{id}/commit"), &*commit_as)
                    } else {
                        ("DELETE", format!("/v1/reservations/{id}"), bearer.as_str())
                    };
                    let sent = Instant::now();
                    let answer = send(
                        &mut connection,
                        method,
                        &path,
                        &[("authorization", who)],
                        b"",
                        false,
                    )
                    .await;
                    let done = Instant::now();
                    record(
                        &shared,
                        &work,
                        sent,
                        done,
                        measure_from,
                        deadline,
                        |t| match (&answer, commit) {
                            (Ok((200, _, _)), true) => t.committed += 1,
                            (Ok((204, _, _)), false) => t.released += 1,
                            _ => t.errors += 1,
                        },
                        answer.as_ref().err(),
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    Rc::try_unwrap(shared)
        .ok()
        .expect("tasks done")
        .into_inner()
}

#[allow(clippy::too_many_arguments)]
fn record(
    shared: &Rc<RefCell<Shared>>,
    work: &Work,
    sent: Instant,
    done: Instant,
    measure_from: Instant,
    deadline: Instant,
    count: impl Fn(&mut Tally),
    error: Option<&String>,
) {
    let mut s = shared.borrow_mut();
    count(&mut s.all);
    if s.first_error.is_none() {
        s.first_error = error.cloned();
    }
    let in_window =
        matches!(work, Work::SellOut { .. }) || (sent >= measure_from && sent < deadline);
    if in_window {
        count(&mut s.measured);
        let us = (done - sent).as_micros().clamp(1, 120_000_000) as u64;
        let _ = s.latency_us.record(us);
    }
}
