//! Configuration: embedded defaults < `config.toml` < `FLASHDROP__SECTION__KEY`
//! environment variables < command-line flags. Invalid values name their key.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::domain::stock::LedgerLimits;
use crate::persistence::store::BATCH_BYTES_HARD_MAX;
use crate::persistence::{SyncMode, WalSettings};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub wal: WalConfig,
    pub snapshots: SnapshotConfig,
    pub actors: ActorConfig,
    pub reservations: ReservationConfig,
    pub stock: StockConfig,
    pub auth: AuthConfig,
    pub tenants: TenantConfig,
    pub drops: DropsConfig,
    pub ws: WsConfig,
    pub admission: AdmissionConfig,
    pub cart: CartConfig,
    pub orders: OrdersConfig,
    pub payments: PaymentsConfig,
    pub notifications: NotificationsConfig,
    pub outbound: OutboundConfig,
    pub retention: RetentionConfig,
    pub log: LogConfig,
    /// Set by `Overrides::offline`; never read from a file.
    #[serde(skip)]
    pub offline: bool,
}

/// A secret: serialised and compared as its text, never printed, and read
/// from any scalar (so a secret of digits is not refused with its value echoed).
#[derive(Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(unset)"
        } else {
            "Secret(redacted)"
        })
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl serde::de::Visitor<'_> for Scalar {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a secret (text)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_char<E: serde::de::Error>(self, v: char) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        deserializer.deserialize_any(Scalar)
    }
}

/// Values flashdrop once shipped as defaults: public, so refused as secrets.
const PUBLISHED_SECRETS: &[&str] = &[
    "whsec_sandbox_dev_only_change_me",
    "notify_dev_only_change_me_0123456789",
];

/// Shortest secret accepted for the derived keys when set explicitly.
pub const SECRET_MIN_BYTES: usize = 16;

/// HKDF-SHA256 of the main secret (`auth.jwt_secret`) for one purpose: 32
/// bytes, hex. A leak of one derived key reveals neither the main secret nor
/// the others.
pub fn derive_secret(main: &[u8], purpose: &str) -> String {
    let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"flashdrop secrets v1"), main);
    let mut key = [0u8; 32];
    hkdf.expand(purpose.as_bytes(), &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Networks (CIDR, e.g. "127.0.0.1/32") that store webhooks may reach
    /// although they are loopback, private, link-local, multicast or a cloud
    /// metadata address. Empty: none of those.
    pub allowed_networks: Vec<String>,
    /// Resolving a webhook's host name may take this long.
    pub resolve_timeout_ms: u64,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            allowed_networks: Vec::new(),
            resolve_timeout_ms: 3_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    pub max_body_bytes: usize,
    /// Open connections per worker.
    pub max_connections: usize,
    pub shutdown_timeout_s: u64,
    pub keep_alive_s: u64,
    /// Connections the kernel queues before they are accepted (capped by
    /// `net.core.somaxconn`); a drop opening connects thousands at once.
    pub listen_backlog: u32,
    /// Kernel send buffer of each connection, bytes; 0 leaves it to the
    /// kernel's autotuning. Bounds what a stalled WebSocket client can park
    /// in the kernel before the server sees it as slow.
    pub send_buffer_bytes: usize,
    /// Proxies (CIDR) whose `X-Forwarded-For` is believed; the client is the
    /// right-most address not in this list. Empty: the peer address.
    pub trusted_proxies: Vec<String>,
    /// Browser origins (e.g. "https://shop.example") allowed to call the API
    /// (CORS, preflights included). Empty: none.
    pub cors_allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight answer.
    pub cors_max_age_s: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            workers: 0,
            max_body_bytes: 64 * 1024,
            max_connections: 25_000,
            shutdown_timeout_s: 30,
            keep_alive_s: 75,
            listen_backlog: 4096,
            send_buffer_bytes: 0,
            trusted_proxies: Vec::new(),
            cors_allowed_origins: Vec::new(),
            cors_max_age_s: 600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// sled page cache.
    pub cache_capacity_mb: u64,
    /// A data directory another process holds is waited for this long, then refused.
    pub lock_wait_s: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("flashdrop-data"),
            cache_capacity_mb: 128,
            lock_wait_s: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    pub sync: SyncMode,
    pub commit_window_us: u64,
    pub batch_records_max: usize,
    pub batch_bytes_max: usize,
    pub channel_capacity: usize,
}

impl Default for WalConfig {
    fn default() -> Self {
        let wal = WalSettings::default();
        Self {
            sync: wal.sync,
            commit_window_us: wal.commit_window_us,
            batch_records_max: wal.batch_records_max,
            batch_bytes_max: wal.batch_bytes_max,
            channel_capacity: wal.channel_capacity,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// A SKU writes a snapshot after this many WAL records of its own.
    pub every_records: u64,
    /// A changed SKU writes a snapshot at least this often.
    pub interval_s: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            every_records: 50_000,
            interval_s: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActorConfig {
    /// Where SKU actors run: their own arbiters, or the HTTP workers' threads.
    pub placement: Placement,
    /// Arbiter threads SKU actors are spread over (`placement = "arbiters"`); 0 means one per core.
    pub shards: usize,
    pub mailbox_capacity: usize,
    /// An actor idle this long with no open reservation is passivated.
    pub idle_timeout_s: u64,
}

impl Default for ActorConfig {
    fn default() -> Self {
        Self {
            placement: Placement::HttpWorkers,
            shards: 0,
            mailbox_capacity: 4096,
            idle_timeout_s: 300,
        }
    }
}

/// Where SKU actors run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// `actors.shards` arbiter threads of their own.
    Arbiters,
    /// The HTTP workers' threads: no extra threads, and no thread hop when the
    /// worker that received a request owns the SKU.
    HttpWorkers,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReservationConfig {
    pub default_ttl_s: u64,
    pub min_ttl_s: u64,
    /// Longest hold a shopper may ask for.
    pub max_ttl_s: u64,
    pub max_quantity: u32,
    /// Units of one SKU a shopper may hold at once through their own
    /// reservations outside a drop (a drop's `per_buyer_limit` rules inside).
    pub shopper_units_per_sku_max: u32,
    /// Open holds one shopper may have at once across every SKU (their own,
    /// their cart's and their orders' holds all count); past it, their own
    /// reservations answer 409 `too_many_holds`.
    pub shopper_holds_max: u32,
    pub open_max_per_sku: usize,
    pub idempotency_keys_max_per_sku: usize,
    pub idempotency_ttl_s: u64,
    pub finished_max_per_sku: usize,
    pub finished_retention_s: u64,
}

impl Default for ReservationConfig {
    fn default() -> Self {
        Self {
            default_ttl_s: 600,
            min_ttl_s: 1,
            max_ttl_s: 900,
            max_quantity: 1_000,
            shopper_units_per_sku_max: 10,
            shopper_holds_max: 20,
            open_max_per_sku: 1_000_000,
            idempotency_keys_max_per_sku: 100_000,
            idempotency_ttl_s: 86_400,
            finished_max_per_sku: 100_000,
            finished_retention_s: 86_400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StockConfig {
    /// Low-stock threshold for SKUs that do not set one; 0 disables.
    pub low_stock_threshold: u64,
    pub warehouses_max: usize,
    pub units_max: u64,
}

impl Default for StockConfig {
    fn default() -> Self {
        Self {
            low_stock_threshold: 0,
            warehouses_max: 64,
            units_max: 1_000_000_000_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Allows a missing or short secret (a random one per start) and says so loudly.
    pub dev_mode: bool,
    /// The main secret: the HS256 key of access tokens, at least 32 bytes (or
    /// `jwt_secret_file`); the other keys are derived from it unless set.
    pub jwt_secret: Secret,
    pub jwt_secret_file: PathBuf,
    pub issuer: String,
    pub audience: String,
    pub access_ttl_s: u64,
    /// Verified access tokens remembered, so a repeated token skips verification (0: none).
    pub token_cache_entries: usize,
    pub refresh_ttl_s: u64,
    pub invitation_ttl_s: u64,
    pub password_min_chars: usize,
    pub password_max_chars: usize,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Password hashes running at once; 0 means one per core.
    pub hash_concurrency: usize,
    pub login_burst_per_account: u32,
    pub login_refill_per_account_s: u64,
    pub login_burst_per_address: u32,
    pub login_refill_per_address_s: u64,
    pub limiter_keys_max: usize,
    /// The first platform admin, created at start-up when both are set and the account does not exist.
    pub bootstrap_admin_email: String,
    pub bootstrap_admin_password: Secret,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            dev_mode: false,
            jwt_secret: Secret::default(),
            jwt_secret_file: PathBuf::new(),
            issuer: "flashdrop".into(),
            audience: "flashdrop-api".into(),
            access_ttl_s: 900,
            token_cache_entries: 65_536,
            refresh_ttl_s: 30 * 86_400,
            invitation_ttl_s: 7 * 86_400,
            password_min_chars: 12,
            password_max_chars: 128,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            hash_concurrency: 0,
            login_burst_per_account: 5,
            login_refill_per_account_s: 60,
            login_burst_per_address: 20,
            login_refill_per_address_s: 6,
            limiter_keys_max: 100_000,
            bootstrap_admin_email: String::new(),
            bootstrap_admin_password: Secret::default(),
        }
    }
}

/// The shortest HS256 secret accepted outside dev mode.
pub const JWT_SECRET_MIN_BYTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// The plan a new store starts on.
    pub default_plan: String,
    pub default_requests_per_minute: u32,
    pub default_max_products: u32,
    /// Accounts (admins and staff) per store.
    pub staff_max: usize,
    /// Creators one account may follow.
    pub following_max: usize,
    /// Audit entries one page request may examine before it returns a cursor.
    pub audit_scan_max: usize,
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self {
            default_plan: "starter".into(),
            default_requests_per_minute: 6_000,
            default_max_products: 10_000,
            staff_max: 100,
            following_max: 5_000,
            audit_scan_max: 20_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DropsConfig {
    pub title_max_chars: usize,
    pub skus_max: usize,
    /// Longest drop, from start to end.
    pub duration_max_s: u64,
    /// How far ahead a drop may start.
    pub horizon_max_s: u64,
    pub per_buyer_limit_max: u32,
    pub waiting_room_capacity_max: u32,
    /// How often waiting rooms admit the next shoppers while someone waits.
    pub room_tick_ms: u64,
}

impl Default for DropsConfig {
    fn default() -> Self {
        Self {
            title_max_chars: 200,
            skus_max: 100,
            duration_max_s: 30 * 86_400,
            horizon_max_s: 365 * 86_400,
            per_buyer_limit_max: 1_000,
            waiting_room_capacity_max: 1_000_000,
            room_tick_ms: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    /// At most one stock message per SKU per connection this often (the latest value).
    pub coalesce_ms: u64,
    pub max_connections: usize,
    pub max_subscriptions_per_connection: usize,
    /// Announcements queued per connection before it is closed as too slow.
    pub event_queue_max: usize,
    /// A connection whose writes stay blocked this long is closed (`slow_client`).
    pub slow_client_timeout_s: u64,
    pub heartbeat_interval_s: u64,
    /// A client silent this long (no message, no pong) is closed.
    pub client_timeout_s: u64,
    pub max_message_bytes: usize,
    /// Commits the event feed keeps for subscribers that fall behind.
    pub feed_capacity_batches: usize,
    /// A closing connection's close frame may take this long to send.
    pub close_timeout_ms: u64,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            coalesce_ms: 100,
            max_connections: 50_000,
            max_subscriptions_per_connection: 100,
            event_queue_max: 256,
            slow_client_timeout_s: 10,
            heartbeat_interval_s: 15,
            client_timeout_s: 45,
            max_message_bytes: 4096,
            feed_capacity_batches: 4096,
            close_timeout_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// Reservation (and checkout) requests one buyer may send at once ...
    pub buyer_burst: u32,
    /// ... and one more every this many milliseconds.
    pub buyer_refill_ms: u64,
    /// Buyers the limiter remembers (a full bucket is forgotten first).
    pub buyer_keys_max: usize,
    /// Shopper requests per store per minute, as a multiple of its plan's `requests_per_minute`.
    pub tenant_shopper_multiplier: u32,
    /// Requests being served at once, over all routes; past it, 503 `overloaded`.
    pub max_in_flight: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            buyer_burst: 10,
            buyer_refill_ms: 200,
            buyer_keys_max: 1_000_000,
            tenant_shopper_multiplier: 100,
            max_in_flight: 20_000,
        }
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

/// How long ended identity entities stay before a sweep forgets them, in
/// memory and on disk (a `Deleted` WAL record, then their snapshot goes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Seconds between sweeps (of expired carts and of ended identity entities).
    pub sweep_interval_s: u64,
    /// Entities forgotten per batch at most (at most a tenth of `wal.channel_capacity`); a sweep repeats while a batch is full.
    pub sweep_batch_max: usize,
    /// A session this long after it expired or was revoked (at least `auth.access_ttl_s`).
    pub sessions_s: u64,
    /// An invitation this long after it expired, used or not.
    pub invitations_s: u64,
    /// A follow this long after its unfollow.
    pub unfollows_s: u64,
    /// A notification's "already queued" mark this long; a restart announces
    /// again only order states reached more recently than this.
    pub notification_keys_s: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            sweep_interval_s: 60,
            sweep_batch_max: 1_000,
            sessions_s: 7 * 86_400,
            invitations_s: 7 * 86_400,
            unfollows_s: 30 * 86_400,
            notification_keys_s: 30 * 86_400,
        }
    }
}

impl RetentionConfig {
    pub fn rules(&self) -> crate::domain::identity::Retention {
        crate::domain::identity::Retention {
            sessions_ms: self.sessions_s * 1000,
            invitations_ms: self.invitations_s * 1000,
            unfollows_ms: self.unfollows_s * 1000,
        }
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
        }
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// SMTP relay for order e-mails to buyers; "" sends none.
    pub smtp_host: String,
    pub smtp_port: u16,
    pub from: String,
    /// Each store's webhook signing key is HMAC-SHA256(this, store id) (at
    /// least 16 bytes); empty: derived from `auth.jwt_secret`.
    pub signing_secret: Secret,
    /// Deliveries tried before a message goes to the dead-letter list.
    pub max_attempts: u32,
    /// First wait after a failed delivery (doubles each time).
    pub backoff_ms: u64,
    /// Undelivered messages kept at most.
    pub queue_max: usize,
    /// One delivery (a webhook's HTTP exchange, an SMTP session) may take this long.
    pub delivery_timeout_s: u64,
    /// Dead letters kept at most; past it the oldest go (counted).
    pub dead_letters_max: usize,
    /// With nothing due, the delivery loop looks at the queue again after this long.
    pub idle_wait_s: u64,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            smtp_host: String::new(),
            smtp_port: 25,
            from: "flashdrop <orders@flashdrop.invalid>".into(),
            signing_secret: Secret::default(),
            max_attempts: 8,
            backoff_ms: 1_000,
            queue_max: 100_000,
            delivery_timeout_s: 10,
            dead_letters_max: 10_000,
            idle_wait_s: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter, e.g. "info" or "flashdrop=debug,actix_web=info".
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A configuration value that cannot be used, with the key that holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub port: Option<u16>,
    /// `--dev`: `auth.dev_mode = true`.
    pub dev: bool,
    /// An administration command against a stopped server's data: no token
    /// is issued, so no main secret is needed.
    pub offline: bool,
}

impl Config {
    /// Loads defaults, then `file` (if any), then the environment, then `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("{} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("FLASHDROP__").split("__"));
        let mut config: Config = figment.extract().map_err(|e| {
            let key = e.path.join(".");
            let reason = match &e.metadata {
                Some(meta) if meta.name.contains("environment") => format!(
                    "{} (from the environment variable FLASHDROP__{})",
                    e.kind,
                    key.replace('.', "__").to_uppercase()
                ),
                Some(meta) => format!("{} (from {})", e.kind, meta.name),
                None => e.kind.to_string(),
            };
            invalid(if key.is_empty() { "config" } else { &key }, reason)
        })?;
        if let Some(dir) = &overrides.data_dir {
            config.storage.data_dir = dir.clone();
        }
        if let Some(port) = overrides.port {
            config.server.port = port;
        }
        if overrides.dev {
            config.auth.dev_mode = true;
        }
        config.offline = overrides.offline;
        config.validate()?;
        Ok(config)
    }

    /// Makes every secret concrete: the main secret (from `auth.jwt_secret`,
    /// its file, or in dev mode and offline a random one per start), then each
    /// derived key left empty: HKDF-SHA256 of the main secret, one purpose each.
    /// Running it again changes nothing.
    pub fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        let main = match self.jwt_secret()? {
            Some(secret) => secret,
            None => {
                if !self.offline {
                    tracing::warn!(
                        "auth.dev_mode: no auth.jwt_secret set, using a random one; tokens and \
                         store webhook keys change at restart. Never run production like this."
                    );
                }
                let random: Vec<u8> = crate::auth::tokens::random_salt()
                    .into_iter()
                    .chain(crate::auth::tokens::random_salt())
                    .collect();
                random
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
                    .into_bytes()
            }
        };
        self.auth.jwt_secret = Secret(String::from_utf8_lossy(&main).into_owned());
        self.auth.jwt_secret_file = PathBuf::new();
        if self.payments.webhook_secret.is_empty() {
            self.payments.webhook_secret = derive_secret(&main, "payments.webhook_secret").into();
        }
        if self.notifications.signing_secret.is_empty() {
            self.notifications.signing_secret =
                derive_secret(&main, "notifications.signing_secret").into();
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        fn range<T: PartialOrd + std::fmt::Display>(
            key: &str,
            value: T,
            min: T,
            max: T,
        ) -> Result<(), ConfigError> {
            if value < min || value > max {
                return Err(invalid(key, format!("{value} is outside {min}..={max}")));
            }
            Ok(())
        }
        let s = &self.server;
        if s.host.is_empty() {
            return Err(invalid("server.host", "must not be empty"));
        }
        range("server.workers", s.workers, 0, 256)?;
        range("server.max_body_bytes", s.max_body_bytes, 1024, 1024 * 1024)?;
        range("server.max_connections", s.max_connections, 1, 1_000_000)?;
        range("server.shutdown_timeout_s", s.shutdown_timeout_s, 0, 3600)?;
        range("server.keep_alive_s", s.keep_alive_s, 0, 3600)?;
        range("server.listen_backlog", s.listen_backlog, 1, 65_535)?;
        range("server.trusted_proxies", s.trusted_proxies.len(), 0, 1_000)?;
        parse_networks(&s.trusted_proxies).map_err(|e| invalid("server.trusted_proxies", e))?;
        range(
            "server.cors_allowed_origins",
            s.cors_allowed_origins.len(),
            0,
            1_000,
        )?;
        for origin in &s.cors_allowed_origins {
            let ok = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.ends_with('/')
                && origin.split("://").nth(1).is_some_and(|rest| {
                    !rest.is_empty() && !rest.contains('/') && !rest.contains('*')
                });
            if !ok {
                return Err(invalid(
                    "server.cors_allowed_origins",
                    format!("{origin:?} is not an origin like \"https://shop.example\""),
                ));
            }
        }
        range("server.cors_max_age_s", s.cors_max_age_s, 0, 86_400)?;
        range(
            "outbound.allowed_networks",
            self.outbound.allowed_networks.len(),
            0,
            1_000,
        )?;
        parse_networks(&self.outbound.allowed_networks)
            .map_err(|e| invalid("outbound.allowed_networks", e))?;
        if s.send_buffer_bytes != 0 {
            range(
                "server.send_buffer_bytes",
                s.send_buffer_bytes,
                4096,
                64 << 20,
            )?;
        }
        range(
            "storage.cache_capacity_mb",
            self.storage.cache_capacity_mb,
            8,
            1 << 20,
        )?;
        range("storage.lock_wait_s", self.storage.lock_wait_s, 0, 600)?;
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(invalid("storage.data_dir", "must not be empty"));
        }
        let w = &self.wal;
        range("wal.commit_window_us", w.commit_window_us, 0, 100_000)?;
        range("wal.batch_records_max", w.batch_records_max, 1, 65_536)?;
        range(
            "wal.batch_bytes_max",
            w.batch_bytes_max,
            4096,
            BATCH_BYTES_HARD_MAX,
        )?;
        range("wal.channel_capacity", w.channel_capacity, 16, 1 << 22)?;
        range(
            "snapshots.every_records",
            self.snapshots.every_records,
            1,
            1 << 40,
        )?;
        range("snapshots.interval_s", self.snapshots.interval_s, 1, 86_400)?;
        let au = &self.auth;
        for (key, value) in [("auth.issuer", &au.issuer), ("auth.audience", &au.audience)] {
            if value.is_empty() || value.len() > 256 {
                return Err(invalid(key, "must be 1..=256 characters"));
            }
        }
        range("auth.access_ttl_s", au.access_ttl_s, 10, 86_400)?;
        range(
            "auth.refresh_ttl_s",
            au.refresh_ttl_s,
            au.access_ttl_s,
            365 * 86_400,
        )?;
        range(
            "auth.invitation_ttl_s",
            au.invitation_ttl_s,
            60,
            90 * 86_400,
        )?;
        range("auth.password_min_chars", au.password_min_chars, 8, 128)?;
        range(
            "auth.password_max_chars",
            au.password_max_chars,
            au.password_min_chars,
            1024,
        )?;
        let argon_min_memory = if au.dev_mode { 8 } else { 7 * 1024 };
        range(
            "auth.argon2_memory_kib",
            au.argon2_memory_kib,
            argon_min_memory,
            4 * 1024 * 1024,
        )?;
        range("auth.argon2_iterations", au.argon2_iterations, 1, 100)?;
        range("auth.argon2_parallelism", au.argon2_parallelism, 1, 16)?;
        range("auth.hash_concurrency", au.hash_concurrency, 0, 256)?;
        range(
            "auth.login_burst_per_account",
            au.login_burst_per_account,
            1,
            1_000_000,
        )?;
        range(
            "auth.login_refill_per_account_s",
            au.login_refill_per_account_s,
            1,
            86_400,
        )?;
        range(
            "auth.login_burst_per_address",
            au.login_burst_per_address,
            1,
            1_000_000,
        )?;
        range(
            "auth.login_refill_per_address_s",
            au.login_refill_per_address_s,
            1,
            86_400,
        )?;
        range("auth.limiter_keys_max", au.limiter_keys_max, 16, 10_000_000)?;
        if au.bootstrap_admin_email.is_empty() != au.bootstrap_admin_password.is_empty() {
            return Err(invalid(
                "auth.bootstrap_admin_email",
                "set both bootstrap_admin_email and bootstrap_admin_password, or neither",
            ));
        }
        self.jwt_secret()?;
        let t = &self.tenants;
        if t.default_plan.is_empty() || t.default_plan.len() > 32 {
            return Err(invalid("tenants.default_plan", "must be 1..=32 characters"));
        }
        range(
            "tenants.default_requests_per_minute",
            t.default_requests_per_minute,
            1,
            1_000_000,
        )?;
        range(
            "tenants.default_max_products",
            t.default_max_products,
            1,
            10_000_000,
        )?;
        range("tenants.staff_max", t.staff_max, 1, 100_000)?;
        range("tenants.following_max", t.following_max, 1, 1_000_000)?;
        range("tenants.audit_scan_max", t.audit_scan_max, 100, 10_000_000)?;
        let a = &self.actors;
        range("actors.shards", a.shards, 0, 1024)?;
        range("actors.mailbox_capacity", a.mailbox_capacity, 1, 1 << 20)?;
        range("actors.idle_timeout_s", a.idle_timeout_s, 1, 86_400 * 7)?;
        let r = &self.reservations;
        range("reservations.min_ttl_s", r.min_ttl_s, 1, 86_400 * 30)?;
        range(
            "reservations.max_ttl_s",
            r.max_ttl_s,
            r.min_ttl_s,
            86_400 * 30,
        )?;
        range(
            "reservations.default_ttl_s",
            r.default_ttl_s,
            r.min_ttl_s,
            r.max_ttl_s,
        )?;
        range("reservations.max_quantity", r.max_quantity, 1, 1_000_000)?;
        range(
            "reservations.shopper_units_per_sku_max",
            r.shopper_units_per_sku_max,
            1,
            u32::MAX,
        )?;
        range(
            "reservations.shopper_holds_max",
            r.shopper_holds_max,
            1,
            u32::MAX,
        )?;
        range(
            "reservations.open_max_per_sku",
            r.open_max_per_sku,
            1,
            10_000_000,
        )?;
        range(
            "reservations.idempotency_keys_max_per_sku",
            r.idempotency_keys_max_per_sku,
            1,
            10_000_000,
        )?;
        range(
            "reservations.idempotency_ttl_s",
            r.idempotency_ttl_s,
            1,
            86_400 * 30,
        )?;
        range(
            "reservations.finished_max_per_sku",
            r.finished_max_per_sku,
            1,
            10_000_000,
        )?;
        range(
            "reservations.finished_retention_s",
            r.finished_retention_s,
            1,
            86_400 * 30,
        )?;
        let st = &self.stock;
        range("stock.warehouses_max", st.warehouses_max, 1, 10_000)?;
        range("stock.units_max", st.units_max, 1, 1 << 50)?;
        range(
            "stock.low_stock_threshold",
            st.low_stock_threshold,
            0,
            st.units_max,
        )?;
        let d = &self.drops;
        range("drops.title_max_chars", d.title_max_chars, 1, 10_000)?;
        range("drops.skus_max", d.skus_max, 1, 10_000)?;
        range("drops.duration_max_s", d.duration_max_s, 1, 366 * 86_400)?;
        range("drops.horizon_max_s", d.horizon_max_s, 0, 10 * 366 * 86_400)?;
        range(
            "drops.per_buyer_limit_max",
            d.per_buyer_limit_max,
            1,
            1_000_000,
        )?;
        range(
            "drops.waiting_room_capacity_max",
            d.waiting_room_capacity_max,
            1,
            100_000_000,
        )?;
        range("drops.room_tick_ms", d.room_tick_ms, 1, 10_000)?;
        let r = &self.retention;
        range("retention.sweep_interval_s", r.sweep_interval_s, 1, 86_400)?;
        range("retention.sweep_batch_max", r.sweep_batch_max, 1, 100_000)?;
        // A batch is sent only while the WAL queue is under 90% full, and
        // under the directory's and carts' locks: it must fit in the rest.
        if r.sweep_batch_max > self.wal.channel_capacity / 10 {
            return Err(invalid(
                "retention.sweep_batch_max",
                format!(
                    "at most a tenth of wal.channel_capacity ({})",
                    self.wal.channel_capacity / 10
                ),
            ));
        }
        // A purged session is no longer refused by id: its access tokens
        // must have expired by then.
        range(
            "retention.sessions_s",
            r.sessions_s,
            self.auth.access_ttl_s,
            10 * 366 * 86_400,
        )?;
        range(
            "retention.invitations_s",
            r.invitations_s,
            0,
            10 * 366 * 86_400,
        )?;
        range("retention.unfollows_s", r.unfollows_s, 0, 10 * 366 * 86_400)?;
        range(
            "retention.notification_keys_s",
            r.notification_keys_s,
            3_600,
            10 * 366 * 86_400,
        )?;
        let c = &self.cart;
        range("cart.guest_ttl_s", c.guest_ttl_s, 60, 366 * 86_400)?;
        range("cart.account_ttl_s", c.account_ttl_s, 60, 366 * 86_400)?;
        range("cart.drop_hold_s", c.drop_hold_s, 10, 86_400)?;
        range("cart.carts_max", c.carts_max, 1, 1_000_000_000)?;
        range("cart.actor_idle_s", c.actor_idle_s, 1, 86_400)?;
        let o = &self.orders;
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
        range(
            "orders.webhook_dedupe_max",
            o.webhook_dedupe_max,
            16,
            100_000_000,
        )?;
        let p = &self.payments;
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
        let n = &self.notifications;
        check_secret("notifications.signing_secret", &n.signing_secret)?;
        range("notifications.max_attempts", n.max_attempts, 1, 100)?;
        range("notifications.backoff_ms", n.backoff_ms, 1, 3_600_000)?;
        range("notifications.queue_max", n.queue_max, 1, 100_000_000)?;
        range(
            "notifications.dead_letters_max",
            n.dead_letters_max,
            1,
            10_000_000,
        )?;
        range("notifications.idle_wait_s", n.idle_wait_s, 1, 3_600)?;
        range(
            "notifications.delivery_timeout_s",
            n.delivery_timeout_s,
            1,
            300,
        )?;
        if n.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(invalid(
                "notifications.from",
                "must be an e-mail address (\"Name <a@b.c>\")",
            ));
        }
        let ws = &self.ws;
        range("ws.coalesce_ms", ws.coalesce_ms, 1, 60_000)?;
        range("ws.max_connections", ws.max_connections, 1, 10_000_000)?;
        range(
            "ws.max_subscriptions_per_connection",
            ws.max_subscriptions_per_connection,
            1,
            100_000,
        )?;
        range("ws.event_queue_max", ws.event_queue_max, 1, 1_000_000)?;
        range(
            "ws.slow_client_timeout_s",
            ws.slow_client_timeout_s,
            1,
            3600,
        )?;
        range("ws.heartbeat_interval_s", ws.heartbeat_interval_s, 1, 3600)?;
        range(
            "ws.client_timeout_s",
            ws.client_timeout_s,
            ws.heartbeat_interval_s,
            86_400,
        )?;
        range("ws.max_message_bytes", ws.max_message_bytes, 64, 1 << 20)?;
        range("ws.close_timeout_ms", ws.close_timeout_ms, 10, 10_000)?;
        range(
            "ws.feed_capacity_batches",
            ws.feed_capacity_batches,
            16,
            1 << 20,
        )?;
        let ad = &self.admission;
        range("admission.buyer_burst", ad.buyer_burst, 1, u32::MAX)?;
        range(
            "admission.buyer_refill_ms",
            ad.buyer_refill_ms,
            1,
            3_600_000,
        )?;
        range(
            "admission.buyer_keys_max",
            ad.buyer_keys_max,
            16,
            100_000_000,
        )?;
        range(
            "admission.tenant_shopper_multiplier",
            ad.tenant_shopper_multiplier,
            1,
            1_000_000,
        )?;
        range("admission.max_in_flight", ad.max_in_flight, 1, 10_000_000)?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid("log.level", "not a valid tracing filter"));
        }
        Ok(())
    }

    /// `server.trusted_proxies`, parsed (validated at load).
    pub fn trusted_proxies(&self) -> Vec<ipnet::IpNet> {
        parse_networks(&self.server.trusted_proxies).unwrap_or_default()
    }

    /// `outbound.allowed_networks`, parsed (validated at load).
    pub fn outbound_allowed(&self) -> Vec<ipnet::IpNet> {
        parse_networks(&self.outbound.allowed_networks).unwrap_or_default()
    }

    pub fn http_workers(&self) -> usize {
        if self.server.workers == 0 {
            cores()
        } else {
            self.server.workers
        }
    }

    pub fn actor_shards(&self) -> usize {
        if self.actors.shards == 0 {
            cores()
        } else {
            self.actors.shards
        }
    }

    pub fn wal_settings(&self) -> WalSettings {
        WalSettings {
            sync: self.wal.sync,
            commit_window_us: self.wal.commit_window_us,
            batch_records_max: self.wal.batch_records_max,
            batch_bytes_max: self.wal.batch_bytes_max,
            channel_capacity: self.wal.channel_capacity,
            feed: None,
        }
    }

    /// The notifier's settings, from `[notifications]`.
    pub fn notify_settings(&self) -> crate::events::notify::NotifySettings {
        let n = &self.notifications;
        crate::events::notify::NotifySettings {
            smtp_host: n.smtp_host.clone(),
            smtp_port: n.smtp_port,
            from: n.from.clone(),
            signing_secret: n.signing_secret.expose().to_owned(),
            max_attempts: n.max_attempts,
            backoff_ms: n.backoff_ms,
            queue_max: n.queue_max,
            delivery_timeout: std::time::Duration::from_secs(n.delivery_timeout_s),
            dead_letters_max: n.dead_letters_max,
            idle_wait: std::time::Duration::from_secs(n.idle_wait_s),
        }
    }

    /// The sandbox gateway's behaviour, from `[payments]`.
    pub fn sandbox_settings(&self) -> crate::payments::SandboxSettings {
        let p = &self.payments;
        crate::payments::SandboxSettings {
            latency_ms: p.sandbox_latency_ms,
            failure_rate: p.sandbox_failure_rate,
            async_delay_ms: p.sandbox_async_delay_ms,
            webhook_delay_min_ms: p.sandbox_webhook_delay_min_ms,
            webhook_delay_max_ms: p.sandbox_webhook_delay_max_ms,
            webhook_duplicate_rate: p.sandbox_webhook_duplicate_rate,
            webhook_attempts: p.sandbox_webhook_attempts_max,
            webhook_timeout: std::time::Duration::from_millis(p.sandbox_webhook_timeout_ms),
        }
    }

    /// The HS256 secret: `auth.jwt_secret`, else the file `auth.jwt_secret_file`;
    /// `None` when neither is set in dev mode (the caller makes a random one).
    pub fn jwt_secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        let a = &self.auth;
        let (key, secret) = if !a.jwt_secret.is_empty() {
            ("auth.jwt_secret", a.jwt_secret.as_bytes().to_vec())
        } else if !a.jwt_secret_file.as_os_str().is_empty() {
            let raw = std::fs::read(&a.jwt_secret_file).map_err(|e| {
                invalid(
                    "auth.jwt_secret_file",
                    format!("{}: {e}", a.jwt_secret_file.display()),
                )
            })?;
            let trimmed = String::from_utf8_lossy(&raw).trim().as_bytes().to_vec();
            ("auth.jwt_secret_file", trimmed)
        } else if a.dev_mode || self.offline {
            return Ok(None);
        } else {
            return Err(invalid(
                "auth.jwt_secret",
                format!(
                    "is not set: give a secret of at least {JWT_SECRET_MIN_BYTES} bytes \
                     (auth.jwt_secret, auth.jwt_secret_file or FLASHDROP__AUTH__JWT_SECRET), \
                     or run with --dev for a throw-away one"
                ),
            ));
        };
        if secret.len() < JWT_SECRET_MIN_BYTES && !a.dev_mode {
            return Err(invalid(
                key,
                format!(
                    "is {} bytes; at least {JWT_SECRET_MIN_BYTES} are required outside dev mode",
                    secret.len()
                ),
            ));
        }
        Ok(Some(secret))
    }

    pub fn hash_concurrency(&self) -> usize {
        match self.auth.hash_concurrency {
            0 => cores(),
            n => n,
        }
    }

    pub fn ledger_limits(&self) -> LedgerLimits {
        let r = &self.reservations;
        LedgerLimits {
            idempotency_keys_max: r.idempotency_keys_max_per_sku,
            idempotency_ttl_ms: r.idempotency_ttl_s * 1000,
            finished_max: r.finished_max_per_sku,
            finished_ttl_ms: r.finished_retention_s * 1000,
            open_reservations_max: r.open_max_per_sku,
            warehouses_max: self.stock.warehouses_max,
            units_max: self.stock.units_max,
        }
    }
}

/// A secret set explicitly (empty: derived): long enough, and not a value
/// anyone can read in flashdrop's history. The value itself is never echoed.
fn check_secret(key: &str, secret: &Secret) -> Result<(), ConfigError> {
    if secret.is_empty() {
        return Ok(());
    }
    if PUBLISHED_SECRETS.contains(&secret.expose()) {
        return Err(invalid(
            key,
            "is a value published in flashdrop's sources (an old default); set a secret of \
             your own, or leave it empty to derive it from auth.jwt_secret",
        ));
    }
    if secret.len() < SECRET_MIN_BYTES || secret.len() > 1024 {
        return Err(invalid(
            key,
            format!(
                "is {} bytes; give {SECRET_MIN_BYTES}..=1024, or leave it empty to derive it from auth.jwt_secret",
                secret.len()
            ),
        ));
    }
    Ok(())
}

/// CIDR networks; a bare address is a network of one.
fn parse_networks(raw: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    raw.iter()
        .map(|text| {
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{text:?} is not an address or a CIDR network"))
        })
        .collect()
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `contents` as the config file inside a figment jail, which
    /// serialises tests that read the process environment.
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the closure's error type
    fn load_with(
        contents: &str,
        env: &[(&str, &str)],
        overrides: Overrides,
    ) -> Result<Config, ConfigError> {
        let mut result = None;
        figment::Jail::expect_with(|jail| {
            jail.create_file("flashdrop.toml", contents)?;
            jail.set_env(
                "FLASHDROP__AUTH__JWT_SECRET",
                "a-test-secret-of-at-least-32-bytes!",
            );
            for (key, value) in env {
                jail.set_env(key, value);
            }
            result = Some(Config::load(Some(Path::new("flashdrop.toml")), &overrides));
            Ok(())
        });
        result.unwrap()
    }

    #[test]
    fn the_shipped_config_toml_holds_exactly_the_embedded_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed, Config::default());
        // Every knob is written out (not left to serde defaults).
        let written: toml::Value = toml::from_str(&text).unwrap();
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        for (section, table) in defaults.as_table().unwrap() {
            for key in table.as_table().unwrap().keys() {
                assert!(
                    written.get(section).and_then(|s| s.get(key)).is_some(),
                    "config.toml does not document {section}.{key}"
                );
            }
        }
    }

    #[test]
    fn a_wrong_type_names_its_key() {
        let err =
            load_with("[server]\nport = \"eighty\"\n", &[], Overrides::default()).unwrap_err();
        assert_eq!(err.key, "server.port", "{err}");
    }

    #[test]
    fn an_out_of_range_value_names_its_key_and_the_range() {
        let err = load_with(
            "[wal]\nbatch_bytes_max = 10000000\n",
            &[],
            Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.key, "wal.batch_bytes_max");
        assert!(err.reason.contains("outside"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = load_with("[wal]\nsynk = \"none\"\n", &[], Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("synk"), "{err}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let overrides = Overrides {
            port: Some(9100),
            data_dir: Some("/tmp/x".into()),
            dev: false,
            offline: false,
        };
        let config = load_with(
            "[server]\nport = 9000\n[wal]\nsync = \"none\"\n",
            &[("FLASHDROP__SERVER__PORT", "9050")],
            overrides,
        )
        .unwrap();
        assert_eq!(config.server.port, 9100);
        assert_eq!(config.wal.sync, SyncMode::None);
        assert_eq!(config.storage.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn the_environment_wins_over_the_file_and_bad_values_name_the_variable() {
        let config = load_with(
            "[wal]\nsync = \"none\"\n",
            &[
                ("FLASHDROP__WAL__SYNC", "flush"),
                ("FLASHDROP__ACTORS__SHARDS", "3"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.wal.sync, SyncMode::Flush);
        assert_eq!(config.actors.shards, 3);
        let err = load_with(
            "",
            &[("FLASHDROP__WAL__SYNC", "sometimes")],
            Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.key, "wal.sync");
        assert!(err.reason.contains("FLASHDROP__WAL__SYNC"), "{err}");
    }

    #[test]
    fn a_missing_or_short_secret_refuses_to_start_outside_dev_mode() {
        let missing = load_with(
            "",
            &[("FLASHDROP__AUTH__JWT_SECRET", "")],
            Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(missing.key, "auth.jwt_secret");
        assert!(missing.reason.contains("--dev"), "{}", missing.reason);
        let short = load_with(
            "",
            &[("FLASHDROP__AUTH__JWT_SECRET", "too-short")],
            Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(short.key, "auth.jwt_secret");
        assert!(short.reason.contains("9 bytes"), "{}", short.reason);
        let dev = Overrides {
            dev: true,
            ..Overrides::default()
        };
        let config = load_with("", &[("FLASHDROP__AUTH__JWT_SECRET", "")], dev).unwrap();
        assert!(config.auth.dev_mode);
        assert_eq!(config.jwt_secret().unwrap(), None, "dev mode makes its own");
    }

    #[test]
    fn the_secret_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "a-file-secret-that-is-long-enough-for-hs256\n").unwrap();
        let toml = format!(
            "[auth]\njwt_secret_file = {:?}\n",
            path.display().to_string()
        );
        let config = load_with(
            &toml,
            &[("FLASHDROP__AUTH__JWT_SECRET", "")],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            config.jwt_secret().unwrap().unwrap(),
            b"a-file-secret-that-is-long-enough-for-hs256".to_vec()
        );
        let toml = "[auth]\njwt_secret_file = \"/nonexistent/secret\"\n";
        let error = load_with(
            toml,
            &[("FLASHDROP__AUTH__JWT_SECRET", "")],
            Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(error.key, "auth.jwt_secret_file");
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    fn with_main(secret: &str) -> Config {
        let mut config = Config::default();
        config.auth.jwt_secret = secret.into();
        config
    }

    #[test]
    fn derived_keys_are_hkdf_of_the_main_secret_one_per_purpose_and_stable() {
        let mut config = with_main("a-main-secret-of-at-least-32-bytes!!");
        config.resolve_secrets().unwrap();
        let payments = config.payments.webhook_secret.clone();
        let notify = config.notifications.signing_secret.clone();
        assert_eq!(payments.len(), 64);
        assert_ne!(payments, notify, "one key per purpose");
        assert_eq!(
            payments.expose(),
            derive_secret(
                b"a-main-secret-of-at-least-32-bytes!!",
                "payments.webhook_secret"
            )
        );
        config.resolve_secrets().unwrap();
        assert_eq!(config.payments.webhook_secret, payments, "idempotent");
        let mut other = with_main("another-main-secret-of-32-bytes-or-more");
        other.resolve_secrets().unwrap();
        assert_ne!(other.payments.webhook_secret, payments);
    }

    #[test]
    fn a_secret_set_explicitly_is_kept_and_published_or_short_ones_are_refused() {
        let mut config = with_main("a-main-secret-of-at-least-32-bytes!!");
        config.payments.webhook_secret = "whsec_from_the_real_provider_123".into();
        config.resolve_secrets().unwrap();
        assert_eq!(
            config.payments.webhook_secret.expose(),
            "whsec_from_the_real_provider_123"
        );
        for published in PUBLISHED_SECRETS {
            let mut bad = with_main("a-main-secret-of-at-least-32-bytes!!");
            bad.notifications.signing_secret = (*published).into();
            let error = bad.validate().unwrap_err();
            assert_eq!(error.key, "notifications.signing_secret");
            assert!(!error.to_string().contains(published));
        }
        let mut short = with_main("a-main-secret-of-at-least-32-bytes!!");
        short.payments.webhook_secret = "short".into();
        assert!(!short
            .validate()
            .unwrap_err()
            .to_string()
            .contains("short\""));
    }

    #[test]
    fn a_sweep_batch_must_fit_in_the_wal_queues_headroom() {
        let mut config = with_main("a-main-secret-of-at-least-32-bytes!!");
        config.wal.channel_capacity = 1_000;
        config.retention.sweep_batch_max = 100;
        config.validate().unwrap();
        config.retention.sweep_batch_max = 101;
        assert_eq!(
            config.validate().unwrap_err().key,
            "retention.sweep_batch_max"
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let mut config = with_main("a-main-secret-of-at-least-32-bytes!!");
        config.resolve_secrets().unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("a-main-secret"), "{printed}");
        assert!(!printed.contains(config.payments.webhook_secret.expose()));
        assert!(printed.contains("Secret(redacted)"));
    }

    #[test]
    fn a_secret_of_digits_is_read_as_text() {
        let secret: Secret = toml::from_str::<toml::Value>("s = 12345")
            .unwrap()
            .get("s")
            .cloned()
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(secret.expose(), "12345");
    }
}
