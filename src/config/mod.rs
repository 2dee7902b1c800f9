//! Configuration: embedded defaults < `config.toml` < `FLASHDROP__SECTION__KEY`
//! environment variables < command-line flags. Invalid values name their key.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::domain::stock::LedgerLimits;
use crate::persistence::WalSettings;

mod commerce;
mod events;
mod identity;
mod secret;
mod server;
mod stock;
mod storage;

pub use commerce::{CartConfig, CatalogConfig, OrdersConfig, PaymentsConfig};
pub use events::{NotificationsConfig, OutboundConfig, WsConfig};
pub use identity::{AuthConfig, TenantConfig, JWT_SECRET_MIN_BYTES};
use secret::PUBLISHED_SECRETS;
pub use secret::{derive_secret, Secret, SECRET_MIN_BYTES};
pub use server::{AdmissionConfig, LogConfig, LogFormat, ServerConfig};
pub use stock::{ActorConfig, DropsConfig, Placement, ReservationConfig, StockConfig};
pub use storage::{RetentionConfig, SnapshotConfig, StorageConfig, WalConfig};

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
    pub catalog: CatalogConfig,
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

impl From<&str> for Secret {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
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

/// A configuration value that cannot be used, with the key that holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

/// `value` within `min..=max`, or an error naming `key`.
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
        self.server.validate()?;
        self.outbound.validate()?;
        self.storage.validate()?;
        self.wal.validate()?;
        self.snapshots.validate()?;
        self.auth.validate()?;
        self.jwt_secret()?;
        self.tenants.validate()?;
        self.actors.validate()?;
        self.reservations.validate()?;
        self.stock.validate()?;
        self.drops.validate()?;
        self.retention.validate()?;
        let r = &self.retention;
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
        self.catalog.validate()?;
        self.cart.validate()?;
        self.orders.validate()?;
        self.payments.validate()?;
        self.notifications.validate()?;
        self.ws.validate()?;
        self.admission.validate()?;
        self.log.validate()?;
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
            pins: None,
            pinned_bytes_max: self.wal.subscriber_retain_max_mb << 20,
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

    /// Bounds a product edit is checked against.
    pub fn edit_limits(&self) -> crate::domain::product::EditLimits {
        crate::domain::product::EditLimits {
            low_stock_threshold_max: self.stock.units_max,
            default_low_stock_threshold: self.stock.low_stock_threshold,
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
    use crate::persistence::SyncMode;

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
