//! `[ws]`, `[notifications]` and `[outbound]`: live stock, notifications, and where outbound requests may go.

use serde::{Deserialize, Serialize};

use super::{check_secret, parse_networks, Secret};
use super::{invalid, range, ConfigError};

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

impl WsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let ws = self;
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
        Ok(())
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

impl NotificationsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let n = self;
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
        Ok(())
    }
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

impl OutboundConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        range(
            "outbound.allowed_networks",
            self.allowed_networks.len(),
            0,
            1_000,
        )?;
        parse_networks(&self.allowed_networks)
            .map_err(|e| invalid("outbound.allowed_networks", e))?;
        Ok(())
    }
}
