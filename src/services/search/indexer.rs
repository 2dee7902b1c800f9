//! The search indexer: a durable feed subscriber that keeps the index in
//! step with the WAL. A product's record carries its full state, so its
//! document is made from the record itself (the version at that LSN); what
//! else a document says (category names and ancestors, whether its store is
//! active, whether it has stock) is read from current state through a
//! `CatalogView`. A store's or a category's change re-makes the documents
//! of its products; a stock change re-makes its product's document only if
//! it could flip `in_stock`, once per persist however many reservations
//! came (coalesced), so the index follows stock without a write per sale.
//!
//! Changes are gathered per product between persists (the latest state
//! wins) and committed with the LSN they cover: a restart resumes after it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::domain::product::Product;
use crate::domain::search::{DocContext, SearchDoc};
use crate::events::durable::DurableSubscriber;
use crate::persistence::{EntityKey, RecordBody, WalRecord};

use super::tantivy::TantivyIndex;
use super::DocChange;

/// Products read per page while rebuilding.
const REBUILD_PAGE: usize = 1_000;

/// The current state the indexer reads besides the WAL records.
pub trait CatalogView: Send + Sync + 'static {
    /// The product's durable state, if it exists.
    fn product(&self, id: u128) -> Option<Arc<Product>>;
    /// Products after `after` in id order, at most `limit` (rebuilds page
    /// through every product with it).
    fn products_after(&self, after: Option<u128>, limit: usize) -> Vec<Arc<Product>>;
    /// The ids of a store's products (tenant id as text).
    fn products_of_store(&self, store: &str) -> Vec<u128>;
    /// The ids of products filed under the category or its descendants.
    fn products_in_category(&self, category: u64) -> Vec<u128>;
    /// The product a SKU belongs to.
    fn product_of_sku(&self, sku: u64) -> Option<u128>;
    /// What a document of `product` says besides the product.
    fn context(&self, product: &Product) -> DocContext;
}

/// What the indexer does with a product at the next persist.
enum Pending {
    /// Index this state.
    State(Arc<Product>),
    /// Gone: remove its document.
    Gone,
    /// Re-make its document from current state (its context changed).
    Refresh,
}

pub struct SearchIndexer<V> {
    index: Arc<TantivyIndex>,
    view: V,
    pending: HashMap<u128, Pending>,
    /// Products whose stock moved since the last persist.
    stock_moved: HashSet<u128>,
    /// Whether each indexed product had stock when its document was made.
    in_stock: HashMap<u128, bool>,
}

impl<V: CatalogView> SearchIndexer<V> {
    pub fn new(index: Arc<TantivyIndex>, view: V) -> Self {
        Self {
            index,
            view,
            pending: HashMap::new(),
            stock_moved: HashSet::new(),
            in_stock: HashMap::new(),
        }
    }

    fn document(&mut self, product: &Product) -> DocChange {
        let context = self.view.context(product);
        self.in_stock.insert(product.id, context.in_stock);
        DocChange::Upsert(Box::new(SearchDoc::of(product, context)))
    }

    fn refresh(&mut self, ids: Vec<u128>) {
        for id in ids {
            self.pending.entry(id).or_insert(Pending::Refresh);
        }
    }
}

impl<V: CatalogView> DurableSubscriber for SearchIndexer<V> {
    fn apply(&mut self, _lsn: u64, record: &WalRecord) -> anyhow::Result<()> {
        match (&record.entity, &record.body) {
            (EntityKey::Product(id), RecordBody::Product(product)) => {
                self.pending
                    .insert(*id, Pending::State(Arc::new((**product).clone())));
            }
            (EntityKey::Product(id), RecordBody::ProductCreatedV1(_)) => {
                self.pending.insert(*id, Pending::Refresh);
            }
            (EntityKey::Product(id), RecordBody::Deleted) => {
                self.pending.insert(*id, Pending::Gone);
            }
            (EntityKey::Tenant(store), RecordBody::Directory(_)) => {
                let ids = self.view.products_of_store(&store.to_string());
                self.refresh(ids);
            }
            (EntityKey::Category(category), RecordBody::Category(_)) => {
                let ids = self.view.products_in_category(*category);
                self.refresh(ids);
            }
            (EntityKey::Sku(sku), RecordBody::Stock(_)) => {
                if let Some(product) = self.view.product_of_sku(*sku) {
                    self.stock_moved.insert(product);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn persist(&mut self, applied_lsn: u64) -> anyhow::Result<()> {
        let mut changes = Vec::with_capacity(self.pending.len());
        for (id, pending) in std::mem::take(&mut self.pending) {
            self.stock_moved.remove(&id);
            match pending {
                Pending::State(product) => changes.push(self.document(&product)),
                Pending::Refresh => match self.view.product(id) {
                    Some(product) => changes.push(self.document(&product)),
                    None => {
                        self.in_stock.remove(&id);
                        changes.push(DocChange::Remove(id));
                    }
                },
                Pending::Gone => {
                    self.in_stock.remove(&id);
                    changes.push(DocChange::Remove(id));
                }
            }
        }
        for id in std::mem::take(&mut self.stock_moved) {
            let Some(product) = self.view.product(id) else {
                continue;
            };
            let context = self.view.context(&product);
            if self.in_stock.get(&id) != Some(&context.in_stock) {
                self.in_stock.insert(id, context.in_stock);
                changes.push(DocChange::Upsert(Box::new(SearchDoc::of(
                    &product, context,
                ))));
            }
        }
        metrics::counter!("flashdrop_search_documents_written_total")
            .increment(changes.len() as u64);
        self.index.apply(changes)?;
        self.index.commit(applied_lsn)?;
        metrics::gauge!("flashdrop_search_documents").set(self.index.documents() as f64);
        Ok(())
    }

    fn rebuild(&mut self, _covers_lsn: u64) -> anyhow::Result<()> {
        self.pending.clear();
        self.stock_moved.clear();
        self.in_stock.clear();
        self.index.clear()?;
        let mut after = None;
        loop {
            let page = self.view.products_after(after, REBUILD_PAGE);
            let Some(last) = page.last() else {
                break;
            };
            after = Some(last.id);
            let changes = page.iter().map(|p| self.document(p)).collect();
            self.index.apply(changes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use parking_lot::Mutex;

    use super::*;
    use crate::domain::category::{Category, CategoryId};
    use crate::domain::product::{Money, ProductStatus, Sku};
    use crate::domain::search::{SearchQuery, TypoRules};
    use crate::services::search::{SearchAnswer, SearchScope};

    #[derive(Default)]
    struct State {
        products: BTreeMap<u128, Arc<Product>>,
        out_of_stock: HashSet<u128>,
        category_names: HashMap<u64, String>,
    }

    #[derive(Clone, Default)]
    struct View(Arc<Mutex<State>>);

    impl CatalogView for View {
        fn product(&self, id: u128) -> Option<Arc<Product>> {
            self.0.lock().products.get(&id).cloned()
        }
        fn products_after(&self, after: Option<u128>, limit: usize) -> Vec<Arc<Product>> {
            let state = self.0.lock();
            let from = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
            state
                .products
                .range((from, std::ops::Bound::Unbounded))
                .take(limit)
                .map(|(_, p)| p.clone())
                .collect()
        }
        fn products_of_store(&self, store: &str) -> Vec<u128> {
            let state = self.0.lock();
            state
                .products
                .values()
                .filter(|p| p.tenant == store)
                .map(|p| p.id)
                .collect()
        }
        fn products_in_category(&self, category: u64) -> Vec<u128> {
            let state = self.0.lock();
            state
                .products
                .values()
                .filter(|p| p.category == category.to_string())
                .map(|p| p.id)
                .collect()
        }
        fn product_of_sku(&self, sku: u64) -> Option<u128> {
            let state = self.0.lock();
            state
                .products
                .values()
                .find(|p| p.skus.iter().any(|s| s.id == sku))
                .map(|p| p.id)
        }
        fn context(&self, product: &Product) -> DocContext {
            let state = self.0.lock();
            let category: u64 = product.category.parse().unwrap_or(0);
            DocContext {
                categories: state
                    .category_names
                    .get(&category)
                    .map(|name| vec![(category, name.clone())])
                    .unwrap_or_default(),
                store_active: true,
                in_stock: !state.out_of_stock.contains(&product.id),
            }
        }
    }

    fn product(id: u128, title: &str) -> Product {
        Product {
            id,
            tenant: "store".into(),
            version: 1,
            status: ProductStatus::Active,
            title: title.into(),
            description: String::new(),
            brand: String::new(),
            category: "5".into(),
            attributes: Vec::new(),
            images: Vec::new(),
            options: Vec::new(),
            skus: vec![Sku {
                id: id as u64 * 10,
                code: format!("C{id}"),
                price: Money {
                    amount: 1000,
                    currency: "EUR".into(),
                },
                compare_at: None,
                options: Vec::new(),
                attributes: Vec::new(),
                low_stock_threshold: 0,
            }],
            created_at_ms: 1,
            updated_at_ms: 1,
            updated_by: String::new(),
        }
    }

    fn record(entity: EntityKey, body: RecordBody) -> WalRecord {
        WalRecord { entity, body }
    }

    fn product_record(product: &Product) -> WalRecord {
        record(
            EntityKey::Product(product.id),
            RecordBody::Product(Box::new(product.clone())),
        )
    }

    fn setup() -> (
        tempfile::TempDir,
        Arc<TantivyIndex>,
        View,
        SearchIndexer<View>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let index = Arc::new(TantivyIndex::open(dir.path(), 20).unwrap());
        let view = View::default();
        view.0.lock().category_names.insert(5, "Knitwear".into());
        let indexer = SearchIndexer::new(index.clone(), view.clone());
        (dir, index, view, indexer)
    }

    fn ask(index: &TantivyIndex, query: &str) -> SearchAnswer {
        let question = SearchQuery::parse(
            form_urlencoded::parse(query.as_bytes()),
            TypoRules::default(),
        )
        .unwrap();
        index.search(&question, &SearchScope::default()).unwrap()
    }

    fn found(index: &TantivyIndex, query: &str) -> Vec<u128> {
        let mut ids: Vec<u128> = ask(index, query)
            .hits
            .iter()
            .map(|h| h.product_id)
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_product_shows_at_the_persist_after_its_record_in_the_version_of_that_record() {
        let (_dir, index, view, mut indexer) = setup();
        let hat = product(1, "Wool Hat");
        view.0.lock().products.insert(1, Arc::new(hat.clone()));
        indexer.apply(7, &product_record(&hat)).unwrap();
        assert!(found(&index, "q=hat").is_empty(), "not before the persist");
        indexer.persist(7).unwrap();
        assert_eq!(found(&index, "q=hat"), vec![1]);
        assert_eq!(index.committed().unwrap().map(|(_, lsn)| lsn), Some(7));
        assert_eq!(
            found(&index, "q=knitwear"),
            vec![1],
            "category names from the view"
        );

        let renamed = Product {
            title: "Wool Beanie".into(),
            version: 2,
            ..hat.clone()
        };
        indexer.apply(8, &product_record(&hat)).unwrap();
        indexer.apply(9, &product_record(&renamed)).unwrap();
        indexer.persist(9).unwrap();
        assert!(found(&index, "q=hat").is_empty(), "the latest record wins");
        assert_eq!(found(&index, "q=beanie"), vec![1]);

        let archived = Product {
            status: ProductStatus::Archived,
            version: 3,
            ..renamed
        };
        indexer.apply(10, &product_record(&archived)).unwrap();
        indexer.persist(10).unwrap();
        assert!(found(&index, "q=beanie").is_empty(), "archived: not public");
        indexer
            .apply(11, &record(EntityKey::Product(1), RecordBody::Deleted))
            .unwrap();
        indexer.persist(11).unwrap();
        assert_eq!(index.documents(), 0, "deleted: gone");
    }

    #[test]
    fn stock_moves_are_coalesced_and_rewrite_a_document_only_when_in_stock_flips() {
        let (_dir, index, view, mut indexer) = setup();
        let hat = product(1, "Wool Hat");
        view.0.lock().products.insert(1, Arc::new(hat.clone()));
        indexer.apply(1, &product_record(&hat)).unwrap();
        indexer.persist(1).unwrap();
        assert_eq!(found(&index, "in_stock=true"), vec![1]);
        let stock = || record(EntityKey::Sku(10), RecordBody::Stock(Vec::new()));
        for lsn in 2..200 {
            indexer.apply(lsn, &stock()).unwrap();
        }
        indexer.persist(199).unwrap();
        assert_eq!(
            found(&index, "in_stock=true"),
            vec![1],
            "still in stock: unchanged"
        );
        view.0.lock().out_of_stock.insert(1);
        for lsn in 200..300 {
            indexer.apply(lsn, &stock()).unwrap();
        }
        indexer.persist(299).unwrap();
        assert_eq!(found(&index, "in_stock=false"), vec![1], "sold out shows");
        assert!(found(&index, "in_stock=true").is_empty());
        assert_eq!(index.documents(), 1, "replaced, not added");
        indexer
            .apply(
                300,
                &record(EntityKey::Sku(999), RecordBody::Stock(Vec::new())),
            )
            .unwrap();
        indexer.persist(300).unwrap();
        assert_eq!(index.documents(), 1, "a SKU of no product changes nothing");
    }

    #[test]
    fn a_category_change_remakes_its_products_and_a_rebuild_replaces_everything() {
        let (_dir, index, view, mut indexer) = setup();
        let hat = product(1, "Wool Hat");
        view.0.lock().products.insert(1, Arc::new(hat.clone()));
        indexer.apply(1, &product_record(&hat)).unwrap();
        indexer.persist(1).unwrap();
        view.0.lock().category_names.insert(5, "Headwear".into());
        let category = Category {
            id: CategoryId(5),
            parent: None,
            name: "Headwear".into(),
            slug: "headwear".into(),
        };
        indexer
            .apply(
                2,
                &record(
                    EntityKey::Category(5),
                    RecordBody::Category(Box::new(category)),
                ),
            )
            .unwrap();
        indexer.persist(2).unwrap();
        assert_eq!(found(&index, "q=headwear"), vec![1]);
        assert!(found(&index, "q=knitwear").is_empty());

        // The view moves on without records (the WAL no longer has them).
        {
            let mut state = view.0.lock();
            state.products.clear();
            for id in 100..2_600 {
                state.products.insert(id, Arc::new(product(id, "Scarf")));
            }
        }
        indexer.rebuild(5_000).unwrap();
        indexer.persist(5_000).unwrap();
        assert_eq!(
            index.documents(),
            2_500,
            "every product, over several pages"
        );
        assert!(
            found(&index, "q=wool").is_empty(),
            "the stale document is gone"
        );
        assert_eq!(ask(&index, "q=scarf").total, 2_500);
        assert_eq!(index.committed().unwrap().map(|(_, lsn)| lsn), Some(5_000));
    }
}
