//! Accounts: registration, the first platform admin, promotion, and the
//! login limits that protect passwords.

use super::*;

impl DirectoryService {
    /// Password verifications run so far (every login runs one, known account or not).
    pub fn password_verifications(&self) -> u64 {
        self.hasher.verifications()
    }

    pub fn user_count(&self) -> usize {
        self.state.read().user_count()
    }

    // ---- accounts ------------------------------------------------------

    pub(super) fn limit_login(
        &self,
        email: &str,
        address: Option<IpAddr>,
    ) -> Result<(), IdentityError> {
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

    pub(super) async fn create_user(
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
                id: UserId(uuid::Uuid::now_v7().as_u128()),
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

    pub fn user(&self, id: UserId) -> Option<User> {
        self.state.read().user(id).cloned()
    }
}
