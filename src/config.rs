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
    pub log: LogConfig,
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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// sled page cache.
    pub cache_capacity_mb: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("flashdrop-data"),
            cache_capacity_mb: 128,
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
    pub max_ttl_s: u64,
    pub max_quantity: u32,
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
            max_ttl_s: 86_400,
            max_quantity: 1_000,
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
        config.validate()?;
        Ok(config)
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
        range(
            "storage.cache_capacity_mb",
            self.storage.cache_capacity_mb,
            8,
            1 << 20,
        )?;
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
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid("log.level", "not a valid tracing filter"));
        }
        Ok(())
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
}
