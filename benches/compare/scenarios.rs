//! The servers under test, the correctness checks each must pass, the
//! scenarios, and the sweep of flashdrop's knobs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::load::{self, Outcome, Plan, Work};
use super::{front, pg_store, redis_store, support, Settings};

/// Units per hot-SKU sell-out and per drop opening.
pub const HOT_UNITS: u64 = 10_000;
/// SKUs of the spread scenario.
pub const SPREAD_SKUS: usize = 10_000;
/// SKUs of the mixed scenario and of the sweep's spread.
pub const MIXED_SKUS: usize = 1_000;
/// Stock of every spread and mixed SKU: never sold out in a run.
const DEEP_UNITS: u64 = 1_000_000;

/// One scenario's figures for one server.
#[derive(Clone)]
pub struct Row {
    /// Units sold per second (sell-outs) or answers per second (timed).
    pub rate: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub requests: u64,
    pub errors: u64,
    pub oversell: u64,
    /// Whether the server's stock agrees with the answers, and if not why.
    pub consistent: Result<(), String>,
    pub first_error: Option<String>,
    /// CPU time of the server and its store, and of the load generator, per
    /// answered request, in µs (the server's over all its processes).
    pub server_cpu_us: Option<f64>,
    pub client_cpu_us: f64,
    /// Rates of every pass, lowest first, when this is their median.
    pub passes: Vec<f64>,
}

impl Row {
    fn of(outcome: &Outcome, sell_out: bool, oversell: u64, consistent: Result<(), String>) -> Row {
        Row {
            rate: outcome.rate(sell_out),
            p50: outcome.ms(0.5),
            p99: outcome.ms(0.99),
            p999: outcome.ms(0.999),
            requests: outcome.latency_us.len(),
            errors: outcome.measured.errors,
            oversell,
            consistent,
            first_error: outcome.first_error.clone(),
            server_cpu_us: None,
            client_cpu_us: 0.0,
            passes: Vec::new(),
        }
    }

    /// The pass with the median rate, which keeps the rates of all passes.
    fn median(mut rows: Vec<Row>) -> Row {
        rows.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let passes = rows.iter().map(|r| r.rate).collect();
        let mut row = rows.swap_remove(rows.len() / 2);
        row.passes = passes;
        row
    }

    fn with_cpu(mut self, cpu: Cpu) -> Row {
        let answers = cpu.answers.max(1) as f64;
        self.server_cpu_us = cpu.server_ms.map(|ms| ms * 1000.0 / answers);
        self.client_cpu_us = cpu.client_ms * 1000.0 / answers;
        self
    }
}

/// CPU time spent while answering `answers` requests.
#[derive(Default, Clone, Copy)]
pub struct Cpu {
    server_ms: Option<f64>,
    client_ms: f64,
    answers: u64,
}

impl Cpu {
    fn add(&mut self, o: Cpu) {
        self.server_ms = match (self.server_ms, o.server_ms) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.client_ms += o.client_ms;
        self.answers += o.answers;
    }
}

/// User + system CPU of a process and its reaped children, in ms (0 if it is gone).
fn process_cpu_ms(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // utime, stime, and cutime, cstime: what its ended children used (the
    // PostgreSQL backends that closed, counted by their postmaster).
    (ticks(11) + ticks(12) + ticks(13) + ticks(14)) as f64 * 1000.0 / hz
}

/// The CPU of a server under test: its processes, and every `postgres`
/// process for the PostgreSQL baseline (its backends are not our children).
fn server_cpu_ms(target: &Target) -> f64 {
    let mut total: f64 = target
        .pids
        .iter()
        .map(|p| process_cpu_ms(&p.to_string()))
        .sum();
    if target.postgres {
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.bytes().all(|b| b.is_ascii_digit())
                && std::fs::read_to_string(entry.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "postgres")
            {
                total += process_cpu_ms(&name);
            }
        }
    }
    total
}

/// `load::run` with the CPU it cost.
fn run_counted(target: &Target, plan: &Plan) -> (Outcome, Cpu) {
    let (server, client) = (server_cpu_ms(target), process_cpu_ms("self"));
    let outcome = load::run(plan);
    let cpu = Cpu {
        // A process that ended mid-way (PostgreSQL backends) would count negative.
        server_ms: Some((server_cpu_ms(target) - server).max(0.0)),
        client_ms: process_cpu_ms("self") - client,
        answers: outcome.all.answered(),
    };
    (outcome, cpu)
}

#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Flashdrop,
    RedisEverysec,
    RedisAlways,
    Postgres,
    /// The baselines' HTTP front with no store: what HTTP alone allows.
    Ceiling,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Flashdrop => "flashdrop (fdatasync)",
            Kind::RedisEverysec => "Redis-Lua, AOF everysec",
            Kind::RedisAlways => "Redis-Lua, AOF always",
            Kind::Postgres => "PostgreSQL, synchronous_commit on",
            Kind::Ceiling => "HTTP front alone, no store (ceiling)",
        }
    }

    /// Its name in COMPARE_ONLY.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Flashdrop => "flashdrop",
            Kind::RedisEverysec => "redis-everysec",
            Kind::RedisAlways => "redis-always",
            Kind::Postgres => "postgres",
            Kind::Ceiling => "ceiling",
        }
    }

    pub fn is_store(self) -> bool {
        self != Kind::Ceiling
    }
}

pub struct BackendRun {
    pub kind: Kind,
    /// The correctness checks (`None` for the ceiling, which stores nothing).
    pub checks: Option<Result<(), String>>,
    pub hot: Vec<(usize, Row)>,
    pub spread: Option<Row>,
    pub mixed: Option<Row>,
    pub drop: Option<Row>,
}

impl BackendRun {
    pub fn hot_at(&self, clients: usize) -> Option<&Row> {
        self.hot.iter().find(|(c, _)| *c == clients).map(|(_, r)| r)
    }

    /// Whether its numbers count: checks passed, no oversell, stock consistent.
    pub fn counts(&self) -> bool {
        let rows = self
            .hot
            .iter()
            .map(|(_, r)| r)
            .chain(&self.spread)
            .chain(&self.mixed)
            .chain(&self.drop);
        self.checks.as_ref().is_none_or(|c| c.is_ok())
            && rows
                .into_iter()
                .all(|r| r.oversell == 0 && r.consistent.is_ok())
    }
}

pub struct Run {
    pub backends: Vec<BackendRun>,
    pub started: String,
    /// The whole run's length, the sweep included (set once it is done).
    pub minutes: f64,
    /// The commit measured, read before the run writes any file.
    pub revision: String,
    pub pg_settings: String,
    pub redis_version: String,
    /// `perf report` of flashdrop's headline hot-SKU run.
    pub profile: Option<String>,
}

/// A server under test, stopped when dropped.
struct Target {
    port: u16,
    /// `Authorization` of the seller (flashdrop); the baselines need none to stock.
    seller: Option<String>,
    /// `Authorization` for commits: only a seller commits a hold directly.
    commit_as: String,
    /// Whether it keeps stock (the ceiling does not).
    stores: bool,
    pid: u32,
    /// Its processes, for CPU accounting.
    pids: Vec<u32>,
    postgres: bool,
    _keep: Vec<Box<dyn std::any::Any>>,
}

/// A child process that gets SIGTERM and is waited for when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    actix_rt::System::new().block_on(f)
}

fn http() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish()
}

/// flashdrop's release binary on a free port, fdatasync, its defaults but for
/// admission limits opened for synthetic buyers and `extra` overrides.
fn start_flashdrop(extra: &[(String, String)]) -> Target {
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_flashdrop"));
    let server = support::ServerProcess::start(bin, dir.path(), |command| {
        command
            .env("FLASHDROP__AUTH__JWT_SECRET", support::BENCH_SECRET)
            .env("FLASHDROP__WAL__SYNC", "fdatasync")
            .env("FLASHDROP__ADMISSION__BUYER_BURST", "4000000000")
            .env("FLASHDROP__ADMISSION__TENANT_SHOPPER_MULTIPLIER", "1000000")
            .env("FLASHDROP__ADMISSION__MAX_IN_FLIGHT", "10000000")
            // Each synthetic buyer keeps holds open for the whole run; the
            // per-shopper hold bounds would measure the bound.
            .env(
                "FLASHDROP__RESERVATIONS__SHOPPER_UNITS_PER_SKU_MAX",
                "4000000000",
            )
            .env("FLASHDROP__RESERVATIONS__SHOPPER_HOLDS_MAX", "4000000000")
            // Stocking 10,000 SKUs is 10,000 seller requests.
            .env("FLASHDROP__TENANTS__DEFAULT_REQUESTS_PER_MINUTE", "1000000")
            // /readyz answers 503 until recovery is done: not worth a line each.
            .env("FLASHDROP__LOG__LEVEL", "error");
        for (k, v) in extra {
            command.env(k, v);
        }
        super::die_with_parent(command);
    });
    let port = server.port;
    let pid = server.child.id();
    let seller = block_on(async move {
        let http = http();
        let base = format!("http://127.0.0.1:{port}");
        support::wait_ready(&http, &base).await;
        support::onboard_seller(&http, &base, "seller@bench.example").await
    });
    Target {
        port,
        commit_as: seller.clone(),
        seller: Some(seller),
        stores: true,
        pid,
        pids: vec![pid],
        postgres: false,
        _keep: vec![Box::new(server), Box::new(dir)],
    }
}

/// The baselines' front (`front.rs`) as a child process of this binary.
fn start_front(spec: &front::StoreSpec, keep: Vec<Box<dyn std::any::Any>>) -> Target {
    use std::io::BufRead;
    let mut command = std::process::Command::new(std::env::current_exe().expect("own path"));
    super::die_with_parent(&mut command);
    let mut child = command
        .args(["--serve-baseline", &spec.render()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the baseline front starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let port: u16 = loop {
        let line = lines.next().expect("a listening line").unwrap();
        if let Some(port) = line.strip_prefix("baseline listening on port ") {
            break port.trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let pid = child.id();
    let mut keep = keep;
    // The front stops before its store (drop order: first pushed, first dropped).
    keep.insert(0, Box::new(Child(child)));
    block_on(async move {
        support::wait_ready(&http(), &format!("http://127.0.0.1:{port}")).await;
    });
    Target {
        port,
        seller: None,
        commit_as: format!("Bearer {}", support::seller_token(1)),
        stores: !matches!(spec, front::StoreSpec::Nothing),
        pid,
        pids: vec![pid],
        postgres: matches!(spec, front::StoreSpec::Postgres { .. }),
        _keep: keep,
    }
}

fn start(kind: Kind, settings: &Settings, schema: &str) -> Target {
    match kind {
        Kind::Flashdrop => start_flashdrop(&[]),
        Kind::RedisEverysec | Kind::RedisAlways => {
            let fsync = if kind == Kind::RedisAlways {
                "always"
            } else {
                "everysec"
            };
            let redis = redis_store::RedisServer::start(fsync);
            let spec = front::StoreSpec::Redis { url: redis.url() };
            let redis_pid = redis.pid();
            let mut target = start_front(&spec, vec![Box::new(redis)]);
            target.pids.push(redis_pid);
            target
        }
        Kind::Postgres => {
            block_on(pg_store::create_schema(&settings.pg_conninfo, schema))
                .unwrap_or_else(|e| panic!("PostgreSQL at {}: {e}", settings.pg_conninfo));
            let spec = front::StoreSpec::Postgres {
                conninfo: settings.pg_conninfo.clone(),
                schema: schema.to_owned(),
                connections: settings.pg_connections,
            };
            start_front(&spec, Vec::new())
        }
        Kind::Ceiling => start_front(&front::StoreSpec::Nothing, Vec::new()),
    }
}

/// Creates `skus` (flashdrop: as products of the seller) with `units` each.
fn stock(target: &Target, skus: &[String], units: u64) {
    let base = format!("http://127.0.0.1:{}", target.port);
    let seller = target.seller.clone();
    block_on(async move {
        let http = http();
        let with_seller = |r: awc::ClientRequest| match &seller {
            Some(s) => r.insert_header(("authorization", s.as_str())),
            None => r,
        };
        if seller.is_some() {
            let creations = skus.chunks(100).map(|chunk| {
                let list: Vec<_> = chunk
                    .iter()
                    .map(|s| json!({"sku": s, "price": {"amount": 1000, "currency": "USD"}}))
                    .collect();
                support::call(
                    with_seller(http.post(format!("{base}/v1/products"))),
                    json!({"title": "bench", "skus": list}),
                )
            });
            support::run_bounded(creations, 8).await;
        }
        let sets = skus.iter().map(|sku| {
            support::call(
                with_seller(http.put(format!("{base}/v1/skus/{sku}/stock"))),
                json!({"warehouses": {"main": units}}),
            )
        });
        support::run_bounded(sets, 64).await;
    });
}

/// (available, reserved, sold) of each SKU, as the server reads it.
fn read_stock(port: u16, skus: &[String]) -> Vec<(i64, i64, i64)> {
    use futures_util::stream::{self, StreamExt};
    block_on(async move {
        let http = http();
        let reads = skus.iter().map(|sku| {
            let http = http.clone();
            async move {
                let mut response = http
                    .get(format!("http://127.0.0.1:{port}/v1/skus/{sku}/stock"))
                    .send()
                    .await
                    .expect("stock answers");
                let v: Value = response.json().limit(1 << 20).await.unwrap_or_default();
                let n = |k: &str| v[k].as_i64().unwrap_or(i64::MIN);
                (n("available"), n("reserved"), n("sold"))
            }
        });
        stream::iter(reads).buffered(64).collect().await
    })
}

fn skus(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Buyer numbers per phase, so no two phases share a buyer or a key.
fn next_buyers() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * 10_000_000
}

/// Sell-outs of `units` on fresh SKUs by `clients` until `seconds` are
/// measured over at least `rounds_min` rounds (one will do if it alone takes
/// three times `seconds`), at most 30, after one unmeasured round.
fn hot_sku(
    target: &Target,
    settings: &Settings,
    clients: usize,
    units: u64,
    warm: bool,
    rounds_min: u32,
) -> Row {
    let mut merged: Option<Outcome> = None;
    let mut cpu = Cpu::default();
    let mut oversell = 0;
    let mut consistent = Ok(());
    let tag = fastrand::u32(..);
    for round in 0..=30u32 {
        let measured = round > 0;
        let sku = format!("HOT-{tag:x}-{clients}-{round}");
        let round_units = if measured { units } else { units.min(1_000) };
        stock(target, std::slice::from_ref(&sku), round_units);
        let (outcome, used) = run_counted(
            target,
            &Plan {
                port: target.port,
                work: Work::SellOut { sku: sku.clone() },
                clients,
                threads: settings.threads,
                warm,
                window: (Duration::ZERO, Duration::from_secs(120)),
                buyer_offset: next_buyers(),
                commit_as: target.commit_as.clone(),
            },
        );
        if !measured {
            continue;
        }
        cpu.add(used);
        let (available, reserved, sold) = read_stock(target.port, &[sku])[0];
        let sold_units = outcome.all.created;
        oversell += sold_units.saturating_sub(round_units)
            + ((reserved + sold) as u64).saturating_sub(round_units)
            + u64::from(available < 0);
        if consistent.is_ok()
            && (reserved as u64 != sold_units
                || available as u64 != round_units - sold_units.min(round_units))
        {
            consistent = Err(format!(
                "round {round}: {sold_units} created, stock reads available {available}, reserved {reserved}"
            ));
        }
        match &mut merged {
            None => merged = Some(outcome),
            Some(m) => {
                m.measured.created += outcome.measured.created;
                m.measured.sold_out += outcome.measured.sold_out;
                m.measured.errors += outcome.measured.errors;
                m.elapsed += outcome.elapsed;
                m.latency_us.add(&outcome.latency_us).unwrap();
                m.first_error = m.first_error.take().or(outcome.first_error);
            }
        }
        // Enough: the measured time, over several sell-outs unless each is long.
        let m = merged.as_ref().unwrap();
        if m.elapsed >= settings.seconds
            && (round >= rounds_min || m.elapsed >= settings.seconds * 3)
        {
            break;
        }
    }
    Row::of(&merged.unwrap(), true, oversell, consistent).with_cpu(cpu)
}

/// `work` for a warm-up second and `seconds` measured.
fn timed(target: &Target, settings: &Settings, work: Work, clients: usize) -> (Outcome, Cpu) {
    run_counted(
        target,
        &Plan {
            port: target.port,
            work,
            clients,
            threads: settings.threads,
            warm: true,
            window: (Duration::from_secs(1), settings.seconds),
            buyer_offset: next_buyers(),
            commit_as: target.commit_as.clone(),
        },
    )
}

/// Spread over `codes` (stocked with DEEP_UNITS); oversell and consistency
/// from every SKU's stock.
fn spread(target: &Target, settings: &Settings, codes: &[String], clients: usize) -> Row {
    let list = std::sync::Arc::new(codes.to_vec());
    let (outcome, cpu) = timed(target, settings, Work::Spread { skus: list }, clients);
    if !target.stores {
        return Row::of(&outcome, false, 0, Ok(())).with_cpu(cpu);
    }
    let rows = read_stock(target.port, codes);
    let oversell = rows
        .iter()
        .map(|&(a, r, s)| ((r + s) as u64).saturating_sub(DEEP_UNITS) + u64::from(a < 0))
        .sum();
    let reserved: i64 = rows.iter().map(|r| r.1).sum();
    let consistent = if reserved as u64 == outcome.all.created {
        Ok(())
    } else {
        Err(format!(
            "{} created, stock reads {reserved} reserved",
            outcome.all.created
        ))
    };
    Row::of(&outcome, false, oversell, consistent).with_cpu(cpu)
}

fn mixed(target: &Target, settings: &Settings, codes: &[String], clients: usize) -> Row {
    let list = std::sync::Arc::new(codes.to_vec());
    let (outcome, cpu) = timed(target, settings, Work::Mixed { skus: list }, clients);
    let rows = read_stock(target.port, codes);
    let oversell = rows
        .iter()
        .map(|&(a, r, s)| ((r + s) as u64).saturating_sub(DEEP_UNITS) + u64::from(a < 0))
        .sum();
    let all = outcome.all;
    let (reserved, sold): (i64, i64) = rows
        .iter()
        .fold((0, 0), |acc, r| (acc.0 + r.1, acc.1 + r.2));
    let whole = rows
        .iter()
        .all(|&(a, r, s)| (a + r + s) as u64 == DEEP_UNITS);
    let held = all.created as i64 - all.committed as i64 - all.released as i64;
    let consistent = if whole && sold as u64 == all.committed && reserved == held {
        Ok(())
    } else {
        Err(format!(
            "{} created, {} committed, {} released; stock reads {reserved} reserved, {sold} sold, units conserved: {whole}",
            all.created, all.committed, all.released
        ))
    };
    Row::of(&outcome, false, oversell, consistent).with_cpu(cpu)
}

/// Calls for the checks, as a buyer (`""`: no token).
struct Api {
    http: awc::Client,
    base: String,
}

impl Api {
    /// Status, JSON body and `Idempotent-Replayed` of a reservation.
    async fn reserve(&self, who: &str, sku: &str, key: Option<&str>, q: u32) -> (u16, Value, bool) {
        let mut request = self
            .http
            .post(format!("{}/v1/skus/{sku}/reservations", self.base));
        if !who.is_empty() {
            request = request.insert_header(("authorization", format!("Bearer {who}")));
        }
        if let Some(k) = key {
            request = request.insert_header(("idempotency-key", k));
        }
        let mut response = request
            .send_json(&json!({"quantity": q}))
            .await
            .expect("the server answers");
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let bytes = response.body().await.unwrap_or_default();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (response.status().as_u16(), value, replayed)
    }

    /// Status of a release (`commit = false`) or a commit.
    async fn finish(&self, who: &str, id: &str, commit: bool) -> u16 {
        let request = if commit {
            self.http
                .post(format!("{}/v1/reservations/{id}/commit", self.base))
        } else {
            self.http
                .delete(format!("{}/v1/reservations/{id}", self.base))
        };
        let mut response = request
            .insert_header(("authorization", format!("Bearer {who}")))
            .send()
            .await
            .expect("the server answers");
        let _ = response.body().await;
        response.status().as_u16()
    }

    async fn stock(&self, sku: &str) -> (i64, i64, i64) {
        let mut response = self
            .http
            .get(format!("{}/v1/skus/{sku}/stock", self.base))
            .send()
            .await
            .expect("the server answers");
        let v: Value = response.json().await.unwrap_or_default();
        let n = |k: &str| v[k].as_i64().unwrap_or(i64::MIN);
        (n("available"), n("reserved"), n("sold"))
    }
}

/// The checks a store must pass before its numbers count: idempotent
/// replay and reuse, release and commit (and their repeats), ownership, bad
/// input, and a concurrent sell-out that must sell exactly the stock.
fn checks(target: &Target) -> Result<(), String> {
    let tag = fastrand::u32(..);
    let (one, two, scarce) = (
        format!("CHECK-{tag:x}-1"),
        format!("CHECK-{tag:x}-2"),
        format!("CHECK-{tag:x}-3"),
    );
    stock(target, &[one.clone(), two.clone()], 100);
    stock(target, std::slice::from_ref(&scarce), 99);
    let port = target.port;
    let me = support::buyer_token(9_000_000_001 + u64::from(tag));
    let other = support::buyer_token(9_100_000_001 + u64::from(tag));
    let seller = target
        .commit_as
        .strip_prefix("Bearer ")
        .expect("a bearer token")
        .to_owned();
    block_on(async move {
        let api = Api {
            http: http(),
            base: format!("http://127.0.0.1:{port}"),
        };
        let expect = |what: &str, ok: bool| if ok { Ok(()) } else { Err(what.to_owned()) };

        let (s, first, replayed) = api.reserve(&me, &one, Some("check-key"), 2).await;
        expect(
            "a reservation is 201 and not replayed",
            s == 201 && !replayed,
        )?;
        let id = first["reservation_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (s, again, replayed) = api.reserve(&me, &one, Some("check-key"), 2).await;
        expect(
            "the same key and body replay the same reservation",
            s == 201 && replayed && again["reservation_id"] == first["reservation_id"],
        )?;
        expect(
            "a replay holds the units once",
            api.stock(&one).await == (98, 2, 0),
        )?;
        let (s, body, _) = api.reserve(&me, &one, Some("check-key"), 3).await;
        expect(
            "the same key with another body is 409 idempotency_key_reused",
            s == 409 && body["code"] == "idempotency_key_reused",
        )?;
        expect(
            "another buyer cannot release it (404)",
            api.finish(&other, &id, false).await == 404,
        )?;
        expect("a release is 204", api.finish(&me, &id, false).await == 204)?;
        expect(
            "a release again is 204",
            api.finish(&me, &id, false).await == 204,
        )?;
        expect(
            "a release gives the units back",
            api.stock(&one).await == (100, 0, 0),
        )?;
        expect(
            "committing a released hold is 409",
            api.finish(&seller, &id, true).await == 409,
        )?;

        let (s, held, _) = api.reserve(&me, &two, Some("check-key-2"), 1).await;
        expect("a second reservation is 201", s == 201)?;
        let id = held["reservation_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        expect(
            "a shopper's own commit is 403 (units are sold through a paid order)",
            api.finish(&me, &id, true).await == 403,
        )?;
        expect(
            "a seller's commit is 200",
            api.finish(&seller, &id, true).await == 200,
        )?;
        expect(
            "a commit again is 200",
            api.finish(&seller, &id, true).await == 200,
        )?;
        expect(
            "releasing a sold hold is 409",
            api.finish(&me, &id, false).await == 409,
        )?;
        expect(
            "a commit sells the unit",
            api.stock(&two).await == (99, 0, 1),
        )?;

        let (s, _, _) = api.reserve(&me, "CHECK-NO-SUCH-SKU", Some("k"), 1).await;
        expect("an unknown SKU is 404", s == 404)?;
        let (s, _, _) = api.reserve(&me, &two, Some("k0"), 0).await;
        expect("quantity 0 is 422", s == 422)?;
        let (s, _, _) = api.reserve("", &two, Some("k1"), 1).await;
        expect("no token is 401", s == 401)?;
        let (s, body, _) = api.reserve(&me, &two, Some("k-big"), 100).await;
        expect(
            "more than available is 409 out_of_stock",
            s == 409 && body["code"] == "out_of_stock",
        )?;
        Ok::<(), String>(())
    })?;
    // 300 buyers at once for 99 units: exactly 99 sold.
    let outcome = load::run(&Plan {
        port,
        work: Work::SellOut {
            sku: scarce.clone(),
        },
        clients: 300,
        threads: 1,
        warm: true,
        window: (Duration::ZERO, Duration::from_secs(60)),
        buyer_offset: next_buyers(),
        commit_as: target.commit_as.clone(),
    });
    let read = read_stock(port, &[scarce])[0];
    if outcome.all.created != 99 || read != (0, 99, 0) || outcome.all.errors != 0 {
        return Err(format!(
            "300 buyers for 99 units: {} created, {} errors, stock reads {read:?}",
            outcome.all.created, outcome.all.errors
        ));
    }
    Ok(())
}

/// `perf record` of `pid` while `during` runs, as `perf report` text.
fn profiled<T>(pid: u32, during: impl FnOnce() -> T) -> (T, Option<String>) {
    let data = std::env::temp_dir().join(format!("compare-perf-{}.data", std::process::id()));
    let recorder = std::process::Command::new("perf")
        .args(["record", "-F", "499", "-g", "-o"])
        .arg(&data)
        .args(["-p", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok();
    std::thread::sleep(Duration::from_millis(300));
    let result = during();
    let Some(mut recorder) = recorder else {
        return (result, None);
    };
    // SAFETY: kill(2) on our own child's pid; perf writes its data on SIGINT.
    unsafe {
        libc::kill(recorder.id() as i32, libc::SIGINT);
    }
    let _ = recorder.wait();
    let report = std::process::Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "dso,symbol",
            "-g",
            "none",
            "--percent-limit",
            "1",
            "-i",
        ])
        .arg(&data)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(|l| l.trim_end().trim_end_matches(['-', ' ']))
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        });
    let _ = std::fs::remove_file(&data);
    (result, report)
}

/// Every server, every scenario.
pub fn compare(settings: &Settings) -> Run {
    let begun = Instant::now();
    let started = support_date();
    let revision = super::report::git_revision();
    let schema = format!("flashdrop_compare_{}", std::process::id());
    let pg_settings = block_on(pg_store::settings(&settings.pg_conninfo))
        .unwrap_or_else(|e| format!("unavailable: {e}"));
    let redis_version = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let only = std::env::var("COMPARE_ONLY").unwrap_or_default();
    let kinds = [
        Kind::Flashdrop,
        Kind::RedisEverysec,
        Kind::RedisAlways,
        Kind::Postgres,
        Kind::Ceiling,
    ];
    // Every server runs for the whole comparison and each point is measured
    // on all of them back to back, so the machine's drift hits all alike.
    let targets: Vec<(Kind, Target)> = kinds
        .into_iter()
        .filter(|k| only.is_empty() || only.split(',').any(|o| o == k.key()))
        .map(|kind| {
            println!("compare: starting {}", kind.label());
            (kind, start(kind, settings, &schema))
        })
        .collect();
    let mut backends: Vec<BackendRun> = targets
        .iter()
        .map(|(kind, target)| {
            let checks = kind.is_store().then(|| checks(target));
            if let Some(Err(e)) = &checks {
                println!("compare: {} failed a correctness check: {e}", kind.label());
            }
            BackendRun {
                kind: *kind,
                checks,
                hot: Vec::new(),
                spread: None,
                mixed: None,
                drop: None,
            }
        })
        .collect();
    let hot_point = |kind: Kind, target: &Target, clients: usize| {
        if kind.is_store() {
            hot_sku(target, settings, clients, HOT_UNITS, true, 3)
        } else {
            let sku = "HOT-CEILING".to_owned();
            let (outcome, cpu) = timed(target, settings, Work::Hammer { sku }, clients);
            Row::of(&outcome, false, 0, Ok(())).with_cpu(cpu)
        }
    };
    for &clients in &settings.concurrency {
        let passes = if clients == settings.clients {
            settings.passes
        } else {
            1
        };
        let mut rows: Vec<Vec<Row>> = vec![Vec::new(); targets.len()];
        for pass in 1..=passes {
            for (i, (kind, target)) in targets.iter().enumerate() {
                let row = hot_point(*kind, target, clients);
                println!(
                    "compare: hot SKU, {clients} clients, pass {pass}: {}: {:.0}/s, p99 {:.2} ms, {} errors, oversell {}",
                    kind.label(), row.rate, row.p99, row.errors, row.oversell
                );
                rows[i].push(row);
            }
        }
        for (backend, rows) in backends.iter_mut().zip(rows) {
            backend.hot.push((clients, Row::median(rows)));
        }
    }
    let mut profile = None;
    if let Some((_, target)) = targets.iter().find(|(k, _)| *k == Kind::Flashdrop) {
        if settings.profile {
            // A run of its own: perf slows what it watches.
            let ((), report) = profiled(target.pid, || {
                hot_sku(target, settings, settings.clients, HOT_UNITS, true, 3);
            });
            profile = report;
        }
    }
    for ((kind, target), backend) in targets.iter().zip(&mut backends) {
        let codes = skus(&format!("SPREAD-{:x}", fastrand::u32(..)), SPREAD_SKUS);
        stock(target, &codes, DEEP_UNITS);
        let row = spread(target, settings, &codes, settings.clients);
        println!(
            "compare: spread: {}: {:.0}/s, p99 {:.2} ms",
            kind.label(),
            row.rate,
            row.p99
        );
        backend.spread = Some(row);
    }
    for ((kind, target), backend) in targets.iter().zip(&mut backends) {
        if !kind.is_store() {
            continue;
        }
        let codes = skus(&format!("MIXED-{:x}", fastrand::u32(..)), MIXED_SKUS);
        stock(target, &codes, DEEP_UNITS);
        let row = mixed(target, settings, &codes, settings.clients);
        println!(
            "compare: mixed: {}: {:.0}/s, p99 {:.2} ms",
            kind.label(),
            row.rate,
            row.p99
        );
        backend.mixed = Some(row);
    }
    for ((kind, target), backend) in targets.iter().zip(&mut backends) {
        if !kind.is_store() {
            continue;
        }
        let row = hot_sku(target, settings, settings.drop_clients, HOT_UNITS, false, 3);
        println!(
            "compare: drop opening: {}: {:.0}/s, p99 {:.2} ms, {} errors",
            kind.label(),
            row.rate,
            row.p99,
            row.errors
        );
        backend.drop = Some(row);
    }
    drop(targets);
    let _ = block_on(pg_store::drop_schema(&settings.pg_conninfo, &schema));
    Run {
        backends,
        started,
        minutes: begun.elapsed().as_secs_f64() / 60.0,
        revision,
        pg_settings,
        redis_version,
        profile,
    }
}

/// UTC date and time now, for the report.
pub fn support_date() -> String {
    let ms = flashdrop::clock::Clock::now_ms(&flashdrop::clock::SystemClock);
    let text = flashdrop::clock::rfc3339_ms(ms);
    text[..16].replace('T', " ") + " UTC"
}

/// One knob setting of the sweep.
pub struct SweepPoint {
    pub knob: &'static str,
    pub value: String,
    pub default: bool,
    pub hot: Row,
    pub spread: Row,
}

/// One server setting of the sweep: a knob, its value, and the environment
/// that sets it.
pub struct Setting {
    pub knob: &'static str,
    pub value: String,
    pub default: bool,
    pub env: Vec<(String, String)>,
}

/// The knobs an operator tunes, each varied alone from the defaults.
pub fn sweep_plan() -> Vec<Setting> {
    let setting = |knob: &'static str, value: &str, pairs: &[(&str, &str)]| Setting {
        knob,
        value: value.to_owned(),
        default: pairs.is_empty(),
        env: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let mut plan = vec![setting("defaults", "config.toml", &[])];
    for shards in ["1", "2", "4"] {
        plan.push(setting(
            "actors.placement = arbiters, actors.shards",
            shards,
            &[
                ("FLASHDROP__ACTORS__PLACEMENT", "arbiters"),
                ("FLASHDROP__ACTORS__SHARDS", shards),
            ],
        ));
    }
    for us in ["100", "500", "2000"] {
        plan.push(setting(
            "wal.commit_window_us",
            us,
            &[("FLASHDROP__WAL__COMMIT_WINDOW_US", us)],
        ));
    }
    for n in ["16", "256", "65536"] {
        plan.push(setting(
            "wal.batch_records_max",
            n,
            &[("FLASHDROP__WAL__BATCH_RECORDS_MAX", n)],
        ));
    }
    for n in ["64", "512", "65536"] {
        plan.push(setting(
            "actors.mailbox_capacity",
            n,
            &[("FLASHDROP__ACTORS__MAILBOX_CAPACITY", n)],
        ));
    }
    plan
}

/// flashdrop alone, one knob at a time: hot SKU sell-outs and a spread over
/// MIXED_SKUS SKUs at the headline concurrency, a server per setting, the
/// median of `passes` passes.
pub fn sweep(settings: &Settings) -> Vec<SweepPoint> {
    // Every setting's server runs for the whole sweep and the passes go over
    // all of them in turn, so drift does not pass for a knob's effect.
    let servers: Vec<(Setting, Target)> = sweep_plan()
        .into_iter()
        .map(|setting| {
            println!("sweep: starting {} = {}", setting.knob, setting.value);
            let target = start_flashdrop(&setting.env);
            (setting, target)
        })
        .collect();
    let mut rows: Vec<(Vec<Row>, Vec<Row>)> = vec![(Vec::new(), Vec::new()); servers.len()];
    for pass in 1..=settings.passes {
        for ((setting, target), (hot, spread_rows)) in servers.iter().zip(&mut rows) {
            let h = hot_sku(target, settings, settings.clients, HOT_UNITS, true, 3);
            let codes = skus(&format!("SWEEP-{pass}"), MIXED_SKUS);
            stock(target, &codes, DEEP_UNITS);
            let s = spread(target, settings, &codes, settings.clients);
            println!(
                "sweep: pass {pass}: {} = {}: hot {:.0}/s p99 {:.2} ms; spread {:.0}/s p99 {:.2} ms; errors {}",
                setting.knob, setting.value, h.rate, h.p99, s.rate, s.p99, h.errors + s.errors
            );
            hot.push(h);
            spread_rows.push(s);
        }
    }
    servers
        .into_iter()
        .zip(rows)
        .map(|((setting, _target), (hot, spread))| SweepPoint {
            knob: setting.knob,
            value: setting.value,
            default: setting.default,
            hot: Row::median(hot),
            spread: Row::median(spread),
        })
        .collect()
}
