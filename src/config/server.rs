//! `[server]`, `[admission]` and `[log]`: how flashdrop listens, admits and logs.

use serde::{Deserialize, Serialize};

use super::{invalid, parse_networks, range, ConfigError};

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

impl ServerConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let s = self;
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
        if s.send_buffer_bytes != 0 {
            range(
                "server.send_buffer_bytes",
                s.send_buffer_bytes,
                4096,
                64 << 20,
            )?;
        }
        Ok(())
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

impl AdmissionConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let ad = self;
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
        Ok(())
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

impl LogConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if tracing_subscriber::EnvFilter::try_new(&self.level).is_err() {
            return Err(invalid("log.level", "not a valid tracing filter"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}
