//! Follows: shoppers following creators (stores), and the follower lists.

use super::*;

impl DirectoryService {
    pub fn following_count(&self, user: UserId) -> usize {
        self.state.read().following_count(user)
    }

    // ---- follows -------------------------------------------------------

    /// A creator (an active store) by id.
    pub fn creator(&self, id: TenantId) -> Option<(Tenant, usize)> {
        let state = self.state.read();
        state
            .tenant(id)
            .filter(|t| t.status == TenantStatus::Active)
            .map(|t| (t.clone(), state.follower_count(id)))
    }

    pub async fn set_follow(
        &self,
        caller: &Caller,
        creator: TenantId,
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
    pub fn follows(&self, user: UserId, creator: TenantId) -> bool {
        self.state.read().follows(user, creator)
    }

    /// Followers of a creator, for announcements (drops, in a later issue).
    pub fn followers(&self, creator: TenantId, after: Option<UserId>, limit: usize) -> Vec<UserId> {
        self.state.read().followers(creator, after, limit)
    }
}
