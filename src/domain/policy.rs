//! Who may read or change what: every access rule of the API in one pure
//! module, so a reader finds them in one place and a table of tests pins them.
//! Handlers ask these functions; they never compare roles themselves.

use super::identity::Role;
use super::product::ProductStatus;
use super::{TenantId, UserId};

/// Who is asking: an authenticated account, its role and its store (sellers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user: UserId,
    pub role: Role,
    pub tenant: Option<TenantId>,
}

impl Principal {
    /// The store this principal sells for: its own, for seller admins and staff.
    pub fn selling_for(&self) -> Option<TenantId> {
        self.tenant.filter(|_| self.role.is_seller())
    }

    pub fn is_platform_admin(&self) -> bool {
        self.role == Role::PlatformAdmin
    }
}

/// How much of an order a principal sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderView {
    /// Every part: its buyer and platform admins.
    Whole,
    /// Only the part of this store: a seller of one of its parts.
    PartOf(TenantId),
}

/// Who may read an order of `buyer` with parts sold by `sellers`: the buyer,
/// a platform admin, or a seller of one of its parts (that part only).
pub fn order_view(
    who: &Principal,
    buyer: UserId,
    mut sellers: impl Iterator<Item = TenantId>,
) -> Option<OrderView> {
    if who.user == buyer || who.is_platform_admin() {
        return Some(OrderView::Whole);
    }
    let store = who.selling_for()?;
    sellers
        .any(|s| s == store)
        .then_some(OrderView::PartOf(store))
}

/// Whether `who` sells the goods of store `owner` (a SKU's or a hold's store):
/// its seller admins and staff. They list, release and commit its holds.
pub fn sells_for(who: &Principal, owner: TenantId) -> bool {
    who.selling_for() == Some(owner)
}

/// Whether `who` sees every hold on a SKU of store `owner`, not only its own.
pub fn sees_every_hold(who: &Principal, owner: TenantId) -> bool {
    who.is_platform_admin() || sells_for(who, owner)
}

/// Whether `who` may see store `tenant`'s settings and staff: its sellers
/// and platform admins.
pub fn sees_store(who: &Principal, tenant: TenantId) -> bool {
    who.is_platform_admin() || sells_for(who, tenant)
}

/// Whether `who` manages store `tenant`'s settings (webhook URL included)
/// and staff: its seller admins and platform admins; staff do not.
pub fn manages_store(who: &Principal, tenant: TenantId) -> bool {
    who.is_platform_admin() || (who.role == Role::SellerAdmin && who.tenant == Some(tenant))
}

/// Which part of the audit log `who` may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditScope {
    /// Everything, or one store when asked for.
    Platform(Option<TenantId>),
    /// Only this store's entries.
    Store(TenantId),
}

/// Why an audit read is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditRefusal {
    /// Not for this role at all.
    Forbidden,
    /// Another store's log: answered as if that store did not exist.
    OtherStore,
}

/// The audit log: platform admins read any store's (or all), a seller admin
/// only its own store's; staff and shoppers none.
pub fn audit_scope(who: &Principal, asked: Option<TenantId>) -> Result<AuditScope, AuditRefusal> {
    match who.role {
        Role::PlatformAdmin => Ok(AuditScope::Platform(asked)),
        Role::SellerAdmin => {
            // A seller admin without a store (never issued) sees an empty log.
            let own = who.tenant.unwrap_or(TenantId(0));
            match asked {
                Some(other) if other != own => Err(AuditRefusal::OtherStore),
                _ => Ok(AuditScope::Store(own)),
            }
        }
        Role::SellerStaff | Role::Buyer => Err(AuditRefusal::Forbidden),
    }
}

/// Operations of the platform itself (the tenant list, suspensions, dead
/// letters, the sandbox provider's books, SKU restarts): platform admins only.
pub fn operates_platform(who: &Principal) -> bool {
    who.is_platform_admin()
}

/// Whether `who` (or an anonymous caller) may read a product of store
/// `owner` in `status`: an active or archived one anyone (archived products
/// stay readable from old orders); a draft only its store's sellers and
/// platform admins.
pub fn reads_product(who: Option<&Principal>, owner: TenantId, status: ProductStatus) -> bool {
    status != ProductStatus::Draft || who.is_some_and(|w| sees_store(w, owner))
}

/// Whether a store's product in `status` is listed for `who`: active ones
/// to everyone; drafts and archived ones only to its sellers and platform
/// admins.
pub fn lists_product(who: Option<&Principal>, owner: TenantId, status: ProductStatus) -> bool {
    status.on_sale() || who.is_some_and(|w| sees_store(w, owner))
}

/// Whether browsing shows `who` a product in `status` of store `owner`:
/// what `lists_product` lists, and of a suspended store only to its own
/// sellers and platform admins.
pub fn browses_product(
    who: Option<&Principal>,
    owner: TenantId,
    status: ProductStatus,
    owner_suspended: bool,
) -> bool {
    lists_product(who, owner, status)
        && (!owner_suspended || who.is_some_and(|w| sees_store(w, owner)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: TenantId = TenantId(10);
    const OTHER: TenantId = TenantId(20);
    const BUYER: UserId = UserId(1);

    fn who(role: Role, user: u128, tenant: Option<TenantId>) -> Principal {
        Principal {
            user: UserId(user),
            role,
            tenant,
        }
    }

    /// Every kind of principal, named for the table.
    fn cast() -> Vec<(&'static str, Principal)> {
        vec![
            ("the buyer", who(Role::Buyer, BUYER.0, None)),
            ("another shopper", who(Role::Buyer, 2, None)),
            ("the store's admin", who(Role::SellerAdmin, 3, Some(STORE))),
            ("the store's staff", who(Role::SellerStaff, 4, Some(STORE))),
            (
                "another store's admin",
                who(Role::SellerAdmin, 5, Some(OTHER)),
            ),
            ("a platform admin", who(Role::PlatformAdmin, 6, None)),
        ]
    }

    #[test]
    fn the_access_table() {
        // (principal, order view, sells, sees every hold, sees the store,
        //  manages it, operates the platform) for an order of BUYER sold by
        // STORE, and a SKU and store STORE.
        let expected = [
            (
                "the buyer",
                Some(OrderView::Whole),
                false,
                false,
                false,
                false,
                false,
            ),
            ("another shopper", None, false, false, false, false, false),
            (
                "the store's admin",
                Some(OrderView::PartOf(STORE)),
                true,
                true,
                true,
                true,
                false,
            ),
            (
                "the store's staff",
                Some(OrderView::PartOf(STORE)),
                true,
                true,
                true,
                false,
                false,
            ),
            (
                "another store's admin",
                None,
                false,
                false,
                false,
                false,
                false,
            ),
            (
                "a platform admin",
                Some(OrderView::Whole),
                false,
                true,
                true,
                true,
                true,
            ),
        ];
        for ((name, principal), row) in cast().into_iter().zip(expected) {
            assert_eq!(name, row.0);
            let seen = (
                name,
                order_view(&principal, BUYER, [STORE].into_iter()),
                sells_for(&principal, STORE),
                sees_every_hold(&principal, STORE),
                sees_store(&principal, STORE),
                manages_store(&principal, STORE),
                operates_platform(&principal),
            );
            assert_eq!(seen, row, "{name}");
        }
    }

    #[test]
    fn a_seller_of_one_part_sees_only_that_part_of_a_multi_store_order() {
        let other_admin = who(Role::SellerAdmin, 5, Some(OTHER));
        assert_eq!(
            order_view(&other_admin, BUYER, [STORE, OTHER].into_iter()),
            Some(OrderView::PartOf(OTHER))
        );
        // A seller who also bought the order sees it whole, as its buyer.
        let buying_seller = who(Role::SellerAdmin, BUYER.0, Some(OTHER));
        assert_eq!(
            order_view(&buying_seller, BUYER, [STORE].into_iter()),
            Some(OrderView::Whole)
        );
        // A seller role without a store sells for nobody.
        let storeless = who(Role::SellerStaff, 9, None);
        assert!(!sells_for(&storeless, STORE));
        assert_eq!(order_view(&storeless, BUYER, [STORE].into_iter()), None);
    }

    #[test]
    fn the_audit_table() {
        let expected = [
            ("the buyer", None, Err(AuditRefusal::Forbidden)),
            ("another shopper", None, Err(AuditRefusal::Forbidden)),
            ("the store's admin", None, Ok(AuditScope::Store(STORE))),
            (
                "the store's admin",
                Some(STORE),
                Ok(AuditScope::Store(STORE)),
            ),
            (
                "the store's admin",
                Some(OTHER),
                Err(AuditRefusal::OtherStore),
            ),
            ("the store's staff", None, Err(AuditRefusal::Forbidden)),
            ("a platform admin", None, Ok(AuditScope::Platform(None))),
            (
                "a platform admin",
                Some(OTHER),
                Ok(AuditScope::Platform(Some(OTHER))),
            ),
        ];
        let cast = cast();
        for (name, asked, want) in expected {
            let principal = cast.iter().find(|(n, _)| *n == name).unwrap().1;
            assert_eq!(
                audit_scope(&principal, asked),
                want,
                "{name} asking {asked:?}"
            );
        }
    }

    #[test]
    fn who_reads_and_lists_products_by_status() {
        use ProductStatus::{Active, Archived, Draft};
        // (principal, reads a draft, lists an archived one) for STORE's products.
        let expected = [
            ("the buyer", false, false),
            ("another shopper", false, false),
            ("the store's admin", true, true),
            ("the store's staff", true, true),
            ("another store's admin", false, false),
            ("a platform admin", true, true),
        ];
        for ((name, principal), (_, draft, archived)) in cast().into_iter().zip(expected) {
            let who = Some(&principal);
            assert_eq!(reads_product(who, STORE, Draft), draft, "{name}");
            assert_eq!(lists_product(who, STORE, Archived), archived, "{name}");
            assert_eq!(lists_product(who, STORE, Draft), draft, "{name}");
            assert!(reads_product(who, STORE, Active) && reads_product(who, STORE, Archived));
            assert!(lists_product(who, STORE, Active), "{name}");
            // Browsing: the same, and a suspended store's products only to
            // those who see the store (the ones who list its drafts).
            assert_eq!(browses_product(who, STORE, Draft, false), draft, "{name}");
            assert!(browses_product(who, STORE, Active, false), "{name}");
            assert_eq!(browses_product(who, STORE, Active, true), draft, "{name}");
        }
        assert!(!browses_product(None, STORE, Active, true));
        assert!(browses_product(None, STORE, Active, false));
        assert!(!reads_product(None, STORE, Draft));
        assert!(reads_product(None, STORE, Archived));
        assert!(!lists_product(None, STORE, Archived));
        assert!(lists_product(None, STORE, Active));
    }
}
