//! Accounts, roles, tenants (stores), refresh-token sessions, staff invitations
//! and follows: the validated values and the `Directory` state they live in.
//!
//! Every change is a full new state of one entity (`Entity`); `Directory::apply`
//! is the only mutation, used live and by recovery alike. Crypto stays outside:
//! callers pass in hashes and whether a presented secret was genuine.

use std::collections::{HashMap, HashSet};

use super::pricing::ShippingMethod;
use super::{InvalidField, TenantId, UserId};

/// A 128-bit id (UUIDv7 when minted), shown as a hyphenated UUID.
pub fn id_text(id: impl Into<u128>) -> String {
    // Straight into a buffer: `to_string` would go through `fmt`'s machinery.
    let mut buffer = uuid::Uuid::encode_buffer();
    uuid::Uuid::from_u128(id.into())
        .hyphenated()
        .encode_lower(&mut buffer)
        .to_owned()
}

/// An id as the API writes it: a hyphenated UUID (`format: uuid`).
pub fn parse_id(raw: &str) -> Option<u128> {
    if raw.len() != 36 {
        return None;
    }
    uuid::Uuid::try_parse(raw).ok().map(|u| u.as_u128())
}

/// A normalised (trimmed, lower-cased) e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    /// Exactly what `/openapi.json` says (`EMAIL_PATTERN`): no surrounding
    /// spaces are trimmed away, so what a client sends is what is checked.
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let value = raw.to_ascii_lowercase();
        let bad = |reason: &str| InvalidField::new("email", reason);
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(bad("must be 3..=254 characters"));
        }
        if !value.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(bad("must be printable ASCII without spaces"));
        }
        let Some((local, domain)) = value.split_once('@') else {
            return Err(bad("must look like name@example.com"));
        };
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(bad("must look like name@example.com"));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a password must satisfy before it is hashed.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    pub min_chars: usize,
    pub max_chars: usize,
}

/// Passwords every cracking list starts with; refused whatever their length.
const COMMON_PASSWORDS: &[&str] = &[
    "123456789012",
    "password1234",
    "passwordpassword",
    "qwertyuiopas",
    "iloveyou1234",
    "letmeinletmein",
    "111111111111",
    "000000000000",
    "abcdefghijkl",
    "correcthorsebatterystaple",
];

impl PasswordPolicy {
    pub fn check(&self, password: &str, email: &Email) -> Result<(), InvalidField> {
        let bad = |reason: String| InvalidField::new("password", reason);
        let chars = password.chars().count();
        if chars < self.min_chars || chars > self.max_chars {
            return Err(bad(format!(
                "must be {}..={} characters",
                self.min_chars, self.max_chars
            )));
        }
        if password.chars().any(char::is_control) {
            return Err(bad("must not contain control characters".into()));
        }
        let distinct: HashSet<char> = password.chars().collect();
        if distinct.len() < 5 {
            return Err(bad("must use at least 5 different characters".into()));
        }
        let lower = password.to_lowercase();
        if COMMON_PASSWORDS.contains(&lower.as_str()) {
            return Err(bad("is on the list of common passwords".into()));
        }
        if contains_the_address(&lower, email) {
            return Err(bad(
                "must not contain your e-mail address or its name part".into()
            ));
        }
        Ok(())
    }
}

/// Letters and digits of a name part this long or longer are something a
/// guesser tries first; shorter ones (`ana`, `bo`) are common inside words.
const NAME_PART_MIN_CHARS: usize = 5;

/// Whether `password` (lower case) holds the whole address, or the whole name
/// part before the `@` when it is meaningful (separators ignored: `j.smith`
/// and `jsmith` are the same name). A short name part inside a longer word is
/// not the address.
fn contains_the_address(password: &str, email: &Email) -> bool {
    let compact = |text: &str| -> String {
        text.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    if password.contains(email.as_str()) {
        return true;
    }
    let name = compact(email.as_str().split('@').next().unwrap_or_default());
    name.chars().count() >= NAME_PART_MIN_CHARS && compact(password).contains(&name)
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Buyer,
    SellerAdmin,
    SellerStaff,
    PlatformAdmin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Buyer => "buyer",
            Role::SellerAdmin => "seller_admin",
            Role::SellerStaff => "seller_staff",
            Role::PlatformAdmin => "platform_admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Role::Buyer,
            Role::SellerAdmin,
            Role::SellerStaff,
            Role::PlatformAdmin,
        ]
        .into_iter()
        .find(|r| r.as_str() == raw)
    }

    pub fn is_seller(self) -> bool {
        matches!(self, Role::SellerAdmin | Role::SellerStaff)
    }
}

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    /// PHC string (argon2id); never leaves the process.
    pub password_hash: String,
    pub role: Role,
    pub tenant: Option<TenantId>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum TenantStatus {
    Active,
    Suspended,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(TenantStatus::Active),
            "suspended" => Some(TenantStatus::Suspended),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Branding {
    pub logo_url: Option<String>,
    pub primary_color: Option<String>,
    pub accent_color: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TaxSettings {
    pub prices_include_tax: bool,
    /// Default rate in basis points (2000 = 20%).
    pub default_rate_bp: u32,
    pub tax_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ShippingSettings {
    /// ISO 3166-1 alpha-2.
    pub origin_country: Option<String>,
    pub ships_to: Vec<String>,
    pub handling_days: u32,
    /// Orders at or above this amount (minor units) ship free, with any
    /// method that names no threshold of its own.
    pub free_shipping_over_minor: Option<u64>,
    /// The ways it ships, the first being the default (format 5 on; older
    /// stores have none and ship free).
    pub methods: Vec<ShippingMethod>,
}

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Plan {
    pub name: String,
    pub requests_per_minute: u32,
    pub max_products: u32,
}

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub branding: Branding,
    pub tax: TaxSettings,
    pub shipping: ShippingSettings,
    pub status: TenantStatus,
    pub plan: Plan,
    /// Where order notifications for this store are POSTed (empty: none).
    pub webhook_url: String,
    pub created_by: UserId,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// Everything a tenant update may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub branding: Option<Branding>,
    pub tax: Option<TaxSettings>,
    pub shipping: Option<ShippingSettings>,
    pub status: Option<TenantStatus>,
    pub plan: Option<Plan>,
    /// "" removes it.
    pub webhook_url: Option<String>,
}

/// A store's webhook address: http(s) and printable ASCII without spaces, at
/// most 500 characters, or empty (none).
pub fn check_webhook_url(raw: &str) -> Result<(), InvalidField> {
    let url = raw;
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let shape_ok = rest
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    if !url.is_empty() && (!shape_ok || url.len() > 500) {
        return Err(InvalidField::new(
            "webhook_url",
            "must be an http(s) URL of at most 500 characters, or empty",
        ));
    }
    Ok(())
}

/// A store's name: 1..=100 characters (as sent) with something visible and no
/// control characters; kept without surrounding spaces.
pub fn check_store_name(raw: &str) -> Result<String, InvalidField> {
    let chars = raw.chars().count();
    let name = raw.trim();
    if chars == 0 || chars > 100 || name.is_empty() || raw.chars().any(char::is_control) {
        return Err(InvalidField::new(
            "name",
            "must be 1..=100 characters with something visible and no control characters",
        ));
    }
    Ok(name.to_owned())
}

fn check_color(field: &'static str, raw: &str) -> Result<(), InvalidField> {
    let ok =
        raw.len() == 7 && raw.starts_with('#') && raw[1..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        Err(InvalidField::new(field, "must be a colour like #1a2b3c"))
    }
}

fn check_country(field: &'static str, raw: &str) -> Result<(), InvalidField> {
    if raw.len() == 2 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(InvalidField::new(
            field,
            "must be an ISO 3166-1 alpha-2 code like DE",
        ))
    }
}

impl Branding {
    pub fn check(&self) -> Result<(), InvalidField> {
        if let Some(url) = &self.logo_url {
            let ok = url.starts_with("https://")
                && url.len() > "https://".len()
                && url.len() <= 2048
                && url.bytes().all(|b| (0x21..=0x7e).contains(&b));
            if !ok {
                return Err(InvalidField::new(
                    "branding.logo_url",
                    "must be an https:// URL of at most 2048 characters",
                ));
            }
        }
        if let Some(c) = &self.primary_color {
            check_color("branding.primary_color", c)?;
        }
        if let Some(c) = &self.accent_color {
            check_color("branding.accent_color", c)?;
        }
        Ok(())
    }
}

impl TaxSettings {
    pub fn check(&self) -> Result<(), InvalidField> {
        if self.default_rate_bp > 10_000 {
            return Err(InvalidField::new(
                "tax.default_rate_bp",
                "must be 0..=10000 (basis points)",
            ));
        }
        if let Some(id) = &self.tax_id {
            if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
                return Err(InvalidField::new(
                    "tax.tax_id",
                    "must be 1..=64 printable characters",
                ));
            }
        }
        Ok(())
    }
}

impl ShippingSettings {
    pub const MAX_HANDLING_DAYS: u32 = 60;

    pub fn check(&self) -> Result<(), InvalidField> {
        if let Some(c) = &self.origin_country {
            check_country("shipping.origin_country", c)?;
        }
        if self.ships_to.len() > 250 {
            return Err(InvalidField::new(
                "shipping.ships_to",
                "may list at most 250 countries",
            ));
        }
        let mut seen = HashSet::new();
        for c in &self.ships_to {
            check_country("shipping.ships_to", c)?;
            if !seen.insert(c) {
                return Err(InvalidField::new(
                    "shipping.ships_to",
                    format!("lists {c} twice"),
                ));
            }
        }
        if self
            .free_shipping_over_minor
            .is_some_and(|amount| amount > 1_000_000_000_000)
        {
            return Err(InvalidField::new(
                "shipping.free_shipping_over_minor",
                "must be 0..=1000000000000 minor units",
            ));
        }
        if self.handling_days > Self::MAX_HANDLING_DAYS {
            return Err(InvalidField::new(
                "shipping.handling_days",
                "must be 0..=60",
            ));
        }
        if let Err(mut errors) = super::pricing::check_methods(&self.methods) {
            return Err(errors.swap_remove(0));
        }
        Ok(())
    }
}

impl Plan {
    pub fn check(&self) -> Result<(), InvalidField> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(InvalidField::new(
                "plan.name",
                "must be 1..=32 letters, digits, _ or -",
            ));
        }
        if !(1..=1_000_000).contains(&self.requests_per_minute) {
            return Err(InvalidField::new(
                "plan.requests_per_minute",
                "must be 1..=1000000",
            ));
        }
        if !(1..=10_000_000).contains(&self.max_products) {
            return Err(InvalidField::new(
                "plan.max_products",
                "must be 1..=10000000",
            ));
        }
        Ok(())
    }
}

impl TenantPatch {
    pub fn check(&self) -> Result<(), InvalidField> {
        if let Some(name) = &self.name {
            check_store_name(name)?;
        }
        if let Some(b) = &self.branding {
            b.check()?;
        }
        if let Some(t) = &self.tax {
            t.check()?;
        }
        if let Some(s) = &self.shipping {
            s.check()?;
        }
        if let Some(p) = &self.plan {
            p.check()?;
        }
        if let Some(url) = &self.webhook_url {
            check_webhook_url(url)?;
        }
        Ok(())
    }

    /// Status and plan are the platform's to set, not the seller's.
    pub fn touches_platform_fields(&self) -> bool {
        self.status.is_some() || self.plan.is_some()
    }

    pub fn applied_to(&self, tenant: &Tenant, now_ms: u64) -> Tenant {
        let mut next = tenant.clone();
        if let Some(name) = &self.name {
            next.name = name.trim().to_owned();
        }
        if let Some(url) = &self.webhook_url {
            next.webhook_url = url.trim().to_owned();
        }
        if let Some(b) = &self.branding {
            next.branding = b.clone();
        }
        if let Some(t) = &self.tax {
            next.tax = t.clone();
        }
        if let Some(s) = &self.shipping {
            next.shipping = s.clone();
        }
        if let Some(s) = self.status {
            next.status = s;
        }
        if let Some(p) = &self.plan {
            next.plan = p.clone();
        }
        next.updated_at_ms = now_ms;
        next
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum RevokeReason {
    Logout,
    /// An already-rotated refresh token came back: the family is stolen.
    Reuse,
    /// The account lost its role or tenant.
    AccessChanged,
}

/// A refresh-token family. Token `g` of the family is genuine iff its secret
/// is the keyed hash of (id, salt, g); only the current generation rotates.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Session {
    pub id: u128,
    pub user: UserId,
    pub salt: [u8; 16],
    pub generation: u32,
    pub created_at_ms: u64,
    pub rotated_at_ms: u64,
    pub expires_at_ms: u64,
    pub revoked: Option<(RevokeReason, u64)>,
}

/// What presenting refresh token `generation` of a session means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshDecision {
    /// Current and genuine: issue generation + 1.
    Rotate,
    /// Genuine but already rotated: revoke the whole family.
    Reuse,
    /// Forged, expired or revoked: refuse and change nothing.
    Refuse,
}

impl Session {
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.revoked.is_none() && now_ms < self.expires_at_ms
    }

    pub fn decide(&self, generation: u32, genuine: bool, now_ms: u64) -> RefreshDecision {
        if !genuine || !self.is_live(now_ms) {
            return RefreshDecision::Refuse;
        }
        match generation.cmp(&self.generation) {
            std::cmp::Ordering::Equal => RefreshDecision::Rotate,
            std::cmp::Ordering::Less => RefreshDecision::Reuse,
            std::cmp::Ordering::Greater => RefreshDecision::Refuse,
        }
    }

    pub fn rotated(&self, now_ms: u64) -> Session {
        Session {
            generation: self.generation + 1,
            rotated_at_ms: now_ms,
            ..self.clone()
        }
    }

    pub fn revoked(&self, reason: RevokeReason, now_ms: u64) -> Session {
        Session {
            revoked: Some((reason, now_ms)),
            ..self.clone()
        }
    }
}

/// A seller admin's invitation for someone to join the store with a role.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Invitation {
    pub id: u128,
    pub tenant: TenantId,
    pub email: String,
    pub role: Role,
    pub salt: [u8; 16],
    pub invited_by: UserId,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub accepted_by: Option<UserId>,
}

/// `follower` follows the creator (store) `creator`; `active = false` is an
/// unfollow. One id per (creator, follower) pair, kept across unfollows.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Follow {
    pub id: u128,
    pub creator: TenantId,
    pub follower: UserId,
    pub active: bool,
    pub at_ms: u64,
}

/// Who did something: the account and the role it acted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Actor {
    pub user: UserId,
    pub role: Role,
    pub tenant: Option<TenantId>,
}

/// One line of the audit log: who, when, what, before and after.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at_ms: u64,
    /// `None` for an anonymous request (registration, a failed login).
    pub actor: Option<Actor>,
    /// The tenant whose data changed, if any: seller admins see these.
    pub tenant: Option<TenantId>,
    /// `product.create`, `stock.set`, `tenant.update`, ...
    pub action: String,
    /// `product:ID`, `sku:CODE`, `user:ID`, ...
    pub target: String,
    /// Compact JSON summaries; secrets never appear here.
    pub before: Option<String>,
    pub after: Option<String>,
    pub correlation_id: Option<String>,
}

/// One entity's new full state.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Entity {
    User(User),
    /// A store as formats 0..=4 wrote it (never written now).
    TenantV1(legacy::TenantV1),
    Session(Session),
    Invitation(Invitation),
    Follow(Follow),
    Audit(AuditEntry),
    /// A store with its shipping methods (format 5 on); boxed, so the
    /// archived enum keeps its size and older snapshots keep their layout.
    Tenant(Box<Tenant>),
}

impl Entity {
    /// The entity in this build's types (a store of an older format gets
    /// the fields added since, empty).
    pub fn current(self) -> Entity {
        match self {
            Entity::TenantV1(old) => Entity::Tenant(Box::new(old.into())),
            other => other,
        }
    }
}

/// Stores as formats 0..=4 wrote them, before shipping methods.
pub mod legacy {
    use super::{Branding, Plan, ShippingSettings, TaxSettings, Tenant, TenantStatus};
    use crate::domain::{TenantId, UserId};

    #[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub struct ShippingSettingsV1 {
        pub origin_country: Option<String>,
        pub ships_to: Vec<String>,
        pub handling_days: u32,
        pub free_shipping_over_minor: Option<u64>,
    }

    #[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub struct TenantV1 {
        pub id: TenantId,
        pub name: String,
        pub branding: Branding,
        pub tax: TaxSettings,
        pub shipping: ShippingSettingsV1,
        pub status: TenantStatus,
        pub plan: Plan,
        pub webhook_url: String,
        pub created_by: UserId,
        pub created_at_ms: u64,
        pub updated_at_ms: u64,
    }

    impl From<TenantV1> for Tenant {
        fn from(old: TenantV1) -> Self {
            let s = old.shipping;
            Tenant {
                id: old.id,
                name: old.name,
                branding: old.branding,
                tax: old.tax,
                shipping: ShippingSettings {
                    origin_country: s.origin_country,
                    ships_to: s.ships_to,
                    handling_days: s.handling_days,
                    free_shipping_over_minor: s.free_shipping_over_minor,
                    methods: Vec::new(),
                },
                status: old.status,
                plan: old.plan,
                webhook_url: old.webhook_url,
                created_by: old.created_by,
                created_at_ms: old.created_at_ms,
                updated_at_ms: old.updated_at_ms,
            }
        }
    }
}

/// Every account, store, session, invitation and follow, in memory. The audit
/// log is not held here: it lives in the store and is read by page.
#[derive(Debug, Default)]
pub struct Directory {
    users: HashMap<UserId, User>,
    by_email: HashMap<String, UserId>,
    tenants: HashMap<TenantId, Tenant>,
    staff: HashMap<TenantId, HashSet<UserId>>,
    sessions: HashMap<u128, Session>,
    invitations: HashMap<u128, Invitation>,
    followers: HashMap<TenantId, HashSet<UserId>>,
    following: HashMap<UserId, HashSet<TenantId>>,
    /// (creator, follower) -> the id of their `Follow`.
    follow_ids: HashMap<(TenantId, UserId), u128>,
    /// (creator, follower) -> when they unfollowed: tombstones kept for
    /// `Retention::unfollows_ms`, then purged.
    unfollowed_at: HashMap<(TenantId, UserId), u64>,
}

/// How long ended things stay before they are purged (each a knob in `[retention]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// After a session expired or was revoked.
    pub sessions_ms: u64,
    /// After an invitation expired, whether it was used or not.
    pub invitations_ms: u64,
    /// After an unfollow.
    pub unfollows_ms: u64,
}

/// Entities of each purgeable kind held in memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resident {
    pub sessions: usize,
    pub invitations: usize,
    pub unfollows: usize,
}

impl Directory {
    /// The only way state changes.
    pub fn apply(&mut self, entity: &Entity) {
        match entity {
            Entity::User(user) => {
                if let Some(old) = self.users.get(&user.id) {
                    if let Some(t) = old.tenant {
                        if let Some(set) = self.staff.get_mut(&t) {
                            set.remove(&user.id);
                        }
                    }
                    self.by_email.remove(&old.email);
                }
                if let Some(t) = user.tenant {
                    self.staff.entry(t).or_default().insert(user.id);
                }
                self.by_email.insert(user.email.clone(), user.id);
                self.users.insert(user.id, user.clone());
            }
            Entity::Tenant(tenant) => {
                self.tenants.insert(tenant.id, (**tenant).clone());
            }
            Entity::TenantV1(old) => {
                self.tenants.insert(old.id, old.clone().into());
            }
            Entity::Session(session) => {
                self.sessions.insert(session.id, session.clone());
            }
            Entity::Invitation(invitation) => {
                self.invitations.insert(invitation.id, invitation.clone());
            }
            Entity::Follow(follow) => {
                self.follow_ids
                    .insert((follow.creator, follow.follower), follow.id);
                if follow.active {
                    self.unfollowed_at
                        .remove(&(follow.creator, follow.follower));
                    self.followers
                        .entry(follow.creator)
                        .or_default()
                        .insert(follow.follower);
                    self.following
                        .entry(follow.follower)
                        .or_default()
                        .insert(follow.creator);
                } else {
                    self.unfollowed_at
                        .insert((follow.creator, follow.follower), follow.at_ms);
                    if let Some(set) = self.followers.get_mut(&follow.creator) {
                        set.remove(&follow.follower);
                    }
                    if let Some(set) = self.following.get_mut(&follow.follower) {
                        set.remove(&follow.creator);
                    }
                }
            }
            Entity::Audit(_) => {}
        }
    }

    pub fn user(&self, id: UserId) -> Option<&User> {
        self.users.get(&id)
    }

    pub fn user_by_email(&self, email: &Email) -> Option<&User> {
        self.by_email
            .get(email.as_str())
            .and_then(|id| self.users.get(id))
    }

    pub fn tenant(&self, id: TenantId) -> Option<&Tenant> {
        self.tenants.get(&id)
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.values()
    }

    pub fn session(&self, id: u128) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// Live sessions of an account.
    pub fn sessions_of(&self, user: UserId, now_ms: u64) -> Vec<&Session> {
        self.sessions
            .values()
            .filter(|s| s.user == user && s.is_live(now_ms))
            .collect()
    }

    /// Sessions revoked after `since_ms`: their access tokens may still be unexpired.
    pub fn revoked_since(&self, since_ms: u64) -> impl Iterator<Item = (u128, u64)> + '_ {
        self.sessions.values().filter_map(move |s| match s.revoked {
            Some((_, at)) if at >= since_ms => Some((s.id, at)),
            _ => None,
        })
    }

    pub fn invitation(&self, id: u128) -> Option<&Invitation> {
        self.invitations.get(&id)
    }

    /// Accounts attached to a tenant, sorted by id (creation order).
    pub fn staff_of(&self, tenant: TenantId) -> Vec<&User> {
        let mut staff: Vec<&User> = self
            .staff
            .get(&tenant)
            .into_iter()
            .flatten()
            .filter_map(|id| self.users.get(id))
            .collect();
        staff.sort_by_key(|u| u.id);
        staff
    }

    pub fn follower_count(&self, creator: TenantId) -> usize {
        self.followers.get(&creator).map_or(0, HashSet::len)
    }

    /// Followers of a creator, in id order, from `after` (exclusive), at most `limit`.
    pub fn followers(&self, creator: TenantId, after: Option<UserId>, limit: usize) -> Vec<UserId> {
        let mut ids: Vec<UserId> = self
            .followers
            .get(&creator)
            .into_iter()
            .flatten()
            .copied()
            .filter(|id| after.is_none_or(|a| *id > a))
            .collect();
        ids.sort_unstable();
        ids.truncate(limit);
        ids
    }

    pub fn follows(&self, follower: UserId, creator: TenantId) -> bool {
        self.following
            .get(&follower)
            .is_some_and(|set| set.contains(&creator))
    }

    /// The id of the (creator, follower) pair's `Follow`, if one was ever made.
    pub fn follow_id(&self, creator: TenantId, follower: UserId) -> Option<u128> {
        self.follow_ids.get(&(creator, follower)).copied()
    }

    pub fn following_count(&self, follower: UserId) -> usize {
        self.following.get(&follower).map_or(0, HashSet::len)
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn resident(&self) -> Resident {
        Resident {
            sessions: self.sessions.len(),
            invitations: self.invitations.len(),
            unfollows: self.unfollowed_at.len(),
        }
    }

    /// Ended sessions, invitations and unfollows past their retention at
    /// `now_ms`, at most `max` of them. Nothing live is ever returned: a
    /// session is ended once expired or revoked, an invitation once expired
    /// (a used one too), a follow once unfollowed.
    pub fn purgeable(&self, now_ms: u64, retention: &Retention, max: usize) -> Vec<Entity> {
        let past = |ended_at: u64, keep_ms: u64| ended_at.saturating_add(keep_ms) <= now_ms;
        let sessions = self.sessions.values().filter(|s| {
            let ended_at = s
                .revoked
                .map_or(s.expires_at_ms, |(_, at)| at.min(s.expires_at_ms));
            past(ended_at, retention.sessions_ms)
        });
        let invitations = self
            .invitations
            .values()
            .filter(|i| past(i.expires_at_ms, retention.invitations_ms));
        let unfollows = self
            .unfollowed_at
            .iter()
            .filter(|(_, at)| past(**at, retention.unfollows_ms))
            .filter_map(|(&(creator, follower), &at_ms)| {
                let id = self.follow_id(creator, follower)?;
                Some(Entity::Follow(Follow {
                    id,
                    creator,
                    follower,
                    active: false,
                    at_ms,
                }))
            });
        sessions
            .cloned()
            .map(Entity::Session)
            .chain(invitations.cloned().map(Entity::Invitation))
            .chain(unfollows)
            .take(max)
            .collect()
    }

    /// Forgets a purged session, invitation or unfollow. Accounts, stores and
    /// audit entries are never purged: this leaves them be.
    pub fn remove(&mut self, entity: &Entity) {
        match entity {
            Entity::Session(s) => {
                self.sessions.remove(&s.id);
            }
            Entity::Invitation(i) => {
                self.invitations.remove(&i.id);
            }
            Entity::Follow(f) => {
                let pair = (f.creator, f.follower);
                if self.follow_ids.get(&pair) == Some(&f.id) && !self.follows(f.follower, f.creator)
                {
                    self.follow_ids.remove(&pair);
                    self.unfollowed_at.remove(&pair);
                }
            }
            Entity::User(_) | Entity::Tenant(_) | Entity::TenantV1(_) | Entity::Audit(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PasswordPolicy {
        PasswordPolicy {
            min_chars: 12,
            max_chars: 128,
        }
    }

    #[test]
    fn only_ended_things_past_their_retention_are_purgeable_and_removed_whole() {
        let session = |id: u128, expires_at_ms: u64, revoked: Option<u64>| {
            Entity::Session(Session {
                id,
                user: UserId(7),
                salt: [0; 16],
                generation: 1,
                created_at_ms: 0,
                rotated_at_ms: 0,
                expires_at_ms,
                revoked: revoked.map(|at| (RevokeReason::Logout, at)),
            })
        };
        let invitation = |id: u128, expires_at_ms: u64, accepted_by: Option<u128>| {
            Entity::Invitation(Invitation {
                id,
                tenant: TenantId(3),
                email: format!("i{id}@test.example"),
                role: Role::SellerStaff,
                salt: [0; 16],
                invited_by: UserId(7),
                created_at_ms: 0,
                expires_at_ms,
                accepted_by: accepted_by.map(UserId),
            })
        };
        let follow = |id: u128, follower: u128, active: bool, at_ms: u64| {
            Entity::Follow(Follow {
                id,
                creator: TenantId(3),
                follower: UserId(follower),
                active,
                at_ms,
            })
        };
        let mut directory = Directory::default();
        for entity in [
            session(1, 1_000, None),        // expired at 1,000
            session(2, 9_000, Some(500)),   // revoked at 500
            session(3, 9_000, None),        // live
            session(4, 1_000, Some(2_000)), // expired first, at 1,000
            invitation(10, 1_000, Some(7)), // used, expired at 1,000
            invitation(11, 1_000, None),    // unused, expired at 1,000
            invitation(12, 9_000, Some(7)), // used, not yet expired
            follow(20, 8, true, 100),       // followed ...
            follow(20, 8, false, 600),      // ... and unfollowed at 600
            follow(21, 9, true, 100),       // still follows
        ] {
            directory.apply(&entity);
        }
        let retention = Retention {
            sessions_ms: 1_000,
            invitations_ms: 2_000,
            unfollows_ms: 3_000,
        };
        let ids = |directory: &Directory, now_ms: u64| {
            let mut ids: Vec<u128> = directory
                .purgeable(now_ms, &retention, 100)
                .iter()
                .map(|e| match e {
                    Entity::Session(s) => s.id,
                    Entity::Invitation(i) => i.id,
                    Entity::Follow(f) => f.id,
                    other => panic!("{other:?} is never purgeable"),
                })
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&directory, 1_499), Vec::<u128>::new());
        assert_eq!(ids(&directory, 1_500), vec![2]);
        assert_eq!(ids(&directory, 2_000), vec![1, 2, 4]);
        assert_eq!(ids(&directory, 3_000), vec![1, 2, 4, 10, 11]);
        assert_eq!(ids(&directory, 3_600), vec![1, 2, 4, 10, 11, 20]);
        assert_eq!(ids(&directory, u64::MAX), vec![1, 2, 3, 4, 10, 11, 12, 20]);
        assert_eq!(directory.purgeable(u64::MAX, &retention, 3).len(), 3);

        assert_eq!(
            directory.resident(),
            Resident {
                sessions: 4,
                invitations: 3,
                unfollows: 1
            }
        );
        for entity in directory.purgeable(3_600, &retention, 100) {
            directory.remove(&entity);
        }
        assert_eq!(
            directory.resident(),
            Resident {
                sessions: 1,
                invitations: 1,
                unfollows: 0
            }
        );
        assert!(directory.session(3).is_some() && directory.session(1).is_none());
        assert_eq!(
            directory.follow_id(TenantId(3), UserId(8)),
            None,
            "the unfollow is gone whole"
        );
        assert_eq!(directory.follow_id(TenantId(3), UserId(9)), Some(21));
        assert!(
            directory.follows(UserId(9), TenantId(3)),
            "a live follow is never touched"
        );
        // Re-following after the purge starts a fresh pair.
        directory.apply(&follow(22, 8, true, 4_000));
        assert!(directory.follows(UserId(8), TenantId(3)));
        assert_eq!(ids(&directory, u64::MAX), vec![3, 12]);
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("Ana@Example.COM").unwrap().as_str(),
            "ana@example.com"
        );
        for bad in [
            "",
            // Spaces are refused, not trimmed: the schema's pattern says so.
            "  ana@example.com ",
            "ana",
            "@example.com",
            "ana@",
            "ana@example",
            "a b@example.com",
            "ana@@example.com",
            "ana@.example.com",
            "ana@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn password_policy_refuses_short_repetitive_common_and_email_passwords() {
        let email = Email::parse("ana.lopez@example.com").unwrap();
        assert!(policy().check("tangerine-Orbit-42", &email).is_ok());
        for bad in [
            "short-1A",
            "aaaaaaaaaaaaaaaa",
            "abababababababab",
            "Password1234",
            "my-ana.lopez-secret",
            "tab\tinside-password",
        ] {
            assert!(policy().check(bad, &email).is_err(), "{bad:?} accepted");
        }
        assert!(policy().check(&"xy1-Z".repeat(26), &email).is_err());
    }

    #[test]
    fn the_address_rule_refuses_the_address_or_its_name_not_any_word_that_shares_letters() {
        let refused = |address: &str, password: &str| {
            policy()
                .check(password, &Email::parse(address).unwrap())
                .is_err()
        };
        // The whole address, or the whole name part (separators ignored).
        assert!(refused("bo@shop.example", "x-bo@shop.example-9"));
        assert!(refused("alexander@example.com", "Alexander-horse-7"));
        assert!(refused("j.smith@example.com", "JSmith-horse-77"));
        assert!(refused("ana.lopez@example.com", "my-analopez-secret"));
        // A short name part inside a word, or one token of a longer name, is fine.
        assert!(!refused("anna@example.com", "Savannah-horse-7"));
        assert!(!refused("tim@example.com", "optimistic-Horse-9"));
        assert!(!refused("john.smith@example.com", "smithereens-Horse-7"));
        assert!(!refused("sales@example.com", "example-Horse-Battery"));
    }

    #[test]
    fn tenant_settings_are_validated_field_by_field() {
        let branding = Branding {
            logo_url: Some("http://insecure.example/logo.png".into()),
            ..Branding::default()
        };
        assert_eq!(branding.check().unwrap_err().field, "branding.logo_url");
        let branding = Branding {
            primary_color: Some("#12345g".into()),
            ..Branding::default()
        };
        assert_eq!(
            branding.check().unwrap_err().field,
            "branding.primary_color"
        );
        let tax = TaxSettings {
            default_rate_bp: 10_001,
            ..TaxSettings::default()
        };
        assert!(tax.check().is_err());
        let shipping = ShippingSettings {
            ships_to: vec!["DE".into(), "DE".into()],
            ..ShippingSettings::default()
        };
        assert!(shipping.check().is_err());
        let shipping = ShippingSettings {
            origin_country: Some("de".into()),
            ..ShippingSettings::default()
        };
        assert!(shipping.check().is_err());
        let plan = Plan {
            name: "pro".into(),
            requests_per_minute: 0,
            max_products: 10,
        };
        assert!(plan.check().is_err());
        assert!(check_store_name("  ").is_err());
        assert_eq!(check_store_name(" Ana's Shop ").unwrap(), "Ana's Shop");
    }

    fn session() -> Session {
        Session {
            id: 7,
            user: UserId(1),
            salt: [0; 16],
            generation: 3,
            created_at_ms: 0,
            rotated_at_ms: 0,
            expires_at_ms: 1_000,
            revoked: None,
        }
    }

    #[test]
    fn refresh_rotates_the_current_generation_and_treats_an_older_one_as_theft() {
        let s = session();
        assert_eq!(s.decide(3, true, 10), RefreshDecision::Rotate);
        assert_eq!(s.decide(2, true, 10), RefreshDecision::Reuse);
        assert_eq!(s.decide(4, true, 10), RefreshDecision::Refuse);
        assert_eq!(s.decide(3, false, 10), RefreshDecision::Refuse);
        assert_eq!(s.decide(2, false, 10), RefreshDecision::Refuse);
        assert_eq!(s.decide(3, true, 1_000), RefreshDecision::Refuse);
        let revoked = s.revoked(RevokeReason::Logout, 5);
        assert_eq!(revoked.decide(3, true, 10), RefreshDecision::Refuse);
        assert_eq!(s.rotated(9).generation, 4);
    }

    #[test]
    fn directory_indexes_staff_and_follows_through_apply() {
        let mut dir = Directory::default();
        let user = User {
            id: UserId(1),
            email: "a@example.com".into(),
            password_hash: String::new(),
            role: Role::Buyer,
            tenant: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        };
        dir.apply(&Entity::User(user.clone()));
        dir.apply(&Entity::User(User {
            role: Role::SellerStaff,
            tenant: Some(TenantId(9)),
            ..user.clone()
        }));
        assert_eq!(dir.staff_of(TenantId(9)).len(), 1);
        dir.apply(&Entity::User(User {
            tenant: None,
            ..user
        }));
        assert!(dir.staff_of(TenantId(9)).is_empty());
        let follow = Follow {
            id: 3,
            creator: TenantId(9),
            follower: UserId(1),
            active: true,
            at_ms: 0,
        };
        dir.apply(&Entity::Follow(follow.clone()));
        dir.apply(&Entity::Follow(follow.clone()));
        assert_eq!(dir.follower_count(TenantId(9)), 1);
        assert!(dir.follows(UserId(1), TenantId(9)));
        dir.apply(&Entity::Follow(Follow {
            active: false,
            ..follow
        }));
        assert_eq!(dir.follower_count(TenantId(9)), 0);
        assert_eq!(dir.following_count(UserId(1)), 0);
        assert_eq!(dir.follow_id(TenantId(9), UserId(1)), Some(3));
    }
}
