//! flashdrop against the designs people build today for flash sales, in one
//! run on one machine: stock in Redis decremented by a Lua script (AOF
//! `everysec` and `always`), and stock rows in PostgreSQL guarded by a
//! conditional UPDATE in a durable transaction. Every server is a process of
//! its own behind the same HTTP contract; each must pass the same correctness
//! checks (no oversell, idempotency, release and commit) before its numbers
//! count. Scenarios: hot SKU (sell-outs of 10,000 units at several
//! concurrencies), spread (10,000 SKUs), mixed (reserve, then release or
//! commit) and a drop opening (1,000 clients connecting at the same instant).
//! Then a sweep of flashdrop's knobs. Writes `BENCHMARKS.md` and the plots in
//! `docs/benchmarks/`.
//!
//! Run: `cargo bench --bench compare` (everything, about 10 minutes on 2 cores), or
//! `cargo bench --bench compare -- --sweep` (only the knob sweep, printed and
//! written to `target/compare/sweep.md`, for tuning on your own hardware).
//! `--quick` shortens everything (a smoke run; writes under `target/compare/`).
//! Knobs (environment): COMPARE_SECONDS (3, measured per point),
//! COMPARE_CLIENTS (256, the headline concurrency), COMPARE_PASSES (3 passes
//! over every server at the headline concurrency; the median counts), COMPARE_CONCURRENCY
//! (16,64,256,512), COMPARE_DROP_CLIENTS (1000), COMPARE_CLIENT_THREADS (1),
//! COMPARE_PG (conninfo, `host=127.0.0.1 port=5432 user=postgres dbname=test`),
//! COMPARE_PG_CONNECTIONS (32), COMPARE_ONLY (servers to run, of flashdrop,
//! redis-everysec, redis-always, postgres, ceiling; a partial run writes under
//! `target/compare/`), COMPARE_SWEEP (0: skip the sweep), COMPARE_PROFILE (1: `perf record` flashdrop's
//! headline hot-SKU run when perf is installed).

#[path = "../support/mod.rs"]
mod support;

mod front;
mod load;
mod pg_store;
mod redis_store;
mod report;
mod scenarios;
mod wire;

use std::time::Duration;

pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The child gets SIGTERM when the bench dies, even by a signal that skips
/// the destructors that stop it otherwise.
pub fn die_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(2) is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// What a run measures, from the command line and the environment.
pub struct Settings {
    pub seconds: Duration,
    pub clients: usize,
    /// Passes at the headline concurrency (the median counts).
    pub passes: u32,
    pub concurrency: Vec<usize>,
    pub drop_clients: usize,
    pub threads: usize,
    pub pg_conninfo: String,
    pub pg_connections: usize,
    pub profile: bool,
    pub quick: bool,
    pub sweep_only: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let args: Vec<String> = std::env::args().collect();
        let quick = args.iter().any(|a| a == "--quick")
            // `cargo test --benches` runs this without --bench: stay short.
            || !args.iter().any(|a| a == "--bench" || a == "--sweep");
        let concurrency = std::env::var("COMPARE_CONCURRENCY")
            .ok()
            .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
            .filter(|v: &Vec<usize>| !v.is_empty())
            .unwrap_or_else(|| {
                if quick {
                    vec![64]
                } else {
                    vec![16, 64, 256, 512]
                }
            });
        let clients = knob("COMPARE_CLIENTS", if quick { 64 } else { 256 }) as usize;
        Settings {
            seconds: Duration::from_secs(knob("COMPARE_SECONDS", if quick { 1 } else { 3 })),
            clients,
            passes: knob("COMPARE_PASSES", if quick { 1 } else { 3 }) as u32,
            concurrency,
            drop_clients: knob("COMPARE_DROP_CLIENTS", if quick { 200 } else { 1000 }) as usize,
            threads: knob("COMPARE_CLIENT_THREADS", 1) as usize,
            pg_conninfo: std::env::var("COMPARE_PG")
                .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into()),
            pg_connections: knob("COMPARE_PG_CONNECTIONS", 32) as usize,
            profile: knob("COMPARE_PROFILE", 1) == 1,
            quick,
            sweep_only: args.iter().any(|a| a == "--sweep"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve-baseline") {
        let spec = args
            .get(i + 1)
            .and_then(|s| front::StoreSpec::parse(s))
            .expect("--serve-baseline redis=URL | postgres=SCHEMA,N,CONNINFO | none");
        front::serve(spec);
        return;
    }
    let settings = Settings::from_env();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let partial =
        std::env::var("COMPARE_ONLY").is_ok_and(|o| !o.is_empty()) || knob("COMPARE_SWEEP", 1) == 0;
    let out = if settings.quick || settings.sweep_only || partial {
        root.join("target/compare")
    } else {
        root.to_path_buf()
    };
    std::fs::create_dir_all(out.join("docs/benchmarks")).expect("output dir");
    if settings.sweep_only {
        let sweep = scenarios::sweep(&settings);
        let text = report::sweep_markdown(&settings, &sweep);
        println!("{text}");
        std::fs::write(out.join("sweep.md"), text).expect("sweep.md");
        return;
    }
    let begun = std::time::Instant::now();
    let mut run = scenarios::compare(&settings);
    let sweep = if knob("COMPARE_SWEEP", 1) == 0 {
        Vec::new()
    } else {
        scenarios::sweep(&settings)
    };
    run.minutes = begun.elapsed().as_secs_f64() / 60.0;
    report::write(&settings, &run, &sweep, &out);
    println!("wrote {}", out.join("BENCHMARKS.md").display());
}
