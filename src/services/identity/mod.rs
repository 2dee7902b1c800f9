//! Identity, the directory: accounts, sessions, stores and staff, follows and
//! the audit log, one file per sub-domain. This file owns the shared state
//! and how a change is written. State is in memory behind one lock; every
//! change is written to the WAL (record, then a snapshot of the entity) and
//! answered once durable.
//!
//! Not an actor: reads (token revocation, store status on the reserve path)
//! must not queue behind writes, and writes are rare. The lock is never held
//! across an await.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
use crate::domain::{InvalidField, TenantId, UserId};
use crate::persistence::{self, EntityKey, RecordBody, SnapshotBody, Store, WalHandle, WalRecord};

mod accounts;
mod audit;
mod follows;
mod sessions;
mod stores;

pub use audit::{actor_of, actor_of_caller, AuditDraft, AuditFilter};
pub use sessions::IssuedTokens;
pub use stores::NewTenant;

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
    /// `revoked` is pruned of revocations older than the access-token
    /// lifetime when it grows past this size, which then doubles what is
    /// left (at least `REVOKED_PRUNE_MIN`): pruning costs O(1) per
    /// revocation over time, not a scan of every revocation each time.
    revoked_prune_at: AtomicUsize,
    /// Stores that are suspended (id text), checked on every reservation.
    suspended: DashMap<String, ()>,
    any_suspended: AtomicBool,
    login_accounts: Mutex<KeyedLimiter<String>>,
    login_addresses: Mutex<KeyedLimiter<IpAddr>>,
    tenant_requests: Mutex<KeyedLimiter<TenantId>>,
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
            revoked_prune_at: AtomicUsize::new(sessions::REVOKED_PRUNE_MIN),
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
}

/// A JSON string literal.
pub fn json_str(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

pub(super) fn user_summary(user: &User) -> String {
    serde_json::json!({
        "email": user.email,
        "role": user.role.as_str(),
        "tenant_id": user.tenant.map(id_text),
    })
    .to_string()
}

pub(super) fn tenant_summary(t: &Tenant) -> String {
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
                     "free_shipping_over_minor": t.shipping.free_shipping_over_minor,
                     "methods": t.shipping.methods.iter().map(|m| serde_json::json!({
                         "code": m.code, "name": m.name, "price_minor": m.price_minor,
                         "free_over_minor": m.free_over_minor})).collect::<Vec<_>>()},
    })
    .to_string()
}
