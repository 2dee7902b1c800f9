//! The browsing index: every durable product in three orders (newest,
//! list price, title), kept for the whole catalog, for each category a
//! product is filed under, and for each store. A question walks the
//! smallest source that holds its answer (a store, the categories of a
//! subtree merged in order, or everything) from its cursor, filtering as
//! it goes, and stops after a page or after looking at `scan_max`
//! products: then the page is short and its cursor continues where the
//! walk stopped, so no question costs more than a bounded walk. Moving a
//! category needs no change here: a subtree is resolved when asked.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::domain::browse::{list_price, title_key, BrowseQuery, BrowseSort, Cursor, Place};
use crate::domain::category::CategoryId;
use crate::domain::product::Product;
use crate::domain::SkuId;

use super::categories::category_of;

/// One page of an answer.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Arc<Product>>,
    /// Where the next page starts; `None` at the end.
    pub next: Option<Cursor>,
    /// Products looked at to make this page.
    pub scanned: usize,
}

/// Which products a question is limited to, besides its own filters.
pub struct Scope<'a> {
    /// The category asked for and its descendants.
    pub categories: Option<&'a HashSet<CategoryId>>,
    /// The store asked for (tenant id text).
    pub store: Option<&'a str>,
}

/// A product's orders, in one source.
#[derive(Debug, Default)]
struct Orders {
    newest: BTreeSet<u128>,
    price: BTreeSet<(i64, u128)>,
    title: BTreeSet<(Arc<str>, u128)>,
}

impl Orders {
    fn insert(&mut self, listed: &Listed, id: u128) {
        self.newest.insert(id);
        self.price.insert((listed.price, id));
        self.title.insert((listed.title.clone(), id));
    }

    fn remove(&mut self, listed: &Listed, id: u128) {
        self.newest.remove(&id);
        self.price.remove(&(listed.price, id));
        self.title.remove(&(listed.title.clone(), id));
    }

    fn len(&self) -> usize {
        self.newest.len()
    }
}

#[derive(Debug)]
struct Listed {
    product: Arc<Product>,
    price: i64,
    title: Arc<str>,
    category: Option<CategoryId>,
}

#[derive(Debug, Default)]
struct Index {
    listed: HashMap<u128, Listed>,
    all: Orders,
    by_category: HashMap<CategoryId, Orders>,
    by_store: HashMap<String, Orders>,
}

/// See the module comment.
#[derive(Debug)]
pub struct Listings {
    index: RwLock<Index>,
    scan_max: usize,
}

impl Listings {
    /// An empty index whose questions look at most at `scan_max` products.
    pub fn new(scan_max: usize) -> Self {
        Self {
            index: RwLock::new(Index::default()),
            scan_max: scan_max.max(1),
        }
    }

    /// Lists `product` as it now is (in place of its earlier version).
    pub fn put(&self, product: Arc<Product>) {
        let id = product.id;
        let listed = Listed {
            price: list_price(&product),
            title: title_key(&product.title).into(),
            category: category_of(&product.category),
            product,
        };
        let mut index = self.index.write();
        let index = &mut *index;
        if let Some(old) = index.listed.remove(&id) {
            index.all.remove(&old, id);
            if let Some(c) = old.category {
                if let Some(orders) = index.by_category.get_mut(&c) {
                    orders.remove(&old, id);
                    if orders.len() == 0 {
                        index.by_category.remove(&c);
                    }
                }
            }
            if let Some(orders) = index.by_store.get_mut(&old.product.tenant) {
                orders.remove(&old, id);
            }
        }
        index.all.insert(&listed, id);
        if let Some(c) = listed.category {
            index.by_category.entry(c).or_default().insert(&listed, id);
        }
        index
            .by_store
            .entry(listed.product.tenant.clone())
            .or_default()
            .insert(&listed, id);
        index.listed.insert(id, listed);
    }

    /// How many products are listed.
    pub fn len(&self) -> usize {
        self.index.read().listed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A page of the products that answer `query` within `scope`, that
    /// `visible` shows to the caller; `has_stock` says whether a SKU has
    /// units available.
    pub fn page(
        &self,
        query: &BrowseQuery,
        scope: &Scope<'_>,
        visible: impl Fn(&Product) -> bool,
        has_stock: impl Fn(SkuId) -> bool,
    ) -> Page {
        let index = self.index.read();
        let store_orders = scope.store.map(|s| index.by_store.get(s));
        let category_orders: Option<Vec<&Orders>> = scope.categories.map(|set| {
            set.iter()
                .filter_map(|c| index.by_category.get(c))
                .collect()
        });
        // The smaller source; the other scope is then a filter.
        let sources: Vec<&Orders> = match (store_orders, &category_orders) {
            (Some(None), _) => Vec::new(),
            (Some(Some(store)), Some(categories))
                if categories.iter().map(|o| o.len()).sum::<usize>() < store.len() =>
            {
                categories.clone()
            }
            (Some(Some(store)), _) => vec![store],
            (None, Some(categories)) => categories.clone(),
            (None, None) => vec![&index.all],
        };
        let walks = sources.iter().map(|o| walk(o, query)).collect();
        let merged = Merge::new(walks, descending(query.sort));

        let mut items = Vec::new();
        let mut scanned = 0;
        let mut last = None;
        let mut stopped = false;
        for key in merged {
            scanned += 1;
            let id = key.id();
            if let Some(listed) = index.listed.get(&id) {
                let in_scope = scope
                    .categories
                    .is_none_or(|set| listed.category.is_some_and(|c| set.contains(&c)))
                    && scope.store.is_none_or(|s| listed.product.tenant == s);
                if in_scope && query.admits(&listed.product, &has_stock) && visible(&listed.product)
                {
                    items.push(listed.product.clone());
                }
            }
            last = Some(key);
            if items.len() == query.limit || scanned == self.scan_max {
                stopped = true;
                break;
            }
        }
        if !stopped {
            last = None;
        }
        if scanned == self.scan_max && items.len() < query.limit {
            metrics::counter!("flashdrop_browse_short_pages_total").increment(1);
        }
        Page {
            items,
            next: last.map(|key| Cursor {
                sort: query.sort,
                after: key.place(),
            }),
            scanned,
        }
    }
}

fn descending(sort: BrowseSort) -> bool {
    matches!(sort, BrowseSort::Newest | BrowseSort::PriceDesc)
}

/// A product's key in the order being walked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key<'a> {
    Newest(u128),
    Price(i64, u128),
    Title(&'a str, u128),
}

impl Key<'_> {
    fn id(&self) -> u128 {
        match *self {
            Key::Newest(id) | Key::Price(_, id) | Key::Title(_, id) => id,
        }
    }

    fn place(&self) -> Place {
        match *self {
            Key::Newest(id) => Place::Newest { id },
            Key::Price(price, id) => Place::Price { price, id },
            Key::Title(key, id) => Place::Title {
                key: key.into(),
                id,
            },
        }
    }
}

type Walk<'a> = Box<dyn Iterator<Item = Key<'a>> + 'a>;

/// One source's products in the query's order, from after its cursor,
/// within its price bounds when ordered by price.
fn walk<'a>(orders: &'a Orders, query: &BrowseQuery) -> Walk<'a> {
    let after = query.cursor.as_ref().map(|c| &c.after);
    match query.sort {
        BrowseSort::Newest => {
            let upper = match after {
                Some(Place::Newest { id }) => Bound::Excluded(*id),
                _ => Bound::Unbounded,
            };
            Box::new(
                orders
                    .newest
                    .range((Bound::Unbounded, upper))
                    .rev()
                    .map(|&id| Key::Newest(id)),
            )
        }
        BrowseSort::Price | BrowseSort::PriceDesc => {
            let mut lower = Bound::Included((query.filters.min_price.unwrap_or(i64::MIN), 0));
            let mut upper =
                Bound::Included((query.filters.max_price.unwrap_or(i64::MAX), u128::MAX));
            if let Some(Place::Price { price, id }) = after {
                let at = (*price, *id);
                if query.sort == BrowseSort::Price {
                    lower = tighter_lower(lower, Bound::Excluded(at));
                } else {
                    upper = tighter_upper(upper, Bound::Excluded(at));
                }
            }
            if empty_range(&lower, &upper) {
                return Box::new(std::iter::empty());
            }
            let range = orders
                .price
                .range((lower, upper))
                .map(|&(p, id)| Key::Price(p, id));
            if query.sort == BrowseSort::PriceDesc {
                Box::new(range.rev())
            } else {
                Box::new(range)
            }
        }
        BrowseSort::Title => {
            let lower = match after {
                Some(Place::Title { key, id }) => Bound::Excluded((Arc::<str>::from(&**key), *id)),
                _ => Bound::Unbounded,
            };
            Box::new(
                orders
                    .title
                    .range((lower, Bound::Unbounded))
                    .map(|(key, id)| Key::Title(key, *id)),
            )
        }
    }
}

fn tighter_lower<T: Ord>(a: Bound<T>, b: Bound<T>) -> Bound<T> {
    match (&a, &b) {
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            match x.cmp(y) {
                Ordering::Greater => a,
                Ordering::Less => b,
                Ordering::Equal if matches!(a, Bound::Excluded(_)) => a,
                Ordering::Equal => b,
            }
        }
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
    }
}

fn tighter_upper<T: Ord>(a: Bound<T>, b: Bound<T>) -> Bound<T> {
    match (&a, &b) {
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            match x.cmp(y) {
                Ordering::Less => a,
                Ordering::Greater => b,
                Ordering::Equal if matches!(a, Bound::Excluded(_)) => a,
                Ordering::Equal => b,
            }
        }
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
    }
}

/// Whether no value lies between the bounds (`BTreeSet::range` panics on
/// such a range).
fn empty_range<T: Ord>(lower: &Bound<T>, upper: &Bound<T>) -> bool {
    match (lower, upper) {
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
        | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
        _ => false,
    }
}

/// Walks merged into one order.
struct Merge<'a> {
    walks: Vec<Walk<'a>>,
    heads: BinaryHeap<Head<'a>>,
}

struct Head<'a> {
    key: Key<'a>,
    from: usize,
    descending: bool,
}

impl PartialEq for Head<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Head<'_> {}

impl PartialOrd for Head<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head<'_> {
    /// The heap pops its greatest: the next key in the walk's order.
    fn cmp(&self, other: &Self) -> Ordering {
        let order = self.key.cmp(&other.key);
        if self.descending {
            order
        } else {
            order.reverse()
        }
    }
}

impl<'a> Merge<'a> {
    fn new(mut walks: Vec<Walk<'a>>, descending: bool) -> Self {
        let mut heads = BinaryHeap::with_capacity(walks.len());
        for (from, walk) in walks.iter_mut().enumerate() {
            if let Some(key) = walk.next() {
                heads.push(Head {
                    key,
                    from,
                    descending,
                });
            }
        }
        Self { walks, heads }
    }
}

impl<'a> Iterator for Merge<'a> {
    type Item = Key<'a>;

    fn next(&mut self) -> Option<Key<'a>> {
        let head = self.heads.pop()?;
        if let Some(key) = self.walks[head.from].next() {
            self.heads.push(Head {
                key,
                from: head.from,
                descending: head.descending,
            });
        }
        Some(head.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::product::{Money, ProductStatus, Sku};

    fn product(n: u128, store: &str, category: u64, price: i64, title: &str) -> Arc<Product> {
        Arc::new(Product {
            id: n,
            tenant: store.into(),
            version: 1,
            status: ProductStatus::Active,
            title: title.into(),
            description: String::new(),
            brand: String::new(),
            category: category.to_string(),
            attributes: Vec::new(),
            images: Vec::new(),
            options: Vec::new(),
            skus: vec![Sku {
                id: n as u64,
                code: format!("S{n}"),
                price: Money {
                    amount: price,
                    currency: "EUR".into(),
                },
                compare_at: None,
                options: Vec::new(),
                attributes: Vec::new(),
                low_stock_threshold: 0,
            }],
            created_at_ms: 0,
            updated_at_ms: 0,
            updated_by: String::new(),
        })
    }

    fn query(text: &str) -> BrowseQuery {
        BrowseQuery::parse(form_urlencoded::parse(text.as_bytes())).unwrap()
    }

    /// Every page of `text` from the first, following cursors.
    fn all_pages(listings: &Listings, text: &str, scope: &Scope<'_>) -> Vec<u128> {
        let mut q = query(text);
        let mut ids = Vec::new();
        loop {
            let page = listings.page(&q, scope, |_| true, |_| false);
            ids.extend(page.items.iter().map(|p| p.id));
            match page.next {
                Some(next) => q.cursor = Some(next),
                None => return ids,
            }
        }
    }

    const EVERYTHING: Scope<'static> = Scope {
        categories: None,
        store: None,
    };

    fn sample() -> Listings {
        let listings = Listings::new(1_000);
        for n in 1..=30u128 {
            let store = if n % 3 == 0 { "1" } else { "2" };
            let price = ((n * 37) % 11) as i64 * 100;
            listings.put(product(
                n,
                store,
                (n % 4) as u64 + 1,
                price,
                &format!("T{:02}", 31 - n),
            ));
        }
        listings
    }

    #[test]
    fn every_order_pages_through_everything_once_in_order() {
        let listings = sample();
        let newest = all_pages(&listings, "limit=7", &EVERYTHING);
        assert_eq!(newest, (1..=30).rev().collect::<Vec<_>>());
        let by_title = all_pages(&listings, "sort=title&limit=4", &EVERYTHING);
        assert_eq!(by_title, (1..=30).rev().collect::<Vec<_>>());
        let cheap = all_pages(&listings, "sort=price&limit=5", &EVERYTHING);
        let mut expected: Vec<(i64, u128)> = (1..=30)
            .map(|n| (((n * 37) % 11) as i64 * 100, n))
            .collect();
        expected.sort();
        assert_eq!(cheap, expected.iter().map(|e| e.1).collect::<Vec<_>>());
        let dear = all_pages(&listings, "sort=-price&limit=6", &EVERYTHING);
        assert_eq!(dear, expected.iter().rev().map(|e| e.1).collect::<Vec<_>>());
    }

    #[test]
    fn price_bounds_cut_the_walk_and_agree_with_the_filter() {
        let listings = sample();
        for sort in ["price", "-price", "newest", "title"] {
            let got = all_pages(
                &listings,
                &format!("sort={sort}&min_price=300&max_price=700&limit=3"),
                &EVERYTHING,
            );
            let mut want: Vec<u128> = (1..=30)
                .filter(|n| (300..=700).contains(&(((n * 37) % 11) as i64 * 100)))
                .collect();
            let mut got_sorted = got.clone();
            got_sorted.sort();
            want.sort();
            assert_eq!(got_sorted, want, "{sort}");
        }
        assert!(all_pages(&listings, "sort=price&min_price=5000", &EVERYTHING).is_empty());
    }

    #[test]
    fn categories_merge_in_order_and_stores_narrow_them() {
        let listings = sample();
        let set: HashSet<CategoryId> = [CategoryId(1), CategoryId(3)].into();
        let scope = Scope {
            categories: Some(&set),
            store: None,
        };
        let got = all_pages(&listings, "limit=4", &scope);
        let want: Vec<u128> = (1..=30).rev().filter(|n| matches!(n % 4, 0 | 2)).collect();
        assert_eq!(got, want);
        let both = Scope {
            categories: Some(&set),
            store: Some("1"),
        };
        let got = all_pages(&listings, "sort=price&limit=2", &both);
        assert!(!got.is_empty());
        assert!(got.iter().all(|n| n % 3 == 0 && matches!(n % 4, 0 | 2)));
        let nowhere = Scope {
            categories: None,
            store: Some("9"),
        };
        assert!(all_pages(&listings, "", &nowhere).is_empty());
    }

    #[test]
    fn a_changed_product_moves_between_sources_and_orders() {
        let listings = sample();
        listings.put(product(5, "1", 9, 99_999, "AAA"));
        assert_eq!(listings.len(), 30);
        let set: HashSet<CategoryId> = [CategoryId(9)].into();
        let scope = Scope {
            categories: Some(&set),
            store: None,
        };
        assert_eq!(all_pages(&listings, "", &scope), vec![5]);
        assert_eq!(
            all_pages(&listings, "sort=-price&limit=1", &EVERYTHING)[0],
            5
        );
        assert_eq!(
            all_pages(&listings, "sort=title&limit=1", &EVERYTHING)[0],
            5
        );
        let old: HashSet<CategoryId> = [CategoryId(2)].into();
        let scope = Scope {
            categories: Some(&old),
            store: None,
        };
        assert!(!all_pages(&listings, "", &scope).contains(&5));
    }

    #[test]
    fn a_walk_stops_at_its_budget_and_its_cursor_goes_on_from_there() {
        let listings = Listings::new(4);
        for n in 1..=10 {
            listings.put(product(n, "1", 1, 100, "T"));
        }
        // Nothing matches: each page looks at four products and says where it stopped.
        let mut q = query("min_price=200&sort=title");
        let page = listings.page(&q, &EVERYTHING, |_| true, |_| false);
        assert!(page.items.is_empty());
        assert_eq!(page.scanned, 4);
        q.cursor = page.next;
        let page = listings.page(&q, &EVERYTHING, |_| true, |_| false);
        assert_eq!(page.scanned, 4);
        q.cursor = page.next;
        let page = listings.page(&q, &EVERYTHING, |_| true, |_| false);
        assert_eq!(page.scanned, 2);
        assert!(page.next.is_none());
    }

    #[test]
    fn pages_neither_repeat_nor_skip_while_products_are_added() {
        let listings = sample();
        let mut q = query("sort=price&limit=5");
        let mut seen = Vec::new();
        let mut added = 100;
        loop {
            let page = listings.page(&q, &EVERYTHING, |_| true, |_| false);
            seen.extend(page.items.iter().map(|p| p.id));
            // A product at every price arrives between pages.
            for price in [0, 500, 1000] {
                added += 1;
                listings.put(product(added, "1", 1, price, "new"));
            }
            match page.next {
                Some(next) => q.cursor = Some(next),
                None => break,
            }
        }
        let originals: Vec<u128> = seen.iter().copied().filter(|n| *n <= 30).collect();
        assert_eq!(
            originals.len(),
            30,
            "every product there at the start, once"
        );
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "no product twice");
    }

    #[test]
    fn the_caller_sees_only_what_visible_lets_through() {
        let listings = sample();
        let page = listings.page(
            &query("limit=100"),
            &EVERYTHING,
            |p| p.tenant == "1",
            |_| false,
        );
        assert_eq!(page.items.len(), 10);
        assert!(page.next.is_none());
    }
}
