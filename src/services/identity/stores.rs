//! Stores and staff: onboarding, settings and plan, suspension, request
//! quotas, invitations, and staff leaving or being removed.

use super::*;
use crate::domain::policy;

/// New store settings from onboarding.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub name: String,
    pub branding: Branding,
    pub tax: TaxSettings,
    pub shipping: ShippingSettings,
}

impl DirectoryService {
    pub(super) fn note_status(&self, tenant: &Tenant) {
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
                id: TenantId(uuid::Uuid::now_v7().as_u128()),
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
                    Entity::Tenant(Box::new(tenant.clone())),
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
    pub fn tenant_for(&self, caller: &Caller, id: TenantId) -> Result<Tenant, IdentityError> {
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

    pub fn tenant(&self, id: TenantId) -> Option<Tenant> {
        self.state.read().tenant(id).cloned()
    }

    /// Every store, by id, for platform admins.
    pub fn tenants_page(&self, after: Option<TenantId>, limit: usize) -> Vec<Tenant> {
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
        id: TenantId,
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
                self.write(vec![Entity::Tenant(Box::new(next.clone()))], vec![audit])?,
                next,
            )
        };
        Self::durable(acks).await?;
        Ok(next)
    }

    /// Requests-per-minute quota of the caller's store (seller routes).
    pub fn charge_tenant_request(&self, tenant: TenantId) -> Result<u32, IdentityError> {
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
    pub fn plan_requests_per_minute(&self, tenant: TenantId) -> Option<u32> {
        self.state
            .read()
            .tenant(tenant)
            .map(|t| t.plan.requests_per_minute)
    }

    pub fn max_products(&self, tenant: TenantId) -> u32 {
        self.state
            .read()
            .tenant(tenant)
            .map_or(0, |t| t.plan.max_products)
    }

    // ---- staff ---------------------------------------------------------

    pub(super) fn require_admin_of(
        &self,
        caller: &Caller,
        tenant: TenantId,
    ) -> Result<(), IdentityError> {
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
        tenant: TenantId,
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

    pub fn staff(&self, caller: &Caller, tenant: TenantId) -> Result<Vec<User>, IdentityError> {
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
        tenant: TenantId,
        user: UserId,
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
}

/// Checkouts are priced with the store's settings as they are when the
/// order is placed.
impl crate::actors::orders::StorePricing for DirectoryService {
    fn pricing(&self, store: TenantId) -> Option<(ShippingSettings, TaxSettings)> {
        let state = self.state.read();
        let tenant = state.tenant(store)?;
        Some((tenant.shipping.clone(), tenant.tax.clone()))
    }
}
