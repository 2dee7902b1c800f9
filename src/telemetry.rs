//! Logs (tracing, text or JSON) and the process-wide Prometheus recorder:
//! every series the engine exports, with its help text, registered at zero
//! when the recorder is installed, plus build and process metrics.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the log subscriber once, writing to stderr (stdout carries only the
/// "listening on" line). `RUST_LOG`, when set, wins over the config.
pub fn init_logs(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

const LATENCY_BUCKETS_S: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];
const BATCH_RECORD_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];
const BATCH_BYTE_BUCKETS: &[f64] = &[256.0, 1024.0, 4096.0, 16384.0, 65536.0, 131072.0, 196608.0];

/// The process-wide recorder: installed on first use, shared by every app in
/// the process (tests start several).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_S)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("flashdrop_wal_batch_records".into()),
                        BATCH_RECORD_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("flashdrop_wal_batch_bytes".into()),
                        BATCH_BYTE_BUCKETS,
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            describe_all();
            let upkeep = handle.clone();
            // Histograms are folded into their buckets by upkeep; without it they grow.
            let _ = std::thread::Builder::new()
                .name("flashdrop-metrics".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                });
            handle
        })
        .clone()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported series: its name, kind, help text, and the values of its
/// labels known up front (every combination starts at zero).
pub struct Series {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [(&'static str, &'static [&'static str])],
}

const fn series(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    labels: &'static [(&'static str, &'static [&'static str])],
) -> Series {
    Series {
        name,
        kind,
        help,
        labels,
    }
}

use Kind::{Counter, Gauge, Histogram};

const ORDER_STATES: &[&str] = &[
    "created",
    "reserved",
    "payment_pending",
    "paid",
    "packed",
    "shipped",
    "delivered",
    "return_requested",
    "refunded",
    "closed",
    "cancelled",
];

/// Every series flashdrop exports. README's list is checked against what the
/// binary serves (tests/api/operations.rs).
pub const SERIES: &[Series] = &[
    series(
        "flashdrop_build_info",
        Gauge,
        "Always 1; the labels say which build runs",
        &[],
    ),
    series(
        "flashdrop_http_request_duration_seconds",
        Histogram,
        "Time to answer an HTTP request, by route pattern, method and status",
        &[],
    ),
    series(
        "flashdrop_reservations_total",
        Counter,
        "Reservation requests by outcome",
        &[(
            "outcome",
            &[
                "created",
                "replayed",
                "out_of_stock",
                "drop_not_live",
                "purchase_limit",
                "hold_limit",
                "queue_pass_required",
                "overloaded",
                "unavailable",
                "rejected",
            ],
        )],
    ),
    series(
        "flashdrop_wal_batch_records",
        Histogram,
        "Records per WAL group commit",
        &[],
    ),
    series(
        "flashdrop_wal_batch_bytes",
        Histogram,
        "Bytes per WAL group commit",
        &[],
    ),
    series(
        "flashdrop_wal_commit_seconds",
        Histogram,
        "Time to make one WAL batch durable, by sync mode",
        &[("sync", &["fdatasync", "flush", "none"])],
    ),
    series(
        "flashdrop_wal_records_total",
        Counter,
        "Records written to the WAL",
        &[],
    ),
    series(
        "flashdrop_wal_retained_batches",
        Gauge,
        "WAL batches kept because a snapshot does not cover them yet",
        &[],
    ),
    series(
        "flashdrop_wal_retained_bytes",
        Gauge,
        "Bytes of the WAL batches kept, pinned ones included (SKUs snapshot early while the bytes snapshots have yet to cover are over snapshots.wal_max_mb)",
        &[],
    ),
    series(
        "flashdrop_wal_pinned_bytes",
        Gauge,
        "WAL bytes kept only because a durable subscriber has yet to read them",
        &[],
    ),
    series(
        "flashdrop_wal_dirty_entities",
        Gauge,
        "Entities whose latest state is only in the WAL",
        &[],
    ),
    series(
        "flashdrop_wal_congested_total",
        Counter,
        "Requests answered 503 because the WAL writer's queue was nearly full",
        &[],
    ),
    series(
        "flashdrop_wal_channel_full_total",
        Counter,
        "Times a sender found the WAL writer's queue full",
        &[],
    ),
    series(
        "flashdrop_sku_actors_active",
        Gauge,
        "SKU actors in memory",
        &[],
    ),
    series(
        "flashdrop_mailbox_full_total",
        Counter,
        "Requests refused because a SKU actor's mailbox was full",
        &[],
    ),
    series(
        "flashdrop_sku_actor_restarts_total",
        Counter,
        "SKU actors rebuilt from snapshot and WAL, by reason",
        &[("reason", &["invariant", "requested"])],
    ),
    series(
        "flashdrop_sku_activations_total",
        Counter,
        "SKU actors started",
        &[],
    ),
    series(
        "flashdrop_sku_passivations_total",
        Counter,
        "Idle SKU actors that left memory",
        &[],
    ),
    series(
        "flashdrop_recovery_seconds",
        Gauge,
        "How long the last start-up recovery took",
        &[],
    ),
    series(
        "flashdrop_recovery_records_total",
        Counter,
        "WAL records read by recovery",
        &[],
    ),
    series(
        "flashdrop_products_created_total",
        Counter,
        "Products created",
        &[],
    ),
    series(
        "flashdrop_product_versions_total",
        Counter,
        "Product versions made by changes (not creations)",
        &[],
    ),
    series(
        "flashdrop_logins_total",
        Counter,
        "Login attempts by outcome",
        &[("outcome", &["ok", "refused"])],
    ),
    series(
        "flashdrop_login_limited_total",
        Counter,
        "Login attempts refused by a rate limit, by what was limited",
        &[("by", &["account", "address"])],
    ),
    series(
        "flashdrop_registrations_total",
        Counter,
        "Registrations by outcome",
        &[("outcome", &["created", "taken"])],
    ),
    series(
        "flashdrop_refresh_reuse_total",
        Counter,
        "Rotated refresh tokens presented again (their sessions are revoked)",
        &[],
    ),
    series(
        "flashdrop_password_verifications_total",
        Counter,
        "Password hashes verified",
        &[],
    ),
    series(
        "flashdrop_password_hashes_in_flight",
        Gauge,
        "Password hashes being computed",
        &[],
    ),
    series(
        "flashdrop_feed_events_total",
        Counter,
        "Changes published on the event feed",
        &[],
    ),
    series(
        "flashdrop_search_documents",
        Gauge,
        "Documents in the search index after its last commit",
        &[],
    ),
    series(
        "flashdrop_search_documents_written_total",
        Counter,
        "Search documents added, replaced or removed by the indexer",
        &[],
    ),
    series(
        "flashdrop_feed_subscriber_applied_total",
        Counter,
        "WAL records a durable feed subscriber applied, by subscriber",
        &[],
    ),
    series(
        "flashdrop_feed_subscriber_lag_records",
        Gauge,
        "Durable records a subscriber had yet to apply after its last step, by subscriber",
        &[],
    ),
    series(
        "flashdrop_feed_subscriber_rebuilds_total",
        Counter,
        "Times a durable subscriber was rebuilt from current state, by subscriber",
        &[],
    ),
    series(
        "flashdrop_feed_subscriber_failures_total",
        Counter,
        "Failed durable subscriber steps (each replays from the checkpoint), by subscriber and step",
        &[],
    ),
    series(
        "flashdrop_ws_connections",
        Gauge,
        "Open WebSocket connections",
        &[],
    ),
    series(
        "flashdrop_ws_refused_total",
        Counter,
        "WebSocket connections refused, by why",
        &[("why", &["connections", "shutting_down"])],
    ),
    series(
        "flashdrop_ws_closed_total",
        Counter,
        "WebSocket connections closed, by reason",
        &[(
            "reason",
            &[
                "closed",
                "client_closed",
                "heartbeat_timeout",
                "slow_client",
                "going_away",
            ],
        )],
    ),
    series(
        "flashdrop_ws_stock_frames_total",
        Counter,
        "Stock frames sent over WebSockets",
        &[],
    ),
    series(
        "flashdrop_ws_drop_frames_total",
        Counter,
        "Drop frames sent over WebSockets",
        &[],
    ),
    series(
        "flashdrop_ws_feed_lagged_total",
        Counter,
        "Times the WebSocket hub fell a whole feed ring behind",
        &[],
    ),
    series(
        "flashdrop_ws_resync_refused_total",
        Counter,
        "Stock resynchronisations a SKU actor could not take",
        &[],
    ),
    series(
        "flashdrop_drops_created_total",
        Counter,
        "Drops scheduled",
        &[],
    ),
    series(
        "flashdrop_drop_moves_total",
        Counter,
        "Drop state changes, by new state",
        &[("to", &["live", "sold_out", "ended", "cancelled"])],
    ),
    series(
        "flashdrop_drop_edits_total",
        Counter,
        "Scheduled drops edited by their sellers",
        &[],
    ),
    series(
        "flashdrop_drop_skus_released_total",
        Counter,
        "Ended after_drop=sell drops whose SKUs went back to normal sale",
        &[],
    ),
    series(
        "flashdrop_waiting_room_admitted_total",
        Counter,
        "Shoppers admitted from waiting rooms",
        &[],
    ),
    series(
        "flashdrop_admission_limited_total",
        Counter,
        "Requests refused by admission control, by limit",
        &[("by", &["buyer", "store", "in_flight"])],
    ),
    series(
        "flashdrop_identity_purged_total",
        Counter,
        "Ended sessions, invitations and unfollows forgotten after their retention, by kind",
        &[("kind", &["session", "invitation", "unfollow"])],
    ),
    series(
        "flashdrop_identity_resident",
        Gauge,
        "Sessions, invitations and unfollow tombstones in memory, by kind (set by each sweep)",
        &[("kind", &["session", "invitation", "unfollow"])],
    ),
    series("flashdrop_carts", Gauge, "Carts in memory", &[]),
    series(
        "flashdrop_carts_expired_total",
        Counter,
        "Carts forgotten after their time to live",
        &[],
    ),
    series(
        "flashdrop_carts_refused_total",
        Counter,
        "New carts refused because cart.carts_max was reached",
        &[],
    ),
    series(
        "flashdrop_orders_placed_total",
        Counter,
        "Orders placed",
        &[],
    ),
    series(
        "flashdrop_order_moves_total",
        Counter,
        "Order state changes, by new state",
        &[("to", ORDER_STATES)],
    ),
    series(
        "flashdrop_order_restocks_skipped_total",
        Counter,
        "Restock steps not repeated after an interruption",
        &[],
    ),
    series(
        "flashdrop_order_late_payments_undone_total",
        Counter,
        "Payments that arrived after an order was cancelled, refunded",
        &[],
    ),
    series(
        "flashdrop_payment_webhooks_total",
        Counter,
        "Payment provider webhooks, by outcome",
        &[(
            "outcome",
            &["accepted", "duplicate", "bad_signature", "unknown_order"],
        )],
    ),
    series(
        "flashdrop_sandbox_calls_total",
        Counter,
        "Sandbox payment provider operations, by kind",
        &[("op", &["authorize", "capture", "void", "refund"])],
    ),
    series(
        "flashdrop_sandbox_webhooks_total",
        Counter,
        "Sandbox provider webhook deliveries, by outcome",
        &[("outcome", &["delivered", "failed"])],
    ),
    series(
        "flashdrop_sandbox_webhooks_dropped_total",
        Counter,
        "Sandbox webhooks dropped because their queue was full",
        &[],
    ),
    series(
        "flashdrop_notifications_total",
        Counter,
        "Notification deliveries, by channel and outcome",
        &[
            ("channel", &["webhook", "email"]),
            (
                "outcome",
                &["delivered", "retried", "dead_letter", "refused"],
            ),
        ],
    ),
    series(
        "flashdrop_notifications_dropped_total",
        Counter,
        "Notifications dropped because the queue was full",
        &[],
    ),
    series(
        "flashdrop_notification_keys_purged_total",
        Counter,
        "Notification keys forgotten after retention.notification_keys_s",
        &[],
    ),
    series(
        "flashdrop_order_keys_purged_total",
        Counter,
        "Order idempotency keys forgotten after retention.order_keys_s",
        &[],
    ),
    series(
        "flashdrop_import_jobs_purged_total",
        Counter,
        "Finished import jobs forgotten after retention.import_jobs_s",
        &[],
    ),
    series(
        "flashdrop_notification_dead_letters_dropped_total",
        Counter,
        "Oldest dead letters dropped past notifications.dead_letters_max",
        &[],
    ),
];

/// Describes every series and registers each known label combination at zero.
fn describe_all() {
    for s in SERIES {
        match s.kind {
            Kind::Counter => metrics::describe_counter!(s.name, s.help),
            Kind::Gauge => metrics::describe_gauge!(s.name, s.help),
            Kind::Histogram => metrics::describe_histogram!(s.name, s.help),
        }
        for labels in combinations(s.labels) {
            match s.kind {
                Kind::Counter => metrics::counter!(s.name, labels.clone()).increment(0),
                Kind::Gauge if s.name != "flashdrop_build_info" => {
                    metrics::gauge!(s.name, labels.clone()).increment(0.0)
                }
                Kind::Gauge => {}
                Kind::Histogram => {
                    let _ = metrics::histogram!(s.name, labels.clone());
                }
            }
        }
    }
    metrics::gauge!(
        "flashdrop_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "profile" => if cfg!(debug_assertions) { "debug" } else { "release" },
    )
    .set(1.0);
    process_collector().describe();
}

/// Every combination of the label values (one empty set for no labels).
fn combinations(labels: &[(&'static str, &'static [&'static str])]) -> Vec<Vec<metrics::Label>> {
    let mut sets = vec![Vec::new()];
    for (key, values) in labels {
        sets = sets
            .into_iter()
            .flat_map(|set| {
                values.iter().map(move |value| {
                    let mut next = set.clone();
                    next.push(metrics::Label::new(*key, *value));
                    next
                })
            })
            .collect();
    }
    sets
}

/// The process's own figures (CPU, memory, open files, threads), as
/// `process_*` series.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// The Prometheus text of every series, process figures refreshed.
pub fn render(handle: &PrometheusHandle) -> String {
    process_collector().collect();
    handle.render()
}
