//! `BENCHMARKS.md` and its plots, written from one run's figures only.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::scenarios::{
    sweep_plan, BackendRun, Kind, Row, Run, SweepPoint, HOT_UNITS, MIXED_SKUS, SPREAD_SKUS,
};
use super::{support, Settings};

/// The goals on the hot SKU: flashdrop / baseline at least this.
const GOALS: [(Kind, f64); 2] = [(Kind::RedisEverysec, 3.0), (Kind::Postgres, 30.0)];

pub fn git_revision() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let rev = run(&["rev-parse", "--short", "HEAD"]);
    let dirty = !run(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    if dirty {
        format!("{rev} with uncommitted changes")
    } else {
        rev
    }
}

fn ratio(flashdrop: f64, other: f64) -> String {
    if other > 0.0 {
        format!("{:.2}", flashdrop / other)
    } else {
        "-".into()
    }
}

fn row_cells(row: &Row) -> String {
    let server = row
        .server_cpu_us
        .map_or("-".into(), |us| format!("{us:.1}"));
    format!(
        "{:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {server} | {:.1}",
        row.rate,
        row.p50,
        row.p99,
        row.p999,
        row.requests,
        row.errors,
        row.oversell,
        row.client_cpu_us
    )
}

fn table(out: &mut String, unit: &str, rows: &[(&BackendRun, &Row)], flashdrop: Option<&Row>) {
    let _ = writeln!(
        out,
        "| server | {unit} | p50 ms | p99 ms | p999 ms | requests | errors | oversell | server CPU µs/answer | load CPU µs/answer | flashdrop / this |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (backend, row) in rows {
        let r = flashdrop.map_or("-".into(), |f| ratio(f.rate, row.rate));
        let label = if backend.counts() {
            backend.kind.label().to_owned()
        } else {
            format!(
                "{} (**does not count**: a correctness check failed)",
                backend.kind.label()
            )
        };
        let _ = writeln!(out, "| {label} | {} | {r} |", row_cells(row));
    }
    let passes: Vec<String> = rows
        .iter()
        .filter(|(_, r)| r.passes.len() > 1)
        .map(|(b, r)| {
            let rates: Vec<String> = r.passes.iter().map(|p| format!("{p:.0}")).collect();
            format!("{} {}", b.kind.label(), rates.join(", "))
        })
        .collect();
    if !passes.is_empty() {
        let _ = writeln!(
            out,
            "\nEach row is the median of {} passes over all the servers in turn; the passes gave (lowest first): {}.",
            rows[0].1.passes.len(),
            passes.join("; ")
        );
    }
    for (backend, row) in rows {
        let kind = backend.kind;
        if let Some(e) = &row.first_error {
            let mut e = e.replace('\n', " ");
            e.truncate(160);
            let _ = writeln!(out, "\nFirst error from {}: `{e}`", kind.label());
        }
    }
}

fn plot(
    path: &Path,
    title: &str,
    y_desc: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<(), Box<dyn std::error::Error>> {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, 0f64, f64::MAX, 0f64);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y.max(1e-3));
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Ok(());
    }
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (x0 * 0.8..x1 * 1.25).log_scale(),
            (y0 * 0.5..y1 * 2.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("concurrent clients (log scale)")
        .y_desc(y_desc)
        .draw()?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

fn plots(run: &Run, dir: &Path) {
    let series = |f: fn(&Row) -> f64| -> Vec<(&str, Vec<(f64, f64)>)> {
        run.backends
            .iter()
            .map(|b| {
                let points = b.hot.iter().map(|(c, r)| (*c as f64, f(r))).collect();
                (b.kind.label(), points)
            })
            .collect()
    };
    let throughput = dir.join("hot-sku-throughput.svg");
    let p99 = dir.join("hot-sku-p99.svg");
    let title = format!("Hot SKU: {HOT_UNITS} units sold per second (ceiling: requests/s)");
    if let Err(e) = plot(
        &throughput,
        &title,
        "per second (log scale)",
        &series(|r| r.rate),
    ) {
        eprintln!("plot {}: {e}", throughput.display());
    }
    if let Err(e) = plot(
        &p99,
        "Hot SKU: p99 latency",
        "p99 ms (log scale)",
        &series(|r| r.p99),
    ) {
        eprintln!("plot {}: {e}", p99.display());
    }
}

fn find(run: &Run, kind: Kind) -> Option<&BackendRun> {
    run.backends.iter().find(|b| b.kind == kind)
}

pub fn write(settings: &Settings, run: &Run, sweep: &[SweepPoint], root: &Path) {
    let plots_dir = root.join("docs/benchmarks");
    plots(run, &plots_dir);
    let mut out = String::new();
    let clients = settings.clients;
    let command = if settings.quick {
        "cargo bench --bench compare -- --quick"
    } else {
        "cargo bench --bench compare"
    };
    let _ = writeln!(
        out,
        "# Benchmarks: flashdrop against Redis-Lua and PostgreSQL\n"
    );
    let _ = writeln!(
        out,
        "Written by `{command}` on {} ({:.0} minutes, {}), on {}, flashdrop at commit {}. \
         Every figure here comes from that one run; the command measures them again and rewrites this file and the plots in `docs/benchmarks/`. \
         The machine is shared and noisy: compare figures within one run, not across runs.\n",
        run.started,
        run.minutes,
        if sweep.is_empty() {
            "no sweep"
        } else {
            "the sweep included"
        },
        support::machine(),
        run.revision,
    );

    let _ = writeln!(out, "## What runs\n");
    let _ = writeln!(out, "Each server is a process of its own on loopback and serves the same contract: `POST /v1/skus/{{sku}}/reservations` (check and decrement, a reservation with an expiry, `Idempotency-Key`), `DELETE /v1/reservations/{{id}}` (release) and `POST /v1/reservations/{{id}}/commit`. The load generator, the server and its store share the machine's cores. All servers run for the whole comparison, and each measurement point is taken on all of them back to back, so the machine's drift touches them alike.\n");
    let _ = writeln!(out, "- **{}**: the release binary, `wal.sync = \"fdatasync\"` (every answer waits for its group commit to reach the disk), its defaults except admission limits opened for synthetic buyers.", Kind::Flashdrop.label());
    let _ = writeln!(out, "- **Redis-Lua**: {}, started by the bench on a free port with `appendonly yes`, `appendfsync everysec` or `always`, no RDB snapshots. One Lua script per reservation (EVALSHA) checks the idempotency key, gives back expired holds of the SKU, checks and decrements the stock hash, writes the reservation hash and its expiry index, and stores the key. Release and commit are one script each.", run.redis_version);
    let _ = writeln!(out, "- **PostgreSQL**: the local server ({}), a schema of the run's own, {} connections. One transaction per reservation: `INSERT` of the reservation (unique `(buyer, idem_key)` is the idempotency check), then `UPDATE stock SET available = available - $n ... WHERE sku = $1 AND available >= $n RETURNING`; no row rolls back as `out_of_stock`. `synchronous_commit = on`.", run.pg_settings, settings.pg_connections);
    let _ = writeln!(out, "- **The baselines' front** (`benches/compare/front.rs`) is actix-web with flashdrop's worker count (one per core), the same bearer-token verification (flashdrop's `TokenKeys`, its cache on), the same body validation, answers and problem codes. The **ceiling** is that front with no store: it answers every reservation at once, so it shows what HTTP alone allows on this machine.");
    let _ = writeln!(out, "- **Load**: {} client thread(s) in the bench process with a lean HTTP/1.1 client (`benches/compare/wire.rs`), keep-alive, one request in flight per client, a bearer token per client and an `Idempotency-Key` per request.", settings.threads);
    let _ = writeln!(out, "- **CPU per answer**: user + system time of the server's processes (flashdrop; the front and redis-server; the front and every `postgres` process) and of the load generator, from `/proc`, over a phase, divided by the requests answered in it. It says what each design costs per request whatever the machine's size.\n");

    let _ = writeln!(out, "## Correctness first\n");
    let _ = writeln!(out, "Before its numbers count, each store must pass the same checks: a replayed key answers the same reservation and holds once; a key with another body is 409 `idempotency_key_reused`; release and commit work and repeat idempotently; another buyer's reservation is 404; a released hold cannot be committed nor a sold one released; bad input gets 404/422/401; 300 buyers at once for 99 units sell exactly 99. Every scenario then compares the answers with the server's own stock.\n");
    let _ = writeln!(out, "| server | checks | oversell, all scenarios | stock agrees with the answers | numbers count |");
    let _ = writeln!(out, "|---|---|---:|---|---|");
    for b in run.backends.iter().filter(|b| b.kind.is_store()) {
        let rows: Vec<&Row> = b
            .hot
            .iter()
            .map(|(_, r)| r)
            .chain(&b.spread)
            .chain(&b.mixed)
            .chain(&b.drop)
            .collect();
        let oversell: u64 = rows.iter().map(|r| r.oversell).sum();
        let disagree: Vec<&String> = rows
            .iter()
            .filter_map(|r| r.consistent.as_ref().err())
            .collect();
        let checks = match &b.checks {
            Some(Ok(())) => "passed".to_owned(),
            Some(Err(e)) => format!("failed: {e}"),
            None => "-".into(),
        };
        let agree = disagree
            .first()
            .map_or("yes".to_owned(), |e| format!("no: {e}"));
        let counts = if b.counts() { "yes" } else { "**no**" };
        let _ = writeln!(
            out,
            "| {} | {checks} | {oversell} | {agree} | {counts} |",
            b.kind.label()
        );
    }

    let flashdrop = find(run, Kind::Flashdrop);
    let fd_hot = flashdrop.and_then(|b| b.hot_at(clients));
    let _ = writeln!(out, "\n## Goals (hot SKU, {clients} clients, this run)\n");
    let _ = writeln!(
        out,
        "| goal | flashdrop units/s | baseline units/s | flashdrop / baseline | met |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|");
    let mut missed = Vec::new();
    for (kind, goal) in GOALS {
        let Some(base) = find(run, kind) else {
            continue;
        };
        let (Some(f), Some(b)) = (fd_hot, base.hot_at(clients)) else {
            continue;
        };
        let achieved = f.rate / b.rate.max(1e-9);
        let valid = base.counts() && flashdrop.is_some_and(BackendRun::counts);
        let met = if !valid {
            "not comparable: a correctness check failed".to_owned()
        } else if achieved >= goal {
            "yes".to_owned()
        } else {
            missed.push((kind, goal, achieved));
            format!("**no**, {:.0}% of the goal", 100.0 * achieved / goal)
        };
        let _ = writeln!(
            out,
            "| ≥ {goal}× {} | {:.0} | {:.0} | {achieved:.2} | {met} |",
            kind.label(),
            f.rate,
            b.rate
        );
    }
    let oversell_total: u64 = run
        .backends
        .iter()
        .filter(|b| b.kind.is_store())
        .flat_map(|b| {
            b.hot
                .iter()
                .map(|(_, r)| r)
                .chain(&b.spread)
                .chain(&b.mixed)
                .chain(&b.drop)
        })
        .map(|r| r.oversell)
        .sum();
    let _ = writeln!(
        out,
        "| zero oversell everywhere | | | | {} |",
        if oversell_total == 0 {
            "yes".to_owned()
        } else {
            format!("**no**: {oversell_total} units")
        }
    );

    let _ = writeln!(out, "\n## Hot SKU\n");
    let _ = writeln!(out, "One SKU with {HOT_UNITS} units; every client reserves one unit at a time until the answer is `out_of_stock`. A rate is units sold per second, from the start to the last unit sold, over sell-outs on fresh SKUs until {} s are measured (at least 3 sell-outs, or fewer that last three times as long), after one unmeasured sell-out of 1,000 units. Latency covers every request, the `out_of_stock` answers included. The ceiling never sells out: its rate is requests per second for {} s after 1 s of warm-up.\n", settings.seconds.as_secs(), settings.seconds.as_secs());
    let _ = writeln!(out, "At {clients} clients:\n");
    let rows: Vec<(&BackendRun, &Row)> = run
        .backends
        .iter()
        .filter_map(|b| b.hot_at(clients).map(|r| (b, r)))
        .collect();
    table(&mut out, "units/s", &rows, fd_hot);
    let _ = writeln!(out, "\nAgainst concurrency (units/s, then p99 ms):\n");
    let header: Vec<String> = settings
        .concurrency
        .iter()
        .map(|c| format!("{c} clients"))
        .collect();
    let _ = writeln!(out, "| server | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(header.len()));
    for b in &run.backends {
        let cells: Vec<String> = b
            .hot
            .iter()
            .map(|(_, r)| format!("{:.0} ({:.1} ms)", r.rate, r.p99))
            .collect();
        let _ = writeln!(out, "| {} | {} |", b.kind.label(), cells.join(" | "));
    }
    let _ = writeln!(out, "\n![hot SKU throughput](docs/benchmarks/hot-sku-throughput.svg)\n\n![hot SKU p99](docs/benchmarks/hot-sku-p99.svg)\n");

    let fd = |f: fn(&BackendRun) -> Option<&Row>| flashdrop.and_then(f);
    type Pick = fn(&BackendRun) -> Option<&Row>;
    let sections: [(&str, String, Pick, &str); 3] = [
        ("Spread", format!("{SPREAD_SKUS} SKUs with plenty of stock; every client reserves one unit of a random SKU, {clients} clients, 1 s warm-up then {} s measured. Oversell and consistency from all {SPREAD_SKUS} SKUs' stock afterwards.", settings.seconds.as_secs()), |b| b.spread.as_ref(), "reservations/s"),
        ("Mixed", format!("{MIXED_SKUS} SKUs; every client reserves one unit of a random SKU, then releases or commits it (half each), {clients} clients, 1 s warm-up then {} s measured. A rate counts every answered request; afterwards each SKU's units must be conserved and the sold and held units must equal what the answers said.", settings.seconds.as_secs()), |b| b.mixed.as_ref(), "requests/s"),
        ("Drop opening", format!("From idle to full load in one step: {} clients with no connection open connect at the same instant and reserve one unit at a time of one SKU with {HOT_UNITS} units until it is sold out; at least 3 drops on fresh SKUs. A rate is units sold per second from the instant of the opening; latency includes connecting.", settings.drop_clients), |b| b.drop.as_ref(), "units/s"),
    ];
    for (title, what, get, unit) in sections {
        let _ = writeln!(out, "## {title}\n\n{what}\n");
        let rows: Vec<(&BackendRun, &Row)> = run
            .backends
            .iter()
            .filter_map(|b| get(b).map(|r| (b, r)))
            .collect();
        table(&mut out, unit, &rows, fd(get));
        let _ = writeln!(out);
    }

    let _ = writeln!(out, "## What limits flashdrop here\n");
    if let (Some(f), Some(ceiling)) = (
        fd_hot,
        find(run, Kind::Ceiling).and_then(|b| b.hot_at(clients)),
    ) {
        let _ = writeln!(out, "- The ceiling (HTTP front, no store) answered {:.0} requests/s on the hot SKU at {clients} clients; flashdrop sold {:.0} units/s, {:.0}% of it. The rest of the cost is HTTP parsing, token checks and the load generator, all on the same cores.", ceiling.rate, f.rate, 100.0 * f.rate / ceiling.rate);
        for (kind, goal, achieved) in &missed {
            if let Some(b) = find(run, *kind).and_then(|b| b.hot_at(clients)) {
                let bound = ceiling.rate / b.rate;
                let _ = writeln!(out, "- Goal ≥ {goal}× {}: flashdrop reached {achieved:.2}×, {:.0}% of the goal; it would need {:.0} units/s. A store that cost nothing behind the same front would reach at most {bound:.2}× here (the ceiling's requests/s over the baseline's units/s), because the baseline already runs at {:.0}% of what the HTTP front alone allows.", kind.label(), 100.0 * achieved / goal, goal * b.rate, 100.0 * b.rate / ceiling.rate);
            }
        }
    }
    if let Some(f) = fd_hot.and_then(|r| r.server_cpu_us) {
        for b in run
            .backends
            .iter()
            .filter(|b| b.kind.is_store() && b.kind != Kind::Flashdrop)
        {
            if let Some(cpu) = b.hot_at(clients).and_then(|r| r.server_cpu_us) {
                let verdict = if cpu >= f {
                    format!("flashdrop uses {:.2}× less", cpu / f)
                } else {
                    format!("flashdrop uses {:.2}× more", f / cpu)
                };
                let _ = writeln!(out, "- CPU per answer on the hot SKU: flashdrop {f:.1} µs, {} {cpu:.1} µs (front and store together): {verdict}.", b.kind.label());
            }
        }
    }
    if let Some(profile) = &run.profile {
        let _ = writeln!(out, "\n`perf record -F 499 -g` of the flashdrop server during an extra {clients}-client hot-SKU run (not counted above: perf slows what it watches), `perf report --no-children --sort dso,symbol`, entries of at least 1%:\n\n```\n{profile}\n```\n");
    } else {
        let _ = writeln!(
            out,
            "\n(No profile in this run: perf is not installed, or COMPARE_PROFILE=0.)\n"
        );
    }

    out.push_str(&sweep_markdown(settings, sweep));
    std::fs::write(root.join("BENCHMARKS.md"), out).expect("write BENCHMARKS.md");
}

/// The sweep's section: each knob alone against the defaults.
pub fn sweep_markdown(settings: &Settings, sweep: &[SweepPoint]) -> String {
    let mut out = String::new();
    let clients = settings.clients;
    let _ = writeln!(out, "## Tuning: flashdrop's knobs, one at a time\n");
    let _ = writeln!(out, "`cargo bench --bench compare -- --sweep` runs only this part (on {}, {}) and writes `target/compare/sweep.md`; `config.toml` points here. Each row is a server of its own with the defaults and one setting changed through its `FLASHDROP__SECTION__KEY` variable: hot-SKU sell-outs of {HOT_UNITS} units and a spread over {MIXED_SKUS} SKUs, {clients} clients each. All the servers run at once and {} passes go over them in turn; a figure is the median pass, and the range gives the lowest and highest pass, so a difference inside the ranges is noise. A full mailbox answers 503, counted as errors.\n", support::machine(), support_date_now(), settings.passes);
    let _ = writeln!(out, "| knob | value | hot units/s | hot range | hot p99 ms | spread req/s | spread range | spread p99 ms | errors | hot / defaults | spread / defaults |");
    let _ = writeln!(out, "|---|---|---:|---|---:|---:|---|---:|---:|---:|---:|");
    let base = sweep.iter().find(|p| p.default);
    for p in sweep {
        let (h, s) = base.map_or(("-".into(), "-".into()), |b| {
            (
                ratio(p.hot.rate, b.hot.rate),
                ratio(p.spread.rate, b.spread.rate),
            )
        });
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {:.2} | {:.0} | {} | {:.2} | {} | {h} | {s} |",
            p.knob,
            p.value,
            p.hot.rate,
            range(&p.hot),
            p.hot.p99,
            p.spread.rate,
            range(&p.spread),
            p.spread.p99,
            p.hot.errors + p.spread.errors
        );
    }
    let knobs: Vec<&str> = {
        let mut k: Vec<&str> = sweep_plan()
            .iter()
            .map(|p| p.knob)
            .filter(|k| *k != "defaults")
            .collect();
        k.dedup();
        k
    };
    let _ = writeln!(
        out,
        "\nBest of each knob in this run (hot SKU units/s, with the defaults as one candidate):\n"
    );
    for knob in knobs {
        let best = sweep
            .iter()
            .filter(|p| p.knob == knob || p.default)
            .filter(|p| p.hot.errors == 0)
            .max_by(|a, b| a.hot.rate.total_cmp(&b.hot.rate));
        if let Some(best) = best {
            let value = if best.default {
                "the default".to_owned()
            } else {
                best.value.clone()
            };
            // Beyond noise: its worst pass beat the defaults' best pass.
            let clear = base.is_some_and(|b| {
                !best.default
                    && best.hot.passes.first().unwrap_or(&best.hot.rate)
                        > b.hot.passes.last().unwrap_or(&b.hot.rate)
            });
            let verdict = if best.default {
                "no other value did better"
            } else if clear {
                "better than the defaults in every pass"
            } else {
                "within the noise of the defaults"
            };
            let _ = writeln!(
                out,
                "- `{knob}`: {value} ({:.0} units/s, p99 {:.2} ms): {verdict}",
                best.hot.rate, best.hot.p99
            );
        }
    }
    out
}

/// Lowest–highest pass rate.
fn range(row: &Row) -> String {
    match (row.passes.first(), row.passes.last()) {
        (Some(lo), Some(hi)) if row.passes.len() > 1 => format!("{lo:.0}–{hi:.0}"),
        _ => "-".into(),
    }
}

fn support_date_now() -> String {
    super::scenarios::support_date()
}
