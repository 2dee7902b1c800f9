//! `[auth]` and `[tenants]`: tokens, passwords, logins and stores.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Secret;
use super::{invalid, range, ConfigError};

/// The shortest HS256 secret accepted outside dev mode.
pub const JWT_SECRET_MIN_BYTES: usize = 32;

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

impl AuthConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let au = self;
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
        Ok(())
    }
}

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

impl TenantConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let t = self;
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
        Ok(())
    }
}
