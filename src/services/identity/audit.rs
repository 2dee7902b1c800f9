//! The audit log: what each change records, and reading it a page at a time.

use super::*;

/// An audit line before it has its sequence number and time.
#[derive(Debug, Clone)]
pub struct AuditDraft {
    pub actor: Option<Actor>,
    pub tenant: Option<TenantId>,
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

    pub fn tenant(mut self, tenant: Option<TenantId>) -> Self {
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
    pub tenant: Option<TenantId>,
    pub actor: Option<UserId>,
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

impl DirectoryService {
    /// Appends audit lines on their own (for changes made elsewhere, e.g. stock).
    pub async fn audit(&self, drafts: Vec<AuditDraft>) -> Result<(), IdentityError> {
        let acks = {
            let _writing = self.writer.lock();
            self.write(Vec::new(), drafts)?
        };
        Self::durable(acks).await
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
