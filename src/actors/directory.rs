//! `DirectoryService`: accounts, sessions, stores, staff, follows and the audit
//! log. State is in memory behind one lock; every change is written to the WAL
//! (record, then a snapshot of the entity) and answered once durable.
//!
//! Not an actor: reads (token revocation, store status on the reserve path)
//! must not queue behind writes, and writes are rare. The lock is never held
//! across an await.

use crate::domain::policy;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use crate::auth::tokens::random_salt;
use crate::auth::{Caller, PasswordHasher, TokenKeys};
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::identity::{
    check_store_name, id_text, Actor, AuditEntry, Branding, Directory, Email, Entity, Follow,
    Invitation, PasswordPolicy, Plan, RefreshDecision, Resident, RevokeReason, Role, Session,
    ShippingSettings, TaxSettings, Tenant, TenantPatch, TenantStatus, User,
};
use crate::domain::limiter::{KeyedLimiter, Rate, Verdict};
use crate::domain::InvalidField;
use crate::persistence::{self, EntityKey, RecordBody, SnapshotBody, Store, WalHandle, WalRecord};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    #[error("the e-mail address or the password is wrong")]
    InvalidCredentials,
    #[error("the refresh token is not valid")]
    RefreshInvalid,
    #[error("this refresh token was already used; every session of its family is now revoked")]
    RefreshReused,
    #[error("the invitation is not valid")]
    InvitationInvalid,
    #[error("no such {0:?}")]
    NotFound(Missing),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("{0}")]
    LimitReached(String),
    #[error("too many attempts; retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64, remaining: u32 },
    #[error("the directory is overloaded; retry shortly")]
    Overloaded,
    #[error("the directory cannot serve this request now")]
    Unavailable,
}

/// What a `NotFound` could not find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The caller's own account (deleted since its token was issued).
    Account,
    Tenant,
    StaffMember,
    Creator,
}

/// An audit line before it has its sequence number and time.
#[derive(Debug, Clone)]
pub struct AuditDraft {
    pub actor: Option<Actor>,
    pub tenant: Option<u128>,
    pub action: &'static str,
    pub target: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub correlation_id: Option<String>,
}

impl AuditDraft {
    pub fn new(actor: Option<Actor>, action: &'static str, target: String) -> Self {
        Self {
            actor,
            tenant: actor.and_then(|a| a.tenant),
            action,
            target,
            before: None,
            after: None,
            correlation_id: None,
        }
    }

    pub fn tenant(mut self, tenant: Option<u128>) -> Self {
        self.tenant = tenant;
        self
    }

    pub fn before(mut self, summary: impl Into<Option<String>>) -> Self {
        self.before = summary.into();
        self
    }

    pub fn after(mut self, summary: impl Into<Option<String>>) -> Self {
        self.after = summary.into();
        self
    }

    pub fn correlation(mut self, id: Option<String>) -> Self {
        self.correlation_id = id;
        self
    }
}

/// Which audit lines a page holds.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub tenant: Option<u128>,
    pub actor: Option<u128>,
    /// `product` matches `product.create`; `product.create` matches itself.
    pub action: Option<String>,
    pub target: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
}

impl AuditFilter {
    fn matches(&self, entry: &AuditEntry) -> bool {
        self.tenant.is_none_or(|t| entry.tenant == Some(t))
            && self
                .actor
                .is_none_or(|a| entry.actor.is_some_and(|actor| actor.user == a))
            && self.action.as_deref().is_none_or(|a| {
                entry.action == a
                    || (entry.action.starts_with(a) && entry.action[a.len()..].starts_with('.'))
            })
            && self.target.as_deref().is_none_or(|t| entry.target == t)
            && self.since_ms.is_none_or(|s| entry.at_ms >= s)
            && self.until_ms.is_none_or(|u| entry.at_ms < u)
    }
}

/// Tokens handed to a client after login, refresh, onboarding or joining a store.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub access_expires_at_s: u64,
    pub refresh_token: String,
    pub refresh_expires_at_ms: u64,
    pub user: User,
}

/// New store settings from onboarding.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub name: String,
    pub branding: Branding,
    pub tax: TaxSettings,
    pub shipping: ShippingSettings,
}

pub struct DirectoryService {
    state: RwLock<Directory>,
    /// Serialises writers so WAL order is apply order.
    writer: Mutex<()>,
    wal: WalHandle,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    config: Arc<Config>,
    keys: Arc<TokenKeys>,
    hasher: PasswordHasher,
    policy: PasswordPolicy,
    next_audit_seq: AtomicU64,
    /// Sessions revoked while their access tokens may be unexpired: id -> revoked at (ms).
    revoked: DashMap<u128, u64>,
    /// Stores that are suspended (id text), checked on every reservation.
    suspended: DashMap<String, ()>,
    any_suspended: AtomicBool,
    login_accounts: Mutex<KeyedLimiter<String>>,
    login_addresses: Mutex<KeyedLimiter<IpAddr>>,
    tenant_requests: Mutex<KeyedLimiter<u128>>,
}

type Ack = oneshot::Receiver<()>;

/// What the directory is built from.
pub struct DirectoryDeps {
    pub wal: WalHandle,
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Config>,
    pub keys: Arc<TokenKeys>,
    pub hasher: PasswordHasher,
}

impl DirectoryService {
    pub fn new(recovered: Vec<Entity>, next_audit_seq: u64, deps: DirectoryDeps) -> Self {
        let DirectoryDeps {
            wal,
            store,
            clock,
            config,
            keys,
            hasher,
        } = deps;
        let mut directory = Directory::default();
        for entity in &recovered {
            directory.apply(entity);
        }
        let a = &config.auth;
        let per = |burst: u32, refill_s: u64| Rate {
            burst,
            refill_ms: refill_s * 1000,
        };
        let service = Self {
            policy: PasswordPolicy {
                min_chars: a.password_min_chars,
                max_chars: a.password_max_chars,
            },
            login_accounts: Mutex::new(KeyedLimiter::new(
                per(a.login_burst_per_account, a.login_refill_per_account_s),
                a.limiter_keys_max,
            )),
            login_addresses: Mutex::new(KeyedLimiter::new(
                per(a.login_burst_per_address, a.login_refill_per_address_s),
                a.limiter_keys_max,
            )),
            tenant_requests: Mutex::new(KeyedLimiter::new(per(1, 1), a.limiter_keys_max)),
            state: RwLock::new(directory),
            writer: Mutex::new(()),
            wal,
            store,
            clock,
            keys,
            hasher,
            next_audit_seq: AtomicU64::new(next_audit_seq.max(1)),
            revoked: DashMap::new(),
            suspended: DashMap::new(),
            any_suspended: AtomicBool::new(false),
            config,
        };
        let now = service.clock.now_ms();
        let since = now.saturating_sub(service.config.auth.access_ttl_s * 1000);
        {
            let state = service.state.read();
            for (id, at) in state.revoked_since(since) {
                service.revoked.insert(id, at);
            }
            for tenant in state.tenants() {
                service.note_status(tenant);
            }
        }
        service
    }

    pub fn keys(&self) -> &Arc<TokenKeys> {
        &self.keys
    }

    /// Password verifications run so far (every login runs one, known account or not).
    pub fn password_verifications(&self) -> u64 {
        self.hasher.verifications()
    }

    pub fn user_count(&self) -> usize {
        self.state.read().user_count()
    }

    fn note_status(&self, tenant: &Tenant) {
        let id = id_text(tenant.id);
        match tenant.status {
            TenantStatus::Suspended => {
                self.suspended.insert(id, ());
            }
            TenantStatus::Active => {
                self.suspended.remove(&id);
            }
        }
        self.any_suspended
            .store(!self.suspended.is_empty(), Ordering::Release);
    }

    /// Whether the store with this id (text) is suspended: its SKUs cannot be sold.
    pub fn tenant_suspended(&self, tenant: &str) -> bool {
        self.any_suspended.load(Ordering::Acquire) && self.suspended.contains_key(tenant)
    }

    /// Whether an access token of this session must be refused.
    pub fn session_revoked(&self, session: u128) -> bool {
        !self.revoked.is_empty() && self.revoked.contains_key(&session)
    }

    fn remember_revoked(&self, session: u128, at_ms: u64) {
        self.revoked.insert(session, at_ms);
        let horizon = at_ms.saturating_sub(self.config.auth.access_ttl_s * 1000);
        if self.revoked.len() > 1024 {
            self.revoked.retain(|_, at| *at >= horizon);
        }
    }

    // ---- writing -------------------------------------------------------

    /// Applies `changes` and queues them and the audit lines for the WAL,
    /// atomically with respect to other writers. The receivers resolve once
    /// everything is durable and the audit lines are readable.
    fn write(
        &self,
        changes: Vec<Entity>,
        audit: Vec<AuditDraft>,
    ) -> Result<Vec<Ack>, IdentityError> {
        if self.wal.congested() {
            return Err(IdentityError::Overloaded);
        }
        let now = self.clock.now_ms();
        let mut acks = Vec::new();
        let mut state = self.state.write();
        for entity in &changes {
            state.apply(entity);
            if let Entity::Tenant(t) = entity {
                self.note_status(t);
            }
            if let Entity::Session(s) = entity {
                if let Some((_, at)) = s.revoked {
                    self.remember_revoked(s.id, at);
                }
            }
        }
        drop(state);
        let entries = audit.into_iter().map(|draft| {
            Entity::Audit(AuditEntry {
                seq: self.next_audit_seq.fetch_add(1, Ordering::Relaxed),
                at_ms: now,
                actor: draft.actor,
                tenant: draft.tenant,
                action: draft.action.to_owned(),
                target: draft.target,
                before: draft.before,
                after: draft.after,
                correlation_id: draft.correlation_id,
            })
        });
        for entity in changes.into_iter().chain(entries) {
            let key = EntityKey::of(&entity);
            let is_audit = matches!(entity, Entity::Audit(_));
            let snapshot = SnapshotBody::Directory(entity.clone());
            let record = WalRecord {
                entity: key,
                body: RecordBody::Directory(Box::new(entity)),
            };
            let (tx, rx) = oneshot::channel();
            let ack: persistence::Ack = Box::new(move || {
                let _ = tx.send(());
            });
            if is_audit {
                // Audit pages are read from snapshots: answer once it is one.
                self.wal
                    .append(&record, None)
                    .and_then(|_| self.wal.snapshot(key, &snapshot, Some(ack)))
            } else {
                self.wal
                    .append(&record, Some(ack))
                    .and_then(|_| self.wal.snapshot(key, &snapshot, None))
            }
            .map_err(|_| IdentityError::Unavailable)?;
            acks.push(rx);
        }
        Ok(acks)
    }

    async fn durable(acks: Vec<Ack>) -> Result<(), IdentityError> {
        for ack in acks {
            ack.await.map_err(|_| IdentityError::Unavailable)?;
        }
        Ok(())
    }

    /// Forgets sessions, invitations and unfollows past their retention
    /// (`[retention]`): out of memory now, and out of the store once their
    /// `Deleted` records are durable, which this awaits. At most
    /// `retention.sweep_batch_max` per call; returns how many went, so a
    /// sweep calls again while a batch comes back full.
    pub async fn purge_ended(&self) -> Result<usize, IdentityError> {
        let retention = &self.config.retention;
        let now = self.clock.now_ms();
        let acks = {
            let _writing = self.writer.lock();
            if self.wal.congested() {
                return Err(IdentityError::Overloaded);
            }
            let ended =
                self.state
                    .read()
                    .purgeable(now, &retention.rules(), retention.sweep_batch_max);
            let mut acks = Vec::with_capacity(ended.len());
            let mut state = self.state.write();
            for entity in &ended {
                state.remove(entity);
                let (tx, rx) = oneshot::channel();
                let ack: persistence::Ack = Box::new(move || {
                    let _ = tx.send(());
                });
                self.wal
                    .forget(EntityKey::of(entity), Some(ack))
                    .map_err(|_| IdentityError::Unavailable)?;
                acks.push(rx);
                let kind = match entity {
                    Entity::Session(_) => "session",
                    Entity::Invitation(_) => "invitation",
                    _ => "unfollow",
                };
                metrics::counter!("flashdrop_identity_purged_total", "kind" => kind).increment(1);
            }
            let resident = state.resident();
            metrics::gauge!("flashdrop_identity_resident", "kind" => "session")
                .set(resident.sessions as f64);
            metrics::gauge!("flashdrop_identity_resident", "kind" => "invitation")
                .set(resident.invitations as f64);
            metrics::gauge!("flashdrop_identity_resident", "kind" => "unfollow")
                .set(resident.unfollows as f64);
            acks
        };
        let purged = acks.len();
        Self::durable(acks).await?;
        Ok(purged)
    }

    /// Sessions, invitations and unfollow tombstones held in memory.
    pub fn resident(&self) -> Resident {
        self.state.read().resident()
    }

    /// Appends audit lines on their own (for changes made elsewhere, e.g. stock).
    pub async fn audit(&self, drafts: Vec<AuditDraft>) -> Result<(), IdentityError> {
        let acks = {
            let _writing = self.writer.lock();
            self.write(Vec::new(), drafts)?
        };
        Self::durable(acks).await
    }

    // ---- accounts ------------------------------------------------------

    fn limit_login(&self, email: &str, address: Option<IpAddr>) -> Result<(), IdentityError> {
        let now = self.clock.now_ms();
        let refused = |verdict: Verdict| match verdict {
            Verdict::Allowed { .. } => None,
            Verdict::Limited { retry_after_ms } => Some(IdentityError::RateLimited {
                retry_after_s: retry_after_ms.div_ceil(1000).max(1),
                remaining: 0,
            }),
        };
        if let Some(address) = address {
            if let Some(e) = refused(self.login_addresses.lock().take(address, now)) {
                metrics::counter!("flashdrop_login_limited_total", "by" => "address").increment(1);
                return Err(e);
            }
        }
        if let Some(e) = refused(self.login_accounts.lock().take(email.to_owned(), now)) {
            metrics::counter!("flashdrop_login_limited_total", "by" => "account").increment(1);
            return Err(e);
        }
        Ok(())
    }

    /// Creates a buyer account. Answers the same whether or not the address is
    /// taken, after the same work, so registration reveals no accounts.
    pub async fn register(
        &self,
        email: &str,
        password: String,
        address: Option<IpAddr>,
        correlation: Option<String>,
    ) -> Result<(), IdentityError> {
        let email = Email::parse(email)?;
        self.policy.check(&password, &email)?;
        if let Some(address) = address {
            if let Verdict::Limited { retry_after_ms } = self
                .login_addresses
                .lock()
                .take(address, self.clock.now_ms())
            {
                return Err(IdentityError::RateLimited {
                    retry_after_s: retry_after_ms.div_ceil(1000).max(1),
                    remaining: 0,
                });
            }
        }
        let hash = self
            .hasher
            .hash(password)
            .await
            .map_err(|_| IdentityError::Unavailable)?;
        self.create_user(&email, hash, Role::Buyer, None, correlation)
            .await
            .map(|_| ())
    }

    async fn create_user(
        &self,
        email: &Email,
        password_hash: String,
        role: Role,
        actor: Option<Actor>,
        correlation: Option<String>,
    ) -> Result<Option<User>, IdentityError> {
        let now = self.clock.now_ms();
        let (acks, user) = {
            let _writing = self.writer.lock();
            if self.state.read().user_by_email(email).is_some() {
                metrics::counter!("flashdrop_registrations_total", "outcome" => "taken")
                    .increment(1);
                return Ok(None);
            }
            let user = User {
                id: uuid::Uuid::now_v7().as_u128(),
                email: email.as_str().to_owned(),
                password_hash,
                role,
                tenant: None,
                created_at_ms: now,
                updated_at_ms: now,
            };
            let audit =
                AuditDraft::new(actor, "user.register", format!("user:{}", id_text(user.id)))
                    .after(user_summary(&user))
                    .correlation(correlation);
            (
                self.write(vec![Entity::User(user.clone())], vec![audit])?,
                user,
            )
        };
        Self::durable(acks).await?;
        metrics::counter!("flashdrop_registrations_total", "outcome" => "created").increment(1);
        Ok(Some(user))
    }

    /// Creates the configured first platform admin if no account has that address.
    pub async fn bootstrap_admin(
        &self,
        email: &str,
        password: &str,
    ) -> Result<bool, IdentityError> {
        let email = Email::parse(email)?;
        if let Some(existing) = self.state.read().user_by_email(&email) {
            if existing.role != Role::PlatformAdmin {
                tracing::warn!(
                    email = email.as_str(),
                    role = existing.role.as_str(),
                    "the bootstrap admin's address belongs to an account that is not a platform admin; \
                     no platform admin was created"
                );
            }
            return Ok(false);
        }
        self.policy.check(password, &email)?;
        let hash = self
            .hasher
            .hash(password.to_owned())
            .await
            .map_err(|_| IdentityError::Unavailable)?;
        let created = self
            .create_user(&email, hash, Role::PlatformAdmin, None, None)
            .await?;
        Ok(created.is_some())
    }

    /// Makes an existing account a platform admin (an operator's command, on a
    /// stopped server's data; audited with no actor). Answers whether it
    /// changed anything; an account of a store must leave it first.
    pub async fn promote_to_admin(&self, email: &str) -> Result<bool, IdentityError> {
        let email = Email::parse(email)?;
        let acks = {
            let _writing = self.writer.lock();
            let user = self
                .state
                .read()
                .user_by_email(&email)
                .cloned()
                .ok_or(IdentityError::NotFound(Missing::Account))?;
            match user.role {
                Role::PlatformAdmin => return Ok(false),
                Role::SellerAdmin | Role::SellerStaff => {
                    return Err(IdentityError::Conflict(
                        "the account belongs to a store; remove it from the store first",
                    ))
                }
                Role::Buyer => {}
            }
            let promoted = User {
                role: Role::PlatformAdmin,
                updated_at_ms: self.clock.now_ms(),
                ..user.clone()
            };
            let audit = AuditDraft::new(None, "user.role", format!("user:{}", id_text(user.id)))
                .before(user_summary(&user))
                .after(user_summary(&promoted));
            self.write(vec![Entity::User(promoted)], vec![audit])?
        };
        Self::durable(acks).await?;
        Ok(true)
    }

    /// Checks the password and opens a session (a refresh-token family).
    pub async fn login(
        &self,
        email: &str,
        password: String,
        address: Option<IpAddr>,
        correlation: Option<String>,
    ) -> Result<IssuedTokens, IdentityError> {
        // A malformed address cannot match an account: same answer as a wrong one.
        let email = Email::parse(email).map_err(|_| IdentityError::InvalidCredentials);
        let key = email
            .as_ref()
            .map_or_else(|_| String::new(), |e| e.as_str().to_owned());
        self.limit_login(&key, address)?;
        let user = match &email {
            Ok(email) => self.state.read().user_by_email(email).cloned(),
            Err(_) => None,
        };
        let matched = self
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await
            .map_err(|_| IdentityError::Unavailable)?;
        let user = match (matched, user) {
            (true, Some(user)) => user,
            _ => {
                metrics::counter!("flashdrop_logins_total", "outcome" => "refused").increment(1);
                return Err(IdentityError::InvalidCredentials);
            }
        };
        metrics::counter!("flashdrop_logins_total", "outcome" => "ok").increment(1);
        self.open_session(&user, "session.login", correlation).await
    }

    async fn open_session(
        &self,
        user: &User,
        action: &'static str,
        correlation: Option<String>,
    ) -> Result<IssuedTokens, IdentityError> {
        let now = self.clock.now_ms();
        let session = Session {
            id: uuid::Uuid::now_v7().as_u128(),
            user: user.id,
            salt: random_salt(),
            generation: 1,
            created_at_ms: now,
            rotated_at_ms: now,
            expires_at_ms: now + self.keys.refresh_ttl_s * 1000,
            revoked: None,
        };
        let actor = actor_of(user);
        let audit = AuditDraft::new(
            Some(actor),
            action,
            format!("session:{}", id_text(session.id)),
        )
        .correlation(correlation);
        let acks = {
            let _writing = self.writer.lock();
            self.write(vec![Entity::Session(session.clone())], vec![audit])?
        };
        Self::durable(acks).await?;
        Ok(self.tokens_for(user, &session))
    }

    fn tokens_for(&self, user: &User, session: &Session) -> IssuedTokens {
        let (access_token, access_expires_at_s) = self.keys.issue_access(
            user.id,
            user.role,
            user.tenant,
            session.id,
            self.clock.now_ms(),
        );
        IssuedTokens {
            access_token,
            access_expires_at_s,
            refresh_token: self
                .keys
                .refresh_token(session.id, &session.salt, session.generation),
            refresh_expires_at_ms: session.expires_at_ms,
            user: user.clone(),
        }
    }

    /// Rotates a refresh token; an already-rotated one revokes its family.
    pub async fn refresh(
        &self,
        raw: &str,
        correlation: Option<String>,
    ) -> Result<IssuedTokens, IdentityError> {
        let token = self
            .keys
            .parse_refresh(raw)
            .map_err(|_| IdentityError::RefreshInvalid)?;
        let now = self.clock.now_ms();
        let (acks, outcome) = {
            let _writing = self.writer.lock();
            let state = self.state.read();
            let session = state
                .session(token.session)
                .cloned()
                .ok_or(IdentityError::RefreshInvalid)?;
            let user = state
                .user(session.user)
                .cloned()
                .ok_or(IdentityError::RefreshInvalid)?;
            drop(state);
            let genuine = self.keys.refresh_is_genuine(&token, &session.salt);
            let target = format!("session:{}", id_text(session.id));
            match session.decide(token.generation, genuine, now) {
                RefreshDecision::Refuse => return Err(IdentityError::RefreshInvalid),
                RefreshDecision::Rotate => {
                    let next = session.rotated(now);
                    let audit = AuditDraft::new(Some(actor_of(&user)), "session.refresh", target)
                        .correlation(correlation);
                    let acks = self.write(vec![Entity::Session(next.clone())], vec![audit])?;
                    (acks, Ok((user, next)))
                }
                RefreshDecision::Reuse => {
                    let revoked = session.revoked(RevokeReason::Reuse, now);
                    let audit =
                        AuditDraft::new(Some(actor_of(&user)), "session.reuse_detected", target)
                            .correlation(correlation);
                    let acks = self.write(vec![Entity::Session(revoked)], vec![audit])?;
                    metrics::counter!("flashdrop_refresh_reuse_total").increment(1);
                    (acks, Err(IdentityError::RefreshReused))
                }
            }
        };
        Self::durable(acks).await?;
        let (user, session) = outcome?;
        Ok(self.tokens_for(&user, &session))
    }

    /// Revokes the caller's session: its refresh token and access tokens stop working.
    pub async fn logout(
        &self,
        caller: &Caller,
        correlation: Option<String>,
    ) -> Result<(), IdentityError> {
        let now = self.clock.now_ms();
        let acks = {
            let _writing = self.writer.lock();
            let session = self.state.read().session(caller.session).cloned();
            let Some(session) = session.filter(|s| s.revoked.is_none()) else {
                self.remember_revoked(caller.session, now);
                return Ok(());
            };
            let audit = AuditDraft::new(
                Some(actor_of_caller(caller)),
                "session.logout",
                format!("session:{}", id_text(session.id)),
            )
            .correlation(correlation);
            self.write(
                vec![Entity::Session(session.revoked(RevokeReason::Logout, now))],
                vec![audit],
            )?
        };
        Self::durable(acks).await
    }

    pub fn user(&self, id: u128) -> Option<User> {
        self.state.read().user(id).cloned()
    }

    pub fn following_count(&self, user: u128) -> usize {
        self.state.read().following_count(user)
    }

    /// Revokes every live session of `user` (within the writer lock).
    fn revoke_all(&self, user: u128, now: u64) -> Vec<Entity> {
        self.state
            .read()
            .sessions_of(user, now)
            .into_iter()
            .map(|s| Entity::Session(s.revoked(RevokeReason::AccessChanged, now)))
            .collect()
    }

    // ---- stores --------------------------------------------------------

    /// Opens a store with the caller as its first seller admin; answers with
    /// fresh tokens carrying the new role.
    pub async fn onboard(
        &self,
        caller: &Caller,
        new: NewTenant,
        correlation: Option<String>,
    ) -> Result<(Tenant, IssuedTokens), IdentityError> {
        let name = check_store_name(&new.name)?;
        new.branding.check()?;
        new.tax.check()?;
        new.shipping.check()?;
        let now = self.clock.now_ms();
        let t = &self.config.tenants;
        let (acks, tenant, user) = {
            let _writing = self.writer.lock();
            let user = self
                .state
                .read()
                .user(caller.user)
                .cloned()
                .ok_or(IdentityError::NotFound(Missing::Account))?;
            if user.role != Role::Buyer || user.tenant.is_some() {
                return Err(IdentityError::Forbidden(
                    "only an account without a store or platform role can open a store",
                ));
            }
            let tenant = Tenant {
                id: uuid::Uuid::now_v7().as_u128(),
                name,
                branding: new.branding,
                tax: new.tax,
                shipping: new.shipping,
                status: TenantStatus::Active,
                plan: Plan {
                    name: t.default_plan.clone(),
                    requests_per_minute: t.default_requests_per_minute,
                    max_products: t.default_max_products,
                },
                webhook_url: String::new(),
                created_by: user.id,
                created_at_ms: now,
                updated_at_ms: now,
            };
            let promoted = User {
                role: Role::SellerAdmin,
                tenant: Some(tenant.id),
                updated_at_ms: now,
                ..user.clone()
            };
            let actor = Some(actor_of(&user));
            let audit = vec![
                AuditDraft::new(
                    actor,
                    "tenant.create",
                    format!("tenant:{}", id_text(tenant.id)),
                )
                .tenant(Some(tenant.id))
                .after(tenant_summary(&tenant))
                .correlation(correlation.clone()),
                AuditDraft::new(actor, "user.role", format!("user:{}", id_text(user.id)))
                    .tenant(Some(tenant.id))
                    .before(user_summary(&user))
                    .after(user_summary(&promoted))
                    .correlation(correlation.clone()),
            ];
            let acks = self.write(
                vec![
                    Entity::Tenant(tenant.clone()),
                    Entity::User(promoted.clone()),
                ],
                audit,
            )?;
            (acks, tenant, promoted)
        };
        Self::durable(acks).await?;
        let tokens = self
            .open_session(&user, "session.login", correlation)
            .await?;
        Ok((tenant, tokens))
    }

    /// A store as the caller may see it: its own staff and platform admins; to
    /// other sellers it is unknown; buyers may not ask.
    pub fn tenant_for(&self, caller: &Caller, id: u128) -> Result<Tenant, IdentityError> {
        if caller.role == Role::Buyer {
            return Err(IdentityError::Forbidden(
                "this route is for a store's sellers and platform admins",
            ));
        }
        let visible = policy::sees_store(&caller.principal(), id);
        let tenant = self.state.read().tenant(id).cloned();
        match tenant {
            Some(t) if visible => Ok(t),
            _ => Err(IdentityError::NotFound(Missing::Tenant)),
        }
    }

    pub fn tenant(&self, id: u128) -> Option<Tenant> {
        self.state.read().tenant(id).cloned()
    }

    /// Every store, by id, for platform admins.
    pub fn tenants_page(&self, after: Option<u128>, limit: usize) -> Vec<Tenant> {
        let state = self.state.read();
        let mut all: Vec<&Tenant> = state
            .tenants()
            .filter(|t| after.is_none_or(|a| t.id > a))
            .collect();
        all.sort_unstable_by_key(|t| t.id);
        all.into_iter().take(limit).cloned().collect()
    }

    pub async fn update_tenant(
        &self,
        caller: &Caller,
        id: u128,
        patch: TenantPatch,
        correlation: Option<String>,
    ) -> Result<Tenant, IdentityError> {
        let current = self.tenant_for(caller, id)?;
        if !policy::manages_store(&caller.principal(), id) {
            return Err(IdentityError::Forbidden(
                "only a seller admin changes store settings",
            ));
        }
        if patch.touches_platform_fields() && !policy::operates_platform(&caller.principal()) {
            return Err(IdentityError::Forbidden(
                "status and plan are set by platform admins",
            ));
        }
        patch.check()?;
        let now = self.clock.now_ms();
        let (acks, next) = {
            let _writing = self.writer.lock();
            let current = self.state.read().tenant(id).cloned().unwrap_or(current);
            let next = patch.applied_to(&current, now);
            let audit = AuditDraft::new(
                Some(actor_of_caller(caller)),
                "tenant.update",
                format!("tenant:{}", id_text(id)),
            )
            .tenant(Some(id))
            .before(tenant_summary(&current))
            .after(tenant_summary(&next))
            .correlation(correlation);
            (
                self.write(vec![Entity::Tenant(next.clone())], vec![audit])?,
                next,
            )
        };
        Self::durable(acks).await?;
        Ok(next)
    }

    /// Requests-per-minute quota of the caller's store (seller routes).
    pub fn charge_tenant_request(&self, tenant: u128) -> Result<u32, IdentityError> {
        let rpm = self
            .state
            .read()
            .tenant(tenant)
            .map_or(1, |t| t.plan.requests_per_minute.max(1));
        let rate = Rate {
            burst: rpm,
            refill_ms: (60_000 / u64::from(rpm)).max(1),
        };
        match self
            .tenant_requests
            .lock()
            .take_with(tenant, rate, self.clock.now_ms())
        {
            Verdict::Allowed { remaining } => Ok(remaining),
            Verdict::Limited { retry_after_ms } => Err(IdentityError::RateLimited {
                retry_after_s: retry_after_ms.div_ceil(1000).max(1),
                remaining: 0,
            }),
        }
    }

    /// The plan's requests per minute of a store, if it is one.
    pub fn plan_requests_per_minute(&self, tenant: u128) -> Option<u32> {
        self.state
            .read()
            .tenant(tenant)
            .map(|t| t.plan.requests_per_minute)
    }

    pub fn max_products(&self, tenant: u128) -> u32 {
        self.state
            .read()
            .tenant(tenant)
            .map_or(0, |t| t.plan.max_products)
    }

    // ---- staff ---------------------------------------------------------

    fn require_admin_of(&self, caller: &Caller, tenant: u128) -> Result<(), IdentityError> {
        self.tenant_for(caller, tenant)?;
        if !policy::manages_store(&caller.principal(), tenant) {
            return Err(IdentityError::Forbidden(
                "only a seller admin manages staff",
            ));
        }
        Ok(())
    }

    /// Invites someone (by e-mail) to join the store with `role`; the token
    /// goes to them out of band and is accepted with their own account.
    pub async fn invite(
        &self,
        caller: &Caller,
        tenant: u128,
        email: &str,
        role: Role,
        correlation: Option<String>,
    ) -> Result<(Invitation, String), IdentityError> {
        self.require_admin_of(caller, tenant)?;
        let email = Email::parse(email)?;
        if !role.is_seller() {
            return Err(InvalidField::new("role", "must be seller_admin or seller_staff").into());
        }
        let now = self.clock.now_ms();
        let (acks, invitation) = {
            let _writing = self.writer.lock();
            if self.state.read().staff_of(tenant).len() >= self.config.tenants.staff_max {
                return Err(IdentityError::LimitReached(format!(
                    "a store has at most {} staff accounts (tenants.staff_max)",
                    self.config.tenants.staff_max
                )));
            }
            let invitation = Invitation {
                id: uuid::Uuid::now_v7().as_u128(),
                tenant,
                email: email.as_str().to_owned(),
                role,
                salt: random_salt(),
                invited_by: caller.user,
                created_at_ms: now,
                expires_at_ms: now + self.config.auth.invitation_ttl_s * 1000,
                accepted_by: None,
            };
            let audit = AuditDraft::new(
                Some(actor_of_caller(caller)),
                "staff.invite",
                format!("invitation:{}", id_text(invitation.id)),
            )
            .tenant(Some(tenant))
            .after(format!(
                r#"{{"email":{},"role":"{}"}}"#,
                json_str(&invitation.email),
                role.as_str()
            ))
            .correlation(correlation);
            (
                self.write(vec![Entity::Invitation(invitation.clone())], vec![audit])?,
                invitation,
            )
        };
        Self::durable(acks).await?;
        let token = self.keys.invitation_token(invitation.id, &invitation.salt);
        Ok((invitation, token))
    }

    /// The caller joins the store of an invitation addressed to their e-mail.
    pub async fn accept_invitation(
        &self,
        caller: &Caller,
        raw: &str,
        correlation: Option<String>,
    ) -> Result<(Invitation, IssuedTokens), IdentityError> {
        let (id, tag) = self
            .keys
            .parse_invitation(raw)
            .map_err(|_| IdentityError::InvitationInvalid)?;
        let now = self.clock.now_ms();
        let (acks, user, invitation) = {
            let _writing = self.writer.lock();
            let state = self.state.read();
            let invitation = state
                .invitation(id)
                .cloned()
                .filter(|i| self.keys.invitation_is_genuine(i.id, &i.salt, &tag))
                .filter(|i| i.accepted_by.is_none() && now < i.expires_at_ms)
                .ok_or(IdentityError::InvitationInvalid)?;
            let user = state
                .user(caller.user)
                .cloned()
                .ok_or(IdentityError::InvitationInvalid)?;
            let staff_count = state.staff_of(invitation.tenant).len();
            drop(state);
            if user.email != invitation.email {
                return Err(IdentityError::InvitationInvalid);
            }
            if user.role != Role::Buyer || user.tenant.is_some() {
                return Err(IdentityError::Forbidden(
                    "this account already belongs to a store or the platform",
                ));
            }
            if staff_count >= self.config.tenants.staff_max {
                return Err(IdentityError::LimitReached(format!(
                    "a store has at most {} staff accounts (tenants.staff_max)",
                    self.config.tenants.staff_max
                )));
            }
            let joined = User {
                role: invitation.role,
                tenant: Some(invitation.tenant),
                updated_at_ms: now,
                ..user.clone()
            };
            let accepted = Invitation {
                accepted_by: Some(user.id),
                ..invitation.clone()
            };
            let audit = AuditDraft::new(
                Some(actor_of(&user)),
                "staff.join",
                format!("user:{}", id_text(user.id)),
            )
            .tenant(Some(invitation.tenant))
            .before(user_summary(&user))
            .after(user_summary(&joined))
            .correlation(correlation.clone());
            let acks = self.write(
                vec![
                    Entity::User(joined.clone()),
                    Entity::Invitation(accepted.clone()),
                ],
                vec![audit],
            )?;
            (acks, joined, accepted)
        };
        Self::durable(acks).await?;
        let tokens = self
            .open_session(&user, "session.login", correlation)
            .await?;
        Ok((invitation, tokens))
    }

    pub fn staff(&self, caller: &Caller, tenant: u128) -> Result<Vec<User>, IdentityError> {
        self.require_admin_of(caller, tenant)?;
        Ok(self
            .state
            .read()
            .staff_of(tenant)
            .into_iter()
            .cloned()
            .collect())
    }

    /// Removes an account from the store: it becomes a buyer and its sessions end.
    pub async fn remove_staff(
        &self,
        caller: &Caller,
        tenant: u128,
        user: u128,
        correlation: Option<String>,
    ) -> Result<(), IdentityError> {
        self.require_admin_of(caller, tenant)?;
        let now = self.clock.now_ms();
        let acks = {
            let _writing = self.writer.lock();
            let state = self.state.read();
            let member = state
                .user(user)
                .filter(|u| u.tenant == Some(tenant))
                .cloned()
                .ok_or(IdentityError::NotFound(Missing::StaffMember))?;
            let admins = state
                .staff_of(tenant)
                .iter()
                .filter(|u| u.role == Role::SellerAdmin)
                .count();
            drop(state);
            if member.role == Role::SellerAdmin && admins <= 1 {
                return Err(IdentityError::Conflict(
                    "a store keeps at least one seller admin",
                ));
            }
            let demoted = User {
                role: Role::Buyer,
                tenant: None,
                updated_at_ms: now,
                ..member.clone()
            };
            let mut changes = vec![Entity::User(demoted.clone())];
            changes.extend(self.revoke_all(user, now));
            let audit = AuditDraft::new(
                Some(actor_of_caller(caller)),
                "staff.remove",
                format!("user:{}", id_text(user)),
            )
            .tenant(Some(tenant))
            .before(user_summary(&member))
            .after(user_summary(&demoted))
            .correlation(correlation);
            self.write(changes, vec![audit])?
        };
        Self::durable(acks).await
    }

    // ---- follows -------------------------------------------------------

    /// A creator (an active store) by id.
    pub fn creator(&self, id: u128) -> Option<(Tenant, usize)> {
        let state = self.state.read();
        state
            .tenant(id)
            .filter(|t| t.status == TenantStatus::Active)
            .map(|t| (t.clone(), state.follower_count(id)))
    }

    pub async fn set_follow(
        &self,
        caller: &Caller,
        creator: u128,
        active: bool,
        correlation: Option<String>,
    ) -> Result<(), IdentityError> {
        if self.creator(creator).is_none() {
            return Err(IdentityError::NotFound(Missing::Creator));
        }
        let now = self.clock.now_ms();
        let acks = {
            let _writing = self.writer.lock();
            let state = self.state.read();
            if state.follows(caller.user, creator) == active {
                return Ok(());
            }
            if active && state.following_count(caller.user) >= self.config.tenants.following_max {
                return Err(IdentityError::LimitReached(format!(
                    "an account follows at most {} creators (tenants.following_max)",
                    self.config.tenants.following_max
                )));
            }
            let id = state
                .follow_id(creator, caller.user)
                .unwrap_or_else(|| uuid::Uuid::now_v7().as_u128());
            drop(state);
            let follow = Follow {
                id,
                creator,
                follower: caller.user,
                active,
                at_ms: now,
            };
            let audit = AuditDraft::new(
                Some(actor_of_caller(caller)),
                if active {
                    "follow.create"
                } else {
                    "follow.delete"
                },
                format!("creator:{}", id_text(creator)),
            )
            .tenant(None)
            .correlation(correlation);
            self.write(vec![Entity::Follow(follow)], vec![audit])?
        };
        Self::durable(acks).await
    }

    /// Whether `user` follows the creator (store) `creator`.
    pub fn follows(&self, user: u128, creator: u128) -> bool {
        self.state.read().follows(user, creator)
    }

    /// Followers of a creator, for announcements (drops, in a later issue).
    pub fn followers(&self, creator: u128, after: Option<u128>, limit: usize) -> Vec<u128> {
        self.state.read().followers(creator, after, limit)
    }

    // ---- audit ---------------------------------------------------------

    /// Audit lines newest first, from before `cursor` (a sequence number).
    /// Examines at most `tenants.audit_scan_max` lines; the cursor then says
    /// where to go on even if the page is short.
    pub fn audit_page(
        &self,
        filter: &AuditFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, Option<u64>), IdentityError> {
        let prefix = EntityKey::kind_prefix_audit();
        let end = EntityKey::Audit(cursor.unwrap_or(u64::MAX)).to_bytes();
        let mut items = Vec::new();
        let mut examined = 0;
        let mut last_seq = None;
        for item in self.store.snapshots.range(prefix.to_vec()..end).rev() {
            let (key, _) = item.map_err(|_| IdentityError::Unavailable)?;
            let Some(entity @ EntityKey::Audit(seq)) = EntityKey::from_bytes(&key) else {
                continue;
            };
            if examined >= self.config.tenants.audit_scan_max || items.len() >= limit {
                return Ok((items, last_seq));
            }
            examined += 1;
            last_seq = Some(seq);
            let Some((_, SnapshotBody::Directory(Entity::Audit(entry)))) = self
                .store
                .read_snapshot(entity)
                .map_err(|_| IdentityError::Unavailable)?
            else {
                continue;
            };
            if filter.since_ms.is_some_and(|s| entry.at_ms < s) {
                return Ok((items, None));
            }
            if filter.matches(&entry) {
                items.push(entry);
            }
        }
        Ok((items, None))
    }
}

pub fn actor_of(user: &User) -> Actor {
    Actor {
        user: user.id,
        role: user.role,
        tenant: user.tenant,
    }
}

pub fn actor_of_caller(caller: &Caller) -> Actor {
    Actor {
        user: caller.user,
        role: caller.role,
        tenant: caller.tenant,
    }
}

/// A JSON string literal.
pub fn json_str(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

fn user_summary(user: &User) -> String {
    serde_json::json!({
        "email": user.email,
        "role": user.role.as_str(),
        "tenant_id": user.tenant.map(id_text),
    })
    .to_string()
}

fn tenant_summary(t: &Tenant) -> String {
    serde_json::json!({
        "name": t.name,
        "status": t.status.as_str(),
        "plan": {"name": t.plan.name, "requests_per_minute": t.plan.requests_per_minute,
                 "max_products": t.plan.max_products},
        "branding": {"logo_url": t.branding.logo_url, "primary_color": t.branding.primary_color,
                     "accent_color": t.branding.accent_color},
        "tax": {"prices_include_tax": t.tax.prices_include_tax,
                "default_rate_bp": t.tax.default_rate_bp, "tax_id": t.tax.tax_id},
        "shipping": {"origin_country": t.shipping.origin_country, "ships_to": t.shipping.ships_to,
                     "handling_days": t.shipping.handling_days,
                     "free_shipping_over_minor": t.shipping.free_shipping_over_minor},
    })
    .to_string()
}
