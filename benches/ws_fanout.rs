//! WebSocket fan-out during a flash sale: N clients watch one hot SKU over
//! `GET /v1/ws` while 64 keep-alive HTTP clients reserve it as fast as they
//! can. Reports, per N: commit-to-client delivery latency (the stock
//! message's commit stamp `ts_us` against its arrival) p50/p99/p999, messages
//! delivered, server memory per connection (RSS of the server process before
//! and after the clients connect), and the reservation rate next to the same
//! load with no watchers (the baseline, same run). Among the watchers of each
//! run, `FANOUT_STALLED` (1) subscribe and then never read: the latency of
//! everyone else must not wait for them (this was a timed assertion in
//! `tests/api/live.rs`; timings belong here, on a quiet machine).
//!
//! The server is the real release binary as a child process (fdatasync, its
//! defaults: `ws.coalesce_ms` 100). Clients are minimal WebSocket clients on
//! one thread of this process, over loopback from 127.0.0.x sources.
//!
//! Run: `cargo bench --bench ws_fanout`
//! Knobs: FANOUT_CLIENTS (comma list, default "1000,10000,19500"; this machine
//! caps open files at 20,000 per process), FANOUT_SECONDS (10),
//! FANOUT_LOAD_CONNECTIONS (64), FANOUT_STALLED (1).

mod support;

use support::{knob, mib};

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use support::machine;

const SKU: &str = "FANOUT-HOT";

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// The release binary with limits opened for a synthetic crowd.
fn start_server(dir: &std::path::Path) -> support::ServerProcess {
    support::ServerProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_flashdrop")),
        dir,
        |command| {
            command
                .env("FLASHDROP__AUTH__JWT_SECRET", support::BENCH_SECRET)
                .env("FLASHDROP__ADMISSION__BUYER_BURST", "4000000000")
                .env("FLASHDROP__ADMISSION__TENANT_SHOPPER_MULTIPLIER", "1000000")
                .env("FLASHDROP__WS__MAX_CONNECTIONS", "1000000")
                .env("FLASHDROP__SERVER__MAX_CONNECTIONS", "1000000");
        },
    )
}

/// A store with the hot SKU and plenty of stock, set up over HTTP as a seller would.
async fn prepare(port: u16) {
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let base = format!("http://127.0.0.1:{port}");
    support::wait_ready(&http, &base).await;
    let seller = support::onboard_seller(&http, &base, "seller@fanout.example").await;
    support::call(
        http.post(format!("{base}/v1/products"))
            .insert_header(("authorization", seller.clone())),
        json!({"title": "fan-out", "skus": [{"sku": SKU, "price": {"amount": 1000, "currency": "USD"}}]}),
    )
    .await;
    support::call(
        http.put(format!("{base}/v1/skus/{SKU}/stock"))
            .insert_header(("authorization", seller)),
        json!({"warehouses": {"main": 1_000_000_000u64}}),
    )
    .await;
}

/// What the watchers saw.
struct Watchers {
    /// Clients that got their first stock message (subscribed and served).
    ready: AtomicU64,
    /// Stock messages received while recording.
    messages: AtomicU64,
    failed: AtomicU64,
    recording: AtomicBool,
    stop: AtomicBool,
}

/// One minimal WebSocket client: handshake, subscribe, then read frames,
/// recording each stock message's delivery latency while recording is on.
async fn watch(
    port: u16,
    source: u8,
    watchers: Arc<Watchers>,
    latency_us: Rc<RefCell<Histogram<u64>>>,
    stalled: bool,
) -> std::io::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, source], 0)))?;
    let stream: TcpStream = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::with_capacity(2048, read);
    write
        .write_all(
            format!(
                "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = tokio::io::AsyncBufReadExt::read_until(&mut read, b'\n', &mut line).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b"\r\n" {
            break;
        }
    }
    write
        .write_all(&masked(
            0x1,
            format!(r#"{{"op":"subscribe","topics":["sku:{SKU}"]}}"#).as_bytes(),
        ))
        .await?;
    if stalled {
        // Subscribed, and never reads again: the server must shed it, not wait.
        watchers.ready.fetch_add(1, Ordering::Relaxed);
        while !watchers.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        return Ok(());
    }
    let mut first = true;
    let mut payload = Vec::with_capacity(256);
    loop {
        if watchers.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut head = [0u8; 2];
        read.read_exact(&mut head).await?;
        let opcode = head[0] & 0x0f;
        let len = match head[1] & 0x7f {
            126 => u64::from(read.read_u16().await?),
            127 => read.read_u64().await?,
            n => u64::from(n),
        } as usize;
        payload.resize(len, 0);
        read.read_exact(&mut payload).await?;
        match opcode {
            0x1 => {
                let Some(ts) = stamp(&payload) else { continue };
                if first {
                    first = false;
                    watchers.ready.fetch_add(1, Ordering::Relaxed);
                }
                if watchers.recording.load(Ordering::Relaxed) {
                    let delay = now_us().saturating_sub(ts).max(1);
                    let _ = latency_us.borrow_mut().record(delay.min(60_000_000));
                    watchers.messages.fetch_add(1, Ordering::Relaxed);
                }
            }
            0x9 => write.write_all(&masked(0xA, &payload)).await?,
            0x8 => return Ok(()),
            _ => {}
        }
    }
}

/// The `ts_us` of a stock message, found without a JSON parser.
fn stamp(payload: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"ts_us\":";
    if !payload.starts_with(br#"{"available""#)
        && !payload.windows(14).any(|w| w == br#""type":"stock""#)
    {
        return None;
    }
    let at = payload.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: Vec<u8> = payload[at..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// A client frame (clients must mask).
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [7u8, 1, 9, 3];
    let mut frame = vec![0x80 | opcode];
    if payload.len() < 126 {
        frame.push(0x80 | payload.len() as u8);
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// `connections` keep-alive clients reserving the hot SKU until `deadline`;
/// answers reservations per second.
fn load(port: u16, connections: usize, deadline: Instant) -> f64 {
    let started = Instant::now();
    let created = Rc::new(RefCell::new(0u64));
    actix_rt::System::new().block_on({
        let created = created.clone();
        async move {
            let client = awc::Client::builder()
                .connector(awc::Connector::new().limit(connections))
                .timeout(Duration::from_secs(30))
                .finish();
            let tasks: Vec<_> = (0..connections)
                .map(|c| {
                    let client = client.clone();
                    let created = created.clone();
                    actix_rt::spawn(async move {
                        let bearer = format!("Bearer {}", support::buyer_token(c as u64));
                        while Instant::now() < deadline {
                            let sent = client
                                .post(format!(
                                    "http://127.0.0.1:{port}/v1/skus/{SKU}/reservations"
                                ))
                                .insert_header(("authorization", bearer.as_str()))
                                .insert_header(("content-type", "application/json"))
                                .send_body(r#"{"quantity":1}"#)
                                .await;
                            if let Ok(mut response) = sent {
                                let _ = response.body().await;
                                if response.status().as_u16() == 201 {
                                    *created.borrow_mut() += 1;
                                }
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                let _ = task.await;
            }
        }
    });
    let count = *created.borrow();
    count as f64 / started.elapsed().as_secs_f64()
}

struct Row {
    clients: usize,
    connected: u64,
    failed: u64,
    rate: f64,
    messages: u64,
    latency_us: Histogram<u64>,
    rss_idle: u64,
    rss_connected: u64,
    rss_loaded: u64,
}

/// One server, `clients` watchers, then the load for `seconds`.
fn run(
    clients: usize,
    stalled: usize,
    seconds: u64,
    load_connections: usize,
    first_source: u8,
) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path());
    let port = server.port;
    actix_rt::System::new().block_on(prepare(port));
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = server.rss_bytes();

    let watchers = Arc::new(Watchers {
        ready: AtomicU64::new(0),
        messages: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        recording: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let client_thread = {
        let watchers = watchers.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let local = tokio::task::LocalSet::new();
            let latency = Rc::new(RefCell::new(
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
            ));
            let stop_watch = watchers.clone();
            let recorder = latency.clone();
            local.block_on(&runtime, async move {
                let watchers = stop_watch;
                let latency = recorder;
                let mut tasks = Vec::with_capacity(clients);
                for i in 0..clients {
                    let watchers = watchers.clone();
                    let latency = latency.clone();
                    // 5,000 clients per source address (127.0.0.x), fresh ones for
                    // each run, so no source runs out of ports (old ones linger in TIME_WAIT).
                    let source = first_source + (i / 5_000) as u8;
                    let stalls = i < stalled;
                    tasks.push(tokio::task::spawn_local(async move {
                        if watch(port, source, watchers.clone(), latency, stalls)
                            .await
                            .is_err()
                            && !watchers.stop.load(Ordering::Relaxed)
                        {
                            watchers.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                    if i % 250 == 249 {
                        // Connect in waves so the accept queue keeps up.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                while !watchers.stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                for task in tasks {
                    task.abort();
                }
            });
            // Aborted tasks may still hold their handle until the runtime drops them.
            let recorded = latency.borrow().clone();
            recorded
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while (watchers.ready.load(Ordering::Relaxed) + watchers.failed.load(Ordering::Relaxed))
        < clients as u64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let connected = watchers.ready.load(Ordering::Relaxed);
    let rss_connected = server.rss_bytes();

    let warmup = Duration::from_secs(2);
    let started = Instant::now();
    let recorder = {
        let watchers = watchers.clone();
        std::thread::spawn(move || {
            std::thread::sleep(warmup);
            watchers.recording.store(true, Ordering::Relaxed);
        })
    };
    let rate = load(
        port,
        load_connections,
        started + warmup + Duration::from_secs(seconds),
    );
    recorder.join().unwrap();
    // Let the last coalesced messages arrive.
    std::thread::sleep(Duration::from_millis(500));
    watchers.recording.store(false, Ordering::Relaxed);
    let rss_loaded = server.rss_bytes();
    watchers.stop.store(true, Ordering::Relaxed);
    let latency_us = client_thread.join().unwrap();
    drop(server);
    Row {
        clients,
        connected,
        failed: watchers.failed.load(Ordering::Relaxed),
        rate,
        messages: watchers.messages.load(Ordering::Relaxed),
        latency_us,
        rss_idle,
        rss_connected,
        rss_loaded,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let seconds = knob("FANOUT_SECONDS", if full { 10 } else { 1 });
    let load_connections = knob("FANOUT_LOAD_CONNECTIONS", 64) as usize;
    let stalled = knob("FANOUT_STALLED", 1) as usize;
    let sizes: Vec<usize> = std::env::var("FANOUT_CLIENTS")
        .unwrap_or_else(|_| {
            if full {
                "1000,10000,19500".into()
            } else {
                "100".into()
            }
        })
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();

    let mut rows = Vec::new();
    let baseline = run(0, 0, seconds, load_connections, 2);
    for (i, clients) in sizes.into_iter().enumerate() {
        let stalled = stalled.min(clients);
        rows.push(run(
            clients,
            stalled,
            seconds,
            load_connections,
            10 + 10 * i as u8,
        ));
    }

    println!();
    println!("WebSocket fan-out of one hot SKU during a flash sale");
    println!("machine: {}", machine());
    println!(
        "load: {load_connections} keep-alive HTTP clients reserving the hot SKU for {seconds} s \
         (after 2 s of warm-up); server: the release binary, fdatasync, ws.coalesce_ms 100; \
         {stalled} of each run's watchers subscribe and never read"
    );
    println!();
    println!("| watchers | connected | reservations/s | ratio to no watchers | stock messages | delivery p50 ms | p99 ms | p999 ms | max ms | server RSS idle → connected → after load MiB | per connection KiB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    println!(
        "| 0 (baseline) | - | {:.0} | 1.00 | - | - | - | - | - | {:.0} → - → {:.0} | - |",
        baseline.rate,
        mib(baseline.rss_idle),
        mib(baseline.rss_loaded)
    );
    for row in &rows {
        let ms = |q: f64| row.latency_us.value_at_quantile(q) as f64 / 1000.0;
        let per_kib = row.rss_connected.saturating_sub(row.rss_idle) as f64
            / row.connected.max(1) as f64
            / 1024.0;
        println!(
            "| {} | {}{} | {:.0} | {:.2} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} → {:.0} → {:.0} | {:.1} |",
            row.clients,
            row.connected,
            if row.failed > 0 { format!(" ({} failed)", row.failed) } else { String::new() },
            row.rate,
            row.rate / baseline.rate,
            row.messages,
            ms(0.5),
            ms(0.99),
            ms(0.999),
            row.latency_us.max() as f64 / 1000.0,
            mib(row.rss_idle),
            mib(row.rss_connected),
            mib(row.rss_loaded),
            per_kib,
        );
        support::json_line(json!({
            "scenario": "ws_fanout",
            "watchers": row.clients,
            "stalled_watchers": stalled.min(row.clients),
            "connected": row.connected,
            "failed": row.failed,
            "reservations_per_s": row.rate,
            "ratio_to_no_watchers": row.rate / baseline.rate,
            "messages": row.messages,
            "delivery_ms": {"p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999)},
            "rss_bytes": {"idle": row.rss_idle, "connected": row.rss_connected, "loaded": row.rss_loaded},
        }));
    }
}
