//! Sessions: login, refresh with rotation and reuse detection, logout, and
//! the revocations the token check reads on every request.

use super::*;

/// Tokens handed to a client after login, refresh, onboarding or joining a store.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub access_expires_at_s: u64,
    pub refresh_token: String,
    pub refresh_expires_at_ms: u64,
    pub user: User,
}

/// Revocations held before the first prune of those past the access-token
/// lifetime.
pub(super) const REVOKED_PRUNE_MIN: usize = 1024;

impl DirectoryService {
    /// Whether an access token of this session must be refused.
    pub fn session_revoked(&self, session: u128) -> bool {
        !self.revoked.is_empty() && self.revoked.contains_key(&session)
    }

    pub(super) fn remember_revoked(&self, session: u128, at_ms: u64) {
        self.revoked.insert(session, at_ms);
        if self.revoked.len() > self.revoked_prune_at.load(Ordering::Relaxed) {
            let horizon = at_ms.saturating_sub(self.config.auth.access_ttl_s * 1000);
            self.revoked.retain(|_, at| *at >= horizon);
            let next = (self.revoked.len() * 2).max(REVOKED_PRUNE_MIN);
            self.revoked_prune_at.store(next, Ordering::Relaxed);
        }
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

    pub(super) async fn open_session(
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

    pub(super) fn tokens_for(&self, user: &User, session: &Session) -> IssuedTokens {
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

    /// Revokes every live session of `user` (within the writer lock).
    pub(super) fn revoke_all(&self, user: UserId, now: u64) -> Vec<Entity> {
        self.state
            .read()
            .sessions_of(user, now)
            .into_iter()
            .map(|s| Entity::Session(s.revoked(RevokeReason::AccessChanged, now)))
            .collect()
    }
}
