//! `[catalog]`, `[cart]`, `[orders]` and `[payments]`: browsing, carts, the
//! checkout saga and the payment provider.

use serde::{Deserialize, Serialize};

use super::{check_secret, Secret};
use super::{invalid, range, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// A browsing question looks at this many products at most; past it the
    /// page is short and its cursor goes on from where the walk stopped.
    pub browse_scan_max: usize,
    /// An import file is at most this many bytes (413 past it).
    pub import_max_bytes: u64,
    /// Row errors kept per import job; all of them are counted.
    pub import_errors_kept: u64,
    /// Products an import creates or replaces at once, between two kept positions.
    pub import_batch_products: usize,
    /// Import jobs of one store queued or running at once; past it 409 `imports_busy`.
    pub imports_per_store: usize,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            browse_scan_max: 20_000,
            import_max_bytes: 64 * 1024 * 1024,
            import_errors_kept: 10_000,
            import_batch_products: 512,
            imports_per_store: 2,
        }
    }
}

impl CatalogConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        range(
            "catalog.browse_scan_max",
            self.browse_scan_max,
            100,
            10_000_000,
        )?;
        range(
            "catalog.import_max_bytes",
            self.import_max_bytes,
            1024,
            16 * 1024 * 1024 * 1024,
        )?;
        range(
            "catalog.import_errors_kept",
            self.import_errors_kept,
            10,
            10_000_000,
        )?;
        range(
            "catalog.import_batch_products",
            self.import_batch_products,
            1,
            10_000,
        )?;
        range("catalog.imports_per_store", self.imports_per_store, 1, 64)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CartConfig {
    /// A guest cart (no account) lives this long after its last use ...
    pub guest_ttl_s: u64,
    /// ... and a signed-in shopper's cart this long.
    pub account_ttl_s: u64,
    /// Adding a drop SKU holds its stock this long (the hold does not outlive it).
    pub drop_hold_s: u64,
    /// At checkout, take changed prices silently instead of answering 409 `price_changed`.
    pub accept_price_changes: bool,
    /// Carts kept in memory at most (guests can make many); past it, new carts get 503.
    pub carts_max: usize,
    /// A cart's actor stops after this long unused (the cart stays; an
    /// expired cart is forgotten only once its actor has stopped).
    pub actor_idle_s: u64,
}

impl Default for CartConfig {
    fn default() -> Self {
        Self {
            guest_ttl_s: 7 * 86_400,
            account_ttl_s: 30 * 86_400,
            drop_hold_s: 600,
            accept_price_changes: false,
            carts_max: 1_000_000,
            actor_idle_s: 60,
        }
    }
}

impl CartConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let c = self;
        range("cart.guest_ttl_s", c.guest_ttl_s, 60, 366 * 86_400)?;
        range("cart.account_ttl_s", c.account_ttl_s, 60, 366 * 86_400)?;
        range("cart.drop_hold_s", c.drop_hold_s, 10, 86_400)?;
        range("cart.carts_max", c.carts_max, 1, 1_000_000_000)?;
        range("cart.actor_idle_s", c.actor_idle_s, 1, 86_400)?;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersConfig {
    /// Lines in one order (and items in one cart).
    pub lines_max: usize,
    /// Units of one line.
    pub quantity_max: u32,
    pub shipping_address_max_chars: usize,
    /// A payment must succeed this long after the order is placed, or it is cancelled.
    pub payment_deadline_s: u64,
    /// Holds taken by the saga last this long (past the payment deadline, so a
    /// capture always finds its stock).
    pub hold_ttl_s: u64,
    /// Delivered parts may be returned this long after delivery; then they close.
    pub return_window_s: u64,
    /// First wait before a step that failed transiently runs again (doubles, up to 32x).
    pub retry_backoff_ms: u64,
    /// Orders at once in the saga (not yet paid or cancelled); past it, 503.
    pub active_max: usize,
    /// How long a request waits for the saga before answering with the state so far.
    pub reply_wait_ms: u64,
    /// Webhook event ids remembered to drop duplicates.
    pub webhook_dedupe_max: usize,
    /// A settled order's actor stops after this long without messages.
    pub actor_idle_s: u64,
    /// Orders kept in memory once they may leave (settled, snapshotted, no
    /// actor): past it the least recently used leave and are read back from
    /// disk on demand. Active orders are bounded by `active_max` instead.
    pub resident_max: usize,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            lines_max: 50,
            quantity_max: 100,
            shipping_address_max_chars: 500,
            payment_deadline_s: 900,
            hold_ttl_s: 1_800,
            return_window_s: 30 * 86_400,
            retry_backoff_ms: 200,
            active_max: 100_000,
            reply_wait_ms: 5_000,
            webhook_dedupe_max: 100_000,
            actor_idle_s: 10,
            resident_max: 10_000,
        }
    }
}

impl OrdersConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let o = self;
        range("orders.lines_max", o.lines_max, 1, 1_000)?;
        range("orders.quantity_max", o.quantity_max, 1, 1_000_000)?;
        range(
            "orders.shipping_address_max_chars",
            o.shipping_address_max_chars,
            1,
            10_000,
        )?;
        range("orders.payment_deadline_s", o.payment_deadline_s, 1, 86_400)?;
        range(
            "orders.hold_ttl_s",
            o.hold_ttl_s,
            o.payment_deadline_s + 1,
            86_400 * 30,
        )?;
        range("orders.return_window_s", o.return_window_s, 0, 366 * 86_400)?;
        range("orders.retry_backoff_ms", o.retry_backoff_ms, 1, 60_000)?;
        range("orders.active_max", o.active_max, 1, 100_000_000)?;
        range("orders.reply_wait_ms", o.reply_wait_ms, 0, 60_000)?;
        range("orders.actor_idle_s", o.actor_idle_s, 1, 86_400)?;
        range("orders.resident_max", o.resident_max, 1, 100_000_000)?;
        range(
            "orders.webhook_dedupe_max",
            o.webhook_dedupe_max,
            16,
            100_000_000,
        )?;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// The provider: only "sandbox" so far.
    pub gateway: String,
    /// HMAC-SHA256 key of `/v1/payments/webhook` signatures (at least 16
    /// bytes); empty: derived from `auth.jwt_secret` (the sandbox provider
    /// signs with it; a real provider's key must be set).
    pub webhook_secret: Secret,
    /// Signatures older (or newer) than this are refused.
    pub webhook_tolerance_s: u64,
    /// Where the sandbox sends its webhooks; empty = this server.
    pub webhook_url: String,
    /// Sandbox: latency of every call, share of calls that fail, and when
    /// asynchronous methods (`pm_async`) are decided.
    pub sandbox_latency_ms: u64,
    pub sandbox_failure_rate: f64,
    pub sandbox_async_delay_ms: u64,
    /// Sandbox webhooks are delivered after a random delay in this range
    /// (so out of order), and twice this often.
    pub sandbox_webhook_delay_min_ms: u64,
    pub sandbox_webhook_delay_max_ms: u64,
    pub sandbox_webhook_duplicate_rate: f64,
    /// While a payment is pending, the saga also asks the provider this often
    /// (webhooks can be lost).
    pub poll_interval_ms: u64,
    /// Sandbox webhooks waiting to be sent, at most; past it new ones are
    /// dropped (counted; the saga's polling finds the outcome).
    pub sandbox_webhook_queue_max: usize,
    /// Deliveries of one sandbox webhook tried at most.
    pub sandbox_webhook_attempts_max: u32,
    /// One sandbox webhook delivery may take this long.
    pub sandbox_webhook_timeout_ms: u64,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            gateway: "sandbox".into(),
            webhook_secret: Secret::default(),
            webhook_tolerance_s: 300,
            webhook_url: String::new(),
            sandbox_latency_ms: 0,
            sandbox_failure_rate: 0.0,
            sandbox_async_delay_ms: 300,
            sandbox_webhook_delay_min_ms: 20,
            sandbox_webhook_delay_max_ms: 400,
            sandbox_webhook_duplicate_rate: 0.2,
            poll_interval_ms: 5_000,
            sandbox_webhook_queue_max: 4_096,
            sandbox_webhook_attempts_max: 5,
            sandbox_webhook_timeout_ms: 5_000,
        }
    }
}

impl PaymentsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let p = self;
        if p.gateway != "sandbox" {
            return Err(invalid(
                "payments.gateway",
                "the only gateway is \"sandbox\"",
            ));
        }
        check_secret("payments.webhook_secret", &p.webhook_secret)?;
        range(
            "payments.webhook_tolerance_s",
            p.webhook_tolerance_s,
            1,
            86_400,
        )?;
        range(
            "payments.sandbox_latency_ms",
            p.sandbox_latency_ms,
            0,
            60_000,
        )?;
        range(
            "payments.sandbox_failure_rate",
            p.sandbox_failure_rate,
            0.0,
            1.0,
        )?;
        range(
            "payments.sandbox_async_delay_ms",
            p.sandbox_async_delay_ms,
            0,
            3_600_000,
        )?;
        range(
            "payments.sandbox_webhook_delay_max_ms",
            p.sandbox_webhook_delay_max_ms,
            p.sandbox_webhook_delay_min_ms,
            3_600_000,
        )?;
        range(
            "payments.sandbox_webhook_duplicate_rate",
            p.sandbox_webhook_duplicate_rate,
            0.0,
            1.0,
        )?;
        range(
            "payments.poll_interval_ms",
            p.poll_interval_ms,
            10,
            3_600_000,
        )?;
        range(
            "payments.sandbox_webhook_queue_max",
            p.sandbox_webhook_queue_max,
            1,
            1_000_000,
        )?;
        range(
            "payments.sandbox_webhook_attempts_max",
            p.sandbox_webhook_attempts_max,
            1,
            100,
        )?;
        range(
            "payments.sandbox_webhook_timeout_ms",
            p.sandbox_webhook_timeout_ms,
            100,
            60_000,
        )?;
        Ok(())
    }
}
